//! /proc/sysvipc/shm: what the kernel records about every System V
//! segment of this IPC namespace, readable by anyone (IPC_STAT needs read
//! permission on the segment; this table does not).
//!
//! Contract:
//! - one parser, by header names: the first line names the columns, so a
//!   kernel that adds or reorders columns is still read correctly;
//! - a row missing a column that [`SysvStat`] needs is skipped, never
//!   half-filled; `rss` and `swap` are optional (older kernels lack them);
//! - an unreadable table is an empty one: callers use it for what anyone
//!   may see, and fall back to saying less.

use crate::sys::{ShmId, ShmKey, SysvStat};

/// Where the kernel publishes the table.
const PATH: &str = "/proc/sysvipc/shm";

/// One row of the table: a segment's id and what IPC_STAT would say of
/// it, plus its memory use where the kernel reports it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The segment's id (column `shmid`).
    pub id: ShmId,
    /// Columns `key` to `ctime`, as IPC_STAT reports them (`perms` is `mode`).
    pub stat: SysvStat,
    /// Resident bytes (column `rss`).
    pub rss: Option<u64>,
    /// Swapped-out bytes (column `swap`).
    pub swap: Option<u64>,
}

/// Every System V segment in this IPC namespace; empty when the table
/// cannot be read.
#[must_use]
pub fn table() -> Vec<Row> {
    std::fs::read_to_string(PATH)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// The row of segment `id`, if it exists.
#[must_use]
pub fn by_id(id: ShmId) -> Option<Row> {
    table().into_iter().find(|row| row.id == id)
}

/// The first row whose key is `key`, if any (only `IPC_PRIVATE` repeats).
#[must_use]
pub fn by_key(key: ShmKey) -> Option<Row> {
    table().into_iter().find(|row| row.stat.key == key)
}

/// The rows of a table's text, columns found by the header's names.
#[must_use]
pub fn parse(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header: Vec<&str> = header.split_whitespace().collect();
    lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            parse_row(&Cells {
                header: &header,
                cells: &cells,
            })
        })
        .collect()
}

/// One line's cells, looked up by column name.
struct Cells<'a> {
    header: &'a [&'a str],
    cells: &'a [&'a str],
}

impl Cells<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let at = self.header.iter().position(|h| *h == name)?;
        self.cells.get(at).copied()
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name)?.parse().ok()
    }
}

fn parse_row(cells: &Cells<'_>) -> Option<Row> {
    let stat = SysvStat {
        key: ShmKey::from_raw(cells.num("key")?),
        uid: cells.num("uid")?,
        gid: cells.num("gid")?,
        cuid: cells.num("cuid")?,
        cgid: cells.num("cgid")?,
        // The kernel prints the mode in octal.
        mode: u32::from_str_radix(cells.get("perms")?, 8).ok()?,
        size: cells.num("size")?,
        atime: cells.num("atime")?,
        dtime: cells.num("dtime")?,
        ctime: cells.num("ctime")?,
        cpid: cells.num("cpid")?,
        lpid: cells.num("lpid")?,
        nattch: cells.num("nattch")?,
    };
    Some(Row {
        id: ShmId::from_raw(cells.num("shmid")?),
        stat,
        rss: cells.num("rss"),
        swap: cells.num("swap"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap";

    fn table_of(rows: &[&str]) -> String {
        std::iter::once(HEADER)
            .chain(rows.iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn reads_every_column_of_a_kernel_table() {
        let text = table_of(&[
            "    305419896         7  1600                  4096   100   101      2  1000  1001  1002  1003 1700000001 1700000002 1700000003                  8192                     0",
            "            0         9  1640                    16   200     0      0     0     0     0     0          0          0 1700000004                     0                  4096",
        ]);
        let rows = parse(&text);
        assert_eq!(rows.len(), 2);
        let first = &rows[0];
        assert_eq!(first.id, ShmId::from_raw(7));
        assert_eq!(first.stat.key, ShmKey::from_raw(0x1234_5678));
        assert_eq!(first.stat.mode, 0o1600);
        assert_eq!(first.stat.size, 4096);
        assert_eq!((first.stat.cpid, first.stat.lpid), (100, 101));
        assert_eq!(first.stat.nattch, 2);
        assert_eq!((first.stat.uid, first.stat.gid), (1000, 1001));
        assert_eq!((first.stat.cuid, first.stat.cgid), (1002, 1003));
        assert_eq!(
            (first.stat.atime, first.stat.dtime, first.stat.ctime),
            (1_700_000_001, 1_700_000_002, 1_700_000_003)
        );
        assert_eq!((first.rss, first.swap), (Some(8192), Some(0)));
        assert_eq!(rows[1].stat.key, ShmKey::PRIVATE);
        assert_eq!(rows[1].swap, Some(4096));
    }

    #[test]
    fn reordered_columns_are_read_by_name() {
        let text = "shmid key uid perms size cpid lpid nattch gid cuid cgid ctime atime dtime\n\
                    7 -1 1000 644 4096 100 101 2 1001 1002 1003 3 1 2\n";
        let rows = parse(text);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.id, ShmId::from_raw(7));
        assert_eq!(row.stat.key, ShmKey::from_raw(-1));
        assert_eq!(row.stat.uid, 1000);
        assert_eq!(row.stat.mode, 0o644);
        assert_eq!((row.stat.atime, row.stat.dtime, row.stat.ctime), (1, 2, 3));
        // No rss or swap column: unknown, and the row is still read.
        assert_eq!((row.rss, row.swap), (None, None));
    }

    #[test]
    fn rows_missing_a_needed_column_or_malformed_are_skipped() {
        let missing = "key shmid perms size\n1 2 600 4096\n";
        assert!(parse(missing).is_empty());
        let text = table_of(&[
            "garbage",
            "    1    2  600  4096  1  1  0  0  0  0  0  0  0  0  0  0",
        ]);
        let rows = parse(&text);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, ShmId::from_raw(2));
        assert!(parse("").is_empty());
    }
}
