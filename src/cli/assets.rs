//! Man pages and shell completions, generated from the clap definitions
//! (`cargo run --example assets -- DIR`).
//!
//! The man page's EXAMPLES section is the `--help` examples verbatim, in a
//! no-fill block: reflowed by man, `shm-read -f shmfile --remove` would
//! break across lines and its hyphens turn into typographic ones that a
//! shell does not take.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::read_args::ReadArgs;
use crate::cli::write_args::WriteArgs;

/// Writes `shm-write.1`, `shm-read.1`, and bash, zsh and fish completions
/// for both into `dir`, each under the name its shell looks for, in a
/// directory per shell (`bash/shm-write`, `zsh/_shm-write`,
/// `fish/shm-write.fish`), so they are copied as they are; returns the
/// files written.
pub fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for mut command in [WriteArgs::command(), ReadArgs::command()] {
        let name = command.get_name().to_owned();
        let page = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&page)?;
        man_page(&command, &mut file)?;
        written.push(page);
        for (shell, subdir, file_name) in [
            (Shell::Bash, "bash", name.clone()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let path = dir.join(subdir).join(file_name);
            std::fs::create_dir_all(dir.join(subdir))?;
            let mut file = std::fs::File::create(&path)?;
            clap_complete::generate(shell, &mut command, &name, &mut file);
            file.flush()?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The SYNOPSIS section, with each option's value placeholder
/// (`[-k|--key KEY]`), which clap_mangen's own leaves out.
fn synopsis(command: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    // Built, so that every argument knows how many values it takes (and
    // --help and --version are there).
    let mut command = command.clone();
    command.build();
    let mut line = format!("\\fB{}\\fR", roff_escape(command.get_name()));
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let flags = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("\\fB-{short}\\fR|\\fB--{long}\\fR"),
            (Some(short), None) => format!("\\fB-{short}\\fR"),
            (None, Some(long)) => format!("\\fB--{long}\\fR"),
            (None, None) => continue,
        };
        let takes = arg.get_num_args().is_some_and(|n| n.takes_values());
        let value = match arg.get_value_names() {
            Some(names) if takes => {
                let names = names.join(" ");
                if arg.get_num_args().is_some_and(|n| n.min_values() == 0) {
                    format!("[=\\fI{names}\\fR]")
                } else {
                    format!(" \\fI{names}\\fR")
                }
            }
            _ => String::new(),
        };
        // Writing to a String cannot fail.
        let _ = write!(line, " [{}{}]", roff_escape(&flags), roff_escape(&value));
    }
    writeln!(out, ".SH SYNOPSIS\n{line}")
}

/// Escapes the hyphens of command-line text for roff, so they stay ASCII.
fn roff_escape(text: &str) -> String {
    text.replace('-', "\\-")
}

/// clap_mangen's page, with the examples as a verbatim EXAMPLES section
/// in place of its reflowed EXTRA section.
pub fn man_page(command: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    synopsis(command, out)?;
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
