//! The per-store host state: WASI contexts, the resource table, the limiter,
//! and the outbound HTTP policy.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::grants::{Grants, OutboundRule};
use crate::guest_log::GuestLog;
use crate::limits::{Limiter, Limits};

pub struct Host {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutboundPolicy,
    pub limiter: Limiter,
    pub kv: crate::kv::KvAccess,
    pub config: crate::grants::ConfigVars,
    /// The SQLite databases the component may open.
    pub sqlite: crate::sqlite::SqliteAccess,
    /// Outbound Redis connections open in this instance.
    pub redis_open: usize,
    /// Set when the deadline passed while the guest was running.
    pub timed_out: bool,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP: only granted destinations are reached; anything else gets
/// `HTTP-request-denied` without a connection being attempted.
/// Cloned into every store: the parts fixed for a component are shared.
#[derive(Clone, Default)]
pub struct OutboundPolicy {
    pub shared: Arc<OutboundShared>,
    /// The span outbound calls (and key-value operations) descend from, when
    /// tracing.
    pub trace: Option<wasmops_telemetry::trace::SpanContext>,
}

/// What an outbound policy keeps for the life of a component.
#[derive(Default)]
pub struct OutboundShared {
    pub rules: Vec<OutboundRule>,
    /// The component's name, for the log.
    pub component: Arc<str>,
    /// Where outbound requests are counted, when metrics are on.
    pub metrics: Option<wasmops_telemetry::ComponentMetrics>,
    /// Where spans go, when tracing.
    pub tracer: Option<wasmops_telemetry::trace::Tracer>,
}

impl OutboundPolicy {
    pub fn new(
        rules: Vec<OutboundRule>,
        component: Arc<str>,
        metrics: Option<wasmops_telemetry::ComponentMetrics>,
        tracer: Option<wasmops_telemetry::trace::Tracer>,
    ) -> Self {
        Self {
            shared: Arc::new(OutboundShared {
                rules,
                component,
                metrics,
                tracer,
            }),
            trace: None,
        }
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.shared
            .rules
            .iter()
            .any(|r| r.allows(scheme, host, port))
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let allowed = self.allows(request.uri());
        if let Some(m) = &self.shared.metrics {
            m.outbound(
                request.uri().host().unwrap_or(""),
                if allowed { "allowed" } else { "denied" },
            );
        }
        if !allowed {
            tracing::warn!(
                component = %self.shared.component,
                host = request.uri().host().unwrap_or(""),
                uri = %request.uri(),
                "outbound HTTP request denied: destination not granted"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let _ = fut;
        let mut request = request;
        // The outbound call is a client span of the guest's handler span, and
        // the callee learns of it through `traceparent`.
        let tracer = self.shared.tracer.as_ref();
        let span = tracer.zip(self.trace).map(|(tracer, parent)| {
            use wasmops_telemetry::trace::{Kind, SpanRecord};
            let ctx = parent.child();
            if let Ok(v) = http::HeaderValue::from_str(&ctx.traceparent()) {
                request.headers_mut().insert("traceparent", v);
            }
            let mut span = SpanRecord::start("outbound", Kind::Client, ctx, Some(parent.span_id));
            span.attr("http.request.method", request.method().as_str())
                .attr("url.full", request.uri().to_string())
                .attr(
                    "server.address",
                    request.uri().host().unwrap_or("").to_string(),
                );
            (tracer.clone(), span)
        });
        Box::new(async move {
            let result = crate::outbound::send(request, options).await;
            if let Some((tracer, mut span)) = span {
                match &result {
                    Ok(res) => {
                        span.attr(
                            "http.response.status_code",
                            i64::from(res.status().as_u16()),
                        );
                    }
                    Err(e) => span.error = Some(format!("{e:?}")),
                }
                tracer.end(span);
            }
            let res = result?;
            Ok((
                res,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The linker with everything the host provides: WASI 0.2 and 0.3,
/// `wasi:http` of both, `wasi:keyvalue` and `wasi:config`.
pub fn linker(engine: &Engine, concurrent: bool) -> anyhow::Result<Linker<Host>> {
    let mut l = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
    if concurrent {
        wasmtime_wasi::p3::add_to_linker(&mut l)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut l)?;
    }
    crate::kv::add_to_linker(&mut l, |h: &mut Host| crate::kv::KvView {
        table: &mut h.table,
        access: &h.kv,
        metrics: h.hooks.shared.metrics.as_ref(),
        trace: h.hooks.shared.tracer.as_ref().zip(h.hooks.trace),
    })?;
    crate::spin::add_to_linker(&mut l, concurrent, |h: &mut Host| crate::spin::SpinView {
        kv: crate::kv::KvView {
            table: &mut h.table,
            access: &h.kv,
            metrics: h.hooks.shared.metrics.as_ref(),
            trace: h.hooks.shared.tracer.as_ref().zip(h.hooks.trace),
        },
        vars: &h.config,
        sqlite: &h.sqlite,
        outbound: &h.hooks,
        redis_open: &mut h.redis_open,
    })?;
    wasmtime_wasi_config::add_to_linker(&mut l, |h: &mut Host| {
        wasmtime_wasi_config::WasiConfig::new(&h.config.wasi)
    })?;
    Ok(l)
}

/// How the guest's standard streams are wired.
#[derive(Debug, Clone)]
pub enum Stdio {
    /// stdin, stdout and stderr of the host process.
    Inherit,
    /// No stdin; stdout and stderr go line by line into the log, tagged.
    Log {
        component: Arc<str>,
        request_id: Arc<str>,
    },
}

/// A fresh store for one instance, with its grants and limits applied.
pub fn new_store(
    engine: &Engine,
    grants: &Grants,
    outbound: OutboundPolicy,
    limits: &Limits,
    stdio: Stdio,
) -> anyhow::Result<Store<Host>> {
    new_store_with_logs(engine, grants, outbound, limits, stdio).map(|(s, _)| s)
}

/// [`new_store`], also giving the guest's stdout and stderr logs (with
/// `Stdio::Log`), which a reused instance re-tags per request.
pub fn new_store_with_logs(
    engine: &Engine,
    grants: &Grants,
    outbound: OutboundPolicy,
    limits: &Limits,
    stdio: Stdio,
) -> anyhow::Result<(Store<Host>, Option<[GuestLog; 2]>)> {
    let mut b = WasiCtxBuilder::new();
    let mut logs = None;
    match stdio {
        Stdio::Inherit => {
            // A command: one guest on its own thread, so file-system calls
            // run in place instead of through the blocking pool.
            b.inherit_stdio().allow_blocking_current_thread(true);
        }
        Stdio::Log {
            component,
            request_id,
        } => {
            let out = GuestLog::new(component.clone(), request_id.clone(), "stdout");
            let err = GuestLog::new(component, request_id, "stderr");
            b.stdout(out.clone());
            b.stderr(err.clone());
            logs = Some([out, err]);
        }
    }
    grants.apply(&mut b)?;
    let host = Host {
        table: ResourceTable::new(),
        wasi: b.build(),
        http: WasiHttpCtx::new(),
        hooks: outbound,
        limiter: Limiter::new(limits),
        kv: grants.key_value.clone(),
        config: grants.config.clone(),
        sqlite: {
            let mut s = grants.sqlite.clone();
            // A statement stops before the request's deadline, so that the
            // guest still gets its error and can answer.
            if let Some(t) = limits.timeout {
                s.statement_limit = t.mul_f64(0.9);
            }
            s
        },
        redis_open: 0,
        timed_out: false,
    };
    let mut store = Store::new(engine, host);
    store.limiter(|h| &mut h.limiter);
    arm_deadline(&mut store, limits.timeout.map(|t| Instant::now() + t));
    Ok((store, logs))
}

/// Every epoch tick the guest yields its thread; past the deadline it traps.
pub fn arm_deadline(store: &mut Store<Host>, deadline: Option<Instant>) {
    arm_deadline_with(store, deadline, |h| &mut h.timed_out);
}

/// [`arm_deadline`] for any store: `timed_out` says where to record that
/// the deadline passed.
pub fn arm_deadline_with<T: 'static>(
    store: &mut Store<T>,
    deadline: Option<Instant>,
    timed_out: fn(&mut T) -> &mut bool,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        if let Some(d) = deadline
            && Instant::now() >= d
        {
            *timed_out(ctx.data_mut()) = true;
            return Err(wasmtime::Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::Yield(1))
    });
}
