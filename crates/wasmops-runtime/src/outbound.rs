//! The client behind guests' outbound HTTP: one process-wide connection pool
//! (HTTP/1.1 keep-alive, TLS with the web PKI roots), with connect,
//! first-byte and between-bytes timeouts.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Default time to establish a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time from sending the request to the response head.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest pause between two frames of the response body.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type Pool = Client<Connector, WasiBody>;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let tls = match tls {
            Ok(c) => Some(tokio_rustls::TlsConnector::from(Arc::new(c))),
            Err(e) => {
                tracing::error!(error = %e, "TLS is unavailable for outbound requests");
                None
            }
        };
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build(Connector { http, tls })
    })
}

/// Sends a guest's request through the pool. The returned future of the
/// connection's I/O is already done: the pool drives connections itself.
pub async fn send(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response<WasiBody>, Error> {
    use http_body_util::BodyExt;
    if request.uri().authority().is_none() {
        return Err(Error::HttpRequestUriInvalid);
    }
    let connect = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let first_byte = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(FIRST_BYTE_TIMEOUT);
    let between = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(BETWEEN_BYTES_TIMEOUT);
    // The pool sets Host from the URI; a guest-supplied one is kept.
    request.headers_mut().remove(http::header::CONNECTION);
    let response = tokio::time::timeout(connect + first_byte, pool().request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(classify)?;
    Ok(response.map(|incoming| {
        TimedBody {
            inner: incoming,
            between,
            sleep: Box::pin(tokio::time::sleep(between)),
        }
        .boxed_unsync()
    }))
}

fn classify(e: hyper_util::client::legacy::Error) -> Error {
    use std::error::Error as _;
    if e.is_connect() {
        let mut src = e.source();
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    std::io::ErrorKind::TimedOut => Error::ConnectionTimeout,
                    std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                    _ => Error::Connect(std::io::Error::new(io.kind(), io.to_string())),
                };
            }
            src = s.source();
        }
        if format!("{e:?}").contains("timed out") {
            return Error::ConnectionTimeout;
        }
        return Error::ConnectionRefused;
    }
    match e.source().and_then(|s| s.downcast_ref::<hyper::Error>()) {
        Some(_) => Error::HttpProtocolError,
        None => Error::ConnectionTerminated,
    }
}

/// A response body that fails when the peer pauses too long.
struct TimedBody {
    inner: hyper::body::Incoming,
    between: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                let next = tokio::time::Instant::now() + this.between;
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(Error::ConnectionTerminated))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// TCP, then TLS for `https`.
#[derive(Clone)]
struct Connector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let tcp = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or("TLS is unavailable")?;
            let name = rustls::pki_types::ServerName::try_from(host)?;
            let s = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp.into_inner()))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(Stream::Tls(Box::new(TokioIo::new(s))))
        })
    }
}

enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
