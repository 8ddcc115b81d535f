//! Nothing lost under limits: kernel.shm* limits, memory and file size
//! limits, a full /dev/shm. Every failed write says which limit, with its
//! value, in one line, exits 1, and leaves the previous content intact.

mod common;

use std::process::Command;

use common::*;

/// Runs `script` with `sh` in a fresh IPC namespace (whose kernel.shm*
/// values are its own, and whose segments vanish with it), with
/// $SHM_WRITE and $SHM_READ naming the binaries. Returns stdout, and
/// stderr (checked to be at most one line per failing command by callers).
fn in_ipc_namespace(script: &str) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--ipc", "sh", "-c", script])
        .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write"))
        .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read"));
    let out = run(&mut cmd, b"");
    out.ok();
    out
}

/// The one line of stderr a script's failing command wrote, checked.
fn one_line(out: &Output, parts: &[&str]) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line of stderr\n{out}");
    for part in parts {
        assert!(lines[0].contains(part), "stderr lacks {part:?}\n{out}");
    }
}

/// The script that writes 'old content' at `key`, sets `limit` (a
/// sysctl `name=value`), tries `--replace` with 20000 bytes (printing
/// `rc=N`), and prints what the segment holds then.
fn replace_under(key: &str, limit: &str) -> String {
    format!(
        r#"printf 'old content' | $SHM_WRITE -k {key}
        sysctl -qw {limit}
        head -c 20000 /dev/zero | $SHM_WRITE -k {key} --replace; echo "rc=$?"
        $SHM_READ -k {key}"#
    )
}

#[test]
fn replace_under_a_small_shmmax_keeps_the_old_segment() {
    let out = in_ipc_namespace(&replace_under("0x7101", "kernel.shmmax=8192"));
    assert_eq!(out.stdout_str(), "rc=1\nold content", "{out}");
    one_line(&out, &["kernel.shmmax is 8192", "content is unchanged"]);
}

#[test]
fn replace_with_shmall_used_up_keeps_the_old_segment() {
    // The old segment takes one page of three; the new one needs ten.
    let out = in_ipc_namespace(&format!(
        r#"{}; echo
        sysctl -qw kernel.shmall=100
        head -c 20000 /dev/zero | $SHM_WRITE -k 0x7102 --replace; echo "rc=$?"
        $SHM_READ -k 0x7102 | wc -c"#,
        replace_under("0x7102", "kernel.shmall=3")
    ));
    assert_eq!(
        out.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["rc=1", "old", "content", "rc=0", "20000"],
        "{out}"
    );
    one_line(&out, &["kernel.shmall is 3 pages", "content is unchanged"]);
}

#[test]
fn replace_with_no_segment_ids_left_keeps_the_old_segment() {
    let out = in_ipc_namespace(&replace_under("0x7103", "kernel.shmmni=1"));
    assert_eq!(out.stdout_str(), "rc=1\nold content", "{out}");
    one_line(
        &out,
        &["kernel.shmmni is 1 segments", "content is unchanged"],
    );
}

#[test]
fn creating_past_shmmax_names_the_limit_and_its_value() {
    let out = in_ipc_namespace(
        r#"sysctl -qw kernel.shmmax=8192
        head -c 20000 /dev/zero | $SHM_WRITE -k 0x7104; echo "rc=$?""#,
    );
    assert_eq!(out.stdout_str(), "rc=1\n", "{out}");
    one_line(&out, &["kernel.shmmax is 8192"]);
}

/// `prlimit ARGS -- shm-write WRITE_ARGS` fed `stdin`.
fn write_limited(limits: &[&str], args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("prlimit");
    cmd.args(limits)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_shm-write"))
        .args(args);
    run(&mut cmd, stdin)
}

#[test]
fn stdin_larger_than_memory_is_one_line_and_the_content_stays() {
    let seg = Seg::key();
    write(&strs(&seg.with(&[])), b"old content").ok();
    let huge = vec![b'x'; 120 << 20];
    let out = write_limited(&["--as=100000000"], &strs(&seg.with(&[])), &huge);
    out.expect_code(1)
        .stderr_has(&["does not fit this process's memory", "nothing was written"]);
    read(&strs(&seg.with(&[]))).ok();
    assert_eq!(read(&strs(&seg.with(&[]))).stdout, b"old content");
}

#[test]
fn a_file_size_limit_is_one_line_when_creating_and_when_growing() {
    let seg = Seg::name();
    let out = write_limited(&["--fsize=0"], &strs(&seg.with(&[])), b"hello");
    out.expect_code(1)
        .stderr_has(&["the file size limit (ulimit -f) is 0 bytes"]);
    assert!(!seg.exists(), "nothing was created\n{out}");
    write(&strs(&seg.with(&[])), b"old content").ok();
    let big = vec![b'y'; 64 << 10];
    let out = write_limited(&["--fsize=8192"], &strs(&seg.with(&[])), &big);
    out.expect_code(1).stderr_has(&[
        "cannot grow",
        "the file size limit (ulimit -f) is 8192 bytes",
    ]);
    assert_eq!(read(&strs(&seg.with(&[]))).stdout, b"old content");
}

#[test]
fn a_full_dev_shm_names_its_size() {
    let Some(text) =
        in_small_dev_shm(r#"head -c 2000000 /dev/zero | $SHM_WRITE -n full; echo "rc=$?""#)
    else {
        return;
    };
    assert!(text.contains("rc=1"), "{text}");
    assert!(text.contains("/dev/shm is 1.00 MiB"), "{text}");
}

#[test]
fn a_missing_dev_shm_is_explained() {
    let script = r#"mount --make-rprivate / && mount -t tmpfs tmpfs /dev && \
        printf hi | "$SHM_WRITE" -n nodir; echo "rc=$?""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script])
        .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write"));
    let out = run(&mut cmd, b"");
    if !out.status.success() {
        eprintln!("skipped: cannot mount over /dev: {out}");
        return;
    }
    assert_eq!(out.stdout_str(), "rc=1\n", "{out}");
    one_line(&out, &["/dev/shm does not exist", "mount -t tmpfs"]);
}

/// `shm-write ARGS` as user `uid` (setpriv execs it), fed `stdin`.
fn write_as(uid: u32, args: &[&str], stdin: &[u8]) -> Output {
    run(&mut as_user(uid, "shm-write", args), stdin)
}

#[test]
fn replace_of_another_users_open_segment_says_only_its_owner_may() {
    if !is_root() {
        eprintln!("skipped: needs root to act as two other users");
        return;
    }
    let seg = Seg::key();
    write_as(65534, &strs(&seg.with(&["-m", "0666"])), b"theirs").ok();
    let out = write_as(65533, &strs(&seg.with(&["--replace"])), &vec![b'x'; 20_000]);
    out.expect_code(1).stderr_has(&[
        "only its owner, its creator or root may",
        "whatever its mode",
        "content is unchanged",
    ]);
    assert!(!out.stderr.contains("widen its mode"), "{out}");
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"theirs");
}

/// Sets vm.nr_overcommit_hugepages for as long as it lives, when no huge
/// pages are configured: surplus huge pages are taken only when used and
/// given back when freed. (vm.* is not per namespace: this touches the
/// machine, so it only ever raises a zero, and puts the zero back.)
struct HugePages(Option<String>);

const OVERCOMMIT: &str = "/proc/sys/vm/nr_overcommit_hugepages";

impl HugePages {
    fn ensure(pages: u32) -> HugePages {
        let configured = |path: &str| {
            std::fs::read_to_string(path).is_ok_and(|v| v.trim().parse::<u64>().unwrap_or(0) > 0)
        };
        if configured("/proc/sys/vm/nr_hugepages") || configured(OVERCOMMIT) {
            return HugePages(None);
        }
        let before = std::fs::read_to_string(OVERCOMMIT).unwrap_or_default();
        match std::fs::write(OVERCOMMIT, pages.to_string()) {
            Ok(()) => HugePages(Some(before)),
            Err(_) => HugePages(None),
        }
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = std::fs::write(OVERCOMMIT, before.trim());
        }
    }
}

#[test]
fn replace_keeps_huge_pages() {
    use shm_tools::sys::{Mapping, SHM_HUGETLB, shm_stat, shmget};
    let _pages = HugePages::ensure(16);
    let seg = Seg::key();
    let key = seg.key_value().unwrap();
    let flags = nix::libc::IPC_CREAT | nix::libc::IPC_EXCL | SHM_HUGETLB | 0o600;
    if let Err(e) = shmget(key, 2 << 20, flags) {
        eprintln!("skipped: no huge pages for System V segments here: {e}");
        return;
    }
    write(&strs(&seg.args), b"small").ok();
    let big = random_bytes(3 << 20, 17);
    write(&strs(&seg.with(&["--replace"])), &big).ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, big);
    let id = shmget(key, 0, 0).unwrap();
    let map = Mapping::attach_sysv(id, shm_stat(id).unwrap().size, false).unwrap();
    assert!(map.is_hugetlb(), "the replacement lost its huge pages");
    drop(map);
    // And an ordinary segment is not taken for one of huge pages.
    let plain = Seg::key();
    write(&strs(&plain.args), b"plain").ok();
    let id = shmget(plain.key_value().unwrap(), 0, 0).unwrap();
    let map = Mapping::attach_sysv(id, shm_stat(id).unwrap().size, false).unwrap();
    assert!(!map.is_hugetlb());
}

#[test]
fn a_snapshot_larger_than_memory_is_one_line_for_the_reader() {
    let seg = Seg::name();
    // A 120 MiB snapshot takes a 240 MiB segment: mapped, it fits the
    // limit with room for the program, but a copy of the content does not.
    let content = vec![b'z'; 120 << 20];
    write(&strs(&seg.args), &content).ok();
    let mut cmd = Command::new("prlimit");
    cmd.args(["--as=330000000", "--", env!("CARGO_BIN_EXE_shm-read")])
        .args(&seg.args);
    let out = run(&mut cmd, b"");
    out.expect_code(1)
        .stderr_has(&["cannot copy the 125829120 bytes", "memory (ulimit -v)"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn an_error_that_cannot_be_printed_is_still_exit_1_not_a_panic() {
    // stderr is a file that ulimit -f keeps from growing: the message is
    // lost, the exit status must not be.
    let seg = Seg::name();
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stderr-{}", std::process::id()));
    let stderr = std::fs::File::create(&file).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.args(["--fsize=0", "--", env!("CARGO_BIN_EXE_shm-write")])
        .args(&seg.args)
        .stdin(std::process::Stdio::null())
        .stderr(stderr);
    let status = cmd.status().unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(!seg.exists());
}

#[test]
fn a_log_read_into_a_file_past_the_file_size_limit_names_the_log_and_stdout() {
    let seg = Seg::name();
    let lines: Vec<u8> = (1..=10_000)
        .flat_map(|i: u32| format!("{i}\n").into_bytes())
        .collect();
    write(&strs(&seg.with(&["--lines"])), &lines).ok();
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("log-fsize-{}", std::process::id()));
    let stdout = std::fs::File::create(&file).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.args(["--fsize=1000", "--", env!("CARGO_BIN_EXE_shm-read")])
        .args(&seg.args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot write the records of POSIX name /{}",
            seg.name_value().unwrap()
        )) && stderr.contains("to stdout")
            && stderr.contains("File too large"),
        "{stderr}"
    );
}
