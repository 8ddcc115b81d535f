//! shm-tools: System V and POSIX shared memory from the shell.
//!
//! The layers, bottom up:
//! - [`address`]: how a segment is named (key, ftok path, id, POSIX name, default);
//! - [`os`]: the OS calls and mappings, the only unsafe code;
//! - [`users`]: user and group names (files, then getent; never glibc's NSS in a static binary);
//! - [`segment`]: finding, creating, attaching and removing segments;
//! - [`format`]: what is on a segment (our framed layout, our stream ring, our log, or a C string);
//! - [`wait`]: how peers wait for each other (futexes, liveness, the write lock);
//! - [`read`], [`write`], [`stream`], [`log`], [`info`], [`list`], [`stats`], [`limits`], [`hex`], [`progress`]: what the two tools do;
//! - [`follow`], [`record`], [`replay`]: when a follow stops, the JSON record format, replaying it into a log;
//! - [`usage`]: which processes use a segment (from /proc);
//! - [`cli`], [`error`]: the command-line glue and exit codes both binaries share;
//! - [`notice`]: one-line notices on stderr that can never fail a command.

pub mod address;
pub mod cli;
pub mod error;
pub mod follow;
pub mod format;
pub mod hex;
pub mod info;
pub mod limits;
pub mod list;
pub mod log;
pub mod notice;
pub mod os;
pub mod progress;
pub mod read;
pub mod record;
pub mod replay;
pub mod segment;
pub mod stats;
pub mod stream;
pub mod usage;
pub mod users;
pub mod wait;
pub mod write;
