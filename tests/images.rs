//! The parsers against thousands of corrupted segment images: every header
//! byte and word set to hostile values, in framed and ring images taken
//! from real segments. Each must end in content or an error, within a
//! bound, never a panic or an out-of-bounds read (the fuzz target in fuzz/
//! explores further).

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use shm_tools::layout::check_image;

/// The whole segment, header included, as `shm-read --all` dumps it.
fn image_of(seg: &Seg) -> Vec<u8> {
    read(&strs(&seg.with(&["--all"]))).ok().stdout.clone()
}

fn framed_image() -> Vec<u8> {
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "4096"])), b"first version").ok();
    write(&strs(&seg.args), b"second, published version").ok();
    image_of(&seg)
}

fn ring_image() -> Vec<u8> {
    let seg = Seg::name();
    run(
        &mut write_cmd(&strs(&seg.with(&["--stream", "-s", "4096"]))),
        &[b'r'; 3000],
    )
    .ok();
    image_of(&seg)
}

/// Runs check_image on every image from a thread, failing on a panic or on
/// any single image taking more than a few seconds.
fn check_all(images: Vec<(String, Vec<u8>)>) {
    for (what, image) in images {
        let (done, wait) = mpsc::channel();
        let worker = thread::spawn(move || {
            let result = check_image(&image).map(drop).map_err(|e| e.to_string());
            let _ = done.send(result);
        });
        match wait.recv_timeout(Duration::from_secs(10)) {
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: parser hung"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: parser panicked"),
        }
        worker
            .join()
            .unwrap_or_else(|_| panic!("{what}: parser panicked"));
    }
}

const WORDS: [u64; 9] = [0, 1, 2, 3, 127, 4096, 0x7fff_ffff, 0xffff_ffff, u64::MAX];

fn mutations(name: &str, image: &[u8], header: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for offset in 0..header {
        for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut m = image.to_vec();
            m[offset] = byte;
            out.push((format!("{name}: byte {offset} = {byte:#x}"), m));
        }
    }
    for offset in (0..header).step_by(4) {
        for word in WORDS {
            let mut m = image.to_vec();
            let bytes = word.to_ne_bytes();
            let end = (offset + 8).min(m.len());
            m[offset..end].copy_from_slice(&bytes[..end - offset]);
            out.push((format!("{name}: word {offset} = {word:#x}"), m));
        }
    }
    // Truncated images: the header claims more than the mapping holds.
    for len in [1, 7, 8, 16, 64, 127, 128, 255, 256, 1000, image.len() - 1] {
        out.push((format!("{name}: truncated to {len}"), image[..len].to_vec()));
    }
    let mut x = 0x1234_5678_9abc_def1_u64;
    for n in 0..500 {
        let mut m = image.to_vec();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = usize::try_from(x % header as u64).unwrap();
            m[at] = x.to_le_bytes()[7];
        }
        out.push((format!("{name}: random mutation {n}"), m));
    }
    out
}

#[test]
fn valid_images_parse_to_their_content() {
    assert_eq!(
        check_image(&framed_image()).unwrap(),
        b"second, published version"
    );
    assert_eq!(check_image(&ring_image()).unwrap(), vec![b'r'; 3000]);
    assert_eq!(
        check_image(b"plain C string\0junk").unwrap(),
        b"plain C string"
    );
}

#[test]
fn corrupted_framed_images_never_panic_or_hang() {
    check_all(mutations("framed", &framed_image(), 128));
}

#[test]
fn corrupted_ring_images_never_panic_or_hang() {
    check_all(mutations("ring", &ring_image(), 256));
}
