//! What both binaries share on the command line: the addressing options,
//! value parsers for sizes, durations and modes, shell completion of
//! existing segments, and the `main` wrappers that turn a usage error or
//! any other error into one stderr line and an exit code.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::address::{Address, CLASSIC_PROJ_ID, PosixName, parse_id, parse_key, parse_proj_id};
use crate::cmd::explain::outcome;
pub use crate::cmd::progress::Progress;
use crate::error::Outcome;
use crate::sys::{ShmId, ShmKey};

/// The start of both tools' `--help` examples: the two-terminal pair that
/// the classic writer.c / reader.c are.
macro_rules! examples_opening {
    () => {
        "\
Examples:
  Two terminals, like the classic writer.c / reader.c:
    $ echo 'hello from terminal 1' | shm-write
    $ shm-read
    hello from terminal 1

"
    };
}

pub mod assets;
pub mod read_args;
pub mod write_args;

/// How to find the segment; at most one of key, file, id, name.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct SegmentArgs {
    /// System V key, 0x-hex as ipcs prints it or decimal (0 = IPC_PRIVATE)
    #[arg(short = 'k', long, value_name = "KEY", value_parser = parse_key, group = "address", add = ArgValueCandidates::new(key_candidates))]
    pub key: Option<ShmKey>,

    /// Derive the key with ftok(PATH, --proj-id), like the classic C programs
    #[arg(short = 'f', long = "file", value_name = "PATH", group = "address")]
    pub file: Option<PathBuf>,

    /// Project id for --file (only its low 8 bits count; 0 is refused)
    #[arg(long, value_name = "N", default_value_t = CLASSIC_PROJ_ID, value_parser = parse_proj_id, requires = "file")]
    pub proj_id: u8,

    /// Existing System V segment by id, as ipcs -m prints it
    #[arg(short = 'i', long = "id", value_name = "SHMID", value_parser = parse_id, group = "address", add = ArgValueCandidates::new(id_candidates))]
    pub id: Option<ShmId>,

    /// POSIX shared memory name (/dev/shm/NAME), with or without the leading slash
    #[arg(short = 'n', long, value_name = "NAME", value_parser = PosixName::parse, group = "address", add = ArgValueCandidates::new(name_candidates))]
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

/// Longest wait a duration asks for; longer ones are cut to it, as
/// timeout(1) clamps what it cannot represent. A century is forever for a
/// shell command, and far from where `Instant + Duration` overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses what humantime accepts (`500ms`, `5s`, `1.5s`, `1m30s`, `2min`,
/// `1h 30m`...) or a plain number of seconds (`5`, `0.5`), like timeout(1).
/// Absurdly long durations are clamped to [`MAX_DURATION`].
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if plain {
        text.parse::<f64>()
            .ok()
            // Only digits and dots: too large to represent (even infinite) is the only failure.
            .map(|s| Duration::try_from_secs_f64(s).unwrap_or(MAX_DURATION))
            .ok_or_else(|| format!("'{raw}' is not a number of seconds"))
    } else {
        humantime::parse_duration(text).map_err(|e| {
            format!(
                "'{raw}' is not a duration ({e}): give e.g. 500ms, 5s, 1.5s, 1m30s, 2min, 1h \
                 (a plain number means seconds)"
            )
        })
    };
    parsed.map(|d| d.min(MAX_DURATION))
}

/// Parses a user for `--owner`: a name from the user database, or a uid.
pub fn parse_owner(raw: &str) -> Result<u32, String> {
    if let Ok(uid) = raw.parse::<u32>() {
        return Ok(uid);
    }
    crate::users::uid_of(raw)
        .ok_or_else(|| format!("'{raw}' is not a user name or uid on this machine"))
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

/// Parses the command line of `program` (`shm-write`, `shm-read`).
///
/// First answers a shell's completion request, if this run is one
/// (`COMPLETE=bash shm-read ...`, see README), and exits. `--help` and
/// `--version` print as clap renders them and give `Err(0)`; any other
/// problem is a usage error: one line on stderr, `Err(2)`.
pub fn parse<T: Parser>(program: &str) -> Result<T, ExitCode> {
    clap_complete::CompleteEnv::with_factory(T::command).complete();
    T::try_parse().map_err(|err| {
        if err.use_stderr() {
            crate::notice::notice(format_args!(
                "{}",
                usage_error(program, &err, std::env::args().skip(1))
            ));
            ExitCode::from(2)
        } else {
            // Help and version go to stdout unchanged; a closed stdout
            // leaves nothing to report.
            let _ = err.print();
            ExitCode::SUCCESS
        }
    })
}

/// The one-line message for a usage error: clap's first line, its tips,
/// and for a stray plain argument what the tool expects instead. `args`
/// is the command line after the program name, for the suggestion.
#[must_use]
pub fn usage_error(program: &str, err: &clap::Error, args: impl Iterator<Item = String>) -> String {
    let rendered = err.render().to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let mut what = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .trim_end()
        .to_owned();
    // "the following required arguments were not provided:" lists them on
    // the lines after, indented.
    if what.ends_with(':') {
        let listed: Vec<&str> = lines
            .clone()
            .take_while(|l| l.starts_with("  ") && !l.trim().is_empty())
            .map(str::trim)
            .collect();
        what = format!("{} {}", what, listed.join(", "));
    }
    let stray = match (err.kind(), err.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(arg)))
            if arg == "-" || !arg.starts_with('-') =>
        {
            Some(arg.clone())
        }
        _ => None,
    };
    let mut message = format!("{program}: error: {}", what.trim_end());
    if let Some(arg) = stray {
        let arg = arg.as_str();
        message = format!("{program}: error: unexpected argument '{arg}'");
        if program == "shm-write" {
            let (data, rest) = split_stray_words(arg, args);
            let _ = write!(
                message,
                ": shm-write reads the data from stdin, not from arguments, e.g. echo {} | {}",
                shell_words(&[data]),
                shell_words(&[&[program.to_owned()][..], &rest].concat())
            );
        } else {
            let flag = if parse_key(arg).is_ok() { "-k" } else { "-n" };
            let _ = write!(
                message,
                ": name the segment with an option, e.g. {program} {flag} {} \
                 (-n NAME for a POSIX name, -k KEY for a System V key)",
                shell_words(&[arg.to_owned()])
            );
        }
    } else {
        for tip in lines.filter_map(|l| l.trim().strip_prefix("tip: ")) {
            let _ = write!(message, " ({tip})");
        }
    }
    // Writing to a String cannot fail.
    let _ = write!(message, "; try '{program} --help'");
    message
}

/// Splits `args` into the plain words starting at `first` (the data the
/// user meant, joined by spaces) and every other argument.
fn split_stray_words(first: &str, args: impl Iterator<Item = String>) -> (String, Vec<String>) {
    let mut words = Vec::new();
    let mut rest = Vec::new();
    let mut in_words = false;
    for arg in args {
        if words.is_empty() && arg == first {
            in_words = true;
        } else if in_words && arg.starts_with('-') {
            in_words = false;
        }
        if in_words {
            words.push(arg);
        } else {
            rest.push(arg);
        }
    }
    (words.join(" "), rest)
}

/// `words` as a shell would need them typed: each quoted unless plain.
fn shell_words(words: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@%+=".contains(c))
    };
    words
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Completion for `-n`: the POSIX objects in /dev/shm.
fn name_candidates() -> Vec<CompletionCandidate> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut names: Vec<CompletionCandidate> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            PosixName::parse(&name).ok()?;
            let size = e.metadata().map_or(0, |m| m.len());
            Some(CompletionCandidate::new(name).help(Some(format!("{size} bytes").into())))
        })
        .collect();
    names.sort_by(|a, b| a.get_value().cmp(b.get_value()));
    names
}

/// Completion for `-k`: the keys of existing System V segments.
fn key_candidates() -> Vec<CompletionCandidate> {
    crate::sysvipc::table()
        .into_iter()
        .map(|row| (row.id, row.stat))
        .filter(|(_, stat)| stat.key != ShmKey::PRIVATE)
        .map(|(id, stat)| {
            CompletionCandidate::new(stat.key.to_string())
                .help(Some(format!("id {id}, {} bytes", stat.size).into()))
        })
        .collect()
}

/// Completion for `-i`: the ids of existing System V segments.
fn id_candidates() -> Vec<CompletionCandidate> {
    crate::sysvipc::table()
        .into_iter()
        .map(|row| (row.id, row.stat))
        .map(|(id, stat)| {
            CompletionCandidate::new(id.to_string()).help(Some(
                format!("key {}, {} bytes", stat.key, stat.size).into(),
            ))
        })
        .collect()
}

/// Runs a binary's body: prints a failure as one line on stderr, prefixed
/// with the program name, and returns its exit code. A closed stdout ends
/// the program quietly, as for any Unix filter. A segment that another
/// process truncated under us fails the run whatever the body returned,
/// so nothing exits 0 having read or written zeros in place of content.
pub fn run(program: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    // Past `ulimit -f`, a call fails with EFBIG and is reported, instead of
    // the kernel killing us silently.
    crate::sys::ignore_file_size_signal();
    let result = body();
    if let Some(report) = crate::sys::truncation_report() {
        crate::notice::notice(format_args!("{program}: {report}"));
        return ExitCode::from(crate::error::Kind::Failed.exit_code());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match outcome(&err) {
            Outcome::QuietBrokenPipe => ExitCode::SUCCESS,
            Outcome::Exit(code) => {
                // Not eprintln!: a stderr that cannot be written (a file
                // past ulimit -f, say) must not turn the error into a panic.
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!("{program}: {err:#}\n"),
                );
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
        assert!(parse_duration("5q").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.2.3").is_err());
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10000000000000000000"), Ok(MAX_DURATION));
        assert_eq!(parse_duration(&"9".repeat(400)), Ok(MAX_DURATION));
        assert_eq!(parse_duration("1000years"), Ok(MAX_DURATION));
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("1777").is_err());
    }
}
