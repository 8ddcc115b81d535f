//! Feeds arbitrary bytes to the header parsers and the ring index
//! arithmetic as if they were a segment: any outcome but an error is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    if !image.is_empty() {
        let _ = shm_tools::layout::check_image(image);
    }
});
