//! What every server command shares: the async runtime, the admin
//! listener, the serving loop until a signal, and the tracer's last flush.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hyper::body::Incoming;

use crate::{Admin, BoxError, ServeOptions, ServeSummary};
use wasmops_telemetry::Metrics;
use wasmops_telemetry::trace::{TraceConfig, Tracer};

/// The multi-threaded runtime servers run on.
pub fn tokio_runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
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
    if let Some(n) = threads {
        tokio.worker_threads(n.max(1));
    }
    tokio.build().context("cannot start the async runtime")
}

/// The OTLP tracer configured by the `OTEL_*` environment, if any. Call
/// inside the runtime.
pub fn tracer(service: &str) -> anyhow::Result<Option<Tracer>> {
    Ok(TraceConfig::from_env(service)
        .map_err(anyhow::Error::msg)?
        .map(|config| {
            tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, "exporting traces over OTLP");
            Tracer::spawn(config)
        }))
}

/// Where and how to serve.
pub struct Listeners {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The user chose the admin address: a taken port is an error. When it
    /// is the default, the server runs without the admin endpoints and
    /// says so.
    pub admin_required: bool,
    pub shutdown_grace: Duration,
}

/// The listeners, bound: a taken port is reported before anything slow
/// (building, compiling) happens.
pub struct Bound {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) admin: Option<tokio::net::TcpListener>,
    shutdown_grace: Duration,
}

impl Listeners {
    /// Binds both listeners (inside the async runtime). The admin
    /// listener's errors name the flag that moves or disables it.
    pub fn bind(self) -> anyhow::Result<Bound> {
        // A worker process serves the listener its supervisor passed down,
        // and its own admin endpoints on a loopback port of the system's
        // choosing, for the supervisor to read.
        if crate::workers::this_worker().is_some() {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            return Ok(Bound {
                listener: crate::workers::inherited_listener()?,
                // Off when the user turned the admin endpoints off.
                admin: match self.admin {
                    Some(_) => Some(crate::bind(loopback)?),
                    None => None,
                },
                shutdown_grace: self.shutdown_grace,
            });
        }
        let listener = crate::bind(self.listen)?;
        let admin = match self.admin {
            None => None,
            Some(addr) if !self.admin_required => match crate::bind(addr) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(
                        %addr,
                        error = %e,
                        "the admin endpoints (/metrics, /healthz) are off: their default address is taken; give --admin-listen ADDR for another"
                    );
                    eprintln!("wasmops: admin endpoints off: {addr} is taken (give --admin-listen ADDR for another)");
                    None
                }
            },
            Some(addr) => Some(crate::bind(addr).map_err(|e| match e {
                crate::BindError::InUse { addr } => anyhow::anyhow!(
                    "cannot listen on {addr} for the admin endpoints (/metrics, /healthz): the address is already in use, perhaps by another wasmops; pick another with --admin-listen ADDR, or turn them off with --admin-listen off"
                ),
                other => anyhow::anyhow!("{other} (the admin endpoints: see --admin-listen)"),
            })?),
        };
        Ok(Bound {
            listener,
            admin,
            shutdown_grace: self.shutdown_grace,
        })
    }
}

/// Serves `handler` on the bound listener (and the admin endpoints beside
/// it) until SIGINT/SIGTERM, then drains. `on_ready` runs once, with the
/// app listener's address.
pub async fn serve_until_signal<H, Fut, B>(
    l: Bound,
    metrics: Arc<Metrics>,
    tracer: Option<Tracer>,
    handler: H,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<ServeSummary>
where
    H: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = l.listener;
    let addr = listener.local_addr()?;
    let admin_listener = l.admin;
    let worker = crate::workers::this_worker();
    let admin_addr = admin_listener.as_ref().and_then(|a| a.local_addr().ok());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_admin, mut admin_stopped) = tokio::sync::watch::channel(false);
    let admin_task = match admin_listener {
        Some(al) => {
            if worker.is_none() {
                eprintln!("wasmops: admin on http://{}/", al.local_addr()?);
            }
            let admin = Admin {
                metrics,
                ready: ready.clone(),
            };
            Some(tokio::spawn(crate::serve(
                al,
                move |req| {
                    let r = admin.handle(&req);
                    async move { r }
                },
                ServeOptions {
                    shutdown_grace: Duration::from_secs(1),
                    secondary: true,
                    ..ServeOptions::default()
                },
                async move {
                    let _ = admin_stopped.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    on_ready(addr);
    match worker {
        None => eprintln!("wasmops: serving http://{addr}/"),
        Some(_) => crate::workers::report_ready(admin_addr),
    }
    let options = ServeOptions {
        shutdown_grace: l.shutdown_grace,
        ..ServeOptions::default()
    };
    // The accept loop runs on a worker, so connection tasks start in that
    // worker's local queue rather than the global one.
    let summary = tokio::spawn(crate::serve(listener, handler, options, {
        let ready = ready.clone();
        ready.store(true, Ordering::Release);
        async move {
            crate::shutdown_signal().await;
            ready.store(false, Ordering::Release);
        }
    }))
    .await
    .context("the server task failed")??;
    if let Some(t) = &tracer {
        t.flush(Duration::from_secs(5)).await;
    }
    let _ = stop_admin.send(true);
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    Ok(summary)
}
