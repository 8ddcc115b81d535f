//! `cargo bench --bench compare`: shm-tools against a kernel pipe, a file
//! in /dev/shm and the classic C writer/reader, on this machine, in one run,
//! printed as ratios. Data lives in /dev/shm (tmpfs) so no disk is measured.
//!
//! Set SHM_BENCH_STREAM_MIB to change the stream size (default 1024),
//! SHM_BENCH_RUNS the stream runs per cell (default 3, best is shown),
//! SHM_BENCH_LOG_LINES the log's line count (default 200000),
//! SHM_BENCH_STATS_LINES the lines written under --stats (default 1000000), and
//! SHM_BENCH_ONLY=log, snapshot, startup, stream or stats to run only that
//! benchmark (`SHM_BENCH_ONLY=stream SHM_BENCH_STREAM_MIB=256` takes a few
//! minutes on 2 cores).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use shm_tools::address::{PosixName, Target};
use shm_tools::layout::snapshot::{Publish, Snapshot};
use shm_tools::segment::{Create, Segment};

const WRITE: &str = env!("CARGO_BIN_EXE_shm-write");
const READ: &str = env!("CARGO_BIN_EXE_shm-read");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Helper mode: run a command, report its peak RSS (KiB) on stderr.
    if args.get(1).map(String::as_str) == Some("--child-rss") {
        let status = Command::new(&args[2])
            .args(&args[3..])
            .status()
            .expect("spawn");
        let rss = getrusage(UsageWho::RUSAGE_CHILDREN)
            .expect("getrusage")
            .max_rss();
        eprintln!("peak-rss-kib {rss}");
        std::process::exit(status.code().unwrap_or(1));
    }
    let dir = PathBuf::from(format!("/dev/shm/shm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir in /dev/shm");
    let result = std::panic::catch_unwind(|| run_all(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run_all(dir: &Path) {
    println!("# shm-tools benchmark");
    println!(
        "machine: {}, {} cores, Linux {}",
        cpu_model(),
        cores(),
        kernel()
    );
    println!("date: {}", shm_tools::cmd::info::format_utc(unix_now()));
    println!();
    match std::env::var("SHM_BENCH_ONLY").as_deref() {
        Ok("log") => return log_lines(dir),
        Ok("snapshot") => return snapshot(dir),
        Ok("startup") => return startup(dir),
        Ok("stream") => return stream_throughput(dir),
        Ok("stats") => return stats_overhead(dir),
        _ => {}
    }
    stream_throughput(dir);
    snapshot(dir);
    startup(dir);
    follow_latency();
    log_lines(dir);
    stats_overhead(dir);
}

/// What a `shm-read --stats 10ms` watcher costs a busy log writer: the
/// same `shm-write --lines` of the log file alone, watched, and with the
/// same watcher on another (idle) log, the control: a process that wakes
/// 100 times a second without touching the writer's segment. The three
/// alternate round by round (so a disturbance on a shared machine hits
/// all three).
fn stats_overhead(dir: &Path) {
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
    let create = |log: &str| {
        let made = Command::new(WRITE)
            .args(["--lines", "-s", "32M", "-n", log])
            .stdin(Stdio::null())
            .status()
            .expect("create log");
        assert!(made.success(), "cannot create the log");
    };
    let remove = |log: &str| {
        let _ = Command::new(READ)
            .args(["--remove", "-n", log])
            .stdout(Stdio::null())
            .status();
    };
    create(&other);
    // watch: None (alone), Some(log) (a watcher on that log).
    let once = |watch: Option<&str>| {
        create(&name);
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
            .args(["--lines", "-n", &name])
            .stdin(File::open(&lines).expect("lines"))
            .status()
            .expect("writer");
        let elapsed = started.elapsed();
        let cpu = children_cpu().saturating_sub(cpu_before);
        assert!(status.success(), "writer failed");
        remove(&name);
        if let Some(mut child) = watcher {
            let _ = child.kill();
            let _ = child.wait();
        }
        (elapsed, cpu)
    };
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
    remove(&other);
    print_stats_overhead(count, rounds, &times, &cpus, &ratios);
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

fn log_lines(dir: &Path) {
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
    let pipes = latency_once(&latency, "cat | cat", &latency, latency_lines);
    println!("## log latency: {latency_lines} lines 1 ms apart, source → sink");
    println!();
    println!("| channel | result |");
    println!("|---|---|");
    println!("| shm-write --lines → shm-read --follow | {} |", shm.trim());
    println!("| cat \\| cat (target: shm median ≤ this) | {pipes} |");
    println!();
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn make_data(path: &Path, len: usize) {
    let mut file = File::create(path).expect("data file");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).expect("write data");
        left -= n;
    }
}

fn sh(script: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .expect("sh");
    assert!(status.success(), "failed: {script}");
    started.elapsed()
}

fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().expect("runs > 0")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// One stream transfer; returns wall time and both sides' peak RSS (KiB).
fn stream_once(data: &Path, name: &str, ring: &str) -> (Duration, i64, i64) {
    let me = std::env::current_exe().expect("bench path");
    let started = Instant::now();
    let writer = Command::new(&me)
        .args(["--child-rss", WRITE, "--stream", "-n", name, "-s", ring])
        .stdin(File::open(data).expect("data"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("writer");
    let reader = Command::new(&me)
        .args(["--child-rss", READ, "--stream", "--wait", "-n", name])
        .stdout(File::create("/dev/null").expect("/dev/null"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("reader");
    let w = writer.wait_with_output().expect("writer");
    let r = reader.wait_with_output().expect("reader");
    let elapsed = started.elapsed();
    assert!(w.status.success() && r.status.success(), "stream failed");
    (elapsed, rss_of(&w.stderr), rss_of(&r.stderr))
}

fn rss_of(stderr: &[u8]) -> i64 {
    String::from_utf8_lossy(stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib ").and_then(|v| v.parse().ok()))
        .unwrap_or(-1)
}

/// Builds /work/shared/perf/ring.c with a `ring`-byte data area into `dir`.
fn ring_reference(dir: &Path, ring: usize) -> Option<PathBuf> {
    let exe = dir.join(format!("ring-{ring}"));
    let built = Command::new("cc")
        .args(["-O2", &format!("-DRING={ring}"), "-o"])
        .arg(&exe)
        .arg("/work/shared/perf/ring.c")
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(exe)
}

/// Which side of a two-pipeline transfer starts first.
#[derive(Clone, Copy)]
enum First {
    Writer,
    Reader,
}

/// Runs `writer` and `reader` (shell scripts) as two unrelated pipelines
/// and times from the writer's start until both are done. The reader is
/// given 100 ms to set up when it starts first, outside the timing.
fn two_pipelines(writer: &str, reader: &str, first: First) -> Duration {
    let spawn = |script: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .expect("sh")
    };
    let (started, w, r) = match first {
        First::Writer => {
            let started = Instant::now();
            let w = spawn(writer);
            (started, w, spawn(reader))
        }
        First::Reader => {
            let r = spawn(reader);
            std::thread::sleep(Duration::from_millis(100));
            let started = Instant::now();
            (started, spawn(writer), r)
        }
    };
    let ok = [w, r]
        .into_iter()
        .all(|mut c| c.wait().is_ok_and(|s| s.success()));
    let elapsed = started.elapsed();
    assert!(ok, "failed: {writer} / {reader}");
    elapsed
}

/// A process that keeps one core busy until dropped: the busy-core pass.
struct BusyCore(std::process::Child);

impl BusyCore {
    fn start() -> BusyCore {
        BusyCore(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spinner"),
        )
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One row per ring size: shm-tools against ring.c built with that size,
/// writer first and reader first; best of `runs` each, interleaved.
fn ring_table(dir: &Path, data: &Path, sizes: &[(&str, usize)], runs: usize, rss: bool) {
    let d = data.display();
    let pid = std::process::id();
    print!(
        "| ring | shm, writer first | ring.c | ratio (target ≤ 1.15x) | shm, reader first | ring.c | ratio (target ≤ 1.15x) |"
    );
    println!(
        "{}",
        if rss {
            " writer / reader peak RSS |"
        } else {
            ""
        }
    );
    println!(
        "|---|---|---|---|---|---|---|{}",
        if rss { "---|" } else { "" }
    );
    for &(label, bytes) in sizes {
        let Some(c_ring) = ring_reference(dir, bytes) else {
            println!("| {label} | skipped (needs cc and /work/shared/perf/ring.c) |");
            continue;
        };
        let shm_w = format!("{WRITE} --stream -n shm-bench-ring-{pid} -s {label} < {d}");
        let shm_r = format!("{READ} --stream --wait -n shm-bench-ring-{pid} > /dev/null");
        let c_w = format!("{} w /shm-bench-cring-{pid} < {d}", c_ring.display());
        let c_r = format!("{} r /shm-bench-cring-{pid} > /dev/null", c_ring.display());
        let mut cells = Vec::new();
        for first in [First::Writer, First::Reader] {
            let mut ours = Duration::MAX;
            let mut theirs = Duration::MAX;
            for _ in 0..runs {
                theirs = theirs.min(two_pipelines(&c_w, &c_r, first));
                ours = ours.min(two_pipelines(&shm_w, &shm_r, first));
            }
            cells.push(format!(
                "{} | {} | {}",
                ms(ours),
                ms(theirs),
                ratio(ours, theirs)
            ));
        }
        print!("| {label} | {} | {} |", cells[0], cells[1]);
        if rss {
            let name = format!("shm-bench-stream-{pid}");
            let (_, w, r) = stream_once(data, &name, label);
            print!(" {} / {} MiB |", w / 1024, r / 1024);
        }
        println!();
    }
    println!();
}

fn stream_throughput(dir: &Path) {
    let mib: usize = std::env::var("SHM_BENCH_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runs: usize = std::env::var("SHM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let data = dir.join("stream.in");
    make_data(&data, mib << 20);
    let sizes = [
        ("64K", 64 << 10),
        ("256K", 256 << 10),
        ("1M", 1 << 20),
        ("4M", 4 << 20),
        ("16M", 16 << 20),
    ];
    println!(
        "## stream: {mib} MiB from a tmpfs file to /dev/null, against ring.c with the same size (best of {runs})"
    );
    println!();
    println!("`shm-write --stream -s RING < file`, `shm-read --stream > /dev/null`:");
    println!();
    ring_table(dir, &data, &sizes, runs, true);
    println!("The same with one core kept busy by `sh -c 'while :; do :; done'`:");
    println!();
    {
        let _busy = BusyCore::start();
        ring_table(dir, &data, &sizes, runs, false);
    }

    fifo_and_pipes(dir, &data, mib, runs);
    let _ = std::fs::remove_file(&data);
}

/// The default ring against a named FIFO, kernel pipes and ring.c, in the
/// file shape (`< file` / `> /dev/null`) and the pipeline shape
/// (`cat file |` / `| cat`).
fn fifo_and_pipes(dir: &Path, data: &Path, mib: usize, runs: usize) {
    let d = data.display();
    let pid = std::process::id();
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .expect("mkfifo");
    let f = fifo.display();
    let name = format!("shm-bench-pipeline-{pid}");
    let sh_w = |s: &str| format!("{WRITE} --stream -n {name} {s}");
    let sh_r = |s: &str| format!("{READ} --stream --wait -n {name} {s}");
    let floor = best(runs, || sh(&format!("cat {d} > /dev/null")));
    let pipe = best(runs, || sh(&format!("cat {d} | cat > /dev/null")));
    let chain = best(runs, || sh(&format!("cat {d} | cat | cat > /dev/null")));
    let both = |w: &str, r: &str| best(runs, || two_pipelines(w, r, First::Reader));
    let fifo_file = both(&format!("cat {d} > {f}"), &format!("cat {f} > /dev/null"));
    let fifo_pipeline = both(
        &format!("cat {d} | cat > {f}"),
        &format!("cat {f} | cat > /dev/null"),
    );
    let shm_file = both(&sh_w(&format!("< {d}")), &sh_r("> /dev/null"));
    let shm_pipeline = both(
        &format!("cat {d} | {}", sh_w("")),
        &format!("{} | cat > /dev/null", sh_r("")),
    );
    // ring.c with the default ring size, in both shapes: a bare ring's floor.
    let (c_file, c_pipeline) = match ring_reference(dir, 4 << 20) {
        Some(c_ring) => {
            let c = c_ring.display();
            let c_name = format!("/shm-bench-cpipeline-{pid}");
            (
                ms(both(
                    &format!("{c} w {c_name} < {d}"),
                    &format!("{c} r {c_name} > /dev/null"),
                )),
                ms(both(
                    &format!("cat {d} | {c} w {c_name}"),
                    &format!("{c} r {c_name} | cat > /dev/null"),
                )),
            )
        }
        None => ("-".into(), "-".into()),
    };
    let _ = std::fs::remove_file(&fifo);
    println!(
        "## stream against a named FIFO and kernel pipes: {mib} MiB, default 4M ring (best of {runs})"
    );
    println!();
    println!(
        "| shape | shm-tools | named FIFO (mkfifo) | ratio | kernel pipe | ratio | ring.c 4M |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| file: `shm-write --stream < file`, `shm-read --stream > /dev/null` | {} | {} | {} | {} (`cat file \\| cat`) | {} | {c_file} |",
        ms(shm_file),
        ms(fifo_file),
        ratio(shm_file, fifo_file),
        ms(pipe),
        ratio(shm_file, pipe)
    );
    println!(
        "| pipeline: `cat file \\| shm-write --stream`, `shm-read --stream \\| cat` | {} | {} | {} | {} (`cat file \\| cat \\| cat`) | {} | {c_pipeline} |",
        ms(shm_pipeline),
        ms(fifo_pipeline),
        ratio(shm_pipeline, fifo_pipeline),
        ms(chain),
        ratio(shm_pipeline, chain)
    );
    println!();
    println!(
        "FIFO file shape: `cat file > fifo`, `cat fifo > /dev/null`; FIFO pipeline shape: \
         `cat file | cat > fifo`, `cat fifo | cat > /dev/null`; reader started first. \
         Single read `cat file > /dev/null`: {}",
        ms(floor)
    );
    println!();
}

/// Peak RSS (KiB) of `program args < stdin > /dev/null`, through the
/// `--child-rss` helper.
fn peak_rss(program: &str, args: &[&str], stdin: Option<&Path>) -> i64 {
    let me = std::env::current_exe().expect("bench path");
    let input = stdin.map_or_else(Stdio::null, |p| Stdio::from(File::open(p).expect("input")));
    let out = Command::new(&me)
        .arg("--child-rss")
        .arg(program)
        .args(args)
        .stdin(input)
        .stdout(File::create("/dev/null").expect("/dev/null"))
        .stderr(Stdio::piped())
        .output()
        .expect("child");
    assert!(out.status.success(), "{program} failed");
    rss_of(&out.stderr)
}

fn snapshot(dir: &Path) {
    println!("## snapshot: publish and read, against a file in /dev/shm (median)");
    println!();
    println!(
        "| size | shm-write | write file | ratio (target ≤ 1.30x) | shm-read | read file | ratio (target ≤ 2.00x) | writer peak RSS | reader peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, len, runs) in [
        ("1 MiB", 1usize << 20, 41),
        ("64 MiB", 64 << 20, 9),
        ("256 MiB", 256 << 20, 7),
    ] {
        let data = dir.join("snap.in");
        make_data(&data, len);
        let copy = dir.join("snap.copy");
        let name = format!("shm-bench-snap-{}", std::process::id());
        let size = format!("{}", len * 2 + 4096);
        let d = data.display();
        let c = copy.display();
        sh(&format!("{WRITE} -n {name} -s {size} < {d}"));
        // Interleaved, so a disturbance on this shared machine hits both.
        let (mut ours_w, mut file_w, mut ours_r, mut file_r) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            ours_w.push(sh(&format!("{WRITE} -n {name} < {d}")));
            file_w.push(sh(&format!("cat {d} > {c}")));
            ours_r.push(sh(&format!("{READ} -n {name} > /dev/null")));
            file_r.push(sh(&format!("cat {c} > /dev/null")));
        }
        let rss_w = peak_rss(WRITE, &["-n", &name], Some(&data));
        let rss_r = peak_rss(READ, &["-n", &name], None);
        sh(&format!("{READ} -n {name} --remove > /dev/null"));
        let (ours_w, file_w, ours_r, file_r) = (
            median(ours_w),
            median(file_w),
            median(ours_r),
            median(file_r),
        );
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} MiB | {} MiB |",
            ms(ours_w),
            ms(file_w),
            ratio(ours_w, file_w),
            ms(ours_r),
            ms(file_r),
            ratio(ours_r, file_r),
            rss_w / 1024,
            rss_r / 1024
        );
        let _ = std::fs::remove_file(&data);
        let _ = std::fs::remove_file(&copy);
    }
    println!();
}

const WRITER_C: &str = include_str!("../tests/classic/writer.c");
const READER_C: &str = include_str!("../tests/classic/reader.c");

fn spawn_timed(program: &Path, args: &[&str], cwd: &Path, stdin: &[u8]) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("stdin");
    assert!(child.wait().expect("wait").success());
    started.elapsed()
}

fn startup(dir: &Path) {
    const ROUNDS: usize = 200;
    let classic = dir.join("classic");
    std::fs::create_dir_all(&classic).expect("classic dir");
    std::fs::write(classic.join("shmfile"), b"").expect("shmfile");
    for (name, src) in [("writer", WRITER_C), ("reader", READER_C)] {
        std::fs::write(classic.join(format!("{name}.c")), src).expect("source");
        let ok = Command::new("cc")
            .args(["-O2", "-o", name, &format!("{name}.c")])
            .current_dir(&classic)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("## startup: skipped (no C compiler)\n");
            return;
        }
    }
    let name = format!("shm-bench-start-{}", std::process::id());
    // Rounds alternate between the pairs, so a disturbance on this shared
    // machine hits both.
    let (mut ours, mut theirs) = ([Duration::ZERO; 2], [Duration::ZERO; 2]);
    for _ in 0..ROUNDS {
        ours[0] += spawn_timed(Path::new(WRITE), &["-n", &name], &classic, b"hi\n");
        ours[1] += spawn_timed(Path::new(READ), &["-n", &name, "--remove"], &classic, b"");
        theirs[0] += spawn_timed(&classic.join("writer"), &[], &classic, b"hi\n");
        theirs[1] += spawn_timed(&classic.join("reader"), &[], &classic, b"");
    }
    println!("## startup: `echo hi | write` + `read` (and remove), {ROUNDS} rounds");
    println!();
    println!("| | shm-tools | classic (cc -O2) | ratio (target ≤ 1.20x) |");
    println!("|---|---|---|---|");
    let per = |d: Duration| ms(d / u32::try_from(ROUNDS).expect("small"));
    for (label, o, t) in [
        ("write", ours[0], theirs[0]),
        ("read", ours[1], theirs[1]),
        ("round", ours[0] + ours[1], theirs[0] + theirs[1]),
    ] {
        println!("| {label} | {} | {} | {} |", per(o), per(t), ratio(o, t));
    }
    println!();
}

fn follow_latency() {
    const VERSIONS: usize = 1000;
    let name = format!("shm-bench-follow-{}", std::process::id());
    let target = Target::Name(PosixName::parse(&name).expect("name"));
    let create = Create {
        size: 64 << 10,
        mode: 0o600,
        exclusive: true,
    };
    let (segment, _) = Segment::open_or_create(&target, &create).expect("segment");
    let framed = Snapshot::for_writing(segment.mapping(), &target).expect("framed");
    framed.publish(b"0\n", Publish::Replace).expect("publish");
    let mut follower = Command::new(READ)
        .args(["-F", "-n", &name])
        .stdout(Stdio::piped())
        .spawn()
        .expect("follower");
    let mut out = follower.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let _ = out.read(&mut buf).expect("first version");
    let mut latencies = Vec::with_capacity(VERSIONS);
    for i in 1..=VERSIONS {
        std::thread::sleep(Duration::from_millis(1));
        let line = format!("{i}\n");
        let started = Instant::now();
        framed
            .publish(line.as_bytes(), Publish::Replace)
            .expect("publish");
        let mut got = Vec::new();
        while !got.ends_with(line.as_bytes()) {
            let n = out.read(&mut buf).expect("follower output");
            assert!(n > 0, "follower ended early");
            got.extend_from_slice(&buf[..n]);
        }
        latencies.push(started.elapsed());
    }
    segment.remove().expect("remove");
    let _ = follower.wait();
    latencies.sort();
    let p = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((latencies.len() - 1) as f64 * q) as usize;
        format!("{:.0} µs", latencies[i].as_secs_f64() * 1e6)
    };
    println!("## follow: publish → follower's stdout, {VERSIONS} versions 1 ms apart");
    println!();
    println!("| median (target < 1 ms) | p99 | max |");
    println!("|---|---|---|");
    println!("| {} | {} | {} |", p(0.5), p(0.99), p(1.0));
    println!();
}
