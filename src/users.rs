//! User and group names, for owners in listings and `--owner`.
//!
//! - /etc/passwd and /etc/group are read first, in-process;
//! - a uid, gid or name they do not have is asked of `getent(1)`, which
//!   sees every source of the system's nsswitch.conf (LDAP, sssd,
//!   systemd-homed);
//! - where neither knows it, a uid or gid is shown as its number.
//!
//! glibc's own lookups (getpwuid and friends) are never called: the
//! binaries are linked statically (build.rs), and a static glibc that
//! falls through `files` to a module such as `systemd` loads that module's
//! shared library into the static process, which crashes it. Answers are
//! kept for the life of the process: a listing asks for the same few
//! owners again and again, and a lookup needs a descriptor that a low
//! `ulimit -n` may not leave later. A lookup that failed is not kept.

use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

/// One entry of a colon-separated database: its name and its number.
#[derive(Clone)]
struct Entry {
    name: String,
    id: u32,
}

/// Which database, as files and getent name them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Database {
    Passwd,
    Group,
}

impl Database {
    fn file(self) -> &'static str {
        match self {
            Database::Passwd => "/etc/passwd",
            Database::Group => "/etc/group",
        }
    }

    fn getent_name(self) -> &'static str {
        match self {
            Database::Passwd => "passwd",
            Database::Group => "group",
        }
    }
}

/// What is looked for: an entry by its number or by its name.
#[derive(Clone, Copy)]
enum Key<'a> {
    Id(u32),
    Name(&'a str),
}

impl Key<'_> {
    fn matches(self, entry: &Entry) -> bool {
        match self {
            Key::Id(id) => entry.id == id,
            Key::Name(name) => entry.name == name,
        }
    }
}

/// The user name for `uid`, or the number when it has none.
#[must_use]
pub fn user_name(uid: u32) -> String {
    cached(Database::Passwd, Key::Id(uid)).map_or_else(|| uid.to_string(), |e| e.name)
}

/// The group name for `gid`, or the number when it has none.
#[must_use]
pub fn group_name(gid: u32) -> String {
    cached(Database::Group, Key::Id(gid)).map_or_else(|| gid.to_string(), |e| e.name)
}

/// The uid of the user called `name`, if there is one.
#[must_use]
pub fn uid_of(name: &str) -> Option<u32> {
    cached(Database::Passwd, Key::Name(name)).map(|e| e.id)
}

fn cached(db: Database, key: Key<'_>) -> Option<Entry> {
    static KNOWN: Mutex<Vec<(Database, Entry)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, entry)) = known.iter().find(|(d, e)| *d == db && key.matches(e)) {
        return Some(entry.clone());
    }
    let found = from_file(db, key).or_else(|| from_getent(db, key))?;
    known.push((db, found.clone()));
    Some(found)
}

fn from_file(db: Database, key: Key<'_>) -> Option<Entry> {
    let text = std::fs::read(db.file()).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(parse_line)
        .find(|e| key.matches(e))
}

/// Where getent(1) is: by absolute path, never from $PATH, so that root
/// with a writable directory on its PATH runs no stranger's program.
const GETENT: [&str; 2] = ["/usr/bin/getent", "/bin/getent"];

/// How long getent may take: an unreachable LDAP or sssd server must not
/// hang a listing (nor an error message built while a lock is held).
/// Past it, the number is shown.
const GETENT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks getent(1), which answers with the same line format. A name that
/// looks like an option is never passed (getent would take it as one).
fn from_getent(db: Database, key: Key<'_>) -> Option<Entry> {
    let arg = match key {
        Key::Id(id) => id.to_string(),
        Key::Name(name) if name.is_empty() || name.starts_with('-') => return None,
        Key::Name(name) => name.to_owned(),
    };
    let program = GETENT.iter().find(|p| std::path::Path::new(p).is_file())?;
    let mut child = Command::new(program)
        .args([db.getent_name(), "--", &arg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read in a thread, so a long answer (a group of many members) cannot
    // fill the pipe while we wait; killing the child ends the read.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut answer).map(|_| answer)
    });
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < GETENT_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // A grandchild that kept the pipe open would keep the read going:
    // it is not waited for once the child has gone.
    let answer = if status.is_some_and(|s| s.success()) {
        reader.join().ok()?.ok()?
    } else {
        return None;
    };
    String::from_utf8_lossy(&answer)
        .lines()
        .filter_map(parse_line)
        .find(|e| key.matches(e))
}

/// `name:password:id:...`, as passwd(5) and group(5) have it. Lines
/// starting with `+` or `-` (NIS compat entries) are not entries.
fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let id = fields.next()?.parse().ok()?;
    if name.is_empty() || name.starts_with(['+', '-', '#']) {
        return None;
    }
    Some(Entry {
        name: name.to_owned(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_passwd_and_group_have_them() {
        let e = parse_line("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin").unwrap();
        assert_eq!((e.name.as_str(), e.id), ("nobody", 65534));
        let g = parse_line("adm:x:4:syslog").unwrap();
        assert_eq!((g.name.as_str(), g.id), ("adm", 4));
        assert!(parse_line("+nisuser::::").is_none());
        assert!(parse_line("broken").is_none());
        assert!(parse_line("bad:x:notanumber:1").is_none());
        assert!(parse_line("").is_none());
    }

    #[test]
    fn root_resolves_and_unknown_ids_stay_numbers() {
        assert_eq!(user_name(0), "root");
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(user_name(3_999_999_999), "3999999999");
        assert_eq!(group_name(3_999_999_999), "3999999999");
        assert_eq!(uid_of("-h"), None);
        assert_eq!(uid_of("no-such-user-of-shm-tools"), None);
    }
}
