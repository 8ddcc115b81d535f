//! The process's standard streams and the signals that would end it
//! mid-write: descriptors 0-2 closed at exec, a progress line left on
//! screen by Ctrl-C, and SIGXFSZ past `ulimit -f`.
//!
//! Contract:
//! - Signal handlers make only async-signal-safe calls.
//! - Dispositions the caller inherited on purpose (SIG_IGN for SIGINT) are
//!   kept; a process killed by a signal still dies of that signal.
//! - What was closed at start is recorded before the Rust runtime runs.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

use nix::libc;

/// Makes SIGXFSZ ignored, so that going past `RLIMIT_FSIZE` (`ulimit -f`)
/// fails the call with EFBIG, which is reported in one line, instead of
/// the kernel killing the process with no word in the middle of a write.
pub fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN installs no handler code, and nothing in this program
    // relies on SIGXFSZ's default action.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

// ---------------------------------------------------------------------------
// A progress line cleared on Ctrl-C.
//
// A terminal progress line is redrawn in place; killed by SIGINT, the
// process would leave its last frame on screen for the shell's prompt to
// follow. This handler erases the line (one write(2) of "\r" and "erase
// line"), restores the default action and raises SIGINT again, so the
// process still dies of it, with the same status as before.
// ---------------------------------------------------------------------------

/// Erases the current terminal line on stderr when SIGINT arrives, then
/// lets SIGINT end the process as it would have. For progress lines only.
pub fn clear_stderr_line_on_interrupt() {
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    {
        // SAFETY: zeroed is a valid sigaction (no flags, empty mask); only
        // plain fields are set.
        let action = unsafe { &mut *action.as_mut_ptr() };
        action.sa_sigaction = on_interrupt as *const () as usize;
        action.sa_flags = libc::SA_RESETHAND;
    }
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // a live buffer of the right type.
    let read = unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: sigaction filled `old` (or it stays zeroed, SIG_DFL).
    let ignored = read == 0 && unsafe { old.assume_init_ref() }.sa_sigaction == libc::SIG_IGN;
    // An inherited SIG_IGN (`trap '' INT`, nohup-like launchers) is kept,
    // as coreutils do: the caller chose that Ctrl-C must not end us.
    if ignored {
        return;
    }
    // SAFETY: `action` is a live, valid sigaction; the handler only makes
    // async-signal-safe calls (write, raise).
    unsafe { libc::sigaction(libc::SIGINT, action.as_ptr(), std::ptr::null_mut()) };
}

/// The SIGINT handler: erases the line, then re-raises with the default
/// action (SA_RESETHAND restored it on entry). Async-signal-safe calls only.
extern "C" fn on_interrupt(_: libc::c_int) {
    const ERASE: &[u8] = b"\r\x1b[2K";
    // SAFETY: ERASE is a valid buffer of that length; write is
    // async-signal-safe, and a failed write leaves nothing to do.
    unsafe { libc::write(libc::STDERR_FILENO, ERASE.as_ptr().cast(), ERASE.len()) };
    // SAFETY: raise is async-signal-safe; SIGINT stays blocked until the
    // handler returns, then the default action ends the process.
    unsafe { libc::raise(libc::SIGINT) };
}

// ---------------------------------------------------------------------------
// Standard streams closed at start.
//
// The Rust runtime reopens closed descriptors 0-2 as /dev/null before main,
// so `shm-write <&-` would read an empty stdin and `shm-read >&-` would write
// into nothing, both "successfully". This records which were closed before
// the runtime runs: a function in .init_array, which the C runtime calls
// before main (and before Rust's own start-up code).
// ---------------------------------------------------------------------------

/// Bit `fd` is set when descriptor `fd` (0, 1 or 2) was closed at exec.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

#[cfg(target_os = "linux")]
extern "C" fn record_closed_std_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Ordering::Relaxed);
        }
    }
}

// SAFETY: .init_array holds pointers to `extern "C" fn()` that the C runtime
// calls once before main; this one only makes fcntl calls and stores an atomic.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_CLOSED_STD_FDS: extern "C" fn() = record_closed_std_fds;

/// Whether standard descriptor `fd` (0, 1 or 2) was closed when the process
/// started, before the Rust runtime replaced it with /dev/null.
#[must_use]
pub fn was_closed_at_start(fd: i32) -> bool {
    // Referencing the .init_array entry keeps it linked into every binary
    // that asks, whatever the linker and LTO do with unreferenced statics.
    #[cfg(target_os = "linux")]
    std::hint::black_box(&RECORD_CLOSED_STD_FDS);
    (0..=2).contains(&fd) && CLOSED_AT_START.load(Ordering::Relaxed) & (1 << fd) != 0
}
