//! Sizes (`"64MiB"`) and durations (`"1.5s"`), parsed the same way for
//! command-line flags, app manifests and scan policies. Exact decimal
//! arithmetic: `"1.5GiB"` is 1610612736 bytes, not a float's rounding.

use std::time::Duration;

pub mod outbound;

/// Writes a time since the Unix epoch as RFC 3339 UTC, with microseconds
/// when `micros`.
pub fn write_rfc3339(out: &mut String, now: std::time::Duration, micros: bool) {
    use std::fmt::Write as _;
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

/// The time since the Unix epoch as RFC 3339 UTC, to the second.
pub fn rfc3339(since_epoch: std::time::Duration) -> String {
    let mut s = String::with_capacity(20);
    write_rfc3339(&mut s, since_epoch, false);
    s
}

/// The units accepted in sizes, for messages.
pub const SIZE_UNITS: &str = "B, KiB, MiB, GiB, KB, MB, GB";
/// The units accepted in durations, for messages.
pub const DURATION_UNITS: &str = "us, ms, s, m, h";

/// The smallest memory limit of an instance: one WebAssembly page.
pub const MIN_MEMORY: u64 = 64 << 10;

/// Checks a memory limit: at least one WebAssembly page. The manifest and
/// the flags both ask this, so they accept the same limits.
/// A duration in milliseconds, to the microsecond (`0.869`, not
/// `0.8690000000000001`), for logs and reports.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A DNS label, as app, fleet and Kubernetes object names are: lowercase
/// letters, digits and `-`, starting with a letter, at most 63 characters.
pub fn dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub fn check_memory(bytes: u64) -> Result<u64, String> {
    if bytes == 0 {
        Err("must be greater than zero".to_string())
    } else if bytes < MIN_MEMORY {
        Err(format!(
            "{bytes} bytes is less than one WebAssembly page (64KiB)"
        ))
    } else {
        Ok(bytes)
    }
}

/// Parses a size that must not be zero.
pub fn parse_nonzero_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("must be greater than zero".to_string()),
        n => Ok(n),
    }
}

/// Parses a duration that must not be zero.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

/// Parses a size such as `"64MiB"`, `"1.5GB"`, `"512 KiB"` or `"1024"` (bytes)
/// into a number of bytes (fractions of a byte are dropped). Units are `B`,
/// `KiB`, `MiB`, `GiB` and the single letters `K`, `M`, `G` (powers of 1024),
/// and `KB`, `MB`, `GB` (powers of 1000), in any case.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("unknown size unit `{}`", unit.escape_debug())),
    };
    let bytes = number.scaled(multiplier).ok_or("the size is too large")?;
    u64::try_from(bytes).map_err(|_| "the size is too large".to_string())
}

/// Parses a duration such as `"250ms"`, `"1.5s"`, `"2m"`, `"1h"` or
/// `"100us"`. A unit is required.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let nanos_per_unit: u128 = match unit {
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err("the duration has no unit".to_string()),
        _ => return Err(format!("unknown duration unit `{}`", unit.escape_debug())),
    };
    let nanos = number
        .scaled(nanos_per_unit)
        .ok_or("the duration is too long")?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| "the duration is too long")?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// A decimal number: `mantissa / 10^scale`.
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    /// `self * multiplier`, rounded down, or `None` on overflow.
    fn scaled(&self, multiplier: u128) -> Option<u128> {
        let product = self.mantissa.checked_mul(multiplier)?;
        Some(product / 10u128.checked_pow(self.scale)?)
    }
}

/// Splits `"1.5 MiB"` into the number and the unit.
fn split_number(text: &str) -> Result<(Decimal, &str), String> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..end], text[end..].trim());
    if number.is_empty() {
        return Err(if text.starts_with('-') {
            "the value must be greater than zero".to_string()
        } else {
            "it does not start with a number".to_string()
        });
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return Err(format!("`{number}` is not a number"));
    }
    let mut mantissa: u128 = 0;
    for d in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
            .ok_or("the number is too large")?;
    }
    let scale = u32::try_from(frac.len()).map_err(|_| "the number is too long")?;
    if scale > 30 {
        return Err("the number has too many decimals".to_string());
    }
    Ok((Decimal { mantissa, scale }, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1.5KB"), Ok(1500));
        assert_eq!(parse_size("1.5B"), Ok(1));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("5.MB"), Ok(5_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("64 megabytes").is_err());
        assert!(parse_size("64TiB").is_err());
        assert!(parse_size("1.2.3MB").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size(&"9".repeat(100)).is_err());
        assert!(parse_size(&format!("1.{}", "0".repeat(100))).is_err());
        assert!(parse_size("१२MiB").is_err()); // non-ASCII digits
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 seconds").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration(&format!("{}h", "9".repeat(40))).is_err());
        assert_eq!(
            parse_duration("5124095576030431h").map(|d| d.as_secs()),
            Ok(5124095576030431 * 3600)
        );
    }
}
