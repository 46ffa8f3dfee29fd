//! The process-wide memory budget: while an instance runs, its memory
//! limit is reserved out of one budget shared by every handler of the
//! process, so the sum of the limits of the instances running at once
//! never exceeds it. A request that finds the budget in use waits (in
//! arrival order) until its deadline.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The budget is counted in units of this many bytes.
const UNIT: u64 = 1 << 20;

/// A budget of memory shared by the instances of one process.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// A share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to whole MiB, at least one).
    pub fn new(bytes: u64) -> Arc<Self> {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        })
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Bytes reserved by running instances now.
    pub fn in_use(&self) -> u64 {
        (u64::from(self.units) - self.permits.available_permits() as u64) * UNIT
    }

    fn units_for(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, u64::from(self.units)) as u32
    }

    /// Reserves `bytes` (capped at the whole budget), waiting until
    /// `deadline` at most; `None` if the budget did not free up in time.
    pub async fn reserve(&self, bytes: u64, deadline: tokio::time::Instant) -> Option<Reservation> {
        let n = self.units_for(bytes);
        if let Ok(p) = self.permits.clone().try_acquire_many_owned(n) {
            return Some(Reservation(p));
        }
        match tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Some(Reservation(p)),
            _ => None,
        }
    }
}

/// The default budget: three quarters of the memory this process may use,
/// the smaller of the machine's memory and its cgroup's limit (as in a
/// container), or `None` when neither can be read.
pub fn default_budget() -> Option<u64> {
    let total = machine_memory();
    let cgroup = cgroup_limit();
    let m = match (total, cgroup) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(m / 4 * 3)
}

fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup (v2, then v1), if any.
fn cgroup_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(str::to_string)
        })
        .and_then(|rel| {
            std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", rel.trim_end())).ok()
        })
        .or_else(|| std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok());
    if let Some(v) = v2 {
        return v.trim().parse().ok();
    }
    let v1 = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok()?;
    // v1 says "no limit" with a huge number.
    v1.trim().parse().ok().filter(|&b: &u64| b < (1 << 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_the_budget_and_give_it_back() {
        let b = MemoryBudget::new(100 << 20);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let r1 = b.reserve(60 << 20, soon()).await.expect("fits");
        assert_eq!(b.in_use(), 60 << 20);
        assert!(b.reserve(60 << 20, soon()).await.is_none(), "over budget");
        drop(r1);
        let r2 = b.reserve(60 << 20, soon()).await.expect("freed");
        // A limit larger than the whole budget takes all of it.
        assert!(b.reserve(1 << 40, soon()).await.is_none());
        drop(r2);
        let _all = b.reserve(1 << 40, soon()).await.expect("whole budget");
        assert_eq!(b.in_use(), b.bytes());
    }

    #[test]
    fn the_default_comes_from_the_machine() {
        let d = default_budget().expect("readable on Linux");
        assert!(d > 0 && d < machine_memory().unwrap());
    }
}
