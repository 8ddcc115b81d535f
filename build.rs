//! Startup: link shm-write and shm-read statically (docs/BENCHMARKS.md,
//! Startup, says what each step gained).
//!
//! A dynamically linked Rust program on linux-gnu loads libgcc_s, libm and
//! libc, and each shared library costs a process about 0.1 ms at start
//! (open, map, relocate; libgcc_s also runs a CPU-feature probe that is
//! slow in a virtual machine): more than half of what `echo hi | shm-write`
//! takes beyond the classic C program. `-C target-feature=+crt-static`
//! would link statically, but without `--target` it also applies to
//! proc-macros (clap's derive), which cannot be static, and with
//! `--target` the binaries move out of target/release.
//!
//! So this does what crt-static does, for the binaries only:
//! `cargo:rustc-link-arg-bins` never reaches tests, benches or other
//! crates. It asks the linker for a static PIE, and puts first in the
//! binaries' search path a directory of linker scripts named like the
//! shared libraries std asks for (`-lgcc_s -lutil -lrt -lpthread -lm -ldl
//! -lc`), each naming the static archive instead. The standard library is
//! the same either way: its link attributes are settled at the final link.
//!
//! Anything unusual (another OS or libc, a build that is static already,
//! an archive the C compiler does not have) leaves the default dynamic
//! link alone, and SHM_TOOLS_DYNAMIC=1 asks for it. User and group names
//! must then never be looked up through glibc's NSS, which would load
//! modules such as libnss_systemd into the static process and crash it:
//! src/users.rs reads the files itself and asks getent(1) for the rest.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHM_TOOLS_DYNAMIC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let dynamic_gnu = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && !var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static");
    if !dynamic_gnu || std::env::var_os("SHM_TOOLS_DYNAMIC").is_some_and(|v| v != "0") {
        return;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    // rustc links through `cc` unless told otherwise.
    let archive = |name: &str| archive_path("cc", name);
    let (Some(libc), Some(libgcc), Some(libgcc_eh)) = (
        archive("libc.a"),
        archive("libgcc.a"),
        archive("libgcc_eh.a"),
    ) else {
        return;
    };
    let scripts = out_dir.join("static-libs");
    let mut wanted = vec![
        ("gcc_s", format!("GROUP({libgcc_eh} {libgcc})")),
        ("c", format!("GROUP({libc} {libgcc} {libgcc_eh})")),
    ];
    // Empty stubs since glibc 2.34, libm aside; each must exist as an archive.
    for lib in ["m", "pthread", "rt", "dl", "util"] {
        let Some(path) = archive(&format!("lib{lib}.a")) else {
            return;
        };
        wanted.push((lib, format!("INPUT({path})")));
    }
    if std::fs::create_dir_all(&scripts).is_err() {
        return;
    }
    for (lib, script) in &wanted {
        if std::fs::write(scripts.join(format!("lib{lib}.so")), format!("{script}\n")).is_err() {
            return;
        }
    }
    println!("cargo:rustc-link-arg-bins=-L{}", scripts.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
}

/// Where the C compiler finds a static archive: it answers with the bare
/// name when it has none.
fn archive_path(cc: &str, name: &str) -> Option<String> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (Path::new(&path).is_absolute() && Path::new(&path).is_file()).then_some(path)
}
