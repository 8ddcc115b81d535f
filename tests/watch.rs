//! Watching segments: `--stats` rates from header counters, who uses a
//! segment (`--info`/`--list` users, foreign C and Python programs too),
//! `--list --unused [--remove]`, resident size, and `--limits`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The JSON lines a finished `--stats --json` printed.
fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

fn sum(lines: &[Value], field: &str) -> u64 {
    lines.iter().map(|l| l[field].as_u64().unwrap()).sum()
}

/// `n` records of `len - 1` letters and a newline.
fn records(n: usize, len: usize) -> Vec<u8> {
    let mut line = vec![b'x'; len - 1];
    line.push(b'\n');
    line.repeat(n)
}

/// Starts `--stats --json` and waits for its first line.
fn start_stats(seg: &Seg, more: &[&str]) -> Live {
    let mut args = seg.with(&["--stats"]);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args.push("--json".into());
    let live = Live::start(&mut read_cmd(&strs(&args)));
    live.wait_stdout(Duration::from_secs(20), "a first line", |o| {
        o.contains(&b'\n')
    });
    live
}

#[test]
fn stats_counts_log_records_and_bytes_exactly() {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "--size", "64K"])),
        &records(5, 8),
    )
    .ok();
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    // 10 records of 8 bytes: a 24-byte record header (layout version 2,
    // with the append time) + 8 bytes each.
    write(&strs(&seg.with(&["--lines"])), &records(10, 8)).ok();
    let out = stats.finish(Duration::from_secs(20));
    out.ok();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["records"], 0, "{out}");
    assert_eq!(sum(&lines[1..], "records"), 10, "{out}");
    assert_eq!(sum(&lines[1..], "bytes"), 10 * 32, "{out}");
    assert_eq!(sum(&lines, "overwritten"), 0, "{out}");
    let last = &lines[2];
    assert_eq!(last["layout"], "log");
    assert_eq!(last["records_held"], 15, "{out}");
    assert_eq!(last["lossless_followers"], serde_json::json!([]));
    // Rates are per measured second between two readings.
    for line in &lines {
        let secs = line["interval_s"].as_f64().unwrap();
        assert!(secs >= 0.99, "{out}");
        let rate = line["records_per_s"].as_f64().unwrap();
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let expected = line["records"].as_u64().unwrap() as f64 / secs;
        assert!((rate - expected).abs() < 0.1, "{out}");
    }
}

#[test]
fn stats_counts_what_a_small_log_overwrote() {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "--size", "4K"])),
        &records(500, 8),
    )
    .ok();
    let held = info(&seg)["records_held"].as_u64().unwrap();
    assert!(held < 500);
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    write(&strs(&seg.with(&["--lines"])), &records(100, 8)).ok();
    let out = stats.finish(Duration::from_secs(20));
    let lines = json_lines(&out);
    assert_eq!(sum(&lines, "records"), 100, "{out}");
    assert_eq!(sum(&lines, "overwritten"), 100, "{out}");
    assert_eq!(lines[2]["records_held"], held, "{out}");
    assert!(lines[2]["fill"].as_f64().unwrap() > 0.9, "{out}");
}

#[test]
fn stats_shows_a_stopped_lossless_followers_lag() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), &records(3, 4)).ok();
    let mut follower = Live::start(&mut read_cmd(&strs(&seg.with(&["-F", "--lossless"]))));
    follower.wait_stdout(Duration::from_secs(20), "the 3 records", |o| o.len() == 12);
    let pid = nix::unistd::Pid::from_raw(follower.pid().cast_signed());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    write(&strs(&seg.with(&["--lines"])), &records(5, 4)).ok();
    let out = read(&strs(
        &seg.with(&["--stats", "100ms", "--count", "1", "--json"]),
    ));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    follower.kill();
    out.ok();
    let followers = json_lines(&out)[0]["lossless_followers"].clone();
    assert_eq!(followers.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(followers[0]["lag_records"], 5, "{out}");
    // 4 bytes of content (padded to 8) and a 24-byte header each.
    assert_eq!(followers[0]["lag_bytes"], 5 * 32, "{out}");
}

#[test]
fn stats_counts_snapshot_versions() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"v0").ok();
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    for v in 1..=4 {
        write(&strs(&seg.args), format!("version {v}").as_bytes()).ok();
    }
    let out = stats.finish(Duration::from_secs(20));
    let lines = json_lines(&out);
    assert_eq!(sum(&lines, "versions"), 4, "{out}");
    assert_eq!(lines[2]["layout"], "framed");
    assert_eq!(lines[2]["content_length"], 9);
}

#[test]
fn stats_on_a_full_stream_shows_the_writer_waiting() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(
        &seg.with(&["--stream", "--size", "8K"]),
    )));
    writer.send(&vec![7u8; 64 * 1024]);
    let until = Instant::now() + Duration::from_secs(20);
    // Full: the writer sleeps until a reader comes.
    while info_of(&seg).is_none_or(|i| i["bytes_in_flight"] != i["capacity"]) {
        assert!(Instant::now() < until, "the ring never filled");
        thread::sleep(Duration::from_millis(10));
    }
    let out = read(&strs(
        &seg.with(&["--stats", "500ms", "--count", "1", "--json"]),
    ));
    out.ok();
    let line = &json_lines(&out)[0];
    assert_eq!(line["layout"], "stream");
    assert_eq!(line["fill"].as_f64(), Some(1.0), "{out}");
    assert_eq!(line["bytes"], 0, "{out}");
    assert!(line["writer_waited"].as_f64().unwrap() > 0.5, "{out}");
    // Now read it all: the stats watcher took nothing from it.
    writer.close_stdin();
    let drained = read(&strs(&seg.with(&["--stream"])));
    drained.ok();
    assert_eq!(drained.stdout.len(), 64 * 1024);
    writer.finish(Duration::from_secs(20)).ok();
}

fn info_of(seg: &Seg) -> Option<Value> {
    let out = read(&strs(&seg.with(&["--info", "--json"])));
    (out.code() == Some(0))
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[test]
fn stats_text_lines_up_and_ends_when_the_segment_is_removed() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"one\n").ok();
    let stats = Live::start(&mut read_cmd(&strs(&seg.with(&["--stats", "100ms"]))));
    stats.wait_stdout(Duration::from_secs(20), "two lines", |o| {
        String::from_utf8_lossy(o).lines().count() >= 2
    });
    read(&strs(&seg.with(&["--remove"]))).ok();
    let out = stats.finish(Duration::from_secs(20));
    out.ok();
    let text = out.stdout_str();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("TIME      RECORDS/S"), "{text}");
    let at = header.find("BYTES/S").unwrap();
    for line in lines {
        assert_eq!(line.find(" B/s").map(|i| i < at + 10), Some(true), "{text}");
        assert_eq!(&line[at - 2..at], "  ", "columns line up:\n{text}");
    }
}

#[test]
fn stats_into_a_closed_pipe_exits_quietly() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"one\n").ok();
    let script = format!(
        "set -o pipefail; '{}' {} --stats 20ms | head -n 3",
        env!("CARGO_BIN_EXE_shm-read"),
        seg.args.join(" ")
    );
    let out = run(Command::new("bash").arg("-c").arg(&script), b"");
    out.ok();
    assert_eq!(out.stdout_str().lines().count(), 3);
    assert_eq!(out.stderr, "", "{out}");
}

#[test]
fn stats_refuses_what_it_cannot_watch() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--raw"])), b"c string").ok();
    read(&strs(&seg.with(&["--stats", "--count", "1"])))
        .expect_code(1)
        .stderr_has(&["no counters", "--info"]);
    let missing = Seg::name();
    read(&strs(&missing.with(&["--stats"]))).expect_code(3);
    for bad in [
        &["--stats", "1ms"][..],
        &["--stats", "--count", "0"],
        &["--count", "2"],
        &["--stats", "--info"],
    ] {
        read(&strs(&seg.with(bad))).expect_code(2);
    }
}

#[test]
fn list_stats_is_one_table_of_every_segment() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a\nb\n").ok();
    let snapshot = Seg::key();
    write(&strs(&snapshot.args), b"state").ok();
    let out = read(&["--list", "--stats", "200ms", "--count", "1", "--json"]);
    out.ok();
    let tables = json_lines(&out);
    assert_eq!(tables.len(), 1);
    let rows = tables[0].as_array().unwrap();
    let row = |address: String| {
        rows.iter()
            .find(|r| r["segment"] == address)
            .unwrap_or_else(|| panic!("{address} missing: {out}"))
    };
    assert_eq!(row(format!("-n {}", log.args[1]))["layout"], "log");
    assert_eq!(row(format!("-n {}", log.args[1]))["records"], 0);
    assert_eq!(row(format!("-k {}", snapshot.args[1]))["layout"], "framed");

    let text = read(&["--list", "--stats", "100ms", "--count", "2"])
        .ok()
        .stdout_str();
    let tables: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(tables.len(), 2, "{text}");
    for table in tables {
        let mut lines = table.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("SEGMENT"), "{table}");
        let at = header.find("LAYOUT").unwrap();
        for line in lines {
            assert_eq!(&line[at - 2..at], "  ", "{table}");
        }
    }
}

/// A scratch directory for a foreign program.
fn scratch(what: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "watch-{what}-{}-{:?}",
        std::process::id(),
        thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The users --info names, but for other tests' `--list --stats`, which
/// has every segment attached while it runs.
fn users(info: &Value) -> Vec<(i64, String)> {
    info["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["pid"].as_i64().unwrap(),
                u["command"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, command)| command != "shm-read")
        .collect()
}

#[test]
fn info_and_list_name_the_c_program_that_has_a_segment_attached() {
    let dir = scratch("c");
    let Some((writer, _)) = compile_classic(&dir) else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let shmfile = dir.join("shmfile");
    std::fs::write(&shmfile, b"").unwrap();
    let key = shm_tools::sys::ftok(&shmfile, 65).unwrap();
    let seg = Seg::guard_key(key);
    // writer.c attaches, then waits at fgets for its line (its prompt
    // stays in its stdio buffer: stdout is a pipe).
    let mut c = Live::start(Command::new(&writer).current_dir(&dir));
    let until = Instant::now() + Duration::from_secs(20);
    let found = loop {
        if let Some(found) = info_of(&seg).filter(|i| i["attach_count"] == 1) {
            break found;
        }
        assert!(Instant::now() < until, "writer.c never attached");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(found["layout"], "foreign");
    assert_eq!(
        users(&found),
        vec![(i64::from(c.pid().cast_signed()), "writer".to_owned())]
    );
    let c_user = found["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["command"] == "writer");
    assert_eq!(c_user.unwrap()["mappings"], 1, "{found}");
    assert_eq!(found["unused"], false);
    assert!(found["resident"].as_u64().is_some());
    let text = read(&strs(&seg.with(&["--info"]))).ok().stdout_str();
    assert!(
        text.contains(&format!("{} writer (mapped)", c.pid())),
        "{text}"
    );
    let listing = read(&["--list"]).ok().stdout_str();
    let row = listing
        .lines()
        .find(|l| l.starts_with(&format!("-k {key} ")))
        .unwrap_or_else(|| panic!("not listed:\n{listing}"));
    assert!(row.contains(&format!("{}/writer", c.pid())), "{row}");

    c.send(b"bye\n");
    c.finish(Duration::from_secs(20)).ok();
    let after = info(&seg);
    assert_eq!(users(&after), vec![]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn info_names_a_python_shared_memory_holder_and_its_resident_size() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    let program = format!(
        "from multiprocessing import shared_memory, resource_tracker\n\
         import sys\n\
         s = shared_memory.SharedMemory(name='{name}', create=True, size=1 << 20)\n\
         resource_tracker.unregister(s._name, 'shared_memory')\n\
         s.buf[:5] = b'hello'\n\
         print('ready', flush=True)\n\
         sys.stdin.read()\n\
         s.close()\n"
    );
    let py = Live::start(Command::new("python3").arg("-c").arg(&program));
    py.wait_stdout(Duration::from_secs(20), "ready", |o| {
        o.starts_with(b"ready")
    });
    let found = info(&seg);
    let pid = i64::from(py.pid().cast_signed());
    let me = found["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["pid"] == pid)
        .unwrap_or_else(|| panic!("python not named: {found}"));
    assert!(
        me["command"].as_str().unwrap().starts_with("python"),
        "{found}"
    );
    assert_eq!(me["mappings"], 1, "{found}");
    // SharedMemory's descriptor, and the one Python's mmap keeps (a dup).
    assert!(me["fds"].as_u64().unwrap() >= 1, "{found}");
    // One page written of a sparse 1 MiB object.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(found["resident"], page, "{found}");
    assert_eq!(found["size"], 1 << 20);
    // It ends without unlinking: a leftover that nobody uses.
    py.finish(Duration::from_secs(20)).ok();
    let after = info(&seg);
    assert_eq!(users(&after), vec![]);
}

#[test]
fn resident_size_of_written_segments() {
    // 300,000 bytes in 1M: at least those are resident, and not more
    // than 1 MiB (POSIX) or 2 MiB (System V).
    for (seg, seed, most) in [(Seg::name(), 3, 1 << 20), (Seg::key(), 4, 2 << 20)] {
        write(
            &strs(&seg.with(&["--size", "1M"])),
            &random_bytes(300_000, seed),
        )
        .ok();
        let found = info(&seg);
        let resident = found["resident"].as_u64().unwrap();
        assert!((300_000..=most).contains(&resident), "{found}");
    }
    let listing = read(&["--list"]).ok().stdout_str();
    assert!(
        listing.lines().next().unwrap().contains(" RSS "),
        "{listing}"
    );
}

#[test]
fn processes_one_may_not_inspect_are_counted_not_guessed() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv to drop to nobody");
        return;
    }
    let seg = Seg::key();
    write(&strs(&seg.with(&["--mode", "0644"])), b"shared").ok();
    // A root follower keeps it attached.
    let follower = Live::start(&mut read_cmd(&strs(&seg.with(&["-F"]))));
    follower.wait_stdout(Duration::from_secs(20), "the content", |o| o == b"shared");
    let out = run(
        &mut as_nobody("shm-read", &strs(&seg.with(&["--info", "--json"]))),
        b"",
    );
    out.ok();
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users(&seen), vec![], "{seen}");
    assert!(seen["uninspectable"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["attach_unseen"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["unused"], false, "{seen}");
    // Root sees who it is.
    let root = info(&seg);
    let pid = i64::from(follower.pid().cast_signed());
    assert!(
        root["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["pid"] == pid),
        "{root}"
    );
    drop(follower);
}

/// Runs `script` with `sh` as pid 1 of new PID, IPC and mount namespaces
/// with their own /proc and an empty /dev/shm (so `--unused --remove` sees
/// only its own segments and every process), $SHM_WRITE and $SHM_READ
/// naming the binaries; None where that is not permitted.
fn in_private_machine(script: &str) -> Option<Output> {
    let setup = "mount --make-rprivate / && mount -t tmpfs tmpfs /dev/shm";
    let probe = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--ipc",
            "--mount",
            "sh",
            "-c",
            setup,
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make private PID, IPC and mount namespaces");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--ipc",
        "--mount",
        "sh",
        "-ec",
    ])
    .arg(format!("{setup}\n{script}"))
    .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write"))
    .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read"));
    let out = run(&mut cmd, b"");
    out.ok();
    Some(out)
}

#[test]
fn list_unused_finds_and_removes_only_what_nobody_uses() {
    // In a PID namespace of its own, /proc does not show the processes of
    // the namespaces above: a POSIX object nobody here uses may be used
    // there, so it is never unused; System V has the kernel's attach count.
    let Some(out) = in_private_machine(
        r#"
        echo left | "$SHM_WRITE" -n leftover
        echo held | "$SHM_WRITE" -n held
        echo sysv | "$SHM_WRITE" -k 0x5157
        echo attached | "$SHM_WRITE" -k 0x5158
        "$SHM_READ" -F -n held > /dev/null & one=$!
        "$SHM_READ" -F -k 0x5158 > /dev/null & two=$!
        sleep 0.5
        echo "== info"
        "$SHM_READ" -n leftover --info
        echo "== unused"
        "$SHM_READ" --list --unused
        echo "== json"
        "$SHM_READ" --list --unused --json
        echo "== remove"
        "$SHM_READ" --list --unused --remove
        echo "== left"
        ls /dev/shm
        "$SHM_READ" --list
        kill $one $two
        "#,
    ) else {
        return;
    };
    let text = out.stdout_str();
    let part = |name: &str| {
        let start = text.find(&format!("== {name}\n")).unwrap() + name.len() + 4;
        let end = text[start..].find("== ").map_or(text.len(), |e| start + e);
        text[start..end].to_owned()
    };
    let why = "unknown (processes of other PID namespaces are not visible here)";
    assert!(
        part("info")
            .lines()
            .any(|l| l.starts_with("unused:") && l.ends_with(&format!(" {why}"))),
        "{text}"
    );
    let unused = part("unused");
    assert!(unused.contains("-k 0x00005157 "), "{text}");
    assert!(
        !unused.contains("held") && !unused.contains("leftover") && !unused.contains("0x00005158"),
        "{text}"
    );
    assert!(
        out.stderr
            .contains("processes of other PID namespaces are not visible here"),
        "{out}"
    );
    let json: Value = serde_json::from_str(part("json").trim()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{text}");
    let removed = part("remove");
    assert!(
        removed.contains(&format!("skipped POSIX name /leftover: unused {why}")),
        "{text}"
    );
    assert!(removed.contains("no process has it attached"), "{text}");
    let left = part("left");
    assert!(left.contains("held") && left.contains("leftover"), "{text}");
    assert!(
        left.contains("0x00005158") && !left.contains("0x00005157"),
        "{text}"
    );
    assert!(left.contains("/shm-read"), "the follower is named:\n{text}");
}

#[test]
fn list_unused_removes_a_posix_object_nobody_uses_where_every_process_is_seen() {
    let seg = Seg::name_with("shm-tools-unused-");
    write(&strs(&seg.args), b"left").ok();
    let name = seg.name_value().unwrap().to_owned();
    let seen = info(&seg);
    if seen["unused"] != true {
        // Outside the initial PID namespace, or with a process even root may
        // not inspect (pid 1 on some machines), no POSIX object is unused.
        let why = read(&strs(&seg.with(&["--info"]))).stdout_str();
        let why = why
            .lines()
            .find(|l| l.starts_with("unused:"))
            .unwrap_or("?")
            .to_owned();
        eprintln!("skipped: not every process can be inspected here ({why})");
        return;
    }
    let out = read(&["--list", "--unused", "--remove", "--prefix", &name]);
    out.ok();
    assert!(
        out.stdout_str()
            .contains(&format!("removed POSIX name /{name}: no process maps it")),
        "{out}"
    );
    assert!(!seg.exists(), "{out}");
}

#[test]
fn limits_show_the_kernel_values_and_dev_shm_use() {
    let out = read(&["--limits", "--json"]);
    out.ok();
    let limits: Value = serde_json::from_slice(&out.stdout).unwrap();
    let proc = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(limits["shmmni"]["limit"], proc("shmmni"));
    assert_eq!(limits["shmall"]["limit_pages"], proc("shmall"));
    assert_eq!(limits["shmmax"]["limit_bytes"], proc("shmmax"));
    let text = read(&["--limits"]).ok().stdout_str();
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("RESOURCE  DESCRIPTION"), "{text}");
    let at = header.find("LIMIT").unwrap();
    for line in text.lines().skip(1) {
        assert_eq!(&line[at - 2..at], "  ", "{text}");
    }
    for resource in ["SHMMNI", "SHMALL", "SHMMAX", "/dev/shm"] {
        assert!(text.contains(resource), "{text}");
    }

    let Some(small) = in_small_dev_shm(
        "head -c 300000 /dev/zero | $SHM_WRITE -n big && $SHM_READ --limits --json",
    ) else {
        return;
    };
    let json = small.lines().find(|l| l.starts_with('{')).unwrap();
    let limits: Value = serde_json::from_str(json).unwrap();
    assert_eq!(limits["dev_shm"]["size"], 1 << 20, "{small}");
    let used = limits["dev_shm"]["used"].as_u64().unwrap();
    assert!((300_000..1 << 20).contains(&used), "{small}");
    assert_eq!(
        limits["dev_shm"]["free"].as_u64().unwrap() + used,
        1 << 20,
        "{small}"
    );
}

#[test]
fn list_stats_names_a_segment_that_shrank_and_goes_on() {
    let mine = Seg::name();
    write(&strs(&mine.args), b"mine").ok();
    let theirs = Seg::name();
    write(&strs(&theirs.args), b"theirs").ok();
    let live = Live::start(&mut read_cmd(&[
        "--list", "--stats", "300ms", "--count", "3", "--json",
    ]));
    live.wait_stdout(Duration::from_secs(20), "a first table", |o| {
        o.contains(&b'\n')
    });
    // Another user truncates their own segment: not a failure of this run.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", theirs.name_value().unwrap()))
        .unwrap()
        .set_len(0)
        .unwrap();
    let out = live.finish(Duration::from_secs(30));
    out.ok();
    let tables = json_lines(&out);
    assert_eq!(tables.len(), 3, "{out}");
    let row = |table: &Value, seg: &Seg| {
        let address = format!("-n {}", seg.name_value().unwrap());
        table
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["segment"] == address)
            .cloned()
            .unwrap_or_else(|| panic!("{address} missing: {out}"))
    };
    let last = &tables[2];
    assert!(
        row(last, &theirs)["error"]
            .as_str()
            .is_some_and(|e| e.contains("shrank")),
        "{out}"
    );
    assert_eq!(row(last, &mine)["layout"], "framed", "{out}");
}

/// Stores `value` in the 32-bit header word at `offset` of the POSIX
/// object behind `seg`, as a forger with write access could.
fn poke32(seg: &Seg, offset: usize, value: u32) {
    seg.map_writable()
        .atomic_u32(offset)
        .unwrap()
        .store(value, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn stats_shows_a_version_counter_that_went_back_as_zero_and_says_so() {
    for json in [true, false] {
        let seg = Seg::name();
        for v in 1..=5 {
            write(&strs(&seg.args), format!("v{v}").as_bytes()).ok();
        }
        let mut args = seg.with(&["--stats", "300ms", "--count", "2"]);
        if json {
            args.push("--json".into());
        }
        let live = Live::start(&mut read_cmd(&strs(&args)));
        live.wait_stdout(Duration::from_secs(20), "a first line", |o| {
            o.contains(&b'\n')
        });
        // The version counter (at 24), one step back.
        poke32(&seg, 24, 3);
        let out = live.finish(Duration::from_secs(20));
        out.ok();
        if json {
            let lines = json_lines(&out);
            assert!(sum(&lines, "versions") == 0, "{out}");
            assert!(
                lines.iter().any(|l| l["counter_went_back"] == true),
                "{out}"
            );
        } else {
            assert!(out.stdout_str().contains("0 (counter went back)"), "{out}");
        }
    }
}
