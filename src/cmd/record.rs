//! The record format: one JSON object per line, what `shm-read --follow
//! --json` prints for each snapshot version or log record, and what
//! `shm-write --replay` reads back.
//!
//! Contract: `content` holds the bytes exactly: as text when they are
//! valid UTF-8 (`"encoding": "utf-8"`), in standard base64 otherwise
//! (`"encoding": "base64"`), so a round trip is byte-exact. `time_ns` is
//! when the version was published or the record appended (ns since the
//! Unix epoch, the writer's CLOCK_REALTIME), `time` the same to the second
//! in UTC, both null where the layout keeps no time (version 1 logs).
//! [`parse`] accepts what [`to_json_line`] prints (optional fields may be
//! left out) and says what is wrong with anything else.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// `encoding` of content that is valid UTF-8, given as text.
pub const UTF8: &str = "utf-8";
/// `encoding` of any other content, given in standard base64.
pub const BASE64: &str = "base64";

/// One version or record, as the JSON form carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number where it was read (informational).
    pub seq: Option<u64>,
    /// When it was written, ns since the Unix epoch, if known.
    pub time_ns: Option<u64>,
    /// The bytes, exactly.
    pub content: Vec<u8>,
}

/// The JSON line (with its newline) for one version or record.
#[must_use]
pub fn to_json_line(seq: u64, time_ns: Option<u64>, content: &[u8]) -> String {
    let (encoding, text) = match std::str::from_utf8(content) {
        Ok(text) => (UTF8, Value::from(text)),
        Err(_) => (BASE64, Value::from(STANDARD.encode(content))),
    };
    let time = time_ns.map_or(Value::Null, |ns| {
        // ns / 10^9 is below 2^35: no i64 overflow.
        let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
        Value::from(crate::cmd::info::format_utc(secs))
    });
    let mut line = String::with_capacity(content.len() + 96);
    // Fields in the order a person reads them; writing to a String cannot fail.
    let _ = writeln!(
        line,
        r#"{{"seq":{seq},"time":{time},"time_ns":{},"encoding":"{encoding}","content":{text}}}"#,
        time_ns.map_or(Value::Null, Value::from),
    );
    line
}

/// Parses one line of the record format (without its newline).
pub fn parse(line: &[u8]) -> Result<Record, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    let seq = match fields.get("seq") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or("\"seq\" is not a non-negative integer")?),
    };
    let time_ns = match fields.get("time_ns") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or("\"time_ns\" is not a non-negative integer (ns since 1970) or null")?,
        ),
    };
    let text = match fields.get("content") {
        Some(Value::String(text)) => text,
        Some(_) => return Err("\"content\" is not a string".into()),
        None => return Err("it has no \"content\"".into()),
    };
    let content = match fields.get("encoding") {
        None => text.as_bytes().to_vec(),
        Some(Value::String(e)) if e == UTF8 => text.as_bytes().to_vec(),
        Some(Value::String(e)) if e == BASE64 => STANDARD
            .decode(text)
            .map_err(|e| format!("\"content\" is not valid base64 ({e})"))?,
        Some(other) => {
            return Err(format!(
                "\"encoding\" is {other}, neither \"{UTF8}\" nor \"{BASE64}\""
            ));
        }
    };
    Ok(Record {
        seq,
        time_ns,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_round_trip_exactly() {
        for content in [
            &b""[..],
            b"hello\n",
            b"quote \" backslash \\ tab \t nul \0 end",
            b"\xff\xfe binary \x00\x01",
            "caf\u{e9} \u{1f600}".as_bytes(),
        ] {
            let line = to_json_line(7, Some(1_795_789_075_123_456_789), content);
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            let record = parse(line.trim_end().as_bytes()).unwrap();
            assert_eq!(record.content, content, "{line}");
            assert_eq!(record.seq, Some(7));
            assert_eq!(record.time_ns, Some(1_795_789_075_123_456_789));
        }
        let line = to_json_line(0, None, b"\xff");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["encoding"], "base64");
        assert_eq!(value["content"], "/w==");
        assert!(value["time"].is_null() && value["time_ns"].is_null());
        let value: Value = serde_json::from_str(&to_json_line(1, Some(0), b"x")).unwrap();
        assert_eq!(value["time"], "1970-01-01T00:00:00Z");
        assert_eq!(value["encoding"], "utf-8");
    }

    #[test]
    fn extreme_times_print() {
        let line = to_json_line(u64::MAX, Some(u64::MAX), b"x");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time_ns"], u64::MAX);
        assert!(value["time"].as_str().unwrap().starts_with("2554-"));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        for (line, why) in [
            (&b"not json"[..], "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (b"{}", "no \"content\""),
            (br#"{"content":5}"#, "\"content\" is not a string"),
            (br#"{"content":"x","encoding":"rot13"}"#, "neither"),
            (
                br#"{"content":"!!","encoding":"base64"}"#,
                "not valid base64",
            ),
            (br#"{"content":"x","time_ns":-1}"#, "time_ns"),
            (br#"{"content":"x","time_ns":1.5}"#, "time_ns"),
            (br#"{"content":"x","time_ns":"soon"}"#, "time_ns"),
            (br#"{"content":"x","seq":-3}"#, "seq"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(line)
            );
        }
        // Optional fields may be left out; the old lossy form still reads.
        assert_eq!(
            parse(br#"{"seq":3,"content":"old"}"#).unwrap(),
            Record {
                seq: Some(3),
                time_ns: None,
                content: b"old".to_vec()
            }
        );
    }
}
