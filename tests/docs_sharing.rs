//! README's sharing examples run as documented: two terminals, the chat,
//! many writers on one log, streams between pipelines and shells, waiting
//! for a writer, binary data, keys and metadata, and the classic C pair.
mod common;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::scene::Scene;
use common::*;

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
