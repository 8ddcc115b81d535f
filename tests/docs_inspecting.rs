//! README's inspecting examples run as documented: finding and removing
//! leftovers, watching segments, and Python reading a segment.
mod common;

use std::process::Command;
use std::time::Duration;

use common::scene::Scene;
use common::*;

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
