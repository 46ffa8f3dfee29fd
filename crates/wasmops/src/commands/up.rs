//! `wasmops up`: serve every route of an app described by `wasmops.toml`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use wasmops_manifest::{App, ComponentSpec, KvBackend, ResolvedVariable};
use wasmops_runtime::http::{HttpHandler, HttpSettings, simple};
use wasmops_runtime::kv::{Durability, KvAccess, KvStore};
use wasmops_runtime::load::CacheOutcome;
use wasmops_runtime::{DirGrant, EngineSettings, Grants, Limits, OutboundRule, Runtime};
use wasmops_server::router::Router;
use wasmops_telemetry::trace::Tracer;
use wasmops_telemetry::{ComponentMetrics, Metrics};

use crate::options::ServerArgs;
use wasmops_server::hosting;

/// Serve an app: every component of its `wasmops.toml` behind its routes,
/// with the key-value stores, variables, files and outbound hosts the
/// manifest grants. Every request runs in a fresh instance.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// The app: a directory holding `wasmops.toml`, the manifest itself, or
    /// a reference to an app artifact (`HOST[:PORT]/REPO[:TAG]`,
    /// `oci-layout:PATH[:TAG]`).
    #[arg(value_name = "DIR|FILE|REF", default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub source: super::oci::SourceArgs,
    /// Reload a component when its `.wasm` changes; requests in flight finish
    /// on the version they started on.
    #[arg(long)]
    pub watch: bool,
    /// Check the app (manifest, variables, components) and exit.
    #[arg(long)]
    pub check: bool,
    /// Do not build components whose sources changed (by default, stale
    /// components with a build recipe are built first, and rebuilt under
    /// --watch when their sources change).
    #[arg(long)]
    pub no_build: bool,
    /// Where the app keeps its state (embedded key-value stores) [default:
    /// DIR/.wasmops; for a reference, $XDG_STATE_HOME/wasmops/apps/NAME].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Requests that may wait for an instance, per component; beyond, 503 at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_queue: usize,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `$XDG_STATE_HOME`, else `~/.local/state`.
fn default_state_home() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".local/state")
        })
}

/// One component's current version. Requests take a clone of the handler
/// and keep it to the end, so a swap never disturbs requests in flight.
struct Slot {
    spec: ComponentSpec,
    handler: RwLock<HttpHandler>,
    version: AtomicU64,
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

/// How to build a component's handler again, for reloads.
struct Builder {
    rt: Runtime,
    app: Arc<str>,
    grants: HashMap<String, Grants>,
    settings: HashMap<String, HttpSettings>,
    metrics: HashMap<String, ComponentMetrics>,
    tracer: Option<Tracer>,
    /// Where artifact-cache lookups are counted.
    process_metrics: Arc<Metrics>,
}

impl Builder {
    fn build(&self, spec: &ComponentSpec) -> anyhow::Result<HttpHandler> {
        let loaded = self.rt.load(&spec.source)?;
        self.process_metrics.cache_lookup(match &loaded.cache {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Rebuilt(_) => "rebuilt",
            _ => "disabled",
        });
        if loaded.source_kind == wasmops_component::Kind::CoreModule {
            anyhow::bail!(
                "component `{}` ({}): is a core WebAssembly module, not a component; an app's components must export `wasi:http/incoming-handler@0.2.x` (for Rust: `--target wasm32-wasip2`)",
                spec.id,
                spec.source.display()
            );
        }
        HttpHandler::new(
            &self.rt,
            &loaded.component,
            self.grants[&spec.id].clone(),
            self.settings[&spec.id].clone(),
            self.metrics.get(&spec.id).cloned(),
            self.tracer.clone(),
        )
        .with_context(|| format!("component `{}` ({})", spec.id, spec.source.display()))
    }
}

pub fn run(args: &UpArgs) -> anyhow::Result<i32> {
    // A reference is pulled (signature policy included) and unpacked; its
    // components are built already, and its state lives outside the store.
    if let Some((dir, digest)) = super::oci::app_source(&args.app, &args.source)? {
        let app = load_app(&dir)?;
        tracing::info!(reference = %args.app.display(), %digest, "app pulled");
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(|| default_state_home().join("wasmops/apps").join(&app.name));
        let args = UpArgs {
            app: dir,
            watch: false,
            no_build: true,
            state_dir: Some(state_dir),
            source: super::oci::SourceArgs::default(),
            ..args.clone()
        };
        return run(&args);
    }
    let app = load_app(&args.app)?;
    // The listeners before building and compiling: a taken port is
    // reported at once.
    let tokio = hosting::tokio_runtime(args.server.threads)?;
    let _enter = tokio.enter();
    let bound = if args.check {
        None
    } else {
        Some(
            hosting::Listeners {
                listen: args.server.listen,
                admin: args.server.admin_listen.0,
                shutdown_grace: args.server.shutdown_grace,
            }
            .bind()?,
        )
    };
    if !args.no_build && !args.check {
        let stale: Vec<String> = app
            .components
            .iter()
            .filter(|c| wasmops_build::needs_build(&app, c))
            .map(|c| c.id.clone())
            .collect();
        if !stale.is_empty() {
            let results = super::build::build_with_progress(
                &app,
                Some(&stale),
                &wasmops_build::Options::default(),
            );
            for (_, r) in results {
                if let Err(e) = r {
                    if let Some(out) = e.output() {
                        eprintln!("{out}");
                    }
                    return Err(e.into());
                }
            }
        }
    }
    let vars = app
        .resolve_variables(&|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut grants = HashMap::new();
    for c in &app.components {
        grants.insert(c.id.clone(), component_grants(&app, c, &vars)?);
    }

    let mut settings = EngineSettings::default();
    args.server.engine.apply(&mut settings);
    settings.pooling = args.server.pool.allocator;
    settings.max_memory = app
        .components
        .iter()
        .map(|c| c.limits.memory_or_default())
        .max()
        .unwrap_or(wasmops_manifest::DEFAULT_MEMORY);
    settings.memory_keep_resident = args.server.pool.memory_keep_resident as usize;
    settings.warm_slots = args.server.pool.warm_slots;
    // Room for every component at full concurrency, and as much again for
    // old versions finishing their requests during a reload.
    let total: usize = app
        .components
        .iter()
        .map(|c| c.limits.concurrency_or_default())
        .sum();
    let largest = settings.max_memory;
    let smallest = app
        .components
        .iter()
        .map(|c| c.limits.memory_or_default())
        .min()
        .unwrap_or(largest)
        .max(1);
    let budget = args.server.memory_budget(app.memory_budget, largest)?;
    // No more slots than the memory budget can cover at once.
    let by_budget = usize::try_from(budget.bytes() / smallest).unwrap_or(usize::MAX);
    settings.max_instances = u32::try_from(
        total
            .saturating_mul(if args.watch { 2 } else { 1 })
            .min(by_budget.max(1)),
    )
    .unwrap_or(u32::MAX)
    .clamp(1, 20_000);
    let rt = Runtime::new(settings).context("cannot create the WebAssembly engine")?;

    let app_name: Arc<str> = Arc::from(app.name.as_str());
    let metrics = Arc::new(Metrics::new());
    let metrics_on = args.server.admin_listen.0.is_some();

    let tracer = if args.check {
        None
    } else {
        hosting::tracer(&app.name)?
    };

    if !args.check {
        let stores = tokio.block_on(open_stores(&app, args.state_dir.as_deref()))?;
        for c in &app.components {
            let access = KvAccess::new(
                c.key_value_stores
                    .iter()
                    .filter_map(|l| stores.get(l).cloned()),
            );
            if let Some(g) = grants.get_mut(&c.id) {
                g.key_value = access;
            }
        }
    }

    let mut builder = Builder {
        rt,
        app: app_name.clone(),
        grants,
        settings: HashMap::new(),
        metrics: HashMap::new(),
        tracer: tracer.clone(),
        process_metrics: metrics.clone(),
    };
    for c in &app.components {
        builder.settings.insert(
            c.id.clone(),
            HttpSettings {
                limits: Limits {
                    max_memory: c.limits.memory_or_default(),
                    timeout: Some(c.limits.timeout_or_default()),
                    ..Limits::default()
                },
                max_concurrency: c.limits.concurrency_or_default(),
                max_queue: args.max_queue,
                max_body: args.server.max_body,
                body_timeout: args.server.body_timeout,
                body_buffer: wasmops_runtime::http::DEFAULT_BODY_BUFFER,
                memory_budget: Some(budget.clone()),
                debug_errors: args.server.debug_errors,
                name: Arc::from(c.id.as_str()),
                app: builder.app.clone(),
            },
        );
        if metrics_on {
            let route = c.routes.first().map(|r| r.to_string()).unwrap_or_default();
            builder
                .metrics
                .insert(c.id.clone(), metrics.component(&app.name, &c.id, &route));
        }
    }

    let started = Instant::now();
    let mut slots = Vec::new();
    let mut router = Router::new();
    let mut routes = 0;
    for c in &app.components {
        let t = Instant::now();
        if c.routes.is_empty() {
            // Not served (e.g. a command): checked, but given no handler.
            let loaded = builder.rt.load(&c.source)?;
            drop(loaded);
            tracing::info!(component = %c.id, "component has no route; not served");
            continue;
        }
        let handler = builder.build(c)?;
        tracing::debug!(component = %c.id, load_ms = t.elapsed().as_secs_f64() * 1000.0, "component ready");
        for r in &c.routes {
            let target = Target {
                slot: slots.len(),
                metrics: metrics_on.then(|| metrics.component(&app.name, &c.id, &r.to_string())),
            };
            if router
                .add(r.host.as_deref(), &r.path, r.prefix, target)
                .is_err()
            {
                anyhow::bail!("route `{r}` is declared twice");
            }
            routes += 1;
        }
        slots.push(Slot {
            spec: c.clone(),
            handler: RwLock::new(handler),
            version: AtomicU64::new(1),
        });
    }
    if args.check {
        println!(
            "app `{}` is valid: {} component{}, {routes} route{}",
            app.name,
            slots.len(),
            if slots.len() == 1 { "" } else { "s" },
            if routes == 1 { "" } else { "s" }
        );
        return Ok(0);
    }

    let slots: Arc<[Slot]> = slots.into();
    let router = Arc::new(router);
    let builder = Arc::new(builder);
    tracing::info!(
        app = %app.name,
        components = slots.len(),
        routes,
        load_ms = started.elapsed().as_secs_f64() * 1000.0,
        "app loaded"
    );

    tokio.block_on(async {
        let (stop_watch, watch_stopped) = tokio::sync::watch::channel(false);
        let watcher = args.watch.then(|| {
            tokio::spawn(watch(
                slots.clone(),
                builder.clone(),
                app.clone(),
                !args.no_build,
                watch_stopped,
            ))
        });
        let handler = {
            let slots = slots.clone();
            let router = router.clone();
            let app_name = app_name.clone();
            move |req: http::Request<hyper::body::Incoming>| {
                let slots = slots.clone();
                let router = router.clone();
                let app_name = app_name.clone();
                async move {
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .or_else(|| req.uri().host());
                    match router.route(host, req.uri().path()) {
                        Some(t) => {
                            let h = slots[t.slot].current();
                            h.handle_routed(req, t.metrics.as_ref()).await
                        }
                        None => not_found(&app_name, &req),
                    }
                }
            }
        };
        let Some(bound) = bound else {
            anyhow::bail!("internal: no listener was bound");
        };
        let summary =
            hosting::serve_until_signal(bound, metrics.clone(), tracer, handler, |addr| {
                tracing::info!(app = %app.name, watch = args.watch, "serving on http://{addr}/");
            })
            .await?;
        let _ = stop_watch.send(true);
        if let Some(w) = watcher {
            let _ = w.await;
        }
        let requests: u64 = slots
            .iter()
            .map(|s| s.current().stats().requests.load(Ordering::Relaxed))
            .sum();
        tracing::info!(
            connections = summary.connections,
            abandoned = summary.abandoned,
            requests,
            "stopped"
        );
        anyhow::Ok(())
    })?;
    Ok(0)
}

fn load_app(path: &Path) -> anyhow::Result<App> {
    // Outbound hosts are checked with the runtime's own grammar (shared
    // through wasmops-units), as `check`, `build` and `push` do.
    wasmops_manifest::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Replaces `{{ name }}` with the variable's value.
fn expand(template: &str, vars: &[ResolvedVariable]) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut secret = false;
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        let name = after[..end].trim();
        let var = vars
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| format!("`{template}` uses variable `{name}`, which has no value; declare it in [variables] and give it a value"))?;
        secret |= var.secret;
        out.push_str(&var.value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok((out, secret))
}

/// What the manifest grants one component.
fn component_grants(
    app: &App,
    c: &ComponentSpec,
    vars: &[ResolvedVariable],
) -> anyhow::Result<Grants> {
    let mut outbound = Vec::new();
    for h in &c.allowed_outbound_hosts {
        let (spec, secret) = expand(h, vars).map_err(|e| {
            anyhow::anyhow!("{}: component `{}`: {e}", app.manifest_path.display(), c.id)
        })?;
        let rule = OutboundRule::parse(&spec).map_err(|e| {
            let shown = if secret {
                format!("allowed outbound host `{h}` (from a secret variable) is invalid")
            } else {
                e
            };
            anyhow::anyhow!(
                "{}: component `{}`: {shown}",
                app.manifest_path.display(),
                c.id
            )
        })?;
        outbound.push(rule);
    }
    let config = wasmops_runtime::grants::ConfigVars::new(
        vars.iter()
            .filter(|v| c.variables.contains(&v.name))
            .map(|v| (v.name.clone(), v.value.clone())),
    );
    Ok(Grants {
        dirs: c
            .files
            .iter()
            .map(|f| DirGrant {
                host: f.source.clone(),
                guest: f.destination.clone(),
                read_only: true,
            })
            .collect(),
        env: c.environment.clone(),
        outbound_http: outbound,
        config,
        ..Grants::default()
    })
}

/// Opens every store of the app. Stores are the app's own: embedded ones
/// live in its state directory, Redis keys carry the app's name.
async fn open_stores(
    app: &App,
    state_dir: Option<&Path>,
) -> anyhow::Result<HashMap<String, KvStore>> {
    let mut stores = HashMap::new();
    for s in &app.key_value {
        let store = match &s.backend {
            KvBackend::Embedded { path, durability } => {
                let default = app.state_dir().join("kv").join(format!("{}.db", s.label));
                let path = match state_dir {
                    Some(d) if *path == default => d.join("kv").join(format!("{}.db", s.label)),
                    _ => path.clone(),
                };
                let durability = match durability {
                    wasmops_manifest::Durability::Process => Durability::Process,
                    wasmops_manifest::Durability::Fsync => Durability::Fsync,
                };
                KvStore::open_embedded(&s.label, &path, durability)?
            }
            KvBackend::Redis { url } => {
                KvStore::open_redis(&s.label, url, format!("{}:{}:", app.name, s.label)).await?
            }
        };
        stores.insert(s.label.clone(), store);
    }
    Ok(stores)
}

fn not_found(
    app: &str,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<wasmops_runtime::http::Body> {
    wasmops_telemetry::access::AccessRecord {
        method: req.method().as_str(),
        path: req.uri().path(),
        status: 404,
        duration: std::time::Duration::ZERO,
        app,
        component: "-",
        request_id: "-",
        trace_id: None,
        aborted: false,
    }
    .emit();
    simple(
        http::StatusCode::NOT_FOUND,
        &format!("no route for {}\n", req.uri().path()),
    )
}

/// A file's identity for change detection.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls the components' files; a file that changed and then stayed the
/// same for one period is loaded, and its component swapped in.
async fn watch(
    slots: Arc<[Slot]>,
    builder: Arc<Builder>,
    app: App,
    rebuild: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let manifest = app.manifest_path.clone();
    let app = Arc::new(app);
    // Sources of components with a build recipe: rebuilt when they change;
    // the new output is then picked up like any changed `.wasm`.
    let mut inputs: Vec<_> = slots
        .iter()
        .map(|s| {
            rebuild
                .then(|| wasmops_build::inputs_stamp(&s.spec))
                .flatten()
        })
        .collect();
    let mut inputs_pending: Vec<_> = vec![None; slots.len()];
    let mut building: Vec<Option<tokio::task::JoinHandle<()>>> =
        (0..slots.len()).map(|_| None).collect();
    const PERIOD: Duration = Duration::from_millis(200);
    let mut loaded: Vec<Option<(SystemTime, u64)>> =
        slots.iter().map(|s| stamp(&s.spec.source)).collect();
    let mut pending: Vec<Option<(SystemTime, u64)>> = vec![None; slots.len()];
    let manifest_stamp = stamp(&manifest);
    let mut manifest_warned = false;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        components = slots.len(),
        "watching the components' files for changes"
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !manifest_warned && stamp(&manifest) != manifest_stamp {
            manifest_warned = true;
            tracing::warn!(manifest = %manifest.display(), "the manifest changed; restart `wasmops up` to apply it (only components' files are reloaded)");
        }
        for (i, slot) in slots.iter().enumerate() {
            if inputs[i].is_none() || building[i].as_ref().is_some_and(|b| !b.is_finished()) {
                continue;
            }
            let now = wasmops_build::inputs_stamp(&slot.spec);
            if now == inputs[i] {
                inputs_pending[i] = None;
                continue;
            }
            if inputs_pending[i] != now {
                inputs_pending[i] = now;
                continue;
            }
            inputs_pending[i] = None;
            inputs[i] = now;
            let app = app.clone();
            let spec = slot.spec.clone();
            building[i] = Some(tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                match wasmops_build::build_component(&app, &spec, false) {
                    Ok(outcome) => tracing::info!(
                        component = %spec.id,
                        outcome = ?outcome,
                        build_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "sources changed: component rebuilt"
                    ),
                    Err(e) => tracing::error!(
                        component = %spec.id,
                        error = %e,
                        output = e.output().unwrap_or(""),
                        "sources changed: the build failed; the previous version keeps serving"
                    ),
                }
            }));
        }
        for (i, slot) in slots.iter().enumerate() {
            let now = stamp(&slot.spec.source);
            if now.is_none() || now == loaded[i] {
                pending[i] = None;
                continue;
            }
            if pending[i] != now {
                // Changed since the last look: wait until it settles.
                pending[i] = now;
                continue;
            }
            pending[i] = None;
            loaded[i] = now;
            let started = Instant::now();
            let b = builder.clone();
            let spec = slot.spec.clone();
            let result = tokio::task::spawn_blocking(move || b.build(&spec)).await;
            match result {
                Ok(Ok(handler)) => {
                    *slot.handler.write().unwrap_or_else(|p| p.into_inner()) = handler;
                    let version = slot.version.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::info!(
                        component = %slot.spec.id,
                        version,
                        reload_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "component reloaded"
                    );
                }
                Ok(Err(e)) => tracing::error!(
                    component = %slot.spec.id,
                    error = %crate::error_line(&e),
                    "reload failed; the previous version keeps serving"
                ),
                Err(e) => tracing::error!(component = %slot.spec.id, error = %e, "reload failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_templates() {
        let vars = vec![
            ResolvedVariable {
                name: "up".into(),
                value: "http://127.0.0.1:8080".into(),
                secret: false,
            },
            ResolvedVariable {
                name: "key".into(),
                value: "s3cret".into(),
                secret: true,
            },
        ];
        assert_eq!(
            expand("{{ up }}", &vars).unwrap(),
            ("http://127.0.0.1:8080".into(), false)
        );
        assert_eq!(
            expand("https://{{key}}.example.com", &vars).unwrap(),
            ("https://s3cret.example.com".into(), true)
        );
        assert!(expand("{{ nope }}", &vars).unwrap_err().contains("nope"));
        assert!(expand("{{ up", &vars).is_err());
    }
}
