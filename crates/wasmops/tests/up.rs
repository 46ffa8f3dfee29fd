//! `wasmops up`: apps from `wasmops.toml`, over real sockets, with the
//! example app's components built from source, a real Redis, and upstream
//! servers started here on loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Server, get, post, send};
use http_body_util::Full;

fn example() -> PathBuf {
    PathBuf::from(test_programs::EXAMPLE_WEBAPP)
}

fn component(name: &str) -> PathBuf {
    example().join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

/// A plain HTTP/1.1 server on loopback answering every request with
/// `body`, counting the connections it accepts.
struct Upstream {
    url: String,
    connections: Arc<AtomicUsize>,
}

fn upstream(body: &'static str) -> Upstream {
    upstream_with(body, false)
}

/// Like `upstream`; with `keep_alive`, connections serve request after
/// request instead of closing after one.
fn upstream_with(body: &'static str, keep_alive: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head: Vec<u8> = seen.drain(..end).collect();
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let text = format!("{body} {path}");
                    let close = if keep_alive {
                        ""
                    } else {
                        "connection: close\r\n"
                    };
                    if write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{text}",
                        text.len()
                    )
                    .is_err()
                        || !keep_alive
                    {
                        return;
                    }
                }
            });
        }
    });
    Upstream { url, connections }
}

/// An app directory in a temporary folder, with the given manifest and
/// the example's components copied in.
fn app_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for c in ["web", "api", "proxy"] {
        std::fs::copy(component(c), dir.path().join(format!("{c}.wasm"))).unwrap();
    }
    std::fs::write(dir.path().join("wasmops.toml"), manifest).unwrap();
    dir
}

fn state_arg(dir: &Path) -> String {
    dir.join("state").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_app_serves_every_route_from_its_directory() {
    let up = upstream("upstream says hi to");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state_arg(state.path());
    // Run inside the (copied) example's directory, without naming the app.
    let copy = tempfile::tempdir().unwrap();
    let example = common::webapp_copy(copy.path(), "");
    let server = Server::try_up(
        None,
        Some(&example),
        &["--state-dir", &state_dir],
        &[("WASMOPS_VARIABLE_UPSTREAM", &up.url)],
    )
    .unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"));

    let home = get(&server.url("/")).await;
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Welcome to webapp"), "{}", home.text());
    assert_eq!(
        home.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let css = get(&server.url("/style.css")).await;
    assert_eq!(css.status, 200);
    assert_eq!(get(&server.url("/missing.txt")).await.status, 404);

    let config = get(&server.url("/api/config")).await;
    assert_eq!(config.text().trim(), r#"{"greeting":"Hello from webapp"}"#);
    assert_eq!(
        get(&server.url("/api/counter")).await.text().trim(),
        r#"{"count":0}"#
    );
    for n in 1..=3 {
        let r = post(&server.url("/api/counter"), b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text().trim(), format!(r#"{{"count":{n}}}"#));
    }
    assert_eq!(
        get(&server.url("/api/counter")).await.text().trim(),
        r#"{"count":3}"#
    );

    let proxied = get(&server.url("/proxy/some/path?q=1")).await;
    assert_eq!(proxied.status, 200, "{}", proxied.text());
    assert_eq!(proxied.text(), "upstream says hi to /some/path?q=1");

    // The embedded store lives in the state directory given.
    assert!(state.path().join("state/kv/default.db").exists());

    // Per-route request series and key-value operations are exposed.
    let metrics = get(&server.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(r#"wasmops_http_requests_total{app="webapp",component="api",route="/api/...",status_class="2xx"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wasmops_kv_operations_total{app="webapp",component="api",store="default",op="increment",result="ok"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"wasmops_outbound_requests_total{app="webapp",component="proxy",host="127.0.0.1",result="allowed"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_reach_only_granted_hosts() {
    let granted = upstream("granted");
    let denied = upstream("denied");
    let manifest = format!(
        r#"manifest_version = 1
[app]
name = "outbound"
[variables]
upstream = {{ default = "{denied}" }}
[component.proxy]
source = "proxy.wasm"
route = "/proxy/..."
variables = ["upstream"]
allowed_outbound_hosts = ["{granted}"]
"#,
        denied = denied.url,
        granted = granted.url
    );
    let dir = app_dir(&manifest);
    let state = state_arg(dir.path());

    let server = Server::up(dir.path(), &["--state-dir", &state], &[]);
    let r = get(&server.url("/proxy/x")).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        denied.connections.load(Ordering::SeqCst),
        0,
        "a denied call must not connect"
    );
    let warning = server.wait_log("outbound HTTP request denied");
    let line = warning
        .lines()
        .find(|l| l.contains("outbound HTTP request denied"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["component"], "proxy");
    assert_eq!(v["host"], "127.0.0.1");
    drop(server);

    // The same component, pointed at the granted host through the
    // environment, gets through.
    let server = Server::up(
        dir.path(),
        &["--state-dir", &state],
        &[("WASMOPS_VARIABLE_UPSTREAM", &granted.url)],
    );
    let r = get(&server.url("/proxy/y")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "granted /y");
    assert_eq!(denied.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_are_pooled_and_timed() {
    let keep = upstream_with("pooled", true);
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let manifest = format!(
        r#"manifest_version = 1
[app]
name = "pool"
[variables]
upstream = {{ default = "{keep}" }}
[component.proxy]
source = "proxy.wasm"
route = "/proxy/..."
variables = ["upstream"]
allowed_outbound_hosts = ["{{{{ upstream }}}}"]
[component.proxy.limits]
timeout = "1s"
"#,
        keep = keep.url
    );
    let dir = app_dir(&manifest);
    // One process: each worker process keeps a pool of its own.
    let server = Server::up(dir.path(), &["--workers", "1"], &[]);
    for i in 0..5 {
        let r = get(&server.url(&format!("/proxy/{i}"))).await;
        assert_eq!(r.text(), format!("pooled /{i}"));
    }
    assert_eq!(
        keep.connections.load(Ordering::SeqCst),
        1,
        "sequential calls to a keep-alive upstream share one connection"
    );
    drop(server);

    let server = Server::up(
        dir.path(),
        &[],
        &[("WASMOPS_VARIABLE_UPSTREAM", &silent_url)],
    );
    let start = Instant::now();
    let r = get(&server.url("/proxy/slow")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(silent);
}

const KV_APP: &str = r#"manifest_version = 1
[app]
name = "kvapp"
[component.api]
source = "api.wasm"
route = "/api/..."
key_value_stores = ["default"]
"#;

/// Sends `total` increments of `key` from `clients` concurrent clients and
/// returns every value the server acknowledged.
async fn increments(server: &Server, key: &str, clients: usize, total: usize) -> Vec<u64> {
    let per = total / clients;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = server.url(&format!("/api/incr/{key}"));
        tasks.push(tokio::spawn(async move {
            let client = common::client(false);
            let mut seen = Vec::new();
            for _ in 0..per {
                let req = http::Request::post(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let r = send(&client, req).await;
                assert_eq!(r.status, 200, "{}", r.text());
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                seen.push(v["value"].as_u64().unwrap());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_exact() {
    let dir = app_dir(KV_APP);
    let server = Server::up(dir.path(), &[], &[]);
    let values = increments(&server, "hits", 8, 400).await;
    assert_eq!(values, (1..=400).collect::<Vec<u64>>());
    assert_eq!(get(&server.url("/api/kv/hits")).await.text(), "400");
    // The default state directory is the app's own.
    assert!(dir.path().join(".wasmops/kv/default.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_stay_exact_across_worker_processes() {
    let dir = app_dir(KV_APP);
    // Worker processes share the embedded store's file.
    let server = Server::up(dir.path(), &["--workers", "2"], &[]);
    assert!(
        server.log().contains("wasmops: 2 worker processes"),
        "{}",
        server.log()
    );
    let values = increments(&server, "hits", 8, 400).await;
    assert_eq!(values, (1..=400).collect::<Vec<u64>>());
    assert_eq!(get(&server.url("/api/kv/hits")).await.text(), "400");
    // --watch reloads one process.
    let out = common::run(&[
        "up",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--watch",
        "--workers",
        "2",
    ]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("--watch"), "{}", out.stderr);
    // Without --workers, --watch serves from one process.
    drop(server);
    let server = Server::up(dir.path(), &["--watch"], &[]);
    assert!(
        !server.log().contains("worker processes"),
        "{}",
        server.log()
    );
    assert_eq!(get(&server.url("/api/kv/hits")).await.text(), "400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = app_dir(KV_APP);
    let server = Server::up(dir.path(), &[], &[]);
    let url = server.url("/api/kv/");
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let client = common::client(false);
            for i in 0.. {
                let req = http::Request::put(format!("{url}key-{i}"))
                    .body(Full::new(Bytes::from(format!("value-{i}"))))
                    .unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(i),
                    _ => break,
                }
            }
        })
    };
    // Let writes flow, then kill the process without warning.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 200 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal(libc::SIGKILL);
    let _ = writer.await;
    drop(server);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} writes acknowledged",
        acked.len()
    );

    let server = Server::up(dir.path(), &[], &[]);
    for i in &acked {
        let r = get(&server.url(&format!("/api/kv/key-{i}"))).await;
        assert_eq!(r.status, 200, "acknowledged write key-{i} lost");
        assert_eq!(r.text(), format!("value-{i}"));
    }
}

/// A `redis-server` on a free loopback port, without persistence.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server not found: install the Debian package `redis-server`");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    /// Runs one command over RESP and returns the raw reply.
    fn command(&self, args: &[&str]) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_with_per_app_isolation() {
    let redis = Redis::start();
    let manifest = |name: &str| {
        format!(
            "{}\n[key_value.default]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
            KV_APP.replace("kvapp", name),
            redis.port
        )
    };
    let one = app_dir(&manifest("one"));
    let two = app_dir(&manifest("two"));
    let server = Server::up(one.path(), &[], &[]);
    let values = increments(&server, "hits", 8, 200).await;
    assert_eq!(values, (1..=200).collect::<Vec<u64>>());
    assert_eq!(get(&server.url("/api/kv/hits")).await.text(), "200");
    let r = post(&server.url("/api/batch"), b"a=1\nb=2\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&server.url("/api/batch?keys=a,b,c"))
            .await
            .text()
            .trim(),
        r#"{"a":"1","b":"2","c":null}"#
    );
    let keys: serde_json::Value =
        serde_json::from_slice(&get(&server.url("/api/keys")).await.body).unwrap();
    let mut keys: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "hits"]);
    // Keys live under the app's and the store's name in Redis.
    assert_eq!(redis.command(&["GET", "one:default:hits"]), "$3\r\n200\r\n");
    assert!(!server.log().contains("ERROR"), "{}", server.log());

    // Another app on the same server sees none of it.
    let other = Server::up(two.path(), &[], &[]);
    assert_eq!(get(&other.url("/api/kv/hits")).await.status, 404);
    let r = post(&other.url("/api/incr/hits"), b"").await;
    assert_eq!(r.text().trim(), r#"{"key":"hits","value":1}"#);
    assert_eq!(get(&server.url("/api/kv/hits")).await.text(), "200");
}

#[test]
fn redis_unreachable_is_a_clear_startup_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = app_dir(&format!(
        "{KV_APP}\n[key_value.default]\nbackend = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1:{port}/0\"\n"
    ));
    let out = common::run(&[
        "up",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("cannot connect to Redis"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_swaps_components_without_failing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(test_programs::HELLO).unwrap();
    let hostile = std::fs::read(test_programs::HOSTILE).unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, &hello).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"watched\"\n[component.app]\nsource = \"app.wasm\"\nroute = \"/...\"\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &["--watch"], &[]);
    assert_eq!(get(&server.url("/ok")).await.text(), "Hello, world!\n");

    // Load from four clients for the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let url = server.url("/ok");
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let client = common::client(false);
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    for swap in 1..=20 {
        let (bytes, expect) = if swap % 2 == 1 {
            (&hostile, "ok")
        } else {
            (&hello, "Hello, world!\n")
        };
        // Replace the file the way build tools do: write aside, rename.
        let tmp = dir.path().join("app.wasm.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &app).unwrap();
        let start = Instant::now();
        loop {
            let text = get(&server.url("/ok")).await.text();
            if text == expect {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "swap {swap}: still `{text}`; log: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in load {
        let (ok, failed) = t.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during swaps: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0);
    // Each swap was one reload (the line may still be on its way).
    let start = Instant::now();
    while server.log().matches("component reloaded").count() < 20
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.log().matches("component reloaded").count(), 20);
}

#[test]
fn broken_manifests_fail_with_their_snapshot_error() {
    let cases = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmops-manifest/tests/broken");
    let mut n = 0;
    for case in std::fs::read_dir(&cases).unwrap() {
        let case = case.unwrap().path();
        // The CLI checks outbound hosts with the runtime's own rules, so a
        // case may carry the CLI's wording apart.
        let expected = ["expected-cli.txt", "expected.txt"]
            .iter()
            .map(|f| case.join(f))
            .find(|p| p.exists())
            .unwrap();
        let expected = std::fs::read_to_string(expected).unwrap();
        let file = if case.join("spin.toml").is_file() {
            "spin.toml"
        } else {
            "wasmops.toml"
        };
        let out = common::output(
            common::wasmops()
                .current_dir(&case)
                .args(["up", "--check", file]),
        );
        common::assert_one_line_error(&out);
        assert_eq!(
            out.stderr.trim_end(),
            format!("error: {}", expected.trim_end()),
            "case {}",
            case.display()
        );
        n += 1;
    }
    assert!(n >= 20, "only {n} cases");
}

#[test]
fn required_variables_and_secrets() {
    let manifest = r#"manifest_version = 1
[app]
name = "secrets"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[component.api]
source = "api.wasm"
route = "/api/..."
variables = ["greeting", "token"]
key_value_stores = ["default"]
"#;
    let dir = app_dir(manifest);
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("`token`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("WASMOPS_VARIABLE_TOKEN"),
        "{}",
        out.stderr
    );

    // From a dotenv file: the app starts, and the value appears nowhere in
    // its output, even with debug logging.
    let secret = "sup3r-s3cret-v4lue";
    std::fs::write(dir.path().join(".env"), format!("token={secret}\n")).unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::up(dir.path(), &["--log-level", "debug"], &[]);
    rt.block_on(async {
        assert_eq!(
            get(&server.url("/api/config")).await.text().trim(),
            r#"{"greeting":"hi"}"#
        );
        assert_eq!(get(&server.url("/api/nothing")).await.status, 404);
    });
    let log = server.log();
    assert!(!log.contains(secret), "{log}");
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
}

#[test]
fn core_modules_and_non_handlers_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::CLI_P1, dir.path().join("cli.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"bad\"\n[component.cli]\nsource = \"cli.wasm\"\nroute = \"/...\"\n",
    )
    .unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("component `cli`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("core WebAssembly module"),
        "{}",
        out.stderr
    );

    std::fs::copy(test_programs::CLI, dir.path().join("cli.wasm")).unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("does not export"), "{}", out.stderr);
}

/// An app of the hostile guest with `files` mounting `static` at `/data`.
fn hostile_app(files: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        format!(
            "manifest_version = 1\n[app]\nname = \"linked\"\n[component.h]\nsource = \"hostile.wasm\"\nroute = \"/...\"\nfiles = [{files}]\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn links_out_of_the_app_directory_are_refused() {
    // A mount whose source is a link to /etc.
    let dir = hostile_app(r#"{ source = "link", destination = "/data" }"#);
    std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
    let app = dir.path().to_str().unwrap();
    let out = common::run(&["up", "--check", app]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("wasmops.toml:"), "{}", out.stderr);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    let store = tempfile::tempdir().unwrap();
    let reference = format!("oci-layout:{}:v1", store.path().display());
    let out = common::run(&["push", app, &reference]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert!(
        !store.path().join("blobs").exists()
            || std::fs::read_dir(store.path().join("blobs/sha256"))
                .map(|d| d.count() == 0)
                .unwrap_or(true),
        "nothing was pushed"
    );

    // A link inside a mounted directory's path (static -> real dir outside).
    let outside = tempfile::tempdir().unwrap();
    let dir = hostile_app(r#""static""#);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("static")).unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);

    // A component whose source is a link to a file outside.
    let dir = hostile_app("");
    std::fs::remove_file(dir.path().join("hostile.wasm")).unwrap();
    std::os::unix::fs::symlink(test_programs::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("`source`"), "{}", out.stderr);

    // A link that stays inside the app directory is fine.
    let dir = hostile_app(r#"{ source = "inner", destination = "/data" }"#);
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", dir.path().join("inner")).unwrap();
    let out = common::run(&["up", "--check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_follow_a_link_out_of_its_mount() {
    let dir = hostile_app(r#"{ source = "static", destination = "/data" }"#);
    let stat = dir.path().join("static");
    std::fs::create_dir(&stat).unwrap();
    std::fs::write(stat.join("ok.txt"), "ok").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", stat.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", stat.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../..", stat.join("up")).unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let r = get(&server.url("/file?path=/data/ok.txt")).await;
    assert_eq!(r.text(), "read 2 bytes");
    for path in ["/data/passwd", "/data/etc/passwd", "/data/up/etc/passwd"] {
        let r = get(&server.url(&format!("/file?path={path}"))).await;
        assert!(r.text().starts_with("denied"), "{path}: {}", r.text());
    }
    let r = get(&server.url("/ls?path=/data/etc")).await;
    assert!(r.text().starts_with("denied"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_the_memory_budget_then_gets_503() {
    // Two components share a 64 MiB budget; each instance reserves 64 MiB.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"budget\"\nmemory_budget = \"64MiB\"\n\
         [component.slow]\nsource = \"hostile.wasm\"\nroute = \"/sleep\"\n\
         [component.slow.limits]\nmemory = \"64MiB\"\ntimeout = \"10s\"\n\
         [component.fast]\nsource = \"hostile.wasm\"\nroute = \"/ok\"\n\
         [component.fast.limits]\nmemory = \"64MiB\"\ntimeout = \"500ms\"\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let url = server.url("/sleep?ms=2500");
    let slow = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The budget is held by the slow request: this one waits, then 503.
    let r = get(&server.url("/ok")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("memory budget"), "{}", r.text());
    assert_eq!(slow.await.unwrap().status, 200);
    // Once it is free, requests are served again.
    assert_eq!(get(&server.url("/ok")).await.status, 200);
}

#[test]
fn up_given_a_wasm_file_says_what_to_do_instead() {
    let out = common::run(&["up", "--check", test_programs::HELLO]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("not an app manifest"), "{}", out.stderr);
    assert!(out.stderr.contains("wasmops serve"), "{}", out.stderr);
    assert!(!out.stderr.contains("UTF-8"), "{}", out.stderr);
    let out = common::run(&["up", "--check", test_programs::CLI_P1]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("wasmops run"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_route_forms_and_their_parameters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::ECHO, dir.path().join("echo.wasm")).unwrap();
    std::fs::copy(test_programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"params\"\n\
         [component.users]\nsource = \"echo.wasm\"\nroute = [\"/users/:id\", \"/files/:bucket/...\"]\n\
         [component.me]\nsource = \"hello.wasm\"\nroute = \"/users/me\"\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let r = get(&server.url("/users/42")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-echo-header-spin-path-match-id").as_deref(),
        Some("42")
    );
    let r = get(&server.url("/files/b1/a/b.txt")).await;
    assert_eq!(
        r.header("x-echo-header-spin-path-match-bucket").as_deref(),
        Some("b1")
    );
    assert_eq!(
        r.header("x-echo-path").as_deref(),
        Some("/files/b1/a/b.txt")
    );
    // A literal path beats a parameter.
    assert_eq!(
        get(&server.url("/users/me")).await.text(),
        "Hello, world!\n"
    );
    assert_eq!(get(&server.url("/users")).await.status, 404);
    assert_eq!(get(&server.url("/users/1/2")).await.status, 404);
    drop(server);

    // Spin's `base`: every route of the app under it.
    std::fs::remove_file(dir.path().join("wasmops.toml")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"based\"\n\
         [application.trigger.http]\nbase = \"/api/\"\n\
         [[trigger.http]]\nroute = \"/users/:id\"\ncomponent = \"users\"\n\
         [[trigger.http]]\nroute = \"/\"\ncomponent = \"me\"\n\
         [component.users]\nsource = \"echo.wasm\"\n[component.me]\nsource = \"hello.wasm\"\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let r = get(&server.url("/api/users/7")).await;
    assert_eq!(
        (
            r.status,
            r.header("x-echo-header-spin-path-match-id").as_deref()
        ),
        (200, Some("7"))
    );
    assert_eq!(get(&server.url("/api")).await.text(), "Hello, world!\n");
    assert_eq!(get(&server.url("/users/7")).await.status, 404);
}

#[test]
fn smoke_tests_pass_fail_with_a_diff_and_report_junit_and_json() {
    // The example app's own tests.
    let copy = tempfile::tempdir().unwrap();
    let example = common::webapp_copy(copy.path(), "");
    let example = example.to_str().unwrap();
    let out = common::run(&["test", example]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 passed, 0 failed"), "{}", out.stdout);

    // A wrong expectation fails with what was expected and what came.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::copy(test_programs::ECHO, dir.path().join("echo.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"tested\"\n\
         [component.hello]\nsource = \"hello.wasm\"\nroute = \"/...\"\n\
         [component.echo]\nsource = \"echo.wasm\"\nroute = \"/echo/...\"\n\
         [[test]]\nname = \"greets\"\npath = \"/\"\n[test.expect]\nbody_contains = \"Hello\"\n\
         [[test]]\nname = \"says goodbye\"\npath = \"/\"\n[test.expect]\nbody_contains = \"Goodbye\"\n\
         [[test]]\nname = \"echoes a header\"\nmethod = \"post\"\npath = \"/echo/x?q=1\"\nheaders = { x-token = \"t1\" }\nbody = \"ping\"\n\
         [test.expect]\nstatus = 200\nheaders = { x-echo-method = \"POST\", x-echo-header-x-token = \"t1\", x-echo-query = \"q=2\" }\n",
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = common::run(&[
        "test",
        dir.path().to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok    greets"), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL  says goodbye"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("expected to contain \"Goodbye\", got \"Hello, world!\\n\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("header x-echo-query: expected \"q=2\", got \"q=1\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 passed, 2 failed"), "{}", out.stdout);
    // The JUnit file parses (Python's XML parser) and counts the failures.
    let parsed = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, xml.etree.ElementTree as E\nr = E.parse(sys.argv[1]).getroot()\ns = r.find('testsuite')\nprint(s.get('tests'), s.get('failures'), len(s.findall('testcase/failure')))")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&parsed.stdout).trim(), "3 2 2");
    let out = common::run(&["test", dir.path().to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["passed"].clone(), v["failed"].clone()),
        (serde_json::json!(1), serde_json::json!(2))
    );
    assert_eq!(v["tests"][1]["passed"], false);

    // On wasmtime too: each test's component under `wasmtime serve` (its
    // real CLI), where the same expectations fail the same way.
    let out = common::run(&[
        "test",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
        "--runtime",
        "wasmtime",
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            v["passed"].clone(),
            v["failed"].clone(),
            v["skipped"].clone()
        ),
        (
            serde_json::json!(2),
            serde_json::json!(4),
            serde_json::json!(0)
        ),
        "{v}"
    );
    let on_wasmtime: Vec<String> = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["runtime"] == "wasmtime")
        .map(|t| format!("{} {}", t["name"].as_str().unwrap(), t["passed"]))
        .collect();
    assert_eq!(
        on_wasmtime,
        ["greets true", "says goodbye false", "echoes a header false"],
        "{v}"
    );
    assert!(
        v["tests"][5]["failures"][0]
            .as_str()
            .unwrap()
            .contains("expected \"q=2\", got \"q=1\""),
        "{v}"
    );

    // The example app on wasmtime: its static pages run there; its API
    // needs interfaces wasmtime serve does not provide, and says which.
    let junit = dir.path().join("webapp.xml");
    let out = common::run(&[
        "test",
        example,
        "--runtime",
        "wasmtime",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "ok    home page [wasmtime]",
        "ok    a missing file is 404 [wasmtime]",
        "skip  configuration from a variable [wasmtime]: component `api` imports `wasi:",
        "5 passed, 0 failed, 1 skipped",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    let parsed = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, xml.etree.ElementTree as E\nr = E.parse(sys.argv[1]).getroot()\nprint(' '.join(s.get('name') + ':' + s.get('tests') + '/' + s.get('skipped') for s in r.findall('testsuite')))")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "webapp:3/0 webapp.wasmtime:3/1"
    );
    // With an environment the local components are not what runs there.
    let out = common::run(&[
        "test",
        dir.path().to_str().unwrap(),
        "--url",
        "http://127.0.0.1:9",
        "--runtime",
        "wasmtime",
    ]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("--runtime wasmtime"), "{}", out.stderr);

    // Against a URL (a server started here), and an environment without one.
    let server = Server::up(dir.path(), &[], &[]);
    let out = common::run(&[
        "test",
        dir.path().to_str().unwrap(),
        "--url",
        &server.url(""),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("1 passed, 2 failed"), "{}", out.stdout);
    let out = common::run(&["test", dir.path().to_str().unwrap(), "--env", "staging"]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("no environment `staging`"),
        "{}",
        out.stderr
    );
    // An app without tests says how to add one.
    let bare = app_dir(
        "manifest_version = 1\n[app]\nname = \"bare\"\n[component.web]\nsource = \"web.wasm\"\nroute = \"/...\"\n",
    );
    let out = common::run(&["test", bare.path().to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("[[test]]"), "{}", out.stderr);
    // A pipeline to an environment the app does not declare says how to
    // declare one, before any stage runs.
    let out = common::run(&["pipeline", bare.path().to_str().unwrap(), "--to", "staging"]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("declares no environments")
            && out.stderr.contains("[environments.staging]"),
        "{}",
        out.stderr
    );
    assert!(!bare.path().join(".wasmops").exists(), "a stage ran");
}

/// `--format json` on the commands that report something: one JSON
/// document on stdout each, shaped as its snapshot
/// (`fixtures/json/COMMAND.json`, the shape only) and docs/cli.md say.
#[test]
fn json_output_of_every_reporting_command_keeps_its_shape() {
    // The `hello` guest: built once by the tests' own cargo, never rebuilt.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HELLO, dir.path().join("web.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"shapes\"\nversion = \"1.0.0\"\n\
         [component.web]\nsource = \"web.wasm\"\nroute = \"/...\"\n\
         [[test]]\nname = \"greets\"\npath = \"/\"\n[test.expect]\nstatus = 200\n",
    )
    .unwrap();
    let app = dir.path().to_str().unwrap().to_string();
    let web = dir.path().join("web.wasm");
    let web = web.to_str().unwrap();
    let store = dir.path().join("store");
    let layout = format!("oci-layout:{}:v1", store.display());
    let cache = dir.path().join("cache");
    let pulled = dir.path().join("pulled");
    let broken = app_dir(
        "manifest_version = 1\n[app]\nname = \"broken\"\n[component.web]\nsorce = \"web.wasm\"\n",
    );
    let broken = broken.path().to_str().unwrap().to_string();
    let dep = format!(
        "wasmops-test:greet/greeter={}",
        test_programs::COMPOSE_GREETER
    );
    let composed = dir.path().join("composed.wasm");
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("inspect", vec!["inspect", web], 0),
        (
            "validate",
            vec!["validate", web, "--world", "wasmops:host/http"],
            0,
        ),
        ("scan", vec!["scan", web], 0),
        ("check", vec!["check", &app], 0),
        ("build", vec!["build", &app], 0),
        ("doctor", vec!["doctor", &app], 0),
        ("up-check", vec!["up", &app, "--check"], 0),
        ("up-check-failed", vec!["up", &broken, "--check"], 1),
        ("test", vec!["test", &app], 0),
        ("push", vec!["push", web, &layout], 0),
        (
            "pull",
            vec!["pull", &layout, "-o", pulled.to_str().unwrap()],
            0,
        ),
        ("cache-list", vec!["cache", "list"], 0),
        ("pipeline", vec!["pipeline", &app], 0),
        (
            "compose",
            vec![
                "compose",
                test_programs::COMPOSE_APP,
                "--dep",
                &dep,
                "-o",
                composed.to_str().unwrap(),
            ],
            0,
        ),
    ];
    for (name, args, code) in cases {
        let mut args = args.clone();
        args.extend(["--format", "json"]);
        let out = common::output(
            common::wasmops()
                .env("XDG_CACHE_HOME", &cache)
                .env("WASMOPS_CACHE_DIR", &cache)
                .args(&args),
        );
        assert_eq!(out.code, code, "{name}: {}{}", out.stdout, out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: not one JSON document ({e}): {}", out.stdout));
        let shape = serde_json::to_string_pretty(&common::json_shape(&v)).unwrap() + "\n";
        common::snapshot("json", &format!("{name}.json"), &shape);
    }
}

/// `instance_reuse = N` in the manifest: the component's instances serve N
/// requests each; on a WASIp3 component it is refused where it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reuse_from_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    std::fs::copy(test_programs::HELLO_P3, dir.path().join("p3.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"reuse\"\n\
         [component.kept]\nsource = \"hostile.wasm\"\nroute = \"/...\"\ninstance_reuse = 2\n\
         [component.kept.limits]\nconcurrency = 1\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let mut kept = Vec::new();
    for _ in 0..4 {
        kept.push(get(&server.url("/state")).await.text());
    }
    assert_eq!(kept, ["1", "2", "1", "2"]);
    drop(server);

    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"reuse\"\n\
         [component.p3]\nsource = \"p3.wasm\"\nroute = \"/...\"\ninstance_reuse = 5\n",
    )
    .unwrap();
    let out = common::output(common::wasmops().current_dir(dir.path()).args([
        "up",
        "--check",
        "wasmops.toml",
    ]));
    common::assert_one_line_error(&out);
    assert!(
        out.stderr
            .contains("wasmops.toml:7:18: component `p3`: instance reuse does not apply"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: remove `instance_reuse`"),
        "{}",
        out.stderr
    );
}

/// A component built with the Spin SDK (5.2, `#[http_component]`) runs
/// unchanged: Spin's key-value interface over the app's store (a counter
/// that survives a restart), Spin's variables over the app's variables,
/// and Spin's own errors for a store or variable not granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_sdk_component_uses_key_value_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SPIN_KV, dir.path().join("spin_kv.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"spin-kv\"\n\
         [variables]\ngreeting = { default = \"Hello from a Spin component\" }\n\
         [component.counter]\nsource = \"spin_kv.wasm\"\nroute = \"/...\"\n\
         key_value_stores = [\"default\"]\nvariables = [\"greeting\"]\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    for want in ["1", "2", "3"] {
        let r = get(&server.url("/count")).await;
        assert_eq!((r.status, r.text()), (200, want.to_string()));
    }
    let r = get(&server.url("/greeting")).await;
    assert_eq!(r.text(), "Hello from a Spin component");
    let r = get(&server.url("/config")).await;
    assert_eq!(r.text(), "Hello from a Spin component");
    let r = get(&server.url("/denied-store")).await;
    assert_eq!(r.text(), "error: Error::AccessDenied");
    let r = get(&server.url("/undefined-variable")).await;
    assert!(
        r.text().starts_with("error: Error::Undefined("),
        "{}",
        r.text()
    );
    let r = get(&server.url("/keys")).await;
    assert_eq!(r.text(), "count");
    // The keyvalue draft the SDK also imports, on the same store.
    let r = get(&server.url("/wasi-kv")).await;
    assert_eq!(
        r.text(),
        "a=one n=5,3 cas=won stale=lost(now three) many=draft2:x=1;draft2:none=- \
         keys=draft2:a,draft2:n,draft2:x,draft2:y other=Error::AccessDenied"
    );
    drop(server);
    // The store is the app's: the count goes on after a restart.
    let server = Server::up(dir.path(), &[], &[("WASMOPS_VARIABLE_GREETING", "Hola")]);
    assert_eq!(get(&server.url("/count")).await.text(), "4");
    assert_eq!(get(&server.url("/greeting")).await.text(), "Hola");
}

/// A Spin app as Spin users write it: `spin.toml` with an HTTP trigger, a
/// build command, component variables that are templates of app variables,
/// and the default key-value store. `wasmops build` runs its command;
/// `wasmops up DIR` finds `spin.toml` and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_toml_apps_build_and_serve_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prebuilt")).unwrap();
    std::fs::copy(
        test_programs::SPIN_KV,
        dir.path().join("prebuilt/spin_kv.wasm"),
    )
    .unwrap();
    // The current SDK's WASIp3 component beside it.
    std::fs::copy(
        test_programs::SPIN_HELLO_P3,
        dir.path().join("prebuilt/spin_hello_p3.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        r#"spin_manifest_version = 2

[application]
name = "spin_counter"
version = "1.0.0"
description = "A counter"

[variables]
greeting = { default = "Hello" }
who = { required = true }

[[trigger.http]]
route = "/..."
component = "counter"

[[trigger.http]]
route = { private = true }
component = "internal"

[component.counter]
source = "out/spin_kv.wasm"
key_value_stores = ["default"]
[component.counter.variables]
greeting = "{{ greeting }}, {{ who }}!"
[component.counter.build]
command = ["mkdir -p out", "cp prebuilt/spin_kv.wasm out/spin_kv.wasm"]

[component.internal]
source = "prebuilt/spin_kv.wasm"

[[trigger.http]]
route = "/p3/..."
component = "current-sdk"

[component.current-sdk]
source = "prebuilt/spin_hello_p3.wasm"
"#,
    )
    .unwrap();
    let app = dir.path().to_str().unwrap();
    let out = common::run(&["build", app, "--format", "json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(built["app"], "spin-counter");
    assert_eq!(built["components"][0]["language"], "command");
    assert_eq!(built["components"][0]["outcome"], "built");
    // `check` takes it whole: a WASIp2 and a WASIp3 handler, and a private
    // component that only handles HTTP for others.
    let out = common::run(&["check", app]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let out = common::run(&["up", app, "--check", "--format", "json"]);
    assert_eq!(out.code, 1, "`who` is required: {}", out.stdout);
    assert!(out.stdout.contains("who"), "{}", out.stdout);

    let server = Server::up(dir.path(), &[], &[("WASMOPS_VARIABLE_WHO", "Spin")]);
    assert_eq!(get(&server.url("/greeting")).await.text(), "Hello, Spin!");
    assert_eq!(get(&server.url("/count")).await.text(), "1");
    assert_eq!(get(&server.url("/count")).await.text(), "2");
    assert_eq!(
        get(&server.url("/p3/hi")).await.text(),
        "Hello from Spin SDK 7! path=/p3/hi\n"
    );
    drop(server);

    // Pushed as an app artifact and served from the reference.
    let store = dir.path().join("store");
    let reference = format!("oci-layout:{}:v1", store.display());
    let out = common::run(&["push", app, &reference, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = dir.path().join("state");
    let server = Server::up(
        std::path::Path::new(&reference),
        &["--state-dir", state.to_str().unwrap()],
        &[("WASMOPS_VARIABLE_WHO", "registry")],
    );
    assert_eq!(
        get(&server.url("/greeting")).await.text(),
        "Hello, registry!"
    );
    assert_eq!(get(&server.url("/count")).await.text(), "1");
}

/// A Spin runtime-config file puts a Spin app's store in a real Redis;
/// what it cannot say is refused at its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_runtime_config_puts_a_store_in_redis() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SPIN_KV, dir.path().join("spin_kv.wasm")).unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"counter\"\n\
         [variables]\ngreeting = { default = \"hi\" }\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
         [component.web]\nsource = \"spin_kv.wasm\"\nkey_value_stores = [\"default\"]\n",
    )
    .unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
            redis.port
        ),
    )
    .unwrap();
    let server = Server::up(
        dir.path(),
        &["--runtime-config-file", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(get(&server.url("/count")).await.text(), "1");
    assert_eq!(get(&server.url("/count")).await.text(), "2");
    // The keyvalue draft's compare-and-swap on Redis (one script).
    let r = get(&server.url("/wasi-kv")).await;
    assert!(
        r.text().contains("cas=won stale=lost(now three)"),
        "{}",
        r.text()
    );
    drop(server);
    let reply = redis.command(&["GET", "counter:default:count"]);
    assert!(reply.ends_with("2\r\n"), "{reply:?}");
    assert!(!dir.path().join(".wasmops/kv/default.db").exists());

    std::fs::write(&config, "[llm_compute]\ntype = \"spin\"\n").unwrap();
    let out = common::run(&[
        "up",
        dir.path().to_str().unwrap(),
        "--check",
        "--runtime-config-file",
        config.to_str().unwrap(),
    ]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr
            .contains("runtime-config.toml:1:2: unknown field `llm_compute`"),
        "{}",
        out.stderr
    );
}

/// A post with a header, for the Spin guests' Redis route.
async fn get_with(url: &str, header: (&str, &str)) -> common::Resp {
    let req = http::Request::get(url)
        .header(header.0, header.1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&common::client(false), req).await
}

/// A Spin SDK 5.2 component's SQLite (`fermyon:spin/sqlite@2.0.0`) and
/// outbound Redis (`fermyon:spin/redis@2.0.0`): rows that survive a
/// restart in the database file a runtime configuration names, a database
/// not granted is `access-denied`, a round trip through a real Redis the
/// component is granted, and `invalid-address` for one it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_sdk_components_use_sqlite_and_outbound_redis() {
    let redis = Redis::start();
    let other = Redis::start();
    let web = upstream("from upstream");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SPIN_KV, dir.path().join("spin_kv.wasm")).unwrap();
    // What the host gives an HTTP component includes Spin's interfaces.
    let out = common::run(&[
        "validate",
        test_programs::SPIN_KV,
        "--world",
        "wasmops:host/http",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"notes\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [component.web]\nsource = \"spin_kv.wasm\"\nsqlite_databases = [\"default\"]\n\
             allowed_outbound_hosts = [\"redis://127.0.0.1:{}\", \"{}\"]\n",
            redis.port, web.url
        ),
    )
    .unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"data/notes.db\"\n",
    )
    .unwrap();
    let args = ["--runtime-config-file", config.to_str().unwrap()];
    let server = Server::up(dir.path(), &args, &[]);
    let r = post(&server.url("/notes"), b"first").await;
    assert_eq!((r.status, r.text()), (200, "id=1 count=1".to_string()));
    let r = post(&server.url("/notes"), b"second").await;
    assert_eq!(r.text(), "id=2 count=2");
    assert_eq!(get(&server.url("/notes")).await.text(), "1:first\n2:second");
    let r = get(&server.url("/denied-database")).await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());

    let granted = format!("redis://127.0.0.1:{}", redis.port);
    let r = get_with(&server.url("/redis"), ("x-redis", &granted)).await;
    assert_eq!(
        r.text(),
        "get=hello incr=1 members=a,b ping=PONG echo=echoed del=2"
    );
    assert!(redis.command(&["GET", "spin-kv:n"]).ends_with("1\r\n"));
    // Outbound HTTP through the SDK, to the granted loopback server only.
    let r = get_with(
        &server.url("/outbound"),
        ("x-url", &format!("{}/from-spin", web.url)),
    )
    .await;
    assert_eq!(r.text(), "200 from upstream /from-spin");
    let r = get_with(&server.url("/outbound"), ("x-url", "http://127.0.0.1:1/")).await;
    assert!(r.text().starts_with("error:"), "{}", r.text());
    let denied = format!("redis://127.0.0.1:{}", other.port);
    let r = get_with(&server.url("/redis"), ("x-redis", &denied)).await;
    assert!(r.text().contains("InvalidAddress"), "{}", r.text());
    assert!(
        other.command(&["EXISTS", "spin-kv:n"]).starts_with(":0"),
        "nothing reached the server not granted"
    );
    drop(server);

    // The rows are in the file the runtime configuration named, and are
    // there after a restart.
    assert!(dir.path().join("data/notes.db").exists());
    let server = Server::up(dir.path(), &args, &[]);
    assert_eq!(
        post(&server.url("/notes"), b"third").await.text(),
        "id=3 count=3"
    );
}

/// A component built with the current Spin SDK (7, WASIp3) uses its
/// asynchronous interfaces: `spin:key-value@3.0.0` (keys as a stream),
/// `spin:variables@3.0.0`, `spin:sqlite@3.1.0` (rows as a stream) and
/// `spin:redis@3.0.0`, with Spin's errors for what is not granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_spin_sdk_async_interfaces() {
    let redis = Redis::start();
    let web = upstream("from upstream");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        test_programs::SPIN_APIS_P3,
        dir.path().join("spin_apis_p3.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"apis\"\n\
             [variables]\nwho = {{ default = \"SDK 7\" }}\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [component.web]\nsource = \"spin_apis_p3.wasm\"\n\
             key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]\n\
             allowed_outbound_hosts = [\"redis://127.0.0.1:{}\", \"{}\"]\n\
             [component.web.variables]\ngreeting = \"Hello, {{{{ who }}}}!\"\n",
            redis.port, web.url
        ),
    )
    .unwrap();
    let out = common::run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let server = Server::up(dir.path(), &[], &[]);
    assert_eq!(get(&server.url("/count")).await.text(), "1");
    assert_eq!(get(&server.url("/count")).await.text(), "2");
    assert_eq!(get(&server.url("/keys")).await.text(), "count");
    let r = get(&server.url("/denied-store")).await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());
    assert_eq!(get(&server.url("/greeting")).await.text(), "Hello, SDK 7!");
    let r = get(&server.url("/undefined-variable")).await;
    assert!(r.text().contains("Undefined("), "{}", r.text());

    assert_eq!(
        post(&server.url("/notes"), b"one").await.text(),
        "id=1 count=1 changes=1"
    );
    assert_eq!(
        post(&server.url("/notes"), b"two").await.text(),
        "id=2 count=2 changes=1"
    );
    assert_eq!(
        get(&server.url("/notes")).await.text(),
        "id,body\n1:one\n2:two"
    );
    let r = get(&server.url("/denied-database")).await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());

    let granted = format!("redis://127.0.0.1:{}", redis.port);
    let r = get_with(&server.url("/redis"), ("x-redis", &granted)).await;
    assert_eq!(r.text(), "get=hello incr=1 echo=echoed");
    let r = get_with(&server.url("/redis"), ("x-redis", "redis://127.0.0.1:1")).await;
    assert!(r.text().contains("InvalidAddress"), "{}", r.text());
    let r = get_with(
        &server.url("/outbound"),
        ("x-url", &format!("{}/p3", web.url)),
    )
    .await;
    assert_eq!(r.text(), "200 from upstream /p3");
    let r = get_with(&server.url("/outbound"), ("x-url", "http://127.0.0.1:1/")).await;
    assert!(r.text().starts_with("error:"), "{}", r.text());
    drop(server);
    // The store and the database are the app's: both go on after a restart.
    let server = Server::up(dir.path(), &[], &[]);
    assert_eq!(get(&server.url("/count")).await.text(), "3");
    assert_eq!(
        post(&server.url("/notes"), b"three").await.text(),
        "id=3 count=3 changes=1"
    );
}

/// A Spin app whose component imports an interface that another component
/// exports: `[component.web.dependencies]` composes them when the app is
/// served (from a file, and from another component of the app), the pushed
/// artifact holds the composition and runs from its reference, a
/// dependency sees the component's environment only when it is allowed to
/// inherit it, and a dependency that cannot fill the import is refused with
/// the mismatch named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_dependencies_are_composed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::COMPOSE_APP, dir.path().join("app.wasm")).unwrap();
    std::fs::copy(
        test_programs::COMPOSE_GREETER,
        dir.path().join("greeter.wasm"),
    )
    .unwrap();
    let manifest = |deps_web: &str, deps_other: &str| {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"greet\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [[trigger.http]]\nroute = \"/other/...\"\ncomponent = \"other\"\n\
             [component.web]\nsource = \"app.wasm\"\nenvironment = {{ GREETING = \"Hi\" }}\n\
             {deps_web}\n\
             [component.other]\nsource = \"app.wasm\"\nenvironment = {{ GREETING = \"Hey\" }}\n\
             {deps_other}\n\
             [component.greeter]\nsource = \"greeter.wasm\"\n"
        )
    };
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(
            "[component.web.dependencies]\n\"wasmops-test:greet/greeter\" = { path = \"greeter.wasm\" }",
            "dependencies_inherit_configuration = true\n\
             [component.other.dependencies]\n\"wasmops-test:greet\" = { component = \"greeter\" }",
        ),
    )
    .unwrap();
    let app = dir.path().to_str().unwrap();
    let out = common::run(&["check", app]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let server = Server::up(dir.path(), &[], &[]);
    // The dependency inherits nothing: no GREETING in its environment.
    assert_eq!(
        get(&server.url("/Ada")).await.text(),
        "Hello, Ada, from a composed dependency!"
    );
    // Allowed to inherit: it sees the component's environment.
    assert_eq!(
        get(&server.url("/other/Bo")).await.text(),
        "Hey, other/Bo, from a composed dependency!"
    );
    drop(server);

    // The artifact holds the composition; its manifest names no dependency.
    let store = dir.path().join("store");
    let reference = format!("oci-layout:{}:v1", store.display());
    let out = common::run(&["push", app, &reference]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = dir.path().join("state");
    let server = Server::up(
        std::path::Path::new(&reference),
        &["--state-dir", state.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        get(&server.url("/Cy")).await.text(),
        "Hello, Cy, from a composed dependency!"
    );
    drop(server);

    // With --watch, a new file of the component is composed afresh: here
    // one without the import, so the new composition fails, is logged,
    // and the old one keeps serving.
    let server = Server::up(dir.path(), &["--watch"], &[]);
    assert_eq!(
        get(&server.url("/Flo")).await.text(),
        "Hello, Flo, from a composed dependency!"
    );
    std::fs::copy(test_programs::HELLO, dir.path().join("app.wasm")).unwrap();
    let log = server.wait_log("reload failed");
    assert!(log.contains("has no import"), "{log}");
    assert_eq!(
        get(&server.url("/Flo")).await.text(),
        "Hello, Flo, from a composed dependency!"
    );
    drop(server);
    std::fs::copy(test_programs::COMPOSE_APP, dir.path().join("app.wasm")).unwrap();

    // `wasmops compose` does the same for one component.
    let composed = dir.path().join("composed.wasm");
    let out = common::run(&[
        "compose",
        dir.path().join("app.wasm").to_str().unwrap(),
        "--dep",
        &format!(
            "wasmops-test:greet/greeter={}",
            dir.path().join("greeter.wasm").display()
        ),
        "-o",
        composed.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = common::run(&["inspect", composed.to_str().unwrap(), "--format", "json"]);
    assert!(!out.stdout.contains("wasmops-test:greet"), "{}", out.stdout);
    assert!(out.stdout.contains("wasi:http/incoming-handler"));

    // A dependency whose export does not fit the import.
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(
            "[component.web.dependencies]\n\"wasmops-test:greet/greeter\" = { path = \"greeter.wasm\", export = \"wasmops-test:greet/shouter@1.0.0\" }",
            "",
        ),
    )
    .unwrap();
    let out = common::run(&["up", app, "--check"]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("its export `wasmops-test:greet/shouter@1.0.0` does not match component `web`'s import `wasmops-test:greet/greeter@1.0.0`")
            && out.stderr.contains("missing expected function export `greet`"),
        "{}",
        out.stderr
    );
    // Forms Spin has that need a package registry, at their position.
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(
            "[component.web.dependencies]\n\"wasmops-test:greet\" = \"1.0.0\"",
            "",
        ),
    )
    .unwrap();
    let out = common::run(&["check", app]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr
            .contains("spin.toml:14:24: dependency `wasmops-test:greet` from a package registry"),
        "{}",
        out.stderr
    );
}

/// Spin's file patterns and `exclude_files`: only the files they choose are
/// mounted (and pushed), a link inside the app is not followed, and a
/// pattern's files from several entries share one mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_file_patterns_mount_only_what_they_match() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(test_programs::HOSTILE, d.join("hostile.wasm")).unwrap();
    for (path, text) in [
        ("static/index.html", "<h1>hi</h1>"),
        ("static/app.css", "body{}"),
        ("static/app.js", "x"),
        ("static/app.css.map", "{}"),
        ("assets/img/logo.png", "png"),
        ("assets/img/notes.txt", "txt"),
        ("docs/readme.txt", "read me"),
        ("docs/private/secret.txt", "secret"),
        ("docs/node_modules/pkg/index.js", "x"),
    ] {
        std::fs::create_dir_all(d.join(path).parent().unwrap()).unwrap();
        std::fs::write(d.join(path), text).unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", d.join("static/linked.html")).unwrap();
    std::fs::write(
        d.join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "hostile.wasm"
files = ["static/*.html", "static/*.css", "assets/**/*.png", { source = "docs", destination = "/docs" }]
exclude_files = ["**/*.map", "docs/private/**", "**/node_modules"]
"#,
    )
    .unwrap();
    let listing = |text: String| {
        let mut v: Vec<String> = text.lines().map(str::to_string).collect();
        v.sort();
        v.join(",")
    };
    let server = Server::up(d, &[], &[]);
    let ls = |p: &str| server.url(&format!("/ls?path={p}"));
    assert_eq!(
        listing(get(&ls("/static")).await.text()),
        "app.css,index.html"
    );
    assert_eq!(listing(get(&ls("/assets/img")).await.text()), "logo.png");
    assert_eq!(listing(get(&ls("/docs")).await.text()), "readme.txt");
    drop(server);

    let store = d.join("store");
    let reference = format!("oci-layout:{}:v1", store.display());
    let out = common::run(&["push", d.to_str().unwrap(), &reference]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = d.join("state");
    let server = Server::up(
        std::path::Path::new(&reference),
        &["--state-dir", state.to_str().unwrap()],
        &[],
    );
    let ls = |p: &str| server.url(&format!("/ls?path={p}"));
    assert_eq!(
        listing(get(&ls("/static")).await.text()),
        "app.css,index.html"
    );
    assert_eq!(listing(get(&ls("/docs")).await.text()), "readme.txt");
    drop(server);

    // A file added since: the next start mounts a new selection, and the
    // old one is cleared away.
    std::fs::write(d.join("static/new.html"), "new").unwrap();
    let server = Server::up(d, &[], &[]);
    let ls = |p: &str| server.url(&format!("/ls?path={p}"));
    assert_eq!(
        listing(get(&ls("/static")).await.text()),
        "app.css,index.html,new.html"
    );
    let staged: Vec<_> = std::fs::read_dir(d.join(".wasmops/files/web"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("0-"))
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
}

/// A Spin app written with the Spin JavaScript SDK, as its template lays
/// it out (`npm install` and a `j2w` build in `[component.x.build]`,
/// `exclude_files`): `wasmops build` builds it with the SDK's own tools
/// (offline: the packages are installed beside the fixture by
/// scripts/test.sh) and `wasmops up` serves it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_python_sdk_app_builds_and_serves_with_the_interfaces_it_cannot_use_refused() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spin-py");
    let venv = fixture.join(".venv/bin");
    assert!(
        venv.join("componentize-py").is_file(),
        "the Spin Python SDK's toolchain is not installed: run `bash scripts/test.sh --install-only`"
    );
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    for f in ["spin.toml", "app.py"] {
        std::fs::copy(fixture.join(f), app.join(f)).unwrap();
    }
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = common::output(common::wasmops().env("PATH", &path).args([
        "build",
        app.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let wasm = std::fs::read(app.join("app.wasm")).unwrap();
    assert_eq!(
        wasmops_component::kind(&wasm).unwrap(),
        wasmops_component::Kind::Component
    );

    // The scan says what those imports are, without calling them unknown.
    let out = common::run(&[
        "scan",
        app.join("app.wasm").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let scan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rules: Vec<(&str, &str)> = scan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(rules.contains(&("WOPS012", "low")), "{rules:?}");
    assert!(!rules.iter().any(|(r, _)| *r == "WOPS004"), "{rules:?}");

    // The SDK's world imports PostgreSQL, MySQL, MQTT and LLM interfaces
    // whether the app uses them or not: the app is served, and says so.
    let server = Server::up(&app, &[], &[("PATH", &path)]);
    let log = server.wait_log("serving on");
    assert!(
        log.contains("Spin interfaces this host does not implement")
            && log.contains("fermyon:spin/postgres@2.0.0"),
        "{log}"
    );
    let c = common::client(false);
    let req = http::Request::get(server.url("/hello?x=1"))
        .header("x-who", "tester")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            "Hello from the Spin Python SDK! GET /hello?x=1 x-who=tester".to_string()
        )
    );
    // Its granted key-value store works, across instances.
    for n in 1..=3 {
        let r = common::get(&server.url("/count")).await;
        assert_eq!((r.status, r.text()), (200, format!("count={n}")));
    }
    // Calls to what is not provided get the interface's own error, which
    // the app can handle; nothing reaches the network.
    let r = common::get(&server.url("/postgres")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .starts_with("refused: Err(value=Error_ConnectionFailed(")
            && r.text().contains("does not provide"),
        "{}",
        r.text()
    );
    let r = common::get(&server.url("/llm")).await;
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            "refused: Err(value=Error_ModelNotSupported())".to_string()
        )
    );
    // Other unknown imports are still refused at load.
    let out = common::run(&[
        "serve",
        &common::fixture("unknown-import.wat").to_string_lossy(),
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("does not provide"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_js_sdk_app_builds_and_serves() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spin-js");
    assert!(
        fixture
            .join("node_modules/@spinframework/build-tools")
            .is_dir(),
        "the Spin JS SDK packages are not installed: run `bash scripts/test.sh --install-only`"
    );
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    // A copy of the app; its node_modules hard-linked, not copied.
    let status = std::process::Command::new("cp")
        .arg("-al")
        .arg(&fixture)
        .arg(&app)
        .status()
        .unwrap();
    assert!(status.success());
    let out = common::output(
        common::wasmops()
            .env("npm_config_offline", "true")
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_update_notifier", "false")
            .args(["build", app.to_str().unwrap(), "--format", "json"]),
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(built["components"][0]["outcome"], "built");
    let wasm = std::fs::read(app.join("dist/hello-js.wasm")).unwrap();
    assert_eq!(
        wasmops_component::kind(&wasm).unwrap(),
        wasmops_component::Kind::Component
    );

    let server = Server::up(&app, &[], &[]);
    let req = http::Request::get(server.url("/hello/js"))
        .header("x-who", "tester")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&common::client(false), req).await;
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            "Hello from the Spin JS SDK! path=/hello/js x-who=tester\n".to_string()
        )
    );
}

/// A dependency from a registry, in both of its forms: Spin's `{ registry,
/// package, version }` (pulled as REGISTRY/NS/NAME:VERSION from a real
/// `docker-registry`) and `{ reference = ... }`; pushing the app composes
/// it in, so the artifact needs no registry to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_from_a_registry_are_pulled_and_composed() {
    let registry = common::registry::Registry::start(None);
    let out = common::run(&[
        "push",
        test_programs::COMPOSE_GREETER,
        &format!("{}/wasmops-test/greeter:1.0.0", registry.host),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::COMPOSE_APP, dir.path().join("app.wasm")).unwrap();
    let manifest = |dep: &str| {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"pulled\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [component.web]\nsource = \"app.wasm\"\n\
             [component.web.dependencies]\n\"wasmops-test:greet/greeter\" = {dep}\n"
        )
    };
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(&format!(
            "{{ registry = \"{}\", package = \"wasmops-test:greeter\", version = \"1.0.0\" }}",
            registry.host
        )),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let env = [("WASMOPS_OCI_STORE", cache.to_str().unwrap())];
    let server = Server::up(dir.path(), &[], &env);
    assert_eq!(
        get(&server.url("/Di")).await.text(),
        "Hello, Di, from a composed dependency!"
    );
    drop(server);

    // By reference; pushed, the app runs with the registry gone.
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(&format!(
            "{{ reference = \"{}/wasmops-test/greeter:1.0.0\" }}",
            registry.host
        )),
    )
    .unwrap();
    let store = dir.path().join("store");
    let reference = format!("oci-layout:{}:v1", store.display());
    let out = common::output(common::wasmops().env("WASMOPS_OCI_STORE", &cache).args([
        "push",
        dir.path().to_str().unwrap(),
        &reference,
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    drop(registry);
    let state = dir.path().join("state");
    let server = Server::up(
        std::path::Path::new(&reference),
        &["--state-dir", state.to_str().unwrap()],
        &env,
    );
    assert_eq!(
        get(&server.url("/Ed")).await.text(),
        "Hello, Ed, from a composed dependency!"
    );
    drop(server);

    // A tag that does not exist: the app does not start, the reference named.
    let registry = common::registry::Registry::start(None);
    std::fs::write(
        dir.path().join("spin.toml"),
        manifest(&format!(
            "{{ reference = \"{}/wasmops-test/greeter:9.9.9\" }}",
            registry.host
        )),
    )
    .unwrap();
    let out = common::run(&["up", dir.path().to_str().unwrap(), "--check"]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr
            .contains("dependency `wasmops-test:greet/greeter`")
            && out.stderr.contains("9.9.9"),
        "{}",
        out.stderr
    );
}

/// SQL that never ends is interrupted before the component's timeout with
/// an error the guest sees, and while such statements run (more of them
/// than the server has cores) other requests are still answered: statements
/// run off the async workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_sql_is_interrupted_and_blocks_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::SPIN_KV, dir.path().join("spin_kv.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"runaway\"\n\
         [variables]\ngreeting = { default = \"still here\" }\n\
         [component.web]\nsource = \"spin_kv.wasm\"\nroute = \"/...\"\n\
         sqlite_databases = [\"default\"]\nvariables = [\"greeting\"]\n\
         [component.web.limits]\ntimeout = \"3s\"\n",
    )
    .unwrap();
    let server = Server::up(dir.path(), &[], &[]);
    let done = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..3 {
        let (url, done) = (server.url("/runaway-sql"), done.clone());
        slow.push(tokio::spawn(async move {
            let r = get(&url).await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        }));
    }
    // Let the statements start, then ask for something else.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(&server.url("/greeting")).await;
    assert_eq!(r.text(), "still here");
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "answered while the statements were still running"
    );
    // One statement at a time holds the database: the first is
    // interrupted and the guest answers with the error; the others, queued
    // behind it, may reach the request's deadline first (504).
    let mut interrupted = 0;
    for s in slow {
        let r = s.await.unwrap();
        match r.status {
            200 if r.text().contains("interrupted") => interrupted += 1,
            504 => {}
            _ => panic!("{} {}", r.status, r.text()),
        }
    }
    assert!(interrupted >= 1);
    // The database is free again.
    assert_eq!(
        post(&server.url("/notes"), b"after").await.text(),
        "id=1 count=1"
    );
}
