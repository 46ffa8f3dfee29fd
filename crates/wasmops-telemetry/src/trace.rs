//! Distributed tracing: W3C trace context, spans, and an OTLP exporter
//! (HTTP/protobuf or gRPC) configured by the standard `OTEL_*` variables.
//!
//! Finished spans go into a bounded queue (dropped, and counted, when full)
//! that a background task sends in batches; the request path never waits for
//! the collector.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// Base endpoint, e.g. `http://127.0.0.1:4318` (HTTP) or `:4317` (gRPC).
    pub endpoint: String,
    pub protocol: Protocol,
    pub service_name: String,
    pub sampler: Sampler,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Follow the caller's sampled flag when there is a caller.
    pub parent_based: bool,
    /// Share of new traces recorded, 0.0..=1.0.
    pub ratio: f64,
}

impl Eq for Sampler {}

impl Sampler {
    pub const ALWAYS_ON: Sampler = Sampler {
        parent_based: true,
        ratio: 1.0,
    };

    fn parse(name: Option<String>, arg: Option<String>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg.as_deref().map(str::trim) {
                None | Some("") => Ok(1.0),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG `{a}` must be a ratio between 0 and 1")
                    }),
            }
        };
        Ok(
            match name
                .as_deref()
                .map(str::trim)
                .unwrap_or("parentbased_always_on")
            {
                "always_on" => Sampler {
                    parent_based: false,
                    ratio: 1.0,
                },
                "always_off" => Sampler {
                    parent_based: false,
                    ratio: 0.0,
                },
                "traceidratio" => Sampler {
                    parent_based: false,
                    ratio: ratio()?,
                },
                "parentbased_always_on" => Sampler {
                    parent_based: true,
                    ratio: 1.0,
                },
                "parentbased_always_off" => Sampler {
                    parent_based: true,
                    ratio: 0.0,
                },
                "parentbased_traceidratio" => Sampler {
                    parent_based: true,
                    ratio: ratio()?,
                },
                other => {
                    return Err(format!(
                        "OTEL_TRACES_SAMPLER `{other}` is not supported: use always_on, always_off, traceidratio or their parentbased_ forms"
                    ));
                }
            },
        )
    }

    /// Whether a trace is recorded: the caller's flag when parent-based and
    /// there is a caller, else the trace id compared with the ratio.
    pub fn sampled(&self, parent: Option<&SpanContext>, trace_id: &[u8; 16]) -> bool {
        if self.parent_based
            && let Some(p) = parent
        {
            return p.sampled;
        }
        if self.ratio >= 1.0 {
            return true;
        }
        let x = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
        (x as f64) < self.ratio * (u64::MAX as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl TraceConfig {
    /// Reads `OTEL_SDK_DISABLED`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` /
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` or `grpc`) and
    /// `OTEL_SERVICE_NAME`. Tracing is off unless an endpoint is set.
    pub fn from_env(default_service: &str) -> Result<Option<Self>, String> {
        Self::from_lookup(|k| std::env::var(k).ok(), default_service)
    }

    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        default_service: &str,
    ) -> Result<Option<Self>, String> {
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces_endpoint =
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty());
        let endpoint = match (
            &traces_endpoint,
            get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(e), _) => e.trim().to_string(),
            (None, Some(e)) => e.trim().to_string(),
            (None, None) => return Ok(None),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT `{endpoint}` must start with http:// or https://"
            ));
        }
        if endpoint.starts_with("https://") {
            return Err(
                "OTLP over TLS (https://) is not supported yet; use an http:// collector endpoint"
                    .into(),
            );
        }
        let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        let protocol = match protocol.trim() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "grpc" => Protocol::Grpc,
            other => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported: use http/protobuf or grpc"
                ));
            }
        };
        // A signal-specific endpoint is used as is; the general one gets the
        // signal path appended (for HTTP).
        let endpoint = match (protocol, traces_endpoint.is_some()) {
            (Protocol::HttpProtobuf, false) => {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            }
            (Protocol::HttpProtobuf, true) => endpoint,
            (Protocol::Grpc, _) => format!(
                "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                endpoint.trim_end_matches('/')
            ),
        };
        let service_name = get("OTEL_SERVICE_NAME")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default_service.to_string());
        let sampler = Sampler::parse(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?;
        Ok(Some(Self {
            endpoint,
            protocol,
            service_name,
            sampler,
        }))
    }
}

/// A position in a trace: trace id, span id, sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
            let local = 0u8;
            t ^ (&local as *const u8 as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15
        });
    }
    STATE.with(|s| {
        // splitmix64
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl SpanContext {
    /// A new trace.
    pub fn root() -> Self {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_u64().to_be_bytes());
        Self {
            trace_id,
            span_id: random_u64().max(1).to_be_bytes(),
            sampled: true,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_u64().max(1).to_be_bytes(),
            sampled: self.sampled,
        }
    }

    /// Parses a W3C `traceparent` header.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || unhex::<1>(version).is_none() {
            return None;
        }
        let trace_id = unhex::<16>(&trace.to_ascii_lowercase())?;
        let span_id = unhex::<8>(&parent.to_ascii_lowercase())?;
        let flags = unhex::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The W3C `traceparent` header value for this span.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Span kinds as OTLP numbers them.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Internal,
    Server,
    Client,
}

/// A span being recorded; sent when [`Tracer::end`] is called.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: &'static str,
    pub kind: Kind,
    pub start_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

impl SpanRecord {
    pub fn start(
        name: &'static str,
        kind: Kind,
        context: SpanContext,
        parent: Option<[u8; 8]>,
    ) -> Self {
        Self {
            context,
            parent,
            name,
            kind,
            start_unix_nanos: now_unix_nanos(),
            attributes: Vec::with_capacity(6),
            error: None,
        }
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) -> &mut Self {
        self.attributes.push((key, value.into()));
        self
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}

/// Hands finished spans to the exporter. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<TracerInner>,
}

struct TracerInner {
    sampler: Sampler,
    queue: Arc<Queue>,
    flush: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
}

/// Finished spans waiting for the exporter. Ending a span is a push under a
/// short lock; the exporter is woken only when a batch is full (or by its
/// timer), not once per span: waking a task per span cost more than the
/// spans themselves.
struct Queue {
    spans: std::sync::Mutex<Vec<(SpanRecord, u64)>>,
    full: tokio::sync::Notify,
}

/// Spans queued at most; beyond, new spans are dropped.
const QUEUE: usize = 8192;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_millis(500);

impl Tracer {
    /// Starts the exporter on the current tokio runtime.
    pub fn spawn(config: TraceConfig) -> Self {
        let queue = Arc::new(Queue {
            spans: std::sync::Mutex::new(Vec::with_capacity(BATCH)),
            full: tokio::sync::Notify::new(),
        });
        let (flush, flush_rx) = tokio::sync::mpsc::channel(4);
        let dropped = Arc::new(AtomicU64::new(0));
        let sampler = config.sampler;
        tokio::spawn(export_loop(
            config,
            Arc::downgrade(&queue),
            flush_rx,
            dropped.clone(),
        ));
        Self {
            inner: Arc::new(TracerInner {
                sampler,
                queue,
                flush,
                dropped,
            }),
        }
    }

    /// The context of a server span for a request, continuing the caller's
    /// trace when there is one, with the sampling decision made.
    pub fn server_context(&self, incoming: Option<&SpanContext>) -> SpanContext {
        let mut ctx = match incoming {
            Some(p) => p.child(),
            None => SpanContext::root(),
        };
        ctx.sampled = self.inner.sampler.sampled(incoming, &ctx.trace_id);
        ctx
    }

    /// Sends everything queued so far; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.inner.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }

    /// Ends a span now and queues it for export.
    pub fn end(&self, span: SpanRecord) {
        if !span.context.sampled {
            return;
        }
        let end = now_unix_nanos();
        let inner = &*self.inner;
        let mut q = inner.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= QUEUE {
            drop(q);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push((span, end));
        let full = q.len() == BATCH;
        drop(q);
        if full {
            inner.queue.full.notify_one();
        }
    }

    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Encodes spans as an OTLP `ExportTraceServiceRequest`.
pub fn encode(service_name: &str, spans: Vec<(SpanRecord, u64)>) -> Vec<u8> {
    let spans = spans
        .into_iter()
        .map(|(s, end)| Span {
            trace_id: s.context.trace_id.to_vec(),
            span_id: s.context.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x100 | u32::from(s.context.sampled),
            name: s.name.to_string(),
            kind: match s.kind {
                Kind::Internal => span::SpanKind::Internal as i32,
                Kind::Server => span::SpanKind::Server as i32,
                Kind::Client => span::SpanKind::Client as i32,
            },
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: end.max(s.start_unix_nanos),
            attributes: s
                .attributes
                .into_iter()
                .map(|(k, v)| match v {
                    AttrValue::Str(s) => kv(k, any_value::Value::StringValue(s)),
                    AttrValue::Int(i) => kv(k, any_value::Value::IntValue(i)),
                })
                .collect(),
            status: Some(match s.error {
                Some(message) => Status {
                    message,
                    code: status::StatusCode::Error as i32,
                },
                None => Status {
                    message: String::new(),
                    code: status::StatusCode::Unset as i32,
                },
            }),
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue(service_name.to_string()),
                    ),
                    kv(
                        "telemetry.sdk.name",
                        any_value::Value::StringValue("wasmops".into()),
                    ),
                    kv(
                        "telemetry.sdk.language",
                        any_value::Value::StringValue("rust".into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "wasmops".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

async fn export_loop(
    config: TraceConfig,
    queue: std::sync::Weak<Queue>,
    mut flush_rx: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(config.protocol == Protocol::Grpc)
        .build_http::<Full<Bytes>>();
    let mut warned = false;
    // Send when a batch is full or when the interval ticks, whichever comes
    // first: under load that is one export per BATCH spans, not per span.
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush_open = true;
    while let Some(q) = queue.upgrade() {
        let mut flushed = None;
        tokio::select! {
            _ = q.full.notified() => {}
            f = flush_rx.recv(), if flush_open => match f {
                Some(done) => flushed = Some(done),
                None => flush_open = false,
            },
            _ = tick.tick() => {}
        }
        // Every tracer gone: send what is left, then stop.
        let last = Arc::strong_count(&q) == 1;
        loop {
            let batch: Vec<_> = {
                let mut spans = q.spans.lock().unwrap_or_else(|p| p.into_inner());
                let n = spans.len().min(BATCH);
                spans.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let body = encode(&config.service_name, batch);
            match send(&client, &config, body).await {
                Ok(()) => warned = false,
                Err(e) => {
                    if !warned {
                        tracing::warn!(endpoint = %config.endpoint, error = %e, "cannot export spans over OTLP; dropping them");
                        warned = true;
                    }
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(q);
        if let Some(done) = flushed {
            let _ = done.send(());
        }
        if last {
            break;
        }
    }
}

async fn send(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    config: &TraceConfig,
    body: Vec<u8>,
) -> Result<(), String> {
    let req = match config.protocol {
        Protocol::HttpProtobuf => http::Request::post(&config.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body))),
        Protocol::Grpc => {
            let mut framed = Vec::with_capacity(body.len() + 5);
            framed.push(0);
            framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
            framed.extend_from_slice(&body);
            http::Request::post(&config.endpoint)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header("te", "trailers")
                .body(Full::new(Bytes::from(framed)))
        }
    }
    .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let grpc_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = resp.into_body().collect().await;
    if !status.is_success() {
        return Err(format!("collector answered {status}"));
    }
    if let Some(s) = grpc_status
        && s != "0"
    {
        return Err(format!("collector answered grpc-status {s}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_roundtrip() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = SpanContext::from_traceparent(tp).unwrap();
        assert_eq!(c.traceparent(), tp);
        assert!(c.sampled);
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        assert!(
            SpanContext::from_traceparent(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
            )
            .is_none()
        );
        assert!(SpanContext::from_traceparent("00-xyz-00f067aa0ba902b7-01").is_none());
        assert!(
            SpanContext::from_traceparent(
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            )
            .is_none()
        );
        let r = SpanContext::root();
        assert_ne!(r.trace_id, [0; 16]);
        assert_eq!(SpanContext::from_traceparent(&r.traceparent()), Some(r));
    }

    #[test]
    fn samplers() {
        let t = SpanContext::root();
        let parent_off = SpanContext {
            sampled: false,
            ..t
        };
        assert!(Sampler::ALWAYS_ON.sampled(None, &t.trace_id));
        assert!(!Sampler::ALWAYS_ON.sampled(Some(&parent_off), &t.trace_id));
        let s = Sampler::parse(Some("traceidratio".into()), Some("0.25".into())).unwrap();
        let n = (0..4000)
            .filter(|_| s.sampled(None, &SpanContext::root().trace_id))
            .count();
        assert!((700..1300).contains(&n), "{n}");
        assert!(
            s.sampled(Some(&parent_off), &[0; 16]),
            "not parent-based: the ratio decides"
        );
        assert!(
            !Sampler::parse(Some("always_off".into()), None)
                .unwrap()
                .sampled(None, &t.trace_id)
        );
        assert!(Sampler::parse(Some("traceidratio".into()), Some("2".into())).is_err());
        assert!(Sampler::parse(Some("jaeger_remote".into()), None).is_err());
    }

    #[test]
    fn config_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(TraceConfig::from_lookup(env(&[]), "svc").unwrap(), None);
        let c = TraceConfig::from_lookup(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]),
            "svc",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.service_name, "svc");
        let c = TraceConfig::from_lookup(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_SERVICE_NAME", "shop"),
            ]),
            "svc",
        )
        .unwrap()
        .unwrap();
        assert!(
            c.endpoint
                .ends_with("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        );
        assert_eq!(c.service_name, "shop");
        assert_eq!(
            TraceConfig::from_lookup(
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:1"),
                    ("OTEL_SDK_DISABLED", "true")
                ]),
                "s"
            )
            .unwrap(),
            None
        );
        assert!(
            TraceConfig::from_lookup(
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:1"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ]),
                "s"
            )
            .is_err()
        );
    }

    #[test]
    fn encodes_a_decodable_request() {
        let root = SpanContext::root();
        let mut s = SpanRecord::start("request", Kind::Server, root, None);
        s.attr("http.request.method", "GET")
            .attr("http.response.status_code", 200i64);
        let child = SpanRecord::start(
            "instantiate",
            Kind::Internal,
            root.child(),
            Some(root.span_id),
        );
        let bytes = encode(
            "svc",
            vec![(s, now_unix_nanos()), (child, now_unix_nanos())],
        );
        let req = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, "request");
        assert_eq!(spans[1].parent_span_id, root.span_id.to_vec());
        assert_eq!(spans[1].trace_id, root.trace_id.to_vec());
    }
}
