//! `shm-read`: dump a shared memory segment to stdout.

use std::process::ExitCode;

use shm_tools::cli::read_args::ReadArgs;
use shm_tools::cli::{parse, run};
use shm_tools::error::require_stdout;

fn main() -> ExitCode {
    let args: ReadArgs = match parse("shm-read") {
        Ok(args) => args,
        Err(code) => return code,
    };
    run("shm-read", || {
        require_stdout("shm-read")?;
        args.execute()
    })
}
