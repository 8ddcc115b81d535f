//! A stream writer killed while setting a ring up, after it took the
//! writer's claim and before it stored anything, leaves a blank segment
//! whose claim word the kernel marked FUTEX_OWNER_DIED. Like any dead
//! writer, it does not block the next one: that writer takes the claim and
//! sets the ring up (saying, in one line, that it took over and discarded
//! nothing). The state is written here as the kernel leaves it: the word
//! of the claim at 192 (robust lock, word at +8) is OWNER_DIED, tid 0.

mod common;

use common::*;

/// The object behind a POSIX test segment.
fn dev_shm(seg: &Seg) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(seg.name_value().unwrap())
}

const CLAIM_WORD: usize = 192 + 8;
const OWNER_DIED: u32 = 0x4000_0000;

/// A blank POSIX object of `size` bytes whose writer claim is marked died.
fn blank_with_a_died_claim(seg: &Seg, size: usize) -> Vec<u8> {
    let mut image = vec![0u8; size];
    image[CLAIM_WORD..CLAIM_WORD + 4].copy_from_slice(&OWNER_DIED.to_ne_bytes());
    std::fs::write(dev_shm(seg), &image).expect("make the object");
    image
}

#[test]
fn a_writer_killed_while_setting_up_does_not_block_the_next() {
    let seg = Seg::name();
    blank_with_a_died_claim(&seg, 64 * 1024);
    let next = write(&strs(&seg.with(&["--stream"])), b"hi\n");
    next.ok().stderr_has(&[
        "shm-write: took over",
        "from a stream writer that died;",
        "discarded the 0 unread bytes",
    ]);
    let out = read(&strs(&seg.with(&["--stream"])));
    assert_eq!(out.ok().stdout, b"hi\n", "{out}");
    assert!(!seg.exists(), "the reader removes the completed ring");
}

/// Only a blank segment is set up: a died-looking claim word among other
/// bytes is someone's data, refused with every byte left as it was.
#[test]
fn a_died_claim_word_among_data_is_still_refused_unchanged() {
    let seg = Seg::name();
    let mut image = blank_with_a_died_claim(&seg, 4096);
    image[3000] = 7;
    std::fs::write(dev_shm(&seg), &image).unwrap();
    let refused = write(&strs(&seg.with(&["--stream"])), b"hi\n");
    refused.expect_code(1).stderr_has(&["already holds data"]);
    assert_eq!(
        std::fs::read(dev_shm(&seg)).unwrap(),
        image,
        "the refused writer changed the segment"
    );
}
