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
    // HEAD, over either: the head without the body the component wrote
    // (a body after HEAD is an HTTP/2 protocol error).
    for c in [&c, &c2] {
        let r = send(
            c,
            http::Request::head(server.url("/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (200, ""));
        assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    }
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

    // A component's 204 or 304 goes without the body it wrote, on HTTP/1.1
    // and HTTP/2 (a body there was an h2 protocol error); a status that is
    // not a final one is the component's error.
    for h2 in [false, true] {
        for (asked, got, body) in [
            ("204", 204, ""),
            ("304", 304, ""),
            ("101", 500, "not a final"),
            ("600", 500, "not a final"),
        ] {
            let req = http::Request::get(server.url(&format!("/status/{asked}")))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let r = common::send(&client(h2), req).await;
            assert_eq!(r.status, got, "h2={h2} {asked}: {}", r.text());
            assert!(r.text().contains(body), "h2={h2} {asked}: {}", r.text());
            if body.is_empty() {
                assert!(r.body.is_empty(), "h2={h2} {asked}: {}", r.text());
            }
        }
    }
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

/// Opt-in reuse: an instance serves up to N requests one at a time, so
/// its memory carries over between them; after N, after a trap and after a
/// timeout the next request starts on a fresh instance. Its stdout is
/// tagged with each request's own id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reuse_keeps_an_instance_for_n_requests_and_drops_it_on_failure() {
    let server = Server::start(
        test_programs::HOSTILE,
        &[
            "--instance-reuse",
            "3",
            "--max-concurrency",
            "1",
            "--timeout",
            "2s",
        ],
    );
    let state = || async { get(&server.url("/state")).await.text() };
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(state().await);
    }
    assert_eq!(seen, ["1", "2", "3", "1", "2", "3", "1"]);
    // A trap discards the instance it ran in.
    assert_eq!(state().await, "2");
    assert_eq!(get(&server.url("/panic")).await.status, 500);
    assert_eq!(state().await, "1");
    assert_eq!(state().await, "2");
    // So does a timeout.
    assert_eq!(get(&server.url("/loop")).await.status, 504);
    assert_eq!(state().await, "1");
    // Concurrent requests each get an instance of their own, never one in use.
    let c = client(false);
    let mut all = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        let url = server.url("/sleep?ms=50");
        all.push(tokio::spawn(async move {
            send(
                &c,
                http::Request::get(url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .text()
        }));
    }
    for h in all {
        assert_eq!(h.await.unwrap(), "slept");
    }
    drop(server);

    // 0 is refused, with the flag named.
    let out = common::run(&["serve", test_programs::HOSTILE, "--instance-reuse", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--instance-reuse"), "{}", out.stderr);
    // A WASIp3 component serves its requests in one instance already.
    let out = common::run(&[
        "serve",
        test_programs::HELLO_P3,
        "--instance-reuse",
        "10",
        "--listen",
        "127.0.0.1:0",
    ]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("--instance-reuse") && out.stderr.contains("WASIp3"),
        "{}",
        out.stderr
    );
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
async fn a_request_its_client_abandons_frees_its_instance() {
    use std::io::Write as _;
    // One slot, no queue: while a guest holds the slot, others get 503.
    let server = Server::start(
        test_programs::HOSTILE,
        &[
            "--max-concurrency",
            "1",
            "--max-queue",
            "0",
            "--workers",
            "1",
        ],
    );
    for path in ["/sleep?ms=20000", "/loop"] {
        // The guest holds the slot. A probe that takes the slot first
        // makes the guest's request get 503 instead: then it is sent again.
        let mut held = None;
        for _ in 0..20 {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if get(&server.url("/ok")).await.status == 503 {
                held = Some(s);
                break;
            }
        }
        let s = held;
        let held = s.is_some();
        assert!(held, "{path}: the guest never held the slot");
        // ...until its client goes away: then it is stopped, and the slot
        // is free (polled for 10 s) long before the guest would have ended
        // (20 s, or the 30 s timeout for the loop).
        drop(s);
        let mut status = 0;
        for _ in 0..100 {
            status = get(&server.url("/ok")).await.status;
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            status, 200,
            "{path}: the abandoned guest still holds the slot"
        );
    }
    server.wait_log("the client went away before the response");
    // Logged and counted as the client's closed request (499).
    let log = server.wait_log_until(|log| {
        log.lines()
            .filter(|l| l.contains("wasmops::access") && l.contains("\"status\":499"))
            .count()
            >= 2
    });
    assert!(
        log.lines().any(|l| l.contains("\"status\":499")
            && l.contains("/loop")
            && l.contains("\"aborted\":true")),
        "{log}"
    );
    let metrics = get(&server.admin_url("/metrics")).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wasmops_http_requests_total")
                && l.contains("status_class=\"4xx\"")),
        "{metrics}"
    );
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
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
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

#[test]
fn a_sequential_client_is_not_refused_by_the_instance_it_just_used() {
    // One slot and no queue: each answered instance is still being reset
    // when the connection reads the next pipelined request, and that
    // request must wait for the slot, not get a 503.
    use std::io::{Read, Write};
    let server = Server::start(
        test_programs::HOSTILE,
        &["--max-concurrency", "1", "--max-queue", "0"],
    );
    let n = 50;
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let one = "GET /ok HTTP/1.1\r\nHost: test\r\n\r\n";
    let last = "GET /ok HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let requests = one.repeat(n - 1) + last;
    conn.write_all(requests.as_bytes()).unwrap();
    let mut answers = String::new();
    conn.read_to_string(&mut answers).unwrap();
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answers[i + 9..i + 12])
        .collect();
    assert_eq!(statuses.len(), n, "{answers}");
    assert!(statuses.iter().all(|s| *s == "200"), "{statuses:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_larger_than_a_pool_slot_is_served_on_demand() {
    // A real program whose function table exceeds a pool slot's 20,000
    // elements (large .NET or debug builds have such tables).
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-table.wasm");
    std::fs::write(
        &big,
        with_table_size(&std::fs::read(test_programs::HELLO).unwrap(), 30_000),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let server = Server::start(
        big.to_str().unwrap(),
        &[
            "--max-concurrency",
            "4",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    let gets: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get_owned(server.url("/"))))
        .collect();
    for g in gets {
        let r = g.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    }
    // Where the pool is reserved (not under a tight `ulimit -v`), the
    // fallback from it is logged.
    let log = server.wait_log("\"pooling\":");
    assert!(
        log.contains("\"pooling\":false") || log.contains("does not fit the instance pool"),
        "the fallback is logged: {log}"
    );
}

/// Sends `request` on a raw TCP connection and reads until the server
/// closes it (at most `limit`); returns the bytes read.
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let start = Instant::now();
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_failing_mid_body_aborts_the_response() {
    let server = Server::start(test_programs::HOSTILE, &["--timeout", "2s"]);

    // HTTP/1.1: the head went out, then the guest trapped. The connection
    // is closed without the final chunk, so the client knows it is cut off.
    for path in ["/trap-mid-body?bytes=25", "/spin-mid-body?bytes=8192"] {
        let raw = raw_exchange(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&raw);
        // The guest may fail before hyper has written the head: then the
        // connection closes with nothing sent, which is as good.
        if text.is_empty() {
            continue;
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(
            text.contains("transfer-encoding: chunked"),
            "{path}: {text}"
        );
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{path}: a cut-off body must not end with the last chunk: {:?}",
            &text[text.len().saturating_sub(40)..]
        );
    }

    // Through a real client, on HTTP/1.1 and HTTP/2: the body is an error.
    for h2 in [false, true] {
        let req = http::Request::get(server.url("/trap-mid-body?bytes=100000"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client(h2).request(req).await.expect("the head arrives");
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "h2={h2}: a cut-off body must fail");
    }

    // A complete streamed body is still complete.
    let r = get(&server.url("/huge?mb=2")).await;
    assert_eq!((r.status, r.body.len()), (200, 2 << 20));

    // Logged and counted with the real outcome. Each worker process
    // flushes its own log lines, so the other's may come after `/huge`.
    let is_aborted = |l: &&str| l.contains("wasmops::access") && l.contains("\"aborted\":true");
    server.wait_log("\"path\":\"/huge\"");
    let log = server.wait_log_until(|log| log.lines().filter(is_aborted).count() >= 4);
    let aborted: Vec<&str> = log.lines().filter(is_aborted).collect();
    assert!(aborted.len() >= 4, "{log}");
    assert!(
        aborted.iter().any(|l| l.contains("\"status\":500")),
        "{log}"
    );
    assert!(
        aborted.iter().any(|l| l.contains("\"status\":504")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("/huge") && l.contains("\"status\":200") && !l.contains("aborted")),
        "{log}"
    );
    let metrics = get(&server.admin_url("/metrics")).await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("wasmops_guest_failures_total") && l.contains("aborted_response"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 4.0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_get_408_and_others_are_still_served() {
    use std::io::Write;
    let server = Server::start(
        test_programs::HOSTILE,
        &[
            "--max-concurrency",
            "4",
            "--max-queue",
            "4",
            "--body-timeout",
            "2s",
        ],
    );
    // 64 clients announce a 1 MB body and send it a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.write_all(b"POST /body HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nx")
            .unwrap();
        slow.push(s);
    }
    let trickle = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            for s in slow.iter_mut() {
                let _ = s.write_all(b"x");
            }
        }
        slow
    });
    // Meanwhile, ordinary requests (with and without a body) are answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        assert_eq!(get(&server.url("/ok")).await.status, 200);
        let r = post(&server.url("/body"), &[b'b'; 5000]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "5000"));
    }
    // A body of more than the part read ahead streams to the guest.
    let r = post(&server.url("/body"), &vec![b'c'; 3 << 20]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "3145728"));

    // The trickling clients are told 408 once their body timeout is up.
    let slow = trickle.join().unwrap();
    for mut s in slow.into_iter().take(8) {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 408");
    }
    let metrics = get(&server.admin_url("/metrics")).await.text();
    let count = |class: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with("wasmops_http_requests_total") && l.contains(class))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
            // A class never answered has no series.
            .unwrap_or(0.0)
    };
    assert_eq!(count("status_class=\"5xx\""), 0.0, "{metrics}");
    assert!(count("status_class=\"4xx\"") >= 8.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_bounds_what_instances_hold_at_once() {
    // Each instance may use 64 MiB; the budget covers two at once.
    let server = Server::start(
        test_programs::HOSTILE,
        &[
            "--max-memory",
            "64MiB",
            "--memory-budget",
            "128MiB",
            "--max-concurrency",
            "16",
            "--memory-keep-resident",
            "0",
        ],
    );
    let log = server.wait_log("\"memory_budget\":134217728");
    assert!(log.contains("\"memory_budget\":134217728"), "{log}");
    let base = server.rss_kib();
    let pid = server.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kib = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0);
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    // Eight requests that each hold 48 MiB for 300 ms: without the budget
    // 384 MiB at once; with it, two at a time, the others waiting.
    let reqs: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get_owned(server.url("/mem?mb=48&ms=300"))))
        .collect();
    for r in reqs {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let grown_mib = peak.saturating_sub(base) / 1024;
    assert!(
        grown_mib < 128 + 32,
        "RSS grew by {grown_mib} MiB with a 128 MiB budget"
    );

    // A limit that can never fit is refused at start.
    let out = run(&[
        "serve",
        test_programs::HOSTILE,
        "--max-memory",
        "256MiB",
        "--memory-budget",
        "128MiB",
        "--admin-listen",
        "off",
    ]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("--memory-budget"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained() {
    let server = Server::start(
        test_programs::HOSTILE,
        &["--timeout", "2s", "--max-memory", "32MiB"],
    );
    // Deep recursion traps on stack exhaustion.
    assert_eq!(get(&server.url("/deep")).await.status, 500);
    // A memory bomb stops at the limit.
    assert_eq!(get(&server.url("/hog")).await.status, 500);
    // A loop stops at the timeout.
    assert_eq!(get(&server.url("/loop")).await.status, 504);
    // A huge body streams out whole.
    let r = get(&server.url("/huge?mb=16")).await;
    assert_eq!((r.status, r.body.len()), (200, 16 << 20));
    // And the server still answers.
    assert_eq!(get(&server.url("/ok")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_4xx() {
    let server = Server::start(test_programs::ECHO, &["--max-body", "1KiB"]);
    // A malformed chunk size.
    let raw = raw_exchange(
        server.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // CONNECT is not something a component serves.
    let raw = raw_exchange(
        server.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    // HTTP/1.0 needs no Host: the component sees the address reached...
    let raw = raw_exchange(
        server.addr,
        b"GET /old HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(text.starts_with("http/1.0 200"), "{text}");
    assert!(
        text.contains(&format!("x-echo-authority: {}", server.addr)),
        "{text}"
    );
    // ...while HTTP/1.1 without one is refused.
    let raw = raw_exchange(
        server.addr,
        b"GET /new HTTP/1.1\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // HTTP/2: a body over the limit is answered 413, not reset.
    let stream = futures_stream(vec![
        Bytes::from(vec![b'y'; 700]),
        Bytes::from(vec![b'y'; 700]),
    ]);
    let req = http::Request::post(server.url("/")).body(stream).unwrap();
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let r = send(
        &client(true),
        http::Request::post(server.url("/"))
            .body(Full::new(Bytes::from(vec![b'z'; 2000])))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 413);
}

#[test]
fn flags_follow_the_manifest_rules() {
    for args in [
        &["--timeout", "0s"][..],
        &["--max-concurrency", "0"],
        &["--threads", "0"],
        &["--workers", "0"],
        &["--workers", "many"],
        &["--max-memory", "0"],
        &["--max-memory", "10KiB"],
        &["--max-body", "0"],
        &["--body-timeout", "0s"],
        &["--log-level", "wasmops=loud"],
    ] {
        let mut all = vec!["serve", test_programs::HELLO];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn a_taken_admin_port_names_the_flag_and_a_taken_port_is_reported_before_compiling() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = run(&[
        "serve",
        test_programs::HELLO,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &port,
    ]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("--admin-listen"), "{}", out.stderr);
    // Reported before the component is even read: a missing file is not
    // what the user hears about first.
    let out = run(&[
        "serve",
        "/nonexistent/never.wasm",
        "--listen",
        &port,
        "--admin-listen",
        "off",
    ]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("already in use"), "{}", out.stderr);
}

#[test]
fn a_taken_default_admin_port_turns_the_admin_endpoints_off() {
    use std::io::{BufRead, BufReader};
    // Hold the default admin port (if something else holds it, it is taken
    // all the same).
    let _held = std::net::TcpListener::bind("127.0.0.1:9464");
    let mut child = common::wasmops()
        .args(["serve", test_programs::HELLO, "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said_off = false;
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        said_off |= line.contains("admin endpoints off") && line.contains("--admin-listen");
        if let Some(rest) = line.strip_prefix("wasmops: serving http://") {
            addr = Some(rest.trim_end_matches('/').to_string());
            break;
        }
    }
    let addr = addr.expect("the server started");
    assert!(said_off, "the server says the admin endpoints are off");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    // Asked for explicitly, a taken port is an error naming the flag.
    let out = common::run(&[
        "serve",
        test_programs::HELLO,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:9464",
    ]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("--admin-listen"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_share_the_listener_come_back_and_stop_together() {
    let mut server = Server::start(test_programs::HELLO, &["--workers", "2"]);
    assert!(
        server.log().contains("wasmops: 2 worker processes"),
        "{}",
        server.log()
    );
    let workers = children(server.pid());
    assert_eq!(workers.len(), 2, "two worker processes: {workers:?}");
    // Every request on its own connection: whichever worker accepts it.
    for _ in 0..40 {
        let r = get(&server.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "Hello, world!\n");
    }
    // The supervisor's /metrics adds both workers up, as one server's.
    let m = get(&server.admin_url("/metrics")).await;
    assert_eq!(m.status, 200);
    let m = m.text();
    let ok: Vec<&str> = m
        .lines()
        .filter(|l| {
            l.starts_with("wasmops_http_requests_total{") && l.contains("status_class=\"2xx\"")
        })
        .collect();
    assert_eq!(
        ok,
        [
            r#"wasmops_http_requests_total{app="hello",component="hello",route="/",status_class="2xx"} 40"#
        ],
        "{m}"
    );
    assert!(!m.contains("worker=\""), "{m}");
    // One `# TYPE` line per family, though two workers report it.
    assert_eq!(
        m.lines()
            .filter(|l| *l == "# TYPE wasmops_http_requests counter")
            .count(),
        1,
        "{m}"
    );
    assert_eq!(get(&server.admin_url("/readyz")).await.status, 200);

    // A worker that dies is started again, and serving goes on.
    common::kill_worker_and_wait(&server, workers[1]).await;
    for _ in 0..10 {
        assert_eq!(get(&server.url("/")).await.status, 200);
    }
    let m = get(&server.admin_url("/metrics")).await.text();
    assert!(m.contains("\nwasmops_worker_restarts_total 1\n"), "{m}");
    assert!(m.contains("\nwasmops_workers_ready 2\n"), "{m}");
    let log = server.wait_log("starting it again");
    assert!(log.contains("a worker process exited"), "{log}");

    // SIGTERM to the supervisor stops every worker, and it exits 0.
    let now = children(server.pid());
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(30)).expect("did not stop");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    for pid in now {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the supervisor"
        );
    }
}

#[test]
fn one_process_per_core_by_default_and_one_when_a_setting_is_about_one_process() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = Server::start(test_programs::HELLO, &[]);
    let workers = children(server.pid());
    if cores > 1 {
        assert_eq!(
            workers.len(),
            cores,
            "one worker per core: {}",
            server.log()
        );
        assert!(
            server
                .log()
                .contains(&format!("wasmops: {cores} worker processes"))
        );
    } else {
        assert!(workers.is_empty(), "{workers:?}");
    }
    drop(server);
    for flags in [
        &["--workers", "1"][..],
        &["--threads", "2"],
        &["--max-concurrency", "8"],
        &["--instance-reuse", "10"],
        &["--memory-budget", "1GiB"],
    ] {
        let server = Server::start(test_programs::HELLO, flags);
        assert!(children(server.pid()).is_empty(), "{flags:?}: one process");
        assert!(
            !server.log().contains("worker processes"),
            "{}",
            server.log()
        );
    }
}

#[test]
fn a_worker_that_cannot_start_ends_the_supervisor_with_its_error() {
    let (code, log) = Server::try_start(
        fixture("not-wasm.txt").to_str().unwrap(),
        &["--log-format", "text", "--workers", "2"],
    )
    .err()
    .unwrap();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("not a WebAssembly binary"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error, from the first worker: {log}");
    // A memory limit above a worker's share of the budget names both.
    let (code, log) = Server::try_start(
        test_programs::HELLO,
        &[
            "--log-format",
            "text",
            "--workers",
            "2",
            "--memory-budget",
            "128MiB",
            "--max-memory",
            "100MiB",
        ],
    )
    .err()
    .unwrap();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("each worker's share") && log.contains("--workers"),
        "{log}"
    );
    // `node` keeps its state in one process: the flag is refused there.
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "node",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("--workers"), "{}", out.stderr);
}

/// Worker processes share their supervisor's stderr. On a pipe that fills
/// (a slow log reader), their log batches must not interleave mid-line:
/// every line stays one JSON object, and every request is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_logs_on_a_shared_pipe_stay_whole_lines() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = wasmops()
        .args(["serve", test_programs::HELLO, "--workers", "2"])
        .args(["--admin-listen", "127.0.0.1:0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Killed (with its workers) if an assertion fails first.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: a signal to the child this test started.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let reap = Reap(child.id());
    // Nothing is read until told: the pipe fills, and the workers' writes
    // wait for room, which is when long writes interleave.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _ = wait.recv();
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut all).unwrap();
        all
    });
    let base = format!("http://127.0.0.1:{port}");
    // The supervisor listens before its workers are ready: connections
    // wait in the backlog until a worker accepts them.
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(60), "not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long = "x".repeat(3000);
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (base, long) = (base.clone(), long.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let r = get(&format!("{base}/{c}-{i}-{long}")).await;
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    go.send(()).unwrap();
    for c in clients {
        c.await.unwrap();
    }
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    std::mem::forget(reap);
    let all = reader.join().unwrap();
    let text = String::from_utf8_lossy(&all);
    let mut logged = 0;
    // Every line is a JSON event, but for the supervisor's own notices.
    for line in text.lines().filter(|l| !l.starts_with("wasmops: ")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "not a whole JSON line ({e}): {}",
                &line[..line.len().min(300)]
            )
        });
        if v["path"].as_str().is_some_and(|p| p.ends_with(&long)) {
            logged += 1;
        }
    }
    assert_eq!(logged, 8 * 40, "every request is logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_reads_a_streamed_body_to_its_end_without_sending_it() {
    let server = Server::start(test_programs::STREAM, &[]);
    for h2 in [false, true] {
        let r = send(
            &client(h2),
            http::Request::head(server.url("/stream"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (200, ""));
    }
    // The component wrote its whole body, as for GET: it did not find its
    // stream closed (it would trap).
    let start = std::time::Instant::now();
    loop {
        let m = get(&server.admin_url("/metrics")).await.text();
        // Answered twice, and both instances done with their bodies.
        let done = m.contains(r#"status_class="2xx"} 2"#)
            && m.contains(r#"wasmops_instances_in_use{app="stream",component="stream"} 0"#);
        if done || start.elapsed() > std::time::Duration::from_secs(10) {
            assert!(done, "{m}");
            assert!(!m.contains("wasmops_guest_failures_total{"), "{m}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
