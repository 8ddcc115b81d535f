//! `--list --unused [--remove]` in a private machine, finding and removing
//! only what nobody uses, and `--limits` with the kernel values and
//! /dev/shm use.
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs `script` with `sh` as pid 1 of new PID, IPC and mount namespaces
/// with their own /proc and an empty /dev/shm (so `--unused --remove` sees
/// only its own segments and every process), $SHM_WRITE and $SHM_READ
/// naming the binaries; None where that is not permitted.
fn in_private_machine(script: &str) -> Option<Output> {
    const NAMESPACES: [&str; 5] = ["--pid", "--fork", "--mount-proc", "--ipc", "--mount"];
    let setup = "mount --make-rprivate / && mount -t tmpfs tmpfs /dev/shm";
    let probe = Command::new("unshare")
        .args(NAMESPACES)
        .args(["sh", "-c", setup])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make private PID, IPC and mount namespaces");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(NAMESPACES)
        .args(["sh", "-ec"])
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
