//! The per-user default name: default segments planted by another user or
//! writable by others are refused, explicit names of other users are used
//! as their mode allows, and hints address the segment as the user did.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::names_tests::{LIMIT, Scratch, with_default};
use common::{Output, Seg, is_root, read, run_limited, strs, write};

/// Runs `sh -c script` as user nobody.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(status.success(), "as nobody: {script}");
}

fn assert_refused(out: &Output, parts: &[&str]) {
    out.expect_code(1).stderr_has(parts);
    assert!(out.stdout.is_empty(), "printed planted content\n{out}");
}

#[test]
fn a_default_segment_planted_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let default = Scratch::new();
    let twin = default.stream_twin();
    for planted in [&default, &twin] {
        as_nobody(&format!(
            "umask 0; printf 'planted by nobody' > {}",
            planted.path().display()
        ));
    }
    let before = std::fs::read(default.path()).unwrap();

    for args in [&[][..], &["--raw"], &["--append"], &["--lines"]] {
        let out = run_limited(
            &mut with_default("shm-write", &default, args),
            b"secret\n",
            LIMIT,
        );
        assert_refused(&out, &["refusing", &default.name, "nobody", "-n NAME"]);
    }
    for args in [&[][..], &["--raw"], &["--all"], &["--info"], &["--wait"]] {
        let out = run_limited(&mut with_default("shm-read", &default, args), b"", LIMIT);
        assert_refused(&out, &["refusing", &default.name, "nobody"]);
    }
    let out = run_limited(
        &mut with_default("shm-write", &default, &["--stream"]),
        b"secret\n",
        LIMIT,
    );
    assert_refused(&out, &["refusing", &twin.name]);
    let out = run_limited(
        &mut with_default("shm-read", &default, &["--stream"]),
        b"",
        LIMIT,
    );
    assert_refused(&out, &["refusing", &twin.name]);

    assert_eq!(std::fs::read(default.path()).unwrap(), before);
    assert_eq!(std::fs::read(twin.path()).unwrap(), b"planted by nobody");
    let meta = std::fs::metadata(default.path()).unwrap();
    assert_eq!(meta.uid(), 65534, "the planted object is still nobody's");
}

#[test]
fn a_default_segment_others_may_write_is_refused_even_when_ours() {
    let default = Scratch::new();
    std::fs::write(default.path(), b"").unwrap();
    std::fs::set_permissions(default.path(), std::fs::Permissions::from_mode(0o620)).unwrap();
    let out = run_limited(
        &mut with_default("shm-write", &default, &[]),
        b"secret",
        LIMIT,
    );
    assert_refused(&out, &["refusing", "mode 0620", "chmod 600"]);
    assert_eq!(std::fs::read(default.path()).unwrap(), b"");
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    assert_refused(&out, &["refusing", "mode 0620"]);

    // Made private again, it is used.
    std::fs::set_permissions(default.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    run_limited(
        &mut with_default("shm-write", &default, &[]),
        b"mine",
        LIMIT,
    )
    .ok();
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    assert_eq!(out.ok().stdout, b"mine");
}

#[test]
fn a_shared_mode_for_the_default_segment_is_refused_up_front() {
    let default = Scratch::new();
    for mode in ["0666", "0620", "0602"] {
        let out = run_limited(
            &mut with_default("shm-write", &default, &["-m", mode]),
            b"x",
            LIMIT,
        );
        out.expect_code(2).stderr_has(&["-n NAME", mode]);
        assert!(!default.path().exists(), "-m {mode} created the default");
    }
    let twin = default.stream_twin();
    let out = run_limited(
        &mut with_default("shm-write", &default, &["--stream", "-m", "0666"]),
        b"x",
        LIMIT,
    );
    out.expect_code(2).stderr_has(&["-n NAME"]);
    assert!(!twin.path().exists());
    // Readable by others is fine: nobody else can change it.
    run_limited(
        &mut with_default("shm-write", &default, &["-m", "0644"]),
        b"x",
        LIMIT,
    )
    .ok();
}

#[test]
fn explicit_names_of_other_users_are_used_as_their_mode_allows() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let seg = Scratch::new();
    as_nobody(&format!(
        "printf '' | {} -n {} -m 0644",
        env!("CARGO_BIN_EXE_shm-write"),
        seg.name
    ));
    // Root may write anything; reading nobody's shared segment is the point.
    write(&["-n", &seg.name], b"shared").ok();
    assert_eq!(read(&["-n", &seg.name]).ok().stdout, b"shared");
}

#[test]
fn hints_address_the_segment_as_the_user_did() {
    let default = Scratch::new();
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    out.expect_code(3)
        .stderr_has(&["create it with: echo hello | shm-write"]);
    assert!(
        out.stderr.trim_end().ends_with("| shm-write"),
        "the hint names the default instead of leaving it out\n{out}"
    );
    let _twin = default.stream_twin();
    let out = run_limited(
        &mut with_default("shm-read", &default, &["--stream"]),
        b"",
        LIMIT,
    );
    out.expect_code(3)
        .stderr_has(&["producer | shm-write --stream"]);

    let seg = Seg::name();
    read(&strs(&seg.args))
        .expect_code(3)
        .stderr_has(&["echo hello | shm-write -n shm-tools-test-"]);
}
