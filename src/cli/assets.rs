//! Man pages and shell completions, generated from the clap definitions
//! (`cargo run --example assets -- DIR`).

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::read_args::ReadArgs;
use crate::cli::write_args::WriteArgs;

/// Writes `shm-write.1`, `shm-read.1` and bash, zsh and fish completions
/// for both into `dir`; returns the files written.
pub fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for mut command in [WriteArgs::command(), ReadArgs::command()] {
        let name = command.get_name().to_owned();
        let page = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&page)?;
        clap_mangen::Man::new(command.clone()).render(&mut file)?;
        written.push(page);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            written.push(clap_complete::generate_to(shell, &mut command, &name, dir)?);
        }
    }
    Ok(written)
}
