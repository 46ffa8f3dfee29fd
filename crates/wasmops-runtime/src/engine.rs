//! The engines of the process, tuned for many short-lived instances.
//!
//! - Two engines, alike but for one setting: components that use the
//!   component model's async ABI (WASIp3, Spin 3 interfaces) run on an
//!   engine with concurrency support; all others on one without it, which
//!   spares every instantiation and every call into the guest the
//!   bookkeeping of guest tasks (about a quarter of a Rust hello-world's
//!   instantiation, `bench/instantiate.sh`). A component is compiled for the
//!   engine without it first and moves to the other only when it needs to
//!   (see [`crate::load`]).
//! - Pooling allocation, after probing that its address space can be
//!   reserved; on-demand allocation otherwise (logged). A component that
//!   does not fit the pool's slots (a table larger than a slot's elements,
//!   a memory whose minimum exceeds a slot, several memories in one module)
//!   runs on a twin engine with on-demand allocation, under the same
//!   per-store limits (see [`crate::load`]).
//! - Copy-on-write memory images, and reset of the pages a guest dirtied by
//!   `memset`/copy instead of `madvise` up to `memory_keep_resident` bytes
//!   (the kernel's `PAGEMAP_SCAN` tells which pages are dirty), so a warm slot
//!   costs neither page faults nor TLB shootdowns on reuse.
//! - Beside the pooled engine without concurrency, a third one that
//!   initializes memories by copying their data segments instead of mapping
//!   an image, for components whose memories start with little data (at
//!   most [`COPY_INIT_MAX_DATA`]: Rust, C, Go programs; not the interpreters'
//!   snapshots). Their slots then hold nothing of any component, so any free
//!   slot serves any of them, the pool is sized by instances running at once
//!   and not by apps, and the slots in use stay in the CPU's caches
//!   (`bench/node.sh`: traffic spread over 1,000 apps, 0.55 of one app's
//!   requests/s with images, 0.69 copied).
//! - Epoch interruption, ticked every [`TICK`] by one thread, for deadlines
//!   and for yielding long computations back to the scheduler.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::ArtifactCache;

/// The epoch tick: deadlines are enforced to this granularity, and a guest
/// that computes without calling the host yields its thread this often.
pub const TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingChoice {
    /// Pooling when the address space can be reserved, on-demand otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub pooling: PoolingChoice,
    /// Component instances that may exist at once (the pool's size).
    pub max_instances: u32,
    /// Largest linear memory a single memory may reach.
    pub max_memory: u64,
    /// Bytes of each linear memory reset in place (not decommitted) when a
    /// pool slot is returned.
    pub memory_keep_resident: usize,
    /// The same for tables.
    pub table_keep_resident: usize,
    /// Linear-memory slots kept warm (with their memory image mapped) for
    /// reuse; at most [`EngineSettings::memory_slots`].
    pub warm_slots: u32,
    /// Where compiled artifacts are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            pooling: PoolingChoice::Auto,
            max_instances: 1000,
            max_memory: 128 << 20,
            memory_keep_resident: 8 << 20,
            table_keep_resident: 1 << 20,
            warm_slots: 100,
            cache_dir: ArtifactCache::default_dir(),
        }
    }
}

/// Linear memories reserved in the pool per component instance (Rust,
/// componentize-js and componentize-py programs have one). A component
/// needing more runs on demand (see [`crate::load`]), so that its instances
/// cannot take the slots of others.
pub(crate) const MEMORIES_PER_INSTANCE: u32 = 2;
/// Tables, likewise (those programs have two: their own and a shim's).
pub(crate) const TABLES_PER_INSTANCE: u32 = 4;
/// Core instances the pool allows per component instance (a count only).
const CORE_INSTANCES_PER_INSTANCE: u32 = 64;
/// Data-segment bytes up to which a component's memories are initialized by
/// copying rather than from a copy-on-write image. `bench/copy_threshold.sh`
/// (1,000 modules round-robin): copying wins up to 32 KiB and loses from 64
/// KiB, since it copies every byte on every instance and an image costs only
/// the pages touched. A Rust hello-world has 8 KiB, Spin SDK components
/// 15-41 KiB; componentize-js and componentize-py snapshots have megabytes.
pub(crate) const COPY_INIT_MAX_DATA: u64 = 32 << 10;

impl EngineSettings {
    /// Linear-memory slots in the pool: the most that can be kept warm.
    pub fn memory_slots(&self) -> u32 {
        self.max_instances
            .max(1)
            .saturating_mul(MEMORIES_PER_INSTANCE)
    }

    /// Settings for running a single command: no pool is reserved.
    pub fn for_command() -> Self {
        Self {
            pooling: PoolingChoice::Never,
            ..Self::default()
        }
    }
}

fn base_config(concurrent: bool, copy_init: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.concurrency_support(concurrent);
    c.wasm_component_model_async(concurrent);
    c.epoch_interruption(true);
    c.memory_init_cow(!copy_init);
    c.parallel_compilation(true);
    c
}

fn pooling_config(s: &EngineSettings, copy_init: bool) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::default();
    let n = s.max_instances.max(1);
    p.total_component_instances(n);
    // Components instantiate several core instances (the program, adapters,
    // shims): 3 for a Rust hello-world, 4 for componentize-js, 14 for
    // componentize-py, more when composed. In the pool a core instance is
    // only a count (its state is allocated on the heap), so the limit is
    // generous: at 4 per instance, 20 Python instances filled a pool sized
    // for 70 and requests failed with 500s while slots were free.
    p.total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_INSTANCE));
    p.total_memories(s.memory_slots());
    p.total_tables(n.saturating_mul(TABLES_PER_INSTANCE));
    p.total_stacks(n);
    p.max_memory_size(s.max_memory as usize);
    p.linear_memory_keep_resident(s.memory_keep_resident);
    p.table_keep_resident(s.table_keep_resident);
    // Off by default in wasmtime 48: without it the reset `memset`s the
    // whole accessible memory up to keep-resident (a hello-world's ~1 MiB,
    // a fifth of a request's CPU), not just the pages the guest wrote.
    p.pagemap_scan(wasmtime::Enabled::Auto);
    // wasmtime 48 splits the memory pool into one shard per core (at most
    // 16), each with its share of this number; a thread allocates from its
    // own shard first, so a slot is warm for a module only in the shard
    // where it last ran.
    //
    // Without images a slot keeps nothing of the module that ran in it:
    // affinity would only spread instances over more slots (more memory
    // resident, colder caches), so any free slot is taken.
    p.max_unused_warm_slots(if copy_init {
        0
    } else {
        s.warm_slots.min(s.memory_slots())
    });
    p
}

/// One engine with its linker and artifact fingerprint.
pub(crate) struct EngineSlot {
    pub(crate) engine: Engine,
    /// The host's linker, built once: adding every WASI, HTTP, key-value
    /// and config function costs more than linking a component to it, and
    /// a node links a component on every app load.
    linker: std::sync::OnceLock<Arc<wasmtime::component::Linker<crate::host::Host>>>,
    pub(crate) fingerprint: String,
    pooling: bool,
    concurrent: bool,
}

impl EngineSlot {
    /// The pooled engine without concurrency that copies data segments into
    /// memories (see the module's notes); `None` when its pool cannot be
    /// reserved or pooling is off (its components then use the sync engine).
    fn copied(settings: &EngineSettings) -> anyhow::Result<Option<Self>> {
        let mut c = base_config(false, true);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
            settings, true,
        )));
        let engine = match (settings.pooling, Engine::new(&c)) {
            (PoolingChoice::Never, _) => return Ok(None),
            (_, Ok(e)) => e,
            (PoolingChoice::Always, Err(e)) => return Err(e.into()),
            (PoolingChoice::Auto, Err(e)) => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "cannot reserve address space for the instance pool of components with little initial data; they use the pool of the others"
                );
                return Ok(None);
            }
        };
        let fingerprint = engine_fingerprint(&engine, false, true, true);
        Ok(Some(Self {
            engine,
            linker: std::sync::OnceLock::new(),
            fingerprint,
            pooling: true,
            concurrent: false,
        }))
    }

    /// An engine with on-demand allocation, for components that do not fit
    /// a pooled engine's slots; its fingerprint keeps its artifacts apart.
    fn on_demand(concurrent: bool) -> anyhow::Result<Self> {
        let engine = Engine::new(&base_config(concurrent, false))?;
        let fingerprint = engine_fingerprint(&engine, concurrent, false, false);
        Ok(Self {
            engine,
            linker: std::sync::OnceLock::new(),
            fingerprint,
            pooling: false,
            concurrent,
        })
    }

    fn new(settings: &EngineSettings, concurrent: bool) -> anyhow::Result<Self> {
        let pooled = || {
            let mut c = base_config(concurrent, false);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                settings, false,
            )));
            Engine::new(&c)
        };
        let (engine, pooling) = match settings.pooling {
            PoolingChoice::Never => (Engine::new(&base_config(concurrent, false))?, false),
            PoolingChoice::Always => (pooled()?, true),
            PoolingChoice::Auto => match pooled() {
                Ok(e) => (e, true),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "cannot reserve address space for the pooling allocator; falling back to on-demand allocation (slower instantiation)"
                    );
                    (Engine::new(&base_config(concurrent, false))?, false)
                }
            },
        };
        let fingerprint = engine_fingerprint(&engine, concurrent, pooling, false);
        Ok(Self {
            engine,
            linker: std::sync::OnceLock::new(),
            fingerprint,
            pooling,
            concurrent,
        })
    }

    fn linker(&self) -> anyhow::Result<Arc<wasmtime::component::Linker<crate::host::Host>>> {
        if let Some(l) = self.linker.get() {
            return Ok(l.clone());
        }
        let l = Arc::new(crate::host::linker(&self.engine, self.concurrent)?);
        Ok(self.linker.get_or_init(|| l).clone())
    }
}

/// The process's runtime: the engines, the artifact cache and the epoch
/// ticker.
pub struct Runtime {
    /// With concurrency support: components using the async ABI, and core
    /// modules.
    pub(crate) concurrent: EngineSlot,
    /// Without: every other component.
    pub(crate) sync: EngineSlot,
    /// Without, pooled, memories initialized by copying: components whose
    /// memories start with at most [`COPY_INIT_MAX_DATA`] bytes of data
    /// (present when `sync` pools its instances).
    pub(crate) copied: Option<EngineSlot>,
    /// When the two above pool their instances: twins with on-demand
    /// allocation (sync, concurrent), for components too large for a slot.
    pub(crate) on_demand: Option<(EngineSlot, EngineSlot)>,
    pub(crate) cache: Option<ArtifactCache>,
    /// Set once the cache's file system refused an executable mapping
    /// (mounted `noexec`): artifacts are read into memory from then on.
    pub(crate) map_refused: std::sync::atomic::AtomicBool,
    /// Whether "too many files open, reading" was said.
    pub(crate) crowded_said: std::sync::atomic::AtomicBool,
    settings: EngineSettings,
    ticker: Option<EpochTicker>,
}

impl Runtime {
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let concurrent = EngineSlot::new(&settings, true)?;
        let sync = EngineSlot::new(&settings, false)?;
        let copied = if sync.pooling {
            EngineSlot::copied(&settings)?
        } else {
            None
        };
        let cache = match &settings.cache_dir {
            Some(dir) => match ArtifactCache::open(dir) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "artifact cache disabled: cannot create its directory");
                    None
                }
            },
            None => None,
        };
        let on_demand = if concurrent.pooling || sync.pooling {
            Some((EngineSlot::on_demand(false)?, EngineSlot::on_demand(true)?))
        } else {
            None
        };
        let mut engines = vec![concurrent.engine.clone(), sync.engine.clone()];
        engines.extend(copied.iter().map(|c| c.engine.clone()));
        if let Some((s, c)) = &on_demand {
            engines.extend([s.engine.clone(), c.engine.clone()]);
        }
        let ticker = Some(EpochTicker::spawn(engines));
        Ok(Self {
            concurrent,
            sync,
            copied,
            on_demand,
            cache,
            map_refused: Default::default(),
            crowded_said: Default::default(),
            settings,
            ticker,
        })
    }

    /// The engine core modules (preview1 programs) are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.concurrent.engine
    }

    /// The linker with everything the host provides to components compiled
    /// for `engine` (one of this runtime's), made on first use.
    pub fn linker_for(
        &self,
        engine: &Engine,
    ) -> anyhow::Result<Arc<wasmtime::component::Linker<crate::host::Host>>> {
        self.slot_for(engine).linker()
    }

    /// The slot of `engine` (one of this runtime's).
    pub(crate) fn slot_for(&self, engine: &Engine) -> &EngineSlot {
        self.slots()
            .find(|slot| Engine::same(engine, &slot.engine))
            .unwrap_or(&self.concurrent)
    }

    /// The linker for `component`: its engine's, with stand-ins for the
    /// Spin interfaces it imports that the host does not implement
    /// ([`crate::standin`]), and the names of those interfaces.
    pub fn linker_for_component(
        &self,
        component: &wasmtime::component::Component,
    ) -> anyhow::Result<(
        Arc<wasmtime::component::Linker<crate::host::Host>>,
        Vec<String>,
    )> {
        let engine = component.engine();
        let base = self.linker_for(engine)?;
        let names = crate::world::stand_in_imports(component, engine);
        let linker = crate::standin::linker_with_stand_ins(&base, engine, component, &names)?;
        Ok((linker, names))
    }

    /// Links `component` for instantiation (with the stand-ins it needs,
    /// which are then logged), or says which imports the host lacks.
    pub fn link(
        &self,
        component: &wasmtime::component::Component,
    ) -> Result<wasmtime::component::InstancePre<crate::host::Host>, crate::world::WorldError> {
        use crate::world::WorldError;
        let (linker, stand_ins) = self
            .linker_for_component(component)
            .map_err(|e| WorldError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| WorldError::from_link(component, component.engine(), &e))?;
        crate::standin::warn_stand_ins(&stand_ins);
        Ok(pre)
    }

    /// Every engine of this runtime.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &EngineSlot> {
        [&self.sync, &self.concurrent]
            .into_iter()
            .chain(&self.copied)
            .chain(self.on_demand.iter().flat_map(|(s, c)| [s, c]))
    }

    /// Whether instances come from a pool (both engines' pools were
    /// reserved).
    pub fn pooling(&self) -> bool {
        self.concurrent.pooling && self.sync.pooling
    }

    /// Whether pool slots are reset page by page, only where the guest
    /// wrote (Linux 6.7+ `PAGEMAP_SCAN`), rather than in whole.
    pub fn dirty_page_reset(&self) -> bool {
        self.pooling() && PoolingAllocationConfig::is_pagemap_scan_available()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_ref()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

/// A short hex string that changes whenever compiled code from this engine
/// would differ: wasmtime's own compatibility hash, which of the runtime's
/// engines it is, and this crate's version.
fn engine_fingerprint(engine: &Engine, concurrent: bool, pooled: bool, copy_init: bool) -> String {
    use std::hash::{Hash, Hasher};
    struct B3(blake3::Hasher);
    impl Hasher for B3 {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = B3(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(if concurrent { b"concurrent" } else { b"sync" });
    // An on-demand twin's artifacts are kept apart from the pooled
    // engine's, so that a component too large for the pool is found there.
    if !pooled {
        h.0.update(b"on-demand");
    }
    // Compiled for copying data segments: no memory image in the artifact.
    if copy_init {
        h.0.update(b"copy-init");
    }
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.0.finalize().to_hex()[..16].to_string()
}

/// Increments the engines' epochs every [`TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn spawn(engines: Vec<Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmops-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    for e in &engines {
                        e.increment_epoch();
                    }
                }
            })
            .expect("cannot spawn the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
