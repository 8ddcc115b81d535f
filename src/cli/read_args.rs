//! `shm-read`'s command line.

use std::time::Duration;

use clap::{ArgGroup, Parser};

use crate::address::Address;
use crate::cli::{Progress, SegmentArgs, parse_duration, parse_owner};
use crate::cmd::list::{Filter, ListOptions, list};
use crate::cmd::read::{DumpOptions, Find, FollowOptions};
use crate::cmd::stats::StatsOptions;
use crate::cmd::stream::read_stream;

const EXAMPLES: &str = concat!(
    examples_opening!(),
    "  Read what the classic writer.c left (ftok(\"shmfile\", 65)), then remove it
  as reader.c does:
    $ shm-read -f shmfile --remove

  Wait up to 5 seconds for a writer:
    $ shm-read -n jobs --wait --timeout 5s

  Follow a log: print its records, then every new one, each follower on its own
    $ shm-read -F -n chat
    $ shm-read -F --new -n events | grep ERROR      # only what comes from now on
    $ shm-read --tail 10 -n events                  # the last 10 records

  Follow without ever missing a record (the writers wait for this follower)
    $ shm-read -F --lossless -n events

  Stop following by itself: after 100 records, at the next version, after a
  while (exit 0), or give up (exit 124) if 3 records take longer than 10s
    $ shm-read -F --count 100 -n events > first-100.txt
    $ shm-read --next -n config
    $ shm-read -F --for 1m -n events > last-minute.txt
    $ shm-read -F --count 3 --timeout 10s -n events

  The other end of a stream (either side may start first):
    $ shm-read --stream --wait -n backup | tar t

  Every segment on the machine, then the bytes of one:
    $ shm-read --list
    $ shm-read -k 0x1234 --hex

  Metadata, as JSON:
    $ shm-read -k 0x1234 --info --json

  How fast a log is going, every 2 seconds, from its header counters:
    $ shm-read -n events --stats 2s
    $ shm-read --list --stats --count 1          # every segment, one table

  Who uses what, leftovers nobody uses, and the machine's limits:
    $ shm-read -n events --info                  # users: pid and command
    $ shm-read --list --unused --remove
    $ shm-read --limits
"
);

/// Dump a System V or POSIX shared memory segment to stdout.
///
/// Segments written by shm-write give exactly the bytes last published;
/// others (C programs, ipcmk, Python) are read as a C string up to the first
/// NUL. Without -k/-f/-i/-n, the per-user default segment is read
/// (POSIX /dev/shm/shm-tools-UID, or $SHM_TOOLS_NAME).
///
/// On a log (shm-write --lines) it prints the records the log still holds,
/// like cat of a log file; --follow then prints every new record until the
/// log is removed. Each reader keeps its own position and never slows the
/// writers; one that writers overtook says on stderr how many records it
/// missed and exits 1 at its end. --lossless makes the writers wait for
/// this follower instead (it needs write access to the segment).
///
/// On a snapshot, --follow shows state: each new version as it is published,
/// skipping to the latest when versions come faster than it prints (use a
/// log for messages); --json delimits the versions.
///
/// A follow ends when the segment is removed, or by itself: after --count N
/// versions or records (exit 0), after --for DURATION (exit 0), or when
/// --timeout runs out first (exit 124, as timeout(1) would report it).
/// --next prints the next version or record to come, then exits.
///
/// --follow --json prints one object per version or record, with its time;
/// content that is not valid UTF-8 is given in base64 ("encoding"), so the
/// output is exact, and `shm-write --replay` plays it back into a log.
///
/// With --stream it drains a `shm-write --stream` ring to stdout, like the
/// read end of a pipe, and exits non-zero if the writer dies mid-stream.
///
/// Exit status: 0 ok, 1 error, 2 usage, 3 no such segment, 124 timed out.
#[derive(Debug, Parser)]
#[command(name = "shm-read", version, after_long_help = EXAMPLES)]
#[command(group(ArgGroup::new("following").args(["follow", "next"]).multiple(true)))]
pub struct ReadArgs {
    #[command(flatten)]
    segment: SegmentArgs,

    /// Read the plain C string at offset 0, even from a shm-write segment
    #[arg(long)]
    raw: bool,

    /// Dump every byte of the segment, header included
    #[arg(long, conflicts_with = "raw")]
    all: bool,

    /// Print at most N bytes
    #[arg(short = 'c', long, value_name = "N")]
    bytes: Option<u64>,

    /// Skip the first N bytes of the content (with --all: of the segment), e.g. to peek at one field with -c
    #[arg(long, visible_alias = "skip", value_name = "N", conflicts_with_all = ["follow", "next", "stream", "info", "tail"])]
    offset: Option<u64>,

    /// Print the content as a hex dump (offset, hex bytes, ASCII), like xxd
    #[arg(long, conflicts_with_all = ["info", "follow"])]
    hex: bool,

    /// Wait until the segment exists and holds content
    #[arg(short, long)]
    wait: bool,

    /// Give up after DURATION (500ms, 5s, 1m30s; a plain number is seconds) with exit 124: waiting (implies --wait), and with --follow the whole follow
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Remove the segment after reading it (IPC_RMID, or shm_unlink)
    #[arg(long)]
    remove: bool,

    /// Print the segment's metadata instead of its content (owner, size, mode and times also when you may not read it)
    #[arg(long)]
    info: bool,

    /// With --info, --list, --stats or --limits: print JSON; with --follow: one JSON object per version or record (exact: base64 for binary content)
    #[arg(long)]
    json: bool,

    /// Print the content, then every new version (snapshot) or record (log), until the segment is removed
    #[arg(short = 'F', long, conflicts_with_all = ["info", "remove", "all", "raw"])]
    follow: bool,

    /// With --follow: skip what is there (a log's records, a snapshot's version), print only what comes next
    #[arg(
        long,
        visible_alias = "from-now",
        requires = "following",
        conflicts_with = "tail"
    )]
    new: bool,

    /// On a log: start with the last N records it holds
    #[arg(long, value_name = "N", conflicts_with_all = ["info", "all", "raw", "hex"])]
    tail: Option<u64>,

    /// On a log with --follow: never miss a record; writers wait for this follower (needs write access)
    #[arg(long, requires = "following")]
    lossless: bool,

    /// With --follow: exit 0 once N versions or records have been printed; with --stats: after N lines (with --list: N tables)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    count: Option<u64>,

    /// Print the next version or record to come, then exit (--follow --new --count 1)
    #[arg(long, conflicts_with_all = ["count", "tail", "info", "remove", "all", "raw", "hex", "stream"])]
    next: bool,

    /// With --follow: follow for DURATION, then exit 0 (--timeout: exit 124 instead)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    follow_for: Option<Duration>,

    /// Drain a `shm-write --stream` ring to stdout until the writer is done (then remove it)
    #[arg(long, conflicts_with_all = ["info", "remove", "all", "raw", "follow", "bytes", "hex"])]
    stream: bool,

    /// With --stream: show bytes, rate and time on stderr (auto: only on a terminal)
    #[arg(long, value_name = "WHEN", num_args = 0..=1, default_missing_value = "auto", value_enum, requires = "stream")]
    progress: Option<Progress>,

    /// List every segment you can see, System V and POSIX, and what each holds
    ///
    /// -k, -f, -i or -n with --list show only that segment; --prefix and
    /// --owner narrow the list further.
    #[arg(short = 'L', long, conflicts_with_all = [
        "raw", "all", "bytes", "offset", "hex", "wait", "timeout",
        "info", "follow", "stream", "tail", "next", "follow_for",
    ])]
    list: bool,

    /// With --list: only the stale segments (left behind by a crash; see README); with --list --remove: remove them
    #[arg(long, requires = "list")]
    stale: bool,

    /// With --list: only POSIX names that start with PREFIX
    #[arg(long, value_name = "PREFIX", requires = "list", value_parser = parse_prefix)]
    prefix: Option<String>,

    /// With --list: only segments owned by USER (a user name or uid)
    #[arg(long, value_name = "USER", requires = "list", value_parser = parse_owner)]
    owner: Option<u32>,

    /// With --list --stale --remove and no other filter: other users' stale segments too (without it, only yours)
    #[arg(long, requires = "list")]
    all_users: bool,

    /// With --list: only the segments no process maps or holds open; with --remove: remove them
    #[arg(long, requires = "list")]
    unused: bool,

    /// Print rates from the header counters every INTERVAL (default 1s) until interrupted; with --list: a table of every segment
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "1s",
          value_parser = parse_interval,
          conflicts_with_all = ["raw", "all", "bytes", "offset", "hex", "wait", "timeout", "info", "follow", "stream", "tail", "remove"])]
    stats: Option<Duration>,

    /// Show the System V limits (SHMMNI, SHMALL, SHMMAX) and /dev/shm's size, with what is in use
    #[arg(long, conflicts_with_all = [
        "key", "file", "id", "name", "raw", "all", "bytes", "offset", "hex", "wait", "timeout",
        "info", "follow", "stream", "tail", "list", "stats", "remove",
    ])]
    limits: bool,
}

/// An interval for --stats: a duration of at least 10ms.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    let interval = parse_duration(raw)?;
    if interval < crate::cmd::stats::SAMPLE {
        return Err(format!(
            "'{raw}' is too short an interval: give at least 10ms, e.g. 1s or 500ms"
        ));
    }
    Ok(interval)
}

/// Parses `--prefix`: an empty one (`--prefix "$UNSET"`) would match every
/// name, and so would widen `--stale --remove` past the caller's own
/// segments; it is refused instead.
fn parse_prefix(raw: &str) -> Result<String, String> {
    if raw.trim_start_matches('/').is_empty() {
        return Err(
            "an empty prefix matches every name: give the start of the names, e.g. --prefix job-"
                .into(),
        );
    }
    Ok(raw.to_owned())
}

/// Parses `--count`: a whole number of versions or records, 1 or more.
fn parse_count(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(
            "a follow that prints 0 versions or records has nothing to do; give 1 or more".into(),
        ),
        Err(_) => Err(format!(
            "'{raw}' is not a count: give a whole number, 1 or more"
        )),
    }
}

/// What `shm-read` was asked to do, each with only the options it uses.
/// Every check across flags that clap cannot express is made once, in
/// [`ReadArgs::mode`].
#[derive(Debug, Clone)]
pub enum ReadMode {
    /// `--limits`: the machine's limits (as JSON with `json`).
    Limits {
        /// Print JSON.
        json: bool,
    },
    /// `--list`: every segment, filtered, maybe removing stale or unused ones.
    List(ListOptions),
    /// `--list --stats`: a table of every segment's rates.
    StatsAll(StatsOptions),
    /// `--stats`: one segment's rates.
    Stats(Address, StatsOptions),
    /// `--stream`: drain a ring to stdout.
    Stream {
        /// Which segment.
        address: Address,
        /// Wait for the writer.
        wait: bool,
        /// Bound on that wait.
        timeout: Option<Duration>,
        /// Show progress on stderr.
        progress: Option<Progress>,
    },
    /// `--info`: the segment's metadata.
    Info {
        /// Which segment, and whether to wait for it.
        find: Find,
        /// Print JSON.
        json: bool,
        /// Remove the segment afterwards.
        remove: bool,
    },
    /// Print what the segment holds now.
    Dump(DumpOptions),
    /// `--follow` (or `--next`): every new version or record.
    Follow(FollowOptions),
}

/// A usage error (exit 2) made of `message`.
fn usage(message: impl Into<String>) -> anyhow::Error {
    crate::error::failure(crate::error::Kind::Usage, message.into())
}

impl ReadArgs {
    /// Does what the command line asks, writing data to stdout.
    pub fn execute(&self) -> anyhow::Result<()> {
        self.mode()?.run()
    }

    /// What the command line asks for, once every flag that does not go
    /// with the others has been refused (exit 2).
    pub fn mode(&self) -> anyhow::Result<ReadMode> {
        if self.limits {
            return Ok(ReadMode::Limits { json: self.json });
        }
        let follow = self.follow || self.next;
        let stats = self.stats.map(|interval| StatsOptions {
            interval,
            count: self.count,
            json: self.json,
        });
        let counted = self.count.is_some() && stats.is_none();
        if !follow && (counted || self.follow_for.is_some()) {
            let flag = if counted {
                "--count N ends a follow after N versions or records, or --stats after N lines (-c N prints at most N bytes)"
            } else {
                "--for DURATION ends a follow after that long (--timeout bounds a --wait)"
            };
            return Err(usage(format!(
                "{flag}; give --follow (-F) too; try 'shm-read --help'"
            )));
        }
        if self.list {
            return self.list_mode(stats);
        }
        let address = self.segment.address(self.stream)?;
        if let Some(stats) = stats {
            return Ok(ReadMode::Stats(address, stats));
        }
        if self.stream {
            return Ok(ReadMode::Stream {
                address,
                wait: self.wait,
                timeout: self.timeout,
                progress: self.progress,
            });
        }
        if self.json && !self.info && !follow {
            return Err(usage(
                "--json goes with --info, --list, --follow, --stats or --limits",
            ));
        }
        let find = Find {
            address,
            wait: self.wait,
            timeout: self.timeout,
        };
        Ok(if self.info {
            ReadMode::Info {
                find,
                json: self.json,
                remove: self.remove,
            }
        } else if follow {
            ReadMode::Follow(FollowOptions {
                find,
                bytes: self.bytes,
                json: self.json,
                new: self.new || self.next,
                tail: self.tail,
                lossless: self.lossless,
                count: if self.next { Some(1) } else { self.count },
                follow_for: self.follow_for,
            })
        } else {
            ReadMode::Dump(DumpOptions {
                find,
                raw: self.raw,
                all: self.all,
                bytes: self.bytes,
                offset: self.offset,
                hex: self.hex,
                remove: self.remove,
                tail: self.tail,
            })
        })
    }

    /// `--list` and what goes with it: filters, --stale/--unused removal,
    /// --stats for every segment.
    fn list_mode(&self, stats: Option<StatsOptions>) -> anyhow::Result<ReadMode> {
        if self.remove && !self.stale && !self.unused {
            return Err(usage(
                "--list --remove removes only stale or unused segments: give --stale or --unused too (shm-read --list --stale --remove)",
            ));
        }
        if self.all_users && !(self.remove && (self.stale || self.unused)) {
            return Err(usage(
                "--all-users goes with --list --stale --remove or --list --unused --remove (a listing shows every user's segments anyway)",
            ));
        }
        let segment = &self.segment;
        let named = segment.key.is_some()
            || segment.file.is_some()
            || segment.id.is_some()
            || segment.name.is_some();
        let filter = Filter {
            target: if named {
                Some(segment.address(false)?.resolve()?)
            } else {
                None
            },
            prefix: self.prefix.clone(),
            owner: self.owner,
        };
        if let Some(stats) = stats {
            if self.stale || self.unused || named || self.prefix.is_some() || self.owner.is_some() {
                return Err(usage(
                    "--list --stats shows every segment: it does not go with --stale, --unused or a filter; for one segment, give shm-read -n NAME --stats",
                ));
            }
            return Ok(ReadMode::StatsAll(stats));
        }
        Ok(ReadMode::List(ListOptions {
            json: self.json,
            stale: self.stale,
            remove: self.remove,
            unused: self.unused,
            filter,
            all_users: self.all_users,
        }))
    }
}

impl ReadMode {
    /// Runs the command, writing data to stdout.
    pub fn run(&self) -> anyhow::Result<()> {
        let out = &mut std::io::stdout().lock();
        match self {
            ReadMode::Limits { json } => crate::cmd::limits::show(*json, out),
            ReadMode::List(opts) => list(opts, out),
            ReadMode::StatsAll(stats) => crate::cmd::stats::watch_all(*stats, out),
            ReadMode::Stats(address, stats) => crate::cmd::stats::watch(address, *stats, out),
            ReadMode::Stream {
                address,
                wait,
                timeout,
                progress,
            } => read_stream(address, *wait, *timeout, *progress),
            ReadMode::Info { find, json, remove } => {
                crate::cmd::info::show(&find.address, find.wait, find.timeout, *json, *remove, out)
            }
            ReadMode::Dump(opts) => crate::cmd::read::dump(opts, out),
            ReadMode::Follow(opts) => crate::cmd::read::follow(opts, out),
        }
    }
}
