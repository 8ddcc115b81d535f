//! `shm-read --hex`: the dump format of `xxd` — offset, sixteen bytes in
//! groups of two as hex, then the printable ASCII — so its output can be
//! compared with and read like xxd's.

use std::fmt::Write as _;
use std::io::{self, Write};

/// Writes `data` as xxd does, offsets counted from 0.
pub fn dump(data: &[u8], out: &mut dyn Write) -> io::Result<()> {
    dump_from(data, 0, out)
}

/// Writes `data` as xxd does, offsets counted from `start` (what
/// `xxd -s START` shows for the bytes from `start` on).
pub fn dump_from(data: &[u8], start: usize, out: &mut dyn Write) -> io::Result<()> {
    let mut line = String::with_capacity(80);
    for (row, chunk) in data.chunks(16).enumerate() {
        line.clear();
        // Writing to a String cannot fail.
        let _ = write!(line, "{:08x}: ", start.saturating_add(row * 16));
        for i in 0..16 {
            match chunk.get(i) {
                Some(byte) => {
                    let _ = write!(line, "{byte:02x}");
                }
                None => line.push_str("  "),
            }
            if i % 2 == 1 && i != 15 {
                line.push(' ');
            }
        }
        line.push_str("  ");
        line.extend(chunk.iter().map(|&b| {
            if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        }));
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(data: &[u8]) -> String {
        let mut out = Vec::new();
        dump(data, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_xxd_layout() {
        assert_eq!(
            hex(b"hello\n"),
            "00000000: 6865 6c6c 6f0a                           hello.\n"
        );
        let all: Vec<u8> = (0..=17).collect();
        assert_eq!(
            hex(&all),
            "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................\n\
             00000010: 1011                                     ..\n"
        );
        assert_eq!(hex(b""), "");
    }
}
