//! Stream throughput: the ring against the C reference ring, a FIFO, a
//! file and pipes, with and without a busy core.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{best, make_data, ms, ratio, rss_of, sh};
use crate::{READ, WRITE};

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

pub fn stream_throughput(dir: &Path) {
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
