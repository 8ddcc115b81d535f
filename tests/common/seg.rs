//! Segment guards: unique System V keys, ids, POSIX names and ftok paths
//! for a test, removed when the guard drops (even in a panic), and the
//! `--info --json` views of them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use shm_tools::sys::{self, ShmId, ShmKey};

use super::{BOUND, read, strs, until};

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A number unique to this test process and call: the pid keeps test
/// binaries running side by side apart, the counter keeps calls apart.
fn unique() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x3ff;
    (std::process::id() << 10) ^ n
}

/// A segment a test uses, removed when the guard drops (even in a panic).
#[derive(Debug)]
pub struct Seg {
    pub args: Vec<String>,
    what: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Key(ShmKey),
    Id(ShmId),
    Name(String),
    Ftok(PathBuf, ShmKey),
}

impl Seg {
    /// A fresh System V key; asserts no segment has it yet.
    pub fn key() -> Seg {
        let raw = (0x4000_0000 | (unique() & 0x3fff_ffff)).cast_signed();
        let key = ShmKey::from_raw(raw);
        assert!(
            sys::shmget(key, 0, 0).is_err(),
            "key {key} is already in use"
        );
        Seg {
            args: vec!["-k".into(), key.to_string()],
            what: Cleanup::Key(key),
        }
    }

    /// A fresh POSIX name.
    pub fn name() -> Seg {
        let name = format!("shm-tools-test-{}", unique());
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Seg {
            args: vec!["-n".into(), name.clone()],
            what: Cleanup::Name(name),
        }
    }

    /// A fresh POSIX name that starts with `prefix`.
    pub fn name_with(prefix: &str) -> Seg {
        let name = format!("{prefix}{}", unique());
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Seg {
            args: vec!["-n".into(), name.clone()],
            what: Cleanup::Name(name),
        }
    }

    /// A fresh file for ftok (created), in the cargo test temp dir.
    pub fn ftok_file() -> Seg {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ftok-{}", unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("shmfile");
        std::fs::write(&path, b"").expect("ftok file");
        let key = sys::ftok(&path, 65).expect("ftok");
        Seg {
            args: vec!["-f".into(), path.display().to_string()],
            what: Cleanup::Ftok(path, key),
        }
    }

    /// Guards a segment under `key` that the test makes some other way.
    pub fn guard_key(key: ShmKey) -> Seg {
        Seg {
            args: vec!["-k".into(), key.to_string()],
            what: Cleanup::Key(key),
        }
    }

    /// Guards a System V segment known only by id.
    pub fn id(id: i32) -> Seg {
        Seg {
            args: vec!["-i".into(), id.to_string()],
            what: Cleanup::Id(ShmId::from_raw(id)),
        }
    }

    /// The address arguments followed by `more`.
    pub fn with(&self, more: &[&str]) -> Vec<String> {
        let mut all = self.args.clone();
        all.extend(more.iter().map(|s| (*s).to_owned()));
        all
    }

    pub fn key_value(&self) -> Option<ShmKey> {
        match &self.what {
            Cleanup::Key(k) | Cleanup::Ftok(_, k) => Some(*k),
            _ => None,
        }
    }

    pub fn name_value(&self) -> Option<&str> {
        match &self.what {
            Cleanup::Name(n) => Some(n),
            _ => None,
        }
    }

    pub fn ftok_path(&self) -> Option<&PathBuf> {
        match &self.what {
            Cleanup::Ftok(p, _) => Some(p),
            _ => None,
        }
    }

    /// Where a POSIX test segment's object is, in /dev/shm.
    pub fn dev_shm_path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(self.name_value().expect("a POSIX test segment"))
    }

    /// The bytes of a POSIX test segment, as another process sees them.
    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.dev_shm_path()).expect("read the object")
    }

    /// Writes `bytes` at `offset` of a POSIX test segment's object, as a
    /// forger with write access could.
    pub fn poke(&self, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dev_shm_path())
            .expect("open the object");
        file.write_at(bytes, offset).expect("write the object");
    }

    /// A writable mapping of the whole of a POSIX test segment's object, for
    /// changing its words atomically while the tools run.
    pub fn map_writable(&self) -> sys::Mapping {
        use std::os::fd::AsFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dev_shm_path())
            .expect("open the object");
        let size = usize::try_from(file.metadata().expect("fstat").len()).expect("size");
        sys::Mapping::map_fd(file.as_fd(), size, true).expect("map the object")
    }

    /// Whether the segment exists now.
    pub fn exists(&self) -> bool {
        match &self.what {
            Cleanup::Key(k) | Cleanup::Ftok(_, k) => sys::shmget(*k, 0, 0).is_ok(),
            Cleanup::Id(id) => sys::shm_stat(*id).is_ok_and(|s| s.mode & sys::SHM_DEST == 0),
            Cleanup::Name(n) => PathBuf::from("/dev/shm").join(n).exists(),
        }
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        // Cleanup never panics: "not found" just means the test removed it.
        match &self.what {
            Cleanup::Key(key) => {
                if let Ok(id) = sys::shmget(*key, 0, 0) {
                    let _ = sys::shm_remove(id);
                }
            }
            Cleanup::Ftok(path, key) => {
                if let Ok(id) = sys::shmget(*key, 0, 0) {
                    let _ = sys::shm_remove(id);
                }
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Cleanup::Id(id) => {
                let _ = sys::shm_remove(*id);
            }
            Cleanup::Name(name) => {
                let _ = nix::sys::mman::shm_unlink(format!("/{name}").as_str());
            }
        }
        // The leak guard's own check: a segment that survived its removal
        // fails the test (unless it is failing already).
        assert!(
            thread::panicking() || !self.exists(),
            "segment {:?} was left behind after its guard removed it",
            self.args
        );
    }
}

/// `shm-read --info --json` for the segment, parsed.
pub fn info(seg: &Seg) -> serde_json::Value {
    let out = read(&strs(&seg.with(&["--info", "--json"])));
    out.ok();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON: {e}\n{out}"))
}

/// `shm-read --info --json` for the segment, parsed, or None where that
/// fails (the segment is not there yet, or is being made).
pub fn info_if_any(seg: &Seg) -> Option<serde_json::Value> {
    let out = read(&strs(&seg.with(&["--info", "--json"])));
    (out.code() == Some(0))
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits (up to [`BOUND`]) until `--info --json` of `seg` satisfies
/// `ready`: how a test sees a peer's claim, death or progress on record.
pub fn wait_for_info(seg: &Seg, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    until(what, BOUND, || {
        seg.exists() && info_if_any(seg).is_some_and(|info| ready(&info))
    });
}
