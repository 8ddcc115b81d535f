//! Owners' names in --list, --info and --owner: from /etc/passwd and
//! /etc/group, then getent(1) for names only NSS knows, and the number
//! where nobody knows it. The binaries are static, so a lookup that
//! glibc would hand to an NSS module (`passwd: files systemd`) must
//! never happen in-process: it crashed them.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

/// Makes the segment behind `seg` (a POSIX name) belong to `uid`:`gid`.
fn chown(seg: &Seg, uid: u32, gid: u32) {
    let path = format!("/dev/shm/{}", seg.name_value().unwrap());
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
}

#[test]
fn a_segment_of_an_owner_nobody_knows_is_listed_by_number() {
    if !is_root() {
        return;
    }
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    chown(&seg, 3_999_999_001, 3_999_999_002);
    let out = read(&["--list"]);
    out.ok();
    let name = seg.name_value().unwrap();
    let row = out
        .stdout_str()
        .lines()
        .find(|l| l.starts_with(&format!("-n {name} ")))
        .map_or_else(|| panic!("no row for {name}\n{out}"), str::to_owned);
    assert!(row.contains(" 3999999001 "), "{row}");
    let json = info(&seg);
    assert_eq!(json["user"], "3999999001", "{json}");
    assert_eq!(json["group"], "3999999002", "{json}");
}

#[test]
fn an_unknown_owner_name_is_a_usage_error_not_a_crash() {
    read(&["--list", "--owner", "no-such-user-of-shm-tools"])
        .expect_code(2)
        .stderr_has(&["is not a user name or uid"]);
}

/// Runs `script` with a fake getent(1) bind-mounted over the real one,
/// in a mount namespace of its own (the tools run getent by absolute
/// path, never from $PATH). `getent_body` is the fake's shell code.
/// None where that cannot be arranged (not root, no unshare).
fn with_fake_getent(getent_body: &str, script: &str) -> Option<Output> {
    if !is_root() {
        return None;
    }
    let dir = tempfile_dir("getent");
    let fake = dir.join("getent");
    std::fs::write(&fake, format!("#!/bin/sh\n{getent_body}\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let real = ["/usr/bin/getent", "/bin/getent"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --make-rprivate / && mount --bind {} {real} && {script}",
            fake.display()
        ))
        .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read"));
    let out = run_limited(&mut cmd, b"", std::time::Duration::from_secs(20));
    std::fs::remove_dir_all(&dir).unwrap();
    Some(out)
}

/// A getent(1) that knows one user and one group the files do not, as
/// LDAP or sssd would.
const LDAP_GETENT: &str = "case \"$1 $3\" in\n\
    'passwd 3999999011'|'passwd ldapuser') echo 'ldapuser:*:3999999011:3999999012::/:/bin/sh' ;;\n\
    'group 3999999012') echo 'ldapgroup:*:3999999012:' ;;\n\
    *) exit 2 ;;\nesac";

#[test]
fn names_only_nss_knows_come_from_getent() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    if !is_root() {
        return;
    }
    chown(&seg, 3_999_999_011, 3_999_999_012);
    let name = seg.name_value().unwrap().to_owned();
    let script = format!(
        "\"$SHM_READ\" -n {name} --info --json && \"$SHM_READ\" --list --owner ldapuser --prefix {name}"
    );
    let Some(out) = with_fake_getent(LDAP_GETENT, &script) else {
        return;
    };
    out.ok();
    let text = out.stdout_str();
    let json: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(json["user"], "ldapuser", "{json}");
    assert_eq!(json["group"], "ldapgroup", "{json}");
    assert!(text.contains(&format!("-n {name} ")), "{out}");
    assert!(text.contains(" ldapuser "), "{out}");
}

#[test]
fn a_getent_on_path_is_never_run() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    if !is_root() {
        return;
    }
    chown(&seg, 3_999_999_011, 3_999_999_012);
    let dir = tempfile_dir("path-getent");
    let planted = dir.join("getent");
    let ran = dir.join("ran");
    std::fs::write(&planted, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = read_cmd(&["--list"]);
    cmd.env("PATH", &path);
    run(&mut cmd, b"").ok();
    assert!(!ran.exists(), "the getent planted on PATH ran");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unresponsive_user_database_does_not_hang_a_listing() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    if !is_root() {
        return;
    }
    chown(&seg, 3_999_999_021, 3_999_999_022);
    let name = seg.name_value().unwrap().to_owned();
    // An LDAP server that never answers; 2 uids and 2 gids to ask about
    // would take minutes if each waited for it.
    let script = format!(
        "start=$(date +%s); \"$SHM_READ\" --list --prefix {name}; \
         echo elapsed $(( $(date +%s) - start ))"
    );
    let Some(out) = with_fake_getent("exec sleep 60", &script) else {
        return;
    };
    out.ok();
    let text = out.stdout_str();
    assert!(text.contains(" 3999999021 "), "{out}");
    let elapsed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("elapsed "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(elapsed < 10, "took {elapsed}s\n{out}");
}

#[test]
fn an_empty_prefix_is_refused_rather_than_matching_everything() {
    for prefix in ["", "/"] {
        read(&["--list", "--stale", "--remove", "--prefix", prefix])
            .expect_code(2)
            .stderr_has(&["an empty prefix matches every name"]);
    }
}

/// A scratch directory of this test's own (tests run in parallel).
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shm-tools-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
