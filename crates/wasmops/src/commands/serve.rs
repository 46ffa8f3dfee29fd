//! `wasmops serve`: serve a `wasi:http` component.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wasmops_app::{AppHost, HostError, Observe, RouteSpec, Served, Source};
use wasmops_runtime::http::HttpSettings;
use wasmops_runtime::{EngineSettings, Runtime};
use wasmops_telemetry::Metrics;

use crate::options::{GrantArgs, LimitArgs, ServerArgs, limits, nonzero_duration, positive};
use wasmops_server::hosting;

/// Serve a `wasi:http` incoming-handler component (the WASI 0.2 proxy world).
/// Every request runs in a fresh instance. HTTP/1.1 with keep-alive and
/// HTTP/2 (h2c) on the same port. SIGINT/SIGTERM stop accepting and let
/// in-flight requests finish for up to --shutdown-grace.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The component to serve (.wasm), or a reference:
    /// `HOST[:PORT]/REPO[:TAG]` or `oci-layout:PATH[:TAG]`.
    #[arg(value_name = "FILE|REF")]
    pub file: PathBuf,
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Time limit of one request, the guest's work included; 504 beyond.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = nonzero_duration)]
    pub timeout: Duration,
    /// Instances running at once; further requests wait in a queue
    /// [default: 256; per worker process when serving from several].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_concurrency: Option<usize>,
    /// Requests that may wait for an instance; beyond, 503 at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_queue: usize,
    /// Opt-in instance reuse: an instance serves up to N requests, one at a
    /// time, then is discarded; what the guest keeps in memory carries over
    /// between them (see docs/reuse.md). Off by default: a fresh instance
    /// per request. A trap or a timeout always discards the instance.
    #[arg(long, value_name = "N")]
    pub instance_reuse: Option<std::num::NonZeroU32>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Instances running at once when --max-concurrency is not given.
const DEFAULT_CONCURRENCY: usize = 256;

pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let grants = args.grants.to_grants().map_err(anyhow::Error::msg)?;
    let limits = limits(&args.limits, Some(args.timeout));

    let mut settings = EngineSettings::default();
    args.server.engine.apply(&mut settings);
    settings.pooling = args.server.pool.allocator;
    settings.max_memory = args.limits.max_memory;
    settings.memory_keep_resident = args.server.pool.memory_keep_resident as usize;
    settings.warm_slots = args.server.pool.warm_slots;
    let budget = args.server.memory_budget(None, args.limits.max_memory)?;
    // The pool holds every instance that may run at once: no more than the
    // concurrency, nor than the memory budget can cover.
    let by_budget = (budget.bytes() / args.limits.max_memory).max(1);
    let max_concurrency = args.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    settings.max_instances = u32::try_from((max_concurrency as u64).min(by_budget))
        .unwrap_or(u32::MAX)
        .max(1);

    // The listeners first: a taken port is reported before compiling.
    let tokio = hosting::tokio_runtime(args.server.threads())?;
    let bound = {
        let _enter = tokio.enter();
        hosting::Listeners {
            listen: args.server.listen,
            admin: args.server.admin(),
            admin_required: args.server.admin_asked(),
            shutdown_grace: args.server.shutdown_grace,
        }
        .bind()?
    };
    // A file, or a reference (a registry, or `oci-layout:PATH:TAG`), pulled
    // once: worker processes read what the supervisor pulled.
    let pulled = crate::sources::read_source(&args.file, &args.source)?;
    // Concurrency and reuse are set for one process: they keep it one.
    let one_process = args.max_concurrency.is_some() || args.instance_reuse.is_some();
    if let Some(n) = args.server.supervise(one_process, args.limits.max_memory) {
        if let Some(bytes) = &pulled {
            crate::sources::hand_down_component(&args.file, bytes)?;
        }
        return wasmops_server::workers::supervise(&tokio, bound, n, crate::sources::worker_env());
    }
    let rt = Arc::new(Runtime::new(settings).context("cannot create the WebAssembly engine")?);
    let source = match pulled {
        Some(bytes) => Source::Bytes {
            name: args.file.clone(),
            bytes: bytes.into(),
        },
        None => Source::File(args.file.clone()),
    };
    let metrics = Arc::new(Metrics::new());
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    let _enter = tokio.enter();
    let tracer = hosting::tracer(&name)?;
    // The one-component app: everything goes to it.
    let served = Served {
        id: name.clone(),
        source,
        routes: vec![RouteSpec::everything()],
        grants,
        settings: HttpSettings {
            limits,
            max_concurrency,
            max_queue: args.max_queue,
            max_body: args.server.max_body,
            body_timeout: args.server.body_timeout,
            body_buffer: wasmops_runtime::http::DEFAULT_BODY_BUFFER,
            memory_budget: Some(budget.clone()),
            debug_errors: args.server.debug_errors,
            name: Arc::from(name.as_str()),
            app: Arc::from(name.as_str()),
            instance_reuse: args.instance_reuse,
        },
    };
    let observe = Observe {
        metrics: metrics.clone(),
        // Metrics are kept only when something can read them.
        per_route: args.server.admin().is_some(),
        tracer: tracer.clone(),
    };
    let progress = crate::progress::spinner(&format!("compiling {name}"));
    let host = AppHost::new(&rt, &name, vec![served], observe);
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let host = match host {
        Ok(h) => Arc::new(h),
        // One component: the message names its file, no id is needed.
        Err(HostError::Component { message, .. }) => anyhow::bail!("{message}"),
        Err(HostError::NotReusable { message, .. }) => {
            anyhow::bail!("--instance-reuse: {message}; drop the flag")
        }
        Err(e) => return Err(e.into()),
    };
    let (cache, load_time) = host
        .first_load(0)
        .cloned()
        .context("internal: nothing loaded")?;

    tokio.block_on(async {
        let h = host.clone();
        let summary = hosting::serve_until_signal(
            bound,
            metrics,
            tracer,
            move |req| {
                let h = h.clone();
                async move { h.handle(req).await }
            },
            |addr| {
                tracing::info!(
                    component = %args.file.display(),
                    pooling = rt.pooling(),
                    memory_budget = budget.bytes(),
                    dirty_page_reset = rt.dirty_page_reset(),
                    cache = %cache,
                    load_ms = wasmops_units::millis(load_time),
                    "serving on http://{addr}/"
                );
            },
        )
        .await?;
        let handler = host.handler(0).context("internal: no handler")?;
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
