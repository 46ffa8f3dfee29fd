//! The serving loop shared by `serve`, `up` and the node: accept on a
//! listener, speak HTTP/1.1 (keep-alive) and HTTP/2 (h2c, prior knowledge),
//! call a handler per request, and shut down gracefully; the admin
//! endpoints; the process shell around them (`hosting`). Knows nothing of
//! WebAssembly: handlers are any async function from a request to a
//! response with a streaming body.

pub mod hosting;
pub mod router;
pub mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The error type of response bodies, as hyper takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response with a whole body, for answers the server makes itself.
pub fn text(status: http::StatusCode, text: &str) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Why the listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error(
        "cannot listen on {addr}: the address is already in use; stop the other process or pick another address"
    )]
    InUse { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: permission denied; ports below 1024 need privileges, pick another address"
    )]
    Denied { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Other {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds a TCP listener with a clear error when the address is taken.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let map = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => BindError::InUse { addr },
        std::io::ErrorKind::PermissionDenied => BindError::Denied { addr },
        _ => BindError::Other { addr, source },
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(map)?;
    // SO_REUSEADDR lets a restarted server bind while old connections are in
    // TIME_WAIT; it does not allow two listeners on one port on Linux.
    socket.set_reuseaddr(true).map_err(map)?;
    socket.set_nodelay(true).map_err(map)?;
    socket.bind(addr).map_err(map)?;
    socket.listen(1024).map_err(map)
}

/// Serving options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// How long a client may take to send request headers.
    pub header_read_timeout: Duration,
    /// A secondary listener (the admin endpoints): its shutdown is logged
    /// at debug level, so a stop logs one "shutting down" line.
    pub secondary: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            secondary: false,
        }
    }
}

/// What happened when the server stopped.
#[derive(Debug, Clone, Default)]
pub struct ServeSummary {
    pub connections: u64,
    /// Connections still open when the grace period ran out.
    pub abandoned: bool,
}

/// TLS for a listener: a certificate chain and its private key.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1). Offers HTTP/2 and HTTP/1.1 by ALPN.
    pub fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        })
    }
}

/// Serves until `shutdown` completes, then stops accepting, lets in-flight
/// requests finish for up to `shutdown_grace`, and returns.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<ServeSummary>
where
    H: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_with(listener, None, handler, options, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given (the handshake must finish
/// within the header read timeout).
pub async fn serve_with<H, Fut, B>(
    listener: TcpListener,
    tls: Option<Tls>,
    handler: H,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<ServeSummary>
where
    H: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    let mut summary = ServeSummary::default();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        summary.connections += 1;
        let h = handler.clone();
        let local = stream.local_addr().ok();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            // HTTP/1.0 does not require `Host`; a component is given an
            // authority, the address the client reached (HTTP/1.1 without
            // one is refused, as RFC 9112 requires).
            if req.version() < http::Version::HTTP_11
                && req.uri().authority().is_none()
                && !req.headers().contains_key(http::header::HOST)
                && let Some(v) = local.and_then(|a| http::HeaderValue::try_from(a.to_string()).ok())
            {
                req.headers_mut().insert(http::header::HOST, v);
            }
            // A request-target in absolute form (or HTTP/2's `:authority`)
            // names the host: it replaces `Host` (RFC 9112, 3.2.3), so
            // that the app it is routed to is the one the component is
            // told it serves. What no component should be handed is
            // refused here (see `refusal`).
            let refused = refusal(&req);
            if let Some(v) = req
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::try_from(a.as_str()).ok())
            {
                req.headers_mut().insert(http::header::HOST, v);
            }
            let head = req.method() == http::Method::HEAD;
            let fut = refused.is_none().then(|| h(req));
            async move {
                Ok::<_, Infallible>(match (fut, refused) {
                    (Some(f), _) => final_response(f.await, head),
                    (None, r) => r.unwrap_or_else(connect_refused).map(Either::Right),
                })
            }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let limit = options.header_read_timeout;
        tokio::spawn(async move {
            // The header read timeout runs from the first byte: a
            // connection that sends nothing at all would otherwise stay
            // open for good. A TLS handshake gets as long again.
            match tokio::time::timeout(limit, stream.peek(&mut [0u8; 1])).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!(%peer, "connection sent nothing in time; closed");
                    return;
                }
            }
            let served = match acceptor {
                None => {
                    let io = TokioIo::new(stream);
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(io, service)
                                .into_owned(),
                        )
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let io = TokioIo::new(s);
                            watcher
                                .watch(
                                    builder
                                        .serve_connection_with_upgrades(io, service)
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if options.secondary {
        tracing::debug!("admin listener shutting down");
    } else {
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    }
    match tokio::time::timeout(options.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => {}
        Err(_) => {
            summary.abandoned = true;
            tracing::warn!(grace = ?options.shutdown_grace, "in-flight requests still running after the grace period; closing");
        }
    }
    Ok(summary)
}

/// What the serving shell refuses before any handler sees the request:
/// CONNECT (405); two `Host` fields, a missing or malformed one, or
/// HTTP/2's `:authority` and `host` naming two hosts (400); a
/// request-target in authority form or `*` (400); a path with a `.` or
/// `..` segment, plain or percent-encoded (400: a proxy that normalises
/// paths would route it elsewhere than the router here); a transfer coding
/// other than `chunked` (501: the body would reach the component still
/// encoded) or `chunked` twice (400).
fn refusal<B>(req: &http::Request<B>) -> Option<http::Response<Full<Bytes>>> {
    use http::StatusCode;
    let bad = |why: &str| {
        Some(text(
            StatusCode::BAD_REQUEST,
            &format!("bad request: {why}\n"),
        ))
    };
    if req.method() == http::Method::CONNECT {
        return Some(connect_refused());
    }
    let hosts: Vec<&http::HeaderValue> = req.headers().get_all(http::header::HOST).iter().collect();
    if hosts.len() > 1 {
        return bad("more than one Host header");
    }
    let uri = req.uri();
    if uri.scheme().is_none() && uri.authority().is_some() {
        return bad("a request-target in authority form is for CONNECT only; send a path");
    }
    if uri.path() == "*" && req.method() != http::Method::OPTIONS {
        return bad("`*` is a request-target for OPTIONS only; send a path");
    }
    let host = match (uri.authority(), hosts.first()) {
        (Some(a), Some(h)) if req.version() == http::Version::HTTP_2 => {
            if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                return bad("the :authority and the host header name two hosts");
            }
            Some(a.as_str().as_bytes())
        }
        (Some(a), _) => Some(a.as_str().as_bytes()),
        (None, Some(h)) => Some(h.as_bytes()),
        (None, None) => None,
    };
    match host {
        Some(h) if !valid_authority(h) => {
            return bad("the Host header is not a host name or address with an optional port");
        }
        None if req.version() == http::Version::HTTP_11 => {
            return bad("HTTP/1.1 requires a Host header");
        }
        _ => {}
    }
    let path = uri.path();
    if (path.contains('.') || path.contains('%')) && path.split('/').any(is_dot_segment) {
        return bad("the path has a `.` or `..` segment; send it with dot segments removed");
    }
    let mut chunked = 0;
    for v in req.headers().get_all(http::header::TRANSFER_ENCODING) {
        for coding in v.to_str().unwrap_or("?").split(',') {
            let coding = coding.trim();
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else if !coding.is_empty() {
                return Some(text(
                    StatusCode::NOT_IMPLEMENTED,
                    "not implemented: a transfer coding other than chunked; send the body as it is (Content-Length or chunked)\n",
                ));
            }
        }
    }
    if chunked > 1 {
        return bad("chunked is applied more than once");
    }
    None
}

/// Whether a path segment is `.` or `..`, any dot percent-encoded.
fn is_dot_segment(seg: &str) -> bool {
    let mut dots = 0;
    let mut rest = seg.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3
            && rest[0] == b'%'
            && rest[1] == b'2'
            && rest[2].eq_ignore_ascii_case(&b'e')
        {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Whether `h` is `host[:port]`: a DNS name (labels of letters, digits,
/// `-` and `_`, none empty but for one trailing dot), an IPv4 address or a
/// bracketed IPv6 literal.
fn valid_authority(h: &[u8]) -> bool {
    let (host, port) = if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&h[1..end]).unwrap_or("");
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        (&h[..0], &h[end + 1..])
    } else {
        match h.iter().rposition(|&b| b == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, &h[h.len()..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if !port_ok {
        return false;
    }
    if host.is_empty() {
        // A bracketed literal was checked above; an empty name is not one.
        return h.first() == Some(&b'[');
    }
    let host = host.strip_suffix(b".").unwrap_or(host);
    host.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The handler's response as it may go out. HEAD, 204, 205 and 304 go
/// without a body whatever the handler made (over HTTP/2 a body there is a
/// protocol error the client reports instead of the answer); the body is
/// read to its end meanwhile and dropped, so a component that writes one
/// finishes as it would otherwise rather than finding its stream closed.
/// A status that is not a final one (1xx, or 600 and above) is the
/// component's error: 500, said so.
fn final_response<B>(resp: http::Response<B>, head: bool) -> http::Response<Either<B, Full<Bytes>>>
where
    B: http_body::Body + Send + 'static,
{
    let status = resp.status();
    let drain = |body: B| {
        tokio::spawn(async move {
            use http_body_util::BodyExt as _;
            let mut body = std::pin::pin!(body);
            while let Some(Ok(_)) = body.frame().await {}
        });
    };
    if status.is_informational() || status.as_u16() >= 600 {
        let (_, body) = resp.into_parts();
        drain(body);
        tracing::error!(
            status = status.as_u16(),
            "the component answered with a status that is not a final one"
        );
        return text(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "the component answered with status {}, which is not a final HTTP status (200-599)\n",
                status.as_u16()
            ),
        )
        .map(Either::Right);
    }
    let bodiless = matches!(status.as_u16(), 204 | 205 | 304);
    if head || bodiless {
        let (mut parts, body) = resp.into_parts();
        drain(body);
        if bodiless {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            parts.headers.remove(http::header::TRANSFER_ENCODING);
        }
        return http::Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    }
    resp.map(Either::Left)
}

/// The answer to CONNECT: 405, with the methods that are served.
fn connect_refused() -> http::Response<Full<Bytes>> {
    let mut r = text(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "CONNECT is not supported: this server does not open tunnels\n",
    );
    r.headers_mut().insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    r
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The admin listener's state: metrics to expose and readiness.
#[derive(Clone)]
pub struct Admin {
    pub metrics: std::sync::Arc<wasmops_telemetry::Metrics>,
    pub ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Admin {
    /// Answers `/metrics`, `/healthz` and `/readyz`; everything else is 404.
    pub fn handle<B>(&self, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
        admin_answer(
            req,
            self.ready.load(std::sync::atomic::Ordering::Acquire),
            || self.metrics.encode(),
        )
    }
}

/// The admin endpoints' answer to `req`: `/metrics` (its text from
/// `metrics`, called only for that path), `/healthz`, `/readyz` (`ready`);
/// 405 for methods other than GET/HEAD, 404 elsewhere.
pub(crate) fn admin_answer<B>(
    req: &http::Request<B>,
    ready: bool,
    metrics: impl FnOnce() -> String,
) -> http::Response<Full<Bytes>> {
    use http::StatusCode;
    if !is_read(req) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, &metrics());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if ready => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

/// GET or HEAD: what the admin endpoints serve.
pub(crate) fn is_read<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET || req.method() == http::Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn req(version: http::Version, target: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::get(target).version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn refused(r: &http::Request<()>) -> Option<u16> {
        refusal(r).map(|r| r.status().as_u16())
    }

    #[test]
    fn what_no_component_is_handed() {
        use http::Version as V;
        let h11 =
            |target: &str, headers: &[(&str, &str)]| refused(&req(V::HTTP_11, target, headers));
        let host = |h: &str| h11("/", &[("host", h)]);
        // Served.
        for ok in [
            "echo.test",
            "Echo.Test.:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "a_b.test",
        ] {
            assert_eq!(host(ok), None, "{ok}");
        }
        assert_eq!(h11("/a/..b/.c/x.y", &[("host", "x")]), None);
        assert_eq!(refused(&req(V::HTTP_10, "/", &[])), None);
        assert_eq!(
            refused(&req(
                V::HTTP_2,
                "http://echo.test/",
                &[("host", "ECHO.test")]
            )),
            None
        );
        // Refused.
        for bad in [
            "a b",
            "*.wild.test",
            "a..wild.test",
            "a.test..",
            "x@echo.test",
            "echo.test/abc",
            "[::1",
            "[nope]",
            "a:b:c",
            "a:",
            "",
        ] {
            assert_eq!(host(bad), Some(400), "{bad:?}");
        }
        assert_eq!(h11("/", &[]), Some(400), "HTTP/1.1 without Host");
        assert_eq!(h11("/", &[("host", "a"), ("host", "b")]), Some(400));
        for path in [
            "/echo/../stream",
            "/echo/%2e%2e/stream",
            "/echo/%2E./x",
            "/./echo",
            "/echo/.",
        ] {
            assert_eq!(h11(path, &[("host", "x")]), Some(400), "{path}");
        }
        assert_eq!(h11("a.test:80", &[("host", "a.test")]), Some(400));
        assert_eq!(h11("*", &[("host", "x")]), Some(400));
        assert_eq!(
            refused(&req(
                V::HTTP_2,
                "http://echo.test/",
                &[("host", "other.test")]
            )),
            Some(400)
        );
        let te = |v: &str| h11("/", &[("host", "x"), ("transfer-encoding", v)]);
        assert_eq!(te("chunked"), None);
        assert_eq!(te("gzip, chunked"), Some(501));
        assert_eq!(te("chunked, chunked"), Some(400));
        let mut r = req(V::HTTP_11, "/", &[("host", "x")]);
        *r.method_mut() = http::Method::CONNECT;
        assert_eq!(refused(&r), Some(405));
    }

    /// Sends raw bytes and reads until the server closes (or 5 s).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statuses_bodies_and_silent_connections() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers `/status/N` with status N and a body.
        let handler = |req: http::Request<Incoming>| async move {
            let n: u16 = req
                .uri()
                .path()
                .trim_start_matches("/status/")
                .parse()
                .unwrap_or(200);
            let mut r = http::Response::new(Full::new(Bytes::from_static(b"body")));
            *r.status_mut() = StatusCode::from_u16(n).unwrap();
            r
        };
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, handler, options, async {
            let _ = stopped.await;
        }));
        let get = |path: &str, method: &str| {
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        };
        let r = exchange(addr, get("/status/201", "GET").as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 201") && r.ends_with("body"), "{r}");
        for bodiless in ["204", "304"] {
            let r = exchange(addr, get(&format!("/status/{bodiless}"), "GET").as_bytes()).await;
            assert!(r.starts_with(&format!("HTTP/1.1 {bodiless}")), "{r}");
            assert!(!r.ends_with("body"), "{r}");
        }
        let r = exchange(addr, get("/status/200", "HEAD").as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 200") && !r.ends_with("body"), "{r}");
        for not_final in ["101", "103", "600", "999"] {
            let r = exchange(addr, get(&format!("/status/{not_final}"), "GET").as_bytes()).await;
            assert!(r.starts_with("HTTP/1.1 500"), "{not_final}: {r}");
            assert!(
                r.contains(&format!("status {not_final}, which is not a final")),
                "{r}"
            );
        }
        // A connection that sends nothing is closed after the header
        // timeout, not kept for good.
        let started = std::time::Instant::now();
        let r = exchange(addr, b"").await;
        assert!(r.is_empty(), "{r}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
