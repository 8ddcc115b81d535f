//! Who uses a segment, as `--info`'s users and `--list --unused` decide it,
//! when processes try to hide: a non-UTF-8 file mapped beside the segment,
//! the segment held open through another mount of the same tmpfs, and
//! users in PID namespaces that /proc does not show.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The pids `--info` names as users of `seg`, with their fd counts.
fn user_pids(info: &Value) -> Vec<(i64, u64)> {
    info["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["pid"].as_i64().unwrap(), u["fds"].as_u64().unwrap()))
        .collect()
}

fn scratch(what: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "unused-{what}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_user_that_also_maps_a_non_utf8_file_is_seen() {
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        eprintln!("skipped: no python3");
        return;
    }
    let seg = Seg::name();
    write(&strs(&seg.args), b"precious").ok();
    let dir = scratch("latin1");
    let script = r#"
import mmap, os, sys
name, where = sys.argv[1], os.fsencode(sys.argv[2])
seg = mmap.mmap(os.open("/dev/shm/" + name, os.O_RDWR), 0)
g = os.open(where + b"/caf\xe9.dat", os.O_RDWR | os.O_CREAT, 0o600)
os.write(g, b"x" * 4096)
other = mmap.mmap(g, 4096)
os.close(g)
print("ready", flush=True)
sys.stdin.read()
"#;
    let holder = Live::start(
        Command::new("python3")
            .args(["-c", script, seg.name_value().unwrap()])
            .arg(&dir),
    );
    holder.wait_stdout(Duration::from_secs(20), "ready", |o| o == b"ready\n");
    let seen = info(&seg);
    let pid = i64::from(holder.pid());
    assert!(
        user_pids(&seen).iter().any(|(p, _)| *p == pid),
        "the holder {pid} is a user: {seen}"
    );
    assert_eq!(seen["unused"], false, "{seen}");
    drop(holder);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_user_that_holds_it_open_through_a_bind_mount_is_seen() {
    if !is_root() {
        eprintln!("skipped: needs root for a bind mount");
        return;
    }
    let seg = Seg::name();
    write(&strs(&seg.args), b"precious").ok();
    let dir = scratch("bind");
    // In a private mount namespace: another view of the same /dev/shm, as a
    // chroot jail or a container has it, and a holder that only keeps the
    // object open through it.
    let script = r#"
        mount --bind /dev/shm "$VIEW"
        sleep 30 3<"$VIEW/$NAME" & holder=$!
        while [ ! -e /proc/$holder/fd/3 ]; do sleep 0.01; done
        echo "holder $holder"
        "$SHM_READ" -n "$NAME" --info --json
        kill $holder
    "#;
    let out = run(
        Command::new("unshare")
            .args(["--mount", "sh", "-ec", script])
            .env("VIEW", &dir)
            .env("NAME", seg.name_value().unwrap())
            .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read")),
        b"",
    );
    std::fs::remove_dir_all(&dir).ok();
    if out.code() != Some(0) && !out.stdout_str().contains("holder ") {
        eprintln!("skipped: cannot bind-mount in a private mount namespace\n{out}");
        return;
    }
    out.ok();
    let text = out.stdout_str();
    let (first, json) = text.split_once('\n').unwrap();
    let pid: i64 = first.strip_prefix("holder ").unwrap().parse().unwrap();
    let seen: Value = serde_json::from_str(json.trim()).unwrap();
    assert!(
        user_pids(&seen).contains(&(pid, 1)),
        "the holder {pid} is a user through its fd: {seen}"
    );
    assert_eq!(seen["unused"], false, "{seen}");
}
