//! Timing and measuring helpers every benchmark uses: test data, shell
//! runs, best and median of runs, ratios, and peak resident size.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn make_data(path: &Path, len: usize) {
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

pub fn sh(script: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .expect("sh");
    assert!(status.success(), "failed: {script}");
    started.elapsed()
}

pub fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().expect("runs > 0")
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

pub fn rss_of(stderr: &[u8]) -> i64 {
    String::from_utf8_lossy(stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib ").and_then(|v| v.parse().ok()))
        .unwrap_or(-1)
}

/// Peak RSS (KiB) of `program args < stdin > /dev/null`, through the
/// `--child-rss` helper.
pub fn peak_rss(program: &str, args: &[&str], stdin: Option<&Path>) -> i64 {
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
