//! `shm-write`: publish stdin into a shared memory segment.

use std::process::ExitCode;

use shm_tools::cli::write_args::WriteArgs;
use shm_tools::cli::{parse, run};
use shm_tools::error::require_stdin;

fn main() -> ExitCode {
    let args: WriteArgs = match parse("shm-write") {
        Ok(args) => args,
        Err(code) => return code,
    };
    run("shm-write", || {
        if args.reads_stdin() {
            require_stdin("shm-write")?;
        }
        args.execute()
    })
}
