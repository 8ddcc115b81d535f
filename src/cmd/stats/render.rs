//! What one `--stats` interval measured, and how it is shown: a JSON
//! object, one text line, or a row of the `--list --stats` table.
//!
//! Contract: the numbers are typed here; JSON keys and column headers are
//! written only in this file. A rate that cannot be computed (an interval
//! of no length) is JSON `null` and text `-`.

use std::fmt::Write as _;
use std::io::Write;

use indicatif::HumanBytes;
use serde_json::{Value, json};

use crate::layout::Layout;
use crate::layout::log::FollowerLag;

/// What one interval measured.
#[derive(Debug, Clone)]
pub(super) struct Interval {
    /// Its measured length.
    pub secs: f64,
    /// Whether a header counter went back (its delta is then 0).
    pub went_back: bool,
    /// Share of the samples in which the writer was asleep waiting.
    pub waited: f64,
    /// What the layout counts.
    pub rates: Rates,
}

/// What each layout counts over an interval.
#[derive(Debug, Clone)]
pub(super) enum Rates {
    Snapshot {
        versions: u64,
        versions_per_s: f64,
        content_length: usize,
    },
    Log {
        records: u64,
        records_per_s: f64,
        bytes: u64,
        bytes_per_s: f64,
        records_held: u64,
        fill: f64,
        overwritten: u64,
        overwritten_per_s: f64,
        followers: Vec<FollowerLag>,
    },
    Stream {
        bytes: u64,
        bytes_per_s: f64,
        read_per_s: f64,
        in_flight: u64,
        fill: f64,
    },
    Foreign,
}

impl Rates {
    /// The layout's name, as `--info` shows it.
    pub(super) fn layout(&self) -> &'static str {
        match self {
            Rates::Snapshot { .. } => Layout::Snapshot.name(),
            Rates::Log { .. } => Layout::Log.name(),
            Rates::Stream { .. } => Layout::Stream.name(),
            Rates::Foreign => Layout::Foreign.name(),
        }
    }
}

impl Interval {
    /// The JSON members, in no particular order (objects sort their keys).
    pub(super) fn json_fields(&self) -> Vec<(&'static str, Value)> {
        let mut fields = vec![
            ("interval_s", json!((self.secs * 1000.0).round() / 1000.0)),
            ("layout", json!(self.rates.layout())),
        ];
        let went_back = ("counter_went_back", json!(self.went_back));
        match &self.rates {
            Rates::Snapshot {
                versions,
                versions_per_s,
                content_length,
            } => fields.extend([
                went_back,
                ("versions", json!(versions)),
                ("versions_per_s", json!(versions_per_s)),
                ("content_length", json!(content_length)),
            ]),
            Rates::Log {
                records,
                records_per_s,
                bytes,
                bytes_per_s,
                records_held,
                fill,
                overwritten,
                overwritten_per_s,
                followers,
            } => fields.extend([
                went_back,
                ("records", json!(records)),
                ("records_per_s", json!(records_per_s)),
                ("bytes", json!(bytes)),
                ("bytes_per_s", json!(bytes_per_s)),
                ("records_held", json!(records_held)),
                ("fill", json!(fill)),
                ("overwritten", json!(overwritten)),
                ("overwritten_per_s", json!(overwritten_per_s)),
                ("writer_waited", json!(self.waited)),
                ("lossless_followers", followers_json(followers)),
            ]),
            Rates::Stream {
                bytes,
                bytes_per_s,
                read_per_s,
                in_flight,
                fill,
            } => fields.extend([
                went_back,
                ("bytes", json!(bytes)),
                ("bytes_per_s", json!(bytes_per_s)),
                ("bytes_read_per_s", json!(read_per_s)),
                ("bytes_in_flight", json!(in_flight)),
                ("fill", json!(fill)),
                ("writer_waited", json!(self.waited)),
            ]),
            Rates::Foreign => {}
        }
        fields
    }

    /// Bytes appended per second, where the layout counts them.
    fn bytes_per_s(&self) -> Option<f64> {
        match &self.rates {
            Rates::Log { bytes_per_s, .. } | Rates::Stream { bytes_per_s, .. } => {
                Some(*bytes_per_s)
            }
            Rates::Snapshot { .. } | Rates::Foreign => None,
        }
    }

    fn fill(&self) -> Option<f64> {
        match &self.rates {
            Rates::Log { fill, .. } | Rates::Stream { fill, .. } => Some(*fill),
            Rates::Snapshot { .. } | Rates::Foreign => None,
        }
    }

    /// The writer's waiting share, where a writer can wait (log, stream).
    fn waited(&self) -> Option<f64> {
        matches!(self.rates, Rates::Log { .. } | Rates::Stream { .. }).then_some(self.waited)
    }

    /// A rate cell, marked when a header counter went back in the interval
    /// (its delta is shown as 0, never as a wrapped-around huge number).
    fn rate_cell(&self, rate: String) -> String {
        if self.went_back {
            format!("{rate} (counter went back)")
        } else {
            rate
        }
    }
}

fn followers_json(followers: &[FollowerLag]) -> Value {
    Value::Array(
        followers
            .iter()
            .map(|f| json!({"tid": f.tid, "lag_records": f.records, "lag_bytes": f.bytes}))
            .collect(),
    )
}

/// A number as JSON shows it (`12.5`, `3.0`), `-` for none (a rate that
/// is not finite has no JSON number either).
fn plain(n: f64) -> String {
    match json!(n) {
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn bytes_rate(rate: Option<f64>) -> String {
    match rate.map(|r| json!(r)).as_ref().and_then(Value::as_f64) {
        Some(b) => {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a non-negative rate to print"
            )]
            let b = b as u64;
            format!("{}/s", HumanBytes(b))
        }
        None => "-".to_owned(),
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

fn followers_text(followers: &[FollowerLag]) -> String {
    if followers.is_empty() {
        return "-".to_owned();
    }
    followers
        .iter()
        .map(|f| match f.records {
            Some(n) => format!("{}:{n}", f.tid),
            None => format!("{}:{}B", f.tid, f.bytes),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The text columns for one layout: header, width, and each cell.
pub(super) type Column = (&'static str, usize, fn(&Interval) -> String);

pub(super) fn text_columns(layout: &str) -> Vec<Column> {
    match layout {
        "framed" => vec![
            ("VERSIONS/S", 12, |i| match &i.rates {
                Rates::Snapshot { versions_per_s, .. } => i.rate_cell(plain(*versions_per_s)),
                _ => "-".to_owned(),
            }),
            ("LENGTH", 12, |i| match &i.rates {
                Rates::Snapshot { content_length, .. } => {
                    HumanBytes(*content_length as u64).to_string()
                }
                _ => "-".to_owned(),
            }),
        ],
        "log" => log_columns(),
        "stream" => vec![
            ("BYTES/S", 14, |i| i.rate_cell(bytes_rate(i.bytes_per_s()))),
            ("READ/S", 14, |i| match &i.rates {
                Rates::Stream { read_per_s, .. } => bytes_rate(Some(*read_per_s)),
                _ => "-".to_owned(),
            }),
            ("IN-FLIGHT", 12, |i| match &i.rates {
                Rates::Stream { in_flight, .. } => HumanBytes(*in_flight).to_string(),
                _ => "-".to_owned(),
            }),
            ("FILL", 7, |i| percent(i.fill())),
            ("WAITED", 0, |i| percent(i.waited())),
        ],
        _ => Vec::new(),
    }
}

fn log_columns() -> Vec<Column> {
    vec![
        ("RECORDS/S", 11, |i| match &i.rates {
            Rates::Log { records_per_s, .. } => i.rate_cell(plain(*records_per_s)),
            _ => "-".to_owned(),
        }),
        ("BYTES/S", 14, |i| bytes_rate(i.bytes_per_s())),
        ("HELD", 10, |i| match &i.rates {
            Rates::Log { records_held, .. } => records_held.to_string(),
            _ => "-".to_owned(),
        }),
        ("FILL", 7, |i| percent(i.fill())),
        ("OVERWRITTEN/S", 14, |i| match &i.rates {
            Rates::Log {
                overwritten_per_s, ..
            } => plain(*overwritten_per_s),
            _ => "-".to_owned(),
        }),
        ("WAITED", 7, |i| percent(i.waited())),
        ("LOSSLESS(TID:LAG)", 0, |i| match &i.rates {
            Rates::Log { followers, .. } => followers_text(followers),
            _ => "-".to_owned(),
        }),
    ]
}

/// Cells padded to their widths, two spaces apart, the line's end trimmed.
pub(super) fn text_line(cells: impl IntoIterator<Item = (String, usize)>) -> String {
    let mut line = String::new();
    for (cell, width) in cells {
        // Writing to a String cannot fail.
        let _ = write!(line, "{cell:width$}  ");
    }
    line.trim_end().to_owned()
}

/// One `--list --stats` row: a segment as `--list` shows its address,
/// and its interval or why there is none.
pub(super) type StatsRow = (String, Result<Interval, String>);

/// The `--list --stats` table: one rate and one fill column whatever the
/// layout, aligned to the widest cell.
pub(super) fn write_table(rows: &[StatsRow], out: &mut dyn Write) -> anyhow::Result<()> {
    let header = ["SEGMENT", "LAYOUT", "RATE", "BYTES/S", "FILL", "WAITED"].map(String::from);
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|(segment, row)| match row {
            Err(e) => [
                segment.clone(),
                "?".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                e.clone(),
            ],
            Ok(i) => {
                let rate = match &i.rates {
                    Rates::Snapshot { versions_per_s, .. } => {
                        format!("{} versions/s", plain(*versions_per_s))
                    }
                    Rates::Log { records_per_s, .. } => {
                        format!("{} records/s", plain(*records_per_s))
                    }
                    Rates::Stream { .. } | Rates::Foreign => "-".into(),
                };
                [
                    segment.clone(),
                    i.rates.layout().to_owned(),
                    i.rate_cell(rate),
                    bytes_rate(i.bytes_per_s()),
                    percent(i.fill()),
                    percent(i.waited()),
                ]
            }
        })
        .collect();
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&table) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let cells = row.iter().cloned().zip(widths);
        writeln!(out, "{}", text_line(cells))?;
    }
    Ok(())
}

/// JSON objects of one `--list --stats` table, each with the time of day
/// (`time`) when it was made.
pub(super) fn table_json(rows: Vec<StatsRow>, time: impl Fn() -> String) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|(segment, row)| {
                let mut object = serde_json::Map::new();
                object.insert("segment".into(), json!(segment));
                object.insert("time".into(), json!(time()));
                match row {
                    Ok(interval) => {
                        object.extend(
                            interval
                                .json_fields()
                                .into_iter()
                                .map(|(n, v)| (n.to_owned(), v)),
                        );
                    }
                    Err(e) => {
                        object.insert("layout".into(), Value::Null);
                        object.insert("error".into(), json!(e));
                    }
                }
                Value::Object(object)
            })
            .collect(),
    )
}
