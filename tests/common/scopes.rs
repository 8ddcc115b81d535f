//! Running the tools somewhere else than the test process: as another
//! user, in private namespaces, behind a terminal. Each runner says when
//! the machine does not allow it, so the test can skip with the reason.

use std::process::Command;
use std::time::Duration;

use super::{Output, is_root, run_limited, tool_path};

/// Whether tests may drop to other users: root, with setpriv present.
pub fn setpriv_available() -> bool {
    is_root()
        && Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// `tool ARGS` as user and group `uid` with no supplementary groups
/// (setpriv execs it, so its pid is the tool's).
pub fn as_user(uid: u32, tool: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "--",
    ])
    .arg(tool_path(tool))
    .args(args);
    cmd
}

/// `tool ARGS` as user nobody (65534), as [`as_user`].
pub fn as_nobody(tool: &str, args: &[&str]) -> Command {
    as_user(65534, tool, args)
}

/// Runs `sh -c SCRIPT` in private IPC and mount namespaces (`unshare
/// --ipc --mount`), with $W and $R naming shm-write and shm-read, so that
/// machine-wide listing and removal see only what the script makes; the
/// script mounts its own /dev/shm and exits 77 where it may not. Returns
/// its output, checked to be exit 0, or None (with the reason printed)
/// where such namespaces are not permitted.
pub fn in_private_ipc_and_mount(script: &str) -> Option<Output> {
    let out = run_limited(
        Command::new("unshare")
            .args(["--ipc", "--mount", "sh", "-c", script])
            .env("W", env!("CARGO_BIN_EXE_shm-write"))
            .env("R", env!("CARGO_BIN_EXE_shm-read")),
        b"",
        Duration::from_secs(30),
    );
    if out.code() == Some(77) || out.stderr.contains("Operation not permitted") {
        eprintln!("skipped: private IPC/mount namespaces not permitted here\n{out}");
        return None;
    }
    out.ok();
    Some(out)
}

/// The text of a script's output between its `== NAME` line and the next
/// `== ` line (or the end): how namespace scripts label their steps.
pub fn section(text: &str, name: &str) -> String {
    let start = text.find(&format!("== {name}\n")).expect("section") + name.len() + 4;
    let end = text[start..]
        .find("\n== ")
        .map_or(text.len(), |e| start + e);
    text[start..end].to_owned()
}

/// Runs `python3 -c SCRIPT ARGS` (for what only python's pty module does
/// simply: a terminal on a tool's stdin or stderr), or None without
/// python3.
pub fn python3(script: &str, args: &[&str]) -> Option<std::process::Output> {
    Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .ok()
}

/// Runs `script` with `sh` in a mount namespace whose /dev/shm is a 1 MiB
/// tmpfs (a full /dev/shm), with $SHM_WRITE and $SHM_READ naming the
/// binaries; returns its stdout and stderr, or None (with the reason
/// printed) where such a namespace is not permitted. Panics if the script
/// fails.
pub fn in_small_dev_shm(script: &str) -> Option<String> {
    let setup = "mount --make-rprivate / && mount -t tmpfs -o size=1M tmpfs /dev/shm";
    match Command::new("unshare")
        .args(["-m", "sh", "-c", setup])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a small /dev/shm: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            eprintln!("skipped: no unshare: {e}");
            return None;
        }
    }
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &format!("{setup} && {script}")])
        .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write"))
        .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read"))
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "script failed: {text}");
    Some(text)
}
