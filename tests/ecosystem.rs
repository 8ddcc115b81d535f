//! --list, --hex, --progress, and the generated man pages and completions.

mod common;

use std::process::Command;

use common::*;

fn list_rows() -> String {
    read(&["--list"]).ok().stdout_str()
}

fn row_for<'a>(listing: &'a str, address: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.starts_with(&format!("{address} ")))
        .unwrap_or_else(|| panic!("{address} not listed:\n{listing}"))
}

#[test]
fn list_shows_every_kind_of_segment_with_what_it_holds() {
    let framed = Seg::key();
    write(&strs(&framed.args), b"twelve bytes").ok();
    let raw = Seg::name();
    write(&strs(&raw.with(&["--raw"])), b"c string").ok();
    let ring = Seg::name();
    run(
        &mut write_cmd(&strs(&ring.with(&["--stream"]))),
        b"in flight",
    )
    .ok();

    let listing = list_rows();
    assert!(listing.starts_with("SEGMENT"), "{listing}");
    let row = row_for(&listing, &format!("-k {}", framed.args[1]));
    assert!(
        row.contains("framed, 12 B in one of two 1.94 KiB slots, written 20"),
        "{row}"
    );
    assert!(row.contains("root") || !is_root(), "{row}");
    assert!(row.contains("0600"), "{row}");
    let row = row_for(&listing, &format!("-n {}", raw.name_value().unwrap()));
    assert!(row.contains("foreign, C string of 8 B"), "{row}");
    let row = row_for(&listing, &format!("-n {}", ring.name_value().unwrap()));
    assert!(row.contains("stream, 9 B in flight"), "{row}");

    let json: serde_json::Value =
        serde_json::from_slice(&read(&["--list", "--json"]).ok().stdout).unwrap();
    let all = json.as_array().expect("an array");
    let key = all
        .iter()
        .find(|s| s["key"] == framed.args[1])
        .expect("key listed");
    assert_eq!(key["layout"], "framed");
    assert_eq!(key["content_length"], 12);
    assert_eq!(key["readable"], true);
    let name = format!("/{}", ring.name_value().unwrap());
    let stream = all.iter().find(|s| s["name"] == name).expect("ring listed");
    assert_eq!(stream["bytes_in_flight"], 9);
    assert_eq!(stream["stream_state"], "writer done");
}

#[test]
fn list_keeps_going_past_a_corrupt_segment() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"fine").ok();
    let id = os_id(&seg);
    let map = shm_tools::sys::Mapping::attach_sysv(id, 4096, true).unwrap();
    map.atomic_u32(8)
        .unwrap()
        .store(42, std::sync::atomic::Ordering::SeqCst);
    drop(map);
    let listing = list_rows();
    let row = row_for(&listing, &format!("-k {}", seg.args[1]));
    assert!(row.contains("? (") && row.contains("version 42"), "{row}");
}

fn os_id(seg: &Seg) -> shm_tools::sys::ShmId {
    shm_tools::sys::shmget(seg.key_value().unwrap(), 0, 0).unwrap()
}

#[test]
fn list_marks_what_the_user_cannot_read() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv to drop to nobody");
        return;
    }
    let seg = Seg::key();
    write(&strs(&seg.args), b"secret").ok();
    let out = run(&mut as_nobody("shm-read", &["--list"]), b"");
    out.ok();
    let listing = out.stdout_str();
    let row = row_for(&listing, &format!("-k {}", seg.args[1]));
    assert!(
        row.contains("? (no permission)") && row.contains("root"),
        "{row}"
    );
    assert!(!listing.contains("secret"));
}

#[test]
fn hex_dump_matches_xxd() {
    let seg = Seg::name();
    let data = random_bytes(1000, 21);
    write(&strs(&seg.args), &data).ok();
    let ours = read(&strs(&seg.with(&["--hex"]))).ok().stdout_str();
    assert_eq!(ours.lines().count(), 1000usize.div_ceil(16));
    assert!(ours.starts_with("00000000: "), "{ours}");
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hex-{}", std::process::id()));
    std::fs::write(&file, &data).unwrap();
    let xxd = Command::new("xxd").arg(&file).output();
    let _ = std::fs::remove_file(&file);
    match xxd {
        Ok(xxd) if xxd.status.success() => assert_eq!(ours, String::from_utf8_lossy(&xxd.stdout)),
        _ => eprintln!("xxd not installed: compared the layout only"),
    }
    // The whole segment, header included, with --all; a count with -c.
    let all = read(&strs(&seg.with(&["--all", "--hex"])))
        .ok()
        .stdout_str();
    assert!(all.starts_with("00000000: 5348 4d54 4652 414d"), "{all}");
    let size = info(&seg)["size"].as_u64().unwrap();
    assert_eq!(all.lines().count() as u64, size / 16);
    let first = read(&strs(&seg.with(&["--hex", "-c", "3"])))
        .ok()
        .stdout_str();
    assert_eq!(first.lines().count(), 1);
}

#[test]
fn hex_works_on_foreign_segments() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["--raw"])), b"hi\x01").ok();
    assert_eq!(
        read(&strs(&seg.with(&["--hex"]))).ok().stdout_str(),
        "00000000: 6869 01                                  hi.\n"
    );
}

#[test]
fn progress_goes_to_stderr_only_and_only_when_asked() {
    let seg = Seg::name();
    let data = random_bytes(2 << 20, 31);
    let writer = run(
        &mut write_cmd(&strs(&seg.with(&["--stream", "--progress=always"]))),
        &data,
    );
    writer.ok();
    assert!(
        writer.stderr.contains("sent") && writer.stderr.contains("MiB"),
        "{writer}"
    );
    let reader = read(&strs(&seg.with(&["--stream", "--progress=always"])));
    reader.ok();
    assert!(reader.stdout == data, "progress must never touch stdout");
    assert!(reader.stderr.contains("received 2.00 MiB"), "{reader}");

    // auto: stderr is a pipe here, so nothing is drawn.
    let seg = Seg::name();
    run(
        &mut write_cmd(&strs(&seg.with(&["--stream", "--progress"]))),
        &data,
    )
    .ok();
    let quiet = read(&strs(&seg.with(&["--stream", "--progress"])));
    quiet.ok();
    assert!(quiet.stderr.is_empty(), "{quiet}");

    read(&["--progress"]).expect_code(2);
    write(&["--progress"], b"").expect_code(2);
}

#[test]
fn man_pages_and_completions_generate() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("assets-{}", std::process::id()));
    let files = shm_tools::cli::assets::generate(&dir).expect("generate");
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "shm-write.1",
        "shm-read.1",
        "bash/shm-write",
        "bash/shm-read",
        "zsh/_shm-write",
        "zsh/_shm-read",
        "fish/shm-write.fish",
        "fish/shm-read.fish",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let man = std::fs::read_to_string(dir.join("shm-read.1")).unwrap();
    assert!(
        man.contains(".TH shm-read")
            && man.contains("\\-\\-stream")
            && man.contains(".SH EXAMPLES"),
        "{man}"
    );
    let bash = std::fs::read_to_string(dir.join("bash/shm-write")).unwrap();
    assert!(bash.contains("--exclusive") && bash.contains("shm-write"));
    let fish = std::fs::read_to_string(dir.join("fish/shm-read.fish")).unwrap();
    assert!(fish.contains("follow"));
    std::fs::remove_dir_all(&dir).unwrap();
}
