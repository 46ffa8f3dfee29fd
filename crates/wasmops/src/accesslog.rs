//! A fast JSON formatter for the per-request access log (target
//! `wasmops::access`): the fields are written straight into the log buffer,
//! without the general formatter's per-event machinery. Same shape as the
//! other JSON lines: `timestamp`, `level`, `target`, `message`, then fields.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

pub const TARGET: &str = "wasmops::access";

pub struct AccessJson {
    writer: crate::logwriter::LogWriter,
}

impl AccessJson {
    pub fn new(writer: crate::logwriter::LogWriter) -> Self {
        Self { writer }
    }
}

struct Json<'a>(&'a mut String);

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Visit for Json<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, ",\"{}\":", field.name());
        escape(self.0, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.0, ",\"{}\":{value}", field.name());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.0, ",\"{}\":{value}", field.name());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            let _ = write!(self.0, ",\"{}\":{value}", field.name());
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = write!(self.0, ",\"{}\":{value}", field.name());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        let _ = write!(self.0, ",\"{}\":", field.name());
        escape(self.0, &s);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for now.
fn timestamp(out: &mut String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    write_rfc3339(out, now, true);
}

/// Writes a time since the Unix epoch as RFC 3339 UTC, with microseconds
/// when `micros`.
pub(crate) fn write_rfc3339(out: &mut String, now: std::time::Duration, micros: bool) {
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    );
    let _ = if micros {
        write!(out, ".{:06}Z", now.subsec_micros())
    } else {
        write!(out, "Z")
    };
}

impl<S: tracing::Subscriber> Layer<S> for AccessJson {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        thread_local! {
            static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            line.push_str("{\"timestamp\":\"");
            timestamp(&mut line);
            let _ = write!(
                line,
                "\",\"level\":\"{}\",\"target\":\"{TARGET}\"",
                event.metadata().level()
            );
            event.record(&mut Json(&mut line));
            line.push_str("}\n");
            let mut w = self.writer.guard(false);
            let _ = w.write_all(line.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let mut s = String::new();
        timestamp(&mut s);
        assert_eq!(s.len(), 27, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
        let year: i32 = s[..4].parse().unwrap();
        assert!(year >= 2024);
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        escape(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }
}
