//! `wasmops serve` over real sockets against the real guest programs.

mod common;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_over_http1_keepalive_and_h2c() {
    let server = Server::start(test_programs::HELLO, &[]);
    let c = client(false);
    for _ in 0..5 {
        let r = send(
            &c,
            http::Request::get(server.url("/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "Hello, world!\n");
        assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    }
    let c2 = client(true);
    let r = send(
        &c2,
        http::Request::get(server.url("/"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.text(), "Hello, world!\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_sees_method_path_query_headers_and_body() {
    let server = Server::start(test_programs::ECHO, &[]);
    let req = http::Request::put(server.url("/some/path?a=1&b=two"))
        .header("x-custom", "value-1")
        .body(Full::new(Bytes::from_static(b"the request body")))
        .unwrap();
    let r = send(&client(false), req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-method").as_deref(), Some("PUT"));
    assert_eq!(r.header("x-echo-path").as_deref(), Some("/some/path"));
    assert_eq!(r.header("x-echo-query").as_deref(), Some("a=1&b=two"));
    assert_eq!(
        r.header("x-echo-header-x-custom").as_deref(),
        Some("value-1")
    );
    assert_eq!(r.header("x-echo-authority"), Some(server.addr.to_string()));
    assert_eq!(r.text(), "the request body");

    // A larger body, chunked by the client.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = post(&server.url("/big"), &big).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_streaming() {
    let server = Server::start(test_programs::STREAM, &[]);
    for code in [201u16, 404, 418, 503] {
        let r = get(&server.url(&format!("/status/{code}"))).await;
        assert_eq!(r.status, code);
        assert_eq!(r.text(), format!("status {code}"));
    }
    let r = get(&server.url("/stream?chunks=40&size=10000")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 400_000);
    assert!(r.body[..10000].iter().all(|&b| b == b'a'));
    assert!(
        r.body[390_000..]
            .iter()
            .all(|&b| b == b'a' + (39 % 26) as u8)
    );

    let r = get(&server.url("/no-response")).await;
    assert_eq!(r.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_500_and_the_server_keeps_serving() {
    let server = Server::start(test_programs::HOSTILE, &[]);
    let r = get(&server.url("/panic")).await;
    assert_eq!(r.status, 500);
    assert!(
        !r.text().contains("panicked"),
        "no internals by default: {}",
        r.text()
    );
    let r = get(&server.url("/ok")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let log = server.log();
    assert!(
        log.contains("trapped") || log.contains("unreachable"),
        "the trap is logged: {log}"
    );

    let debug = Server::start(test_programs::HOSTILE, &["--debug-errors"]);
    let r = get(&debug.url("/panic")).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("trapped"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loops_time_out_without_delaying_others() {
    let server = Server::start(test_programs::HOSTILE, &["--timeout", "500ms"]);
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url("/loop");
            tokio::spawn(async move {
                let start = Instant::now();
                let r = get(&url).await;
                (r.status, start.elapsed())
            })
        })
        .collect();
    // While four guests spin on two cores, quick requests still get through.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..5 {
        let start = Instant::now();
        let r = get(&server.url("/ok")).await;
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "an /ok request took {:?}",
            start.elapsed()
        );
    }
    for l in loops {
        let (status, elapsed) = l.await.unwrap();
        assert_eq!(status, 504);
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(600),
            "a loop ended {elapsed:?} after it started"
        );
    }
    // A guest blocked in the host (sleeping) is also stopped at the deadline.
    let start = Instant::now();
    let r = get(&server.url("/sleep?ms=5000")).await;
    assert_eq!(r.status, 504);
    assert!(start.elapsed() < Duration::from_millis(600));
    assert_eq!(get(&server.url("/ok")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hogs_hit_the_limit_and_host_memory_stays_bounded() {
    let server = Server::start(
        test_programs::HOSTILE,
        &["--max-memory", "64MiB", "--debug-errors"],
    );
    for _ in 0..6 {
        let r = get(&server.url("/hog")).await;
        assert_eq!(r.status, 500);
        assert!(r.text().contains("memory limit"), "{}", r.text());
    }
    assert_eq!(get(&server.url("/ok")).await.status, 200);
    let rss = server.rss_kib();
    assert!(
        rss < 400 * 1024,
        "server RSS {rss} KiB after six 64 MiB hogs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_denies_files_sockets_and_environment() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start(test_programs::HOSTILE, &[]);

    let r = get(&server.url("/file?path=/etc/passwd")).await;
    assert!(r.text().starts_with("denied"), "{}", r.text());
    let r = get(&server.url(&format!("/socket?addr={addr}"))).await;
    assert!(r.text().starts_with("denied"), "{}", r.text());
    assert!(
        listener.accept().is_err(),
        "no connection attempt may reach the listener"
    );
    let r = get(&server.url("/env")).await;
    assert_eq!(r.text(), "", "no environment by default");

    // Granted explicitly, they work.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "12345").unwrap();
    let grant = format!("{}::/srv:ro", dir.path().display());
    let allowed = Server::start(
        test_programs::HOSTILE,
        &[
            "--dir",
            &grant,
            "--env",
            "MODE=prod",
            &format!("--allow-net={addr}"),
        ],
    );
    let r = get(&allowed.url("/file?path=/srv/f.txt")).await;
    assert_eq!(r.text(), "read 5 bytes");
    let r = get(&allowed.url("/env")).await;
    assert_eq!(r.text(), "MODE=prod\n");
    let r = get(&allowed.url(&format!("/socket?addr={addr}"))).await;
    assert_eq!(r.text(), "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_fresh_instance() {
    let server = Server::start(test_programs::HOSTILE, &[]);
    let c = client(false);
    for _ in 0..20 {
        let r = send(
            &c,
            http::Request::get(server.url("/state"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.text(), "1", "state leaked from a previous request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_gives_413() {
    let server = Server::start(test_programs::ECHO, &["--max-body", "1KiB"]);
    let r = post(&server.url("/"), &[b'x'; 1024]).await;
    assert_eq!(r.status, 200);
    let r = post(&server.url("/"), &[b'x'; 2048]).await;
    assert_eq!(r.status, 413);
    // Without a content-length (chunked), the limit still holds.
    let stream = futures_stream(vec![
        Bytes::from(vec![b'y'; 700]),
        Bytes::from(vec![b'y'; 700]),
    ]);
    let req = http::Request::post(server.url("/")).body(stream).unwrap();
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
}

type Frames = std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>;

fn futures_stream(chunks: Vec<Bytes>) -> http_body_util::StreamBody<tokio_stream::Iter<Frames>> {
    let frames: Vec<_> = chunks
        .into_iter()
        .map(|c| Ok(hyper::body::Frame::data(c)))
        .collect();
    http_body_util::StreamBody::new(tokio_stream::iter(frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queues_then_503() {
    let server = Server::start(
        test_programs::HOSTILE,
        &["--max-concurrency", "1", "--max-queue", "0"],
    );
    let slow = tokio::spawn(get_owned(server.url("/sleep?ms=1500")));
    // Wait until the slow request holds the only instance.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(&server.url("/ok")).await;
    assert_eq!(r.status, 503);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(get(&server.url("/ok")).await.status, 200);

    // With a queue, the second request waits instead.
    let queued = Server::start(
        test_programs::HOSTILE,
        &["--max-concurrency", "1", "--max-queue", "4"],
    );
    let slow = tokio::spawn(get_owned(queued.url("/sleep?ms=500")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = get(&queued.url("/ok")).await;
    assert_eq!(r.status, 200);
    assert_eq!(slow.await.unwrap().status, 200);
}

async fn get_owned(url: String) -> Resp {
    get(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let mut server = Server::start(test_programs::HOSTILE, &["--shutdown-grace", "10s"]);
    let url = server.url("/sleep?ms=800");
    let inflight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal(libc::SIGTERM);
    let r = inflight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    let status = server
        .wait(Duration::from_secs(10))
        .expect("server did not exit");
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "the listener is closed"
    );
}

#[test]
fn startup_errors_are_one_line() {
    // A command component has no HTTP handler.
    let (code, log) = Server::try_start(test_programs::CLI, &["--log-format", "text"])
        .err()
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        log.contains("does not export `wasi:http/incoming-handler`"),
        "{log}"
    );
    assert!(
        log.contains("wasi:cli/run@0.2"),
        "it says what the component exports: {log}"
    );

    // A core module is not a component.
    let (_, log) = Server::try_start(test_programs::CLI_P1, &["--log-format", "text"])
        .err()
        .unwrap();
    assert!(log.contains("core WebAssembly module"), "{log}");

    // Unknown imports are listed.
    let (_, log) = Server::try_start(
        fixture("unknown-import.wat").to_str().unwrap(),
        &["--log-format", "text"],
    )
    .err()
    .unwrap();
    assert!(log.contains("acme:widgets/frobnicate@1.0.0"), "{log}");

    // Broken file.
    let (_, log) = Server::try_start(
        fixture("not-wasm.txt").to_str().unwrap(),
        &["--log-format", "text"],
    )
    .err()
    .unwrap();
    assert!(log.contains("not a WebAssembly binary"), "{log}");
    assert!(
        !log.contains("backtrace") && !log.contains("panicked"),
        "{log}"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&[
        "serve",
        test_programs::HELLO,
        "--listen",
        &addr,
        "--admin-listen",
        "off",
        "--log-format",
        "text",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "cannot listen on {addr}: the address is already in use"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.lines().any(|l| l.starts_with("error: ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_reaches_only_granted_hosts() {
    let upstream = Server::start(test_programs::HELLO, &[]);
    let up = upstream.addr.to_string();

    // Not granted: the WASI error code, and no connection is attempted.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_addr = trap.local_addr().unwrap().to_string();
    let grant = format!("http://{up}");
    let server = Server::start(test_programs::HOSTILE, &["--allow-http", &grant]);
    let r = get(&server.url(&format!("/fetch?authority={trap_addr}"))).await;
    assert_eq!(r.text(), "error: ErrorCode::HttpRequestDenied");
    assert!(trap.accept().is_err(), "a denied request must not connect");
    // The warning names the destination (it may still be on its way).
    let log = server.wait_log("outbound HTTP request denied");
    assert!(
        log.contains(&trap_addr.split(':').next().unwrap().to_string()),
        "{log}"
    );

    // Granted: the real upstream answers.
    let r = get(&server.url(&format!("/fetch?authority={up}"))).await;
    assert_eq!(r.text(), "status 200 body Hello, world!\n");

    // No grant at all: denied.
    let closed = Server::start(test_programs::HOSTILE, &[]);
    let r = get(&closed.url(&format!("/fetch?authority={up}"))).await;
    assert_eq!(r.text(), "error: ErrorCode::HttpRequestDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasip3_service_world_is_served() {
    let server = Server::start(test_programs::HELLO_P3, &[]);
    for h2 in [false, true] {
        let c = client(h2);
        for i in 0..3 {
            let url = server.url(&format!("/p3/{i}?q=1"));
            let r = send(
                &c,
                http::Request::get(url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "Hello from WASIp3!\n");
            assert_eq!(r.header("x-path"), Some(format!("/p3/{i}?q=1")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_on_demand_allocation_when_the_pool_cannot_be_reserved() {
    // 20 GB of address space: far too little for the pool, enough for a few
    // on-demand instances.
    let server = Server::try_start_limited(test_programs::HELLO, &[], Some(20 << 30))
        .unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"));
    for _ in 0..3 {
        let r = get(&server.url("/")).await;
        assert_eq!(r.text(), "Hello, world!\n");
    }
    let log = server.wait_log("\"pooling\":false");
    assert!(
        log.contains("falling back to on-demand allocation"),
        "{log}"
    );
    assert!(log.contains("\"pooling\":false"), "{log}");
}
