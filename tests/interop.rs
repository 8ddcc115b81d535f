//! Talking to segments made by others: ipcmk, a C-layout writer, and the
//! classic writer.c / reader.c pair compiled from their well-known text.

mod common;

use std::process::Command;

use common::*;
use shm_tools::sys::{self, Mapping};

#[test]
fn classic_writer_to_shm_read_and_shm_write_to_classic_reader() {
    let seg = Seg::ftok_file();
    let dir = seg.ftok_path().unwrap().parent().unwrap().to_path_buf();
    let Some((writer, reader)) = compile_classic(&dir) else {
        eprintln!("skipped: no C compiler (cc)");
        return;
    };

    // writer.c in one terminal, shm-read in the other.
    let mut w = Command::new(&writer);
    w.current_dir(&dir);
    run(&mut w, b"hello from writer.c\n").ok();
    let out = read(&strs(&seg.args));
    out.ok();
    assert_eq!(out.stdout, b"hello from writer.c\n");

    // shm-write --raw in one terminal, reader.c in the other (which removes it).
    write(&strs(&seg.with(&["--raw"])), b"hello, reader.c").ok();
    let mut r = Command::new(&reader);
    r.current_dir(&dir);
    let out = run(&mut r, b"");
    out.ok();
    assert_eq!(out.stdout_str(), "Data read from memory: hello, reader.c\n");
    assert!(!seg.exists(), "reader.c removes the segment");
}

#[test]
fn shm_write_segments_are_big_enough_for_the_classic_1024_byte_shmget() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["--raw"])), b"x").ok();
    let key = seg.key_value().unwrap();
    assert!(sys::shmget(key, 1024, 0).is_ok());
    assert_eq!(info(&seg)["size"], 4096);
}

/// A C program's layout made in-process: a string, a NUL, then leftovers.
#[test]
fn c_layout_segment_reads_as_a_c_string() {
    let seg = Seg::key();
    let key = seg.key_value().unwrap();
    let id =
        sys::shmget(key, 256, nix::libc::IPC_CREAT | nix::libc::IPC_EXCL | 0o600).expect("shmget");
    {
        let map = Mapping::attach_sysv(id, 256, true).expect("attach");
        map.write(0, b"hello from C\0stale bytes after the NUL")
            .unwrap();
    }
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"hello from C");
    assert_eq!(
        read(&strs(&seg.with(&["--raw"]))).ok().stdout,
        b"hello from C"
    );
    let all = read(&strs(&seg.with(&["--all"])));
    all.ok();
    assert_eq!(all.stdout.len(), 256);
    assert!(all.stdout.starts_with(b"hello from C\0stale bytes"));
    assert_eq!(info(&seg)["layout"], "foreign");

    // Our layout is never forced onto someone else's data.
    write(&strs(&seg.args), b"mine now")
        .expect_code(1)
        .stderr_has(&["--raw", &seg.args[1]]);
    assert_eq!(read(&strs(&seg.args)).stdout, b"hello from C");
    write(&strs(&seg.with(&["--raw"])), b"replaced").ok();
    assert_eq!(read(&strs(&seg.args)).stdout, b"replaced");
}

fn ipcmk(size: &str) -> Option<Seg> {
    let out = Command::new("ipcmk")
        .args(["-M", size, "-p", "0600"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let id: i32 = text.trim().rsplit(' ').next()?.parse().ok()?;
    Some(Seg::id(id))
}

#[test]
fn segments_made_by_ipcmk() {
    let Some(seg) = ipcmk("4096") else {
        eprintln!("skipped: no ipcmk");
        return;
    };
    // Fresh and all zero: an empty string.
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(out.stdout.is_empty());
    write(&strs(&seg.with(&["--raw"])), b"raw into ipcmk's segment").ok();
    assert_eq!(
        read(&strs(&seg.args)).ok().stdout,
        b"raw into ipcmk's segment"
    );

    // A fresh zero segment is adopted for our framed layout.
    let Some(fresh) = ipcmk("8192") else { return };
    let data = random_bytes(3000, 11);
    write(&strs(&fresh.args), &data).ok();
    assert_eq!(read(&strs(&fresh.args)).ok().stdout, data);
    assert_eq!(info(&fresh)["layout"], "framed");
}
