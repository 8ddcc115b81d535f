//! The scene the documentation's examples run in (tests/docs_*.rs): the
//! examples as documented, a scratch directory with the files they
//! mention, and each command run through `sh` with only the segment names,
//! keys and ids swapped for unique ones (and a minute of `--for` cut to a
//! second).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Live, Output, Seg, random_bytes, run};

/// Commands documented but not run here, and why.
pub const NOT_RUN: &[(&str, &str)] = &[
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
        "user installation; tests/hints_and_man_pages.rs checks the generated names",
    ),
    ("cp target/assets/zsh/* ~/.zfunc/", "user installation"),
    (
        "cp target/assets/fish/* ~/.config/fish/completions/",
        "user installation",
    ),
    (
        "shm-read --list --unused --remove",
        "removes every unused segment on the machine, other tests' included; \
         tests/watch_unused.rs runs it in private namespaces",
    ),
    (
        "shm-read --list --stale --remove",
        "removes every stale segment of this user on the machine, other tests' included; \
         tests/usability.rs and tests/list_and_offset.rs run it in private namespaces",
    ),
];

/// Every example command the scenarios below run, as documented.
pub const RUN: &[&str] = &[
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

/// A scratch directory with the files the examples mention, unique names
/// for the segments they use, and guards that remove them.
pub struct Scene {
    pub dir: PathBuf,
    names: Vec<(&'static str, Seg)>,
    pub key: Seg,
    pub default: Seg,
}

impl Scene {
    pub fn new() -> Scene {
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

    pub fn name(&self, doc_name: &str) -> &Seg {
        &self.names.iter().find(|(n, _)| *n == doc_name).unwrap().1
    }

    /// The documented command with this scene's names swapped in.
    pub fn adapt(&self, doc: &str) -> String {
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

    pub fn sh(&self, doc: &str) -> Command {
        self.sh_replacing(doc, &[])
    }

    /// Like `sh`, also replacing placeholders such as SHMID.
    pub fn sh_replacing(&self, doc: &str, more: &[(&str, &str)]) -> Command {
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
    pub fn shell(&self, shell: &str) -> Command {
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

    pub fn run(&self, doc: &str, stdin: &[u8]) -> Output {
        let out = run(&mut self.sh(doc), stdin);
        out.ok();
        out
    }

    pub fn start(&self, doc: &str) -> Live {
        Live::start(&mut self.sh(doc))
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
