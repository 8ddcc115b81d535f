//! Snapshot mode end to end: every way to address a segment, exact bytes,
//! capacity edges, errors and their exit codes.

mod common;

use std::time::Duration;

use common::*;

fn round_trip(seg: &Seg, data: &[u8]) {
    write(&strs(&seg.args), data).ok();
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(out.stdout == data, "content differs\n{out}");
}

#[test]
fn round_trip_by_key() {
    round_trip(&Seg::key(), b"hello by key\n");
}

#[test]
fn round_trip_by_name_with_and_without_slash() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"hello by name\n").ok();
    let slashed = format!("/{}", seg.name_value().unwrap());
    let out = read(&["-n", &slashed]);
    out.ok();
    assert_eq!(out.stdout, b"hello by name\n");
}

#[test]
fn round_trip_by_ftok_file_matches_the_c_library_key() {
    let seg = Seg::ftok_file();
    round_trip(&seg, b"hello by file\n");
    // The key shm-write used is the one C's ftok(path, 65) gives.
    let key = seg.key_value().unwrap();
    let out = read(&["-k", &key.to_string()]);
    out.ok();
    assert_eq!(out.stdout, b"hello by file\n");
}

#[test]
fn round_trip_by_id_as_info_reports_it() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"hello by id").ok();
    let id = info(&seg)["id"].as_i64().unwrap();
    let out = read(&["-i", &id.to_string()]);
    out.ok();
    assert_eq!(out.stdout, b"hello by id");
    write(&["-i", &id.to_string()], b"written by id").ok();
    assert_eq!(read(&strs(&seg.args)).stdout, b"written by id");
}

#[test]
fn default_segment_is_per_user_and_overridable() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap();
    let mut w = write_cmd(&[]);
    w.env("SHM_TOOLS_NAME", name);
    run(&mut w, b"default\n").ok();
    let mut r = read_cmd(&[]);
    r.env("SHM_TOOLS_NAME", name);
    assert_eq!(run(&mut r, b"").ok().stdout, b"default\n");
    let meta = info(&seg);
    assert_eq!(meta["mode"], "0600");
}

#[test]
fn one_mib_of_random_binary_with_nuls_is_exact() {
    let data = random_bytes(1 << 20, 7);
    assert!(data.contains(&0));
    round_trip(&Seg::key(), &data);
    round_trip(&Seg::name(), &data);
}

#[test]
fn empty_input_publishes_empty_content() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"before").ok();
    write(&strs(&seg.args), b"").ok();
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(info(&seg)["content_length"], 0);
}

#[test]
fn capacity_edge_framed() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "4096"])), b"old").ok();
    let capacity = usize::try_from(info(&seg)["capacity"].as_u64().unwrap()).unwrap();
    assert_eq!(capacity, (4096 - 128) / 2);
    let exact = random_bytes(capacity, 3);
    round_trip(&seg, &exact);
    let over = random_bytes(capacity + 1, 4);
    write(&strs(&seg.args), &over).expect_code(1).stderr_has(&[
        &format!("input is {} bytes", capacity + 1),
        &format!("holds at most {capacity}"),
        "--replace",
        &seg.args[1],
    ]);
    assert_eq!(
        read(&strs(&seg.args)).stdout,
        exact,
        "previous content must survive"
    );
}

#[test]
fn capacity_edge_raw() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--raw", "-s", "4096"])), b"old").ok();
    let full = vec![b'x'; 4096];
    write(&strs(&seg.with(&["--raw"])), &full).ok();
    assert_eq!(read(&strs(&seg.args)).stdout, full);
    write(&strs(&seg.with(&["--raw"])), &vec![b'y'; 4097])
        .expect_code(1)
        .stderr_has(&["input is 4097 bytes", "room for 4096"]);
    assert_eq!(read(&strs(&seg.args)).stdout, full);
}

#[test]
fn too_small_explicit_size_leaves_nothing_behind() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "4K"])), &[b'z'; 3000])
        .expect_code(1)
        .stderr_has(&["holds at most"]);
    assert!(
        !seg.exists(),
        "a failed first write must not leave a segment"
    );
}

#[test]
fn sizes_accept_units_and_refuse_nonsense() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-s", "64K"])), b"x").ok();
    assert_eq!(info(&seg)["size"], 65536);
    for bad in ["0", "12Q", "lots", "4T"] {
        write(&strs(&seg.with(&["-s", bad])), b"x").expect_code(2);
    }
}

#[test]
fn append_adds_to_the_content() {
    for seg in [Seg::key(), Seg::name()] {
        write(&strs(&seg.args), b"one ").ok();
        write(&strs(&seg.with(&["-a"])), b"two ").ok();
        write(&strs(&seg.with(&["--append"])), b"three").ok();
        assert_eq!(read(&strs(&seg.args)).stdout, b"one two three");
    }
    let raw = Seg::key();
    write(&strs(&raw.with(&["--raw"])), b"abc").ok();
    write(&strs(&raw.with(&["--raw", "-a"])), b"def").ok();
    assert_eq!(read(&strs(&raw.args)).stdout, b"abcdef");
}

#[test]
fn exclusive_refuses_an_existing_segment() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-x"])), b"first").ok();
    write(&strs(&seg.with(&["-x"])), b"second")
        .expect_code(1)
        .stderr_has(&["already exists", "-x"]);
    assert_eq!(read(&strs(&seg.args)).stdout, b"first");
}

#[test]
fn mode_is_applied_exactly() {
    let key = Seg::key();
    write(&strs(&key.with(&["-m", "0644"])), b"x").ok();
    assert_eq!(info(&key)["mode"], "0644");
    let name = Seg::name();
    // umask would turn 0666 into 0644; -m is applied as given.
    write(&strs(&name.with(&["-m", "666"])), b"x").ok();
    assert_eq!(info(&name)["mode"], "0666");
    write(&strs(&Seg::name().with(&["-m", "999"])), b"x").expect_code(2);
}

#[test]
fn bytes_limits_output() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"0123456789").ok();
    assert_eq!(read(&strs(&seg.with(&["-c", "4"]))).ok().stdout, b"0123");
    assert_eq!(
        read(&strs(&seg.with(&["--bytes", "100"]))).ok().stdout,
        b"0123456789"
    );
}

#[test]
fn missing_segments_exit_3_naming_them() {
    let key = Seg::key();
    read(&strs(&key.args))
        .expect_code(3)
        .stderr_has(&[&key.args[1], "shm-write -k"]);
    let name = Seg::name();
    read(&strs(&name.args))
        .expect_code(3)
        .stderr_has(&[name.name_value().unwrap()]);
    read(&["-i", "2147483000"])
        .expect_code(3)
        .stderr_has(&["id 2147483000", "ipcs -m"]);
    write(&["-i", "2147483000"], b"x").expect_code(3);
}

#[test]
fn usage_errors_exit_2() {
    read(&["-k", "nonsense"]).expect_code(2);
    read(&["-k", "0x100000000"]).expect_code(2);
    read(&["-k", "0x1", "-n", "x"]).expect_code(2);
    read(&["-n", "a/b"]).expect_code(2);
    read(&["-n", &"n".repeat(300)]).expect_code(2);
    read(&["-f", "shmfile", "--proj-id", "0"]).expect_code(2);
    read(&["--proj-id", "3"]).expect_code(2);
    read(&["-t", "soon"]).expect_code(2);
    read(&["-k", "0"])
        .expect_code(2)
        .stderr_has(&["IPC_PRIVATE", "-i"]);
    write(&["--bogus"], b"").expect_code(2);
}

#[test]
fn missing_ftok_file_is_a_clear_error() {
    let out = read(&["-f", "/nonexistent/shmfile"]);
    out.expect_code(1)
        .stderr_has(&["/nonexistent/shmfile", "0xffffffff"]);
}

#[test]
fn proj_id_changes_the_key() {
    let seg = Seg::ftok_file();
    let path = seg.ftok_path().unwrap().display().to_string();
    let key66 = shm_tools::sys::ftok(seg.ftok_path().unwrap(), 66).unwrap();
    let _guard66 = Seg::guard_key(key66);
    write(&["-f", &path, "--proj-id", "66"], b"sixty-six").ok();
    read(&strs(&seg.args)).expect_code(3);
    assert_eq!(
        read(&["-f", &path, "--proj-id", "66"]).ok().stdout,
        b"sixty-six"
    );
    // Only the low 8 bits count, as in glibc.
    assert_eq!(
        read(&["-f", &path, "--proj-id", "322"]).ok().stdout,
        b"sixty-six"
    );
}

#[test]
fn private_key_creates_a_new_segment_and_reports_its_id() {
    let out = write(&["-k", "0"], b"private");
    out.ok();
    let id: i32 = out
        .stderr
        .trim()
        .strip_prefix("Shared memory id: ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id\n{out}"));
    let seg = Seg::id(id);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"private");
}

#[test]
fn remove_after_reading() {
    for seg in [Seg::key(), Seg::name()] {
        write(&strs(&seg.args), b"last words").ok();
        assert_eq!(
            read(&strs(&seg.with(&["--remove"]))).ok().stdout,
            b"last words"
        );
        assert!(!seg.exists());
        read(&strs(&seg.args)).expect_code(3);
    }
}

#[test]
fn wait_until_a_writer_publishes() {
    let seg = Seg::name();
    let reader = spawn(&mut read_cmd(&strs(&seg.with(&["--wait", "-t", "20s"]))));
    std::thread::sleep(Duration::from_millis(200));
    write(&strs(&seg.args), b"worth the wait").ok();
    let out = finish(
        reader,
        "shm-read --wait".into(),
        b"",
        Duration::from_secs(30),
    );
    out.ok();
    assert_eq!(out.stdout, b"worth the wait");
}

#[test]
fn timeout_exits_124() {
    let seg = Seg::key();
    read(&strs(&seg.with(&["-t", "200ms"])))
        .expect_code(124)
        .stderr_has(&["timed out", &seg.args[1], "to exist"]);
    // An existing segment that never receives content times out too.
    let name = Seg::name();
    write(&strs(&name.with(&["--raw"])), b"").ok();
    read(&strs(&name.with(&["--wait", "--timeout", "0.2"])))
        .expect_code(124)
        .stderr_has(&["to hold content"]);
}

#[test]
fn info_describes_the_segment() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"twelve bytes").ok();
    let meta = info(&seg);
    assert_eq!(meta["kind"], "sysv");
    assert_eq!(meta["key"], seg.args[1]);
    assert_eq!(meta["layout"], "framed");
    assert_eq!(meta["content_length"], 12);
    assert_eq!(meta["format_version"], 2);
    assert_eq!(meta["versions"], 1);
    assert_eq!(meta["mode"], "0600");
    assert!(meta["creator_pid"].as_i64().unwrap() > 0);
    assert!(meta["last_write_time"].as_i64().unwrap() > 1_700_000_000);
    let text = read(&strs(&seg.with(&["--info"]))).ok().stdout_str();
    assert!(
        text.contains("content_length:") && text.contains(&seg.args[1]),
        "{text}"
    );
}

#[test]
fn bad_duration_or_json_without_info_is_usage() {
    read(&["--json"]).expect_code(2);
    read(&["-t", "5q"]).expect_code(2);
}

/// A segment created at key 0 that cannot then be attached (mode 0 for a
/// user who is not root) is addressable by nobody: it is removed again,
/// not leaked, and the error says why.
#[test]
fn a_private_segment_that_cannot_be_attached_is_not_leaked() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let Some(out) = in_private_ipc_and_mount(
        "echo x | setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$W\" -k 0 -m 0; \
         echo \"exit $?\"; tail -n +2 /proc/sysvipc/shm | wc -l",
    ) else {
        return;
    };
    let text = out.stdout_str();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["exit", "1", "0"],
        "{out}"
    );
    out.stderr_has(&["permission denied: cannot open key 0x00000000"]);
}
