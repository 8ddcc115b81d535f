//! Feeds arbitrary bytes to the header parsers and the ring index
//! arithmetic as if they were a segment: any outcome but an error is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shm_tools::address::{PosixName, Target};
use shm_tools::layout::{Span, snapshot_content};
use shm_tools::sys::Mapping;

fuzz_target!(|image: &[u8]| {
    if image.is_empty() {
        return;
    }
    let _ = shm_tools::layout::check_image(image);
    // Part of the content, as `shm-read --offset N -c N` (with and without
    // --raw) copies it out: the one function shm-read calls.
    let Ok(map) = Mapping::from_bytes(image) else {
        return;
    };
    let target = Target::Name(PosixName::parse("image").expect("valid name"));
    let span = Span {
        skip: image.len() / 3,
        limit: image.len() / 2,
    };
    for raw in [false, true] {
        let _ = snapshot_content(&map, &target, raw, span);
    }
});
