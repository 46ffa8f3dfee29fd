//! A guest that misbehaves on request, to test the sandbox and the limits.
//! - `/ok`: 200 "ok"
//! - `/loop`: spins forever without calling the host
//! - `/hog`: allocates and touches memory until allocation fails
//! - `/panic`: panics
//! - `/file?path=P`: tries to read P (default /etc/passwd), reports what happened
//! - `/socket?addr=IP:PORT`: tries to open a TCP connection, reports what happened
//! - `/env`: the environment it sees, one `K=V` a line
//! - `/state`: increments a global counter and returns it (1 on a fresh instance)
//! - `/sleep?ms=N`: sleeps N ms, then answers
//! - `/fetch?authority=HOST:PORT&path=/P`: an outbound `http://` GET, reports
//!   the status and body, or the error code
//! - `/trap-mid-body?bytes=N`: sends a 200 head and N bytes, then panics
//! - `/spin-mid-body?bytes=N`: sends a 200 head and N bytes, then spins
//! - `/deep`: recurses until the stack overflows
//! - `/huge?mb=N`: a body of N MiB, written in 64 KiB pieces
//! - `/mem?mb=N&ms=D`: allocates and touches N MiB, holds it D ms, answers
//! - `/ls?path=P`: lists directory P, one name a line, or the error
//! - `/body`: reads the request body, answers its length
use std::sync::atomic::{AtomicU64, Ordering};
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasip2::sockets::network::{IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};

struct Hostile;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).unwrap();
    let body = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().unwrap();
    stream.blocking_write_and_flush(text.as_bytes()).unwrap();
    drop(stream);
    OutgoingBody::finish(body, None).unwrap();
}

fn try_connect(addr: &str) -> String {
    let Ok(sa) = addr.parse::<std::net::SocketAddrV4>() else {
        return format!("bad address {addr}");
    };
    let o = sa.ip().octets();
    let socket = match wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return format!("denied: create: {e:?}"),
    };
    let network = wasip2::sockets::instance_network::instance_network();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: sa.port(),
        address: (o[0], o[1], o[2], o[3]),
    });
    let _ = IpAddress::Ipv4((0, 0, 0, 0));
    if let Err(e) = socket.start_connect(&network, remote) {
        return format!("denied: connect: {e:?}");
    }
    let pollable = socket.subscribe();
    loop {
        match socket.finish_connect() {
            Ok(_) => return "connected".to_string(),
            Err(wasip2::sockets::network::ErrorCode::WouldBlock) => pollable.block(),
            Err(e) => return format!("denied: finish: {e:?}"),
        }
    }
}

fn fetch(authority: &str, path: &str) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{OutgoingRequest, Scheme};
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&Scheme::Http)).unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some(path)).unwrap();
    let fut = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(code) => return format!("error: {code:?}"),
    };
    fut.subscribe().block();
    let resp = match fut.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return format!("error: {code:?}"),
        other => return format!("error: {other:?}"),
    };
    let status = resp.status();
    let body = resp.consume().unwrap();
    let stream = body.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    format!("status {status} body {}", String::from_utf8_lossy(&bytes))
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if std::hint::black_box(n) == 0 {
        return 0;
    }
    recurse(n + 1).wrapping_add(pad[(n % 64) as usize])
}

#[inline(never)]
fn spin() -> ! {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Hostile {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pq = request.path_with_query().unwrap_or_default();
        let (path, query) = pq.split_once('?').unwrap_or((pq.as_str(), ""));
        match path {
            "/ok" => respond(response_out, 200, "ok"),
            "/loop" => spin(),
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    for i in (0..block.len()).step_by(4096) {
                        block[i] = 1;
                    }
                    hoard.push(std::hint::black_box(block));
                }
            }
            "/panic" => panic!("the hostile guest panicked on purpose"),
            "/file" => {
                let p = param(query, "path").unwrap_or("/etc/passwd");
                let text = match std::fs::read(p) {
                    Ok(b) => format!("read {} bytes", b.len()),
                    Err(e) => format!("denied: {e}"),
                };
                respond(response_out, 200, &text)
            }
            "/socket" => {
                let addr = param(query, "addr").unwrap_or("127.0.0.1:9");
                respond(response_out, 200, &try_connect(addr))
            }
            "/env" => {
                let text: String = std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect();
                respond(response_out, 200, &text)
            }
            "/state" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                respond(response_out, 200, &n.to_string())
            }
            "/sleep" => {
                let ms: u64 = param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(response_out, 200, "slept")
            }
            "/fetch" => {
                let authority = param(query, "authority").unwrap_or("127.0.0.1:9");
                let path = param(query, "path").unwrap_or("/");
                respond(response_out, 200, &fetch(authority, path))
            }
            "/trap-mid-body" | "/spin-mid-body" => {
                let n: usize = param(query, "bytes").and_then(|v| v.parse().ok()).unwrap_or(25);
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().unwrap();
                ResponseOutparam::set(response_out, Ok(response));
                let stream = body.write().unwrap();
                for piece in vec![b'x'; n].chunks(4096) {
                    stream.blocking_write_and_flush(piece).unwrap();
                }
                if path == "/trap-mid-body" {
                    panic!("the hostile guest failed in the middle of its body");
                }
                spin()
            }
            "/deep" => {
                respond(response_out, 200, &recurse(std::hint::black_box(1)).to_string())
            }
            "/huge" => {
                let mb: usize = param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(64);
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().unwrap();
                ResponseOutparam::set(response_out, Ok(response));
                let stream = body.write().unwrap();
                // blocking_write_and_flush takes at most 4096 bytes a call.
                let piece = vec![b'h'; 4096];
                for _ in 0..mb * 256 {
                    stream.blocking_write_and_flush(&piece).unwrap();
                }
                drop(stream);
                OutgoingBody::finish(body, None).unwrap();
            }
            "/mem" => {
                let mb: usize = param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(16);
                let ms: u64 = param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut block = vec![0u8; mb << 20];
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                std::hint::black_box(&block);
                if ms > 0 {
                    wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                }
                respond(response_out, 200, &format!("held {mb} MiB"))
            }
            "/ls" => {
                let p = param(query, "path").unwrap_or("/");
                let text = match std::fs::read_dir(p) {
                    Ok(rd) => rd
                        .filter_map(|e| e.ok())
                        .map(|e| format!("{}\n", e.file_name().to_string_lossy()))
                        .collect(),
                    Err(e) => format!("denied: {e}"),
                };
                respond(response_out, 200, &text)
            }
            "/body" => {
                let body = request.consume().unwrap();
                let stream = body.stream().unwrap();
                let mut n = 0usize;
                let text = loop {
                    match stream.blocking_read(64 * 1024) {
                        Ok(chunk) => n += chunk.len(),
                        Err(wasip2::io::streams::StreamError::Closed) => break format!("{n}"),
                        Err(e) => break format!("error after {n} bytes: {e:?}"),
                    }
                };
                drop(stream);
                respond(response_out, 200, &text)
            }
            _ => respond(response_out, 404, "not found"),
        }
    }
}

wasip2::http::proxy::export!(Hostile);
