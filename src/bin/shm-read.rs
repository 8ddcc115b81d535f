//! `shm-read`: dump a shared memory segment to stdout.

use std::process::ExitCode;

use clap::Parser;
use shm_tools::cli::read_args::ReadArgs;
use shm_tools::cli::run;
use shm_tools::error::require_stdout;

fn main() -> ExitCode {
    let args = ReadArgs::parse();
    run("shm-read", || {
        require_stdout("shm-read")?;
        args.execute()
    })
}
