//! A fast JSON writer for the per-request access log (target
//! `wasmops::access`): installed as the access-log sink, it writes each
//! record's fields straight into the log buffer, without `tracing`'s
//! per-event machinery. Same shape as the other JSON lines: `timestamp`,
//! `level`, `target`, `message`, then the fields.

use std::fmt::Write as _;
use std::io::Write as _;

use wasmops_telemetry::access::{AccessLog, AccessRecord};

pub use wasmops_telemetry::access::TARGET;

pub struct AccessJson {
    writer: crate::logwriter::LogWriter,
}

impl AccessJson {
    pub fn new(writer: crate::logwriter::LogWriter) -> Self {
        Self { writer }
    }
}

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

pub(crate) use wasmops_units::write_rfc3339;

/// Appends a duration in milliseconds with three decimals (to the µs), by
/// integer arithmetic.
fn push_ms_3(out: &mut String, d: std::time::Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    push_u64(out, micros / 1000);
    let frac = micros % 1000;
    out.push('.');
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

/// Appends a string field: `,"key":"value"`.
fn field_str(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    escape_into(out, value);
    out.push('"');
}

/// Writes one access line for `r` into `line` (cleared first).
fn format_line(line: &mut String, r: &AccessRecord<'_>) {
    line.clear();
    line.push_str("{\"timestamp\":\"");
    timestamp(line);
    line.push_str("\",\"level\":\"INFO\",\"target\":\"");
    line.push_str(TARGET);
    line.push_str("\",\"message\":\"request\"");
    field_str(line, "method", r.method);
    field_str(line, "path", r.path);
    line.push_str(",\"status\":");
    push_u64(line, u64::from(r.status));
    line.push_str(",\"duration_ms\":");
    push_ms_3(line, r.duration);
    field_str(line, "app", r.app);
    field_str(line, "component", r.component);
    field_str(line, "request_id", r.request_id);
    line.push_str(",\"trace_id\":\"");
    if let Some(id) = &r.trace_id {
        wasmops_telemetry::trace::push_hex(line, id);
    }
    line.push('"');
    if r.aborted {
        line.push_str(",\"aborted\":true");
    }
    line.push_str("}\n");
}

impl AccessLog for AccessJson {
    fn record(&self, r: &AccessRecord<'_>) {
        thread_local! {
            static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            format_line(&mut line, r);
            let _ = self.writer.guard(false).write_all(line.as_bytes());
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
        for (micros, text) in [
            (0, "0.000"),
            (1235, "1.235"),
            (999, "0.999"),
            (2_500_000, "2500.000"),
        ] {
            let mut o = String::new();
            push_ms_3(&mut o, std::time::Duration::from_micros(micros));
            assert_eq!(o, text);
        }
        let mut o = String::new();
        push_ms_3(&mut o, std::time::Duration::from_nanos(1_999));
        assert_eq!(o, "0.001");
        let mut out = String::new();
        escape_into(&mut out, "é\"x\u{2}");
        assert_eq!(out, r#"é\"x\u0002"#);
        // Timestamps of one second share the cached prefix and stay valid.
        let (mut a, mut b) = (String::new(), String::new());
        timestamp(&mut a);
        timestamp(&mut b);
        assert_eq!(a.len(), b.len());
        assert_eq!(&a[..17], &b[..17]);
    }

    #[test]
    fn access_lines_are_json_with_every_field() {
        let mut line = String::new();
        let r = AccessRecord {
            method: "GET",
            path: "/a \"b\"\n",
            status: 503,
            duration: std::time::Duration::from_micros(1234),
            app: "shop",
            component: "cart",
            request_id: "r-1",
            trace_id: Some([0xab; 16]),
            aborted: false,
        };
        format_line(&mut line, &r);
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["message"], "request");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a \"b\"\n");
        assert_eq!(v["status"], 503);
        assert_eq!(v["duration_ms"], 1.234);
        assert_eq!(v["app"], "shop");
        assert_eq!(v["component"], "cart");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["trace_id"], "ab".repeat(16));
        format_line(
            &mut line,
            &AccessRecord {
                trace_id: None,
                ..r
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["trace_id"], "");
        assert!(v.get("aborted").is_none());
        format_line(&mut line, &AccessRecord { aborted: true, ..r });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["aborted"], true);
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#"a\"b\\c\nd\u0001"#);
    }
}
