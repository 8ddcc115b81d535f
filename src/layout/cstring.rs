//! The classic layout: bytes at offset 0, followed by a NUL when room
//! remains, as `strcpy`/`printf("%s")` in C programs and most other tools
//! use a segment. It has no header, so a write is not atomic.

use super::LayoutError;
use crate::address::Target;
use crate::sys::Mapping;

/// The C string at offset 0: up to the first NUL, or the whole segment.
pub fn read_c_string(map: &Mapping, target: &Target) -> Result<Vec<u8>, LayoutError> {
    let end = map.find_nul(0)?.unwrap_or(map.len());
    let mut data = super::zeroed(end, target)?;
    map.read(0, &mut data)?;
    Ok(data)
}

/// Writes `data` as a C string at offset 0, or after the current string
/// with `append`. Fails, leaving the segment unchanged, when it does not fit.
pub fn write_c_string(
    map: &Mapping,
    target: &Target,
    data: &[u8],
    append: bool,
) -> Result<(), LayoutError> {
    let start = if append {
        map.find_nul(0)?
            .ok_or_else(|| LayoutError::NoRoomToAppend {
                target: target.clone(),
            })?
    } else {
        0
    };
    let room = map.len() - start;
    if data.len() > room {
        return Err(LayoutError::TooLarge {
            target: target.clone(),
            len: data.len(),
            room,
            size: map.len(),
        });
    }
    map.write(start, data)?;
    if start + data.len() < map.len() {
        map.write(start + data.len(), &[0])?;
    }
    Ok(())
}
