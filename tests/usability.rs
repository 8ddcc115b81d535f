//! Usability: stray arguments, human durations, the memory --info and
//! --list use, metadata of segments one may not read, completion, man
//! pages, progress into files, the examples, and one-line usage errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn one_line_usage_error(out: &Output, tool: &str, parts: &[&str]) {
    out.expect_code(2).stderr_has(parts);
    assert!(
        out.stderr.starts_with(&format!("{tool}: error: "))
            && out
                .stderr
                .trim_end()
                .ends_with(&format!("; try '{tool} --help'")),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn data_given_as_an_argument_points_to_stdin() {
    let seg = Seg::name();
    let out = write(&["hello"], b"");
    one_line_usage_error(
        &out,
        "shm-write",
        &["'hello'", "stdin", "echo hello | shm-write"],
    );
    // The rest of the command line is kept, several words become one echo.
    let out = write(&strs(&seg.with(&["hello", "world"])), b"");
    one_line_usage_error(
        &out,
        "shm-write",
        &[&format!(
            "echo 'hello world' | shm-write -n {}",
            seg.args[1]
        )],
    );
    assert!(!seg.exists(), "a usage error must not create the segment");

    let out = read(&["chat"]);
    one_line_usage_error(&out, "shm-read", &["'chat'", "shm-read -n chat", "-k KEY"]);
    let out = read(&["0x1234"]);
    one_line_usage_error(&out, "shm-read", &["shm-read -k 0x1234", "-n NAME"]);
}

#[test]
fn usage_errors_are_one_line_and_help_is_unchanged() {
    one_line_usage_error(
        &read(&["--folow"]),
        "shm-read",
        &["'--folow'", "'--follow'"],
    );
    one_line_usage_error(&write(&["--size", "0"], b""), "shm-write", &["--size"]);
    one_line_usage_error(&read(&["--list", "--hex"]), "shm-read", &["--list"]);
    one_line_usage_error(&read(&["-t"]), "shm-read", &["--timeout"]);
    one_line_usage_error(&read(&["--progress"]), "shm-read", &["--stream"]);

    for tool in ["shm-read", "shm-write"] {
        let help = run(bin(tool).arg("--help"), b"");
        help.ok();
        let text = help.stdout_str();
        assert!(
            text.contains("Usage: ") && text.contains("Examples:") && help.stderr.is_empty(),
            "{help}"
        );
        let short = run(bin(tool).arg("-h"), b"");
        assert!(short.ok().stdout_str().contains("Usage: "));
        let version = run(bin(tool).arg("--version"), b"");
        assert_eq!(
            version.ok().stdout_str(),
            format!("{tool} {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn durations_are_human_and_never_overflow() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"here").ok();
    for timeout in [
        "1m30s",
        "2min",
        "1h 30m",
        "1.5s",
        "500ms",
        "5",
        "0.5",
        "10000000000000000000",
        "99999999999999999999999999999999",
        "1000years",
    ] {
        let out = read(&strs(&seg.with(&["--timeout", timeout])));
        assert_eq!(out.ok().stdout, b"here", "--timeout {timeout}");
    }
    for bad in ["soon", "-1s", "5q", "1.2.3", ""] {
        one_line_usage_error(
            &read(&strs(&seg.with(&[&format!("--timeout={bad}")]))),
            "shm-read",
            &["--timeout"],
        );
    }
}

#[test]
fn timeouts_are_reported_humanly() {
    let seg = Seg::name();
    read(&strs(&seg.with(&["--timeout", "0"])))
        .expect_code(124)
        .stderr_has(&["timed out after 0s waiting for", &seg.args[1]]);
    read(&strs(&seg.with(&["--timeout", "0.25"])))
        .expect_code(124)
        .stderr_has(&["timed out after 250ms waiting"]);
    read(&strs(&seg.with(&["--info", "--timeout", "10ms"])))
        .expect_code(124)
        .stderr_has(&["timed out after 10ms waiting"]);
}

/// `shm-read ARGS` as user nobody, and its pid (setpriv execs it).
fn read_as_nobody(args: &[&str]) -> (Output, i32) {
    let mut cmd = as_nobody("shm-read", args);
    let child = spawn(&mut cmd);
    let pid = i32::try_from(child.id()).unwrap();
    (
        finish(child, describe(&cmd), b"", Duration::from_secs(30)),
        pid,
    )
}

/// The last pid to attach or detach, as `ipcs -p` shows it.
fn ipcs_last_pid(seg: &Seg) -> i32 {
    let id = shm_tools::sys::shmget(seg.key_value().unwrap(), 0, 0).unwrap();
    shm_tools::sys::shm_stat(id).unwrap().lpid
}

#[test]
fn metadata_of_a_segment_one_may_not_read() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv to drop to nobody");
        return;
    }
    for seg in [Seg::key(), Seg::name()] {
        write(&strs(&seg.args), b"secret").ok();
        let sysv = seg.key_value().is_some();
        let mut pids = Vec::new();
        let (out, pid) = read_as_nobody(&strs(&seg.with(&["--info", "--json"])));
        pids.push(pid);
        out.ok();
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(meta["readable"], false, "{meta}");
        assert_eq!(meta["layout"], serde_json::Value::Null, "{meta}");
        assert_eq!(meta["mode"], "0600");
        assert_eq!(meta["uid"], 0);
        assert_eq!(meta["user"], "root");
        assert!(meta["size"].as_u64().unwrap() >= 4096, "{meta}");
        assert!(meta["change_time"].is_u64(), "{meta}");
        for content in ["content_length", "capacity", "versions", "format_version"] {
            assert!(meta.get(content).is_none(), "{content} shown: {meta}");
        }
        if sysv {
            assert_eq!(meta["kind"], "sysv");
            assert_eq!(meta["attach_count"], 0);
            assert!(meta["creator_pid"].as_u64().unwrap() > 0, "{meta}");
            assert!(meta["last_pid"].as_u64().unwrap() > 0, "{meta}");
        } else {
            assert_eq!(meta["kind"], "posix");
        }

        let (text, pid) = read_as_nobody(&strs(&seg.with(&["--info"])));
        pids.push(pid);
        let text = text.ok().stdout_str();
        assert!(
            text.contains("readable:") && text.contains("false") && text.contains("no permission"),
            "{text}"
        );
        assert!(!text.contains("secret"));

        let (listing, pid) = read_as_nobody(&["--list"]);
        pids.push(pid);
        let listing = listing.ok().stdout_str();
        let address = if sysv {
            format!("-k {}", seg.args[1])
        } else {
            format!("-n {}", seg.args[1])
        };
        let row = listing
            .lines()
            .find(|l| l.starts_with(&address))
            .unwrap_or_else(|| panic!("no row for {address} in\n{listing}"));
        assert!(
            row.contains("? (no permission)") && row.contains("root"),
            "{row}"
        );

        // Neither --info nor --list attached it: ipcs -p does not show
        // them as the last to attach or detach. (Other tests' --list, run
        // as root meanwhile, may.)
        if sysv {
            let last = ipcs_last_pid(&seg);
            assert!(!pids.contains(&last), "pid {last} attached it");
        }
        // Its owner still sees everything.
        assert_eq!(info(&seg)["readable"], true);
        assert_eq!(info(&seg)["content_length"], 6);
    }
}

#[test]
fn info_and_list_read_headers_not_content() {
    let prlimit = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !prlimit {
        eprintln!("skipped: needs prlimit");
        return;
    }
    // 40 MB of content, under a 24 MB limit on private memory (shared
    // mappings do not count): a copy of the content cannot happen.
    let content = vec![b'a'; 40_000_000];
    let framed = Seg::name();
    write(&strs(&framed.args), &content).ok();
    let foreign = Seg::name();
    write(&strs(&foreign.with(&["--raw", "-s", "48M"])), &content).ok();
    let limited = |args: &[String]| {
        let mut cmd = Command::new("prlimit");
        cmd.arg("--data=24000000")
            .arg(env!("CARGO_BIN_EXE_shm-read"))
            .args(args);
        run(&mut cmd, b"")
    };
    for seg in [&framed, &foreign] {
        let out = limited(&seg.with(&["--info", "--json"]));
        out.ok();
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(meta["content_length"], 40_000_000, "{meta}");
    }
    let listing = limited(&["--list".to_owned()]);
    let listing = listing.ok().stdout_str();
    assert!(
        listing.contains(&format!("-n {}", framed.args[1]))
            && listing.contains("framed, 38.15 MiB in one of two")
            && listing.contains("C string of 38.15 MiB"),
        "{listing}"
    );
}

/// Runs `tool` as bash's completion function does, completing word
/// `words[index]`, and returns the candidates.
fn complete(tool: &str, words: &[&str]) -> Vec<String> {
    let mut cmd = bin(tool);
    cmd.arg("--")
        .arg(tool)
        .args(words)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", words.len().to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .env("_CLAP_IFS", "\n");
    let out = run(&mut cmd, b"");
    out.ok();
    out.stdout_str().lines().map(str::to_owned).collect()
}

#[test]
fn completion_offers_existing_segments() {
    let name = Seg::name();
    write(&strs(&name.args), b"x").ok();
    let posix = name.args[1].clone();
    let prefix = &posix[..posix.len() - 1];
    for tool in ["shm-read", "shm-write"] {
        let offered = complete(tool, &["-n", prefix]);
        assert!(offered.contains(&posix), "{tool} -n {prefix}: {offered:?}");
    }

    let key = Seg::key();
    write(&strs(&key.args), b"x").ok();
    let key_text = key.args[1].clone();
    let offered = complete("shm-read", &["-k", &key_text[..key_text.len() - 1]]);
    assert_eq!(offered, vec![key_text.clone()]);
    let id = info(&key)["id"].to_string();
    let offered = complete("shm-read", &["-i", &id]);
    assert!(offered.contains(&id), "{offered:?}");
    // Options still complete as before.
    assert!(complete("shm-read", &["--fol"]).contains(&"--follow".to_owned()));

    // Without the variable, a normal run.
    let out = read(&strs(&key.args));
    assert_eq!(out.ok().stdout, b"x");
}

#[test]
fn man_page_examples_are_verbatim() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("friction-man-{}", std::process::id()));
    shm_tools::cli::assets::generate(&dir).expect("generate");
    let page = std::fs::read_to_string(dir.join("shm-read.1")).unwrap();
    assert!(page.contains(".SH EXAMPLES\n.nf\n"), "{page}");
    assert!(
        page.contains("\\&    $ shm\\-read \\-f shmfile \\-\\-remove\n"),
        "{page}"
    );
    let rendered = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.join("shm-read.1"))
        .env("MANWIDTH", "50")
        .env("LANG", "C.UTF-8")
        .output();
    std::fs::remove_dir_all(&dir).unwrap();
    match rendered {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // Narrower than the line, yet not broken, with ASCII hyphens.
            assert!(
                text.lines()
                    .any(|l| l.trim() == "$ shm-read -f shmfile --remove"),
                "{text}"
            );
            assert!(
                text.contains("$ shm-read --stream --wait -n backup | tar t"),
                "{text}"
            );
        }
        _ => eprintln!("man not installed: checked the roff source only"),
    }
}

#[test]
fn progress_into_a_file_is_plain_lines() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(
        &seg.with(&["--stream", "--progress=always"]),
    )));
    writer.send(&random_bytes(1 << 20, 41));
    std::thread::sleep(Duration::from_millis(1300));
    writer.send(&random_bytes(1 << 20, 42));
    writer.close_stdin();
    let reader = read(&strs(&seg.with(&["--stream", "--progress=always"])));
    reader.ok();
    let writer = writer.finish(Duration::from_secs(30));
    writer.ok();
    for (out, label) in [(&writer, "sent"), (&reader, "received")] {
        assert!(
            !out.stderr.contains('\r') && !out.stderr.contains('\x1b'),
            "{out}"
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(
            lines.iter().all(|l| l.starts_with(&format!("{label} "))),
            "{out}"
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with(&format!("{label} 2.00 MiB at "))),
            "{out}"
        );
    }
    // One line after the first second, and the final one.
    assert!(writer.stderr.lines().count() >= 2, "{writer}");
}

#[test]
fn help_stream_examples_wait_for_the_writer() {
    for tool in ["shm-read", "shm-write"] {
        let help = run(bin(tool).arg("--help"), b"").ok().stdout_str();
        for line in help
            .lines()
            .filter(|l| l.trim_start().starts_with("$ ") && l.contains("shm-read --stream"))
        {
            assert!(line.contains("--wait"), "{tool} --help: {line}");
        }
    }
    // As shown: the reader starts first and waits.
    let seg = Seg::name();
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    std::thread::sleep(Duration::from_millis(200));
    write(&strs(&seg.with(&["--stream"])), b"through the ring").ok();
    let out = reader.finish(Duration::from_secs(30));
    assert_eq!(out.ok().stdout, b"through the ring");
}

fn readme() -> &'static str {
    include_str!("../README.md")
}

#[test]
fn readme_leaves_nothing_in_the_repository() {
    // The C programs and shmfile are built in a scratch directory that the
    // block removes (tests/docs_sharing.rs runs the block and checks the
    // repository stays clean).
    let block = readme()
        .split("```sh")
        .find(|b| b.contains("tests/classic/reader.c"))
        .expect("README builds the classic programs");
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("$ ")).collect();
    assert_eq!(lines.first(), Some(&"$ scratch=$(mktemp -d)"));
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("-o reader") && !l.contains("-o writer"))
    );
    assert!(
        lines.last().unwrap().contains("rm -r $scratch"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("shm-read -f shmfile --remove")),
        "the segment is removed too"
    );
    // The first command's leftover is named, with how to remove it.
    let after_first = readme().split("```").nth(2).unwrap();
    assert!(
        after_first.contains("default segment") && after_first.contains("stays behind"),
        "{after_first}"
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("README.md")
            .exists()
    );
}

/// Stale segments (a stream whose writer was killed, a snapshot whose
/// writer died holding its lock) are marked in --list and --info, listed
/// alone with --stale, and removed with `shm-read --list --stale --remove`,
/// which leaves healthy segments alone. Run in private IPC and mount
/// namespaces, so the machine-wide removal touches only this test's
/// segments.
#[test]
fn stale_segments_are_marked_listed_and_removed() {
    let script = r#"
        set -u
        mount --make-rprivate / && mount -t tmpfs tmpfs /dev/shm || exit 77
        sleep 30 2>/dev/null | "$W" --stream -n deadring & ring=$!
        echo ok | "$W" -n healthy
        echo x | SHM_TOOLS_TEST_HOLD_LOCK_MS=30000 "$W" -k 0x777 2>/dev/null & lock=$!
        i=0
        until "$R" -k 0x777 --info --json 2>/dev/null | grep -q '"lock":"held"' &&
              "$R" -n deadring --info --json 2>/dev/null | grep -q streaming; do
            i=$((i+1)); [ $i -lt 500 ] || { echo "setup timed out"; exit 1; }; sleep 0.01
        done
        kill -9 $ring $lock; pkill -9 -P $$ sleep; wait 2>/dev/null
        echo "== all"; "$R" --list
        echo "== stale"; "$R" --list --stale
        echo "== info"; "$R" -n deadring --info --json
        echo "== remove"; "$R" --list --stale --remove; echo "exit $?"
        echo "== after"; "$R" --list
    "#;
    let Some(out) = in_private_ipc_and_mount(script) else {
        return;
    };
    let text = out.stdout_str();
    let section = |name: &str| section(&text, name);
    let all = section("all");
    assert!(all.contains("writer died; STALE"), "{out}");
    assert!(all.contains("write lock holder died; STALE"), "{out}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("-n healthy") && !l.contains("STALE")),
        "{out}"
    );
    let stale = section("stale");
    assert_eq!(stale.lines().count(), 3, "header and two stale rows\n{out}");
    assert!(!stale.contains("healthy"), "{out}");
    assert!(section("info").contains(r#""stale":true"#), "{out}");
    let removed = section("remove");
    assert_eq!(removed.matches("removed ").count(), 2, "{out}");
    assert!(removed.contains("exit 0"), "{out}");
    let after = section("after");
    assert!(
        after.contains("-n healthy")
            && !after.contains("deadring")
            && !after.contains("0x00000777"),
        "{out}"
    );
}
