//! What stands behind a name, and who else acts on it: planted default
//! segments, FIFOs, directories and links at a name, names replaced or gone
//! before removal, writers racing onto a fresh segment, and sparse objects
//! on a full /dev/shm.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    Live, Output, Seg, finish, in_small_dev_shm, info, is_root, read, read_cmd, run_limited, spawn,
    strs, write, write_cmd,
};

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A name in /dev/shm that a test fills by hand (a FIFO, a directory, a
/// planted object...), removed on drop whatever it became.
struct Scratch {
    name: String,
}

impl Scratch {
    fn new() -> Scratch {
        let name = format!(
            "shm-tools-trust-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Scratch { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(&self.name)
    }

    /// The `.stream` twin of this name, guarded too.
    fn stream_twin(&self) -> Scratch {
        Scratch {
            name: format!("{}.stream", self.name),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Whatever is there now; "not found" means the test removed it.
        let path = self.path();
        if path.is_dir() && !path.is_symlink() {
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

const LIMIT: Duration = Duration::from_secs(10);

/// A command for `tool` that uses `default` as its per-user default name.
fn with_default(tool: &str, default: &Scratch, args: &[&str]) -> Command {
    let mut cmd = if tool == "shm-write" {
        write_cmd(args)
    } else {
        read_cmd(args)
    };
    cmd.env("SHM_TOOLS_NAME", &default.name);
    cmd
}

/// Runs `sh -c script` as user nobody.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(status.success(), "as nobody: {script}");
}

fn assert_refused(out: &Output, parts: &[&str]) {
    out.expect_code(1).stderr_has(parts);
    assert!(out.stdout.is_empty(), "printed planted content\n{out}");
}

#[test]
fn a_default_segment_planted_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let default = Scratch::new();
    let twin = default.stream_twin();
    for planted in [&default, &twin] {
        as_nobody(&format!(
            "umask 0; printf 'planted by nobody' > {}",
            planted.path().display()
        ));
    }
    let before = std::fs::read(default.path()).unwrap();

    for args in [&[][..], &["--raw"], &["--append"], &["--lines"]] {
        let out = run_limited(
            &mut with_default("shm-write", &default, args),
            b"secret\n",
            LIMIT,
        );
        assert_refused(&out, &["refusing", &default.name, "nobody", "-n NAME"]);
    }
    for args in [&[][..], &["--raw"], &["--all"], &["--info"], &["--wait"]] {
        let out = run_limited(&mut with_default("shm-read", &default, args), b"", LIMIT);
        assert_refused(&out, &["refusing", &default.name, "nobody"]);
    }
    let out = run_limited(
        &mut with_default("shm-write", &default, &["--stream"]),
        b"secret\n",
        LIMIT,
    );
    assert_refused(&out, &["refusing", &twin.name]);
    let out = run_limited(
        &mut with_default("shm-read", &default, &["--stream"]),
        b"",
        LIMIT,
    );
    assert_refused(&out, &["refusing", &twin.name]);

    assert_eq!(std::fs::read(default.path()).unwrap(), before);
    assert_eq!(std::fs::read(twin.path()).unwrap(), b"planted by nobody");
    let meta = std::fs::metadata(default.path()).unwrap();
    assert_eq!(meta.uid(), 65534, "the planted object is still nobody's");
}

#[test]
fn a_default_segment_others_may_write_is_refused_even_when_ours() {
    let default = Scratch::new();
    std::fs::write(default.path(), b"").unwrap();
    std::fs::set_permissions(default.path(), std::fs::Permissions::from_mode(0o620)).unwrap();
    let out = run_limited(
        &mut with_default("shm-write", &default, &[]),
        b"secret",
        LIMIT,
    );
    assert_refused(&out, &["refusing", "mode 0620", "chmod 600"]);
    assert_eq!(std::fs::read(default.path()).unwrap(), b"");
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    assert_refused(&out, &["refusing", "mode 0620"]);

    // Made private again, it is used.
    std::fs::set_permissions(default.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    run_limited(
        &mut with_default("shm-write", &default, &[]),
        b"mine",
        LIMIT,
    )
    .ok();
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    assert_eq!(out.ok().stdout, b"mine");
}

#[test]
fn a_shared_mode_for_the_default_segment_is_refused_up_front() {
    let default = Scratch::new();
    for mode in ["0666", "0620", "0602"] {
        let out = run_limited(
            &mut with_default("shm-write", &default, &["-m", mode]),
            b"x",
            LIMIT,
        );
        out.expect_code(2).stderr_has(&["-n NAME", mode]);
        assert!(!default.path().exists(), "-m {mode} created the default");
    }
    let twin = default.stream_twin();
    let out = run_limited(
        &mut with_default("shm-write", &default, &["--stream", "-m", "0666"]),
        b"x",
        LIMIT,
    );
    out.expect_code(2).stderr_has(&["-n NAME"]);
    assert!(!twin.path().exists());
    // Readable by others is fine: nobody else can change it.
    run_limited(
        &mut with_default("shm-write", &default, &["-m", "0644"]),
        b"x",
        LIMIT,
    )
    .ok();
}

#[test]
fn explicit_names_of_other_users_are_used_as_their_mode_allows() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let seg = Scratch::new();
    as_nobody(&format!(
        "printf '' | {} -n {} -m 0644",
        env!("CARGO_BIN_EXE_shm-write"),
        seg.name
    ));
    // Root may write anything; reading nobody's shared segment is the point.
    write(&["-n", &seg.name], b"shared").ok();
    assert_eq!(read(&["-n", &seg.name]).ok().stdout, b"shared");
}

/// Every way shm-read and shm-write may meet `scratch`, each bounded.
fn assert_not_an_object(scratch: &Scratch, what: &str) {
    let path = scratch.path().display().to_string();
    for args in [
        &[][..],
        &["--timeout", "1"],
        &["--wait"],
        &["--info"],
        &["--raw"],
        &["--stream"],
        &["--stream", "--timeout", "1"],
    ] {
        let mut all = vec!["-n", scratch.name.as_str()];
        all.extend_from_slice(args);
        let out = run_limited(&mut read_cmd(&all), b"", LIMIT);
        out.expect_code(1).stderr_has(&[&path, what, "rm"]);
    }
    for args in [&[][..], &["--raw"], &["-x"], &["--stream"]] {
        let mut all = vec!["-n", scratch.name.as_str()];
        all.extend_from_slice(args);
        let out = run_limited(&mut write_cmd(&all), b"data", LIMIT);
        out.expect_code(1);
        if args != ["-x"] {
            out.stderr_has(&[&path, what, "rm"]);
        }
    }
}

#[test]
fn a_fifo_at_the_name_is_refused_without_hanging() {
    let scratch = Scratch::new();
    nix::unistd::mkfifo(
        &scratch.path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert_not_an_object(&scratch, "FIFO");
}

#[test]
fn a_directory_at_the_name_is_refused() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path()).unwrap();
    assert_not_an_object(&scratch, "directory");
    assert!(scratch.path().is_dir());
}

#[test]
fn a_symlink_at_the_name_is_not_followed() {
    let target = Seg::name();
    write(&strs(&target.args), b"behind the link").ok();
    let scratch = Scratch::new();
    std::os::unix::fs::symlink(
        PathBuf::from("/dev/shm").join(target.name_value().unwrap()),
        scratch.path(),
    )
    .unwrap();
    assert_not_an_object(&scratch, "symbolic link");
    assert_eq!(read(&strs(&target.args)).ok().stdout, b"behind the link");
}

#[test]
fn a_socket_at_the_name_is_refused() {
    let scratch = Scratch::new();
    let _socket = std::os::unix::net::UnixListener::bind(scratch.path()).unwrap();
    assert_not_an_object(&scratch, "socket");
}

/// Puts a new object with `content` at `name`, replacing what is there in
/// one step, as `mv` would.
fn replace_object(name: &str, content: &[u8]) {
    let fresh = Seg::name();
    write(&strs(&fresh.args), content).ok();
    std::fs::rename(
        PathBuf::from("/dev/shm").join(fresh.name_value().unwrap()),
        PathBuf::from("/dev/shm").join(name),
    )
    .unwrap();
}

/// A blank object at `seg`'s name, a `shm-read --wait --remove` that has
/// it mapped and waits for content, and a handle to give it that content.
fn reader_holding(seg: &Seg) -> (Live, std::fs::File) {
    let path = PathBuf::from("/dev/shm").join(seg.name_value().unwrap());
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let ours = std::fs::File::options().write(true).open(&path).unwrap();
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--wait", "--remove"]))));
    let maps = format!("/proc/{}/maps", reader.pid());
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&maps)
        .unwrap_or_default()
        .contains(&path.display().to_string())
    {
        assert!(
            started.elapsed() < LIMIT,
            "shm-read never mapped {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(2));
    }
    (reader, ours)
}

#[test]
fn remove_spares_an_object_that_replaced_ours() {
    use std::os::unix::fs::FileExt;
    let seg = Seg::name();
    let (reader, ours) = reader_holding(&seg);
    replace_object(seg.name_value().unwrap(), b"new and unrelated");
    ours.write_at(b"old", 0).unwrap();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"old");
    assert_eq!(
        read(&strs(&seg.args)).ok().stdout,
        b"new and unrelated",
        "--remove deleted the object that replaced ours"
    );
}

#[test]
fn remove_of_a_name_that_is_gone_succeeds() {
    use std::os::unix::fs::FileExt;
    let seg = Seg::name();
    let (reader, ours) = reader_holding(&seg);
    std::fs::remove_file(PathBuf::from("/dev/shm").join(seg.name_value().unwrap())).unwrap();
    ours.write_at(b"old", 0).unwrap();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"old");
    assert!(!seg.exists());
}

/// A stream whose name is removed (`gone`) or replaced while it runs still
/// ends 0 once every byte got through, and leaves any replacement alone.
fn stream_outlives_its_name(replace: bool) {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream"]))));
    writer.send(b"first\n");
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    reader.wait_stdout(LIMIT, "the first line", |out| out == b"first\n");
    if replace {
        replace_object(&name, b"new and unrelated");
    } else {
        std::fs::remove_file(PathBuf::from("/dev/shm").join(&name)).unwrap();
    }
    writer.send(b"second\n");
    writer.finish(LIMIT).ok();
    let out = reader.finish(LIMIT);
    out.ok();
    assert_eq!(out.stdout, b"first\nsecond\n");
    if replace {
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"new and unrelated");
    }
}

#[test]
fn a_stream_whose_name_is_gone_still_ends_0() {
    stream_outlives_its_name(false);
}

#[test]
fn a_stream_whose_name_was_replaced_leaves_the_newcomer() {
    stream_outlives_its_name(true);
}

/// `writers` shm-writes started together on `seg`, each with its own
/// input; every one must succeed, and the content must be one input whole.
/// The segments are large (RACE_SIZE) so that a writer's scan for "blank"
/// takes long enough for another to publish meanwhile, as happens on a
/// loaded machine.
fn race_writers(seg: &Seg, writers: usize, round: usize) {
    let inputs: Vec<Vec<u8>> = (0..writers)
        .map(|w| {
            format!("writer {w} of round {round}\n")
                .repeat(w + 1)
                .into_bytes()
        })
        .collect();
    let children: Vec<_> = inputs
        .iter()
        .map(|_| {
            let mut cmd = write_cmd(&strs(&seg.with(&["-s", RACE_SIZE])));
            let line = common::describe(&cmd);
            (spawn(&mut cmd), line)
        })
        .collect();
    let finished: Vec<_> = children
        .into_iter()
        .zip(inputs.clone())
        .map(|((child, line), input)| thread::spawn(move || finish(child, line, &input, LIMIT)))
        .collect();
    for handle in finished {
        handle.join().expect("writer thread").ok();
    }
    let content = read(&strs(&seg.args)).ok().stdout.clone();
    assert!(
        inputs.contains(&content),
        "round {round}: content is no writer's input: {:?}",
        String::from_utf8_lossy(&content)
    );
}

const RACE_ROUNDS: usize = 25;
const RACE_WRITERS: usize = 4;
const RACE_SIZE: &str = "4M";

#[test]
fn writers_racing_onto_a_fresh_name_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let seg = Seg::name();
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn writers_racing_onto_a_fresh_key_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let seg = Seg::key();
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn writers_racing_onto_a_fresh_ipcmk_segment_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let Ok(out) = Command::new("ipcmk")
            .args(["-M", &(4 << 20).to_string(), "-p", "0600"])
            .output()
        else {
            eprintln!("skipped: no ipcmk");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let id: i32 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
        let seg = Seg::id(id);
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn a_sparse_object_on_a_full_dev_shm_is_refused_not_a_sigbus() {
    // Sparse, as Python's SharedMemory(create=True) makes them: ftruncate
    // only. 4 MiB on a 1 MiB tmpfs: the pages cannot all exist.
    let script = r#"
        for flags in "" "--raw" "--append" "--lines"; do
            truncate -s 4M /dev/shm/sparse
            head -c 2000000 /dev/zero | tr '\0' x | "$SHM_WRITE" -n sparse $flags
            echo "exit=$? flags=$flags"
            stat -c 'size=%s blocks=%b' /dev/shm/sparse
            rm /dev/shm/sparse
        done
    "#;
    let Some(report) = in_small_dev_shm(script) else {
        return;
    };
    for flags in ["", "--raw", "--append", "--lines"] {
        assert!(
            report.contains(&format!("exit=1 flags={flags}\n")),
            "{flags}: not a clean exit 1 (135 is SIGBUS):\n{report}"
        );
    }
    assert_eq!(
        report.matches("size=4194304 blocks=0").count(),
        4,
        "the object changed:\n{report}"
    );
    assert!(
        report.contains("/dev/shm") && report.contains("sparse") && !report.contains("Bus"),
        "{report}"
    );
    assert_eq!(report.matches("shm-write:").count(), 4, "{report}");
}

#[test]
fn hints_address_the_segment_as_the_user_did() {
    let default = Scratch::new();
    let out = run_limited(&mut with_default("shm-read", &default, &[]), b"", LIMIT);
    out.expect_code(3)
        .stderr_has(&["create it with: echo hello | shm-write"]);
    assert!(
        out.stderr.trim_end().ends_with("| shm-write"),
        "the hint names the default instead of leaving it out\n{out}"
    );
    let _twin = default.stream_twin();
    let out = run_limited(
        &mut with_default("shm-read", &default, &["--stream"]),
        b"",
        LIMIT,
    );
    out.expect_code(3)
        .stderr_has(&["producer | shm-write --stream"]);

    let seg = Seg::name();
    read(&strs(&seg.args))
        .expect_code(3)
        .stderr_has(&["echo hello | shm-write -n shm-tools-test-"]);
}

#[test]
fn a_too_small_size_is_refused_before_anything_exists() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-s", "100"])), b"hello")
        .expect_code(1)
        .stderr_has(&["--size 100", "was not created", "--size of 4K"]);
    assert!(!seg.exists());
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "100", "--raw"])), &[b'x'; 101])
        .expect_code(1)
        .stderr_has(&["was not created"]);
    assert!(!seg.exists());
    // An existing segment has its own size: -s does not matter then.
    write(&strs(&seg.with(&["-s", "8K"])), b"made").ok();
    write(&strs(&seg.with(&["-s", "100"])), b"fits the 8K one").ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"fits the 8K one");
}

#[test]
fn raw_over_our_layouts_is_refused_and_snapshots_over_others_say_what_they_are() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"framed").ok();
    write(&strs(&seg.with(&["--raw"])), b"raw")
        .expect_code(1)
        .stderr_has(&["shm-tools snapshot", "without --raw", "--remove"]);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"framed");
    assert_eq!(info(&seg)["layout"], "framed");

    let c_string = Seg::name();
    write(&strs(&c_string.with(&["--raw"])), b"hello from C").ok();
    write(&strs(&c_string.args), b"framed")
        .expect_code(1)
        .stderr_has(&["a C string", "--raw", "--remove"]);

    let ring = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&ring.with(&["--stream"]))));
    writer.send(b"in flight\n");
    while !ring.exists() || info(&ring)["layout"] != "stream" {
        thread::sleep(Duration::from_millis(5));
    }
    write(&strs(&ring.args), b"snapshot")
        .expect_code(1)
        .stderr_has(&["shm-write --stream", "shm-read --stream -n"]);
    write(&strs(&ring.with(&["--raw"])), b"raw")
        .expect_code(1)
        .stderr_has(&["shm-write --stream", "without --raw"]);
    let reader = Live::start(&mut read_cmd(&strs(&ring.with(&["--stream"]))));
    writer.close_stdin();
    writer.finish(LIMIT).ok();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"in flight\n");
}

/// Another user's object whose name holds a newline or an escape sequence
/// is listed escaped, never raw (a forged line, a terminal escape), and
/// such names are refused as addresses.
#[test]
fn names_with_control_characters_are_escaped_and_refused() {
    let raw = format!(
        "shm-tools-test-{}-evil\nshm-read: fine\x1b[31m",
        std::process::id()
    );
    let path = PathBuf::from("/dev/shm").join(&raw);
    std::fs::write(&path, b"planted").unwrap();
    let listed = read(&["--list"]);
    let _ = std::fs::remove_file(&path);
    listed.ok();
    let text = listed.stdout_str();
    assert!(
        !text.contains('\x1b'),
        "escape sequence printed raw\n{listed}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("shm-read: fine")),
        "forged line\n{listed}"
    );
    assert!(
        text.contains("-evil\\nshm-read: fine"),
        "object hidden from --list\n{listed}"
    );
    let refused = read(&["-n", "bad\nname"]);
    refused.expect_code(2);
    assert_eq!(refused.stderr.trim_end().lines().count(), 1, "{refused}");
}
