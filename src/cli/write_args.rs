//! `shm-write`'s command line.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;

use crate::address::Address;
use crate::cli::{Progress, SegmentArgs, parse_mode, parse_size};
use crate::cmd::lines::{LinesOptions, write_lines};
use crate::cmd::replay::{Speed, replay};
use crate::cmd::stream::write_stream;
use crate::cmd::write::{SnapshotOptions, write_snapshot};

const EXAMPLES: &str = concat!(
    examples_opening!(),
    "  Talk to the classic C programs (ftok(\"shmfile\", 65), a C string):
    $ touch shmfile
    $ echo 'hi, reader.c' | shm-write --raw -f shmfile

  A live chat: each typed line is appended to a log; with --wait the
  follower may start first, without it the writer must:
    $ shm-write -l -n chat          # terminal 1
    $ shm-read -F --wait -n chat    # terminal 2

  Many writers, one log: every line arrives whole
    $ echo 'job 7 done' | shm-write --lines -n events

  Record a log for a minute, then play it back into another, as fast as
  it came (binary records too), or as fast as possible
    $ shm-read -F --json --for 1m -n events > events.jsonl
    $ shm-write --lines --replay events.jsonl -n events-again
    $ shm-write --lines --replay events.jsonl --speed max -n events-again

  A pipe between two unrelated pipelines, through a 4 MiB ring (either
  side may start first):
    $ tar c . | shm-write --stream -n backup          # terminal 1
    $ shm-read --stream --wait -n backup | tar t      # terminal 2

  Keys and ids as ipcs shows them:
    $ shm-write -k 0x1234 -s 1M < picture.png
    $ ipcs -m
"
);

/// Publish stdin into a System V or POSIX shared memory segment.
///
/// The segment is created when missing (mode 0600 unless -m) and its content
/// is replaced by all of stdin, atomically: a reader sees the old content or
/// the new, never a mix, and a failed or killed write leaves the old content.
/// Without -k/-f/-i/-n, a per-user default segment is used
/// (POSIX /dev/shm/shm-tools-UID, or $SHM_TOOLS_NAME).
///
/// Three kinds of segment: a snapshot (the default) holds one state,
/// replaced as a whole; a log (--lines) holds messages, each line one
/// record that any number of `shm-read --follow` see in order; a stream
/// (--stream) carries bytes to one reader, like a pipe.
///
/// With --lines the log is created (1M unless --size) before any input is
/// read, and each line is appended as one record; a line that can never fit
/// is skipped with a message, and the exit status is then 1.
///
/// With --replay FILE the records of a recording (what `shm-read --follow
/// --json` prints) are appended to the log instead of stdin's lines, as
/// far apart in time as they were recorded (--speed 2: twice as fast,
/// --speed max: no pauses). A malformed line stops it with an error naming
/// the line; a regular file is checked whole before anything is appended.
///
/// With --stream the segment becomes a ring buffer that carries stdin, of
/// any size, to one `shm-read --stream`, like a pipe between unrelated
/// processes; the writer blocks while the ring is full.
///
/// Exit status: 0 ok, 1 error (also: the stream's reader went away),
/// 2 usage, 3 no such segment (-i).
#[derive(Debug, Parser)]
#[command(name = "shm-write", version, after_long_help = EXAMPLES)]
pub struct WriteArgs {
    #[command(flatten)]
    segment: SegmentArgs,

    /// Size when creating (4096, 64K, 1M, 1GiB...); default fits the input, at least 4K
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<usize>,

    /// Permissions when creating, in octal (applied exactly, umask ignored)
    #[arg(short, long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    mode: u32,

    /// Fail if the segment already exists
    #[arg(short = 'x', long)]
    exclusive: bool,

    /// System V, by key: if stdin does not fit, replace the segment by a new one of the same key that does
    ///
    /// The old segment is removed by its id; programs attached to it keep it
    /// until they re-attach. A POSIX segment grows in place instead, and a
    /// segment addressed by id (-i) is never replaced.
    #[arg(long, conflicts_with_all = ["exclusive", "lines", "zero_terminated", "stream"])]
    replace: bool,

    /// Append stdin to the current content instead of replacing it
    #[arg(short, long)]
    append: bool,

    /// Write plain bytes plus a NUL (the classic C-string layout), no header
    #[arg(long)]
    raw: bool,

    /// Make the segment a log: append each input line (with its newline) as one record
    #[arg(short, long, conflicts_with_all = ["append", "raw"])]
    lines: bool,

    /// With --lines: records end at NUL instead of newline (like xargs -0); implies --lines
    #[arg(short = 'z', long, conflicts_with_all = ["append", "raw"])]
    zero_terminated: bool,

    /// Append the records of FILE (shm-read -F --json output; - for stdin) to the log, paced as recorded; implies --lines
    #[arg(long, value_name = "FILE", conflicts_with_all = ["append", "raw", "zero_terminated", "stream", "replace"])]
    replay: Option<PathBuf>,

    /// With --replay: play FACTOR times as fast (0.5: half as fast), or max: without pauses
    #[arg(long, value_name = "FACTOR", value_parser = parse_speed, requires = "replay")]
    speed: Option<Speed>,

    /// Make the segment a pipe: stream stdin, any size, to `shm-read --stream` (ring size: --size, default 4M)
    #[arg(long, conflicts_with_all = ["append", "raw", "lines", "zero_terminated", "exclusive"])]
    stream: bool,

    /// With --stream: show bytes, rate and time on stderr (auto: only on a terminal)
    #[arg(long, value_name = "WHEN", num_args = 0..=1, default_missing_value = "auto", value_enum, requires = "stream")]
    progress: Option<Progress>,
}

/// Parses `--speed`: a positive factor, or `max`.
fn parse_speed(raw: &str) -> Result<Speed, String> {
    let text = raw.trim();
    if text.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
        _ => Err(format!(
            "'{raw}' is not a speed: give a positive factor (2: twice as fast, 0.5: half as fast) \
             or max (no pauses)"
        )),
    }
}

/// What `shm-write` was asked to do, each with only the options it uses.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// Publish all of stdin as the snapshot's new content (the default).
    Snapshot(SnapshotOptions),
    /// `--lines` (`-z`): append each input line to a log as one record.
    Lines(Address, LinesOptions),
    /// `--replay FILE`: append a recording's records to a log, paced as recorded.
    Replay {
        /// Which log.
        address: Address,
        /// How the log is created and what ends a record.
        lines: LinesOptions,
        /// The recording (`-`: stdin).
        recording: PathBuf,
        /// How fast.
        speed: Speed,
    },
    /// `--stream`: carry stdin through a ring to one reader.
    Stream {
        /// Which segment.
        address: Address,
        /// Ring size when creating.
        size: Option<usize>,
        /// Permission bits when creating.
        mode: u32,
        /// Show progress on stderr.
        progress: Option<Progress>,
    },
}

impl WriteMode {
    /// Which segment.
    fn address(&self) -> &Address {
        match self {
            WriteMode::Snapshot(opts) => &opts.address,
            WriteMode::Lines(address, _)
            | WriteMode::Replay { address, .. }
            | WriteMode::Stream { address, .. } => address,
        }
    }

    /// Runs the command, reading stdin.
    pub fn run(&self) -> anyhow::Result<()> {
        match self {
            WriteMode::Snapshot(opts) => write_snapshot(opts, &mut std::io::stdin().lock()),
            WriteMode::Lines(address, lines) => {
                write_lines(&address.resolve()?, *lines, &mut std::io::stdin().lock())
            }
            WriteMode::Replay {
                address,
                lines,
                recording,
                speed,
            } => replay(&address.resolve()?, lines, recording, *speed),
            WriteMode::Stream {
                address,
                size,
                mode,
                progress,
            } => write_stream(address, *size, *mode, *progress),
        }
    }

    /// On a terminal, stdin is someone typing: say (on stderr) what their
    /// lines become and how to end, as a prompt would, instead of
    /// waiting silently for the end of input.
    fn say_what_is_read(&self) {
        let Ok(target) = self.address().resolve() else {
            return;
        };
        let what = match self {
            WriteMode::Replay { .. } => format!(
                "each line you type is a record in JSON (as shm-read --follow --json prints), \
                 appended to {target}; Ctrl-D to finish"
            ),
            WriteMode::Lines(..) => {
                format!(
                    "each line you type is appended to {target} as one record; Ctrl-D to finish"
                )
            }
            WriteMode::Stream { .. } => {
                format!("what you type streams through {target} to its reader; Ctrl-D to finish")
            }
            WriteMode::Snapshot(opts) => {
                let how = if opts.append {
                    "is appended to"
                } else {
                    "becomes the content of"
                };
                format!(
                    "reading stdin: what you type {how} {target} when you press Ctrl-D \
                     (Ctrl-C leaves it as it was)"
                )
            }
        };
        crate::notice::notice(format_args!("shm-write: {what}"));
    }
}

impl WriteArgs {
    /// Whether this command reads stdin (`--replay FILE` does not).
    #[must_use]
    pub fn reads_stdin(&self) -> bool {
        self.replay
            .as_ref()
            .is_none_or(|file| file.as_os_str() == "-")
    }

    /// What the command line asks for.
    pub fn mode(&self) -> anyhow::Result<WriteMode> {
        let address = self.segment.address(self.stream)?;
        if self.stream {
            return Ok(WriteMode::Stream {
                address,
                size: self.size,
                mode: self.mode,
                progress: self.progress,
            });
        }
        let lines = LinesOptions {
            size: self.size,
            mode: self.mode,
            exclusive: self.exclusive,
            delimiter: if self.zero_terminated { 0 } else { b'\n' },
        };
        if let Some(recording) = &self.replay {
            return Ok(WriteMode::Replay {
                address,
                lines,
                recording: recording.clone(),
                speed: self.speed.unwrap_or(Speed::Factor(1.0)),
            });
        }
        if self.lines || self.zero_terminated {
            return Ok(WriteMode::Lines(address, lines));
        }
        Ok(WriteMode::Snapshot(SnapshotOptions {
            address,
            size: self.size,
            mode: self.mode,
            exclusive: self.exclusive,
            append: self.append,
            raw: self.raw,
            replace: self.replace,
        }))
    }

    /// Does what the command line asks.
    pub fn execute(&self) -> anyhow::Result<()> {
        let mode = self.mode()?;
        if self.reads_stdin() && std::io::stdin().is_terminal() {
            mode.say_what_is_read();
        }
        mode.run()
    }
}
