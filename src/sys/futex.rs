//! Futex wait and wake on a 32-bit word, shared across processes.
//!
//! Contract:
//! - Shared futexes (not FUTEX_PRIVATE), so waiters in other processes
//!   that map the same word are woken.
//! - A wait may return early (spuriously, on a signal, on timeout); callers
//!   re-check their condition. Off Linux both calls fail with ENOSYS and
//!   waiters poll.
#![allow(unsafe_code)]

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::libc;

/// Sleeps until `word` no longer holds `expected`, a wake-up, or `timeout`.
/// Shared (not FUTEX_PRIVATE) so it works across processes. Spurious
/// returns are allowed; callers re-check their condition.
#[cfg(target_os = "linux")]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<(), Errno> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos().cast_signed()),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a valid aligned u32 for the call; ts_ptr is null or
    // points to a timespec that lives until the call returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    match Errno::result(ret) {
        Ok(_) | Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Wakes up to `count` waiters on `word`.
#[cfg(target_os = "linux")]
pub fn futex_wake(word: &AtomicU32, count: i32) -> Result<(), Errno> {
    // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE only uses its address.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    Errno::result(ret).map(drop)
}

/// Portable fallback: no futex, so waiters poll (see `wait`).
#[cfg(not(target_os = "linux"))]
pub fn futex_wait(_: &AtomicU32, _: u32, _: Option<Duration>) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

/// Portable fallback: no futex, so nothing to wake.
#[cfg(not(target_os = "linux"))]
pub fn futex_wake(_: &AtomicU32, _: i32) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}
