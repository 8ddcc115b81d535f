//! Every example in README.md and in both tools' `--help` has a scenario
//! (`examples_are_all_covered` fails when one is added, changed or removed
//! without it), and the install, PATH and completion examples work.
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::scene::{NOT_RUN, RUN, Scene};
use common::*;

/// Strips the prompt and a trailing `# comment` (after two spaces).
fn normalize(line: &str) -> String {
    let line = line.trim().strip_prefix("$ ").unwrap_or(line.trim());
    let line = line.find("  #").map_or(line, |i| &line[..i]);
    line.trim().to_owned()
}

/// Commands in README's ```sh blocks: the `$ ` lines where a block has
/// them (the rest is output), else every line.
fn readme_examples() -> Vec<String> {
    let readme = include_str!("../README.md");
    let mut out = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                let prompted = lines.iter().any(|l| l.starts_with("$ "));
                out.extend(
                    lines
                        .iter()
                        .filter(|l| !l.trim().is_empty() && (!prompted || l.starts_with("$ ")))
                        .map(|l| normalize(l)),
                );
                block = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    out
}

/// Commands in the examples that end `--help` (the `$ ` lines).
fn help_examples(tool: &str) -> Vec<String> {
    let out = run(Command::new(bin_path(tool)).arg("--help"), b"");
    out.ok();
    let help = out.stdout_str();
    assert!(help.contains("Examples:"), "{tool} --help has no examples");
    help.lines()
        .filter(|l| l.trim_start().starts_with("$ "))
        .map(normalize)
        .collect()
}

fn bin_path(tool: &str) -> &'static str {
    match tool {
        "shm-write" => env!("CARGO_BIN_EXE_shm-write"),
        _ => env!("CARGO_BIN_EXE_shm-read"),
    }
}

#[test]
fn examples_are_all_covered() {
    let mut documented: BTreeSet<String> = readme_examples().into_iter().collect();
    documented.extend(help_examples("shm-write"));
    documented.extend(help_examples("shm-read"));
    let known: BTreeSet<String> = RUN
        .iter()
        .copied()
        .chain(NOT_RUN.iter().map(|(c, _)| *c))
        .map(str::to_owned)
        .collect();
    let untested: Vec<_> = documented.difference(&known).collect();
    assert!(
        untested.is_empty(),
        "documented examples no test runs: {untested:#?}"
    );
    let stale: Vec<_> = known.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "tested examples the docs no longer show: {stale:#?}"
    );
}

#[test]
fn the_build_goes_on_path_as_documented() {
    // Run as documented, in a directory whose target/release is this
    // test's build; the later examples then find the tools by name.
    let scene = Scene::new();
    let bins = Path::new(env!("CARGO_BIN_EXE_shm-read")).parent().unwrap();
    std::fs::create_dir_all(scene.dir.join("target")).unwrap();
    std::os::unix::fs::symlink(bins, scene.dir.join("target/release")).unwrap();
    let doc = "export PATH=\"$PWD/target/release:$PATH\"";
    assert!(RUN.contains(&doc));
    let script =
        format!("{doc} && command -v shm-write && command -v shm-read && shm-write --version");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .current_dir(&scene.dir)
        .env("PATH", "/usr/bin:/bin");
    let out = run(&mut cmd, b"");
    out.ok();
    let here = scene.dir.join("target/release");
    assert_eq!(
        out.stdout_str(),
        format!(
            "{}/shm-write\n{}/shm-read\nshm-write {}\n",
            here.display(),
            here.display(),
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn the_first_commands_leftover_is_removed_as_documented() {
    let scene = Scene::new();
    scene.run("echo 'Hello from terminal 1' | shm-write", b"");
    assert!(scene.default.exists());
    scene.run("./target/release/shm-read --remove > /dev/null", b"");
    assert!(!scene.default.exists());
}

#[test]
fn completion_registers_in_bash() {
    let scene = Scene::new();
    let doc = "source <(COMPLETE=bash shm-read) && source <(COMPLETE=bash shm-write)";
    let script = format!("{} && complete -p shm-read shm-write", scene.adapt(doc));
    let out = run(scene.shell("bash").args(["-c", &script]), b"");
    out.ok();
    let registered = out.stdout_str();
    assert!(
        registered.contains("_clap_complete_shm_read shm-read")
            && registered.contains("_clap_complete_shm_write shm-write"),
        "{registered}"
    );
}
