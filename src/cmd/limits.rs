//! `shm-read --limits`: how much shared memory this machine (this IPC and
//! mount namespace) allows and how much is in use, like `ipcs -l -u` and
//! `lsipc -g`.
//!
//! Contract: System V limits come from /proc/sys/kernel/shm{mni,all,max}
//! and their use from /proc/sysvipc/shm (which anyone may read); POSIX
//! shared memory is the tmpfs at /dev/shm, measured with statvfs. A value
//! that cannot be read is shown as unknown, never guessed.

use std::fmt::Write as _;
use std::io::Write;

use indicatif::HumanBytes;
use serde_json::{Value, json};

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The limits and their use, as one JSON object.
#[must_use]
pub fn limits() -> Value {
    let page = crate::sys::page_size() as u64;
    let segments = crate::sysvipc::table();
    let used_segments = segments.len() as u64;
    let used_pages: u64 = segments
        .iter()
        .map(|row| (row.stat.size as u64).div_ceil(page))
        .sum();
    let largest = segments.iter().map(|row| row.stat.size as u64).max();
    let shmall = read_number("/proc/sys/kernel/shmall");
    let dev_shm = nix::sys::statvfs::statvfs("/dev/shm").ok().map(|v| {
        let fragment = v.fragment_size();
        let size = v.blocks() * fragment;
        let free = v.blocks_free() * fragment;
        json!({
            "path": "/dev/shm",
            "size": size,
            "used": size - free.min(size),
            "free": free,
            "available": v.blocks_available() * fragment,
        })
    });
    json!({
        "page_size": page,
        "shmmni": {
            "limit": read_number("/proc/sys/kernel/shmmni"),
            "used": used_segments,
        },
        "shmall": {
            "limit_pages": shmall,
            "limit_bytes": shmall.map(|p| p.saturating_mul(page)),
            "used_pages": used_pages,
            "used_bytes": used_pages * page,
        },
        "shmmax": {
            "limit_bytes": read_number("/proc/sys/kernel/shmmax"),
            "largest_segment": largest,
        },
        "dev_shm": dev_shm.unwrap_or(Value::Null),
    })
}

fn bytes(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_owned(), |b| HumanBytes(b).to_string())
}

#[allow(clippy::cast_precision_loss, reason = "a percentage to print")]
fn percent(used: &Value, limit: &Value) -> String {
    match (used.as_u64(), limit.as_u64()) {
        (Some(u), Some(l)) if l > 0 => format!("{:.2}%", u as f64 / l as f64 * 100.0),
        _ => "-".to_owned(),
    }
}

fn plain(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// Prints [`limits`] as aligned text (lsipc -g's columns, plus FREE for
/// /dev/shm) or one JSON object.
pub fn show(as_json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let l = limits();
    if as_json {
        writeln!(out, "{l}")?;
        return Ok(out.flush()?);
    }
    let shm = &l["dev_shm"];
    let rows: Vec<[String; 6]> = vec![
        [
            "RESOURCE".into(),
            "DESCRIPTION".into(),
            "LIMIT".into(),
            "USED".into(),
            "FREE".into(),
            "USE%".into(),
        ],
        [
            "SHMMNI".into(),
            "System V segments".into(),
            plain(&l["shmmni"]["limit"]),
            plain(&l["shmmni"]["used"]),
            "-".into(),
            percent(&l["shmmni"]["used"], &l["shmmni"]["limit"]),
        ],
        [
            "SHMALL".into(),
            "System V shared memory, all segments".into(),
            bytes(&l["shmall"]["limit_bytes"]),
            bytes(&l["shmall"]["used_bytes"]),
            "-".into(),
            percent(&l["shmall"]["used_pages"], &l["shmall"]["limit_pages"]),
        ],
        [
            "SHMMAX".into(),
            "System V segment size, largest".into(),
            bytes(&l["shmmax"]["limit_bytes"]),
            bytes(&l["shmmax"]["largest_segment"]),
            "-".into(),
            percent(&l["shmmax"]["largest_segment"], &l["shmmax"]["limit_bytes"]),
        ],
        [
            "/dev/shm".into(),
            "POSIX shared memory (tmpfs)".into(),
            bytes(&shm["size"]),
            bytes(&shm["used"]),
            bytes(&shm["free"]),
            percent(&shm["used"], &shm["size"]),
        ],
    ];
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            // Writing to a String cannot fail.
            let _ = write!(line, "{cell:w$}  ");
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(out.flush()?)
}
