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

/// A getent(1) that knows one user and one group the files do not, as
/// LDAP or sssd would.
fn fake_getent(dir: &std::path::Path) {
    let script = dir.join("getent");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1 $3\" in\n\
         'passwd 3999999011'|'passwd ldapuser') echo 'ldapuser:*:3999999011:3999999012::/:/bin/sh' ;;\n\
         'group 3999999012') echo 'ldapgroup:*:3999999012:' ;;\n\
         *) exit 2 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn names_only_nss_knows_come_from_getent() {
    if !is_root() {
        return;
    }
    let dir = tempfile_dir("getent");
    fake_getent(&dir);
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    chown(&seg, 3_999_999_011, 3_999_999_012);

    let mut cmd = read_cmd(&strs(&seg.with(&["--info", "--json"])));
    cmd.env("PATH", &path);
    let out = run(&mut cmd, b"");
    out.ok();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["user"], "ldapuser", "{json}");
    assert_eq!(json["group"], "ldapgroup", "{json}");

    let name = seg.name_value().unwrap().to_owned();
    let mut cmd = read_cmd(&["--list", "--owner", "ldapuser", "--prefix", &name]);
    cmd.env("PATH", &path);
    let out = run(&mut cmd, b"");
    out.ok();
    assert!(out.stdout_str().contains(&format!("-n {name} ")), "{out}");
    assert!(out.stdout_str().contains(" ldapuser "), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shm-tools-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
