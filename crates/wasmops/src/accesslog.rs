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

fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Appends `s` JSON-escaped (without quotes): clean runs are copied whole.
fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// A `fmt::Write` that escapes as it goes, so `Display` values need no
/// temporary string.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

fn key(out: &mut String, field: &Field) {
    out.push_str(",\"");
    out.push_str(field.name());
    out.push_str("\":");
}

/// Appends an unsigned integer in decimal.
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

/// Appends a finite number with three decimals (durations in ms to the µs),
/// by integer arithmetic.
fn push_f64_3(out: &mut String, value: f64) {
    let thousandths = (value.abs() * 1000.0).round();
    if thousandths >= 1e18 {
        let _ = write!(out, "{value}");
        return;
    }
    let t = thousandths as u64;
    if value < 0.0 && t != 0 {
        out.push('-');
    }
    push_u64(out, t / 1000);
    let frac = t % 1000;
    out.push('.');
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

impl Visit for Json<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        key(self.0, field);
        escape(self.0, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        key(self.0, field);
        push_u64(self.0, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        key(self.0, field);
        if value < 0 {
            self.0.push('-');
        }
        push_u64(self.0, value.unsigned_abs());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if !value.is_finite() {
            return;
        }
        key(self.0, field);
        push_f64_3(self.0, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        key(self.0, field);
        self.0.push_str(if value { "true" } else { "false" });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        key(self.0, field);
        self.0.push('"');
        let _ = write!(Escaping(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for now; the part up to the seconds is
/// formatted once per second and thread.
fn timestamp(out: &mut String) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now.as_secs() {
            c.1.clear();
            write_rfc3339(
                &mut c.1,
                std::time::Duration::from_secs(now.as_secs()),
                false,
            );
            c.1.pop(); // the `Z`
            c.0 = now.as_secs();
        }
        out.push_str(&c.1);
    });
    let micros = now.subsec_micros();
    out.push('.');
    let mut digits = [b'0'; 6];
    let mut v = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push('Z');
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
    fn numbers_and_display_values() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        s.push(' ');
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, "0 18446744073709551615");
        for (v, text) in [
            (0.0, "0.000"),
            (1.23456, "1.235"),
            (-0.0004, "0.000"),
            (-2.5, "-2.500"),
            (1e3, "1000.000"),
        ] {
            let mut o = String::new();
            push_f64_3(&mut o, v);
            assert_eq!(o, text);
        }
        let mut out = String::new();
        let _ = Escaping(&mut out).write_str("é\"x\u{2}");
        assert_eq!(out, r#"é\"x\u0002"#);
        // Timestamps of one second share the cached prefix and stay valid.
        let (mut a, mut b) = (String::new(), String::new());
        timestamp(&mut a);
        timestamp(&mut b);
        assert_eq!(a.len(), b.len());
        assert_eq!(&a[..17], &b[..17]);
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        escape(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }
}
