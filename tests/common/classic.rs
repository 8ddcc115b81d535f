//! The classic C writer.c and reader.c pair, compiled for the tests that
//! talk to programs outside this crate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The classic writer.c (with fgets: gets() is gone from C11).
const WRITER_C: &str = include_str!("../classic/writer.c");

/// The classic reader.c: prints the string, then removes the segment.
const READER_C: &str = include_str!("../classic/reader.c");

/// Compiles the classic pair into `dir`, or None where there is no C compiler.
pub fn compile_classic(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut built = Vec::new();
    for (name, source) in [("writer", WRITER_C), ("reader", READER_C)] {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, source).expect("write C source");
        let exe = dir.join(name);
        match Command::new("cc")
            .arg("-O2")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
        {
            Ok(status) if status.success() => built.push(exe),
            Ok(status) => panic!("cc failed on {name}.c: {status}"),
            Err(_) => return None,
        }
    }
    let reader = built.pop()?;
    let writer = built.pop()?;
    Some((writer, reader))
}
