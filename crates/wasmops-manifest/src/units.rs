//! Sizes (`"64MiB"`) and durations (`"1.5s"`) in manifests: the shared
//! parsers of `wasmops-units`, with zero refused (no limit or timeout of
//! zero makes sense in an app).

use std::time::Duration;

pub use wasmops_units::{DURATION_UNITS, SIZE_UNITS};

/// A size greater than zero (see [`wasmops_units::parse_size`]).
pub fn parse_size(text: &str) -> Result<u64, String> {
    match wasmops_units::parse_size(text)? {
        0 => Err("the size must be greater than zero".to_string()),
        n => Ok(n),
    }
}

/// A duration greater than zero (see [`wasmops_units::parse_duration`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = wasmops_units::parse_duration(text)?;
    if d.is_zero() {
        return Err("the duration must be greater than zero".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1.5KB"), Ok(1500));
        assert_eq!(parse_size("1.5B"), Ok(1));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("5.MB"), Ok(5_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0.1B").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("64 megabytes").is_err());
        assert!(parse_size("64TiB").is_err());
        assert!(parse_size("0B").is_err());
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
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0.0000000001s").is_err());
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
