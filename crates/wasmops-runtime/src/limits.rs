//! Per-instance resource limits.

use std::time::Duration;

/// Limits applied to every instance of a component.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of linear memory for the whole instance, all memories counted.
    pub max_memory: u64,
    /// Wall-clock time an instance may run (a request, or a command).
    pub timeout: Option<Duration>,
    /// Table elements per instance, all tables counted.
    pub max_table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: 128 << 20,
            timeout: None,
            max_table_elements: 1 << 20,
        }
    }
}

/// A [`wasmtime::ResourceLimiter`] that counts all memories of a store
/// together, so an instance cannot escape its budget by declaring several.
#[derive(Debug)]
pub struct Limiter {
    max_memory: u64,
    max_table_elements: usize,
    memory_in_use: u64,
    /// Highest total linear memory seen.
    pub memory_high_water: u64,
    /// Set when a growth was refused because of the memory limit.
    pub memory_limit_hit: bool,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            memory_in_use: 0,
            memory_high_water: 0,
            memory_limit_hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired - current) as u64;
        let total = self.memory_in_use.saturating_add(grow);
        if total > self.max_memory {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        self.memory_in_use = total;
        self.memory_high_water = self.memory_high_water.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        // Components instantiate several core instances (adapters, shims).
        10_000
    }

    fn memories(&self) -> usize {
        10_000
    }

    fn tables(&self) -> usize {
        10_000
    }
}

/// Parses sizes like `64MiB`, `512K`, `1G`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size `{s}`: expected a number with an optional unit such as 64MiB")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{s}`: use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

/// Parses durations like `500ms`, `30s`, `2m`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: expected e.g. 500ms, 30s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "us" | "µs" => n / 1_000_000.0,
        other => {
            return Err(format!(
                "invalid duration unit `{other}` in `{s}`: use ms, s, m or h"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn limiter_counts_all_memories_together() {
        let mut l = Limiter::new(&Limits {
            max_memory: 10 << 16,
            ..Default::default()
        });
        assert!(l.memory_growing(0, 6 << 16, None).unwrap());
        // A second memory of the same instance: 6 + 5 > 10 pages.
        assert!(!l.memory_growing(0, 5 << 16, None).unwrap());
        assert!(l.memory_limit_hit);
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert_eq!(l.memory_high_water, 10 << 16);
    }
}
