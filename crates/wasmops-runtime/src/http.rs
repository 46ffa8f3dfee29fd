//! Serving `wasi:http` incoming-handler components: a fresh instance per
//! request, instantiated from a component pre-linked once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, ProxyHandler, ShouldAccept, WorkerExpiration,
    WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::command::{RunError, classify};
use crate::engine::Runtime;
use crate::grants::Grants;
use crate::host::{self, Host, OutboundPolicy, Stdio};
use crate::limits::Limits;
use crate::world::{self, WorldError};
use wasmops_telemetry::ComponentMetrics;
use wasmops_telemetry::trace::{Attr, Kind, SpanContext, SpanRecord, Tracer};

/// The body of every response the handler produces.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Bytes of a request body read before an instance is taken, by default:
/// all of most form posts and JSON bodies.
pub const DEFAULT_BODY_BUFFER: usize = 256 << 10;

/// How requests are admitted and bounded.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub limits: Limits,
    /// Instances running at once; more requests wait in the queue.
    pub max_concurrency: usize,
    /// Requests waiting for an instance; beyond this they get 503 at once.
    pub max_queue: usize,
    /// Largest request body accepted (413 beyond).
    pub max_body: u64,
    /// How long a client may take to send the body's first
    /// `body_buffer` bytes (read before an instance is taken), and at most
    /// between two parts of the rest; 408 beyond.
    pub body_timeout: Duration,
    /// Bytes of a request body read before an instance is taken.
    pub body_buffer: usize,
    /// The process-wide memory budget that every instance's memory limit
    /// is reserved from while it runs; `None` for no budget.
    pub memory_budget: Option<Arc<crate::budget::MemoryBudget>>,
    /// Put error details (trap messages) in 500 bodies.
    pub debug_errors: bool,
    /// The component's name in logs.
    pub name: Arc<str>,
    /// The app's name in logs.
    pub app: Arc<str>,
    /// Opt-in instance reuse: an instance serves up to this many requests,
    /// one at a time, before it is discarded (`None`: a fresh instance per
    /// request). An instance whose request trapped or timed out is never
    /// reused. WASIp2 handlers only.
    pub instance_reuse: Option<std::num::NonZeroU32>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            limits: Limits {
                timeout: Some(Duration::from_secs(30)),
                ..Limits::default()
            },
            max_concurrency: 256,
            max_queue: 1024,
            max_body: 16 << 20,
            body_timeout: Duration::from_secs(10),
            body_buffer: DEFAULT_BODY_BUFFER,
            memory_budget: None,
            debug_errors: false,
            name: Arc::from("component"),
            app: Arc::from("component"),
            instance_reuse: None,
        }
    }
}

/// Whether the guest still holds a resource of the request it served (a
/// response or body it never finished, an outbound call in flight): such
/// an instance is not reused, since its response would only end when the
/// instance is dropped.
fn holds_request_resources(store: &mut wasmtime::Store<Host>) -> bool {
    use wasmtime_wasi_http::p2::{body, types};
    store.data_mut().table.iter_mut().any(|e| {
        let e: &dyn std::any::Any = e;
        e.is::<body::HostOutgoingBody>()
            || e.is::<body::HostIncomingBody>()
            || e.is::<body::HostIncomingBodyStream>()
            || e.is::<body::HostFutureTrailers>()
            || e.is::<types::HostOutgoingResponse>()
            || e.is::<types::HostResponseOutparam>()
            || e.is::<types::HostIncomingRequest>()
            || e.is::<types::HostOutgoingRequest>()
            || e.is::<types::HostFutureIncomingResponse>()
            || e.is::<types::HostIncomingResponse>()
    })
}

/// An instance kept between requests under instance reuse.
struct Idle {
    store: wasmtime::Store<Host>,
    proxy: wasmtime_wasi_http::p2::bindings::Proxy,
    /// Requests it has served.
    served: u32,
    /// Its stdout and stderr, re-tagged with each request's id.
    logs: [crate::guest_log::GuestLog; 2],
}

/// Counters kept by a handler.
#[derive(Debug, Default)]
pub struct HandlerStats {
    pub requests: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub memory_limit_hits: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub rejected_body: AtomicU64,
    /// Requests whose body did not arrive within the body timeout (408).
    pub body_timeouts: AtomicU64,
    /// Requests refused because the memory budget stayed in use (503).
    pub rejected_memory: AtomicU64,
    /// Responses cut off because the guest failed after the head was sent.
    pub aborted: AtomicU64,
    pub instantiations: AtomicU64,
    pub instantiate_nanos: AtomicU64,
}

impl HandlerStats {
    /// Mean time from a fresh store to an instance ready to call, in µs.
    pub fn mean_instantiate_micros(&self) -> f64 {
        let n = self.instantiations.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.instantiate_nanos.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
    }
}

/// A component ready to handle HTTP requests. Cheap to clone.
#[derive(Clone)]
pub struct HttpHandler {
    inner: Arc<Inner>,
}

/// How the component exports its handler.
enum Flavor {
    /// `wasi:http/incoming-handler@0.2.x`, called directly per request.
    P2(ProxyPre<Host>),
    /// `wasi:http/handler@0.3.x` (the WASIp3 `service` world), driven by
    /// wasmtime's concurrent handler with one request per instance.
    P3(ProxyHandler<P3State>),
}

struct Inner {
    flavor: Flavor,
    metrics: Option<ComponentMetrics>,
    tracer: Option<Tracer>,
    engine: wasmtime::Engine,
    grants: Grants,
    outbound: OutboundPolicy,
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    /// Instances whose guest has answered and whose store is about to be
    /// dropped: their slots free within microseconds, so a request that
    /// finds every slot taken waits for one of them instead of a 503.
    draining: AtomicUsize,
    stats: HandlerStats,
    /// The last failure of the guest (a trap, a timeout, a memory limit),
    /// when it happened and what it was, for an operator's status view.
    last_failure: std::sync::Mutex<Option<Failure>>,
    /// Instances waiting for their next request (instance reuse only); at
    /// most as many as have ever run at once.
    idle: std::sync::Mutex<Vec<Idle>>,
}

/// A guest failure as a status view shows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: std::time::SystemTime,
    pub message: String,
}

impl Inner {
    /// Keeps `message` as the handler's last failure, now.
    fn note_failure(&self, message: String) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Failure {
            at: std::time::SystemTime::now(),
            message,
        });
    }

    /// Counts a guest failure by kind, in the handler's stats and metrics,
    /// and keeps it as the handler's last failure (a busy pool is not the
    /// guest's failure).
    fn count_failure(&self, err: &RunError) {
        if !matches!(err, RunError::Busy(_)) {
            self.note_failure(err.to_string());
        }
        let (stat, metric) = match err {
            RunError::Timeout(_) => (
                &self.stats.timeouts,
                self.metrics.as_ref().map(|m| &m.timeouts),
            ),
            RunError::MemoryLimit { .. } => (
                &self.stats.memory_limit_hits,
                self.metrics.as_ref().map(|m| &m.memory_limits),
            ),
            RunError::Busy(_) => (&self.stats.rejected_busy, None),
            _ => (&self.stats.traps, self.metrics.as_ref().map(|m| &m.traps)),
        };
        stat.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = metric {
            m.inc();
        }
    }
}

impl HttpHandler {
    /// Links the component and checks that it exports the HTTP handler.
    pub fn new(
        rt: &Runtime,
        component: &Component,
        grants: Grants,
        settings: HttpSettings,
        metrics: Option<ComponentMetrics>,
        tracer: Option<Tracer>,
    ) -> Result<Self, WorldError> {
        let engine = component.engine();
        let pre = rt.link(component)?;
        let outbound = OutboundPolicy::new(
            grants.outbound_http.clone(),
            settings.name.clone(),
            metrics.clone(),
            tracer.clone(),
        );
        let flavor = if let Ok(p3) = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone())
        {
            Flavor::P3(ProxyHandler::new(P3State {
                pre: p3,
                engine: engine.clone(),
                grants: grants.clone(),
                outbound: outbound.clone(),
                limits: settings.limits.clone(),
                metrics: metrics.clone(),
                name: settings.name.clone(),
            }))
        } else {
            Flavor::P2(ProxyPre::new(pre).map_err(|_| WorldError::MissingExport {
                wanted: vec![
                    world::P2_HTTP_HANDLER.to_string(),
                    world::P3_HTTP_HANDLER.to_string(),
                ],
                what: "an HTTP handler",
                exports: world::exports(component, engine),
            })?)
        };
        if matches!(flavor, Flavor::P3(_)) && settings.instance_reuse.is_some() {
            return Err(WorldError::NotReusable(world::P3_HTTP_HANDLER.to_string()));
        }
        let permits = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
        Ok(Self {
            inner: Arc::new(Inner {
                flavor,
                metrics,
                tracer,
                engine: engine.clone(),
                grants,
                outbound,
                settings,
                permits,
                queued: AtomicUsize::new(0),
                draining: AtomicUsize::new(0),
                stats: HandlerStats::default(),
                last_failure: std::sync::Mutex::new(None),
                idle: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn stats(&self) -> &HandlerStats {
        &self.inner.stats
    }

    /// The guest's last failure in this handler, if any.
    pub fn last_failure(&self) -> Option<Failure> {
        self.inner
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.inner.settings
    }

    /// Handles one request in a fresh instance. Never fails: errors become
    /// HTTP error responses (details in the log). Counts the response in the
    /// metrics and writes one access-log line (target `wasmops::access`).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.handle_routed(req, self.inner.metrics.as_ref()).await
    }

    /// As [`HttpHandler::handle`], counting the response in the metrics of
    /// the route that matched (`route_metrics`) rather than the handler's.
    pub async fn handle_routed<B>(
        &self,
        req: Request<B>,
        route_metrics: Option<&ComponentMetrics>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let request_id: Arc<str> = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(next_request_id()));
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(SpanContext::from_traceparent);
        let trace = self.inner.tracer.as_ref().map(|t| {
            (
                t.server_context(incoming.as_ref()),
                incoming.map(|p| p.span_id),
            )
        });
        // For the access log: ours, or the caller's when not tracing.
        let trace_id = trace
            .map(|(ctx, _)| ctx.trace_id)
            .or(incoming.map(|p| p.trace_id));
        // Read only for a request whose spans are recorded.
        let span_start = trace
            .filter(|(c, _)| c.sampled)
            .map(|_| wasmops_telemetry::trace::now_unix_nanos());
        let mut outcome = None;
        let abandoned = Abandoned {
            handler: self,
            route_metrics,
            method: &method,
            path: &path,
            request_id: &request_id,
            trace_id,
            start,
        };
        let mut resp = self
            .handle_inner(req, request_id.clone(), trace.map(|t| t.0), &mut outcome)
            .await;
        std::mem::forget(abandoned);
        let elapsed = start.elapsed();
        let status = resp.status().as_u16();
        if let Some(m) = route_metrics {
            m.response(status, elapsed.as_secs_f64());
        }
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if let (Some(tracer), Some((ctx, parent)), Some(span_start)) =
            (&self.inner.tracer, trace, span_start)
        {
            // Attributes are borrowed from the request: the span is encoded
            // as it ends, so nothing is copied or moved for it.
            let mut span = SpanRecord::start_at("request", Kind::Server, ctx, parent, span_start);
            if status >= 500 {
                span.error = Some(format!("status {status}"));
            }
            tracer.end_with(
                span,
                &[
                    ("http.request.method", Attr::Str(method.as_str())),
                    ("url.path", Attr::Str(&path)),
                    ("http.response.status_code", Attr::Int(i64::from(status))),
                    ("wasmops.component", Attr::Str(&self.inner.settings.name)),
                    ("wasmops.request_id", Attr::Str(&request_id)),
                ],
            );
        }
        match outcome {
            // The guest may still be writing the body: its access line is
            // written when the body ends, with the real outcome.
            Some(outcome) => {
                let access = PendingAccess {
                    handler: self.inner.clone(),
                    method,
                    path,
                    request_id,
                    trace_id,
                    start,
                    status,
                };
                resp = resp.map(|inner| {
                    GuestBody {
                        inner,
                        outcome,
                        access: Some(access),
                    }
                    .boxed_unsync()
                });
            }
            None => wasmops_telemetry::access::AccessRecord {
                method: method.as_str(),
                path: &path,
                status,
                duration: elapsed,
                app: &self.inner.settings.app,
                component: &self.inner.settings.name,
                request_id: &request_id,
                trace_id,
                aborted: false,
            }
            .emit(),
        }
        resp
    }

    async fn handle_inner<B>(
        &self,
        req: Request<B>,
        request_id: Arc<str>,
        trace: Option<SpanContext>,
        guest_outcome: &mut Option<Arc<RequestState>>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let inner = &self.inner;
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let settings = &inner.settings;

        // Bodies announced too large are refused before any work.
        if req.body().size_hint().lower() > settings.max_body {
            inner.stats.rejected_body.fetch_add(1, Ordering::Relaxed);
            return too_large(settings.max_body);
        }

        // The body's first part (all of a typical body) is read before an
        // instance is taken, within the body timeout: a client trickling
        // its body holds a connection, never an instance or a queue place.
        let (parts, body) = req.into_parts();
        // What the body and the guest's task tell the response: one
        // allocation per request.
        let state = Arc::new(RequestState::default());
        let fault = &state.fault;
        let body = match RequestBody::prefetch(body, settings, state.clone()).await {
            Ok(b) => b,
            Err(f) => return self.body_fault_response(f),
        };
        let req = Request::from_parts(parts, body);

        // Admission: an instance slot now, or a bounded wait for one; then
        // the instance's memory limit out of the process's budget.
        let wait = settings.limits.timeout.unwrap_or(Duration::from_secs(30));
        let wait_until = tokio::time::Instant::now() + wait;
        let permit = match inner.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Slots of instances being dropped count as free: their
                // requests are answered and they hold no guest code.
                let draining = inner.draining.load(Ordering::Acquire);
                if inner.queued.fetch_add(1, Ordering::AcqRel) >= settings.max_queue + draining {
                    inner.queued.fetch_sub(1, Ordering::AcqRel);
                    inner.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                    return busy("server busy: too many requests in flight\n");
                }
                let got =
                    tokio::time::timeout_at(wait_until, inner.permits.clone().acquire_owned())
                        .await;
                inner.queued.fetch_sub(1, Ordering::AcqRel);
                match got {
                    Ok(Ok(p)) => p,
                    _ => {
                        inner.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                        return busy("server busy: no instance became free in time\n");
                    }
                }
            }
        };
        let memory = match &settings.memory_budget {
            None => None,
            Some(budget) => match budget.reserve(settings.limits.max_memory, wait_until).await {
                Some(r) => Some(r),
                None => {
                    inner.stats.rejected_memory.fetch_add(1, Ordering::Relaxed);
                    return busy(
                        "server busy: the process's memory budget did not free up in time\n",
                    );
                }
            },
        };
        let permit = Admission {
            _slot: permit,
            _memory: memory,
        };

        let pre = match &inner.flavor {
            Flavor::P2(pre) => pre.clone(),
            Flavor::P3(handler) => {
                return self.handle_p3(handler, req, permit, fault).await;
            }
        };

        let deadline = settings.limits.timeout.map(|t| Instant::now() + t);
        let handler_span = trace.map(|t| (t.child(), t));
        let outbound = OutboundPolicy {
            shared: inner.outbound.shared.clone(),
            trace: handler_span.map(|(h, _)| h),
        };
        // Under instance reuse, an instance that finished its last request
        // cleanly is taken if one waits; otherwise a fresh store.
        let idle = match settings.instance_reuse {
            Some(_) => inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop(),
            None => None,
        };
        let (mut store, ready, served, logs) = match idle {
            Some(mut idle) => {
                let host = idle.store.data_mut();
                host.hooks = outbound;
                host.timed_out = false;
                for log in &idle.logs {
                    log.next_request(request_id.clone());
                }
                host::arm_deadline(&mut idle.store, deadline);
                (idle.store, Some(idle.proxy), idle.served, Some(idle.logs))
            }
            None => match host::new_store_with_logs(
                &inner.engine,
                &inner.grants,
                outbound,
                &settings.limits,
                Stdio::Log {
                    component: settings.name.clone(),
                    request_id,
                },
            ) {
                Ok((s, logs)) => (s, None, 0, logs),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot create the instance's store");
                    return simple(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n");
                }
            },
        };

        let (tx, rx) = tokio::sync::oneshot::channel();
        let resources = (|| {
            let mut view = wasmtime_wasi_http::WasiHttpView::http(store.data_mut());
            let req = view.new_incoming_request(Scheme::Http, req)?;
            let out = view.new_response_outparam(tx)?;
            wasmtime::Result::<_>::Ok((req, out))
        })();
        let (req, out) = match resources {
            Ok(r) => r,
            Err(e) => {
                return simple(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "bad request: {}\n",
                        wasmops_component::one_line(&format!("{e:#}"))
                    ),
                );
            }
        };

        let task_state = state.clone();
        let this = self.clone();
        let task = StopIfAbandoned::new(tokio::spawn(async move {
            let permit = permit;
            let inner = &this.inner;
            let _in_use = InUse::new(inner.metrics.as_ref());
            let started = Instant::now();
            let tracer = inner.tracer.as_ref();
            let run = async {
                // Unsampled requests record no spans, but still pass the
                // trace context on to outbound calls.
                let recorded = handler_span.filter(|(h, _)| h.sampled);
                let (proxy, handler_start) = match ready {
                    // A reused instance: nothing to instantiate.
                    Some(proxy) => (
                        proxy,
                        recorded
                            .and(tracer)
                            .map(|_| wasmops_telemetry::trace::now_unix_nanos()),
                    ),
                    None => {
                        let inst_span = recorded.map(|(_, req)| {
                            SpanRecord::start(
                                "instantiate",
                                Kind::Internal,
                                req.child(),
                                Some(req.span_id),
                            )
                        });
                        let proxy = pre.instantiate_async(&mut store).await?;
                        let instantiated = started.elapsed();
                        // The handler span starts where the instantiate span ends.
                        let handler_start = match (tracer, inst_span) {
                            (Some(t), Some(s)) => {
                                let now = wasmops_telemetry::trace::now_unix_nanos();
                                t.end_at(s, now, &[]);
                                Some(now)
                            }
                            _ => None,
                        };
                        inner
                            .stats
                            .instantiate_nanos
                            .fetch_add(instantiated.as_nanos() as u64, Ordering::Relaxed);
                        inner.stats.instantiations.fetch_add(1, Ordering::Relaxed);
                        if let Some(m) = &inner.metrics {
                            m.instantiation.observe(instantiated.as_secs_f64());
                        }
                        (proxy, handler_start)
                    }
                };
                let handler = recorded.zip(handler_start).map(|((h, req), at)| {
                    SpanRecord::start_at("guest handler", Kind::Internal, h, Some(req.span_id), at)
                });
                let r = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await;
                if let (Some(t), Some(mut s)) = (tracer, handler) {
                    if let Err(e) = &r {
                        s.error = Some(crate::command::trap_summary(e));
                    }
                    t.end(s);
                }
                r.map(|()| proxy)
            };
            let result = match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), run).await {
                    Ok(r) => r,
                    Err(_) => {
                        store.data_mut().timed_out = true;
                        Err(wasmtime::Trap::Interrupt.into())
                    }
                },
                None => run.await,
            };
            if let Some(m) = &inner.metrics {
                m.memory_high_water
                    .observe(store.data().limiter.memory_high_water as f64);
            }
            // The outcome is set before the store (and with it the
            // response body's sender) is dropped, so a body that ends
            // because its writer is gone finds out why.
            let mut draining = None;
            let r = match result {
                Ok(proxy) => {
                    task_state.outcome.set(Outcome::OK);
                    // Kept for the next request when reuse is on, it has
                    // requests left and it finished in time.
                    if let (Some(max), Some(logs)) = (inner.settings.instance_reuse, logs)
                        && served + 1 < max.get()
                        && !store.data().timed_out
                        && !holds_request_resources(&mut store)
                    {
                        inner
                            .idle
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Idle {
                                store,
                                proxy,
                                served: served + 1,
                                logs,
                            });
                        return Ok(());
                    }
                    // Answered: the connection writes the response before
                    // this task resets the instance's memory. The slot
                    // counts as draining meanwhile, so that a client's next
                    // request does not find it taken.
                    draining = Some(Draining::new(&inner.draining));
                    tokio::task::yield_now().await;
                    Ok(())
                }
                Err(e) => {
                    let err = classify(&store, &inner.settings.limits, &e);
                    task_state
                        .outcome
                        .set(if matches!(err, RunError::Timeout(_)) {
                            Outcome::TIMED_OUT
                        } else {
                            Outcome::FAILED
                        });
                    inner.count_failure(&err);
                    if matches!(err, RunError::Busy(_)) {
                        tracing::warn!(error = %err, "no room for the request's instance");
                    } else {
                        tracing::error!(error = %err, detail = %format!("{e:?}"), "request failed in the component");
                    }
                    Err(err)
                }
            };
            // The slot is released before it stops counting as draining.
            drop(store);
            drop(permit);
            drop(draining);
            r
        }));

        match rx.await {
            Ok(Ok(resp)) => {
                // The head is out: the body is the task's to write now,
                // whatever becomes of this future.
                task.keep();
                if let Some(f) = fault.get() {
                    return self.body_fault_response(f);
                }
                *guest_outcome = Some(state.clone());
                resp
            }
            Ok(Err(code)) => {
                task.keep();
                tracing::warn!(error_code = ?code, "the component answered with an error code");
                if let Some(f) = fault.get() {
                    return self.body_fault_response(f);
                }
                self.error_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("{code:?}"))
            }
            Err(_) => {
                // The guest returned (or failed) without setting a response.
                let outcome = task.finish().await;
                if let Some(f) = fault.get() {
                    return self.body_fault_response(f);
                }
                match outcome {
                    Ok(Ok(())) => self.error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the component returned without sending a response",
                    ),
                    Ok(Err(RunError::Timeout(t))) => simple(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the request exceeded its time limit of {}ms\n",
                            t.as_millis()
                        ),
                    ),
                    Ok(Err(e @ RunError::Busy(_))) => {
                        simple(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"))
                    }
                    Ok(Err(e)) => {
                        self.error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                    }
                    Err(join) => {
                        self.error_response(StatusCode::INTERNAL_SERVER_ERROR, &join.to_string())
                    }
                }
            }
        }
    }

    async fn handle_p3<B>(
        &self,
        handler: &ProxyHandler<P3State>,
        req: Request<RequestBody<B>>,
        permit: Admission,
        fault: &BodyFault,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let _permit = permit;
        let inner = &self.inner;
        let req = req.map(|b| b.boxed_unsync());
        let call = handler.handle((), req);
        let result = match inner.settings.limits.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .unwrap_or_else(|_| Err(ExpirationError.into())),
            None => call.await,
        };
        if let Some(f) = fault.get() {
            return self.body_fault_response(f);
        }
        match result {
            Ok(resp) => resp,
            Err(e) if e.downcast_ref::<ExpirationError>().is_some() => {
                let t = inner.settings.limits.timeout.unwrap_or_default();
                inner.count_failure(&RunError::Timeout(t));
                simple(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the request exceeded its time limit of {}ms\n",
                        t.as_millis()
                    ),
                )
            }
            Err(e) => {
                let detail = crate::command::trap_summary(&e);
                inner.count_failure(&RunError::Trap(detail.clone()));
                tracing::error!(error = %detail, "request failed in the component");
                self.error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the component trapped: {detail}"),
                )
            }
        }
    }

    /// The answer to a request whose body could not be read.
    fn body_fault_response(&self, fault: u8) -> Response<Body> {
        let s = &self.inner.settings;
        match fault {
            BodyFault::TOO_LARGE => {
                self.inner
                    .stats
                    .rejected_body
                    .fetch_add(1, Ordering::Relaxed);
                too_large(s.max_body)
            }
            BodyFault::TIMED_OUT => {
                self.inner
                    .stats
                    .body_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                let mut r = simple(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "request body not received in time (the body timeout is {}ms)\n",
                        s.body_timeout.as_millis()
                    ),
                );
                r.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                r
            }
            _ => simple(
                StatusCode::BAD_REQUEST,
                "bad request: the request body is malformed\n",
            ),
        }
    }

    fn error_response(&self, status: StatusCode, detail: &str) -> Response<Body> {
        if self.inner.settings.debug_errors {
            simple(
                status,
                &format!(
                    "{}: {detail}\n",
                    status.canonical_reason().unwrap_or("error")
                ),
            )
        } else {
            simple(
                status,
                &format!("{}\n", status.canonical_reason().unwrap_or("error")),
            )
        }
    }
}

/// A request in the handler's hands until it has a response: dropped
/// before that (the server drops the request's future when its client
/// goes away), it writes the access line and counts the response as 499,
/// the client's closed request. Forgotten once there is a response (it
/// owns nothing).
struct Abandoned<'a> {
    handler: &'a HttpHandler,
    route_metrics: Option<&'a ComponentMetrics>,
    method: &'a http::Method,
    path: &'a str,
    request_id: &'a str,
    trace_id: Option<[u8; 16]>,
    start: Instant,
}

/// What the access log and metrics say of a request its client abandoned.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        if let Some(m) = self.route_metrics {
            m.response(CLIENT_CLOSED_REQUEST, elapsed.as_secs_f64());
        }
        let settings = &self.handler.inner.settings;
        wasmops_telemetry::access::AccessRecord {
            method: self.method.as_str(),
            path: self.path,
            status: CLIENT_CLOSED_REQUEST,
            duration: elapsed,
            app: &settings.app,
            component: &settings.name,
            request_id: self.request_id,
            trace_id: self.trace_id,
            aborted: true,
        }
        .emit();
    }
}

/// The task running a request's guest, stopped if the request is
/// abandoned before the response head (the server drops the request's
/// future when its client goes away): the guest's instance and its slot
/// are freed at the guest's next wait instead of when it ends or times out.
struct StopIfAbandoned<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> StopIfAbandoned<T> {
    fn new(task: tokio::task::JoinHandle<T>) -> Self {
        Self(Some(task))
    }

    /// Lets the task run to its end whatever becomes of the request.
    fn keep(mut self) {
        self.0 = None;
    }

    /// Waits for the task's end.
    async fn finish(mut self) -> Result<T, tokio::task::JoinError> {
        let task = self.0.take().expect("a task not kept");
        task.await
    }
}

impl<T> Drop for StopIfAbandoned<T> {
    fn drop(&mut self) {
        if let Some(task) = self.0.take()
            && !task.is_finished()
        {
            task.abort();
            tracing::info!("the client went away before the response; the component was stopped");
        }
    }
}

/// 503 for a request the host had no room for, with `Retry-After: 1`:
/// the condition is passing (slots and memory free as requests end).
fn busy(why: &str) -> Response<Body> {
    let mut r = simple(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

/// Creates instances for wasmtime's WASIp3 handler: one fresh instance per
/// request, with the same grants and limits as the WASIp2 path.
struct P3State {
    pre: wasmtime_wasi_http::p3::bindings::ServicePre<Host>,
    engine: wasmtime::Engine,
    grants: Grants,
    outbound: OutboundPolicy,
    limits: Limits,
    metrics: Option<ComponentMetrics>,
    name: Arc<str>,
}

impl HandlerState for P3State {
    type StoreData = Host;
    type WorkerExpiration = P3Expiration;
    type WorkerState = P3Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<Host, P3Expiration, P3Worker>> {
        let mut store = host::new_store(
            &self.engine,
            &self.grants,
            self.outbound.clone(),
            &self.limits,
            Stdio::Log {
                component: self.name.clone(),
                request_id: Arc::from("-"),
            },
        )
        .map_err(|e| wasmtime::format_err!("{e:#}"))?;
        let started = Instant::now();
        let proxy = wasmtime_wasi_http::handler::ProxyPre::P3(self.pre.clone())
            .instantiate_async(&mut store)
            .await?;
        if let Some(m) = &self.metrics {
            m.instantiation.observe(started.elapsed().as_secs_f64());
        }
        let timeout = self
            .limits
            .timeout
            .unwrap_or(Duration::from_secs(3600 * 24 * 365));
        Ok(Instance {
            store,
            proxy,
            view: wasmtime_wasi_http::WasiHttpView::http,
            expiration: P3Expiration {
                timeout,
                sleep: Box::pin(tokio::time::sleep(timeout)),
            },
            state: P3Worker { timeout },
        })
    }
}

/// Ends an instance that has been idle or busy for longer than the timeout.
struct P3Expiration {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for P3Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        let deadline = tokio::time::Instant::from_std(start + this.timeout);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

struct P3Worker {
    timeout: Duration,
}

impl WorkerState for P3Worker {
    type StoreData = Host;
    type RequestData = ();

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        // Isolation: one request per instance.
        if total >= 1 {
            ShouldAccept::Never
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: wasmtime::StoreContextMut<'_, Host>,
        _data: (),
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + 'static + Send + Sync>> {
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: wasmtime::Store<Host>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::error!(error = %crate::command::trap_summary(&e), "WASIp3 instance failed");
        }
        drop(store);
    }
}

/// Counts an instance in use for as long as it lives.
struct InUse(Option<wasmops_telemetry::Gauge>);

impl InUse {
    fn new(m: Option<&ComponentMetrics>) -> Self {
        let g = m.map(|m| m.in_use.clone());
        if let Some(g) = &g {
            g.inc();
        }
        Self(g)
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// A process-unique request id: a random prefix per process and a counter.
fn next_request_id() -> String {
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.subsec_nanos() ^ std::process::id().rotate_left(16)) | 1
    });
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A plain-text response.
pub fn simple(status: StatusCode, text: &str) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::copy_from_slice(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn too_large(max: u64) -> Response<Body> {
    simple(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than the limit of {max} bytes\n"),
    )
}

/// What went wrong reading a request body, if anything: set by the body,
/// read by the handler to answer 413, 408 or 400 rather than 500.
#[derive(Debug, Default)]
pub(crate) struct BodyFault(std::sync::atomic::AtomicU8);

impl BodyFault {
    const TOO_LARGE: u8 = 1;
    const TIMED_OUT: u8 = 2;
    const MALFORMED: u8 = 3;

    fn set(&self, v: u8) {
        let _ = self
            .0
            .compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
    }

    fn get(&self) -> Option<u8> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            v => Some(v),
        }
    }
}

/// Counts an instance as draining (answered, not yet dropped) while alive.
struct Draining<'a>(&'a AtomicUsize);

impl<'a> Draining<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request holds while it runs: its instance slot and its share of
/// the memory budget.
pub(crate) struct Admission {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _memory: Option<crate::budget::Reservation>,
}

/// A request body as the guest reads it: the part read before the
/// instance was taken, then the rest from the connection. Fails once more
/// than `max` bytes have arrived, or when the client sends nothing for the
/// body timeout.
pub(crate) struct RequestBody<B> {
    head: std::collections::VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    /// The rest of the body; `None` once it ended.
    rest: Option<B>,
    remaining: u64,
    max: u64,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<RequestState>,
}

impl<B> RequestBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    /// Reads up to `settings.body_buffer` bytes of `body` (all of a body
    /// that small), within `settings.body_timeout`.
    async fn prefetch(
        mut body: B,
        settings: &HttpSettings,
        state: Arc<RequestState>,
    ) -> Result<Self, u8> {
        let mut this = RequestBody {
            head: std::collections::VecDeque::new(),
            trailers: None,
            rest: None,
            remaining: settings.max_body,
            max: settings.max_body,
            idle: settings.body_timeout,
            timer: None,
            state,
        };
        if body.is_end_stream() {
            return Ok(this);
        }
        let deadline = tokio::time::Instant::now() + settings.body_timeout;
        let mut buffered = 0usize;
        loop {
            if buffered >= settings.body_buffer || body.is_end_stream() {
                this.rest = Some(body);
                return Ok(this);
            }
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyFault::TIMED_OUT),
                Ok(None) => return Ok(this),
                Ok(Some(Err(_))) => return Err(BodyFault::MALFORMED),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        return Err(BodyFault::TOO_LARGE);
                    }
                    this.remaining -= n;
                    buffered += data.len();
                    if !data.is_empty() {
                        this.head.push_back(data);
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        this.trailers = Some(t);
                    }
                    return Ok(this);
                }
            }
        }
    }
}

impl<B> http_body::Body for RequestBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.head.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.remaining = 0;
                        this.rest = None;
                        this.state.fault.set(BodyFault::TOO_LARGE);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.max)),
                        )));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.rest = None;
                this.state.fault.set(BodyFault::MALFORMED);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.rest = None;
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                // Nothing from the client: it has the body timeout to send
                // its next bytes.
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.rest = None;
                        this.timer = None;
                        this.state.fault.set(BodyFault::TIMED_OUT);
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head: u64 = self.head.iter().map(|b| b.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(head),
            Some(r) => {
                let h = r.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + head);
                if let Some(u) = h.upper() {
                    out.set_upper(u + head);
                }
                out
            }
        }
    }
}

/// What one request's body and guest task report to its response.
#[derive(Debug, Default)]
pub(crate) struct RequestState {
    fault: BodyFault,
    outcome: Outcome,
}

/// How a guest's call ended, as far as its response body needs to know:
/// set by the guest's task before its store is dropped.
#[derive(Debug, Default)]
pub(crate) struct Outcome(std::sync::atomic::AtomicU8);

impl Outcome {
    // 0: still running.
    const OK: u8 = 1;
    const FAILED: u8 = 2;
    const TIMED_OUT: u8 = 3;

    fn set(&self, v: u8) {
        self.0.store(v, Ordering::Release);
    }

    /// The status that tells what happened to a guest that failed, if it did.
    fn failure_status(&self) -> Option<u16> {
        match self.0.load(Ordering::Acquire) {
            Self::FAILED => Some(500),
            Self::TIMED_OUT => Some(504),
            _ => None,
        }
    }
}

/// What the access line of a guest's response needs once its body ends.
struct PendingAccess {
    handler: Arc<Inner>,
    method: http::Method,
    path: String,
    request_id: Arc<str>,
    trace_id: Option<[u8; 16]>,
    start: Instant,
    status: u16,
}

impl PendingAccess {
    fn emit(self, failure: Option<u16>) {
        let aborted = failure.is_some();
        if aborted {
            if let Some(m) = &self.handler.metrics {
                m.aborted.inc();
            }
            self.handler.stats.aborted.fetch_add(1, Ordering::Relaxed);
            self.handler
                .note_failure("the component failed after sending the response head".into());
            tracing::warn!(
                component = %self.handler.settings.name,
                request_id = %self.request_id,
                status = self.status,
                "response aborted: the component failed after sending the response head"
            );
        }
        wasmops_telemetry::access::AccessRecord {
            method: self.method.as_str(),
            path: &self.path,
            status: failure.unwrap_or(self.status),
            duration: self.start.elapsed(),
            app: &self.handler.settings.app,
            component: &self.handler.settings.name,
            request_id: &self.request_id,
            trace_id: self.trace_id,
            aborted,
        }
        .emit();
    }
}

/// A guest's response body. If the guest fails (traps, times out) before
/// finishing the body, the body ends in an error rather than in a clean end
/// of stream, so the server aborts the response (HTTP/1.1: the connection
/// is closed without the final chunk; HTTP/2: the stream is reset) instead
/// of presenting a cut-off body as complete. Its access line is written
/// when it ends.
struct GuestBody {
    inner: Body,
    outcome: Arc<RequestState>,
    access: Option<PendingAccess>,
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                // wasmtime ends the stream cleanly both when the guest
                // finished the body and when the body's writer was dropped
                // with the guest's store: only the outcome tells them apart.
                let failure = this.outcome.outcome.failure_status();
                if let Some(access) = this.access.take() {
                    access.emit(failure);
                }
                match failure {
                    Some(_) => {
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
                    }
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(access) = this.access.take() {
                    access.emit(Some(this.outcome.outcome.failure_status().unwrap_or(500)));
                }
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        // Not read to its end: a HEAD request, a known length reached, or
        // the client went away.
        if let Some(access) = self.access.take() {
            access.emit(self.outcome.outcome.failure_status());
        }
    }
}
