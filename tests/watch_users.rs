//! Who uses a segment: `--info`/`--list` users, foreign C and Python
//! programs too, resident size, and processes one may not inspect.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
// The `--info --json` of a segment, or None while it is missing.
use common::info_if_any as info_of;

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
