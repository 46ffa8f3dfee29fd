//! Distributed tracing: W3C trace context, spans, and an OTLP exporter
//! (HTTP/protobuf or gRPC) configured by the standard `OTEL_*` variables.
//!
//! A finished span is encoded at once into a bounded per-thread shard
//! (dropped, and counted, when full) that a background task sends in
//! batches; the request path never waits for the collector.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

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

/// Appends `bytes` in lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
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

/// A trace id shown as 32 hex digits (nothing for `None`).
#[derive(Debug, Clone, Copy)]
pub struct HexId(pub Option<[u8; 16]>);

impl std::fmt::Display for HexId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => f.write_str(&hex(id)),
            None => Ok(()),
        }
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

/// An attribute value; the string forms avoid copies where the caller
/// already holds a shared or static string.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    Shared(Arc<str>),
    Static(&'static str),
    Int(i64),
}

impl AttrValue {
    fn as_attr(&self) -> Attr<'_> {
        match self {
            AttrValue::Str(s) => Attr::Str(s),
            AttrValue::Shared(s) => Attr::Str(s),
            AttrValue::Static(s) => Attr::Str(s),
            AttrValue::Int(i) => Attr::Int(*i),
        }
    }
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
        Self::start_at(name, kind, context, parent, now_unix_nanos())
    }

    /// A span that started at a time the caller has already read (Unix
    /// nanoseconds).
    pub fn start_at(
        name: &'static str,
        kind: Kind,
        context: SpanContext,
        parent: Option<[u8; 8]>,
        start_unix_nanos: u64,
    ) -> Self {
        Self {
            context,
            parent,
            name,
            kind,
            start_unix_nanos,
            // Allocated by the first attribute only: most spans carry none.
            attributes: Vec::new(),
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
impl From<Arc<str>> for AttrValue {
    fn from(s: Arc<str>) -> Self {
        AttrValue::Shared(s)
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

/// Finished spans waiting for the exporter, already encoded as OTLP `Span`
/// messages. Ending a span encodes it on the thread that ends it, into that
/// thread's shard, and drops its strings there: no allocation is freed on
/// another thread, and the threads serving requests do not share a lock.
/// The exporter is woken when a shard holds a batch (or by its timer), not
/// once per span.
struct Queue {
    shards: Box<[Shard]>,
    full: tokio::sync::Notify,
}

/// One shard, on its own cache lines so that two threads' shards never
/// share one.
#[repr(align(128))]
struct Shard(std::sync::Mutex<Spans>);

#[derive(Default)]
struct Spans {
    /// `ScopeSpans.spans` entries: tag, length and `Span` message each.
    bytes: Vec<u8>,
    count: u64,
    scratch: Vec<u8>,
}

/// Shards per tracer; a thread always uses the same one.
const SHARDS: usize = 16;
/// Encoded bytes at which a shard wakes the exporter.
const SHARD_BATCH: usize = 128 << 10;
/// Encoded bytes a shard holds at most; beyond, new spans are dropped.
const SHARD_CAP: usize = 1 << 20;
/// Span bytes per export request at most (collectors commonly accept 4 MiB).
const EXPORT_MAX: usize = 2 << 20;
const EVERY: Duration = Duration::from_millis(500);

fn shard_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// An attribute value borrowed from the caller, for [`Tracer::end_with`].
#[derive(Debug, Clone, Copy)]
pub enum Attr<'a> {
    Str(&'a str),
    Int(i64),
}

impl Tracer {
    /// Starts the exporter on the current tokio runtime.
    pub fn spawn(config: TraceConfig) -> Self {
        let queue = Arc::new(Queue {
            shards: (0..SHARDS)
                .map(|_| Shard(std::sync::Mutex::default()))
                .collect(),
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
        self.end_with(span, &[]);
    }

    /// Ends a span now with further attributes borrowed from the caller
    /// (written after the span's own), and queues it for export.
    pub fn end_with(&self, span: SpanRecord, attrs: &[(&str, Attr<'_>)]) {
        if span.context.sampled {
            self.end_at(span, now_unix_nanos(), attrs);
        }
    }

    /// Ends a span at a time the caller has already read (Unix nanoseconds),
    /// as [`Tracer::end_with`] otherwise.
    pub fn end_at(&self, span: SpanRecord, end: u64, attrs: &[(&str, Attr<'_>)]) {
        if !span.context.sampled {
            return;
        }
        let inner = &*self.inner;
        let shard = &inner.queue.shards[shard_index()];
        let mut guard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
        let Spans {
            bytes,
            count,
            scratch,
        } = &mut *guard;
        if bytes.len() >= SHARD_CAP {
            drop(guard);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        scratch.clear();
        put_span(scratch, &span, end, attrs);
        let before = bytes.len();
        put_bytes(bytes, 2, scratch);
        *count += 1;
        let full = before < SHARD_BATCH && bytes.len() >= SHARD_BATCH;
        drop(guard);
        if full {
            inner.queue.full.notify_one();
        }
    }

    /// Spans dropped so far: queued beyond the bound, or refused by the
    /// collector.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

// OTLP protobuf, written straight from the span records: no intermediate
// message structs, one buffer per batch. Field numbers are those of
// opentelemetry/proto (collector/trace/v1, trace/v1, common/v1,
// resource/v1); the tests decode the result with the generated types.

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

const LEN: u32 = 2;

/// Bytes of a length-delimited field (one-byte tag) with `n` bytes of data.
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from(field << 3 | wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// A `KeyValue` (key 1, value 2: `AnyValue` string 1 / int 3).
fn put_attr(buf: &mut Vec<u8>, field: u32, key: &str, value: Attr<'_>) {
    let any_len = match value {
        Attr::Int(i) => 1 + varint_len(i as u64),
        Attr::Str(s) => field_len(s.len()),
    };
    let kv_len =
        1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any_len as u64) + any_len;
    put_tag(buf, field, LEN);
    put_varint(buf, kv_len as u64);
    put_bytes(buf, 1, key.as_bytes());
    put_tag(buf, 2, LEN);
    put_varint(buf, any_len as u64);
    match value {
        Attr::Int(i) => {
            put_tag(buf, 3, 0);
            put_varint(buf, i as u64);
        }
        Attr::Str(s) => put_bytes(buf, 1, s.as_bytes()),
    }
}

/// One `Span` message body: the record's attributes, then `extra`.
fn put_span(buf: &mut Vec<u8>, s: &SpanRecord, end: u64, extra: &[(&str, Attr<'_>)]) {
    put_bytes(buf, 1, &s.context.trace_id);
    put_bytes(buf, 2, &s.context.span_id);
    if let Some(p) = &s.parent {
        put_bytes(buf, 4, p);
    }
    put_bytes(buf, 5, s.name.as_bytes());
    let kind = match s.kind {
        Kind::Internal => 1,
        Kind::Server => 2,
        Kind::Client => 3,
    };
    put_tag(buf, 6, 0);
    put_varint(buf, kind);
    put_tag(buf, 7, 1);
    buf.extend_from_slice(&s.start_unix_nanos.to_le_bytes());
    put_tag(buf, 8, 1);
    buf.extend_from_slice(&end.max(s.start_unix_nanos).to_le_bytes());
    for (k, v) in &s.attributes {
        put_attr(buf, 9, k, v.as_attr());
    }
    for (k, v) in extra {
        put_attr(buf, 9, k, *v);
    }
    if let Some(message) = &s.error {
        // Status: message 2, code 3 (2 = error).
        let len = field_len(message.len()) + 2;
        put_tag(buf, 15, LEN);
        put_varint(buf, len as u64);
        put_bytes(buf, 2, message.as_bytes());
        put_tag(buf, 3, 0);
        put_varint(buf, 2);
    }
    // flags (fixed32): "has is-remote" bit, and the sampled bit.
    put_tag(buf, 16, 5);
    buf.extend_from_slice(&(0x100u32 | u32::from(s.context.sampled)).to_le_bytes());
}

/// Encodes spans as an OTLP `ExportTraceServiceRequest`.
pub fn encode(service_name: &str, spans: Vec<(SpanRecord, u64)>) -> Vec<u8> {
    let mut entries = Vec::with_capacity(spans.len() * 160);
    let mut scratch = Vec::with_capacity(512);
    for (s, end) in &spans {
        scratch.clear();
        put_span(&mut scratch, s, *end, &[]);
        put_bytes(&mut entries, 2, &scratch);
    }
    let mut out = request_head(service_name, entries.len());
    out.extend_from_slice(&entries);
    out
}

/// The start of an `ExportTraceServiceRequest` whose `ScopeSpans.spans`
/// entries (`spans_len` bytes, tags and lengths included) follow it.
fn request_head(service_name: &str, spans_len: usize) -> Vec<u8> {
    // Resource { attributes 1 }.
    let mut resource = Vec::with_capacity(128);
    put_attr(&mut resource, 1, "service.name", Attr::Str(service_name));
    put_attr(&mut resource, 1, "telemetry.sdk.name", Attr::Str("wasmops"));
    put_attr(
        &mut resource,
        1,
        "telemetry.sdk.language",
        Attr::Str("rust"),
    );
    // InstrumentationScope { name 1, version 2 }.
    let mut scope = Vec::with_capacity(32);
    put_bytes(&mut scope, 1, b"wasmops");
    put_bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let scope_spans_len = field_len(scope.len()) + spans_len;
    let resource_spans_len = field_len(resource.len()) + field_len(scope_spans_len);
    let mut out = Vec::with_capacity(field_len(resource_spans_len) - spans_len);
    // ExportTraceServiceRequest { resource_spans 1 }
    //   ResourceSpans { resource 1, scope_spans 2 }
    //     ScopeSpans { scope 1, spans 2 }
    put_tag(&mut out, 1, LEN);
    put_varint(&mut out, resource_spans_len as u64);
    put_bytes(&mut out, 1, &resource);
    put_tag(&mut out, 2, LEN);
    put_varint(&mut out, scope_spans_len as u64);
    put_bytes(&mut out, 1, &scope);
    out
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
    // Send when a shard holds a batch or when the interval ticks, whichever
    // comes first: under load that is one export per SHARD_BATCH bytes.
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush_open = true;
    // Emptied buffers, swapped back into the shards as they are taken so
    // that the request path rarely grows one.
    let mut spare: Vec<Vec<u8>> = Vec::new();
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
        let mut taken: Vec<(Vec<u8>, u64)> = Vec::new();
        for shard in q.shards.iter() {
            let mut spans = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            if spans.bytes.is_empty() {
                continue;
            }
            let fresh = spare.pop().unwrap_or_default();
            let bytes = std::mem::replace(&mut spans.bytes, fresh);
            let count = std::mem::take(&mut spans.count);
            drop(spans);
            taken.push((bytes, count));
        }
        // Several shards' spans per request, up to EXPORT_MAX bytes.
        let mut rest = &taken[..];
        while !rest.is_empty() {
            let mut n = 1;
            let mut len = rest[0].0.len();
            while n < rest.len() && len + rest[n].0.len() <= EXPORT_MAX {
                len += rest[n].0.len();
                n += 1;
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let mut body = request_head(&config.service_name, len);
            body.reserve_exact(len);
            for (bytes, _) in batch {
                body.extend_from_slice(bytes);
            }
            match send(&client, &config, body).await {
                Ok(()) => warned = false,
                Err(e) => {
                    if !warned {
                        tracing::warn!(endpoint = %config.endpoint, error = %e, "cannot export spans over OTLP; dropping them");
                        warned = true;
                    }
                    let spans: u64 = batch.iter().map(|(_, c)| c).sum();
                    dropped.fetch_add(spans, Ordering::Relaxed);
                }
            }
        }
        for (mut bytes, _) in taken {
            bytes.clear();
            spare.push(bytes);
        }
        spare.truncate(SHARDS);
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
#[path = "../benches/support/http_sink.rs"]
mod http_sink;

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
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;
        let root = SpanContext::root();
        let mut s = SpanRecord::start("request", Kind::Server, root, None);
        s.attr("http.request.method", "GET")
            .attr("url.path", "/a/\u{e9}t\u{e9}")
            .attr("http.response.status_code", 200i64)
            .attr("negative", -5i64)
            .attr("long", "x".repeat(300));
        let mut child = SpanRecord::start(
            "instantiate",
            Kind::Internal,
            root.child(),
            Some(root.span_id),
        );
        child.error = Some("wasm trap: unreachable".into());
        let end = now_unix_nanos() + 1000;
        let start = s.start_unix_nanos;
        let many: Vec<_> = (0..600)
            .map(|_| {
                (
                    SpanRecord::start("outbound", Kind::Client, root.child(), Some(root.span_id)),
                    end,
                )
            })
            .collect();
        let mut batch = vec![(s, end), (child, end)];
        batch.extend(many);
        let bytes = encode("svc", batch);
        let req = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
        let rs = &req.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(
            resource.attributes[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("svc".into()))
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "wasmops");
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 602);
        let r = &spans[0];
        assert_eq!(r.name, "request");
        assert_eq!(r.kind, 2);
        assert_eq!(r.trace_id, root.trace_id.to_vec());
        assert_eq!(r.span_id, root.span_id.to_vec());
        assert!(r.parent_span_id.is_empty());
        assert_eq!((r.start_time_unix_nano, r.end_time_unix_nano), (start, end));
        assert_eq!(r.flags, 0x101);
        let attr = |i: usize| r.attributes[i].value.as_ref().unwrap().value.clone();
        assert_eq!(r.attributes[0].key, "http.request.method");
        assert_eq!(attr(0), Some(Value::StringValue("GET".into())));
        assert_eq!(attr(1), Some(Value::StringValue("/a/\u{e9}t\u{e9}".into())));
        assert_eq!(attr(2), Some(Value::IntValue(200)));
        assert_eq!(attr(3), Some(Value::IntValue(-5)));
        assert_eq!(attr(4), Some(Value::StringValue("x".repeat(300))));
        assert!(r.status.as_ref().is_none_or(|s| s.code == 0));
        let c = &spans[1];
        assert_eq!(c.kind, 1);
        assert_eq!(c.parent_span_id, root.span_id.to_vec());
        assert_eq!(c.trace_id, root.trace_id.to_vec());
        let st = c.status.as_ref().unwrap();
        assert_eq!(
            (st.code, st.message.as_str()),
            (2, "wasm trap: unreachable")
        );
        assert_eq!(spans[601].kind, 3);
    }

    use super::http_sink;

    /// A tracer on `rt` exporting to a fresh collecting sink.
    fn tracer_to_sink(rt: &tokio::runtime::Runtime, service: &str) -> (Tracer, http_sink::Bodies) {
        let bodies = http_sink::Bodies::default();
        let endpoint = http_sink::start(Some(bodies.clone()));
        let config = TraceConfig {
            endpoint,
            protocol: Protocol::HttpProtobuf,
            service_name: service.into(),
            sampler: Sampler::ALWAYS_ON,
        };
        (rt.block_on(async { Tracer::spawn(config) }), bodies)
    }

    #[test]
    fn spans_ended_on_many_threads_all_arrive() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tracer, bodies) = tracer_to_sink(&rt, "many");
        // Enough spans that shards fill past a batch and wake the exporter.
        let (threads, per_thread) = (6, 3000);
        let root = SpanContext::root();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let tracer = tracer.clone();
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let path = format!("/t{t}/{i}");
                        let span = SpanRecord::start(
                            "request",
                            Kind::Server,
                            root.child(),
                            Some(root.span_id),
                        );
                        tracer.end_with(
                            span,
                            &[
                                ("url.path", Attr::Str(&path)),
                                ("n", Attr::Int(i64::from(i))),
                            ],
                        );
                    }
                });
            }
        });
        // Unsampled spans are not recorded.
        let mut unsampled = root.child();
        unsampled.sampled = false;
        tracer.end(SpanRecord::start("no", Kind::Internal, unsampled, None));
        rt.block_on(tracer.flush(Duration::from_secs(10)));
        assert_eq!(tracer.dropped(), 0);
        let bodies = bodies.lock().unwrap();
        assert!(
            bodies.len() > 1,
            "several exports expected, got {}",
            bodies.len()
        );
        let mut seen = std::collections::HashSet::new();
        for body in bodies.iter() {
            let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
            let rs = &req.resource_spans[0];
            assert_eq!(
                rs.resource.as_ref().unwrap().attributes[0]
                    .value
                    .as_ref()
                    .unwrap()
                    .value,
                Some(Value::StringValue("many".into()))
            );
            for span in &rs.scope_spans[0].spans {
                assert_eq!(span.name, "request");
                assert_eq!(span.trace_id, root.trace_id.to_vec());
                assert_eq!(span.parent_span_id, root.span_id.to_vec());
                assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
                let Some(Value::StringValue(path)) =
                    span.attributes[0].value.as_ref().unwrap().value.clone()
                else {
                    panic!("url.path is not a string");
                };
                let Some(Value::IntValue(n)) =
                    span.attributes[1].value.as_ref().unwrap().value.clone()
                else {
                    panic!("n is not an int");
                };
                assert!(path.ends_with(&format!("/{n}")), "{path} {n}");
                assert!(seen.insert(path), "a span arrived twice");
            }
        }
        assert_eq!(seen.len(), threads * per_thread as usize);
    }

    #[test]
    fn a_full_shard_drops_and_counts() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        // The exporter runs only inside block_on: until then spans pile up.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tracer, bodies) = tracer_to_sink(&rt, "full");
        let long = "x".repeat(200);
        let total = 3 * SHARD_CAP / 200;
        for _ in 0..total {
            let span = SpanRecord::start("s", Kind::Internal, SpanContext::root(), None);
            tracer.end_with(span, &[("long", Attr::Str(&long))]);
        }
        let dropped = tracer.dropped();
        assert!(dropped > 0);
        rt.block_on(tracer.flush(Duration::from_secs(10)));
        let received: usize = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let req = ExportTraceServiceRequest::decode(&b[..]).unwrap();
                req.resource_spans[0].scope_spans[0].spans.len()
            })
            .sum();
        assert!(received > 0);
        assert_eq!(received as u64 + dropped, total as u64);
    }

    #[test]
    fn hex_id_display() {
        let c = SpanContext::root();
        assert_eq!(HexId(Some(c.trace_id)).to_string(), c.trace_id_hex());
        assert_eq!(HexId(None).to_string(), "");
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
