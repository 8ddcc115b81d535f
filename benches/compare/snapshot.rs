//! Snapshots against a file in /dev/shm, and how soon a follower sees a
//! published version.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shm_tools::address::{PosixName, Target};
use shm_tools::layout::snapshot::{self, Publish, Snapshot};
use shm_tools::segment::{Create, Segment};

use crate::measure::{make_data, median, ms, peak_rss, ratio, sh};
use crate::{READ, WRITE};

pub fn snapshot(dir: &Path) {
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

pub fn follow_latency() {
    const VERSIONS: usize = 1000;
    let name = format!("shm-bench-follow-{}", std::process::id());
    let target = Target::Name(PosixName::parse(&name).expect("name"));
    let create = Create {
        size: 64 << 10,
        mode: 0o600,
        exclusive: true,
    };
    let (segment, _) = Segment::open_or_create(&target, &create).expect("segment");
    let framed =
        Snapshot::for_writing(segment.mapping(), &target, &snapshot::silent).expect("framed");
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
