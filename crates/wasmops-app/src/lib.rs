//! The app host: the components of one app behind their routes, each with
//! its own grants, limits and metrics. `wasmops serve` is the case of one
//! component on `/...`; `wasmops up` builds the host from a `wasmops.toml`
//! (`manifest`); the node keeps one host per deployed app and loads it on
//! its first request.
//!
//! A request is routed by its `Host` header and path; no route is a 404.
//! Each component's handler can be replaced while serving (`reload`):
//! requests take a clone of the current handler and keep it to their end,
//! so a swap never disturbs requests in flight.

pub mod manifest;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use wasmops_runtime::http::{Body, HttpHandler, HttpSettings, simple};
use wasmops_runtime::load::CacheOutcome;
use wasmops_runtime::{Grants, Runtime};
use wasmops_server::router::Router;
use wasmops_telemetry::trace::Tracer;
use wasmops_telemetry::{ComponentMetrics, Metrics};

pub use manifest::{ManifestOptions, from_manifest};

/// Where a component answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Only requests for this host (may start with `*.`); any host when
    /// `None`.
    pub host: Option<String>,
    /// The path, without the `/...` of a prefix route.
    pub path: String,
    /// `true`: the path and everything under it.
    pub prefix: bool,
    /// The route as its metrics and logs name it.
    pub label: String,
}

impl RouteSpec {
    /// Every path on every host (`/...`), labelled `/`.
    pub fn everything() -> Self {
        Self {
            host: None,
            path: "/".into(),
            prefix: true,
            label: "/".into(),
        }
    }
}

/// Where a component's code comes from.
#[derive(Clone)]
pub enum Source {
    /// A file, read again on every reload.
    File(PathBuf),
    /// A file that is never changed in place once written (a
    /// content-addressed store's): loaded by the digest its first load
    /// recorded, without reading it again (see `Runtime::load_stored`).
    Stored(PathBuf),
    /// Bytes already read (e.g. pulled from a registry); `name` names them
    /// in errors.
    Bytes { name: PathBuf, bytes: Arc<[u8]> },
    /// Bytes made again on every load (a component composed with its
    /// dependencies, so a reload composes the new file); `name` is the
    /// component's own file.
    Made {
        name: PathBuf,
        make: Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => f.debug_tuple("File").field(p).finish(),
            Source::Stored(p) => f.debug_tuple("Stored").field(p).finish(),
            Source::Bytes { name, .. } => f.debug_struct("Bytes").field("name", name).finish(),
            Source::Made { name, .. } => f.debug_struct("Made").field("name", name).finish(),
        }
    }
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Stored(p) => p,
            Source::Bytes { name, .. } | Source::Made { name, .. } => name,
        }
    }

    /// Loads it (compiled, or from the artifact cache).
    fn load(&self, rt: &Runtime) -> Result<wasmops_runtime::Loaded, String> {
        match self {
            Source::File(p) => rt.load(p).map_err(|e| e.to_string()),
            Source::Stored(p) => rt.load_stored(p).map_err(|e| e.to_string()),
            Source::Bytes { name, bytes } => rt.load_bytes(name, bytes).map_err(|e| e.to_string()),
            Source::Made { name, make } => {
                let bytes = make()?;
                rt.load_bytes(name, &bytes).map_err(|e| e.to_string())
            }
        }
    }
}

/// One component to serve.
#[derive(Clone)]
pub struct Served {
    pub id: String,
    pub source: Source,
    pub routes: Vec<RouteSpec>,
    pub grants: Grants,
    pub settings: HttpSettings,
}

/// Why a host could not be built or a component reloaded. One line, naming
/// the component and its file.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("component `{id}`: {message}")]
    Component { id: String, message: String },
    /// Instance reuse was asked of a component whose instances cannot be
    /// reused (a WASIp3 handler).
    #[error("component `{id}`: {message}")]
    NotReusable { id: String, message: String },
    #[error("route `{0}` is declared twice")]
    DuplicateRoute(String),
    #[error("{0}")]
    Config(String),
}

/// How the host reports: process metrics (artifact-cache lookups), per-route
/// metrics when something can read them, and traces.
#[derive(Clone)]
pub struct Observe {
    pub metrics: Arc<Metrics>,
    /// Keep per-route series (only when an admin listener exposes them).
    pub per_route: bool,
    pub tracer: Option<Tracer>,
}

/// One component's current handler.
struct Slot {
    served: Served,
    handler: RwLock<HttpHandler>,
    version: AtomicU64,
    /// What loading it the first time cost.
    first_load: (CacheOutcome, Duration),
    /// Bytes of compiled code mapped for it.
    code_bytes: usize,
}

impl Slot {
    fn current(&self) -> HttpHandler {
        self.handler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Where a route leads: a slot and the route's own metrics.
struct Target {
    slot: usize,
    metrics: Option<ComponentMetrics>,
}

/// The components of one app behind their routes.
pub struct AppHost {
    name: Arc<str>,
    rt: Arc<Runtime>,
    slots: Box<[Slot]>,
    router: Router<Target>,
    observe: Observe,
    routes: usize,
}

impl AppHost {
    /// Compiles (or takes from the artifact cache) and links every
    /// component, and builds the routing table. A component without routes
    /// is compiled and checked but not served.
    pub fn new(
        rt: &Arc<Runtime>,
        name: &str,
        served: Vec<Served>,
        observe: Observe,
    ) -> Result<Self, HostError> {
        let name: Arc<str> = Arc::from(name);
        let mut slots = Vec::new();
        let mut router = Router::new();
        let mut routes = 0;
        for s in served {
            if s.routes.is_empty() {
                // Not served (e.g. a command): compiled and checked, no
                // handler.
                s.source.load(rt).map_err(|e| HostError::Component {
                    id: s.id.clone(),
                    message: e.to_string(),
                })?;
                tracing::info!(component = %s.id, "component has no route; not served");
                continue;
            }
            let (handler, load, code_bytes) = build(rt, &s, &observe)?;
            tracing::info!(
                app = %name,
                component = %s.id,
                cache = %load.0,
                load_ms = wasmops_units::millis(load.1),
                "component compiled"
            );
            for r in &s.routes {
                let target = Target {
                    slot: slots.len(),
                    metrics: observe
                        .per_route
                        .then(|| observe.metrics.component(&name, &s.id, &r.label)),
                };
                if router
                    .add(r.host.as_deref(), &r.path, r.prefix, target)
                    .is_err()
                {
                    let shown = match &r.host {
                        Some(h) => format!("{h}{}", r.label),
                        None => r.label.clone(),
                    };
                    return Err(HostError::DuplicateRoute(shown));
                }
                routes += 1;
            }
            slots.push(Slot {
                served: s,
                handler: RwLock::new(handler),
                version: AtomicU64::new(1),
                first_load: load,
                code_bytes,
            });
        }
        Ok(Self {
            name,
            rt: rt.clone(),
            slots: slots.into_boxed_slice(),
            router,
            observe,
            routes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Components served.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Routes served.
    pub fn routes(&self) -> usize {
        self.routes
    }

    /// The served components: `(id, source file)`.
    pub fn components(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.slots
            .iter()
            .map(|s| (s.served.id.as_str(), s.served.source.path()))
    }

    /// How the first load of component `index` went (cache, time).
    pub fn first_load(&self, index: usize) -> Option<&(CacheOutcome, Duration)> {
        self.slots.get(index).map(|s| &s.first_load)
    }

    /// The current handler of component `index`.
    pub fn handler(&self, index: usize) -> Option<HttpHandler> {
        self.slots.get(index).map(Slot::current)
    }

    /// Bytes of compiled code the host holds mapped (what unloading it
    /// gives back, besides a few KiB of bookkeeping).
    pub fn code_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.code_bytes).sum()
    }

    /// The `(component, route)` labels of its per-route series.
    pub fn metric_series(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .flat_map(|s| {
                s.served
                    .routes
                    .iter()
                    .map(|r| (s.served.id.clone(), r.label.clone()))
            })
            .collect()
    }

    /// The most recent guest failure among the current handlers, its
    /// message naming the component when the app has more than one.
    pub fn last_failure(&self) -> Option<wasmops_runtime::http::Failure> {
        let many = self.slots.len() > 1;
        self.slots
            .iter()
            .filter_map(|s| {
                s.current().last_failure().map(|mut f| {
                    if many {
                        f.message = format!("component `{}`: {}", s.served.id, f.message);
                    }
                    f
                })
            })
            .max_by_key(|f| f.at)
    }

    /// Requests served by the current handlers.
    pub fn requests(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.current().stats().requests.load(Ordering::Relaxed))
            .sum()
    }

    /// Loads component `index` again from its source and swaps it in;
    /// returns its new version number. On error the previous version keeps
    /// serving.
    pub fn reload(&self, index: usize) -> Result<u64, HostError> {
        let slot = self
            .slots
            .get(index)
            .ok_or_else(|| HostError::Config(format!("no component {index}")))?;
        let (handler, _, _) = build(&self.rt, &slot.served, &self.observe)?;
        *slot.handler.write().unwrap_or_else(|p| p.into_inner()) = handler;
        Ok(slot.version.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Serves one request: its route's component, or 404.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        let Some((t, params)) = self.router.route_params(host, req.uri().path()) else {
            return self.not_found(&req);
        };
        let mut req = req;
        // The values of `:name` segments, as Spin gives them to components.
        for (name, value) in params {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(
                    format!("spin-path-match-{name}")
                        .to_ascii_lowercase()
                        .as_bytes(),
                ),
                http::HeaderValue::from_str(&value),
            ) {
                req.headers_mut().insert(n, v);
            }
        }
        let h = self.slots[t.slot].current();
        h.handle_routed(req, t.metrics.as_ref()).await
    }

    /// Removes the host's per-route series (when the app goes away).
    pub fn forget_metrics(&self) {
        if !self.observe.per_route {
            return;
        }
        for (component, route) in self.metric_series() {
            self.observe
                .metrics
                .forget_component(&self.name, &component, &route);
        }
    }

    fn not_found<B>(&self, req: &Request<B>) -> Response<Body> {
        wasmops_telemetry::access::AccessRecord {
            method: req.method().as_str(),
            path: req.uri().path(),
            status: 404,
            duration: Duration::ZERO,
            app: &self.name,
            component: "-",
            request_id: "-",
            trace_id: None,
            aborted: false,
        }
        .emit();
        simple(
            StatusCode::NOT_FOUND,
            &format!("no route for {}\n", req.uri().path()),
        )
    }
}

/// The handler of one component, what loading it cost, and its code size.
fn build(
    rt: &Runtime,
    s: &Served,
    observe: &Observe,
) -> Result<(HttpHandler, (CacheOutcome, Duration), usize), HostError> {
    // Load errors name the file already; the others are given it.
    let err = |message: String| HostError::Component {
        id: s.id.clone(),
        message,
    };
    let at = |message: String| err(format!("{}: {message}", s.source.path().display()));
    let loaded = s.source.load(rt).map_err(|e| err(e.to_string()))?;
    observe.metrics.cache_lookup(match &loaded.cache {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Miss => "miss",
        CacheOutcome::Rebuilt(_) => "rebuilt",
        _ => "disabled",
    });
    if loaded.source_kind == wasmops_component::Kind::CoreModule {
        return Err(at(
            "is a core WebAssembly module, not a component; a served component must export `wasi:http/incoming-handler@0.2.x` (for Rust: `--target wasm32-wasip2`)".into(),
        ));
    }
    let metrics = observe.per_route.then(|| {
        let route = s.routes.first().map(|r| r.label.as_str()).unwrap_or("");
        observe.metrics.component(&s.settings.app, &s.id, route)
    });
    let handler = HttpHandler::new(
        rt,
        &loaded.component,
        s.grants.clone(),
        s.settings.clone(),
        metrics,
        observe.tracer.clone(),
    )
    .map_err(|e| match e {
        wasmops_runtime::world::WorldError::NotReusable(_) => HostError::NotReusable {
            id: s.id.clone(),
            message: e.to_string(),
        },
        e => at(format!("{e:#}")),
    })?;
    let code = loaded.component.image_range();
    let code_bytes = (code.end as usize).saturating_sub(code.start as usize);
    Ok((handler, (loaded.cache, loaded.elapsed), code_bytes))
}
