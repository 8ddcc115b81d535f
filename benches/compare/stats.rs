//! What a `shm-read --stats` watcher costs a busy log writer.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use crate::measure::{median, ms, ratio};
use crate::{READ, WRITE};

/// What a `shm-read --stats 10ms` watcher costs a busy log writer: the
/// same `shm-write --lines` of the log file alone, watched, and with the
/// same watcher on another (idle) log, the control: a process that wakes
/// 100 times a second without touching the writer's segment. The three
/// alternate round by round (so a disturbance on a shared machine hits
/// all three).
pub fn stats_overhead(dir: &Path) {
    // Long enough for the watcher to wake some 20 times per write.
    let count: usize = std::env::var("SHM_BENCH_STATS_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds = 31;
    let lines = dir.join("stats-lines.txt");
    let mut text = Vec::new();
    for i in 0..count {
        text.extend_from_slice(
            format!("{i:08} GET /api/items?page={} 200 OK\n", i % 97).as_bytes(),
        );
    }
    std::fs::write(&lines, &text).expect("lines file");
    let name = format!("shm-bench-stats-{}", std::process::id());
    let other = format!("shm-bench-stats-idle-{}", std::process::id());
    create_log(&other);
    let once = |watch: Option<&str>| write_once(&name, &lines, watch);
    let arms: [Option<&str>; 3] = [None, Some(&name), Some(&other)];
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut cpus: [Vec<Duration>; 3] = Default::default();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut this = [(Duration::ZERO, Duration::ZERO); 3];
        for k in 0..3 {
            let arm = (round + k) % 3;
            this[arm] = once(arms[arm]);
        }
        for arm in 0..3 {
            times[arm].push(this[arm].0);
            cpus[arm].push(this[arm].1);
            ratios[arm].push(this[arm].0.as_secs_f64() / this[0].0.as_secs_f64());
        }
    }
    remove_log(&other);
    print_stats_overhead(count, rounds, &times, &cpus, &ratios);
}

/// Makes the 32 MiB log `log`.
fn create_log(log: &str) {
    let made = Command::new(WRITE)
        .args(["--lines", "-s", "32M", "-n", log])
        .stdin(Stdio::null())
        .status()
        .expect("create log");
    assert!(made.success(), "cannot create the log");
}

fn remove_log(log: &str) {
    let _ = Command::new(READ)
        .args(["--remove", "-n", log])
        .stdout(Stdio::null())
        .status();
}

/// One write of `lines` into a new log `name`, with a `--stats` watcher
/// on `watch` if given: its wall time and CPU time.
fn write_once(name: &str, lines: &Path, watch: Option<&str>) -> (Duration, Duration) {
    create_log(name);
    let watcher = watch.map(|log| {
        let mut child = Command::new(READ)
            .args(["--stats", "10ms", "-n", log])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("watcher");
        // Running once its header is out.
        let mut byte = [0u8; 1];
        let out = child.stdout.as_mut().expect("watcher stdout");
        while out.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
        child
    });
    // The writer is the only child reaped between the two readings, so
    // their difference is its CPU time (user + system).
    let cpu_before = children_cpu();
    let started = Instant::now();
    let status = Command::new(WRITE)
        .args(["--lines", "-n", name])
        .stdin(File::open(lines).expect("lines"))
        .status()
        .expect("writer");
    let elapsed = started.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    assert!(status.success(), "writer failed");
    remove_log(name);
    if let Some(mut child) = watcher {
        let _ = child.kill();
        let _ = child.wait();
    }
    (elapsed, cpu)
}

/// User + system time of the children reaped so far.
fn children_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    time(usage.user_time()) + time(usage.system_time())
}

fn print_stats_overhead(
    count: usize,
    rounds: usize,
    times: &[Vec<Duration>; 3],
    cpus: &[Vec<Duration>; 3],
    ratios: &[Vec<f64>; 3],
) {
    println!(
        "## stats: {count} lines into a log, alone and watched by `shm-read --stats 10ms` \
         ({rounds} rounds, the three arms interleaved; medians)"
    );
    println!();
    println!(
        "| writer | wall time | ratio of medians | per-round ratio: median (range) | writer CPU | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let alone_cpu = median(cpus[0].clone());
    let alone = median(times[0].clone());
    for (arm, label) in [
        "alone",
        "watched: --stats 10ms on this log",
        "control: --stats 10ms on another, idle log",
    ]
    .iter()
    .enumerate()
    {
        let time = median(times[arm].clone());
        let mut r = ratios[arm].clone();
        r.sort_by(f64::total_cmp);
        let cpu = median(cpus[arm].clone());
        println!(
            "| {label} | {} | {} | {:.2}x ({:.2}x–{:.2}x) | {} | {} |",
            ms(time),
            ratio(time, alone),
            r[r.len() / 2],
            r[0],
            r[r.len() - 1],
            ms(cpu),
            ratio(cpu, alone_cpu)
        );
    }
    println!();
}
