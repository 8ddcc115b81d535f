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

mod log;
mod measure;
mod snapshot;
mod startup;
mod stats;
mod stream;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::resource::{UsageWho, getrusage};

use log::log_lines;
use snapshot::{follow_latency, snapshot};
use startup::startup;
use stats::stats_overhead;
use stream::stream_throughput;

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
