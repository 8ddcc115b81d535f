//! What both binaries share on the command line: the addressing options,
//! value parsers for sizes, durations and modes, and the `main` wrapper
//! that turns an error into one stderr line and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::address::{Address, CLASSIC_PROJ_ID, PosixName, parse_id, parse_key, parse_proj_id};
use crate::error::{Outcome, outcome};
use crate::os::{ShmId, ShmKey};
pub use crate::progress::Progress;

pub mod assets;
pub mod read_args;
pub mod write_args;

/// How to find the segment; at most one of key, file, id, name.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct SegmentArgs {
    /// System V key, 0x-hex as ipcs prints it or decimal (0 = IPC_PRIVATE)
    #[arg(short = 'k', long, value_name = "KEY", value_parser = parse_key, group = "address")]
    pub key: Option<ShmKey>,

    /// Derive the key with ftok(PATH, --proj-id), like the classic C programs
    #[arg(short = 'f', long = "file", value_name = "PATH", group = "address")]
    pub file: Option<PathBuf>,

    /// Project id for --file (only its low 8 bits count; 0 is refused)
    #[arg(long, value_name = "N", default_value_t = CLASSIC_PROJ_ID, value_parser = parse_proj_id, requires = "file")]
    pub proj_id: u8,

    /// Existing System V segment by id, as ipcs -m prints it
    #[arg(short = 'i', long = "id", value_name = "SHMID", value_parser = parse_id, group = "address")]
    pub id: Option<ShmId>,

    /// POSIX shared memory name (/dev/shm/NAME), with or without the leading slash
    #[arg(short = 'n', long, value_name = "NAME", value_parser = PosixName::parse, group = "address")]
    pub name: Option<PosixName>,
}

impl SegmentArgs {
    /// The address given, or the per-user default (for a stream with
    /// `stream`).
    pub fn address(&self, stream: bool) -> anyhow::Result<Address> {
        if let Some(key) = self.key {
            return Ok(Address::Key(key));
        }
        if let Some(path) = &self.file {
            return Ok(Address::File {
                path: path.clone(),
                proj_id: self.proj_id,
            });
        }
        if let Some(id) = self.id {
            return Ok(Address::Id(id));
        }
        if let Some(name) = &self.name {
            return Ok(Address::Name(name.clone()));
        }
        Address::default_for_user(stream)
    }
}

/// Largest `--size` accepted: shared memory lives in RAM.
const MAX_SIZE: u64 = 1 << 40;

/// Parses `4096`, `64K`, `1M`, `1GiB`...: powers of 1024, overflow-checked.
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let bad = || {
        format!(
            "'{raw}' is not a size: give bytes with an optional K, M or G suffix (powers of 1024; KiB/MiB/GiB also accepted), e.g. 4096, 64K, 1M"
        )
    };
    let text = raw.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .filter(|&b| b <= MAX_SIZE)
        .ok_or_else(|| {
            format!("'{raw}' is larger than the 1T this tool accepts: shared memory lives in RAM")
        })?;
    if bytes == 0 {
        return Err("a size of 0 bytes cannot hold anything; give e.g. 4K".into());
    }
    usize::try_from(bytes).map_err(|_| bad())
}

/// Parses `500ms`, `5s`, `1.5s`, `2m`, `1h`, or plain seconds like timeout(1).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "'{raw}' is not a duration: give e.g. 500ms, 5s, 1.5s, 2m (a plain number means seconds)"
        )
    };
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Parses permission bits in octal, `600` or `0600`.
pub fn parse_mode(raw: &str) -> Result<u32, String> {
    u32::from_str_radix(raw, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            format!("'{raw}' is not a mode: give octal permission bits like 0600 or 0644")
        })
}

/// Runs a binary's body: prints a failure as one line on stderr, prefixed
/// with the program name, and returns its exit code. A closed stdout ends
/// the program quietly, as for any Unix filter. A segment that another
/// process truncated under us fails the run whatever the body returned,
/// so nothing exits 0 having read or written zeros in place of content.
pub fn run(program: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    let result = body();
    if let Some(report) = crate::os::truncation_report() {
        eprintln!("{program}: {report}");
        return ExitCode::from(crate::error::Kind::Failed.exit_code());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match outcome(&err) {
            Outcome::QuietBrokenPipe => ExitCode::SUCCESS,
            Outcome::Exit(code) => {
                eprintln!("{program}: {err:#}");
                ExitCode::from(code)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn both_command_lines_are_consistent() {
        write_args::WriteArgs::command().debug_assert();
        read_args::ReadArgs::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2kib"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("2T").is_err());
        assert!(parse_size("99999999999999999999K").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("1777").is_err());
    }
}
