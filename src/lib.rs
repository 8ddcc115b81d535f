//! shm-tools: System V and POSIX shared memory from the shell.
//!
//! The layers, bottom up (each uses only the ones above it in this list):
//! - [`sys`]: the OS calls and mappings, the only unsafe code;
//! - [`error`], [`notice`]: exit codes and their classes; one-line notices on stderr;
//! - [`address`]: how a segment is named (key, ftok path, id, POSIX name, default);
//! - [`sysvipc`]: the kernel's table of System V segments, read by its header names;
//! - [`users`]: user and group names (files, then getent; never glibc's NSS in a static binary);
//! - [`wait`]: how peers wait for each other (deadlines, futexes);
//! - [`lock`]: robust locks whose holder's death the kernel records;
//! - [`layout`]: what is on a segment (snapshot, stream ring, log, or a C string), with typed errors;
//! - [`segment`]: finding, creating, attaching, growing, replacing and removing segments, with typed errors;
//! - [`usage`]: which processes use a segment (from /proc);
//! - [`cmd`]: what the two tools do; the one place (`cmd::explain`) where typed errors become
//!   one-line messages with what to do, and exit codes;
//! - [`cli`]: the command line both binaries share.

pub mod address;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod layout;
pub mod lock;
pub mod notice;
pub mod segment;
pub mod sys;
pub mod sysvipc;
pub mod usage;
pub mod users;
pub mod wait;
