//! Log throughput and latency: `shm-write --lines` to followers against
//! the reference programs through pipes.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{best, ms, ratio, sh};
use crate::{READ, WRITE};

/// Builds one of /work/shared/perf's reference programs into `dir`.
fn reference_program(dir: &Path, name: &str) -> Option<PathBuf> {
    let source = Path::new("/work/shared/perf").join(format!("{name}.c"));
    let exe = dir.join(name);
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(exe)
}

/// `shm-write --lines` to `followers` × `shm-read --follow`, until every
/// follower has the last line; returns the time and the lines lost in all.
fn log_once(dir: &Path, lines: &Path, expected: &[u8], followers: usize) -> (Duration, usize) {
    let name = format!("shm-bench-log-{}", std::process::id());
    let made = Command::new(WRITE)
        .args(["--lines", "-s", "32M", "-n", &name])
        .stdin(Stdio::null())
        .status()
        .expect("create log");
    assert!(made.success(), "cannot create the log");
    let outputs: Vec<PathBuf> = (0..followers)
        .map(|i| dir.join(format!("follower-{i}.out")))
        .collect();
    let mut children: Vec<_> = outputs
        .iter()
        .map(|out| {
            Command::new(READ)
                .args(["-F", "-n", &name])
                .stdout(File::create(out).expect("follower output"))
                .stderr(Stdio::null())
                .spawn()
                .expect("follower")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = Command::new(WRITE)
        .args(["--lines", "-n", &name])
        .stdin(File::open(lines).expect("lines"))
        .status()
        .expect("writer");
    assert!(status.success(), "writer failed");
    let len = expected.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while outputs
        .iter()
        .any(|o| std::fs::metadata(o).map_or(0, |m| m.len()) < len)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    let _ = Command::new(READ)
        .args(["--remove", "-n", &name])
        .stdout(Stdio::null())
        .status();
    for child in &mut children {
        let _ = child.wait();
    }
    let expected_lines = expected.split(|&b| b == b'\n').count() - 1;
    let lost = outputs
        .iter()
        .map(|o| {
            let got = std::fs::read(o).unwrap_or_default();
            let _ = std::fs::remove_file(o);
            expected_lines.saturating_sub(got.split(|&b| b == b'\n').count() - 1)
        })
        .sum();
    (elapsed, lost)
}

/// One line-latency run: `latency src` through `middle` into `latency sink`.
fn latency_once(src: &Path, middle: &str, sink: &Path, lines: usize) -> String {
    let script = format!(
        "{} src {lines} 1000 | {middle} | {} sink",
        src.display(),
        sink.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("latency run");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn log_lines(dir: &Path) {
    let count: usize = std::env::var("SHM_BENCH_LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (Some(perline), Some(latency)) = (
        reference_program(dir, "perline"),
        reference_program(dir, "latency"),
    ) else {
        println!("## log: skipped (needs cc and /work/shared/perf)");
        println!();
        return;
    };
    log_throughput(dir, count, &perline);
    log_latency(count, &latency);
}

/// `count` lines through the log to 1 and 4 followers, against the same
/// lines written one write(2) each into `cat`.
fn log_throughput(dir: &Path, count: usize, perline: &Path) {
    let lines = dir.join("lines.txt");
    let mut text = Vec::new();
    for i in 0..count {
        text.extend_from_slice(
            format!("{i:08} GET /api/items?page={} 200 OK\n", i % 97).as_bytes(),
        );
    }
    std::fs::write(&lines, &text).expect("lines file");
    let pipe = best(3, || {
        sh(&format!(
            "{} < {} | cat > {}",
            perline.display(),
            lines.display(),
            dir.join("pipe.out").display()
        ))
    });
    println!("## log: {count} lines, shm-write --lines → shm-read --follow (best of 3)");
    println!();
    println!("| followers | time | vs perline \\| cat (target ≤ 1.0x) | lines lost |");
    println!("|---|---|---|---|");
    for followers in [1, 4] {
        let mut lost_all = 0;
        let time = best(3, || {
            let (time, lost) = log_once(dir, &lines, &text, followers);
            lost_all += lost;
            time
        });
        println!(
            "| {followers} | {} | {} | {lost_all} |",
            ms(time),
            ratio(time, pipe)
        );
    }
    println!();
    println!("perline < lines | cat: {}", ms(pipe));
    println!();
}

/// One line's way from source to sink at 1,000 lines a second, through
/// the log and through `cat | cat`.
fn log_latency(count: usize, latency: &Path) {
    let latency_lines = count.clamp(10, 1000);
    let name = format!("shm-bench-latency-{}", std::process::id());
    let made = Command::new(WRITE)
        .args(["--lines", "-n", &name])
        .stdin(Stdio::null())
        .status()
        .expect("create log");
    assert!(made.success(), "cannot create the latency log");
    let mut sink = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{READ} -F --new -n {name} | {} sink",
            latency.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("latency sink");
    std::thread::sleep(Duration::from_millis(200));
    sh(&format!(
        "{} src {latency_lines} 1000 | {WRITE} --lines -n {name}",
        latency.display()
    ));
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new(READ)
        .args(["--remove", "-n", &name])
        .stdout(Stdio::null())
        .status();
    let mut shm = String::new();
    if let Some(mut out) = sink.stdout.take() {
        let _ = out.read_to_string(&mut shm);
    }
    let _ = sink.wait();
    let pipes = latency_once(latency, "cat | cat", latency, latency_lines);
    println!("## log latency: {latency_lines} lines 1 ms apart, source → sink");
    println!();
    println!("| channel | result |");
    println!("|---|---|");
    println!("| shm-write --lines → shm-read --follow | {} |", shm.trim());
    println!("| cat \\| cat (target: shm median ≤ this) | {pipes} |");
    println!();
}
