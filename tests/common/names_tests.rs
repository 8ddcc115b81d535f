//! Shared by the tests/names_*.rs files: a name in /dev/shm filled by hand
//! and removed whatever it became, the bound on each run, and a command
//! whose per-user default name is such a scratch name.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{read_cmd, write_cmd};

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A name in /dev/shm that a test fills by hand (a FIFO, a directory, a
/// planted object...), removed on drop whatever it became.
pub struct Scratch {
    pub name: String,
}

impl Scratch {
    pub fn new() -> Scratch {
        let name = format!(
            "shm-tools-trust-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Scratch { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(&self.name)
    }

    /// The `.stream` twin of this name, guarded too.
    pub fn stream_twin(&self) -> Scratch {
        Scratch {
            name: format!("{}.stream", self.name),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Whatever is there now; "not found" means the test removed it.
        let path = self.path();
        if path.is_dir() && !path.is_symlink() {
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

pub const LIMIT: Duration = Duration::from_secs(10);

/// A command for `tool` that uses `default` as its per-user default name.
pub fn with_default(tool: &str, default: &Scratch, args: &[&str]) -> Command {
    let mut cmd = if tool == "shm-write" {
        write_cmd(args)
    } else {
        read_cmd(args)
    };
    cmd.env("SHM_TOOLS_NAME", &default.name);
    cmd
}
