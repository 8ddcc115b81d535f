//! Every example in README.md and in both tools' `--help` is run here, so
//! the documentation cannot rot: `examples_are_all_covered` fails when an
//! example is added, changed or removed without its scenario, and each
//! scenario runs the documented command text through `sh`, with only the
//! segment names, keys and ids swapped for unique ones (and a minute of
//! `--for` cut to a second).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;

/// Commands documented but not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo build --release && echo 'hello, shared memory' | ./target/release/shm-write && ./target/release/shm-read",
        ".ci/run runs it literally",
    ),
    ("cargo test --release", "it is what runs this test"),
    (
        "cargo install --path .",
        ".ci/run installs into a scratch root",
    ),
    (
        "cargo run --example assets -- target/assets",
        "the generation is tested in tests/ecosystem.rs",
    ),
    (
        "sudo cp target/assets/*.1 /usr/local/share/man/man1/",
        "system installation",
    ),
    (
        "cp target/assets/bash/* ~/.local/share/bash-completion/completions/",
        "user installation; tests/hints_and_filters.rs checks the generated names",
    ),
    ("cp target/assets/zsh/* ~/.zfunc/", "user installation"),
    (
        "cp target/assets/fish/* ~/.config/fish/completions/",
        "user installation",
    ),
    (
        "shm-read --list --unused --remove",
        "removes every unused segment on the machine, other tests' included; \
         tests/watch.rs runs it in private namespaces",
    ),
    (
        "shm-read --list --stale --remove",
        "removes every stale segment of this user on the machine, other tests' included; \
         tests/usability.rs and tests/hints_and_filters.rs run it in private namespaces",
    ),
];

/// Every example command the scenarios below run, as documented.
const RUN: &[&str] = &[
    "echo 'Hello from terminal 1' | shm-write",
    "echo 'hello from terminal 1' | shm-write",
    "shm-read",
    "shm-write --lines -n chat",
    "shm-read --follow -n chat",
    "shm-write -l -n chat",
    "shm-read -F -n chat",
    "shm-read --follow --wait -n chat",
    "shm-read -F --wait -n chat",
    "export PATH=\"$PWD/target/release:$PATH\"",
    "echo 'job 7 done' | shm-write --lines -n events",
    "shm-read -F --new -n events | grep ERROR",
    "shm-read --tail 10 -n events",
    "shm-read -F --lossless -n events",
    "tar c ~/project | shm-write --stream -n backup",
    "shm-read --stream --wait -n backup | tar t",
    "tar c . | shm-write --stream -n backup",
    "shm-read --stream -n out | ssh host 'shm-write --stream -n in'",
    "shm-read -n results --wait --timeout 30s > results.bin",
    "shm-read -n jobs --wait --timeout 5s",
    "shm-write -k 0x1234 < photo.jpg",
    "shm-read -k 0x1234 | sha256sum",
    "shm-read -k 0x1234 --remove > /dev/null",
    "shm-write -k 0x1234 -s 1M < picture.png",
    "shm-read -k 0x1234 --info",
    "shm-read -k 0x1234 --info --json",
    "shm-read -k 0x1234 --hex",
    "shm-read -k 0x1234 --all --hex | head",
    "shm-read -k 0x1234 --all --offset 8 -c 4 --hex",
    "echo 'hello from shm-write' | shm-write --raw -n chat",
    "ipcs -m",
    "shm-read --list",
    "shm-read --list --json",
    "touch shmfile",
    "echo 'Hello, reader.c' | shm-write --raw -f shmfile",
    "echo 'hi, reader.c' | shm-write --raw -f shmfile",
    "./reader",
    "./writer",
    "scratch=$(mktemp -d)",
    "cc -O2 -o $scratch/reader tests/classic/reader.c",
    "cc -O2 -o $scratch/writer tests/classic/writer.c",
    "cd $scratch && touch shmfile",
    "cd - > /dev/null && rm -r $scratch",
    "./target/release/shm-read --remove > /dev/null",
    "source <(COMPLETE=bash shm-read) && source <(COMPLETE=bash shm-write)",
    "shm-read -f shmfile --remove",
    "ls -l /dev/shm",
    "shm-read --list --stale",
    "shm-read --list --stale --remove -n NAME",
    "shm-read --list --stale --remove --prefix myapp-",
    "shm-read --list --owner \"$(id -un)\"",
    "shm-read -i SHMID --remove > /dev/null",
    "ipcrm -m SHMID",
    "shm-read -n NAME --remove > /dev/null",
    "rm /dev/shm/NAME",
    "shm-read -n events --stats 2s",
    "shm-read -n events --stats 1s --count 3 --json",
    "shm-read --list --stats --count 1",
    "shm-read -n events --info",
    "shm-read --list --unused",
    "shm-read --limits",
    "shm-read --limits --json",
    "shm-read -F --count 100 -n events > first-100.txt",
    "shm-read --next -n config",
    "shm-read --next --timeout 10s -n config || echo 'no new config within 10s'",
    "shm-read -F --for 1m -n events > last-minute.txt",
    "shm-read -F --count 3 --timeout 10s -n events",
    "shm-read -F --json --for 1m -n events > events.jsonl",
    "shm-write --lines --replay events.jsonl -n events-again",
    "shm-write --lines --replay events.jsonl --speed 10 -n events-again",
    "shm-write --lines --replay events.jsonl --speed max -n events-again",
    "shm-read -F --json -n events | shm-write --lines --replay - --speed max -n mirror",
];

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

/// A scratch directory with the files the examples mention, unique names
/// for the segments they use, and guards that remove them.
struct Scene {
    dir: PathBuf,
    names: Vec<(&'static str, Seg)>,
    key: Seg,
    default: Seg,
}

impl Scene {
    fn new() -> Scene {
        let key = Seg::key();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("docs-{}", key.args[1]));
        std::fs::create_dir_all(dir.join("project")).unwrap();
        std::fs::write(dir.join("project/notes.txt"), b"notes").unwrap();
        std::fs::write(dir.join("photo.jpg"), random_bytes(50_000, 1)).unwrap();
        std::fs::write(dir.join("picture.png"), random_bytes(70_000, 2)).unwrap();
        let names = [
            "chat",
            "backup",
            "results",
            "jobs",
            "out",
            "in",
            "NAME",
            "events",
            "config",
            "events-again",
            "mirror",
        ]
        .into_iter()
        .map(|n| (n, Seg::name()))
        .collect();
        Scene {
            dir,
            names,
            key,
            default: Seg::name(),
        }
    }

    fn name(&self, doc_name: &str) -> &Seg {
        &self.names.iter().find(|(n, _)| *n == doc_name).unwrap().1
    }

    /// The documented command with this scene's names swapped in.
    fn adapt(&self, doc: &str) -> String {
        assert!(RUN.contains(&doc), "not a documented example: {doc}");
        let mut cmd = format!("{doc} ");
        for (doc_name, seg) in &self.names {
            let unique = seg.name_value().unwrap();
            for end in [" ", "'"] {
                cmd = cmd.replace(&format!("-n {doc_name}{end}"), &format!("-n {unique}{end}"));
            }
            cmd = cmd.replace(
                &format!("/dev/shm/{doc_name} "),
                &format!("/dev/shm/{unique} "),
            );
        }
        cmd = cmd.replace("0x1234", &self.key.args[1]);
        cmd = cmd.replace("~/project", "project");
        cmd = cmd.replace("ssh host", "sh -c");
        cmd = cmd.replace("./target/release/", "");
        cmd = cmd.replace("--for 1m ", "--for 1s ");
        cmd.trim_end().to_owned()
    }

    fn sh(&self, doc: &str) -> Command {
        self.sh_replacing(doc, &[])
    }

    /// Like `sh`, also replacing placeholders such as SHMID.
    fn sh_replacing(&self, doc: &str, more: &[(&str, &str)]) -> Command {
        let mut script = self.adapt(doc);
        for (placeholder, value) in more {
            script = script.replace(placeholder, value);
        }
        let mut cmd = self.shell("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    /// `shell` in the scene's directory, finding the tools built for this
    /// test, with the scene's default segment.
    fn shell(&self, shell: &str) -> Command {
        let mut cmd = Command::new(shell);
        let bins = Path::new(env!("CARGO_BIN_EXE_shm-read")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.current_dir(&self.dir)
            .env("PATH", path)
            .env("SHM_TOOLS_NAME", self.default.name_value().unwrap());
        cmd
    }

    fn run(&self, doc: &str, stdin: &[u8]) -> Output {
        let out = run(&mut self.sh(doc), stdin);
        out.ok();
        out
    }

    fn start(&self, doc: &str) -> Live {
        Live::start(&mut self.sh(doc))
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn two_terminals() {
    let scene = Scene::new();
    scene.run("echo 'Hello from terminal 1' | shm-write", b"");
    assert_eq!(
        scene.run("shm-read", b"").stdout,
        b"Hello from terminal 1\n"
    );
    scene.run("echo 'hello from terminal 1' | shm-write", b"");
    assert_eq!(
        scene.run("shm-read", b"").stdout,
        b"hello from terminal 1\n"
    );
}

#[test]
fn live_chat() {
    let scene = Scene::new();
    // (writer, follower, whether the follower starts first)
    let pairs = [
        (
            "shm-write --lines -n chat",
            "shm-read --follow -n chat",
            false,
        ),
        ("shm-write -l -n chat", "shm-read -F -n chat", false),
        (
            "shm-write --lines -n chat",
            "shm-read --follow --wait -n chat",
            true,
        ),
        ("shm-write -l -n chat", "shm-read -F --wait -n chat", true),
    ];
    for (writer_doc, follower_doc, follower_first) in pairs {
        // In the order the docs show, before any line is typed: the writer,
        // then the follower; or with --wait, the follower first.
        let chat = scene.name("chat");
        let early = follower_first.then(|| scene.start(follower_doc));
        if follower_first {
            thread::sleep(Duration::from_millis(300));
            assert!(!chat.exists());
        }
        let writer = scene.start(writer_doc);
        until(
            "the writer creates the log",
            Duration::from_secs(10),
            || read(&strs(&chat.args)).code() == Some(0),
        );
        let follower = early.unwrap_or_else(|| scene.start(follower_doc));
        chat_two_lines(writer, follower, chat);
    }
}

#[test]
fn many_writers_one_log() {
    let scene = Scene::new();
    let events = scene.name("events");
    scene.run("echo 'job 7 done' | shm-write --lines -n events", b"");
    let errors = scene.start("shm-read -F --new -n events | grep ERROR");
    let lossless = scene.start("shm-read -F --lossless -n events");
    until(
        "the lossless follower attaches",
        Duration::from_secs(10),
        || info_if_any(events).is_some_and(|i| i["lossless_followers"] == 1),
    );
    thread::sleep(Duration::from_millis(200));
    scene.run("echo 'job 7 done' | shm-write --lines -n events", b"");
    write(
        &strs(&events.with(&["--lines"])),
        b"ERROR disk full\njob 8 done\n",
    )
    .ok();
    lossless.wait_stdout(Duration::from_secs(10), "every line", |o| {
        o == b"job 7 done\njob 7 done\nERROR disk full\njob 8 done\n"
    });
    let tail = scene.run("shm-read --tail 10 -n events", b"");
    assert_eq!(
        tail.stdout,
        b"job 7 done\njob 7 done\nERROR disk full\njob 8 done\n"
    );
    // grep holds its output until it ends, when the log is removed.
    thread::sleep(Duration::from_millis(300));
    read(&strs(&events.with(&["--remove"]))).ok();
    let errors = errors.finish(Duration::from_secs(10));
    errors.ok();
    assert_eq!(errors.stdout, b"ERROR disk full\n");
    lossless.finish(Duration::from_secs(10)).ok();
}

#[test]
fn stream_between_pipelines() {
    let scene = Scene::new();
    let pairs = [
        (
            "tar c ~/project | shm-write --stream -n backup",
            "shm-read --stream --wait -n backup | tar t",
        ),
        (
            "tar c . | shm-write --stream -n backup",
            "shm-read --stream --wait -n backup | tar t",
        ),
    ];
    for (writer_doc, reader_doc) in pairs {
        // As the examples say either side may start first: the reader does.
        let reader = scene.start(reader_doc);
        thread::sleep(Duration::from_millis(200));
        let backup = scene.name("backup");
        scene.run(writer_doc, b"");
        let listing = reader.finish(Duration::from_secs(30));
        listing.ok();
        let listing = listing.stdout_str();
        assert!(
            listing.contains("project/notes.txt") || listing.contains("./project/notes.txt"),
            "{listing}"
        );
        assert!(!backup.exists());
    }
}

#[test]
fn stream_across_a_remote_shell() {
    let scene = Scene::new();
    let out = scene.name("out");
    let input = random_bytes(300_000, 3);
    run(&mut write_cmd(&strs(&out.with(&["--stream"]))), &input).ok();
    let remote = scene.start("shm-read --stream -n out | ssh host 'shm-write --stream -n in'");
    let received = read(&strs(
        &scene.name("in").with(&["--stream", "--wait", "-t", "20s"]),
    ));
    received.ok();
    assert!(received.stdout == input);
    remote.finish(Duration::from_secs(20)).ok();
}

#[test]
fn waiting_for_a_writer() {
    let scene = Scene::new();
    for (doc, name) in [
        (
            "shm-read -n results --wait --timeout 30s > results.bin",
            "results",
        ),
        ("shm-read -n jobs --wait --timeout 5s", "jobs"),
    ] {
        let reader = scene.start(doc);
        thread::sleep(Duration::from_millis(100));
        write(&strs(&scene.name(name).args), b"done\n").ok();
        let out = reader.finish(Duration::from_secs(30));
        out.ok();
        let got = if doc.contains("results.bin") {
            std::fs::read(scene.dir.join("results.bin")).unwrap()
        } else {
            out.stdout.clone()
        };
        assert_eq!(got, b"done\n");
    }
}

#[test]
fn binary_data_keys_and_metadata() {
    let scene = Scene::new();
    scene.run("shm-write -k 0x1234 < photo.jpg", b"");
    let sum = scene
        .run("shm-read -k 0x1234 | sha256sum", b"")
        .stdout_str();
    let expected = run(
        Command::new("sha256sum").arg(scene.dir.join("photo.jpg")),
        b"",
    )
    .stdout_str();
    assert_eq!(sum.split(' ').next(), expected.split(' ').next());
    assert!(
        scene
            .run("shm-read -k 0x1234 --info", b"")
            .stdout_str()
            .contains("content_length:  50000")
    );
    assert!(
        scene
            .run("ipcs -m", b"")
            .stdout_str()
            .contains(&scene.key.args[1])
    );
    let removed = scene.run("shm-read -k 0x1234 --remove > /dev/null", b"");
    assert!(removed.stdout.is_empty());
    assert!(!scene.key.exists());

    scene.run("shm-write -k 0x1234 -s 1M < picture.png", b"");
    let meta: serde_json::Value =
        serde_json::from_slice(&scene.run("shm-read -k 0x1234 --info --json", b"").stdout).unwrap();
    assert_eq!(meta["size"], 1 << 20);
    assert_eq!(meta["content_length"], 70_000);
    let hex = scene.run("shm-read -k 0x1234 --hex", b"").stdout_str();
    assert_eq!(hex.lines().count(), 70_000usize.div_ceil(16));
    let head = scene
        .run("shm-read -k 0x1234 --all --hex | head", b"")
        .stdout_str();
    assert!(
        head.starts_with("00000000: 5348 4d54 4652 414d") && head.lines().count() == 10,
        "{head}"
    );
    let field = scene
        .run("shm-read -k 0x1234 --all --offset 8 -c 4 --hex", b"")
        .stdout_str();
    let all = read(&strs(&scene.key.with(&["--all", "-c", "12"])));
    let bytes = &all.ok().stdout[8..12];
    let expected = format!(
        "{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    );
    assert!(
        field.starts_with(&format!("00000008: {} {}", &expected[..4], &expected[4..]))
            && field.lines().count() == 1,
        "{field}"
    );
    let listing = scene.run("shm-read --list", b"").stdout_str();
    assert!(listing.contains(&format!("-k {}", scene.key.args[1])));
    let json = scene.run("shm-read --list --json", b"").stdout;
    assert!(
        serde_json::from_slice::<serde_json::Value>(&json)
            .unwrap()
            .is_array()
    );
}

/// README's C block, from the repository root, as one script: its lines
/// share the shell variable and the directory changes.
const C_BLOCK: &[&str] = &[
    "scratch=$(mktemp -d)",
    "cc -O2 -o $scratch/reader tests/classic/reader.c",
    "cc -O2 -o $scratch/writer tests/classic/writer.c",
    "cd $scratch && touch shmfile",
    "echo 'Hello, reader.c' | shm-write --raw -f shmfile",
    "./reader",
    "./writer",
    "shm-read -f shmfile --remove",
    "cd - > /dev/null && rm -r $scratch",
];

#[test]
fn talking_to_the_classic_c_programs() {
    let scene = Scene::new();
    if compile_classic(&scene.dir).is_none() {
        eprintln!("skipped: no C compiler");
        return;
    }
    let script = C_BLOCK
        .iter()
        .map(|doc| scene.adapt(doc))
        .collect::<Vec<_>>()
        .join("\n");
    let mut cmd = scene.shell("sh");
    let repo = env!("CARGO_MANIFEST_DIR");
    // mktemp inside the scene, so even a failed run leaves nothing behind.
    cmd.args(["-e", "-c", &script])
        .current_dir(repo)
        .env("TMPDIR", &scene.dir);
    let out = run(&mut cmd, b"typed line\n");
    // A run that stopped half-way may have left its segment: guard it.
    let _leftovers: Vec<Seg> = std::fs::read_dir(&scene.dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| shm_tools::sys::ftok(&e.path().join("shmfile"), 65).ok())
        .map(Seg::guard_key)
        .collect();
    out.ok();
    let shown = out.stdout_str();
    assert!(
        shown.contains("Data read from memory: Hello, reader.c\n")
            && shown.contains("Data written in memory: typed line\n")
            && shown.ends_with("\ntyped line\n"),
        "{out}"
    );
    // The scratch directory is gone, and nothing landed in the repository.
    assert!(
        std::fs::read_dir(&scene.dir)
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| !e.file_name().to_string_lossy().starts_with("tmp.")),
        "the scratch directory was left behind"
    );
    for file in ["reader", "writer", "shmfile"] {
        assert!(
            !Path::new(repo).join(file).exists(),
            "{file} left in the repository"
        );
    }

    // --help's version, in a directory of its own.
    scene.run("touch shmfile", b"");
    let key = shm_tools::sys::ftok(&scene.dir.join("shmfile"), 65).unwrap();
    let guard = Seg::guard_key(key);
    scene.run("echo 'hi, reader.c' | shm-write --raw -f shmfile", b"");
    assert_eq!(
        scene.run("shm-read -f shmfile --remove", b"").stdout,
        b"hi, reader.c\n"
    );
    assert!(!guard.exists());
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

#[test]
fn finding_and_removing_leftovers() {
    let scene = Scene::new();
    let name = scene.name("NAME");
    let posix = name.name_value().unwrap().to_owned();
    write(&strs(&name.args), b"left behind").ok();
    assert!(
        scene
            .run("ls -l /dev/shm", b"")
            .stdout_str()
            .contains(&posix)
    );
    let stale = scene.run("shm-read --list --stale", b"").stdout_str();
    assert!(
        !stale.contains(&posix),
        "a healthy snapshot is not stale\n{stale}"
    );
    scene.run("shm-read -n NAME --remove > /dev/null", b"");
    assert!(!name.exists());
    write(&strs(&name.args), b"left behind again").ok();
    scene.run("rm /dev/shm/NAME", b"");
    assert!(!name.exists());

    // The narrowed removals, on segments whose writer is killed holding
    // the write lock; a healthy one under the prefix stays.
    let prefix = format!("{posix}-app-");
    let stale_one = |seg: &Seg| {
        let mut writer = write_cmd(&strs(&seg.args));
        writer.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "30000");
        let mut child = spawn(&mut writer);
        drop(child.stdin.take());
        until("the writer holds the lock", Duration::from_secs(10), || {
            info_if_any(seg).is_some_and(|i| i["lock"] == "held")
        });
        child.kill().unwrap();
        child.wait().unwrap();
    };
    stale_one(name);
    let removed = scene.run("shm-read --list --stale --remove -n NAME", b"");
    assert!(removed.stdout_str().starts_with("removed "), "{removed}");
    assert!(!name.exists());
    let (stale_app, healthy_app) = (Seg::name_with(&prefix), Seg::name_with(&prefix));
    stale_one(&stale_app);
    write(&strs(&healthy_app.args), b"in use").ok();
    let doc = "shm-read --list --stale --remove --prefix myapp-";
    let removed = run(&mut scene.sh_replacing(doc, &[("myapp-", &prefix)]), b"");
    removed.ok();
    assert_eq!(
        removed.stdout_str().matches("removed ").count(),
        1,
        "{removed}"
    );
    assert!(!stale_app.exists() && healthy_app.exists());
    let mine = scene.run("shm-read --list --owner \"$(id -un)\"", b"");
    assert!(
        mine.stdout_str()
            .contains(healthy_app.name_value().unwrap())
    );

    for doc in ["shm-read -i SHMID --remove > /dev/null", "ipcrm -m SHMID"] {
        write(&strs(&scene.key.args), b"left behind").ok();
        let id = info(&scene.key)["id"].to_string();
        let listing = scene.run("ipcs -m", b"").stdout_str();
        assert!(listing.contains(&scene.key.args[1]));
        run(&mut scene.sh_replacing(doc, &[("SHMID", &id)]), b"").ok();
        assert!(!scene.key.exists(), "{doc} did not remove it");
    }
}

#[test]
fn watching_segments() {
    let scene = Scene::new();
    let events = scene.name("events").name_value().unwrap().to_owned();
    scene.run("echo 'job 7 done' | shm-write --lines -n events", b"");
    let follower = scene.start("shm-read -F --lossless -n events");
    follower.wait_stdout(Duration::from_secs(20), "the record", |o| {
        o == b"job 7 done\n"
    });

    let stats = scene.start("shm-read -n events --stats 2s");
    stats.wait_stdout(Duration::from_secs(20), "a line of rates", |o| {
        String::from_utf8_lossy(o).lines().count() >= 2
    });
    let text = String::from_utf8_lossy(&stats.stdout_now()).into_owned();
    drop(stats);
    assert!(text.starts_with("TIME      RECORDS/S"), "{text}");
    assert!(
        text.lines().nth(1).unwrap().ends_with(":0"),
        "the follower, 0 behind:\n{text}"
    );

    let json = scene
        .run("shm-read -n events --stats 1s --count 3 --json", b"")
        .stdout_str();
    assert_eq!(json.lines().count(), 3, "{json}");
    for line in json.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["layout"], "log");
        assert_eq!(line["records_held"], 1);
    }
    let table = scene
        .run("shm-read --list --stats --count 1", b"")
        .stdout_str();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("-n {events} ")) && l.contains(" log ")),
        "{table}"
    );

    let info = scene.run("shm-read -n events --info", b"").stdout_str();
    assert!(info.contains(" shm-read (mapped, open)"), "{info}");
    assert!(info.contains("resident:"), "{info}");
    let unused = scene.run("shm-read --list --unused", b"").stdout_str();
    assert!(unused.starts_with("SEGMENT"), "{unused}");
    assert!(!unused.contains(&events), "the follower uses it:\n{unused}");
    drop(follower);

    let limits = scene.run("shm-read --limits", b"").stdout_str();
    assert!(limits.starts_with("RESOURCE  DESCRIPTION"), "{limits}");
    let limits: serde_json::Value =
        serde_json::from_str(&scene.run("shm-read --limits --json", b"").stdout_str()).unwrap();
    assert!(limits["shmmni"]["limit"].as_u64().is_some(), "{limits}");
}

/// README's ```python block, with `chat` swapped for `name`.
fn readme_python(name: &str) -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("```python\n").expect("a python block") + 10;
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].replace("name=\"chat\"", &format!("name=\"{name}\""))
}

/// Runs `script` with python3 until its resource tracker has finished
/// too (it unlinks, if it does, after the script has exited): the tracker
/// inherits stderr, which `run` reads to its end.
fn python(script: &str) -> Output {
    run(Command::new("python3").args(["-c", script]), b"")
}

/// README's Python reader leaves the segment in place, and (on the
/// Python versions it names) the same reader without the unregister line
/// deletes it, as the README warns.
#[test]
fn python_reads_a_segment_and_leaves_it_as_documented() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let scene = Scene::new();
    let chat = scene.name("chat");
    let script = readme_python(chat.name_value().unwrap());
    scene.run("echo 'hello from shm-write' | shm-write --raw -n chat", b"");
    let out = python(&script);
    out.ok();
    assert_eq!(out.stdout_str(), "hello from shm-write\n");
    assert!(
        chat.exists(),
        "the documented reader removed the segment\n{out}"
    );
    assert!(out.stderr.is_empty(), "{out}");

    let version = run(
        Command::new("python3").args(["-c", "import sys; print(sys.version_info >= (3, 13))"]),
        b"",
    );
    if version.ok().stdout_str().trim() == "False" {
        let careless: String = script
            .lines()
            .filter(|l| !l.contains("resource_tracker.unregister"))
            .collect::<Vec<_>>()
            .join("\n");
        let out = python(&careless);
        out.ok();
        assert!(out.stderr.contains("leaked shared_memory"), "{out}");
        assert!(
            !chat.exists(),
            "Python < 3.13 no longer deletes what it opened?"
        );
    }
}

/// Publishes a new version of `seg` every 50 ms until `reader` prints
/// something: a reader of the next version cannot say when it has
/// started, so a version published just before would be missed.
fn publish_until_printed(seg: &Seg, reader: &Live) {
    let started = std::time::Instant::now();
    let mut n = 2;
    while reader.stdout_len() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing printed"
        );
        write(&strs(&seg.args), format!("v{n}\n").as_bytes()).ok();
        n += 1;
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn following_until_a_condition() {
    let scene = Scene::new();
    let events = scene.name("events");
    let numbered = |n: usize| {
        (0..n)
            .map(|n| format!("event {n}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let lines = numbered(150);
    write(&strs(&events.with(&["--lines"])), lines.as_bytes()).ok();

    scene.run("shm-read -F --count 100 -n events > first-100.txt", b"");
    let first = std::fs::read_to_string(scene.dir.join("first-100.txt")).unwrap();
    assert_eq!(first, numbered(100));

    let three = scene.run("shm-read -F --count 3 --timeout 10s -n events", b"");
    assert_eq!(three.stdout_str(), "event 0\nevent 1\nevent 2\n");

    let started = std::time::Instant::now();
    scene.run("shm-read -F --for 1m -n events > last-minute.txt", b"");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let all = std::fs::read_to_string(scene.dir.join("last-minute.txt")).unwrap();
    assert_eq!(all, lines);

    let config = scene.name("config");
    for doc in [
        "shm-read --next -n config",
        "shm-read --next --timeout 10s -n config || echo 'no new config within 10s'",
    ] {
        write(&strs(&config.args), b"v1\n").ok();
        let reader = scene.start(doc);
        publish_until_printed(config, &reader);
        let out = reader.finish(Duration::from_secs(10));
        out.ok();
        let printed = out.stdout_str();
        assert!(
            printed.starts_with('v') && printed != "v1\n" && printed.lines().count() == 1,
            "{out}"
        );
    }
}

#[test]
fn recording_and_replaying_a_log() {
    let scene = Scene::new();
    let events = scene.name("events");
    write(&strs(&events.with(&["--lines"])), b"first\n").ok();
    thread::sleep(Duration::from_millis(300));
    write(&strs(&events.with(&["--lines"])), b"\xff\x00 binary\n").ok();
    let recorded = read(&strs(&events.args)).stdout.clone();

    scene.run("shm-read -F --json --for 1m -n events > events.jsonl", b"");
    let recording = std::fs::read_to_string(scene.dir.join("events.jsonl")).unwrap();
    let objects: Vec<serde_json::Value> = recording
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{recording}");
    assert_eq!(objects[0]["encoding"], "utf-8");
    assert_eq!(objects[1]["encoding"], "base64");

    let again = scene.name("events-again");
    let started = std::time::Instant::now();
    scene.run(
        "shm-write --lines --replay events.jsonl -n events-again",
        b"",
    );
    // The recorded pause was at least 300 ms; only a lower bound is safe.
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(read(&strs(&again.args)).stdout, recorded);
    scene.run(
        "shm-write --lines --replay events.jsonl --speed 10 -n events-again",
        b"",
    );
    scene.run(
        "shm-write --lines --replay events.jsonl --speed max -n events-again",
        b"",
    );
    assert_eq!(read(&strs(&again.args)).stdout, recorded.repeat(3));

    let mirror = scene.name("mirror");
    let copy = scene
        .start("shm-read -F --json -n events | shm-write --lines --replay - --speed max -n mirror");
    until(
        "the mirror has the history",
        Duration::from_secs(10),
        || read(&strs(&mirror.args)).stdout == recorded,
    );
    write(&strs(&events.with(&["--lines"])), b"live\n").ok();
    until(
        "the mirror has the new record",
        Duration::from_secs(10),
        || {
            read(&strs(&mirror.args))
                .stdout
                .ends_with(b"binary\nlive\n")
        },
    );
    // The copy ends when the log it follows is removed.
    read(&strs(&events.with(&["--remove"]))).ok();
    copy.finish(Duration::from_secs(10)).ok();
}

#[test]
fn the_recorded_line_in_the_readme_is_a_record() {
    let readme = include_str!("../README.md");
    let start = readme.find("```json\n").expect("a json block") + "```json\n".len();
    let line = readme[start..].lines().next().unwrap();
    let record = shm_tools::cmd::record::parse(line.as_bytes()).unwrap();
    assert_eq!(record.content, b"\xff\x00bin\n");
}
