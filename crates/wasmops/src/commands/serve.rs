//! `wasmops serve`: serve a `wasi:http` component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wasmops_runtime::http::{HttpHandler, HttpSettings};
use wasmops_runtime::limits::parse_size;
use wasmops_runtime::load::CacheOutcome;
use wasmops_runtime::{EngineSettings, Runtime};
use wasmops_server::{Admin, ServeOptions};
use wasmops_telemetry::Metrics;
use wasmops_telemetry::trace::{TraceConfig, Tracer};

use crate::options::{EngineArgs, GrantArgs, LimitArgs, PoolArgs, duration, limits, parse_listen};

/// The admin listener's address, or none when `off`.
#[derive(Debug, Clone, Copy)]
pub struct AdminAddr(Option<SocketAddr>);

fn parse_admin(s: &str) -> Result<AdminAddr, String> {
    if s == "off" {
        Ok(AdminAddr(None))
    } else {
        parse_listen(s).map(|a| AdminAddr(Some(a)))
    }
}

/// Serve a `wasi:http` incoming-handler component (the WASI 0.2 proxy world).
/// Every request runs in a fresh instance. HTTP/1.1 with keep-alive and
/// HTTP/2 (h2c) on the same port. SIGINT/SIGTERM stop accepting and let
/// in-flight requests finish for up to --shutdown-grace.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The component to serve (.wasm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, short = 'l', value_name = "ADDR", default_value = "127.0.0.1:3000", value_parser = parse_listen)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Time limit of one request, the guest's work included; 504 beyond.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
    /// Instances running at once; further requests wait in a queue.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_concurrency: usize,
    /// Requests that may wait for an instance; beyond, 503 at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_queue: usize,
    /// Largest request body accepted; 413 beyond.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: u64,
    /// Put error details (trap messages) in 500 response bodies.
    #[arg(long)]
    pub debug_errors: bool,
    /// How long in-flight requests may run after a shutdown signal.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), or `off`. Keep it
    /// on loopback: it is not authenticated.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464", value_parser = parse_admin)]
    pub admin_listen: AdminAddr,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let grants = args.grants.to_grants().map_err(anyhow::Error::msg)?;
    let limits = limits(&args.limits, Some(args.timeout));

    let mut settings = EngineSettings::default();
    args.engine.apply(&mut settings);
    settings.pooling = args.pool.allocator;
    settings.max_memory = args.limits.max_memory;
    settings.memory_keep_resident = args.pool.memory_keep_resident as usize;
    settings.warm_slots = args.pool.warm_slots;
    // The pool holds every instance that may run at once.
    settings.max_instances = u32::try_from(args.max_concurrency)
        .unwrap_or(u32::MAX)
        .max(1);

    let rt = Runtime::new(settings).context("cannot create the WebAssembly engine")?;
    let loaded = rt.load(&args.file)?;
    if loaded.source_kind == wasmops_component::Kind::CoreModule {
        anyhow::bail!(
            "{}: is a core WebAssembly module, not a component; `serve` needs a component that exports `wasi:http/incoming-handler@0.2.x` (for Rust: `--target wasm32-wasip2` with the wasi:http proxy world)",
            args.file.display()
        );
    }
    let metrics = Arc::new(Metrics::new());
    metrics.cache_lookup(match &loaded.cache {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Miss => "miss",
        CacheOutcome::Rebuilt(_) => "rebuilt",
        _ => "disabled",
    });
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    // Metrics are kept only when something can read them.
    let component_metrics = args
        .admin_listen
        .0
        .map(|_| metrics.component(&name, &name, "/"));
    let mut tokio = tokio::runtime::Builder::new_multi_thread();
    // Guests that compute without calling the host yield every epoch tick;
    // checking for I/O and timers every few polls (rather than tokio's
    // default of 61) keeps such guests from delaying accepts, other requests
    // and deadlines by hundreds of milliseconds. The same goes for tasks
    // queued from outside a worker.
    tokio
        .enable_all()
        .event_interval(8)
        .global_queue_interval(8);
    if let Some(n) = args.threads {
        tokio.worker_threads(n.max(1));
    }
    let tokio = tokio.build().context("cannot start the async runtime")?;
    let _enter = tokio.enter();
    let tracer = TraceConfig::from_env(&name)
        .map_err(anyhow::Error::msg)?
        .map(|config| {
            tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, "exporting traces over OTLP");
            Tracer::spawn(config)
        });
    let handler = HttpHandler::new(
        &rt,
        &loaded.component,
        grants,
        HttpSettings {
            limits,
            max_concurrency: args.max_concurrency,
            max_queue: args.max_queue,
            max_body: args.max_body,
            debug_errors: args.debug_errors,
            name: Arc::from(name.as_str()),
        },
        component_metrics,
        tracer.clone(),
    )
    .with_context(|| format!("{}", args.file.display()))?;

    tokio.block_on(async {
        let listener = wasmops_server::bind(args.listen)?;
        let addr = listener.local_addr()?;
        let admin_listener = args.admin_listen.0.map(wasmops_server::bind).transpose()?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stop_admin, mut admin_stopped) = tokio::sync::watch::channel(false);
        let admin_task = match admin_listener {
            Some(al) => {
                let admin_addr = al.local_addr()?;
                eprintln!("wasmops: admin on http://{admin_addr}/");
                let admin = Admin {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                };
                Some(tokio::spawn(wasmops_server::serve(
                    al,
                    move |req| {
                        let r = admin.handle(&req);
                        async move { r }
                    },
                    ServeOptions {
                        shutdown_grace: Duration::from_secs(1),
                        ..ServeOptions::default()
                    },
                    async move {
                        let _ = admin_stopped.wait_for(|s| *s).await;
                    },
                )))
            }
            None => None,
        };
        tracing::info!(
            component = %args.file.display(),
            pooling = rt.pooling(),
            cache = ?loaded.cache,
            load_ms = loaded.elapsed.as_secs_f64() * 1000.0,
            "serving on http://{addr}/"
        );
        eprintln!("wasmops: serving http://{addr}/");
        let options = ServeOptions {
            shutdown_grace: args.shutdown_grace,
            ..ServeOptions::default()
        };
        let h = handler.clone();
        // The accept loop runs on a worker, so connection tasks start in
        // that worker's local queue rather than the global one.
        let summary = tokio::spawn(wasmops_server::serve(
            listener,
            move |req| {
                let h = h.clone();
                async move { h.handle(req).await }
            },
            options,
            {
                let ready = ready.clone();
                ready.store(true, Ordering::Release);
                async move {
                    wasmops_server::shutdown_signal().await;
                    ready.store(false, Ordering::Release);
                }
            },
        ))
        .await
        .context("the server task failed")??;
        if let Some(t) = &tracer {
            t.flush(Duration::from_secs(5)).await;
        }
        let _ = stop_admin.send(true);
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        let stats = handler.stats();
        tracing::info!(
            connections = summary.connections,
            abandoned = summary.abandoned,
            requests = stats.requests.load(Ordering::Relaxed),
            mean_instantiate_us = stats.mean_instantiate_micros(),
            "stopped"
        );
        anyhow::Ok(())
    })?;
    Ok(0)
}
