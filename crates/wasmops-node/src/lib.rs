//! The node: one long-running process that hosts many apps. Each app is
//! deployed under a name and reached by host name and/or path prefix. An
//! app is a single component or an app bundle (a `wasmops.toml` with its
//! components and files, served by the same app host as `wasmops up`:
//! routes, variables, key-value stores, files, outbound hosts). Its
//! components are compiled when deployed (into the artifact cache), loaded
//! on its first request (the cached code is deserialized), kept while used
//! and unloaded when idle, when too many apps are loaded, or when the
//! loaded apps' code would exceed its budget (least recently used first). The instance pool and the memory budget are the process's, sized
//! by concurrent requests, not by apps; every app has its own concurrency
//! limit and queue, so one app's flood does not starve the others.
//!
//! Desired state lives in `state` (SQLite and blobs in the data directory);
//! the admin API (`api`) changes it, authenticated by `auth` tokens.

pub mod api;
pub mod appsdir;
pub mod auth;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use wasmops_app::{AppHost, ManifestOptions, Observe, RouteSpec, Served, Source};
use wasmops_runtime::budget::MemoryBudget;
use wasmops_runtime::http::{Body, Failure, HttpSettings};
use wasmops_runtime::{Grants, Limits, Runtime};
use wasmops_server::router::Router;
use wasmops_telemetry::Metrics;

use crate::state::{AppSpec, State, Version};

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Unload an app when it served nothing for this long.
    pub idle_unload: Duration,
    /// Apps loaded at once, at most; the least recently used is unloaded.
    pub max_loaded: usize,
    /// Compiled code of the loaded apps, in bytes, at most; beyond, the
    /// least recently used are unloaded.
    pub max_loaded_code: u64,
    /// Defaults of an app that does not set its own.
    pub app_defaults: AppDefaults,
    /// Requests waiting for an instance, per app; beyond, 503.
    pub max_queue: usize,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub debug_errors: bool,
    /// Where references may come from and what they must carry.
    pub policy: wasmops_oci::resolve::SourcePolicy,
    /// Largest component accepted by upload.
    pub max_upload: u64,
}

/// Limits of an app that does not set its own.
#[derive(Debug, Clone)]
pub struct AppDefaults {
    pub memory: u64,
    pub timeout: Duration,
    pub concurrency: usize,
}

/// What a deployed version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One `wasi:http` component, served on every path of its routes.
    Component,
    /// An app bundle: a `wasmops.toml` with its components and files.
    App,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Component => "component",
            Kind::App => "app",
        }
    }
}

/// A request an app is answering (until its response head is ready, or
/// the request is dropped); its end counts as a use.
struct Answering<'a> {
    node: &'a Node,
    slot: &'a AppSlot,
}

impl<'a> Answering<'a> {
    fn new(node: &'a Node, slot: &'a AppSlot) -> Self {
        slot.active.fetch_add(1, Ordering::Relaxed);
        Self { node, slot }
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.slot
            .last_used
            .store(self.node.now_ms(), Ordering::Relaxed);
        self.slot.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A deployed app as the serving path sees it.
pub(crate) struct AppSlot {
    pub(crate) name: String,
    pub(crate) version: Version,
    pub(crate) kind: Kind,
    host: Mutex<Option<Arc<AppHost>>>,
    /// Serializes loading, so simultaneous first requests load once.
    load_lock: tokio::sync::Mutex<()>,
    /// Milliseconds since the node started, at the last request's start
    /// or end.
    last_used: AtomicU64,
    /// Requests it is answering now: an app is not idle while it answers.
    active: AtomicU64,
    /// Requests the app has been asked since the node started, over all
    /// its versions (a deploy or rollback hands the counter on).
    pub(crate) requests: Arc<AtomicU64>,
    /// This version's last failure to compile or load, or its guest's last
    /// failure kept when it was unloaded (a loaded host keeps its own).
    last_error: Mutex<Option<Failure>>,
    /// The `(component, route)` labels of the series its loads made (an
    /// app never asked for costs no series); removed when it is deleted.
    series: Mutex<HashSet<(String, String)>>,
    /// Compiled code mapped while it is loaded.
    code_bytes: AtomicU64,
    /// The node's totals, kept as the slot loads and unloads (and when it
    /// is dropped loaded, replaced by a new version).
    totals: Arc<LoadedTotals>,
}

/// Apps loaded and their compiled code, counted as they change so that a
/// load checks the bounds without walking 10,000 slots.
#[derive(Default)]
pub(crate) struct LoadedTotals {
    pub(crate) apps: AtomicUsize,
    code: AtomicU64,
}

impl Drop for AppSlot {
    fn drop(&mut self) {
        self.unload();
    }
}

impl AppSlot {
    fn loaded(&self) -> Option<Arc<AppHost>> {
        self.host.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn unload(&self) -> bool {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        let gone = host.take();
        let was = gone.is_some();
        if let Some(f) = gone.and_then(|h| h.last_failure()) {
            self.note_error(f);
        }
        if was {
            self.totals.apps.fetch_sub(1, Ordering::Relaxed);
            self.totals
                .code
                .fetch_sub(self.code_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        was
    }

    /// Keeps a failure as the version's last error unless a later one is
    /// kept already.
    fn note_error(&self, f: Failure) {
        let mut e = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if e.as_ref().is_none_or(|old| old.at <= f.at) {
            *e = Some(f);
        }
    }

    /// Notes a failure to compile or load the version, now.
    fn note_load_error(&self, message: String) {
        self.note_error(Failure {
            at: std::time::SystemTime::now(),
            message,
        });
    }

    /// The version's last error: a failure to load it, or its guest's last
    /// trap, timeout or memory limit, whichever came later.
    pub(crate) fn last_error(&self) -> Option<Failure> {
        let kept = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let live = self.loaded().and_then(|h| h.last_failure());
        match (kept, live) {
            (Some(k), Some(l)) => Some(if l.at >= k.at { l } else { k }),
            (k, l) => k.or(l),
        }
    }

    fn set_loaded(&self, new: Arc<AppHost>) {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(new.metric_series());
        let code = new.code_bytes() as u64;
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if host.replace(new).is_some() {
            self.totals
                .code
                .fetch_sub(self.code_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        } else {
            self.totals.apps.fetch_add(1, Ordering::Relaxed);
        }
        self.code_bytes.store(code, Ordering::Relaxed);
        self.totals.code.fetch_add(code, Ordering::Relaxed);
    }
}

/// The routing table: rebuilt whole on every change (changes are rare),
/// read with one `Arc` clone per request.
#[derive(Default)]
pub(crate) struct Table {
    router: Router<usize>,
    pub(crate) apps: Vec<Arc<AppSlot>>,
}

impl Table {
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<AppSlot>> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// Why a deploy (or another change) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    Bad(String),
    /// What was deployed cannot run (422).
    #[error("{0}")]
    Unusable(String),
    /// It clashes with the state (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The reference could not be pulled or verified (424 for an
    /// upstream failure, 403 for a refused signature).
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Internal(String),
}

impl From<state::StateError> for ChangeError {
    fn from(e: state::StateError) -> Self {
        match e {
            state::StateError::NoApp(_) | state::StateError::NoVersion { .. } => {
                ChangeError::NotFound(e.to_string())
            }
            state::StateError::NoEarlier(_) => ChangeError::Conflict(e.to_string()),
            _ => ChangeError::Internal(e.to_string()),
        }
    }
}

/// Counters of the node itself.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub loads: AtomicU64,
    pub unloads: AtomicU64,
    pub deploys: AtomicU64,
    pub deploys_refused: AtomicU64,
    pub load_nanos: AtomicU64,
}

/// The node.
pub struct Node {
    rt: Arc<Runtime>,
    pub(crate) state: State,
    table: RwLock<Arc<Table>>,
    pub(crate) loaded: Arc<LoadedTotals>,
    pub(crate) metrics: Arc<Metrics>,
    metrics_on: bool,
    pub(crate) config: NodeConfig,
    budget: Arc<MemoryBudget>,
    /// Apps with a deploy, rollback or delete under way.
    changing: Mutex<HashSet<String>>,
    /// Held from the route check of a change until its table is in place.
    /// Every change builds the new table from the current one: two changes
    /// to different apps at once would otherwise each drop the other's app
    /// (and a host both claim would pass both checks).
    table_change: Mutex<()>,
    started: Instant,
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) stats: NodeStats,
    /// Whether an apps directory is followed, and its last convergence.
    pub(crate) follows_apps_dir: AtomicBool,
    /// The data directory as given and as resolved, longest first: what
    /// [`Node::scrub`] takes out of messages.
    data_dir_names: Vec<String>,
    pub(crate) apps_dir: Mutex<Option<appsdir::Report>>,
}

/// Valid app names: lowercase letters, digits and `-`, starting with a
/// letter, at most 63 characters (a DNS label).
pub fn valid_name(name: &str) -> bool {
    wasmops_units::dns_label(name)
}

impl Node {
    /// Opens the node's state in the data directory and builds the routing
    /// table of the apps it holds (loaded lazily).
    pub fn open(
        rt: Arc<Runtime>,
        config: NodeConfig,
        budget: Arc<MemoryBudget>,
        metrics: Arc<Metrics>,
        metrics_on: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let state = State::open(&config.data_dir)?;
        let mut data_dir_names = vec![config.data_dir.display().to_string()];
        if let Ok(abs) = std::fs::canonicalize(&config.data_dir) {
            data_dir_names.push(abs.display().to_string());
        }
        data_dir_names.retain(|r| !r.is_empty());
        data_dir_names.sort_by_key(|r| std::cmp::Reverse(r.len()));
        data_dir_names.dedup();
        let node = Arc::new(Self {
            rt,
            state,
            table: RwLock::new(Arc::new(Table::default())),
            loaded: Default::default(),
            metrics,
            metrics_on,
            config,
            budget,
            changing: Mutex::new(HashSet::new()),
            table_change: Mutex::new(()),
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(false)),
            stats: NodeStats::default(),
            follows_apps_dir: AtomicBool::new(false),
            data_dir_names,
            apps_dir: Mutex::new(None),
        });
        let apps = node.state.apps()?;
        let mut slots = Vec::with_capacity(apps.len());
        for a in apps {
            let kind = node.kind(&a.current.digest);
            slots.push(node.slot(&a.name, a.current, kind, None));
        }
        let table = build_table(slots).map_err(|e| anyhow::anyhow!("{e}"))?;
        *node.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(node)
    }

    /// Compiles every app's components into the artifact cache (a restart
    /// with a warm cache only looks the entries up), then marks the node
    /// ready and verifies the artifacts of the apps in the background
    /// ([`Self::verify_ahead`]).
    ///
    /// The apps are shared out among one thread per core. Each blob's
    /// entry is found through the cache's index of stored sources, without
    /// reading the blob (see `Runtime::load_stored`); only blobs the index
    /// does not know yet (a data directory from before it) are read and
    /// hashed, once.
    pub fn warm(self: &Arc<Self>) {
        let table = self.table();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(table.apps.len().max(1));
        let share = table.apps.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for slots in table.apps.chunks(share) {
                scope.spawn(move || {
                    for slot in slots {
                        if let Err(e) = self.compile(&slot.version.digest, slot.kind) {
                            tracing::error!(app = %slot.name, version = slot.version.version, error = %e, "cannot compile the app's component; its requests will fail");
                            slot.note_load_error(e.to_string());
                        }
                    }
                });
            }
        });
        self.ready.store(true, Ordering::Release);
        tracing::info!(apps = table.apps.len(), "node ready");
        self.verify_ahead();
    }

    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn slot(
        &self,
        name: &str,
        version: Version,
        kind: Kind,
        host: Option<Arc<AppHost>>,
    ) -> Arc<AppSlot> {
        let slot = Arc::new(AppSlot {
            name: name.to_string(),
            version,
            kind,
            host: Mutex::new(None),
            load_lock: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(self.now_ms()),
            active: AtomicU64::new(0),
            // The app's count goes on from the version it replaces.
            requests: self
                .table()
                .get(name)
                .map(|s| s.requests.clone())
                .unwrap_or_default(),
            last_error: Mutex::new(None),
            series: Mutex::new(HashSet::new()),
            code_bytes: AtomicU64::new(0),
            totals: self.loaded.clone(),
        });
        if let Some(h) = host {
            // Loaded by a deploy or rollback (checked before it replaces
            // the old version): counted as a load, as its unload will be.
            slot.set_loaded(h);
            self.stats.loads.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// What a stored blob is: a component (it starts with the WebAssembly
    /// magic) or an app bundle.
    fn kind(&self, digest: &str) -> Kind {
        use std::io::Read as _;
        let mut magic = [0u8; 4];
        let is_wasm = self
            .state
            .blob_path(digest)
            .and_then(|p| std::fs::File::open(p).ok())
            .and_then(|mut f| f.read_exact(&mut magic).ok())
            .is_some_and(|()| magic == *b"\0asm");
        if is_wasm { Kind::Component } else { Kind::App }
    }

    /// The directory an app bundle is unpacked in (once per digest; a
    /// partial unpacking is never seen: it is renamed into place whole).
    fn unpacked(&self, digest: &str) -> Result<PathBuf, ChangeError> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| ChangeError::Internal(format!("bad digest {digest}")))?;
        let dir = self.config.data_dir.join("apps").join(hex);
        if wasmops_manifest::manifest_in(&dir).is_some() {
            return Ok(dir);
        }
        let bytes = self.state.read_blob(digest)?;
        self.unpack_checked(&bytes, &dir)?;
        Ok(dir)
    }

    /// Unpacks an app bundle into `dest` after checking it: safe paths,
    /// a valid manifest, every component a component. Nothing is left
    /// behind when it is refused.
    fn unpack_checked(&self, bytes: &[u8], dest: &std::path::Path) -> Result<(), ChangeError> {
        let root = self.config.data_dir.join("apps");
        std::fs::create_dir_all(&root)
            .map_err(|e| ChangeError::Internal(format!("{}: {e}", root.display())))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&root)
            .map_err(|e| ChangeError::Internal(format!("{}: {e}", root.display())))?;
        wasmops_oci::app::unpack_bundle(bytes, tmp.path())
            .map_err(|e| ChangeError::Unusable(format!("not a usable app bundle: {e}")))?;
        // Messages name the manifest as the user knows it.
        let shown = |m: String| {
            m.replace(&format!("{}/", tmp.path().display()), "")
                .replace(&tmp.path().display().to_string(), "the app")
        };
        if wasmops_manifest::manifest_in(tmp.path()).is_none() {
            return Err(ChangeError::Unusable(
                "not a usable app bundle: it has no wasmops.toml (or spin.toml)".into(),
            ));
        }
        let app = wasmops_manifest::load(tmp.path())
            .map_err(|e| ChangeError::Unusable(shown(e.to_string())))?;
        for c in &app.components {
            let kind = std::fs::read(&c.source)
                .map_err(|e| e.to_string())
                .and_then(|b| wasmops_component::kind(&b).map_err(|e| e.to_string()));
            match kind {
                Ok(wasmops_component::Kind::Component) => {}
                Ok(wasmops_component::Kind::CoreModule) => {
                    return Err(ChangeError::Unusable(format!(
                        "component `{}` is a core WebAssembly module, not a component; build it for a component target (for Rust: `--target wasm32-wasip2`)",
                        c.id
                    )));
                }
                Err(e) => {
                    return Err(ChangeError::Unusable(shown(format!(
                        "component `{}` ({}): not a WebAssembly component: {e}",
                        c.id,
                        c.source.display()
                    ))));
                }
            }
        }
        let kept = tmp.keep();
        if wasmops_manifest::manifest_in(dest).is_some() {
            let _ = std::fs::remove_dir_all(&kept);
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&kept, dest).map_err(|e| {
            let _ = std::fs::remove_dir_all(&kept);
            ChangeError::Internal(format!("{}: {e}", dest.display()))
        })
    }

    /// Compiles a version's components into the artifact cache, unless
    /// they are there already.
    fn compile(&self, digest: &str, kind: Kind) -> Result<(), ChangeError> {
        for path in self.sources(digest, kind)? {
            if !self.rt.is_cached_stored(&path) {
                self.rt
                    .load_stored(&path)
                    .map_err(|e| ChangeError::Unusable(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The component files of a version: its blob, or its bundle's
    /// components as unpacked.
    fn sources(&self, digest: &str, kind: Kind) -> Result<Vec<PathBuf>, ChangeError> {
        Ok(match kind {
            Kind::Component => vec![
                self.state
                    .blob_path(digest)
                    .ok_or_else(|| ChangeError::Internal(format!("bad digest {digest}")))?,
            ],
            Kind::App => self
                .bundle_manifest(digest)?
                .components
                .into_iter()
                .map(|c| c.source)
                .collect(),
        })
    }

    /// After the start: verifies the compiled artifact of every app not
    /// loaded yet, on one thread at the lowest CPU and I/O priority, so that an app's
    /// first request after a restart does not hash its artifact (37 MB for
    /// a componentize-js app) and finds it in the page cache.
    fn verify_ahead(self: &Arc<Self>) {
        let node = self.clone();
        let spawned = std::thread::Builder::new()
            .name("wasmops-verify".into())
            .spawn(move || {
                // SAFETY: plain system calls; on Linux a nice value and an
                // I/O priority set for the calling thread's id apply to that
                // thread alone. The I/O class is "idle" (3 << 13): after a
                // reboot the artifacts come from disk.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                    libc::syscall(libc::SYS_ioprio_set, 1, tid, 3 << 13);
                }
                let started = Instant::now();
                let table = node.table();
                for slot in table.apps.iter().filter(|s| s.loaded().is_none()) {
                    if let Ok(paths) = node.sources(&slot.version.digest, slot.kind) {
                        for path in paths {
                            node.rt.verify_stored(&path);
                        }
                    }
                }
                tracing::debug!(
                    apps = table.apps.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "compiled artifacts verified ahead of their loads"
                );
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread that verifies artifacts ahead of loads");
        }
    }

    /// The host of one version: its components linked with their grants.
    /// Called off the async workers (it compiles or deserializes).
    fn host(&self, name: &str, version: &Version, kind: Kind) -> Result<AppHost, ChangeError> {
        let observe = Observe {
            metrics: self.metrics.clone(),
            per_route: self.metrics_on,
            tracer: None,
        };
        let unusable = |e: wasmops_app::HostError| ChangeError::Unusable(e.to_string());
        let spec = &version.spec;
        match kind {
            Kind::Component => {
                let path = self.state.blob_path(&version.digest).ok_or_else(|| {
                    ChangeError::Internal(format!("bad digest {}", version.digest))
                })?;
                let d = &self.config.app_defaults;
                let served = Served {
                    id: name.to_string(),
                    // Blobs are content-addressed: never changed once stored.
                    source: Source::Stored(path),
                    routes: vec![RouteSpec::everything()],
                    grants: Grants {
                        env: spec
                            .env
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        ..Grants::default()
                    },
                    settings: HttpSettings {
                        limits: Limits {
                            max_memory: spec.memory.unwrap_or(d.memory),
                            timeout: Some(
                                spec.timeout_ms
                                    .map(Duration::from_millis)
                                    .unwrap_or(d.timeout),
                            ),
                            ..Limits::default()
                        },
                        max_concurrency: spec.concurrency.unwrap_or(d.concurrency),
                        max_queue: self.config.max_queue,
                        max_body: self.config.max_body,
                        body_timeout: self.config.body_timeout,
                        body_buffer: wasmops_runtime::http::DEFAULT_BODY_BUFFER,
                        memory_budget: Some(self.budget.clone()),
                        debug_errors: self.config.debug_errors,
                        name: Arc::from(name),
                        app: Arc::from(name),
                        // A bare component takes no reuse setting (an app's
                        // manifest can ask for it).
                        instance_reuse: None,
                    },
                };
                match AppHost::new(&self.rt, name, vec![served], observe) {
                    Ok(h) => Ok(h),
                    // The blob's path means nothing to the user.
                    Err(wasmops_app::HostError::Component { message, .. }) => {
                        Err(ChangeError::Unusable(match message.find(": ") {
                            Some(i) if message[..i].contains("/blobs/") => {
                                message[i + 2..].to_string()
                            }
                            _ => message,
                        }))
                    }
                    Err(e) => Err(unusable(e)),
                }
            }
            Kind::App => {
                let app = self.bundle_manifest(&version.digest)?;
                // Only what the deploy gave: the node's own environment is
                // not the app's.
                let vars = app
                    .resolve_variables(&|env_name| {
                        spec.variables
                            .iter()
                            .find(|(k, _)| wasmops_manifest::variable_env_name(k) == env_name)
                            .map(|(_, v)| v.clone())
                    })
                    .map_err(|e| {
                        ChangeError::Unusable(format!(
                            "{}; give it at deploy: `wasmops deploy --var NAME=VALUE` (API: `variables`)",
                            e.message
                        ))
                    })?;
                let options = ManifestOptions {
                    name: Some(name.to_string()),
                    state_dir: Some(self.config.data_dir.join("state").join(name)),
                    open_stores: true,
                    max_queue: self.config.max_queue,
                    max_body: self.config.max_body,
                    body_timeout: self.config.body_timeout,
                    debug_errors: self.config.debug_errors,
                    budget: Some(self.budget.clone()),
                    // Unpacked once per digest, then never changed.
                    stored_sources: true,
                };
                let build = wasmops_app::from_manifest(&self.rt, &app, &vars, &options, observe);
                tokio::runtime::Handle::current()
                    .block_on(build)
                    .map_err(unusable)
            }
        }
    }

    /// Loads an app for its first request after a start or an unload.
    async fn load(&self, slot: &AppSlot) -> Result<Arc<AppHost>, String> {
        let _one = slot.load_lock.lock().await;
        if let Some(h) = slot.loaded() {
            return Ok(h);
        }
        let started = Instant::now();
        // Deserializing is CPU work of a few milliseconds: off the async
        // workers' hot path.
        let h = tokio::task::block_in_place(|| self.host(&slot.name, &slot.version, slot.kind))
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        slot.set_loaded(h.clone());
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        // Over a bound now: the least recently used go at once, not at the
        // next sweep (the request keeps its host until it is answered).
        if self.over_bounds() {
            self.sweep();
        }
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        self.stats
            .load_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!(app = %slot.name, load_ms = wasmops_units::millis(started.elapsed()), "app loaded");
        Ok(h)
    }

    /// Serves one request: routes it to its app, loading the app if needed.
    pub async fn handle(
        self: &Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        let table = self.table();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        let Some(&i) = table.router.route(host, req.uri().path()) else {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("no app is deployed for {}", req.uri().path()),
            );
        };
        let slot = table.apps[i].clone();
        drop(table);
        let handler = match slot.loaded() {
            Some(h) => h,
            None => match self.load(&slot).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(app = %slot.name, error = %e, "cannot load the app");
                    slot.note_load_error(e);
                    return json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("app `{}` cannot be loaded", slot.name),
                    );
                }
            },
        };
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        let _answering = Answering::new(self, &slot);
        handler.handle(req).await
    }

    /// Unloads apps idle for longer than `idle_unload`, then the least
    /// recently used ones beyond `max_loaded`. Returns how many.
    pub fn sweep(&self) -> usize {
        let table = self.table();
        let now = self.now_ms();
        let idle = self.config.idle_unload.as_millis() as u64;
        let mut unloaded = 0;
        let mut loaded: Vec<&Arc<AppSlot>> = Vec::new();
        for s in &table.apps {
            if !s.is_loaded() {
                continue;
            }
            if now.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= idle
                && s.active.load(Ordering::Relaxed) == 0
            {
                if s.unload() {
                    unloaded += 1;
                    tracing::debug!(app = %s.name, "app unloaded: idle");
                }
            } else {
                loaded.push(s);
            }
        }
        // Least recently used first, until both bounds hold.
        loaded.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
        let mut code: u64 = loaded
            .iter()
            .map(|s| s.code_bytes.load(Ordering::Relaxed))
            .sum();
        let mut count = loaded.len();
        for s in loaded {
            let too_many = count > self.config.max_loaded;
            let too_big = code > self.config.max_loaded_code;
            if !too_many && !too_big {
                break;
            }
            if s.unload() {
                unloaded += 1;
                count -= 1;
                code = code.saturating_sub(s.code_bytes.load(Ordering::Relaxed));
                tracing::debug!(
                    app = %s.name,
                    reason = if too_many { "too many apps loaded" } else { "loaded code over its budget" },
                    "app unloaded"
                );
            }
        }
        self.stats
            .unloads
            .fetch_add(unloaded as u64, Ordering::Relaxed);
        unloaded
    }

    /// Whether more apps, or more compiled code, are loaded than allowed.
    fn over_bounds(&self) -> bool {
        self.loaded.apps.load(Ordering::Relaxed) > self.config.max_loaded
            || self.loaded.code.load(Ordering::Relaxed) > self.config.max_loaded_code
    }

    /// Runs `sweep` periodically until the node is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period =
            (self.config.idle_unload / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { break };
                node.sweep();
            }
        });
    }

    /// Apps deployed.
    pub fn table_len(&self) -> usize {
        self.table().apps.len()
    }

    /// Marks `app` as changing; refused when another change is under way.
    fn begin_change(&self, app: &str) -> Result<ChangeGuard<'_>, ChangeError> {
        let mut c = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        if !c.insert(app.to_string()) {
            return Err(ChangeError::Conflict(format!(
                "another deploy, rollback or delete of app `{app}` is under way; try again when it is done"
            )));
        }
        Ok(ChangeGuard {
            node: self,
            app: app.to_string(),
        })
    }

    /// Puts a new table in place, built from `apps`.
    fn install(&self, apps: Vec<Arc<AppSlot>>) -> Result<(), ChangeError> {
        let table = build_table(apps).map_err(ChangeError::Conflict)?;
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    /// The table's apps with `name` replaced by `slot` (or removed).
    fn with_app(&self, name: &str, slot: Option<Arc<AppSlot>>) -> Vec<Arc<AppSlot>> {
        let table = self.table();
        let mut apps: Vec<Arc<AppSlot>> = table
            .apps
            .iter()
            .filter(|a| a.name != name)
            .cloned()
            .collect();
        apps.extend(slot);
        apps
    }

    /// Deploys the component `digest` (already stored) as `name` with
    /// `spec`: compiled and linked first, checked against the other apps'
    /// hosts and routes, recorded, then swapped in. Requests in flight
    /// finish on the version they started on.
    pub fn deploy(
        &self,
        name: &str,
        digest: &str,
        source: &str,
        spec: AppSpec,
        by: &str,
    ) -> Result<Version, ChangeError> {
        if !valid_name(name) {
            return Err(ChangeError::Bad(format!(
                "invalid app name `{name}`: use lowercase letters, digits and `-`, starting with a letter, at most 63 characters"
            )));
        }
        let mut spec = spec;
        let kind = self.kind(digest);
        check_spec(&spec, kind)?;
        // The pool's slots are sized by the node's limit: a larger one
        // could not be given, only cut short at run time.
        let most = self.config.app_defaults.memory;
        if let Some(m) = spec.memory.filter(|&m| m > most) {
            let mib = |b: u64| format!("{:.0}MiB", b as f64 / (1u64 << 20) as f64);
            return Err(ChangeError::Bad(format!(
                "memory {} is more than this node gives an instance ({}, its --max-memory): ask for at most that, or run the node with a larger --max-memory",
                mib(m),
                mib(most)
            )));
        }
        let _guard = self.begin_change(name)?;
        self.check_owner(name, by)?;
        let result = (|| {
            if kind == Kind::App {
                let app = self.bundle_manifest(digest)?;
                let declared: Vec<String> = app.variables.iter().map(|v| v.name.clone()).collect();
                if let Some(k) = spec.variables.keys().find(|k| !declared.contains(*k)) {
                    return Err(ChangeError::Bad(format!(
                        "the app declares no variable `{k}`{}",
                        if declared.is_empty() {
                            String::new()
                        } else {
                            format!("; it declares {}", declared.join(", "))
                        }
                    )));
                }
                if spec.routes.is_empty() {
                    spec.routes = app_prefixes(&app);
                }
                // Variables not given keep their value (a promotion, or a
                // redeploy, need not carry secrets again).
                if let Some(current) = self.table().get(name) {
                    for (k, v) in &current.version.spec.variables {
                        spec.variables.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            let draft = Version {
                version: 0,
                digest: digest.to_string(),
                source: source.to_string(),
                spec: spec.clone(),
                deployed_by: by.to_string(),
                deployed_at: String::new(),
            };
            // Compile and link before anything changes.
            let handler = Arc::new(self.host(name, &draft, kind)?);
            let table = self.table_change.lock().unwrap_or_else(|p| p.into_inner());
            // The routes must not clash with another app's.
            let trial = self.slot(name, draft, kind, None);
            build_table(self.with_app(name, Some(trial))).map_err(ChangeError::Conflict)?;
            let version = self.state.deploy(name, digest, source, &spec, by)?;
            let slot = self.slot(name, version.clone(), kind, Some(handler));
            self.install(self.with_app(name, Some(slot)))?;
            drop(table);
            // The new version stays loaded, ready for its traffic, within
            // the bounds.
            if self.over_bounds() {
                self.sweep();
            }
            Ok(version)
        })();
        match &result {
            Ok(v) => {
                self.stats.deploys.fetch_add(1, Ordering::Relaxed);
                tracing::info!(app = name, version = v.version, digest = %v.digest, by, "deployed");
            }
            Err(e) => {
                self.stats.deploys_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(app = name, error = %e, "deploy refused");
            }
        }
        result
    }

    /// Makes an earlier version of `name` current again.
    /// An app the apps directory declares is changed there only: the
    /// directory would not put back what the API changed, and the node's
    /// readiness would report the declaration applied.
    fn check_owner(&self, name: &str, by: &str) -> Result<(), ChangeError> {
        let declared = self.follows_apps_dir.load(Ordering::Relaxed)
            && self
                .table()
                .get(name)
                .is_some_and(|s| s.version.deployed_by == appsdir::OWNER);
        if declared && by != appsdir::OWNER {
            return Err(ChangeError::Conflict(format!(
                "app `{name}` is declared in the apps directory (--apps-dir): change or remove its declaration there"
            )));
        }
        Ok(())
    }

    pub fn rollback(&self, name: &str, to: Option<i64>, by: &str) -> Result<Version, ChangeError> {
        let _guard = self.begin_change(name)?;
        self.check_owner(name, by)?;
        let (_, versions, _) = self.state.app(name)?;
        let current = self
            .table()
            .get(name)
            .map(|s| s.version.version)
            .unwrap_or_default();
        let target =
            match to {
                Some(v) => {
                    versions
                        .iter()
                        .find(|x| x.version == v)
                        .ok_or(ChangeError::NotFound(format!(
                            "app `{name}` has no version {v}"
                        )))?
                }
                None => versions.iter().rev().find(|x| x.version < current).ok_or(
                    ChangeError::Conflict(format!(
                        "app `{name}` has no earlier version to roll back to"
                    )),
                )?,
            };
        let kind = self.kind(&target.digest);
        let handler = Arc::new(self.host(name, target, kind)?);
        let table = self.table_change.lock().unwrap_or_else(|p| p.into_inner());
        let trial = self.slot(name, target.clone(), kind, None);
        build_table(self.with_app(name, Some(trial))).map_err(ChangeError::Conflict)?;
        let version = self.state.rollback(name, Some(target.version), by)?;
        let slot = self.slot(name, version.clone(), kind, Some(handler));
        self.install(self.with_app(name, Some(slot)))?;
        drop(table);
        if self.over_bounds() {
            self.sweep();
        }
        tracing::info!(app = name, version = version.version, by, "rolled back");
        Ok(version)
    }

    /// The manifest of an app bundle (unpacked once per digest).
    fn bundle_manifest(&self, digest: &str) -> Result<wasmops_manifest::App, ChangeError> {
        let dir = self.unpacked(digest)?;
        wasmops_manifest::load(&dir).map_err(|e| ChangeError::Unusable(e.to_string()))
    }

    /// The variables an app bundle marks secret (none for a component).
    pub(crate) fn secret_variables(&self, digest: &str) -> Result<Vec<String>, ChangeError> {
        if self.kind(digest) != Kind::App {
            return Ok(Vec::new());
        }
        Ok(self
            .bundle_manifest(digest)?
            .variables
            .into_iter()
            .filter(|v| v.secret)
            .map(|v| v.name)
            .collect())
    }

    /// Removes an app: no new request reaches it; requests in flight finish.
    pub fn delete(&self, name: &str, by: &str) -> Result<(), ChangeError> {
        let _guard = self.begin_change(name)?;
        self.check_owner(name, by)?;
        let table = self.table_change.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table().get(name).cloned();
        self.state.delete(name)?;
        self.install(self.with_app(name, None))?;
        drop(table);
        if let Some(old) = old {
            let series = std::mem::take(&mut *old.series.lock().unwrap_or_else(|p| p.into_inner()));
            for (component, route) in series {
                self.metrics.forget_component(name, &component, &route);
            }
            self.metrics.forget_app(name);
        }
        let _ = self.state.gc();
        self.gc_unpacked();
        tracing::info!(app = name, by, "deleted");
        Ok(())
    }

    /// Removes unpacked app bundles whose blob is gone.
    fn gc_unpacked(&self) {
        let root = self.config.data_dir.join("apps");
        let Ok(rd) = std::fs::read_dir(&root) else {
            return;
        };
        for e in rd.flatten() {
            let hex = e.file_name().to_string_lossy().into_owned();
            if hex.len() == 64
                && self
                    .state
                    .blob_path(&format!("sha256:{hex}"))
                    .is_none_or(|p| !p.is_file())
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Stores an uploaded component or app bundle after checking it.
    pub fn upload(&self, bytes: &[u8]) -> Result<String, ChangeError> {
        if wasmops_oci::app::is_tar(bytes) {
            let digest = format!("sha256:{}", hex_sha256(bytes));
            let dir = self.config.data_dir.join("apps").join(&digest[7..]);
            self.unpack_checked(bytes, &dir)?;
            return Ok(self.state.put_blob(bytes)?);
        }
        match wasmops_component::kind(bytes) {
            Ok(wasmops_component::Kind::Component) => {}
            Ok(wasmops_component::Kind::CoreModule) => {
                return Err(ChangeError::Unusable(
                    "this is a core WebAssembly module, not a component; the node serves components that export `wasi:http/incoming-handler` (for Rust: `--target wasm32-wasip2`)".into(),
                ));
            }
            Err(e) => {
                return Err(ChangeError::Unusable(format!(
                    "neither a WebAssembly component nor an app bundle: {e}"
                )));
            }
        }
        Ok(self.state.put_blob(bytes)?)
    }

    /// Pulls a component or app reference under the node's signature policy
    /// and stores it (an app as a bundle); returns its blob digest and the
    /// manifest digest pulled.
    pub async fn fetch(&self, reference: &str) -> Result<(String, String), ChangeError> {
        if !wasmops_oci::resolve::is_reference(reference) {
            return Err(ChangeError::Bad(format!(
                "`{reference}` is not a reference: write HOST[:PORT]/REPO[:TAG][@sha256:DIGEST] or oci-layout:PATH[:TAG]"
            )));
        }
        let cache = wasmops_oci::Layout::open(&self.config.data_dir.join("oci"), true)
            .map_err(|e| ChangeError::Internal(e.to_string()))?;
        let (pulled, store) =
            wasmops_oci::resolve::pull_checked(reference, &self.config.policy, &cache)
                .await
                .map_err(|e| {
                    let m = e.to_string();
                    if m.starts_with("refusing") {
                        ChangeError::Source(m)
                    } else if matches!(
                        e,
                        wasmops_oci::OciError::Missing(_) | wasmops_oci::OciError::NotFound { .. }
                    ) {
                        ChangeError::NotFound(m)
                    } else {
                        ChangeError::Source(m)
                    }
                })?;
        let bytes = if matches!(
            pulled.kind,
            wasmops_oci::distribution::ArtifactKind::App
                | wasmops_oci::distribution::ArtifactKind::Spin
        ) {
            let root = self.config.data_dir.join("pulled");
            let dir = wasmops_oci::resolve::unpacked_app(reference, &pulled, &store, &root)
                .map_err(|e| ChangeError::Unusable(e.to_string()))?;
            let bundle =
                wasmops_oci::app::pack_dir(&dir).map_err(|e| ChangeError::Unusable(e.to_string()));
            let _ = std::fs::remove_dir_all(&dir);
            bundle?
        } else {
            wasmops_oci::resolve::single_component(reference, &pulled, &store)
                .map_err(|e| ChangeError::Unusable(e.to_string()))?
        };
        let digest = tokio::task::block_in_place(|| self.upload(&bytes))?;
        Ok((digest, pulled.digest))
    }

    /// A message as a client may see it: paths in the node's data
    /// directory are not for clients (they tell where the node keeps its
    /// files), so an unpacked app's files are named as in its bundle
    /// (`components/web.wasm`) and the rest relative to the directory.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for root in &self.data_dir_names {
            let apps = format!("{root}/apps/");
            while let Some(at) = out.find(&apps) {
                let rest = &out[at + apps.len()..];
                let hex = rest
                    .find('/')
                    .filter(|&n| rest[..n].bytes().all(|b| b.is_ascii_hexdigit()));
                let end = match hex {
                    Some(n) => at + apps.len() + n + 1,
                    None => at + apps.len(),
                };
                out.replace_range(at..end, "");
            }
            out = out
                .replace(&format!("{root}/"), "")
                .replace(root.as_str(), "the node's data directory");
        }
        out
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

struct ChangeGuard<'a> {
    node: &'a Node,
    app: String,
}

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        self.node
            .changing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.app);
    }
}

/// The path prefixes an app's routes live under: where the node sends its
/// requests when the deploy names no route. `/` covers everything; a
/// prefix under another is covered by it.
fn app_prefixes(app: &wasmops_manifest::App) -> Vec<String> {
    let mut prefixes: Vec<String> = app
        .components
        .iter()
        .flat_map(|c| c.routes.iter())
        .map(|r| r.path.clone())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let covered: Vec<String> = prefixes
        .iter()
        .filter(|p| {
            !prefixes.iter().any(|q| {
                q != *p && (q == "/" || p.starts_with(&format!("{}/", q.trim_end_matches('/'))))
            })
        })
        .cloned()
        .collect();
    if covered.is_empty() {
        vec!["/".into()]
    } else {
        covered
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Checks the hosts and routes of a spec, and that what it sets fits the
/// kind of app: an app bundle's limits and environment are in its
/// manifest, a component has no variables.
fn check_spec(spec: &AppSpec, kind: Kind) -> Result<(), ChangeError> {
    match kind {
        Kind::App => {
            if !spec.env.is_empty()
                || spec.memory.is_some()
                || spec.timeout_ms.is_some()
                || spec.concurrency.is_some()
            {
                return Err(ChangeError::Bad(
                    "an app's environment and limits are set per component in its wasmops.toml, not at deploy; give only hosts, routes and variables (`--var NAME=VALUE`)".into(),
                ));
            }
        }
        Kind::Component => {
            if !spec.variables.is_empty() {
                return Err(ChangeError::Bad(
                    "variables are for apps with a wasmops.toml; give a component environment variables instead (`wasmops deploy --app-env K=V`; `env` in the API and in an apps-directory declaration)".into(),
                ));
            }
        }
    }
    for h in &spec.hosts {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|l| {
                // A DNS label: 1-63 letters, digits and `-`, not at either end.
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(ChangeError::Bad(format!(
                "invalid host `{h}`: give a host name such as `shop.example.com` or `*.example.com`"
            )));
        }
    }
    for (i, r) in spec.routes.iter().enumerate() {
        // A prefix a request's path can have: no query or fragment, no
        // `.` or `..` segment (a client's path never keeps them).
        if !r.starts_with('/')
            || r.contains('*')
            || r.contains(['?', '#'])
            || r.split('/').any(|seg| seg == "." || seg == "..")
            || r.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ChangeError::Bad(format!(
                "invalid route `{r}`: give a path prefix such as `/` or `/api`"
            )));
        }
        if spec.routes[..i].contains(r) {
            return Err(ChangeError::Bad(format!("route `{r}` is given twice")));
        }
    }
    if let Some((_, h)) = spec
        .hosts
        .iter()
        .enumerate()
        .find(|(i, h)| spec.hosts[..*i].iter().any(|o| o.eq_ignore_ascii_case(h)))
    {
        return Err(ChangeError::Bad(format!("host `{h}` is given twice")));
    }
    for k in spec.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ChangeError::Bad(format!(
                "invalid environment variable name `{k}`"
            )));
        }
    }
    if spec
        .memory
        .is_some_and(|m| wasmops_units::check_memory(m).is_err())
    {
        return Err(ChangeError::Bad("memory must be at least 64KiB".into()));
    }
    if spec.timeout_ms == Some(0) || spec.concurrency == Some(0) {
        return Err(ChangeError::Bad(
            "timeout and concurrency must be greater than zero".into(),
        ));
    }
    Ok(())
}

/// The routing table of `apps`; an error names a host and route that two
/// apps claim.
fn build_table(apps: Vec<Arc<AppSlot>>) -> Result<Table, String> {
    let mut router = Router::new();
    let mut owner: HashMap<(Option<String>, String), String> = HashMap::new();
    for (i, a) in apps.iter().enumerate() {
        let hosts: Vec<Option<String>> = if a.version.spec.hosts.is_empty() {
            vec![None]
        } else {
            a.version
                .spec
                .hosts
                .iter()
                .map(|h| Some(h.to_ascii_lowercase()))
                .collect()
        };
        let routes: Vec<String> = if a.version.spec.routes.is_empty() {
            vec!["/".to_string()]
        } else {
            a.version.spec.routes.clone()
        };
        for h in &hosts {
            for r in &routes {
                let key = (h.clone(), r.trim_end_matches('/').to_string());
                if let Some(other) = owner.get(&key) {
                    return Err(format!(
                        "{} {r} is already served by app `{other}`; give app `{}` another host or route, or delete `{other}` first",
                        h.as_deref()
                            .map(|h| format!("host `{h}`, route"))
                            .unwrap_or_else(|| "route".into()),
                        a.name
                    ));
                }
                owner.insert(key, a.name.clone());
                if router.add(h.as_deref(), r, true, i).is_err() {
                    return Err(format!("route {r} is declared twice by app `{}`", a.name));
                }
            }
        }
    }
    Ok(Table { router, apps })
}

/// A JSON error response: `{"error": "..."}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "error": message }))
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(bytes::Bytes::from(value.to_string() + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
