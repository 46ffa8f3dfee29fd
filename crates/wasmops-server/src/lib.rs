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
            // told it serves. Two `Host` fields are refused (RFC 9112, 3.2).
            let hosts = req.headers().get_all(http::header::HOST).iter().count();
            if let Some(v) = req
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::try_from(a.as_str()).ok())
            {
                req.headers_mut().insert(http::header::HOST, v);
            }
            // CONNECT asks for a tunnel, which no component serves.
            let refused = if req.method() == http::Method::CONNECT {
                Some(connect_refused())
            } else if hosts > 1 {
                Some(text(
                    http::StatusCode::BAD_REQUEST,
                    "bad request: more than one Host header\n",
                ))
            } else {
                None
            };
            // A response to HEAD goes without its body whatever the
            // handler made (over HTTP/2 a body after HEAD is a protocol
            // error the client reports instead of the answer); the body is
            // read to its end meanwhile and dropped, so a component that
            // writes one finishes as it would for GET rather than finding
            // its stream closed.
            let head = req.method() == http::Method::HEAD;
            let fut = refused.is_none().then(|| h(req));
            async move {
                Ok::<_, Infallible>(match (fut, refused) {
                    (Some(f), _) if head => f.await.map(|body| {
                        tokio::spawn(async move {
                            use http_body_util::BodyExt as _;
                            let mut body = std::pin::pin!(body);
                            while let Some(Ok(_)) = body.frame().await {}
                        });
                        Either::Right(Full::new(Bytes::new()))
                    }),
                    (Some(f), _) => f.await.map(Either::Left),
                    (None, r) => r.unwrap_or_else(connect_refused).map(Either::Right),
                })
            }
        });
        match &tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor.clone();
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let handshake = options.header_read_timeout;
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
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
