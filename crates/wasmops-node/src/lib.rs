//! The node: one long-running process that hosts many apps. Each app is
//! deployed under a name and reached by host name and/or path prefix. Its
//! component is compiled when deployed (into the artifact cache), loaded on
//! its first request (the cached code is deserialized), kept while used and
//! unloaded when idle or when too many apps are loaded (least recently used
//! first). The instance pool and the memory budget are the process's, sized
//! by concurrent requests, not by apps; every app has its own concurrency
//! limit and queue, so one app's flood does not starve the others.
//!
//! Desired state lives in `state` (SQLite and blobs in the data directory);
//! the admin API (`api`) changes it, authenticated by `auth` tokens.

pub mod api;
pub mod auth;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use wasmops_runtime::budget::MemoryBudget;
use wasmops_runtime::http::{Body, HttpHandler, HttpSettings};
use wasmops_runtime::{Grants, Limits, Runtime};
use wasmops_server::router::Router;
use wasmops_telemetry::{ComponentMetrics, Metrics};

use crate::state::{AppSpec, State, Version};

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Unload an app when it served nothing for this long.
    pub idle_unload: Duration,
    /// Apps loaded at once, at most; the least recently used is unloaded.
    pub max_loaded: usize,
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

/// A deployed app as the serving path sees it.
pub(crate) struct AppSlot {
    pub(crate) name: String,
    pub(crate) version: Version,
    handler: Mutex<Option<HttpHandler>>,
    /// Serializes loading, so simultaneous first requests load once.
    load_lock: tokio::sync::Mutex<()>,
    /// Milliseconds since the node started, at the last request.
    last_used: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// Made on the first load: an app never asked for costs no series.
    metrics: std::sync::OnceLock<Option<ComponentMetrics>>,
}

impl AppSlot {
    fn loaded(&self) -> Option<HttpHandler> {
        self.handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn unload(&self) -> bool {
        self.handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
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
    rt: Runtime,
    pub(crate) state: State,
    table: RwLock<Arc<Table>>,
    pub(crate) metrics: Arc<Metrics>,
    metrics_on: bool,
    pub(crate) config: NodeConfig,
    budget: Arc<MemoryBudget>,
    /// Apps with a deploy, rollback or delete under way.
    changing: Mutex<HashSet<String>>,
    started: Instant,
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) stats: NodeStats,
}

/// Valid app names: lowercase letters, digits and `-`, starting with a
/// letter, at most 63 characters (a DNS label).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Node {
    /// Opens the node's state in the data directory and builds the routing
    /// table of the apps it holds (loaded lazily).
    pub fn open(
        rt: Runtime,
        config: NodeConfig,
        budget: Arc<MemoryBudget>,
        metrics: Arc<Metrics>,
        metrics_on: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let state = State::open(&config.data_dir)?;
        let node = Arc::new(Self {
            rt,
            state,
            table: RwLock::new(Arc::new(Table::default())),
            metrics,
            metrics_on,
            config,
            budget,
            changing: Mutex::new(HashSet::new()),
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(false)),
            stats: NodeStats::default(),
        });
        let apps = node.state.apps()?;
        let mut slots = Vec::with_capacity(apps.len());
        for a in apps {
            slots.push(node.slot(&a.name, a.current, None));
        }
        let table = build_table(slots).map_err(|e| anyhow::anyhow!("{e}"))?;
        *node.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(node)
    }

    /// Compiles every app's component into the artifact cache (a restart
    /// with a warm cache only checks it), then marks the node ready.
    pub fn warm(&self) {
        let table = self.table();
        for slot in &table.apps {
            if let Err(e) = self.compile(&slot.version.digest) {
                tracing::error!(app = %slot.name, version = slot.version.version, error = %e, "cannot compile the app's component; its requests will fail");
                *slot.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(apps = table.apps.len(), "node ready");
    }

    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn slot(&self, name: &str, version: Version, handler: Option<HttpHandler>) -> Arc<AppSlot> {
        Arc::new(AppSlot {
            name: name.to_string(),
            version,
            handler: Mutex::new(handler),
            load_lock: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(self.now_ms()),
            requests: AtomicU64::new(0),
            last_error: Mutex::new(None),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// The compiled component of a blob (from the artifact cache when it is
    /// there).
    fn compile(&self, digest: &str) -> Result<wasmops_runtime::Loaded, ChangeError> {
        let path = self
            .state
            .blob_path(digest)
            .ok_or_else(|| ChangeError::Internal(format!("bad digest {digest}")))?;
        let loaded = self
            .rt
            .load(&path)
            .map_err(|e| ChangeError::Unusable(e.to_string()))?;
        if loaded.source_kind == wasmops_component::Kind::CoreModule {
            return Err(ChangeError::Unusable(
                "this is a core WebAssembly module, not a component; the node serves components that export `wasi:http/incoming-handler` (for Rust: `--target wasm32-wasip2`)".into(),
            ));
        }
        Ok(loaded)
    }

    /// The handler of one version: its component linked with its grants.
    fn handler(&self, name: &str, version: &Version) -> Result<HttpHandler, ChangeError> {
        let loaded = self.compile(&version.digest)?;
        let spec = &version.spec;
        let d = &self.config.app_defaults;
        let settings = HttpSettings {
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
        };
        let grants = Grants {
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Grants::default()
        };
        let metrics = self
            .metrics_on
            .then(|| self.metrics.component(name, name, "/"));
        HttpHandler::new(&self.rt, &loaded.component, grants, settings, metrics, None)
            .map_err(|e| ChangeError::Unusable(e.to_string()))
    }

    /// Loads an app for its first request after a start or an unload.
    async fn load(&self, slot: &AppSlot) -> Result<HttpHandler, String> {
        let _one = slot.load_lock.lock().await;
        if let Some(h) = slot.loaded() {
            return Ok(h);
        }
        let started = Instant::now();
        // Deserializing is CPU work of a few milliseconds: off the async
        // workers' hot path.
        let h = tokio::task::block_in_place(|| self.handler(&slot.name, &slot.version))
            .map_err(|e| e.to_string())?;
        *slot.handler.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        self.stats
            .load_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!(app = %slot.name, load_ms = started.elapsed().as_secs_f64() * 1000.0, "app loaded");
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
                    *slot.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("app `{}` cannot be loaded", slot.name),
                    );
                }
            },
        };
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        let metrics = slot.metrics.get_or_init(|| {
            self.metrics_on
                .then(|| self.metrics.component(&slot.name, &slot.name, "/"))
        });
        handler.handle_routed(req, metrics.as_ref()).await
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
            if now.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= idle {
                if s.unload() {
                    unloaded += 1;
                    tracing::debug!(app = %s.name, "app unloaded: idle");
                }
            } else {
                loaded.push(s);
            }
        }
        if loaded.len() > self.config.max_loaded {
            loaded.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
            let excess = loaded.len() - self.config.max_loaded;
            for s in loaded.into_iter().take(excess) {
                if s.unload() {
                    unloaded += 1;
                    tracing::debug!(app = %s.name, "app unloaded: too many apps loaded");
                }
            }
        }
        self.stats
            .unloads
            .fetch_add(unloaded as u64, Ordering::Relaxed);
        unloaded
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
        check_spec(&spec)?;
        let _guard = self.begin_change(name)?;
        let result = (|| {
            let draft = Version {
                version: 0,
                digest: digest.to_string(),
                source: source.to_string(),
                spec: spec.clone(),
                deployed_by: by.to_string(),
                deployed_at: String::new(),
            };
            // Compile and link before anything changes.
            let handler = self.handler(name, &draft)?;
            // The routes must not clash with another app's.
            let trial = self.slot(name, draft, None);
            build_table(self.with_app(name, Some(trial))).map_err(ChangeError::Conflict)?;
            let version = self.state.deploy(name, digest, source, &spec, by)?;
            let slot = self.slot(name, version.clone(), Some(handler));
            self.install(self.with_app(name, Some(slot)))?;
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
    pub fn rollback(&self, name: &str, to: Option<i64>, by: &str) -> Result<Version, ChangeError> {
        let _guard = self.begin_change(name)?;
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
        let handler = self.handler(name, target)?;
        let trial = self.slot(name, target.clone(), None);
        build_table(self.with_app(name, Some(trial))).map_err(ChangeError::Conflict)?;
        let version = self.state.rollback(name, Some(target.version), by)?;
        let slot = self.slot(name, version.clone(), Some(handler));
        self.install(self.with_app(name, Some(slot)))?;
        tracing::info!(app = name, version = version.version, by, "rolled back");
        Ok(version)
    }

    /// Removes an app: no new request reaches it; requests in flight finish.
    pub fn delete(&self, name: &str, by: &str) -> Result<(), ChangeError> {
        let _guard = self.begin_change(name)?;
        self.state.delete(name)?;
        self.install(self.with_app(name, None))?;
        if self.metrics_on {
            self.metrics.forget_component(name, name, "/");
        }
        let _ = self.state.gc();
        tracing::info!(app = name, by, "deleted");
        Ok(())
    }

    /// Stores an uploaded component after checking that it is WebAssembly.
    pub fn upload(&self, bytes: &[u8]) -> Result<String, ChangeError> {
        match wasmops_component::kind(bytes) {
            Ok(wasmops_component::Kind::Component) => {}
            Ok(wasmops_component::Kind::CoreModule) => {
                return Err(ChangeError::Unusable(
                    "this is a core WebAssembly module, not a component; the node serves components that export `wasi:http/incoming-handler` (for Rust: `--target wasm32-wasip2`)".into(),
                ));
            }
            Err(e) => {
                return Err(ChangeError::Unusable(format!(
                    "not a WebAssembly component: {e}"
                )));
            }
        }
        Ok(self.state.put_blob(bytes)?)
    }

    /// Pulls a component reference under the node's signature policy and
    /// stores it; returns its blob digest and the manifest digest pulled.
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
        let bytes =
            wasmops_oci::resolve::single_component(reference, &pulled, &store).map_err(|e| {
                ChangeError::Unusable(format!("{e}; the node deploys single components"))
            })?;
        let digest = self.upload(&bytes)?;
        Ok((digest, pulled.digest))
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

/// Checks the hosts and routes of a spec.
fn check_spec(spec: &AppSpec) -> Result<(), ChangeError> {
    for h in &spec.hosts {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(ChangeError::Bad(format!(
                "invalid host `{h}`: give a host name such as `shop.example.com` or `*.example.com`"
            )));
        }
    }
    for r in &spec.routes {
        if !r.starts_with('/')
            || r.contains("..")
            || r.contains('*')
            || r.chars().any(char::is_whitespace)
        {
            return Err(ChangeError::Bad(format!(
                "invalid route `{r}`: give a path prefix such as `/` or `/api`"
            )));
        }
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
