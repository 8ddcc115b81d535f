//! `shm-read`: dump a shared memory segment to stdout.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shm_tools::cli::{SegmentArgs, parse_duration, run};
use shm_tools::read::{ReadOptions, read};
use shm_tools::stream::read_stream;

const EXAMPLES: &str = "\
Examples:
  Two terminals, like the classic writer.c / reader.c:
    $ echo 'hello from terminal 1' | shm-write
    $ shm-read
    hello from terminal 1

  Read what the classic writer.c left (ftok(\"shmfile\", 65)), then remove it
  as reader.c does:
    $ shm-read -f shmfile --remove

  Wait up to 5 seconds for a writer:
    $ shm-read -n jobs --wait --timeout 5s

  Follow a segment: print every new version as it is published
    $ shm-read -F -n chat

  The other end of a stream (either side may start first):
    $ shm-read --stream --wait -n backup | tar t

  Metadata, as JSON:
    $ shm-read -k 0x1234 --info --json
";

/// Dump a System V or POSIX shared memory segment to stdout.
///
/// Segments written by shm-write give exactly the bytes last published;
/// others (C programs, ipcmk, Python) are read as a C string up to the first
/// NUL. Without -k/-f/-i/-n, the per-user default segment is read
/// (POSIX /dev/shm/shm-tools-UID, or $SHM_TOOLS_NAME).
///
/// With --stream it drains a `shm-write --stream` ring to stdout, like the
/// read end of a pipe, and exits non-zero if the writer dies mid-stream.
///
/// Exit status: 0 ok, 1 error, 2 usage, 3 no such segment, 124 timed out.
#[derive(Debug, Parser)]
#[command(name = "shm-read", version, after_long_help = EXAMPLES)]
struct Cli {
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

    /// Wait until the segment exists and holds content
    #[arg(short, long)]
    wait: bool,

    /// Give up waiting after DURATION (500ms, 5s, 2m) with exit 124; implies --wait
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Remove the segment after reading it (IPC_RMID, or shm_unlink)
    #[arg(long)]
    remove: bool,

    /// Print the segment's metadata instead of its content
    #[arg(long)]
    info: bool,

    /// With --info: print one JSON object
    #[arg(long, requires = "info")]
    json: bool,

    /// Print the content, then every new version, until the segment is removed
    #[arg(short = 'F', long, conflicts_with_all = ["info", "remove", "all", "raw"])]
    follow: bool,

    /// Drain a `shm-write --stream` ring to stdout until the writer is done (then remove it)
    #[arg(long, conflicts_with_all = ["info", "remove", "all", "raw", "follow", "bytes"])]
    stream: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run("shm-read", || {
        let address = cli.segment.address(cli.stream)?;
        if cli.stream {
            return read_stream(&address, cli.wait, cli.timeout);
        }
        let opts = ReadOptions {
            address,
            raw: cli.raw,
            all: cli.all,
            bytes: cli.bytes,
            wait: cli.wait,
            timeout: cli.timeout,
            remove: cli.remove,
            info: cli.info,
            json: cli.json,
            follow: cli.follow,
        };
        read(&opts, &mut std::io::stdout().lock())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
