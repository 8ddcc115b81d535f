//! How a segment is addressed: System V key, ftok path, System V id, POSIX
//! name, or the per-user default.
//!
//! Contract: parsing never touches the OS; [`Address::resolve`] turns an
//! address into a [`Target`] (running ftok for paths), and a target's
//! `Display` is how every message names the segment.

use std::fmt;
use std::path::PathBuf;

use nix::unistd::Uid;

use crate::error::{Kind, failure};
use crate::sys::{self, ShmId, ShmKey};

/// Environment variable naming the default POSIX segment.
pub const DEFAULT_NAME_ENV: &str = "SHM_TOOLS_NAME";

/// The classic programs' `ftok("shmfile", 65)` project id.
pub const CLASSIC_PROJ_ID: u8 = 65;

/// Longest POSIX name Linux accepts (NAME_MAX for a file in /dev/shm).
const NAME_MAX: usize = 255;

/// A segment as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `-k KEY`.
    Key(ShmKey),
    /// `-f PATH --proj-id N`: key = ftok(PATH, N).
    File {
        /// The path given to ftok.
        path: PathBuf,
        /// Its project id (low 8 bits of the user's N).
        proj_id: u8,
    },
    /// `-i SHMID`.
    Id(ShmId),
    /// `-n NAME`.
    Name(PosixName),
}

impl Address {
    /// The per-user default: a POSIX object named by `$SHM_TOOLS_NAME`, or
    /// `shm-tools-UID`; streams use that name plus `.stream`, so a stream
    /// never collides with the snapshot segment.
    pub fn default_for_user(stream: bool) -> anyhow::Result<Address> {
        let base = std::env::var(DEFAULT_NAME_ENV)
            .unwrap_or_else(|_| format!("shm-tools-{}", Uid::current()));
        let name = if stream {
            format!("{base}.stream")
        } else {
            base
        };
        let origin = if stream {
            Origin::DefaultStream
        } else {
            Origin::Default
        };
        PosixName::parse(&name)
            .map(|name| Address::Name(name.with_origin(origin)))
            .map_err(|e| failure(Kind::Usage, format!("${DEFAULT_NAME_ENV}: {e}")))
    }

    /// Turns the address into what the OS calls take.
    pub fn resolve(&self) -> anyhow::Result<Target> {
        Ok(match self {
            Address::Key(key) => Target::Key {
                key: *key,
                ftok: None,
            },
            Address::Id(id) => Target::Id(*id),
            Address::Name(name) => Target::Name(name.clone()),
            Address::File { path, proj_id } => {
                let key = sys::ftok(path, *proj_id).map_err(|e| {
                    failure(
                        Kind::Failed,
                        format!(
                            "cannot derive a key from {}: {}; create the file first (touch {}) \
                             — the classic C programs ignore this error and silently use key 0xffffffff",
                            path.display(),
                            e.desc(),
                            path.display()
                        ),
                    )
                })?;
                Target::Key {
                    key,
                    ftok: Some((path.clone(), *proj_id)),
                }
            }
        })
    }
}

/// Where a POSIX name came from: the user, or the per-user default. The
/// default is trusted only when the user owns it (see `segment`), and hints
/// address it again the way the user did: with no option at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given with `-n` (or found by `--list`).
    Given,
    /// The snapshot default: `shm-tools-UID` or `$SHM_TOOLS_NAME`.
    Default,
    /// The stream default: the snapshot default plus `.stream`.
    DefaultStream,
}

/// A POSIX shared memory name, stored without its leading slash. Two names
/// are equal when they name the same object, whatever their origin.
#[derive(Debug, Clone)]
pub struct PosixName {
    name: String,
    origin: Origin,
}

impl PartialEq for PosixName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PosixName {}

impl PosixName {
    /// Accepts `name` or `/name`; refuses empty names, `.`/`..`, another
    /// `/`, NUL and names longer than the system allows.
    pub fn parse(raw: &str) -> Result<PosixName, String> {
        let name = raw.strip_prefix('/').unwrap_or(raw);
        // Messages show the name escaped: it may hold anything.
        let shown = raw.escape_debug();
        if name.is_empty() || name == "." || name == ".." {
            return Err(format!(
                "'{shown}' is not a usable POSIX shared memory name"
            ));
        }
        if name.contains('/') {
            return Err(format!(
                "POSIX name '{shown}' may not contain '/' after the leading one"
            ));
        }
        // A newline or an escape sequence in a name would forge lines or
        // drive the terminal in every message and listing that shows it.
        if name.chars().any(char::is_control) {
            return Err(format!(
                "POSIX name '{shown}' contains control characters; use printable names"
            ));
        }
        if name.len() > NAME_MAX {
            return Err(format!(
                "POSIX name is {} bytes long; the limit is {NAME_MAX}",
                name.len()
            ));
        }
        Ok(PosixName {
            name: name.to_owned(),
            origin: Origin::Given,
        })
    }

    /// The same name, marked as coming from `origin`.
    #[must_use]
    pub fn with_origin(mut self, origin: Origin) -> PosixName {
        self.origin = origin;
        self
    }

    /// Where the name came from.
    #[must_use]
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether this is one of the per-user default names, which must be
    /// owned by the user and writable by nobody else.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.origin != Origin::Given
    }

    /// The name as shm_open takes it: `/name`.
    #[must_use]
    pub fn shm_open_name(&self) -> String {
        format!("/{}", self.name)
    }

    /// The name without the slash.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Where Linux shows the object: `/dev/shm/name`.
    #[must_use]
    pub fn dev_shm_path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(&self.name)
    }
}

/// A resolved address: what the OS calls take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A System V key, with the ftok inputs it came from, if any.
    Key {
        /// The key.
        key: ShmKey,
        /// The ftok path and project id, for messages.
        ftok: Option<(PathBuf, u8)>,
    },
    /// A System V id.
    Id(ShmId),
    /// A POSIX name.
    Name(PosixName),
}

impl Target {
    /// The option that addresses this target again in a snapshot command
    /// (`shm-read`, `shm-write` without `--stream`), for hints in messages:
    /// empty for the snapshot default, which those commands find without
    /// one; the stream default needs its name, since they would find the
    /// snapshot default instead.
    #[must_use]
    pub fn flag(&self) -> String {
        match self {
            Target::Key {
                ftok: Some((path, CLASSIC_PROJ_ID)),
                ..
            } => format!("-f {}", path.display()),
            Target::Key {
                ftok: Some((path, proj)),
                ..
            } => {
                format!("-f {} --proj-id {proj}", path.display())
            }
            Target::Key { key, .. } => format!("-k {key}"),
            Target::Id(id) => format!("-i {id}"),
            Target::Name(name) if name.origin() == Origin::Default => String::new(),
            Target::Name(name) => format!("-n {}", name.as_str()),
        }
    }

    /// `command` followed by [`Target::flag`], for hints: `shm-write`, or
    /// `shm-write -n NAME`.
    #[must_use]
    pub fn command(&self, command: &str) -> String {
        let flag = self.flag();
        if flag.is_empty() {
            command.to_owned()
        } else {
            format!("{command} {flag}")
        }
    }

    /// The POSIX name, if this is one.
    #[must_use]
    pub fn posix_name(&self) -> Option<&PosixName> {
        match self {
            Target::Name(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Key { key, ftok: None } => write!(f, "key {key}"),
            Target::Key {
                key,
                ftok: Some((path, proj)),
            } => write!(f, "key {key} (ftok {}, proj id {proj})", path.display()),
            Target::Id(id) => write!(f, "id {id}"),
            Target::Name(name) => write!(f, "POSIX name /{}", name.as_str()),
        }
    }
}

/// Parses a key as ipcs prints it (0x-hex) or in decimal; 0..=0xffffffff.
pub fn parse_key(raw: &str) -> Result<ShmKey, String> {
    let parsed = match raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => raw.parse::<u32>(),
    };
    parsed
        .map(|bits| ShmKey::from_raw(bits.cast_signed()))
        .map_err(|_| {
            format!(
                "'{raw}' is not a key: give 0x-hex (as ipcs prints it) or decimal, up to 0xffffffff"
            )
        })
}

/// Parses a shmid as ipcs prints it.
pub fn parse_id(raw: &str) -> Result<ShmId, String> {
    raw.parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .map(ShmId::from_raw)
        .ok_or_else(|| format!("'{raw}' is not a shmid: give the number ipcs -m prints"))
}

/// Parses an ftok project id: any integer whose low 8 bits count, except 0.
pub fn parse_proj_id(raw: &str) -> Result<u8, String> {
    let n: i64 = raw
        .parse()
        .map_err(|_| format!("'{raw}' is not a number; the classic programs use 65"))?;
    if n == 0 {
        return Err("project id 0 is not allowed by ftok; the classic programs use 65".into());
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "ftok keeps only the low 8 bits"
    )]
    Ok((n & 0xff) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_like_ipcs_prints_them() {
        assert_eq!(parse_key("0x1234").unwrap().as_raw(), 0x1234);
        assert_eq!(parse_key("4660").unwrap().as_raw(), 0x1234);
        assert_eq!(parse_key("0xffffffff").unwrap().to_string(), "0xffffffff");
        assert!(parse_key("0x100000000").is_err());
        assert!(parse_key("abc").is_err());
        assert!(parse_key("-1").is_err());
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(PosixName::parse("/x").unwrap().as_str(), "x");
        assert_eq!(PosixName::parse("x").unwrap().shm_open_name(), "/x");
        assert!(PosixName::parse("a/b").is_err());
        assert!(PosixName::parse("/").is_err());
        assert!(PosixName::parse("..").is_err());
        assert!(PosixName::parse(&"n".repeat(256)).is_err());
        assert!(PosixName::parse("a\nb").is_err());
        assert!(PosixName::parse("a\u{1b}[31m").is_err());
        assert!(PosixName::parse("a\0").is_err());
        assert!(PosixName::parse(&"n".repeat(255)).is_ok());
    }

    #[test]
    fn hints_address_the_default_as_the_user_did() {
        let name = PosixName::parse("shm-tools-0").unwrap();
        let given = Target::Name(name.clone());
        assert_eq!(given.command("shm-write"), "shm-write -n shm-tools-0");
        let default = Target::Name(name.clone().with_origin(Origin::Default));
        assert_eq!(default.command("shm-write"), "shm-write");
        assert_eq!(default, given, "the origin does not change which object");
        let stream = PosixName::parse("shm-tools-0.stream").unwrap();
        let stream = Target::Name(stream.with_origin(Origin::DefaultStream));
        assert_eq!(
            stream.command("shm-read --remove"),
            "shm-read --remove -n shm-tools-0.stream"
        );
    }

    #[test]
    fn proj_ids_keep_low_bits_and_refuse_zero() {
        assert_eq!(parse_proj_id("65").unwrap(), 65);
        assert_eq!(parse_proj_id("321").unwrap(), 65);
        assert!(parse_proj_id("0").is_err());
    }
}
