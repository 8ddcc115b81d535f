//! System V shared memory: keys, ids, `shmget`, `shmctl` and `ftok`.
//!
//! Contract:
//! - Keys and ids are newtypes ([`ShmKey`], [`ShmId`]) with `from_raw`/`as_raw`.
//! - Each call is one `unsafe` block, its result checked with `Errno::result`.
//! - A segment is acted on by its id, never looked up again by its key.
//! - Attaching is [`Mapping::attach_sysv`](super::Mapping::attach_sysv).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::libc;

/// Set in `shm_perm.mode` once a System V segment is marked for removal.
pub const SHM_DEST: u32 = 0o1000;

/// A System V IPC key, as `ipcs` prints it in its first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmKey(libc::key_t);

impl ShmKey {
    /// `IPC_PRIVATE`: every `shmget` with it makes a new, unnamed segment.
    pub const PRIVATE: ShmKey = ShmKey(libc::IPC_PRIVATE);

    /// Wraps a raw `key_t`.
    #[must_use]
    pub fn from_raw(raw: libc::key_t) -> Self {
        ShmKey(raw)
    }

    /// The raw `key_t`.
    #[must_use]
    pub fn as_raw(self) -> libc::key_t {
        self.0
    }
}

impl fmt::Display for ShmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ipcs prints keys as unsigned 32-bit hex.
        #[allow(clippy::cast_sign_loss, reason = "key_t is a 32-bit pattern")]
        let bits = self.0 as u32;
        write!(f, "0x{bits:08x}")
    }
}

/// A System V shared memory id, as `ipcs -m` prints it in its shmid column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShmId(libc::c_int);

impl ShmId {
    /// Wraps a raw shmid.
    #[must_use]
    pub fn from_raw(raw: libc::c_int) -> Self {
        ShmId(raw)
    }

    /// The raw shmid.
    #[must_use]
    pub fn as_raw(self) -> libc::c_int {
        self.0
    }
}

impl fmt::Display for ShmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `ftok(3)` from the C library itself, so keys match C programs exactly.
pub fn ftok(path: &Path, proj_id: u8) -> Result<ShmKey, Errno> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let key = unsafe { libc::ftok(path.as_ptr(), libc::c_int::from(proj_id)) };
    Errno::result(key).map(ShmKey)
}

/// `shmget(2)`: looks up (size 0, no `IPC_CREAT`) or creates a segment.
pub fn shmget(key: ShmKey, size: usize, flags: libc::c_int) -> Result<ShmId, Errno> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key.0, size, flags) };
    Errno::result(id).map(ShmId)
}

/// What `shmctl(IPC_STAT)` reports about a System V segment.
#[derive(Debug, Clone)]
pub struct SysvStat {
    /// The key, `IPC_PRIVATE` once the segment is marked for removal.
    pub key: ShmKey,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner group.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Permission bits plus `SHM_DEST`/`SHM_LOCKED`.
    pub mode: u32,
    /// Size in bytes as requested at creation.
    pub size: usize,
    /// Last attach, last detach and last change, seconds since the epoch.
    pub atime: i64,
    /// Last detach.
    pub dtime: i64,
    /// Last change.
    pub ctime: i64,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last shmat/shmdt.
    pub lpid: i32,
    /// Current number of attaches.
    pub nattch: u64,
}

/// `shmctl(IPC_STAT)`.
pub fn shm_stat(id: ShmId) -> Result<SysvStat, Errno> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds the kernel fills in.
    let ret = unsafe { libc::shmctl(id.0, libc::IPC_STAT, ds.as_mut_ptr()) };
    Errno::result(ret)?;
    // SAFETY: IPC_STAT succeeded, so the kernel initialised every field (and
    // the struct was zeroed before, so padding is initialised too).
    let ds = unsafe { ds.assume_init() };
    Ok(SysvStat {
        key: ShmKey(ds.shm_perm.__key),
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        cgid: ds.shm_perm.cgid,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz,
        atime: ds.shm_atime,
        dtime: ds.shm_dtime,
        ctime: ds.shm_ctime,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        nattch: ds.shm_nattch,
    })
}

/// `SHM_HUGETLB`: a System V segment backed by huge pages (a creation
/// flag; IPC_STAT does not report it, see
/// [`Mapping::is_hugetlb`](super::Mapping::is_hugetlb)).
pub const SHM_HUGETLB: libc::c_int = libc::SHM_HUGETLB;

/// `shmctl(IPC_RMID)`: the segment goes away once the last process detaches.
pub fn shm_remove(id: ShmId) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is allowed.
    let ret = unsafe { libc::shmctl(id.0, libc::IPC_RMID, std::ptr::null_mut()) };
    Errno::result(ret).map(drop)
}
