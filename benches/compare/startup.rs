//! Start-up time of both tools against the classic C writer and reader.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{ms, ratio};
use crate::{READ, WRITE};

const WRITER_C: &str = include_str!("../../tests/classic/writer.c");
const READER_C: &str = include_str!("../../tests/classic/reader.c");

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

pub fn startup(dir: &Path) {
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
