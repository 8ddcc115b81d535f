//! `--replace` of a System V key against another user who loops
//! `shmget(key, IPC_CREAT | IPC_EXCL)` to grab the key in the moment it is
//! free: the victim's data never goes into their segment, their segment
//! is left alone, and the old content is never lost.

mod common;

use std::process::Command;

use common::*;

/// Loops `shmget(key, size, IPC_CREAT | IPC_EXCL | mode)` until it wins,
/// then says so and exits: the attacker.
const RACER_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/shm.h>
int main(int argc, char **argv) {
    key_t key = strtol(argv[1], 0, 0);
    size_t size = strtol(argv[2], 0, 0);
    int mode = strtol(argv[3], 0, 8);
    for (long i = 0; i < 2000000000L; i++) {
        int id = shmget(key, size, IPC_CREAT | IPC_EXCL | mode);
        if (id >= 0) { printf("racer took the key, id %d\n", id); fflush(stdout); return 0; }
    }
    return 1;
}
"#;

/// One round per line: the old content is written by uid 1000, a racer
/// as uid 1001 loops on the key, uid 1000 replaces it with 300 kB; then
/// what the round found. `$GAP` widens the free moment (microseconds).
const ROUNDS: &str = r#"
K=0x7a17
U="setpriv --reuid 1000 --regid 1000 --clear-groups"
A="setpriv --reuid 1001 --regid 1001 --clear-groups"
D=$(mktemp -d); chmod 755 $D
cc -O2 -o $D/racer $D/racer.c || exit 1
head -c 300000 /dev/urandom > $D/big; chmod 644 $D/big
for i in $(seq 1 $ROUNDS); do
  printf 'old content %s' $i | $U $SHM_WRITE -k $K || exit 1
  $A $D/racer $K 1048576 $RACER_MODE > $D/racer.out & R=$!
  sleep 0.02
  SHM_TOOLS_TEST_REPLACE_GAP_US=$GAP $U $SHM_WRITE -k $K --replace < $D/big 2> $D/err; rc=$?
  kill $R 2>/dev/null; wait $R 2>/dev/null
  owner=$(awk -v k=$(printf %d $K) '$1==k{print $8}' /proc/sysvipc/shm)
  if grep -q racer $D/racer.out; then
    kept=$(sed -n 's/.*unnamed segment, id \([0-9]*\).*/\1/p' $D/err)
    [ -n "$kept" ] && $U $SHM_READ -i $kept > $D/kept 2>&1 && $SHM_READ -i $kept --remove > /dev/null
    # Their segment: still theirs and still all zeros (nothing of ours went in).
    theirs=$($SHM_READ --all -k $K | tr -d '\0' | wc -c)
    echo "taken rc=$rc lines=$(wc -l < $D/err) names_uid=$(grep -c 'uid 1001' $D/err) kept=$(cat $D/kept 2>/dev/null) owner=$owner their_bytes=$theirs"
  else
    same=$($U $SHM_READ -k $K | cmp -s - $D/big && echo yes || echo no)
    echo "replaced rc=$rc new=$same owner=$owner"
  fi
  ipcrm -M $K 2>/dev/null
done
rm -rf $D
"#;

/// Runs the rounds in a fresh IPC namespace; returns one line per round.
fn rounds(count: u32, gap_us: u32, racer_mode: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("shm-race-{}-{gap_us}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = ROUNDS.replace(
        "D=$(mktemp -d); chmod 755 $D",
        &format!("D={}; chmod 755 $D", dir.display()),
    );
    std::fs::write(dir.join("racer.c"), RACER_C).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--ipc", "sh", "-c", &script])
        .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write"))
        .env("SHM_READ", env!("CARGO_BIN_EXE_shm-read"))
        .env("ROUNDS", count.to_string())
        .env("GAP", gap_us.to_string())
        .env("RACER_MODE", racer_mode);
    let out = run(&mut cmd, b"");
    let _ = std::fs::remove_dir_all(&dir);
    out.ok();
    out.stdout_str().lines().map(str::to_owned).collect()
}

/// Every round either replaced the content for uid 1000, or failed in one
/// line naming uid 1001 with the old content kept, their segment untouched.
fn check(lines: &[String]) -> usize {
    let mut taken = 0;
    for (i, line) in lines.iter().enumerate() {
        let round = i + 1;
        if line.starts_with("taken") {
            taken += 1;
            assert_eq!(
                line,
                &format!(
                    "taken rc=1 lines=1 names_uid=1 kept=old content {round} owner=1001 their_bytes=0"
                ),
                "round {round}"
            );
        } else {
            assert_eq!(line, "replaced rc=0 new=yes owner=1000", "round {round}");
        }
    }
    taken
}

#[test]
fn a_key_taken_during_replace_is_not_adopted_and_the_old_content_is_kept() {
    if !is_root() {
        eprintln!("skipped: needs root for setpriv");
        return;
    }
    for mode in ["600", "666"] {
        // A wide free moment: the racer always wins it.
        let lines = rounds(3, 50_000, mode);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(check(&lines), 3, "mode {mode}: {lines:?}");
    }
}

#[test]
fn replace_against_a_looping_racer_never_loses_or_leaks() {
    if !is_root() {
        eprintln!("skipped: needs root for setpriv");
        return;
    }
    // The natural moment: the racer wins some rounds, loses others.
    for mode in ["600", "666"] {
        let lines = rounds(30, 0, mode);
        assert_eq!(lines.len(), 30, "{lines:?}");
        let taken = check(&lines);
        eprintln!("mode {mode}: the racer took the key in {taken} of 30 rounds");
    }
}
