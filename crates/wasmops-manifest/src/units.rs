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

    // The grammar is `wasmops-units`' (and tested there); the manifest adds
    // only the refusal of zero.
    #[test]
    fn zero_is_refused() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0.1B").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0.0000000001s").is_err());
        assert!(parse_duration("10").is_err());
    }
}
