//! `shm-write`: publish stdin into a shared memory segment.

use std::process::ExitCode;

use clap::Parser;
use shm_tools::cli::run;
use shm_tools::cli::write_args::WriteArgs;
use shm_tools::error::require_stdin;

fn main() -> ExitCode {
    let args = WriteArgs::parse();
    run("shm-write", || {
        require_stdin("shm-write")?;
        args.execute()
    })
}
