//! `wasmops up`: serve every route of an app described by `wasmops.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use wasmops_app::{AppHost, ManifestOptions, Observe};
use wasmops_manifest::{App, ComponentSpec};
use wasmops_runtime::{EngineSettings, Runtime};
use wasmops_telemetry::Metrics;

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
    pub source: crate::sources::SourceArgs,
    /// Reload a component when its `.wasm` changes; requests in flight finish
    /// on the version they started on.
    #[arg(long)]
    pub watch: bool,
    /// Check the app (manifest, variables, components) and exit.
    #[arg(long)]
    pub check: bool,
    /// With --check: `json` prints the verdict as one JSON document.
    #[command(flatten)]
    pub format: crate::options::FormatArg,
    /// Do not build components whose sources changed (by default, stale
    /// components with a build recipe are built first, and rebuilt under
    /// --watch when their sources change).
    #[arg(long)]
    pub no_build: bool,
    /// A Spin runtime-config file: `[key_value_store.LABEL]` with `type =
    /// "spin"` (embedded, `path` optional) or `type = "redis"` and `url`
    /// sets where that store keeps its data.
    #[arg(long, value_name = "FILE")]
    pub runtime_config_file: Option<PathBuf>,
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

pub fn run(args: &UpArgs) -> anyhow::Result<i32> {
    if !(args.check && args.format.json()) {
        return up(args);
    }
    // `--check --format json`: the verdict on stdout either way.
    up(args).inspect_err(|e| {
        crate::options::print_json(&serde_json::json!({
            "app": args.app.display().to_string(),
            "valid": false,
            "error": crate::error_line(e),
        }));
    })
}

fn up(args: &UpArgs) -> anyhow::Result<i32> {
    // A reference is pulled (signature policy included) and unpacked; its
    // components are built already, and its state lives outside the store.
    if let Some((dir, digest)) = crate::sources::app_source(&args.app, &args.source)? {
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
            source: crate::sources::SourceArgs::default(),
            ..args.clone()
        };
        return run(&args);
    }
    let mut app = load_app(&args.app)?;
    crate::sources::resolve_dependencies(&mut app, &args.source)?;
    if let Some(file) = &args.runtime_config_file {
        wasmops_manifest::apply_runtime_config(&mut app, file)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // The listeners before building and compiling: a taken port is
    // reported at once.
    if args.watch && args.server.workers.is_some_and(|n| n > 1) {
        anyhow::bail!(
            "--watch reloads one process: it cannot be combined with --workers; drop one of them"
        );
    }
    let tokio = hosting::tokio_runtime(args.server.threads())?;
    let _enter = tokio.enter();
    let mut bound = if args.check {
        None
    } else {
        Some(
            hosting::Listeners {
                listen: args.server.listen,
                admin: args.server.admin(),
                admin_required: args.server.admin_asked(),
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
            let results = crate::progress::build_with_progress(
                &app,
                Some(&stale),
                &wasmops_build::Options::default(),
            );
            for r in results {
                if let Err(e) = r.result {
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
    // Outbound hosts and templates are checked before anything compiles.
    for c in &app.components {
        wasmops_app::manifest::component_grants(&app, c, &vars)?;
    }
    // Built and checked once: the workers compile and serve. Settings
    // about one process keep it one: reloading, the app's memory budget, a
    // component's concurrency limit or instance reuse.
    let one_process = args.watch
        || app.memory_budget.is_some()
        || app
            .components
            .iter()
            .any(|c| c.limits.concurrency.is_some() || c.instance_reuse.is_some());
    let (largest, smallest, total) = wasmops_app::manifest::sizing(&app);
    if let Some(n) = args.server.supervise(one_process, largest)
        && let Some(bound) = bound.take()
    {
        return wasmops_server::workers::supervise(&tokio, bound, n, crate::sources::worker_env());
    }

    let mut settings = EngineSettings::default();
    args.server.engine.apply(&mut settings);
    settings.pooling = args.server.pool.allocator;
    settings.max_memory = largest;
    settings.memory_keep_resident = args.server.pool.memory_keep_resident as usize;
    settings.warm_slots = args.server.pool.warm_slots;
    let budget = args.server.memory_budget(app.memory_budget, largest)?;
    // Room for every component at full concurrency, and as much again for
    // old versions finishing their requests during a reload; no more slots
    // than the memory budget can cover at once.
    let by_budget = usize::try_from(budget.bytes() / smallest).unwrap_or(usize::MAX);
    settings.max_instances = u32::try_from(
        total
            .saturating_mul(if args.watch { 2 } else { 1 })
            .min(by_budget.max(1)),
    )
    .unwrap_or(u32::MAX)
    .clamp(1, 20_000);
    let rt = Arc::new(Runtime::new(settings).context("cannot create the WebAssembly engine")?);

    let metrics = Arc::new(Metrics::new());
    let tracer = if args.check {
        None
    } else {
        hosting::tracer(&app.name)?
    };
    let options = ManifestOptions {
        name: None,
        state_dir: args.state_dir.clone(),
        open_stores: !args.check,
        max_queue: args.max_queue,
        max_body: args.server.max_body,
        body_timeout: args.server.body_timeout,
        debug_errors: args.server.debug_errors,
        budget: Some(budget.clone()),
        stored_sources: false,
    };
    let observe = Observe {
        metrics: metrics.clone(),
        per_route: args.server.admin().is_some(),
        tracer: tracer.clone(),
    };
    let started = Instant::now();
    let progress = crate::progress::spinner(&format!(
        "compiling {} component{} of {}",
        app.components.len(),
        if app.components.len() == 1 { "" } else { "s" },
        app.name
    ));
    let host = tokio.block_on(wasmops_app::from_manifest(
        &rt, &app, &vars, &options, observe,
    ));
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let host = host?;
    if args.check && args.format.json() {
        let components: Vec<serde_json::Value> = app
            .components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "source": c.source.display().to_string(),
                    "routes": c.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        crate::options::print_json(&serde_json::json!({
            "app": app.name,
            "valid": true,
            "routes": host.routes(),
            "components": components,
        }));
        return Ok(0);
    }
    if args.check {
        let (n, routes) = (host.len(), host.routes());
        println!(
            "app `{}` is valid: {n} component{}, {routes} route{}",
            app.name,
            if n == 1 { "" } else { "s" },
            if routes == 1 { "" } else { "s" }
        );
        return Ok(0);
    }
    let host = Arc::new(host);
    tracing::info!(
        app = %app.name,
        components = host.len(),
        routes = host.routes(),
        load_ms = wasmops_units::millis(started.elapsed()),
        "app loaded"
    );

    tokio.block_on(async {
        let (stop_watch, watch_stopped) = tokio::sync::watch::channel(false);
        let watcher = args.watch.then(|| {
            tokio::spawn(watch(
                host.clone(),
                app.clone(),
                !args.no_build,
                watch_stopped,
            ))
        });
        let handler = {
            let host = host.clone();
            move |req: http::Request<hyper::body::Incoming>| {
                let host = host.clone();
                async move { host.handle(req).await }
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
        let requests = host.requests();
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

/// A file's identity for change detection.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A watched value that counts as changed once it differs from the one in
/// use and then stays the same for one more look, so that a file still
/// being written is not taken half way.
struct Settling<T> {
    current: T,
    pending: Option<T>,
}

impl<T: PartialEq> Settling<T> {
    fn new(current: T) -> Self {
        Self {
            current,
            pending: None,
        }
    }

    /// Whether `now` is a settled change; it is then the value in use.
    fn settled(&mut self, now: T) -> bool {
        if now == self.current {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return false;
        }
        self.pending = None;
        self.current = now;
        true
    }
}

/// Watches the served components' files (and, with `rebuild`, their
/// sources): a file that changed and then stayed the same for one period is
/// loaded and its component swapped in. What they are now is taken when
/// this is called, before the server answers anything, so that a change
/// made as soon as the first answer arrives is seen as one; the returned
/// future then looks every 200 ms.
fn watch(
    host: Arc<AppHost>,
    app: App,
    rebuild: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let manifest = app.manifest_path.clone();
    // The served components' specs, in the host's order.
    let slots: Vec<ComponentSpec> = host
        .components()
        .filter_map(|(id, _)| app.components.iter().find(|c| c.id == id).cloned())
        .collect();
    let app = Arc::new(app);
    // Sources of components with a build recipe: rebuilt when they change;
    // the new output is then picked up like any changed `.wasm`.
    let mut inputs: Vec<_> = slots
        .iter()
        .map(|s| Settling::new(rebuild.then(|| wasmops_build::inputs_stamp(s)).flatten()))
        .collect();
    let mut building: Vec<Option<tokio::task::JoinHandle<()>>> =
        (0..slots.len()).map(|_| None).collect();
    const PERIOD: Duration = Duration::from_millis(200);
    let mut loaded: Vec<_> = slots
        .iter()
        .map(|s| Settling::new(stamp(&s.source)))
        .collect();
    let manifest_stamp = stamp(&manifest);
    let mut manifest_warned = false;
    tracing::info!(
        components = slots.len(),
        "watching the components' files for changes"
    );
    async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                if inputs[i].current.is_none()
                    || building[i].as_ref().is_some_and(|b| !b.is_finished())
                    || !inputs[i].settled(wasmops_build::inputs_stamp(slot))
                {
                    continue;
                }
                let app = app.clone();
                let spec = slot.clone();
                building[i] = Some(tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    match wasmops_build::build_component(&app, &spec, false) {
                        Ok(outcome) => tracing::info!(
                            component = %spec.id,
                            outcome = ?outcome,
                            build_ms = wasmops_units::millis(started.elapsed()),
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
                let now = stamp(&slot.source);
                if now.is_none() {
                    // Gone (being replaced?): nothing to load yet.
                    loaded[i].pending = None;
                    continue;
                }
                if !loaded[i].settled(now) {
                    continue;
                }
                let started = Instant::now();
                let h = host.clone();
                let result = tokio::task::spawn_blocking(move || h.reload(i)).await;
                match result {
                    Ok(Ok(version)) => tracing::info!(
                        component = %slot.id,
                        version,
                        reload_ms = wasmops_units::millis(started.elapsed()),
                        "component reloaded"
                    ),
                    Ok(Err(e)) => tracing::error!(
                        component = %slot.id,
                        error = %e,
                        "reload failed; the previous version keeps serving"
                    ),
                    Err(e) => tracing::error!(component = %slot.id, error = %e, "reload failed"),
                }
            }
        }
    }
}
