//! The logger behind the `log` facade: one line per record on stderr, as
//! text or as JSON for log shippers.
//!
//! Structured fields: call sites that know them attach `log`'s key-values
//! (`log::debug!(worker = id, conn = key, peer:% = ip, reason = "slow"; "…")`),
//! always spelled `worker` (worker id), `conn` (a worker's connection key),
//! `peer` (the client's address) and `reason` (why a connection closed, the
//! code a request was refused with). JSON lines carry each as a key of its
//! own, numbers as numbers; text lines stay as they were, the message alone
//! (which names what it needs to).
//!
//! Owns line formatting ([`format_record`]) and the UTC timestamp, computed
//! by hand from `SystemTime` so no date crate is needed. It must not buffer
//! across records or run on the fan-out path: callers log through `log`'s
//! macros, which check the level before anything is formatted.
//!
//! Invariants:
//! - every record is exactly one line: control characters in a text message
//!   are escaped (`\n` → `\\n`), and JSON strings are escaped by serde_json,
//!   so a message that quotes client input cannot forge further lines;
//! - each line reaches stderr through one `write_all` under the stderr lock,
//!   so lines from different worker threads never interleave.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use log::kv::{self, Key, Source, Value, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record, SetLoggerError};

use crate::config::LogFormat;

/// Installs the logger for the whole process, writing records at `level` or
/// more severe in `format`. Fails if a logger is already installed.
pub fn init(level: LevelFilter, format: LogFormat) -> Result<(), SetLoggerError> {
    log::set_boxed_logger(Box::new(StderrLogger { format }))?;
    set_level(level);
    Ok(())
}

/// Writes records at `level` or more severe from now on (a reload changes it
/// while workers log).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The level is `log`'s global maximum, the one the macros check first, so
/// that [`set_level`] changes both at once.
struct StderrLogger {
    format: LogFormat,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        let level = level_of(record.target(), record.level());
        if level > log::max_level() {
            return;
        }
        let mut line = Vec::with_capacity(128);
        format_record(
            &mut line,
            self.format,
            SystemTime::now(),
            level,
            record.target(),
            record.args(),
            record.key_values(),
        );
        // Nothing useful can be done when stderr itself fails.
        let _ = std::io::stderr().lock().write_all(&line);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The level a record is written at: spout's own as they are; a library's (the Redis client, which logs each of
/// its reconnection attempts, many a second while Redis is away) at most at debug. spout logs what a library's
/// failure means for it once, at the level it deserves (`broker: cannot connect to Redis … retrying`).
fn level_of(target: &str, level: Level) -> Level {
    if target == "spout" || target.starts_with("spout::") {
        level
    } else {
        level.max(Level::Debug)
    }
}

/// Appends one complete log line, newline included, to `out`.
///
/// Text: `2026-11-23T16:20:01.123Z INFO  spout::worker: message`.
/// JSON: `{"time":"2026-11-23T16:20:01.123Z","level":"INFO","target":"spout::worker","message":"message"}`,
/// then the record's `fields`, each as a key of its own (`"worker":0,"conn":7,"peer":"10.0.0.1"`).
pub fn format_record(
    out: &mut Vec<u8>,
    format: LogFormat,
    now: SystemTime,
    level: Level,
    target: &str,
    args: &fmt::Arguments<'_>,
    fields: &dyn Source,
) {
    let ts = crate::date::iso_timestamp(now);
    // `as_str` avoids formatting a message that has no arguments.
    let formatted;
    let msg = match args.as_str() {
        Some(s) => s,
        None => {
            formatted = args.to_string();
            &formatted
        }
    };
    match format {
        LogFormat::Text => {
            let mut line = String::with_capacity(ts.len() + target.len() + msg.len() + 10);
            let _ = write!(line, "{ts} {:<5} {target}: ", level.as_str());
            push_escaped_controls(&mut line, msg);
            line.push('\n');
            out.extend_from_slice(line.as_bytes());
        }
        LogFormat::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(ts.as_bytes());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(level.as_str().as_bytes());
            out.extend_from_slice(b"\",\"target\":");
            push_json_string(out, target);
            out.extend_from_slice(b",\"message\":");
            push_json_string(out, msg);
            // Writing into a `Vec` cannot fail, and `JsonFields` never does.
            let _ = fields.visit(&mut JsonFields(out));
            out.extend_from_slice(b"}\n");
        }
    }
}

/// Appends each field as `,"key":value`.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        self.0.push(b',');
        push_json_string(self.0, key.as_str());
        self.0.push(b':');
        value.visit(JsonValue(self.0))
    }
}

/// One field's value: a whole number as a JSON number, a missing value (`None`) as `null`, anything else as its
/// text in a JSON string.
struct JsonValue<'a>(&'a mut Vec<u8>);

impl<'v> VisitValue<'v> for JsonValue<'_> {
    fn visit_any(&mut self, value: Value) -> Result<(), kv::Error> {
        push_json_string(self.0, &value.to_string());
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0.extend_from_slice(value.to_string().as_bytes());
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0.extend_from_slice(value.to_string().as_bytes());
        Ok(())
    }
}

/// Appends `s` to `line`, escaping control characters other than tab so the
/// text stays on one line.
fn push_escaped_controls(line: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
}

/// Appends `s` as a quoted, escaped JSON string.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at_millis(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn line(format: LogFormat, level: Level, target: &str, args: fmt::Arguments<'_>) -> String {
        line_with(format, level, target, args, &[])
    }

    fn line_with(
        format: LogFormat,
        level: Level,
        target: &str,
        args: fmt::Arguments<'_>,
        fields: &[(&str, Value<'_>)],
    ) -> String {
        let mut out = Vec::new();
        format_record(
            &mut out,
            format,
            at_millis(1_795_450_801_123),
            level,
            target,
            &args,
            &fields,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_line() {
        let got = line(
            LogFormat::Text,
            Level::Info,
            "spout::worker",
            format_args!("worker {} started", 3),
        );
        assert_eq!(
            got,
            "2026-11-23T16:20:01.123Z INFO  spout::worker: worker 3 started\n"
        );
        let got = line(LogFormat::Text, Level::Error, "spout", format_args!("boom"));
        assert_eq!(got, "2026-11-23T16:20:01.123Z ERROR spout: boom\n");
    }

    #[test]
    fn text_line_escapes_control_characters() {
        let got = line(
            LogFormat::Text,
            Level::Warn,
            "spout::conn",
            format_args!("bad \"name\"\nINJECTED\r\x1b[31m\tok é"),
        );
        assert_eq!(
            got,
            "2026-11-23T16:20:01.123Z WARN  spout::conn: bad \"name\"\\nINJECTED\\r\\u{1b}[31m\tok é\n"
        );
        assert_eq!(got.matches('\n').count(), 1);
    }

    #[test]
    fn json_line() {
        let got = line(
            LogFormat::Json,
            Level::Debug,
            "spout::worker",
            format_args!("key {} closed", 7),
        );
        assert_eq!(
            got,
            "{\"time\":\"2026-11-23T16:20:01.123Z\",\"level\":\"DEBUG\",\
             \"target\":\"spout::worker\",\"message\":\"key 7 closed\"}\n"
        );
    }

    #[test]
    fn fields_are_keys_of_json_lines_and_leave_text_lines_alone() {
        let fields = [
            ("worker", Value::from(1u64)),
            ("conn", Value::from(7usize)),
            ("peer", Value::from_display(&"10.0.0.1")),
            ("reason", Value::from("slow\"\n")),
            ("absent", Value::null()),
        ];
        let args = || format_args!("worker 1 conn 7 from 10.0.0.1: closed");
        let json = line_with(LogFormat::Json, Level::Debug, "spout", args(), &fields);
        assert_eq!(json.matches('\n').count(), 1, "{json}");
        let value: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(value["worker"], 1);
        assert_eq!(value["conn"], 7);
        assert_eq!(value["peer"], "10.0.0.1");
        assert_eq!(value["reason"], "slow\"\n");
        assert_eq!(value["absent"], serde_json::Value::Null);
        assert_eq!(value["message"], "worker 1 conn 7 from 10.0.0.1: closed");
        assert_eq!(
            line_with(LogFormat::Text, Level::Debug, "spout", args(), &fields),
            line(LogFormat::Text, Level::Debug, "spout", args())
        );
    }

    #[test]
    fn json_line_escapes_quotes_and_newlines() {
        let msg = "say \"hi\"\nline two\\ \u{0}\u{1b} é";
        let got = line(LogFormat::Json, Level::Trace, "t\"x", format_args!("{msg}"));
        assert!(got.ends_with("}\n"));
        assert_eq!(got.matches('\n').count(), 1, "{got}");
        let value: serde_json::Value = serde_json::from_str(got.trim_end()).unwrap();
        assert_eq!(value["time"], "2026-11-23T16:20:01.123Z");
        assert_eq!(value["level"], "TRACE");
        assert_eq!(value["target"], "t\"x");
        assert_eq!(value["message"], msg);
    }

    #[test]
    fn a_librarys_records_are_debug_detail_and_spouts_keep_their_level() {
        assert_eq!(level_of("spout::broker::redis", Level::Warn), Level::Warn);
        assert_eq!(level_of("spout", Level::Error), Level::Error);
        assert_eq!(
            level_of("redis::cluster_handling::async_connection", Level::Error),
            Level::Debug
        );
        assert_eq!(level_of("spoutnik", Level::Info), Level::Debug);
        assert_eq!(level_of("ureq", Level::Trace), Level::Trace);
    }

    #[test]
    fn enabled_respects_the_level_as_it_changes() {
        // The only test that touches log's global level.
        let logger = StderrLogger {
            format: LogFormat::Text,
        };
        let meta = |level| Metadata::builder().level(level).target("spout").build();
        set_level(LevelFilter::Warn);
        assert!(logger.enabled(&meta(Level::Error)));
        assert!(logger.enabled(&meta(Level::Warn)));
        assert!(!logger.enabled(&meta(Level::Info)));
        set_level(LevelFilter::Debug);
        assert!(logger.enabled(&meta(Level::Debug)));
        set_level(LevelFilter::Off);
        assert!(!logger.enabled(&meta(Level::Error)));
    }
}
