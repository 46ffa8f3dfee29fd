//! Sizes (`"64MiB"`) and durations (`"1.5s"`), parsed the same way for
//! command-line flags, app manifests and scan policies. Exact decimal
//! arithmetic: `"1.5GiB"` is 1610612736 bytes, not a float's rounding.

use std::time::Duration;

/// The units accepted in sizes, for messages.
pub const SIZE_UNITS: &str = "B, KiB, MiB, GiB, KB, MB, GB";
/// The units accepted in durations, for messages.
pub const DURATION_UNITS: &str = "us, ms, s, m, h";

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
