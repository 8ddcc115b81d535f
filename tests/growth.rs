//! Segments that grow: a POSIX segment, the default one
//! included, grows in place when the input does not fit; readers and
//! followers that mapped the old size remap and never see a torn version;
//! a System V segment is replaced by key with --replace; a segment
//! addressed by id keeps its identity.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use shm_tools::address::{Address, PosixName};
use shm_tools::layout::snapshot::{self, Snapshot, is_grown};
use shm_tools::segment::{Access, Segment};

const LIMIT: Duration = Duration::from_secs(20);

fn lines(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(format!("{i}\n").as_bytes());
    }
    out
}

fn size_of(seg: &Seg) -> u64 {
    info(seg)["size"].as_u64().expect("size in --info")
}

/// A version the concurrency tests can check for wholeness: a header
/// naming its round and length, then that many bytes of one value.
fn version(round: usize, len: usize) -> Vec<u8> {
    let mut data = format!("round {round} len {len}\n").into_bytes();
    let fill = b'a' + u8::try_from(round % 26).unwrap();
    data.resize(data.len() + len, fill);
    data
}

/// Panics unless `data` is exactly one whole [`version`].
fn assert_whole(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let header = text.lines().next().unwrap_or("");
    let mut words = header.split(' ');
    let (Some("round"), Some(round), Some("len"), Some(len)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        panic!(
            "not a whole version (header {header:?}, {} bytes)",
            data.len()
        );
    };
    let (round, len): (usize, usize) = (round.parse().unwrap(), len.parse().unwrap());
    assert_eq!(
        data,
        version(round, len).as_slice(),
        "torn version of round {round}"
    );
}

#[test]
fn the_default_segment_grows_to_fit() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    let with_default = |tool: &str| {
        let mut cmd = bin(tool);
        cmd.env("SHM_TOOLS_NAME", &name);
        cmd
    };
    run_limited(&mut with_default("shm-write"), b"hello\n", LIMIT).ok();
    assert_eq!(size_of(&seg), 4096);
    let big = lines(1000);
    run_limited(&mut with_default("shm-write"), &big, LIMIT).ok();
    let out = run_limited(&mut with_default("shm-read"), b"", LIMIT);
    assert_eq!(out.ok().stdout, big);
    assert!(size_of(&seg) > 4096, "it grew");
}

#[test]
fn a_posix_segment_grows_from_either_slot_and_keeps_appends() {
    // One earlier write publishes slot 1, two publish slot 0: growth moves
    // slot 1's content first, so both paths are taken.
    for earlier in 1..=2 {
        let seg = Seg::name();
        let mut expected = Vec::new();
        for i in 0..earlier {
            let small = format!("small {i}\n").into_bytes();
            write(&strs(&seg.args), &small).ok();
            expected = small;
        }
        let more = lines(3000);
        write(&strs(&seg.with(&["--append"])), &more).ok();
        expected.extend_from_slice(&more);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, expected);
        let size = size_of(&seg);
        assert_eq!(size % 4096, 0, "grown to whole pages");
        assert!(info(&seg)["capacity"].as_u64().unwrap() >= expected.len() as u64);
        // And again, from the grown size, replacing.
        let bigger = lines(20000);
        write(&strs(&seg.args), &bigger).ok();
        assert_eq!(read(&strs(&seg.args)).ok().stdout, bigger);
        assert!(size_of(&seg) > size);
    }
}

#[test]
fn a_follower_prints_the_version_that_grew_it_and_carries_on() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"first\n").ok();
    let follower = Live::start(&mut read_cmd(&strs(&seg.with(&["--follow"]))));
    let mut expected = b"first\n".to_vec();
    follower.wait_stdout(LIMIT, "the first version", |out| out == expected.as_slice());
    // Alternating small and ever larger versions: each large one grows the
    // segment, with slot 0 or slot 1 published before it.
    for round in 1..=6 {
        let big = lines(1000 << round);
        let small = format!("small after {round}\n").into_bytes();
        for data in [big, small] {
            write(&strs(&seg.args), &data).ok();
            expected.extend_from_slice(&data);
            follower.wait_stdout(LIMIT, &format!("round {round}"), |out| {
                out.len() >= expected.len()
            });
            assert!(
                follower.stdout_now() == expected,
                "the follower printed something else than each version once (round {round})"
            );
        }
    }
    read(&strs(&seg.with(&["--remove"]))).ok();
    let out = follower.finish(LIMIT);
    out.ok();
    assert_eq!(out.stdout, expected);
}

/// Readers in this process, as `shm-read` reads: open once, read in a
/// loop, and remap when the segment grew. Returns how many reads each made.
fn start_readers(
    name: &str,
    count: usize,
    done: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<usize>> {
    (0..count)
        .map(|_| {
            let done = done.clone();
            let target = Address::Name(PosixName::parse(name).unwrap())
                .resolve()
                .unwrap();
            thread::spawn(move || {
                let mut segment = Segment::open(&target, Access::ReadOnly).unwrap();
                let mut reads = 0;
                let mut remaps = 0;
                while !done.load(Ordering::Acquire) {
                    let result = Snapshot::open(segment.mapping(), &target).and_then(|f| f.read());
                    match result {
                        Ok(version) => {
                            if !version.data.is_empty() {
                                assert_whole(&version.data);
                            }
                            reads += 1;
                        }
                        Err(e) if is_grown(&e) => {
                            assert!(
                                segment.remap_if_grown().unwrap(),
                                "grown but not larger: {e}"
                            );
                            remaps += 1;
                        }
                        Err(e) => panic!("read failed: {e:#}"),
                    }
                }
                assert!(remaps > 0 || reads > 0);
                reads
            })
        })
        .collect()
}

#[test]
fn readers_during_growth_never_see_a_torn_version() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    write(&strs(&seg.args), &version(0, 10)).ok();
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&name, 3, &done);
    // Reader processes too: each maps whatever size the segment has now.
    let processes = {
        let done = done.clone();
        let args = seg.args.clone();
        thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) {
                let out = read(&strs(&args));
                out.ok();
                assert_whole(&out.stdout);
                reads += 1;
            }
            reads
        })
    };
    let grown = AtomicUsize::new(0);
    let started = Instant::now();
    for round in 1..=60 {
        // Alternate growing versions and small ones, so growth finds either
        // slot published.
        let len = if round % 2 == 1 { 8192 * round } else { 10 };
        let before = size_of(&seg);
        write(&strs(&seg.args), &version(round, len)).ok();
        if size_of(&seg) > before {
            grown.fetch_add(1, Ordering::Relaxed);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
    }
    done.store(true, Ordering::Release);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let process_reads = processes.join().unwrap();
    assert_eq!(grown.load(Ordering::Relaxed), 30, "every odd round grew it");
    assert!(reads > 0 && process_reads > 0);
}

#[test]
fn racing_growing_writers_leave_one_whole_version() {
    let seg = Seg::name();
    write(&strs(&seg.args), &version(0, 10)).ok();
    for attempt in 0..10 {
        let writers: Vec<_> = (1..=4)
            .map(|w| {
                let args = seg.args.clone();
                let data = version(attempt * 10 + w, w * 20000 + attempt * 1000);
                thread::spawn(move || write(&strs(&args), &data).ok().code())
            })
            .collect();
        for w in writers {
            assert_eq!(w.join().unwrap(), Some(0));
        }
        assert_whole(&read(&strs(&seg.args)).ok().stdout);
    }
}

#[test]
fn growth_on_a_full_dev_shm_fails_and_keeps_the_content() {
    let script = r#"
        seq 1 20000 > /tmp/h10g-small.$$
        "$SHM_WRITE" -n g < /tmp/h10g-small.$$ || echo first-failed
        head -c 800000 /dev/zero | "$SHM_WRITE" -n g
        echo "exit=$?"
        "$SHM_READ" -n g | cmp - /tmp/h10g-small.$$ && echo content-intact
        stat -c 'size=%s' /dev/shm/g
        rm -f /tmp/h10g-small.$$
    "#;
    let Some(report) = in_small_dev_shm(script) else {
        return;
    };
    assert!(!report.contains("first-failed"), "{report}");
    assert!(report.contains("exit=1\n"), "{report}");
    assert!(report.contains("content-intact"), "{report}");
    assert!(
        report.contains("cannot grow") && report.contains("/dev/shm"),
        "{report}"
    );
    let size = lines(20000).len();
    let expected = (size * 2 + 128).div_ceil(4096) * 4096;
    assert!(
        report.contains(&format!("size={expected}\n")),
        "the size changed: {report}"
    );
}

#[test]
fn another_users_object_is_not_grown() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let seg = Seg::name();
    write(&strs(&seg.with(&["-m", "0666"])), b"root's\n").ok();
    let mut as_nobody = as_nobody("shm-write", &strs(&seg.args));
    run_limited(&mut as_nobody, &lines(2000), LIMIT)
        .expect_code(1)
        .stderr_has(&["not ours to grow", "content is unchanged"]);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"root's\n");
    assert_eq!(size_of(&seg), 4096);
    // What fits is still written.
    run_limited(&mut as_nobody, b"nobody's\n", LIMIT).ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"nobody's\n");
}

fn sysv_id(seg: &Seg) -> i64 {
    info(seg)["id"].as_i64().expect("id in --info")
}

#[test]
fn a_system_v_segment_is_replaced_by_key() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"old\n").ok();
    let old_id = sysv_id(&seg);
    // A program attached to the old one (here: this test).
    let key = seg.key_value().unwrap();
    let target = Address::Key(key).resolve().unwrap();
    let attached = Segment::open(&target, Access::ReadOnly).unwrap();

    let big = lines(2000);
    write(&strs(&seg.args), &big).expect_code(1).stderr_has(&[
        "cannot grow",
        "--replace",
        &seg.args[1],
    ]);
    write(&strs(&seg.with(&["--replace"])), &big).ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, big);
    assert_ne!(sysv_id(&seg), old_id, "a new segment under the same key");
    let kept = Snapshot::open(attached.mapping(), &target)
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(
        kept.data, b"old\n",
        "the attached program keeps the old segment"
    );
    drop(attached);

    // With --append, the content comes along; what fits is not replaced.
    let new_id = sysv_id(&seg);
    write(&strs(&seg.with(&["--replace", "--append"])), b"tail\n").ok();
    assert_eq!(sysv_id(&seg), new_id, "it fit, so it was not replaced");
    let more = lines(5000);
    write(&strs(&seg.with(&["--replace", "--append"])), &more).ok();
    let mut expected = big.clone();
    expected.extend_from_slice(b"tail\n");
    expected.extend_from_slice(&more);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, expected);
    assert_ne!(sysv_id(&seg), new_id);

    // -x means "must not exist": it contradicts replacing.
    write(&strs(&seg.with(&["--replace", "-x"])), b"x").expect_code(2);
}

#[test]
fn racing_replacements_leave_one_whole_segment() {
    let seg = Seg::key();
    write(&strs(&seg.args), &version(0, 10)).ok();
    for attempt in 0..5 {
        let writers: Vec<_> = (1..=4)
            .map(|w| {
                let args = seg.with(&["--replace"]);
                let data = version(attempt * 10 + w, (attempt * 4 + w) * 5000);
                thread::spawn(move || write(&strs(&args), &data).ok().code())
            })
            .collect();
        for w in writers {
            assert_eq!(w.join().unwrap(), Some(0));
        }
        assert_whole(&read(&strs(&seg.args)).ok().stdout);
    }
    let key = format!("{:>10}", seg.key_value().unwrap().as_raw());
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert_eq!(
        table.lines().filter(|l| l.starts_with(&key)).count(),
        1,
        "one segment under the key"
    );
}

#[test]
fn a_segment_addressed_by_id_keeps_its_identity() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"by id\n").ok();
    let id = sysv_id(&seg).to_string();
    let by_id = ["-i", id.as_str()];
    write(&by_id, &lines(2000))
        .expect_code(1)
        .stderr_has(&["keeps its identity", "content is unchanged"]);
    write(&[&by_id[..], &["--replace"]].concat(), &lines(2000))
        .expect_code(2)
        .stderr_has(&["keeps its identity"]);
    assert_eq!(sysv_id(&seg).to_string(), id);
    assert_eq!(read(&by_id).ok().stdout, b"by id\n");
}

#[test]
fn readers_never_see_a_torn_version_while_a_writer_grows_it_fast() {
    // The writer runs in this process too, so growths come thousands of
    // times faster than from shm-write: the windows between its steps are
    // hit far more often.
    use shm_tools::layout::snapshot::Publish;
    use shm_tools::segment::Create;
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    let target = Address::Name(PosixName::parse(&name).unwrap())
        .resolve()
        .unwrap();
    let create = Create {
        size: 4096,
        mode: 0o600,
        exclusive: true,
    };
    let (mut segment, _) = Segment::open_or_create(&target, &create).unwrap();
    let publish = |segment: &Segment, data: &[u8]| {
        Snapshot::for_writing(segment.mapping(), &target, &snapshot::silent)
            .unwrap()
            .publish_or_grow(data, Publish::Replace, &|size| segment.grow_to(size))
            .unwrap();
    };
    publish(&segment, &version(0, 10));
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&name, 2, &done);
    for round in 1..=1500 {
        let len = if round % 2 == 1 {
            1024 * round
        } else {
            round % 100
        };
        publish(&segment, &version(round, len));
        segment.remap_if_grown().unwrap();
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(size_of(&seg) > 1024 * 1400 * 2, "it grew");
}
