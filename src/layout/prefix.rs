//! The header prefix both our layouts start with: magic (8 bytes), version
//! (u32 at 8), header size (u32 at 12), capacity (u64 at 16). Each layout
//! names the values it expects; this checks them against the mapping and
//! writes them, magic last, so nobody sees a half-made header as valid.

use std::sync::atomic::Ordering;

use super::{Layout, LayoutError};
use crate::address::Target;
use crate::sys::Mapping;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_HEADER_SIZE: usize = 12;
/// The capacity (u64); it changes when a snapshot segment grows.
pub(super) const OFF_CAPACITY: usize = 16;

/// What one layout's prefix must hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix {
    /// The layout's magic.
    pub magic: [u8; 8],
    /// The layout version this code reads and writes.
    pub version: u32,
    /// Bytes before the data area.
    pub header_size: usize,
    /// Whose prefix it is, for the error messages.
    pub layout: Layout,
}

impl Prefix {
    fn corrupt(&self, target: &Target, what: &str) -> LayoutError {
        LayoutError::Corrupt {
            target: target.clone(),
            layout: self.layout,
            what: what.to_owned(),
        }
    }

    /// Checks the prefix; returns the capacity, which is non-zero and at
    /// most `max_capacity` (what the real mapping can hold).
    pub(crate) fn check(
        &self,
        map: &Mapping,
        target: &Target,
        max_capacity: Option<usize>,
    ) -> Result<usize, LayoutError> {
        Ok(self
            .check_versions(map, target, max_capacity, &[self.version])?
            .0)
    }

    /// Like [`Prefix::check`], for a layout that still reads older
    /// versions: any of `versions` is accepted, and the version found is
    /// returned with the capacity.
    pub(crate) fn check_versions(
        &self,
        map: &Mapping,
        target: &Target,
        max_capacity: Option<usize>,
        versions: &[u32],
    ) -> Result<(usize, u32), LayoutError> {
        let mut magic = [0u8; 8];
        map.read(OFF_MAGIC, &mut magic)?;
        if magic != self.magic {
            return Err(self.corrupt(target, "wrong magic"));
        }
        // The fields below must lie inside the mapping before they are read:
        // a short object can carry our magic too.
        if map.len() < self.header_size.max(OFF_CAPACITY + 8) {
            return Err(self.corrupt(
                target,
                &format!(
                    "the segment is only {} bytes, too small for the {}-byte header",
                    map.len(),
                    self.header_size
                ),
            ));
        }
        let version = map.atomic_u32(OFF_VERSION)?.load(Ordering::Acquire);
        if !versions.contains(&version) {
            return Err(LayoutError::Version {
                target: target.clone(),
                layout: self.layout,
                found: version,
                readable: versions.to_vec(),
            });
        }
        let header_size = map.atomic_u32(OFF_HEADER_SIZE)?.load(Ordering::Relaxed);
        if usize::try_from(header_size).ok() != Some(self.header_size) {
            return Err(self.corrupt(
                target,
                &format!("header size {header_size}, expected {}", self.header_size),
            ));
        }
        let capacity = map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Relaxed);
        match usize::try_from(capacity) {
            Ok(c) if c > 0 && max_capacity.is_some_and(|max| c <= max) => Ok((c, version)),
            _ => Err(self.corrupt(
                target,
                &format!(
                    "capacity {capacity} does not fit a segment of {} bytes",
                    map.len()
                ),
            )),
        }
    }

    /// Writes version, header size and capacity, then the magic with
    /// release ordering.
    pub(crate) fn write(&self, map: &Mapping, capacity: usize) -> Result<(), LayoutError> {
        map.atomic_u32(OFF_VERSION)?
            .store(self.version, Ordering::Relaxed);
        let header_size = u32::try_from(self.header_size).expect("headers are small");
        map.atomic_u32(OFF_HEADER_SIZE)?
            .store(header_size, Ordering::Relaxed);
        map.atomic_u64(OFF_CAPACITY)?
            .store(capacity as u64, Ordering::Relaxed);
        map.atomic_u64(OFF_MAGIC)?
            .store(u64::from_ne_bytes(self.magic), Ordering::Release);
        Ok(())
    }

    /// Whether the magic is already in place.
    pub(crate) fn present(&self, map: &Mapping) -> Result<bool, LayoutError> {
        Ok(map.atomic_u64(OFF_MAGIC)?.load(Ordering::Acquire) == u64::from_ne_bytes(self.magic))
    }
}
