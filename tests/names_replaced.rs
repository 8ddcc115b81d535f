//! Names replaced or gone before removal: `--remove` spares an object
//! that replaced ours and succeeds on a name that is gone, and a stream
//! outlives its name.
mod common;

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use common::names_tests::LIMIT;
use common::{Live, Seg, read, read_cmd, strs, write, write_cmd};

/// Puts a new object with `content` at `name`, replacing what is there in
/// one step, as `mv` would.
fn replace_object(name: &str, content: &[u8]) {
    let fresh = Seg::name();
    write(&strs(&fresh.args), content).ok();
    std::fs::rename(
        PathBuf::from("/dev/shm").join(fresh.name_value().unwrap()),
        PathBuf::from("/dev/shm").join(name),
    )
    .unwrap();
}

/// A blank object at `seg`'s name, a `shm-read --wait --remove` that has
/// it mapped and waits for content, and a handle to give it that content.
fn reader_holding(seg: &Seg) -> (Live, std::fs::File) {
    let path = PathBuf::from("/dev/shm").join(seg.name_value().unwrap());
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let ours = std::fs::File::options().write(true).open(&path).unwrap();
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--wait", "--remove"]))));
    let maps = format!("/proc/{}/maps", reader.pid());
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&maps)
        .unwrap_or_default()
        .contains(&path.display().to_string())
    {
        assert!(
            started.elapsed() < LIMIT,
            "shm-read never mapped {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(2));
    }
    (reader, ours)
}

#[test]
fn remove_spares_an_object_that_replaced_ours() {
    use std::os::unix::fs::FileExt;
    let seg = Seg::name();
    let (reader, ours) = reader_holding(&seg);
    replace_object(seg.name_value().unwrap(), b"new and unrelated");
    ours.write_at(b"old", 0).unwrap();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"old");
    assert_eq!(
        read(&strs(&seg.args)).ok().stdout,
        b"new and unrelated",
        "--remove deleted the object that replaced ours"
    );
}

#[test]
fn remove_of_a_name_that_is_gone_succeeds() {
    use std::os::unix::fs::FileExt;
    let seg = Seg::name();
    let (reader, ours) = reader_holding(&seg);
    std::fs::remove_file(PathBuf::from("/dev/shm").join(seg.name_value().unwrap())).unwrap();
    ours.write_at(b"old", 0).unwrap();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"old");
    assert!(!seg.exists());
}

/// A stream whose name is removed (`gone`) or replaced while it runs still
/// ends 0 once every byte got through, and leaves any replacement alone.
fn stream_outlives_its_name(replace: bool) {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream"]))));
    writer.send(b"first\n");
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    reader.wait_stdout(LIMIT, "the first line", |out| out == b"first\n");
    if replace {
        replace_object(&name, b"new and unrelated");
    } else {
        std::fs::remove_file(PathBuf::from("/dev/shm").join(&name)).unwrap();
    }
    writer.send(b"second\n");
    writer.finish(LIMIT).ok();
    let out = reader.finish(LIMIT);
    out.ok();
    assert_eq!(out.stdout, b"first\nsecond\n");
    if replace {
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"new and unrelated");
    }
}

#[test]
fn a_stream_whose_name_is_gone_still_ends_0() {
    stream_outlives_its_name(false);
}

#[test]
fn a_stream_whose_name_was_replaced_leaves_the_newcomer() {
    stream_outlives_its_name(true);
}
