//! `shm-read`: dump a shared memory segment to stdout.

use std::process::ExitCode;

use clap::Parser;
use shm_tools::cli::read_args::ReadArgs;
use shm_tools::cli::run;

fn main() -> ExitCode {
    let args = ReadArgs::parse();
    run("shm-read", || args.execute())
}
