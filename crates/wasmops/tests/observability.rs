//! Metrics, health, access logs, and a real Prometheus scraping wasmops.

mod common;
use std::time::{Duration, Instant};

use common::*;

fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness() {
    let server = Server::start(test_programs::HOSTILE, &[]);
    for _ in 0..3 {
        assert_eq!(get(&server.url("/ok")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&server.url("/panic")).await.status, 500);
    }
    assert_eq!(get(&server.url("/nope")).await.status, 404);

    assert_eq!(get(&server.admin_url("/healthz")).await.status, 200);
    assert_eq!(get(&server.admin_url("/readyz")).await.status, 200);
    assert_eq!(get(&server.admin_url("/other")).await.status, 404);
    let m = get(&server.admin_url("/metrics")).await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    let labels = r#"app="hostile",component="hostile",route="/""#;
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_http_requests_total{{{labels},status_class=\"2xx\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_http_requests_total{{{labels},status_class=\"4xx\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_http_requests_total{{{labels},status_class=\"5xx\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"wasmops_guest_failures_total{app="hostile",component="hostile",kind="trap"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"wasmops_instantiation_duration_seconds_count{app="hostile",component="hostile"}"#
        ),
        Some(6.0)
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_http_request_duration_seconds_count{{{labels}}}")
        ),
        Some(6.0)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"wasmops_instances_in_use{app="hostile",component="hostile"}"#
        ),
        Some(0.0)
    );
    assert!(metric_value(&text, "wasmops_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(
        text.contains("wasmops_artifact_cache_lookups_total{result="),
        "{text}"
    );
    assert!(
        text.contains("wasmops_instance_memory_high_water_bytes_bucket"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_and_limit_metrics() {
    let server = Server::start(
        test_programs::HOSTILE,
        &["--max-memory", "32MiB", "--timeout", "300ms"],
    );
    assert_eq!(get(&server.url("/hog")).await.status, 500);
    assert_eq!(get(&server.url("/loop")).await.status, 504);
    let r = get(&server.url("/fetch?authority=127.0.0.1:9")).await;
    assert_eq!(r.text(), "error: ErrorCode::HttpRequestDenied");
    let text = get(&server.admin_url("/metrics")).await.text();
    let c = r#"app="hostile",component="hostile""#;
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_guest_failures_total{{{c},kind=\"memory_limit\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_guest_failures_total{{{c},kind=\"timeout\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("wasmops_outbound_requests_total{{{c},host=\"127.0.0.1\",result=\"denied\"}}")
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_with_the_request_fields() {
    let server = Server::start(test_programs::HOSTILE, &[]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let req = http::Request::get(server.url("/ok?x=1"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-abc-123")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(&client(false), req).await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-abc-123"));
    assert_eq!(get(&server.url("/panic")).await.status, 500);

    // The log is written asynchronously to the request; wait for both lines.
    let start = Instant::now();
    let (access, trap) = loop {
        let log = server.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let access: Vec<_> = lines
            .iter()
            .filter(|v| v["target"] == "wasmops::access")
            .cloned()
            .collect();
        let trap = lines.iter().find(|v| v["level"] == "ERROR").cloned();
        if let Some(trap) = trap.filter(|_| access.len() >= 2) {
            break (access, trap);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "log lines missing: {log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ok = access
        .iter()
        .find(|v| v["path"] == "/ok")
        .expect("access line for /ok");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["app"], "hostile");
    assert_eq!(ok["component"], "hostile");
    assert_eq!(ok["request_id"], "req-abc-123");
    assert_eq!(ok["trace_id"], trace);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["timestamp"].is_string());
    let panic = access.iter().find(|v| v["path"] == "/panic").unwrap();
    assert_eq!(panic["status"], 500);
    assert!(!panic["request_id"].as_str().unwrap().is_empty());
    let msg = trap.to_string();
    assert!(
        msg.contains("unreachable") || msg.contains("trapped"),
        "the trap reason is logged: {msg}"
    );

    // The guest's stderr (its panic message) is in the log, tagged with the
    // component and the request it belongs to.
    let log = server.wait_log("the hostile guest panicked on purpose");
    let guest: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "wasmops::guest")
        .collect();
    let line = guest
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("the hostile guest panicked on purpose")
        })
        .unwrap_or_else(|| panic!("guest stderr not captured: {log}"));
    assert_eq!(line["stream"], "stderr");
    assert_eq!(line["component"], "hostile");
    assert_eq!(line["request_id"], panic["request_id"]);
}

/// A real Prometheus (Debian's `prometheus`) scrapes the admin endpoint; the
/// series and counts are read back through Prometheus' HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_our_metrics() {
    let prometheus = which("prometheus")
        .expect("prometheus is not installed: apt-get install prometheus (.ci/run does)");
    let server = Server::start(test_programs::HELLO, &[]);
    for _ in 0..7 {
        assert_eq!(get(&server.url("/")).await.status, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: wasmops\n    static_configs:\n      - targets: ['{}']\n",
            server.admin.unwrap()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut prom = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(prom_take(&mut prom));

    let query = "wasmops_http_requests_total%7Bstatus_class%3D%222xx%22%7D";
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={query}");
    let start = Instant::now();
    loop {
        if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), async {
            let c = client(false);
            let req = http::Request::get(&url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            Ok::<_, ()>(c.request(req).await)
        })
        .await
            && let Ok(resp) = resp
            && resp.status() == 200
        {
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if let Some(series) = v["data"]["result"].as_array().and_then(|a| a.first()) {
                assert_eq!(series["metric"]["app"], "hello");
                assert_eq!(series["metric"]["component"], "hello");
                assert_eq!(series["metric"]["route"], "/");
                assert_eq!(series["metric"]["job"], "wasmops");
                assert_eq!(series["value"][1], "7", "{v}");
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never reported our series"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn prom_take(c: &mut std::process::Child) -> std::process::Child {
    std::mem::replace(c, std::process::Command::new("true").spawn().unwrap())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[test]
fn shipped_prometheus_config_is_valid() {
    let promtool = which("promtool")
        .expect("promtool is not installed: apt-get install prometheus (.ci/run does)");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/prometheus/prometheus.yml");
    let out = std::process::Command::new(promtool)
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every query of the shipped Grafana dashboard parses as PromQL
/// (`promtool check rules`, with Grafana's variables filled in).
#[test]
fn shipped_dashboard_queries_are_valid_promql() {
    let promtool = which("promtool")
        .expect("promtool is not installed: apt-get install prometheus (.ci/run does)");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("deploy/grafana/wasmops-dashboard.json")).unwrap(),
    )
    .unwrap();
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v.as_str() {
                        Some(e) if k == "expr" => out.push(e.to_string()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(found.len() >= 10, "{found:?}");
    let mut rules = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, e) in found.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$app", ".*");
        rules += &format!(
            "  - record: q{i}\n    expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spans received by the test's OTLP receiver: (service.name, span).
type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>;

/// An OTLP receiver on loopback: HTTP/protobuf at `/v1/traces` and gRPC
/// (h2c) at `.../TraceService/Export`, decoding the protobuf.
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Default::default();
    let r = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let r = r.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_string();
                            let grpc = path.ends_with("TraceService/Export");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let msg = if grpc { &body[5..] } else { &body[..] };
                            let export = ExportTraceServiceRequest::decode(msg).unwrap();
                            for rs in export.resource_spans {
                                let service = rs
                                .resource
                                .as_ref()
                                .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                                .and_then(|kv| kv.value.as_ref())
                                .and_then(|v| match &v.value {
                                    Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                                        Some(s.clone())
                                    }
                                    _ => None,
                                })
                                .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for span in ss.spans {
                                        r.lock().unwrap().push((service.clone(), span));
                                    }
                                }
                            }
                            let mut resp =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            if grpc {
                                resp.headers_mut().insert(
                                    "content-type",
                                    http::HeaderValue::from_static("application/grpc"),
                                );
                                resp.headers_mut()
                                    .insert("grpc-status", http::HeaderValue::from_static("0"));
                            } else {
                                resp.headers_mut().insert(
                                    "content-type",
                                    http::HeaderValue::from_static("application/x-protobuf"),
                                );
                            }
                            assert!(path == "/v1/traces" || grpc, "unexpected OTLP path {path}");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, received)
}

async fn traced_call_through_two_servers(protocol: &str) {
    let (otlp, received) = otlp_receiver().await;
    let endpoint = format!("http://{otlp}");
    let env = |service: &'static str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", service.to_string()),
        ]
    };
    let upstream_env = env("upstream");
    let upstream_env: Vec<(&str, &str)> =
        upstream_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let upstream = Server::start_with_env(test_programs::HELLO, &[], &upstream_env);
    let grant = format!("http://{}", upstream.addr);
    let front_env = env("front");
    let front_env: Vec<(&str, &str)> = front_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let front = Server::start_with_env(
        test_programs::HOSTILE,
        &["--allow-http", &grant],
        &front_env,
    );

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let req = http::Request::get(front.url(&format!("/fetch?authority={}", upstream.addr)))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(&client(false), req).await;
    assert_eq!(r.text(), "status 200 body Hello, world!\n");

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let start = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        let find = |service: &str, name: &str| {
            spans
                .iter()
                .find(|(s, sp)| s == service && sp.name == name && hex(&sp.trace_id) == trace)
                .map(|x| x.1.clone())
        };
        if let (Some(req), Some(inst), Some(handler), Some(out), Some(up)) = (
            find("front", "request"),
            find("front", "instantiate"),
            find("front", "guest handler"),
            find("front", "outbound"),
            find("upstream", "request"),
        ) {
            assert_eq!(
                hex(&req.parent_span_id),
                parent,
                "the request span continues the caller's trace"
            );
            assert_eq!(inst.parent_span_id, req.span_id);
            assert_eq!(handler.parent_span_id, req.span_id);
            assert_eq!(out.parent_span_id, handler.span_id);
            assert_eq!(
                up.parent_span_id, out.span_id,
                "the guest's outbound request carried our traceparent"
            );
            assert!(req.end_time_unix_nano >= req.start_time_unix_nano);
            assert!(
                req.attributes
                    .iter()
                    .any(|kv| kv.key == "http.response.status_code")
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spans missing; got {:?}",
            spans
                .iter()
                .map(|(s, sp)| (s, &sp.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_traces_follow_the_request_through_the_guest() {
    traced_call_through_two_servers("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_traces_follow_the_request_through_the_guest() {
    traced_call_through_two_servers("grpc").await;
}

/// A caller that does not sample still gets its trace context passed on to
/// the guest's outbound requests (flag 00), and no spans are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_trace_context_is_still_propagated() {
    let (otlp, received) = otlp_receiver().await;
    // An upstream that records the traceparent it is sent.
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tp = req
                            .headers()
                            .get("traceparent")
                            .map(|v| v.to_str().unwrap().to_string());
                        s.lock().unwrap().push(tp.unwrap_or_default());
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"up")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let endpoint = format!("http://{otlp}");
    let grant = format!("http://{upstream}");
    let front = Server::start_with_env(
        test_programs::HOSTILE,
        &["--allow-http", &grant],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "front"),
        ],
    );
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let req = http::Request::get(front.url(&format!("/fetch?authority={upstream}")))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-00"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(&client(false), req).await;
    assert_eq!(r.text(), "status 200 body up");
    let tp = seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("upstream was called");
    assert!(tp.starts_with(&format!("00-{trace}-")), "{tp}");
    assert!(tp.ends_with("-00"), "the not-sampled flag is kept: {tp}");
    assert!(!tp.contains("b7ad6b7169203331"), "a new span id: {tp}");
    // Give the exporter two intervals; nothing of this trace is recorded.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .all(|(_, s)| hex(&s.trace_id) != trace)
    );
}

/// `wasmops up` traces key-value operations as children of the guest
/// handler's span, and the service is named after the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_operations_are_traced_under_up() {
    let (otlp, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let api = std::path::Path::new(test_programs::EXAMPLE_WEBAPP)
        .join("target/wasm32-wasip2/release/api.wasm");
    std::fs::copy(api, dir.path().join("api.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"traced\"\n[component.api]\nsource = \"api.wasm\"\nroute = \"/api/...\"\nkey_value_stores = [\"default\"]\n",
    )
    .unwrap();
    let endpoint = format!("http://{otlp}");
    let server = Server::up(
        dir.path(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let req = http::Request::post(server.url("/api/incr/visits"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(&client(false), req).await;
    assert_eq!(r.text().trim(), r#"{"key":"visits","value":1}"#);

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let start = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        let find = |name: &str| {
            spans
                .iter()
                .find(|(s, sp)| s == "traced" && sp.name == name && hex(&sp.trace_id) == trace)
                .map(|x| x.1.clone())
        };
        if let (Some(handler), Some(kv)) = (find("guest handler"), find("key-value")) {
            assert_eq!(kv.parent_span_id, handler.span_id);
            let attr = |k: &str| {
                kv.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                s,
                            ),
                        ) => Some(s.clone()),
                        _ => None,
                    })
            };
            assert_eq!(attr("wasmops.kv.store").as_deref(), Some("default"));
            assert_eq!(attr("wasmops.kv.operation").as_deref(), Some("increment"));
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spans missing; got {:?}",
            spans
                .iter()
                .map(|(s, sp)| (s, &sp.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
