//! What stands behind a name when it is not a shared memory object: FIFOs,
//! directories and sockets are refused without hanging, symlinks are not
//! followed.
mod common;

use std::path::PathBuf;

use common::names_tests::{LIMIT, Scratch};
use common::{Seg, read, read_cmd, run_limited, strs, write, write_cmd};

/// Every way shm-read and shm-write may meet `scratch`, each bounded.
fn assert_not_an_object(scratch: &Scratch, what: &str) {
    let path = scratch.path().display().to_string();
    for args in [
        &[][..],
        &["--timeout", "1"],
        &["--wait"],
        &["--info"],
        &["--raw"],
        &["--stream"],
        &["--stream", "--timeout", "1"],
    ] {
        let mut all = vec!["-n", scratch.name.as_str()];
        all.extend_from_slice(args);
        let out = run_limited(&mut read_cmd(&all), b"", LIMIT);
        out.expect_code(1).stderr_has(&[&path, what, "rm"]);
    }
    for args in [&[][..], &["--raw"], &["-x"], &["--stream"]] {
        let mut all = vec!["-n", scratch.name.as_str()];
        all.extend_from_slice(args);
        let out = run_limited(&mut write_cmd(&all), b"data", LIMIT);
        out.expect_code(1);
        if args != ["-x"] {
            out.stderr_has(&[&path, what, "rm"]);
        }
    }
}

#[test]
fn a_fifo_at_the_name_is_refused_without_hanging() {
    let scratch = Scratch::new();
    nix::unistd::mkfifo(
        &scratch.path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert_not_an_object(&scratch, "FIFO");
}

#[test]
fn a_directory_at_the_name_is_refused() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path()).unwrap();
    assert_not_an_object(&scratch, "directory");
    assert!(scratch.path().is_dir());
}

#[test]
fn a_symlink_at_the_name_is_not_followed() {
    let target = Seg::name();
    write(&strs(&target.args), b"behind the link").ok();
    let scratch = Scratch::new();
    std::os::unix::fs::symlink(
        PathBuf::from("/dev/shm").join(target.name_value().unwrap()),
        scratch.path(),
    )
    .unwrap();
    assert_not_an_object(&scratch, "symbolic link");
    assert_eq!(read(&strs(&target.args)).ok().stdout, b"behind the link");
}

#[test]
fn a_socket_at_the_name_is_refused() {
    let scratch = Scratch::new();
    let _socket = std::os::unix::net::UnixListener::bind(scratch.path()).unwrap();
    assert_not_an_object(&scratch, "socket");
}
