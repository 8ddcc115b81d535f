//! Man pages and shell completions, generated from the clap definitions
//! (`cargo run --example assets -- DIR`).
//!
//! The man page's EXAMPLES section is the `--help` examples verbatim, in a
//! no-fill block: reflowed by man, `shm-read -f shmfile --remove` would
//! break across lines and its hyphens turn into typographic ones that a
//! shell does not take.

use std::io::{self, Write};
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
        man_page(&command, &mut file)?;
        written.push(page);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            written.push(clap_complete::generate_to(shell, &mut command, &name, dir)?);
        }
    }
    Ok(written)
}

/// clap_mangen's page, with the examples as a verbatim EXAMPLES section
/// in place of its reflowed EXTRA section.
pub fn man_page(command: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if let Some(examples) = command.get_after_long_help() {
        let text = examples.to_string();
        let body = text.strip_prefix("Examples:\n").unwrap_or(&text);
        writeln!(out, ".SH EXAMPLES\n.nf")?;
        for line in body.trim_end().lines() {
            writeln!(out, "{}", roff_verbatim(line))?;
        }
        writeln!(out, ".fi")?;
    }
    man.render_version_section(out)
}

/// One line of text for a no-fill block, escaped so that groff prints
/// exactly these characters: backslashes, ASCII hyphens and quotes, and
/// a leading dot or quote that would otherwise start a request.
fn roff_verbatim(line: &str) -> String {
    let mut out = String::from("\\&");
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            '~' => out.push_str("\\(ti"),
            '^' => out.push_str("\\(ha"),
            c => out.push(c),
        }
    }
    out
}
