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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

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
