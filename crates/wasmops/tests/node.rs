//! `wasmops node` and its clients (`deploy`, `apps`, `promote`) over real
//! sockets: real node processes on loopback, real components, the admin
//! API checked against its OpenAPI description.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Output, Server, output, wasmops};
use http_body_util::Full;
use serde_json::{Value, json};

fn openapi() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/node-api.openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks `body` against the schema the API description gives for
/// (`method`, `template`, `status`).
fn check_against_spec(method: &str, template: &str, status: u16, body: &Value) {
    let spec = openapi();
    let op = &spec["paths"][template][method.to_ascii_lowercase()];
    assert!(
        op.is_object(),
        "{method} {template} is not in docs/node-api.openapi.json"
    );
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {template} answered {status}, which the description does not list: {body}"
    );
    let mut resp = resp.clone();
    if let Some(r) = resp["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        resp = spec["components"]["responses"][name].clone();
    }
    if let Some(schema) = resp["content"]["application/json"]["schema"].as_object() {
        let mut root = spec.clone();
        for (k, v) in schema {
            root[k] = v.clone();
        }
        let validator =
            jsonschema::validator_for(&root).expect("the description's schema compiles");
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: {errors:?} in {body}"
        );
    }
}

struct Api {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Api {
    fn new(node: &Server) -> Self {
        Self {
            base: node.admin_url(""),
            client: common::client(false),
        }
    }

    /// Sends a request and checks the answer against the description.
    async fn call(
        &self,
        method: &str,
        path: &str,
        template: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let r = common::send(&self.client, req).await;
        let v: Value = if r.header("content-type").as_deref() == Some("application/json") {
            serde_json::from_slice(&r.body).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        check_against_spec(method, template, r.status, &v);
        (r.status, v)
    }
}

/// Uploads a blob (`POST /v1/blobs`) expecting `status`; returns the
/// answer's `field` (`digest` when stored, `error` when refused).
async fn post_blob(api: &Api, token: &str, bytes: Vec<u8>, status: u16, field: &str) -> String {
    let (s, v) = api
        .call("POST", "/v1/blobs", "/v1/blobs", Some(token), Some(bytes))
        .await;
    assert_eq!(s, status, "{v}");
    v[field].as_str().unwrap().to_string()
}

/// Uploads a blob (201) and returns its digest.
async fn upload(api: &Api, token: &str, bytes: Vec<u8>) -> String {
    post_blob(api, token, bytes, 201, "digest").await
}

/// Uploads a blob that must be refused (422) and returns the error.
async fn upload_refused(api: &Api, token: &str, bytes: Vec<u8>) -> String {
    post_blob(api, token, bytes, 422, "error").await
}

fn token(tokens: &Path, scope: &str, name: &str) -> String {
    let out = common::run(&[
        "node",
        "token",
        "--scope",
        scope,
        "--name",
        name,
        "--tokens-file",
        tokens.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = out.stdout.trim().to_string();
    assert!(t.starts_with("wo_"), "{t}");
    let stored = std::fs::read_to_string(tokens).unwrap();
    assert!(!stored.contains(&t), "the token itself is never stored");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(tokens).unwrap().mode() & 0o777, 0o600);
    t
}

/// A client command with the token in the environment.
fn client(token: &str, args: &[&str]) -> Output {
    output(
        wasmops()
            .env("WASMOPS_TOKEN", token)
            .env("XDG_CONFIG_HOME", "/nonexistent-wasmops-config")
            .args(args),
    )
}

fn start_node(data: &Path, tokens: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--tokens-file",
        tokens.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::node(&args, &[])
}

async fn get_host(node: &Server, host: &str, path: &str) -> common::Resp {
    let req = http::Request::get(node.url(path))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    common::send(&common::client(false), req).await
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn wait_ready(api: &Api) {
    let start = Instant::now();
    loop {
        let (s, _) = api.call("GET", "/readyz", "/readyz", None, None).await;
        if s == 200 || start.elapsed() > Duration::from_secs(60) {
            assert_eq!(s, 200);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_route_rollback_scopes_unload_restart_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let reader = token(&tokens, "read", "dashboard");
    let mut node = start_node(
        &data,
        &tokens,
        &["--idle-unload", "1s", "--body-timeout", "1s"],
    );
    let api = Api::new(&node);
    let url = node.admin_url("");
    let url = url.trim_end_matches('/');
    wait_ready(&api).await;

    // Open endpoints.
    let (s, _) = api.call("GET", "/healthz", "/healthz", None, None).await;
    assert_eq!(s, 200);

    // A second node on the same data directory is refused (the two would
    // undo each other's changes), and a taken address is named with the
    // flag that moves it: one line each.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let spare = dir.path().join("spare");
    let (data_s, spare_s) = (data.to_str().unwrap(), spare.to_str().unwrap());
    for (data_dir, listen, admin, said) in [
        (data_s, "127.0.0.1:0", "127.0.0.1:0", "another node (pid "),
        (
            spare_s,
            "127.0.0.1:0",
            taken.as_str(),
            "in use; stop the other process or pick another address (the admin API's address: set it with --admin-listen ADDR)",
        ),
        (
            spare_s,
            taken.as_str(),
            "127.0.0.1:0",
            "in use; stop the other process or pick another address (the apps' address: set it with --listen ADDR)",
        ),
    ] {
        let out = output(wasmops().args([
            "node",
            "--data-dir",
            data_dir,
            "--listen",
            listen,
            "--admin-listen",
            admin,
            "--log-format",
            "text",
        ]));
        assert_ne!(out.code, 0);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        assert!(errors[0].contains(said), "{}", out.stderr);
    }

    // Deploy by file, reached by host name; and another app by path.
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::HELLO,
            "--node",
            url,
            "--name",
            "hello",
            "--host",
            "hello.test",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("deployed hello version 1"),
        "{}",
        out.stdout
    );
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::ECHO,
            "--node",
            url,
            "--name",
            "echo",
            "--route",
            "/echo",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = get_host(&node, "hello.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    let r = get_host(&node, "other.test", "/echo/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get_host(&node, "other.test", "/").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("\"error\""), "{}", r.text());

    // A name that is not an app name never reaches the node, so that it
    // cannot point a request at another app (`x/../echo` is `echo`).
    for args in [
        &["deploy", test_programs::HELLO, "--name", "x/../echo"][..],
        &["apps", "delete", "echo?x=1"],
        &["apps", "rollback", "echo/rollback/.."],
        &["apps", "status", "../apps"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--node", url]);
        let out = client(&deployer, &args);
        common::assert_one_line_error(&out);
        assert!(out.stderr.contains("is not an app name"), "{}", out.stderr);
    }
    assert_eq!(get_host(&node, "other.test", "/echo/x").await.status, 200);
    let bare = url.trim_start_matches("http://");
    let out = client(&deployer, &["apps", "list", "--node", bare]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("http://HOST:PORT"), "{}", out.stderr);
    // A request-target in absolute form names the app, whatever `Host`
    // says (the component is told that authority); two `Host` fields are
    // refused.
    let raw_to = |addr: &str, request: &str| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let app_addr = node.addr.to_string();
    let raw = |request: &str| raw_to(&app_addr, request);
    let r = raw("GET http://hello.test/ HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("Hello, world!"),
        "{r}"
    );
    let r =
        raw("GET / HTTP/1.1\r\nHost: hello.test\r\nHost: other.test\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // An admin request whose body stops arriving gets 408 after the
    // node's --body-timeout, rather than holding the request open.
    let admin_addr = url.trim_start_matches("http://").to_string();
    let r = raw_to(
        &admin_addr,
        &format!(
            "PUT /v1/apps/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {deployer}\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{{\"digest\":"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    // A signature policy whose key cannot be read stops the node at its
    // start, rather than refusing every reference deploy later.
    let out = output(
        std::process::Command::new("timeout")
            .arg("60")
            .arg(wasmops().get_program())
            .args(["node", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .arg("--data-dir")
            .arg(dir.path().join("other"))
            .arg("--tokens-file")
            .arg(&tokens)
            .args(["--verify-key", "/nonexistent/cosign.pub"]),
    );
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("--verify-key"), "{}", out.stderr);

    // Scopes: no token 401, a bad token 401, read scope cannot change.
    let (s, v) = api.call("GET", "/v1/apps", "/v1/apps", None, None).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = api
        .call("GET", "/v1/apps", "/v1/apps", Some("wo_forged"), None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&reader), None)
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "hello"]);
    let (s, v) = api
        .call(
            "DELETE",
            "/v1/apps/hello",
            "/v1/apps/{name}",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let out = client(
        &reader,
        &[
            "deploy",
            test_programs::STREAM,
            "--node",
            url,
            "--name",
            "hello",
            "--host",
            "hello.test",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("403"), "{}", out.stderr);

    // Bad deploys: each a 4xx with one message, the state unchanged.
    let before = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&reader), None)
        .await
        .1;
    let core = std::fs::read(test_programs::CLI_P1).unwrap();
    let e = upload_refused(&api, &deployer, core).await;
    assert!(e.contains("core WebAssembly module"), "{e}");
    let mut broken = std::fs::read(test_programs::HELLO).unwrap();
    broken.truncate(broken.len() / 2);
    let (s, v) = api
        .call(
            "POST",
            "/v1/blobs",
            "/v1/blobs",
            Some(&deployer),
            Some(broken),
        )
        .await;
    assert!(s == 422 || s == 201, "{v}");
    if s == 201 {
        // Stored (it starts like a component), but refused at deploy.
        let body = json!({ "digest": v["digest"] }).to_string().into_bytes();
        let (s, v) = api
            .call(
                "PUT",
                "/v1/apps/broken",
                "/v1/apps/{name}",
                Some(&deployer),
                Some(body),
            )
            .await;
        assert_eq!(s, 422, "{v}");
    }
    let cli = std::fs::read(test_programs::CLI).unwrap();
    let (s, v) = api
        .call("POST", "/v1/blobs", "/v1/blobs", Some(&deployer), Some(cli))
        .await;
    assert_eq!(s, 201, "{v}");
    let body = json!({ "digest": v["digest"] }).to_string().into_bytes();
    let (s, v) = api
        .call(
            "PUT",
            "/v1/apps/cli",
            "/v1/apps/{name}",
            Some(&deployer),
            Some(body),
        )
        .await;
    assert_eq!(s, 422, "a command is not an HTTP handler: {v}");
    assert!(
        v["error"].as_str().unwrap().contains("incoming-handler"),
        "{v}"
    );
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::STREAM,
            "--node",
            url,
            "--name",
            "thief",
            "--host",
            "hello.test",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("409") && out.stderr.contains("`hello`"),
        "{}",
        out.stderr
    );
    // Sources that are not there: an unreachable registry (404 or 502),
    // and a layout that does not exist (404, said so).
    for (reference, said) in [
        ("127.0.0.1:9/none/such:v1", None),
        (
            "oci-layout:/nonexistent/layout:v1",
            Some("not an OCI layout"),
        ),
    ] {
        let (s, v) = api
            .call(
                "PUT",
                "/v1/apps/ghost",
                "/v1/apps/{name}",
                Some(&deployer),
                Some(json!({ "reference": reference }).to_string().into_bytes()),
            )
            .await;
        match said {
            None => assert!(s == 404 || s == 502, "{s} {v}"),
            Some(m) => {
                assert_eq!(s, 404, "{v}");
                assert!(v["error"].as_str().unwrap_or("").contains(m), "{v}");
            }
        }
    }
    let (s, v) = api
        .call(
            "PUT",
            "/v1/apps/Bad_Name",
            "/v1/apps/{name}",
            Some(&deployer),
            Some(br#"{"digest":"sha256:00"}"#.to_vec()),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = api
        .call(
            "PUT",
            "/v1/apps/x",
            "/v1/apps/{name}",
            Some(&deployer),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = api
        .call(
            "PUT",
            "/v1/apps/x",
            "/v1/apps/{name}",
            Some(&deployer),
            Some(br#"{"digest":"sha256:00","hostz":["a"]}"#.to_vec()),
        )
        .await;
    assert_eq!(s, 400, "an unknown field is refused: {v}");
    assert!(v["error"].as_str().unwrap().contains("hostz"), "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/blobs",
            "/v1/blobs",
            Some(&deployer),
            Some(std::fs::read(test_programs::HELLO).unwrap()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let hello_digest = v["digest"].clone();
    // Hosts and routes no request could ever carry, repeats, and limits the
    // node cannot give: refused, and nothing changes.
    for (spec, says) in [
        (json!({ "hosts": ["-x.test"] }), "invalid host"),
        (
            json!({ "hosts": [format!("{}.test", "a".repeat(64))] }),
            "invalid host",
        ),
        (json!({ "hosts": ["a.test", "A.test"] }), "given twice"),
        (json!({ "routes": ["/a?b"] }), "invalid route"),
        (json!({ "routes": ["/a/./b"] }), "invalid route"),
        (json!({ "routes": ["/x", "/x"] }), "given twice"),
        // More memory than the node gives an instance: refused, not cut
        // short at run time.
        (json!({ "memory": 1u64 << 40 }), "--max-memory"),
    ] {
        let mut body = spec.clone();
        body["digest"] = hello_digest.clone();
        let (s, v) = api
            .call(
                "PUT",
                "/v1/apps/oddly",
                "/v1/apps/{name}",
                Some(&deployer),
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(s, 400, "{spec}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{spec}: {v}");
    }
    let after = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&reader), None)
        .await
        .1;
    assert_eq!(
        before["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (&a["name"], &a["version"]))
            .collect::<Vec<_>>(),
        after["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (&a["name"], &a["version"]))
            .collect::<Vec<_>>(),
        "refused deploys change nothing"
    );

    // A new version, then a rollback to the first.
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::STREAM,
            "--node",
            url,
            "--name",
            "hello",
            "--host",
            "hello.test",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = get_host(&node, "hello.test", "/status/201").await;
    assert_eq!(r.status, 201);
    let out = client(&deployer, &["apps", "rollback", "hello", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("version 1"), "{}", out.stdout);
    let r = get_host(&node, "hello.test", "/").await;
    assert_eq!(r.text(), "Hello, world!\n");
    let (s, v) = api
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            "/v1/apps/{name}/rollback",
            Some(&deployer),
            Some(br#"{"version": 2}"#.to_vec()),
        )
        .await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)));
    let (s, v) = api
        .call(
            "GET",
            "/v1/apps/hello",
            "/v1/apps/{name}",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["deploy", "deploy", "rollback", "rollback"]);
    assert_eq!(v["versions"][0]["deployed_by"], "ci");
    // The app's request count goes on across its versions (version 2, just
    // made current again, has answered nothing yet).
    assert!(v["requests"].as_u64().unwrap() >= 3, "{v}");
    assert!(
        v["last_error"].is_null() && v["last_error_at"].is_null(),
        "{v}"
    );
    let out = client(&reader, &["apps", "status", "hello", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("version:    2"), "{}", out.stdout);
    let (s, _) = api
        .call(
            "GET",
            "/v1/apps/nope",
            "/v1/apps/{name}",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // Idle apps are unloaded, and load again on their next request. The
    // count is taken before a request that surely loads the app, so a slow
    // step above that already let an app go idle cannot skew it.
    let metrics_url = node.admin_url("/metrics");
    let unloads = metric(
        &common::get(&metrics_url).await.text(),
        "wasmops_node_app_unloads_total",
    );
    assert_eq!(
        get_host(&node, "hello.test", "/status/200").await.status,
        200
    );
    let start = Instant::now();
    loop {
        let m = common::get(&metrics_url).await.text();
        if metric(&m, "wasmops_node_apps_loaded") == 0.0
            || start.elapsed() > Duration::from_secs(10)
        {
            assert_eq!(metric(&m, "wasmops_node_apps_loaded"), 0.0, "{m}");
            assert!(
                metric(&m, "wasmops_node_app_unloads_total") >= unloads + 1.0,
                "{m}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loads = metric(
        &common::get(&metrics_url).await.text(),
        "wasmops_node_app_loads_total",
    );
    assert_eq!(
        get_host(&node, "hello.test", "/status/202").await.status,
        202
    );
    let m = common::get(&metrics_url).await.text();
    assert_eq!(
        metric(&m, "wasmops_node_app_loads_total"),
        loads + 1.0,
        "{m}"
    );
    assert!(metric(&m, "wasmops_node_apps_loaded") >= 1.0, "{m}");
    let (s, _) = api.call("GET", "/metrics", "/metrics", None, None).await;
    assert_eq!(s, 200);

    // An app answering a request that outlasts --idle-unload is not idle:
    // it stays loaded, and a request meanwhile does not load it again.
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::HOSTILE,
            "--node",
            url,
            "--name",
            "slow",
            "--host",
            "slow.test",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        get_host(&node, "slow.test", "/sleep?ms=1").await.status,
        200
    );
    let loads = metric(
        &common::get(&metrics_url).await.text(),
        "wasmops_node_app_loads_total",
    );
    let (slow, during) = tokio::join!(get_host(&node, "slow.test", "/sleep?ms=3000"), async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        get_host(&node, "slow.test", "/sleep?ms=1").await
    });
    assert_eq!((slow.status, during.status), (200, 200));
    let m = common::get(&metrics_url).await.text();
    assert_eq!(metric(&m, "wasmops_node_app_loads_total"), loads, "{m}");

    // A guest's trap is the app's last error, with its time, and stays so
    // after the app is unloaded.
    assert_eq!(get_host(&node, "slow.test", "/panic").await.status, 500);
    let start = Instant::now();
    let mut first: Option<Value> = None;
    let v = loop {
        let (_, v) = api
            .call(
                "GET",
                "/v1/apps/slow",
                "/v1/apps/{name}",
                Some(&reader),
                None,
            )
            .await;
        first.get_or_insert_with(|| v.clone());
        if v["loaded"] == false || start.elapsed() > Duration::from_secs(10) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = first.unwrap();
    let trapped = first["last_error"].as_str().unwrap_or("").to_string();
    assert!(trapped.contains("trapped"), "{first}");
    assert!(
        first["last_error_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    assert_eq!(v["loaded"], false, "{v}");
    assert_eq!(v["last_error"].as_str(), Some(trapped.as_str()), "{v}");
    let out = client(&reader, &["apps", "status", "slow", "--node", url]);
    assert!(
        out.stdout.contains("last error: ") && out.stdout.contains("trapped"),
        "{}",
        out.stdout
    );

    // kill -9, restart: every acknowledged deployment is back and served.
    node.signal(libc::SIGKILL);
    node.wait(Duration::from_secs(10));
    drop(node);
    let node = start_node(&data, &tokens, &[]);
    let api = Api::new(&node);
    wait_ready(&api).await;
    assert_eq!(
        get_host(&node, "hello.test", "/status/203").await.status,
        203
    );
    assert_eq!(get_host(&node, "x.test", "/echo").await.status, 200);

    // kill -9 in the middle of deploys: after each restart the app runs
    // the version before or the one deployed, whole.
    let mut node = node;
    for (round, wasm) in [
        test_programs::HOSTILE,
        test_programs::HELLO,
        test_programs::STREAM,
    ]
    .iter()
    .enumerate()
    {
        let api = Api::new(&node);
        let (_, before) = api
            .call(
                "GET",
                "/v1/apps/hello",
                "/v1/apps/{name}",
                Some(&reader),
                None,
            )
            .await;
        let before = before["version"].as_i64().unwrap();
        let admin = node.admin_url("");
        let deployer = deployer.clone();
        let wasm = wasm.to_string();
        let deploying = std::thread::spawn(move || {
            client(
                &deployer,
                &[
                    "deploy",
                    &wasm,
                    "--node",
                    admin.trim_end_matches('/'),
                    "--name",
                    "hello",
                    "--host",
                    "hello.test",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(15 * round as u64));
        node.signal(libc::SIGKILL);
        node.wait(Duration::from_secs(10));
        let _ = deploying.join();
        drop(node);
        node = start_node(&data, &tokens, &[]);
        let api = Api::new(&node);
        wait_ready(&api).await;
        let (s, after) = api
            .call(
                "GET",
                "/v1/apps/hello",
                "/v1/apps/{name}",
                Some(&reader),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let after = after["version"].as_i64().unwrap();
        assert!(
            after == before || after == before + 1,
            "round {round}: {before} -> {after}"
        );
        // Served by the app (the hostile and stream guests answer 404 on
        // `/` themselves), not refused by the node.
        let r = get_host(&node, "hello.test", "/").await;
        assert!(
            r.status == 200 || r.status == 404,
            "round {round}: {} {}",
            r.status,
            r.text()
        );
        assert!(
            !r.text().contains("no app is deployed"),
            "round {round}: {}",
            r.text()
        );
    }
    let api = Api::new(&node);
    let url = node.admin_url("");
    let url = url.trim_end_matches('/');

    // The component can be fetched back, byte for byte.
    let (_, v) = api
        .call(
            "GET",
            "/v1/apps/echo",
            "/v1/apps/{name}",
            Some(&reader),
            None,
        )
        .await;
    let digest = v["digest"].as_str().unwrap().to_string();
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/blobs/{digest}"),
            "/v1/blobs/{digest}",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // Delete: gone from routing, the listing and the metrics.
    let out = client(&deployer, &["apps", "delete", "echo", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(get_host(&node, "x.test", "/echo").await.status, 404);
    let (s, _) = api
        .call(
            "DELETE",
            "/v1/apps/echo",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert!(!m.contains("app=\"echo\""), "{m}");
    let out = client(
        &reader,
        &["apps", "list", "--node", url, "--format", "json"],
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "slow"]);

    // A redeploy without --host or --route keeps the app's host names and
    // routes (a new build does not widen an app to every host).
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::HELLO,
            "--node",
            url,
            "--name",
            "slow",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = client(
        &reader,
        &["apps", "status", "slow", "--node", url, "--format", "json"],
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["hosts"], json!(["slow.test"]), "{v}");
    assert_eq!(get_host(&node, "other.test", "/").await.status, 404);
    assert_eq!(
        get_host(&node, "slow.test", "/").await.text(),
        "Hello, world!\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_from_staging_to_production_and_swap_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let t = token(&tokens, "deploy", "release");
    let staging = start_node(&dir.path().join("staging"), &tokens, &[]);
    let production = start_node(&dir.path().join("production"), &tokens, &[]);
    for n in [&staging, &production] {
        wait_ready(&Api::new(n)).await;
    }
    // Environments by name, from the user's environments file.
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("wasmops")).unwrap();
    std::fs::write(
        config.join("wasmops/environments.toml"),
        format!(
            "[staging]\nnode = \"{}\"\n[production]\nnode = \"{}\"\n",
            staging.admin_url(""),
            production.admin_url("")
        ),
    )
    .unwrap();
    let with_env = |args: &[&str]| {
        output(
            wasmops()
                .env("WASMOPS_TOKEN", &t)
                .env("XDG_CONFIG_HOME", &config)
                .args(args),
        )
    };
    let out = with_env(&[
        "deploy",
        test_programs::HELLO,
        "--env",
        "staging",
        "--name",
        "web",
        "--route",
        "/",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = with_env(&[
        "promote",
        "staging",
        "production",
        "--app",
        "web",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let promoted: Value = serde_json::from_str(&out.stdout).unwrap();
    let out = with_env(&[
        "apps", "status", "web", "--env", "staging", "--format", "json",
    ]);
    let on_staging: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(promoted["digest"], on_staging["digest"], "the exact digest");
    assert_eq!(
        common::get(&production.url("/")).await.text(),
        "Hello, world!\n"
    );

    // Swap versions under load: no request fails.
    let url = production.url("/status/200");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let c = common::client(false);
            let (mut ok, mut failed) = (0u64, Vec::new());
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(60)
            {
                let req = http::Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 404 => ok += 1,
                    Ok(r) => failed.push(r.status().as_u16()),
                    Err(e) => failed.push(format!("{e}").len() as u16),
                }
            }
            (ok, failed)
        })
    };
    let padmin = production.admin_url("");
    for (i, wasm) in [
        test_programs::STREAM,
        test_programs::HELLO,
        test_programs::STREAM,
    ]
    .iter()
    .enumerate()
    {
        let out = with_env(&[
            "deploy",
            wasm,
            "--node",
            padmin.trim_end_matches('/'),
            "--name",
            "web",
        ]);
        assert_eq!(out.code, 0, "swap {i}: {}", out.stderr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 50, "{ok}");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );

    // Two deploys of one app at once: one wins, any other is told.
    let a = std::thread::spawn({
        let config = config.clone();
        let t = t.clone();
        move || {
            output(
                wasmops()
                    .env("WASMOPS_TOKEN", &t)
                    .env("XDG_CONFIG_HOME", &config)
                    .args([
                        "deploy",
                        test_programs::HOSTILE,
                        "--env",
                        "production",
                        "--name",
                        "race",
                        "--route",
                        "/race",
                    ]),
            )
        }
    });
    let b = with_env(&[
        "deploy",
        test_programs::ECHO,
        "--env",
        "production",
        "--name",
        "race",
        "--route",
        "/race",
    ]);
    let a = a.join().unwrap();
    let outcomes = [a.code, b.code];
    assert!(outcomes.contains(&0), "{} / {}", a.stderr, b.stderr);
    for o in [&a, &b] {
        if o.code != 0 {
            assert!(
                o.stderr.contains("409") && o.stderr.contains("under way"),
                "{}",
                o.stderr
            );
        }
    }
    let out = with_env(&[
        "apps",
        "status",
        "race",
        "--env",
        "production",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["versions"].as_array().unwrap().len(),
        outcomes.iter().filter(|c| **c == 0).count()
    );
}

#[test]
fn the_whole_admin_api_is_described_and_exercised() {
    // Every described operation has a handler: a request to it is not
    // answered "no such endpoint" or 405. (The other tests check each
    // answer they get against the description's schemas.)
    let spec = openapi();
    let ops: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete"].contains(&k.as_str()))
                .map(move |k| (k.clone(), p.clone()))
        })
        .collect();
    assert!(ops.len() >= 10, "{ops:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        let t = token(&tokens, "read", "probe");
        let node = start_node(&dir.path().join("data"), &tokens, &[]);
        let c = common::client(false);
        for (method, path) in &ops {
            let concrete = path
                .replace("{name}", "probe")
                .replace("{digest}", &format!("sha256:{}", "0".repeat(64)));
            let req = http::Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(node.admin_url(&concrete))
                .header("authorization", format!("Bearer {t}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let r = common::send(&c, req).await;
            assert!(
                !r.text().contains("no such endpoint"),
                "{method} {path}: {}",
                r.text()
            );
            assert_ne!(r.status, 405, "{method} {path}");
            // What can be read can be asked with HEAD: GET's answer
            // without the body.
            if method == "get" {
                let req = http::Request::builder()
                    .method("HEAD")
                    .uri(node.admin_url(&concrete))
                    .header("authorization", format!("Bearer {t}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let h = common::send(&c, req).await;
                assert_eq!((h.status, h.text().as_str()), (r.status, ""), "HEAD {path}");
            }
        }
    });
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn test_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=wasmops test CA",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    )
}

#[test]
fn the_admin_api_speaks_tls_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let tokens = dir.path().join("tokens");
    let t = token(&tokens, "deploy", "tls");
    let node = start_node(
        &dir.path().join("data"),
        &tokens,
        &[
            "--admin-tls-cert",
            cert.to_str().unwrap(),
            "--admin-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{}", node.admin.unwrap());
    let out = client(
        &t,
        &[
            "deploy",
            test_programs::HELLO,
            "--node",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--name",
            "secure",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = client(
        &t,
        &[
            "apps",
            "list",
            "--node",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"secure\""), "{}", out.stdout);
    // A client that does not trust the CA is refused, in one line.
    let out = client(&t, &["apps", "list", "--node", &url]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    // Plain HTTP is not answered on the TLS port.
    let out = client(
        &t,
        &[
            "apps",
            "list",
            "--node",
            &format!("http://{}", node.admin.unwrap()),
        ],
    );
    assert_ne!(out.code, 0);
    // A certificate that does not parse stops the node at start, in one line.
    let out = common::run(&[
        "node",
        "--data-dir",
        dir.path().join("d2").to_str().unwrap(),
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--admin-tls-cert",
        key.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
    ]);
    common::assert_one_line_error(&out);
}

/// A plain HTTP/1.1 server on loopback answering `upstream <path>`.
fn upstream() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split(' ').nth(1).unwrap_or("?").to_string();
            let body = format!("upstream {path}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A tar of `files` (path, contents), made by Python's `tarfile`.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (p, data) in files {
        let f = dir.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, data).unwrap();
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import io,os,sys,tarfile\n\
             b=io.BytesIO()\n\
             with tarfile.open(fileobj=b,mode='w',format=tarfile.USTAR_FORMAT) as t:\n\
             \x20   for p in sys.argv[2:]: t.add(os.path.join(sys.argv[1],p),arcname=p)\n\
             sys.stdout.buffer.write(b.getvalue())",
        )
        .arg(dir.path())
        .args(files.iter().map(|(p, _)| *p))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_apps_with_files_state_variables_and_outbound_by_upload_and_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let mut node = start_node(&data, &tokens, &[]);
    let api = Api::new(&node);
    let url = node.admin_url("");
    let url = url.trim_end_matches('/').to_string();
    wait_ready(&api).await;
    let up = upstream();
    let greeting = "Hi from the node, not from the manifest";

    // The example app, three components, uploaded whole.
    let webapp = test_programs::EXAMPLE_WEBAPP;
    let upstream_var = format!("upstream={up}");
    let greeting_var = format!("greeting={greeting}");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            webapp,
            "--node",
            &url,
            "--name",
            "shop",
            "--host",
            "shop.test",
        ];
        args.extend_from_slice(extra);
        client(&deployer, &args)
    };
    let out = deploy(&["--var", &upstream_var, "--var", &greeting_var]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("deployed shop version 1"),
        "{}",
        out.stdout
    );

    let home = get_host(&node, "shop.test", "/").await;
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(home.text().contains("Welcome to webapp"), "{}", home.text());
    assert_eq!(get_host(&node, "shop.test", "/style.css").await.status, 200);
    assert_eq!(
        get_host(&node, "shop.test", "/missing.txt").await.status,
        404
    );
    let config = get_host(&node, "shop.test", "/api/config").await;
    assert_eq!(
        config.text().trim(),
        format!(r#"{{"greeting":"{greeting}"}}"#)
    );
    let post_counter = || async {
        let req = http::Request::post(node.url("/api/counter"))
            .header("host", "shop.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        common::send(&common::client(false), req).await
    };
    for n in 1..=3 {
        let r = post_counter().await;
        assert_eq!(r.text().trim(), format!(r#"{{"count":{n}}}"#));
    }
    let proxied = get_host(&node, "shop.test", "/proxy/a/b?q=1").await;
    assert_eq!(proxied.status, 200, "{}", proxied.text());
    assert_eq!(proxied.text(), "upstream /a/b?q=1");
    // Another host is not the app's.
    assert_eq!(get_host(&node, "other.test", "/").await.status, 404);

    // Status: an app; its variables by name only.
    let (s, v) = api
        .call(
            "GET",
            "/v1/apps/shop",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "app");
    assert_eq!(
        v["versions"][0]["spec"]["variables"],
        json!(["greeting", "upstream"])
    );
    assert!(!v.to_string().contains(greeting), "{v}");
    // Per-route series under the node's name for the app.
    let metrics = common::get(&node.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(r#"wasmops_http_requests_total{app="shop",component="api",route="/api/...",status_class="2xx"} 4"#),
        "{metrics}"
    );
    // Outcomes it never had make no series; instantiation times and memory
    // high-water marks are the node's (`--app-metrics requests`).
    for absent in [
        r#"status_class="5xx""#,
        r#"wasmops_guest_failures_total{app="shop""#,
        r#"wasmops_instantiation_duration_seconds_count{app="shop""#,
        r#"wasmops_instance_memory_high_water_bytes_count{app="shop""#,
    ] {
        assert!(!metrics.contains(absent), "{absent} in {metrics}");
    }
    assert!(
        metrics.contains(r#"wasmops_instantiation_duration_seconds_count{app="",component=""}"#),
        "{metrics}"
    );

    // Refused, and nothing changes: an undeclared variable, an
    // environment variable or limit (set in the manifest), a bundle with a
    // broken manifest, one with a core module, one that is not a tar.
    let out = deploy(&["--var", "nope=1"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("declares no variable `nope`"),
        "{}",
        out.stderr
    );
    let out = deploy(&["--app-env", "A=1"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("set per component in its wasmops.toml"),
        "{}",
        out.stderr
    );
    let broken = tar_of(&[(
        "wasmops.toml",
        b"manifest_version = 1\n[app]\nname = \"b\"\n[component.a]\nsorce = \"components/a.wasm\"\n",
    )]);
    let (s, v) = api
        .call(
            "POST",
            "/v1/blobs",
            "/v1/blobs",
            Some(&deployer),
            Some(broken),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("wasmops.toml:5:"), "{e}");
    assert!(!e.contains(".unpack-"), "{e}");
    let core = std::fs::read(test_programs::CLI_P1).unwrap();
    let core_app = tar_of(&[
        (
            "wasmops.toml",
            b"manifest_version = 1\n[app]\nname = \"c\"\n[component.a]\nsource = \"components/a.wasm\"\nroute = \"/...\"\n",
        ),
        ("components/a.wasm", &core),
    ]);
    let (s, v) = api
        .call(
            "POST",
            "/v1/blobs",
            "/v1/blobs",
            Some(&deployer),
            Some(core_app),
        )
        .await;
    assert!(s == 422, "{s} {v}");
    // A manifest named twice: which one counts would depend on the unpacker.
    let twice = tar_of(&[
        (
            "wasmops.toml",
            b"manifest_version = 1\n[app]\nname = \"a\"\n",
        ),
        (
            "wasmops.toml",
            b"manifest_version = 1\n[app]\nname = \"b\"\n",
        ),
    ]);
    let e = upload_refused(&api, &deployer, twice).await;
    assert!(e.contains("wasmops.toml is in the archive twice"), "{e}");
    // A component broken past its header is stored, then refused by the
    // deploy that compiles it; the error names the file as in the bundle,
    // not where the node unpacked it.
    let mut bad = std::fs::read(test_programs::HELLO).unwrap();
    let mid = bad.len() / 2;
    bad[mid..mid + 64].fill(0xff);
    let bad_app = tar_of(&[
        (
            "wasmops.toml",
            b"manifest_version = 1\n[app]\nname = \"d\"\n[component.a]\nsource = \"components/a.wasm\"\nroute = \"/...\"\n",
        ),
        ("components/a.wasm", &bad),
    ]);
    let digest = upload(&api, &deployer, bad_app).await;
    let (s, v) = api
        .call(
            "PUT",
            "/v1/apps/damaged",
            "/v1/apps/{name}",
            Some(&deployer),
            Some(
                json!({"digest": digest, "routes": ["/damaged"]})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("components/a.wasm: "), "{e}");
    let data_dir = data.display().to_string();
    assert!(!e.contains(&data_dir) && !e.contains("/apps/"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(data.join("apps"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (_, v) = api
        .call(
            "GET",
            "/v1/apps/shop",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert_eq!(v["version"], 1);

    // A redeploy without variables keeps their values.
    let out = deploy(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = get_host(&node, "shop.test", "/api/config").await;
    assert!(config.text().contains(greeting), "{}", config.text());

    // kill -9 and restart: the app, its state and its variables are back.
    node.signal(libc::SIGKILL);
    node.wait(Duration::from_secs(10));
    drop(node);
    let node = start_node(&data, &tokens, &[]);
    let api = Api::new(&node);
    wait_ready(&api).await;
    let r = {
        let req = http::Request::post(node.url("/api/counter"))
            .header("host", "shop.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        common::send(&common::client(false), req).await
    };
    assert_eq!(r.text().trim(), r#"{"count":4}"#);
    assert!(
        get_host(&node, "shop.test", "/api/config")
            .await
            .text()
            .contains(greeting)
    );

    // By reference: pushed to a real registry, pulled by the node, pinned.
    let registry = common::registry::Registry::start(None);
    let reference = registry.reference("apps/webapp:v1");
    let out = common::run(&["push", webapp, &reference]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let url = node.admin_url("");
    let url = url.trim_end_matches('/');
    let out = client(
        &deployer,
        &[
            "deploy",
            &reference,
            "--node",
            url,
            "--name",
            "shop2",
            "--host",
            "shop2.test",
            "--var",
            &upstream_var,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let home = get_host(&node, "shop2.test", "/").await;
    assert!(home.text().contains("Welcome to webapp"), "{}", home.text());
    // Its own store: shop's counter is not shop2's.
    let r = {
        let req = http::Request::post(node.url("/api/counter"))
            .header("host", "shop2.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        common::send(&common::client(false), req).await
    };
    assert_eq!(r.text().trim(), r#"{"count":1}"#);
    let (_, v) = api
        .call(
            "GET",
            "/v1/apps/shop2",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert!(v["source"].as_str().unwrap().contains("@sha256:"), "{v}");
    assert_eq!(v["kind"], "app");

    // An environment named in the app's own manifest: its node and hosts.
    let envapp = tempfile::tempdir().unwrap();
    std::fs::copy(test_programs::HELLO, envapp.path().join("hello.wasm")).unwrap();
    std::fs::write(
        envapp.path().join("wasmops.toml"),
        format!(
            "manifest_version = 1\n[app]\nname = \"greeter\"\n[component.hello]\nsource = \"hello.wasm\"\nroute = \"/...\"\n\n[environments.staging]\nnode = \"{url}\"\nhosts = [\"greeter.test\"]\n\n[environments.production]\nnode = \"{url}\"\nhosts = [\"greeter.example\"]\n"
        ),
    )
    .unwrap();
    let out = client(
        &deployer,
        &[
            "deploy",
            envapp.path().to_str().unwrap(),
            "--env",
            "staging",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("deployed greeter version 1"),
        "{}",
        out.stdout
    );
    let r = get_host(&node, "greeter.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    // Promoted, it answers the host names of the environment it goes to
    // (here the same node stands for both).
    let out = output(
        wasmops()
            .env("WASMOPS_TOKEN", &deployer)
            .env("XDG_CONFIG_HOME", "/nonexistent-wasmops-config")
            .current_dir(envapp.path())
            .args(["promote", "staging", "production", "--app", "greeter"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(get_host(&node, "greeter.example", "/").await.status, 200);
    assert_eq!(get_host(&node, "greeter.test", "/").await.status, 404);
    // To itself: refused before anything is asked of a node; an unknown
    // environment is told how to name a node in its place.
    for (from, to, said) in [
        (
            "production",
            "production",
            "promote from `production` to itself",
        ),
        (
            "staging",
            "qa",
            "or write the node's URL (http://HOST:PORT) in its place",
        ),
    ] {
        let out = output(
            wasmops()
                .env("WASMOPS_TOKEN", &deployer)
                .env("XDG_CONFIG_HOME", "/nonexistent-wasmops-config")
                .current_dir(envapp.path())
                .args(["promote", from, to, "--app", "greeter"]),
        );
        common::assert_one_line_error(&out);
        assert!(out.stderr.contains(said), "{}", out.stderr);
    }
    let out = client(
        &deployer,
        &[
            "deploy",
            envapp.path().to_str().unwrap(),
            "--env",
            "nowhere",
        ],
    );
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("no environment `nowhere`"),
        "{}",
        out.stderr
    );
    let out = client(&deployer, &["apps", "delete", "greeter", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Deleting an app removes its series and its unpacked files.
    let out = client(&deployer, &["apps", "delete", "shop2", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = client(&deployer, &["apps", "delete", "shop", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let metrics = common::get(&node.admin_url("/metrics")).await.text();
    assert!(!metrics.contains(r#"app="shop""#), "{metrics}");
    let unpacked = std::fs::read_dir(data.join("apps")).unwrap().count();
    assert_eq!(unpacked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_apps_are_bounded_by_count_and_by_code_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let node = start_node(&data, &tokens, &["--max-loaded", "2"]);
    let api = Api::new(&node);
    wait_ready(&api).await;
    let url = node.admin_url("");
    let url = url.trim_end_matches('/');
    let apps = [
        ("hello", test_programs::HELLO),
        ("echo", test_programs::ECHO),
        ("stream", test_programs::STREAM),
    ];
    for (name, file) in apps {
        let host = format!("{name}.test");
        let out = client(
            &deployer,
            &[
                "deploy", file, "--node", url, "--name", name, "--host", &host,
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    // A deployed version stays loaded, within the bound; a request loads
    // its app, and the least recently used goes.
    let loaded = |v: &Value| -> BTreeSet<String> {
        v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["loaded"] == true)
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (name, _) in apps {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = get_host(&node, &format!("{name}.test"), "/").await;
        assert!(r.status < 500, "{name}: {}", r.status);
    }
    let (_, v) = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&deployer), None)
        .await;
    assert_eq!(
        loaded(&v),
        BTreeSet::from(["echo".to_string(), "stream".to_string()]),
        "{v}"
    );
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert!(metric(&m, "wasmops_node_app_unloads_total") >= 1.0, "{m}");
    assert_eq!(metric(&m, "wasmops_node_apps_loaded"), 2.0, "{m}");
    // The totals follow a loaded app replaced by a new version, and one
    // deleted: the bound still admits two.
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::HELLO,
            "--node",
            url,
            "--name",
            "echo",
            "--host",
            "echo.test",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = client(&deployer, &["apps", "delete", "stream", "--node", url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, "wasmops_node_apps_loaded"), 1.0, "{m}");
    let r = get_host(&node, "hello.test", "/").await;
    assert_eq!(r.status, 200);
    let (_, v) = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&deployer), None)
        .await;
    assert_eq!(
        loaded(&v),
        BTreeSet::from(["echo".to_string(), "hello".to_string()]),
        "{v}"
    );
    drop(node);

    // A code budget smaller than one app: each app is answered, then
    // unloaded at once.
    let node = start_node(&data, &tokens, &["--max-loaded-code", "1KiB"]);
    let api = Api::new(&node);
    wait_ready(&api).await;
    let r = get_host(&node, "hello.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    let (_, v) = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&deployer), None)
        .await;
    assert!(loaded(&v).is_empty(), "{v}");
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, "wasmops_node_app_loads_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "wasmops_node_app_unloads_total"), 1.0, "{m}");
}

/// A loaded app keeps its mapped code's file open. A node whose open-file
/// limit is smaller than its apps read the rest into memory: every app is
/// deployed, loaded and answered, and connections are still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_short_of_open_files_reads_compiled_code_instead_of_mapping_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let node = Server::node_with_open_files(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--tokens-file",
            tokens.to_str().unwrap(),
        ],
        &[],
        Some(96),
    );
    let api = Api::new(&node);
    wait_ready(&api).await;
    let digest = upload(
        &api,
        &deployer,
        std::fs::read(test_programs::HELLO).unwrap(),
    )
    .await;
    // Each app loads its own copy of the code: one file each if mapped.
    const APPS: usize = 100;
    for i in 0..APPS {
        let body = json!({ "digest": digest, "hosts": [format!("a{i}.test")] })
            .to_string()
            .into_bytes();
        let (s, r) = api
            .call(
                "PUT",
                &format!("/v1/apps/a{i}"),
                "/v1/apps/{name}",
                Some(&deployer),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "app {i}: {r}");
    }
    for i in 0..APPS {
        let r = get_host(&node, &format!("a{i}.test"), "/").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "Hello, world!\n"),
            "app {i}"
        );
    }
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, "wasmops_node_apps_loaded"), APPS as f64, "{m}");
    node.wait_log("half the open-file limit is in use");
}

/// Lays out `files` as kubelet lays out a mounted ConfigMap: a
/// timestamped directory, `..data` pointing at it, and each file a link
/// through `..data`. A second call swaps the whole set atomically.
fn kubelet_mount(dir: &Path, version: &str, files: &[(&str, String)]) {
    let data_dir = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data_dir).unwrap();
    for (name, text) in files {
        std::fs::write(data_dir.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    // The visible names: links for the new set, old ones removed.
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !files.iter().any(|(f, _)| *f == n) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

async fn readyz(api: &Api) -> Value {
    api.call("GET", "/readyz", "/readyz", None, None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_from_a_mounted_directory_converge_across_kubelet_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let layout = dir.path().join("layout");
    for (file, tag) in [
        (test_programs::HELLO, "hello"),
        (test_programs::ECHO, "echo"),
        (test_programs::STREAM, "stream"),
    ] {
        let out = common::run(&[
            "push",
            file,
            &format!("oci-layout:{}:{tag}", layout.display()),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let reference = |tag: &str| format!("oci-layout:{}:{tag}", layout.display());
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("GREETING"), "from a secret\n").unwrap();
    kubelet_mount(
        &apps,
        "v1",
        &[
            (
                "hello.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"hello.test\"]\n",
                    reference("hello")
                ),
            ),
            (
                "echo.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"echo.test\"]\nenv = {{ MODE = \"one\" }}\nconcurrency = 8\n",
                    reference("echo")
                ),
            ),
        ],
    );
    let node = start_node(
        &data,
        &tokens,
        &[
            "--apps-dir",
            apps.to_str().unwrap(),
            "--apps-dir-interval",
            "100ms",
        ],
    );
    let api = Api::new(&node);
    wait_ready(&api).await;
    let r = readyz(&api).await;
    assert_eq!(r["declarations"]["applied"], 2, "{r}");
    assert_eq!(
        get_host(&node, "hello.test", "/").await.text(),
        "Hello, world!\n"
    );
    assert_eq!(get_host(&node, "echo.test", "/x").await.status, 200);
    let (_, v) = api
        .call(
            "GET",
            "/v1/apps/echo",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert_eq!(v["deployed_by"], "apps-dir");
    assert!(v["source"].as_str().unwrap().contains("@sha256:"), "{v}");
    // A declared app is changed in the directory, not through the API.
    let (s, v) = api
        .call(
            "DELETE",
            "/v1/apps/echo",
            "/v1/apps/{name}",
            Some(&deployer),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--apps-dir"), "{v}");
    assert_eq!(get_host(&node, "echo.test", "/x").await.status, 200);

    // An app deployed through the API with a name the directory will
    // declare: left alone, and reported.
    let url = node.admin_url("");
    let url = url.trim_end_matches('/');
    let out = client(
        &deployer,
        &[
            "deploy",
            test_programs::HELLO,
            "--node",
            url,
            "--name",
            "mine",
            "--host",
            "mine.test",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Requests keep flowing while the set is swapped: hello moves to
    // another component, echo goes, stream comes, one declaration is
    // broken and one names the API's app.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = node.url("/");
        tokio::spawn(async move {
            let client = common::client(false);
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = http::Request::get(&url)
                    .header("host", "hello.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let r = common::send(&client, req).await;
                if r.status == 200 {
                    ok += 1
                } else {
                    failed += 1
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    kubelet_mount(
        &apps,
        "v2",
        &[
            (
                "hello.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"hello.test\"]\nsecrets_dir = \"{}\"\n",
                    reference("stream"),
                    secrets.display()
                ),
            ),
            (
                "stream.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"stream.test\"]\n",
                    reference("stream")
                ),
            ),
            ("broken.toml", "reference = \"x\"\nhostz = []\n".into()),
            (
                "mine.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"other.test\"]\n",
                    reference("echo")
                ),
            ),
        ],
    );
    let start = Instant::now();
    let r = loop {
        let r = readyz(&api).await;
        if r["declarations"]["failed"].as_array().map(Vec::len) == Some(3)
            || start.elapsed() > Duration::from_secs(20)
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 10 && failed == 0, "{ok} answered, {failed} failed");
    let failed: BTreeSet<String> = r["declarations"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["app"].as_str().unwrap(),
                f["error"].as_str().unwrap()
            )
        })
        .collect();
    let all = format!("{failed:?}");
    assert!(
        all.contains("broken: ") && all.contains("broken.toml:2:1"),
        "{all}"
    );
    assert!(all.contains("mine: ") && all.contains("admin API"), "{all}");
    // A secret-bearing variable for a component is refused: components
    // take `env`, and the node says so.
    assert!(
        all.contains("hello: ") && all.contains("variables are for apps"),
        "{all}"
    );
    assert_eq!(r["declarations"]["applied"], 1, "{r}");
    // hello kept its version (its new declaration failed), stream came,
    // echo went, mine is untouched.
    assert_eq!(
        get_host(&node, "hello.test", "/").await.text(),
        "Hello, world!\n"
    );
    assert_eq!(
        get_host(&node, "stream.test", "/status/201").await.status,
        201
    );
    assert_eq!(get_host(&node, "echo.test", "/x").await.status, 404);
    assert_eq!(get_host(&node, "mine.test", "/").await.status, 200);
    let m = common::get(&node.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&m, "wasmops_node_declarations{state=\"failed\"}"),
        3.0,
        "{m}"
    );

    // Fixed: hello moves to stream; the broken one goes.
    kubelet_mount(
        &apps,
        "v3",
        &[
            (
                "hello.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"hello.test\"]\n",
                    reference("stream")
                ),
            ),
            (
                "stream.toml",
                format!(
                    "reference = \"{}\"\nhosts = [\"stream.test\"]\n",
                    reference("stream")
                ),
            ),
        ],
    );
    let start = Instant::now();
    loop {
        let r = readyz(&api).await;
        if r["declarations"]["failed"].as_array().map(Vec::len) == Some(0) {
            assert_eq!(r["declarations"]["applied"], 2, "{r}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get_host(&node, "hello.test", "/status/202").await;
    assert_eq!((r.status, r.text().as_str()), (202, "status 202"));
    drop(node);

    // Under a signature policy an unsigned artifact is refused, and a tag
    // that does not exist is reported; the node is ready and says so.
    let key = dir.path().join("key");
    let out = output(wasmops().env("COSIGN_PASSWORD", "test").args([
        "keygen",
        "--output-prefix",
        key.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let strict = dir.path().join("strict");
    std::fs::create_dir(&strict).unwrap();
    kubelet_mount(
        &strict,
        "v1",
        &[
            (
                "hello.toml",
                format!("reference = \"{}\"\n", reference("hello")),
            ),
            (
                "missing.toml",
                format!("reference = \"{}\"\n", reference("nope")),
            ),
        ],
    );
    let public = dir.path().join("key.pub");
    let node = start_node(
        &dir.path().join("data2"),
        &tokens,
        &[
            "--apps-dir",
            strict.to_str().unwrap(),
            "--verify-key",
            public.to_str().unwrap(),
        ],
    );
    let api = Api::new(&node);
    wait_ready(&api).await;
    let r = readyz(&api).await;
    assert_eq!(r["declarations"]["applied"], 0, "{r}");
    let errors: BTreeMap<String, String> = r["declarations"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["app"].as_str().unwrap().into(),
                f["error"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(errors["hello"].contains("signature"), "{errors:?}");
    assert!(errors["missing"].contains("nope"), "{errors:?}");
    assert_eq!(r["apps"], 0);
}

/// Runs `kubernetes-validate --strict` for three recent minor versions.
fn kube_validate(file: &Path) {
    for version in ["1.35.0", "1.36.0", "1.37.0"] {
        let out = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--no-warn", "-k", version])
            .arg(file)
            .output()
            .expect("kubernetes-validate is not installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `kube render --format spinapp`: a SpinKube `SpinApp` for a Spin app
/// (its variables, secret ones from a Secret), valid against the SpinApp
/// CRD's own schema; autoscaled, with an HPA that Kubernetes accepts.
#[test]
fn kube_render_spinapp_validates_against_the_spinkube_crd() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::copy(test_programs::SPIN_KV, app.join("spin_kv.wasm")).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"shop\"\n\
         [variables]\ngreeting = { default = \"hi\" }\ntoken = { required = true, secret = true }\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
         [component.web]\nsource = \"spin_kv.wasm\"\n",
    )
    .unwrap();
    let crd = ["../shared/data/spinkube", "../../../shared/data/spinkube"]
        .iter()
        .map(|d| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(d)
                .join("core.spinkube.dev_spinapps.yaml")
        })
        .find(|p| p.is_file())
        .expect("the SpinKube CRD in ../shared/data/spinkube");
    let validate = |file: &Path| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, yaml, jsonschema\n\
                 crd = yaml.safe_load(open(sys.argv[1]))\n\
                 schema = crd['spec']['versions'][0]['schema']['openAPIV3Schema']\n\
                 docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]\n\
                 apps = [d for d in docs if d['kind'] == 'SpinApp']\n\
                 assert len(apps) == 1, docs\n\
                 jsonschema.validate(apps[0], schema)\n\
                 print('valid', apps[0]['spec'])",
            )
            .arg(&crd)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file = dir.path().join("spinapp.yaml");
    let out = output(wasmops().args([
        "kube",
        "render",
        app.to_str().unwrap(),
        "--reference",
        "registry.example.com/apps/shop:1.0",
        "--format",
        "spinapp",
        "--var",
        "greeting=hello",
        "--replicas",
        "3",
        "-o",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("kind: \"SpinApp\"") || text.contains("kind: SpinApp"),
        "{text}"
    );
    let shown = validate(&file);
    assert!(shown.contains("'replicas': 3"), "{shown}");
    assert!(
        shown.contains("'executor': 'containerd-shim-spin'"),
        "{shown}"
    );
    assert!(
        shown.contains("'secretKeyRef': {'key': 'token', 'name': 'wasmops-shop'}"),
        "{shown}"
    );

    // Autoscaled: the operator's switch and an HPA on its Deployment.
    let out = output(wasmops().args([
        "kube",
        "render",
        app.to_str().unwrap(),
        "--reference",
        "registry.example.com/apps/shop:1.0",
        "--format",
        "spinapp",
        "--max-replicas",
        "8",
        "-o",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown = validate(&file);
    assert!(shown.contains("'enableAutoscaling': True"), "{shown}");
    let text = std::fs::read_to_string(&file).unwrap();
    let hpa_only: String = text
        .split("---")
        .filter(|d| d.contains("HorizontalPodAutoscaler"))
        .collect();
    let hpa = dir.path().join("hpa.yaml");
    std::fs::write(&hpa, hpa_only).unwrap();
    kube_validate(&hpa);
}

#[test]
fn kube_render_writes_valid_deterministic_manifests() {
    let dir = tempfile::tempdir().unwrap();
    // One app by reference, autoscaled, in its own namespace.
    let args = [
        "kube",
        "render",
        "registry.example.com/apps/hello@sha256:1f076c0c4450a270336d1e5720ec38a7066c165246ac5662c4c6d9b7c245169b",
        "--name",
        "hello",
        "--host",
        "hello.example.com",
        "--env",
        "production",
        "--fleet",
        "edge",
        "--namespace",
        "apps",
        "--create-namespace",
        "--image",
        "registry.example.com/wasmops-node:0.1.0",
        "--min-replicas",
        "2",
        "--max-replicas",
        "20",
        "--requests-per-second",
        "800",
        "--tokens-secret",
        "edge-tokens",
        "--registry-secret",
        "edge-pull",
    ];
    let out = common::run(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(common::run(&args).stdout, out.stdout, "deterministic");
    let file = dir.path().join("fleet.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    kube_validate(&file);
    common::snapshot("kube", "autoscaled.yaml", &out.stdout);
    assert_eq!(
        out.stdout.matches("\n---\n").count() + 1,
        6,
        "{}",
        out.stdout
    );

    // A directory of declarations, a fixed size, JSON.
    let decls = dir.path().join("decls");
    std::fs::create_dir(&decls).unwrap();
    std::fs::write(decls.join("shop.toml"), "reference = \"r.example.com/shop:v1\"\nhosts = [\"shop.example.com\"]\nsecrets_dir = \"/etc/wasmops/secrets/shop\"\n").unwrap();
    std::fs::write(
        decls.join("blog.toml"),
        "reference = \"r.example.com/blog:v3\"\nroutes = [\"/blog\"]\n",
    )
    .unwrap();
    let out = common::run(&[
        "kube",
        "render",
        "--apps",
        decls.to_str().unwrap(),
        "--image",
        "node:1",
        "--replicas",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let config = &items[0];
    assert_eq!(config["kind"], "ConfigMap");
    assert!(
        config["data"]["shop.toml"]
            .as_str()
            .unwrap()
            .contains("shop.example.com")
    );
    let deployment = &items[1];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .to_string()
            .contains("\"secretName\":\"wasmops-shop\""),
        "{pod}"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let json_file = dir.path().join("fleet.json");
    std::fs::write(&json_file, &out.stdout).unwrap();
    kube_validate(&json_file);

    // An app directory with a secret variable: mounted from a Secret,
    // never given on the command line.
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("wasmops.toml"),
        "manifest_version = 1\n[app]\nname = \"billing\"\n[variables]\ntoken = { required = true, secret = true }\nmode = { default = \"live\" }\n[component.api]\nsource = \"api.wasm\"\nroute = \"/...\"\nvariables = [\"token\", \"mode\"]\n",
    )
    .unwrap();
    std::fs::copy(test_programs::HELLO, app.join("api.wasm")).unwrap();
    let app_s = app.to_str().unwrap();
    let out = common::run(&[
        "kube",
        "render",
        app_s,
        "--reference",
        "r.example.com/billing:v1",
        "--image",
        "node:1",
        "--var",
        "mode=test",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("secrets_dir = \\\"/etc/wasmops/secrets/billing\\\"")
            || out
                .stdout
                .contains("secrets_dir = \"/etc/wasmops/secrets/billing\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"wasmops-billing\""), "{}", out.stdout);
    let out = common::run(&[
        "kube",
        "render",
        app_s,
        "--reference",
        "r.example.com/billing:v1",
        "--image",
        "node:1",
        "--var",
        "token=s3cret",
    ]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("is secret") && !out.stderr.contains("s3cret"),
        "{}",
        out.stderr
    );

    // The fleet settings of an environment in the app's manifest; flags
    // override them.
    let mut manifest = std::fs::read_to_string(app.join("wasmops.toml")).unwrap();
    manifest.push_str(
        "\n[environments.production]\nhosts = [\"billing.example.com\"]\n[environments.production.kube]\nimage = \"registry.example.com/wasmops-node:0.2.0\"\nreference = \"r.example.com/billing@sha256:abc\"\nnamespace = \"billing\"\nmin_replicas = 3\nmax_replicas = 9\nmemory = \"1GiB\"\n",
    );
    std::fs::write(app.join("wasmops.toml"), manifest).unwrap();
    let out = common::run(&[
        "kube",
        "render",
        app_s,
        "--env",
        "production",
        "--max-replicas",
        "30",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let by_kind = |k: &str| items.iter().find(|o| o["kind"] == k).unwrap().clone();
    assert_eq!(by_kind("Deployment")["metadata"]["namespace"], "billing");
    let pod = by_kind("Deployment")["spec"]["template"]["spec"].clone();
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/wasmops-node:0.2.0"
    );
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["memory"],
        "1Gi"
    );
    let hpa = by_kind("HorizontalPodAutoscaler");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(3), json!(30))
    );
    let decl = by_kind("ConfigMap")["data"]["billing.toml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        decl.contains("r.example.com/billing@sha256:abc") && decl.contains("billing.example.com"),
        "{decl}"
    );

    // Bad options: one line, no output, no file.
    let target = dir.path().join("out.yaml");
    for (bad, says) in [
        (vec!["r.example.com/a:1"], "--image"),
        (
            vec![
                "r.example.com/a:1",
                "--image",
                "n:1",
                "--replicas",
                "2",
                "--max-replicas",
                "4",
            ],
            "one or the other",
        ),
        (
            vec![
                "r.example.com/a:1",
                "--image",
                "n:1",
                "--min-replicas",
                "5",
                "--max-replicas",
                "4",
            ],
            "--min-replicas",
        ),
        (vec![app_s, "--image", "n:1"], "--reference"),
        (
            vec![
                "r.example.com/a:1",
                "--image",
                "n:1",
                "--memory",
                "1GiB",
                "--memory-limit",
                "512MiB",
            ],
            "below",
        ),
        (
            vec![
                "r.example.com/a:1",
                "--image",
                "n:1",
                "--requests-per-second",
                "10",
            ],
            "--max-replicas",
        ),
    ] {
        let mut args = vec!["kube", "render", "-o", target.to_str().unwrap()];
        args.extend(bad);
        let out = common::run(&args);
        common::assert_one_line_error(&out);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
        assert!(!target.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_to_production_then_a_version_that_fails_in_staging() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let t = token(&tokens, "deploy", "pipeline");
    let staging = start_node(&dir.path().join("staging"), &tokens, &[]);
    let production = start_node(&dir.path().join("production"), &tokens, &[]);
    wait_ready(&Api::new(&staging)).await;
    wait_ready(&Api::new(&production)).await;
    let registry = common::registry::Registry::start(None);
    let repo = registry.reference("apps/webapp");
    let key = dir.path().join("key");
    let out = output(wasmops().env("COSIGN_PASSWORD", "pw").args([
        "keygen",
        "--output-prefix",
        key.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let signing_key = dir.path().join("key.key");
    let env = |name: &str, node: &Server| {
        format!(
            "\n[environments.{name}]\nnode = \"{}\"\nurl = \"{}\"\nhosts = [\"shop.test\"]\n",
            node.admin_url("").trim_end_matches('/'),
            node.url("").trim_end_matches('/')
        )
    };
    let app = common::webapp_copy(
        dir.path(),
        &(env("staging", &staging) + &env("production", &production)),
    );
    let pipeline = |extra: &[&str]| {
        let mut args = vec![
            "pipeline",
            app.to_str().unwrap(),
            "--registry",
            &repo,
            "--key",
            signing_key.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        output(
            wasmops()
                .env("WASMOPS_TOKEN", &t)
                .env("COSIGN_PASSWORD", "pw")
                .env("XDG_CONFIG_HOME", "/nonexistent-wasmops-config")
                .args(&args),
        )
    };

    // The whole way: built, checked, tested, pushed, signed, deployed to
    // staging and tested there, promoted to production and tested there.
    let out = pipeline(&["--to", "production"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let stages: Vec<String> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["stage"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            "build ok",
            "check ok",
            "test ok",
            "push ok",
            "sign ok",
            "deploy staging ok",
            "test staging ok",
            "promote staging → production ok",
            "test production ok"
        ],
        "{report}"
    );
    let r = get_host(&production, "shop.test", "/api/config").await;
    assert_eq!(r.text().trim(), r#"{"greeting":"Hello from webapp"}"#);
    let (_, prod_before) = Api::new(&production)
        .call("GET", "/v1/apps/webapp", "/v1/apps/{name}", Some(&t), None)
        .await;

    // Staging's configuration breaks the app (a variable kept on the
    // node): the next run fails its staging tests, staging is rolled back,
    // production is not touched.
    let out = client(
        &t,
        &[
            "deploy",
            app.to_str().unwrap(),
            "--env",
            "staging",
            "--var",
            "greeting=Hola",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, staging_before) = Api::new(&staging)
        .call("GET", "/v1/apps/webapp", "/v1/apps/{name}", Some(&t), None)
        .await;
    let out = pipeline(&["--to", "production"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["failed_stage"], "test staging", "{report}");
    let last = report["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["stage"], "rollback staging", "{report}");
    assert_eq!(last["status"], "ok", "{report}");
    let detail = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "test staging")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("Hola"), "{detail}");
    let (_, staging_after) = Api::new(&staging)
        .call("GET", "/v1/apps/webapp", "/v1/apps/{name}", Some(&t), None)
        .await;
    assert_eq!(
        staging_after["history"].as_array().unwrap().last().unwrap()["action"],
        "rollback",
        "{staging_after}"
    );
    assert_eq!(staging_after["version"], staging_before["version"]);
    let (_, prod_after) = Api::new(&production)
        .call("GET", "/v1/apps/webapp", "/v1/apps/{name}", Some(&t), None)
        .await;
    assert_eq!(prod_after["version"], prod_before["version"]);
    assert_eq!(prod_after["history"], prod_before["history"]);

    // A policy the app breaks (its proxy sends HTTP requests): the
    // pipeline stops at the check, before anything is pushed or deployed.
    let deny = dir.path().join("deny.toml");
    std::fs::write(&deny, "deny_capabilities = [\"outbound-http\"]\n").unwrap();
    let tags_before = registry.tags("apps/webapp");
    let out = pipeline(&["--to", "production", "--policy", deny.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["failed_stage"], "check", "{report}");
    let ran: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["build", "check"], "{report}");
    assert_eq!(registry.tags("apps/webapp"), tags_before);
    let (_, staging_now) = Api::new(&staging)
        .call("GET", "/v1/apps/webapp", "/v1/apps/{name}", Some(&t), None)
        .await;
    assert_eq!(staging_now["history"], staging_after["history"]);

    // Bad requests: an environment the app does not declare, nothing run.
    let out = pipeline(&["--to", "qa"]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("no environment `qa`"), "{}", out.stderr);

    // An environment whose node cannot be reached: the pipeline stops at
    // its deploy, saying so.
    let far = dir.path().join("far");
    std::fs::create_dir(&far).unwrap();
    let lonely = common::webapp_copy(
        &far,
        "\n[environments.nowhere]\nnode = \"http://127.0.0.1:9\"\nurl = \"http://127.0.0.1:9\"\n",
    );
    let out = output(
        wasmops()
            .env("WASMOPS_TOKEN", &t)
            .env("XDG_CONFIG_HOME", "/nonexistent-wasmops-config")
            .args([
                "pipeline",
                lonely.to_str().unwrap(),
                "--to",
                "nowhere",
                "--registry",
                &repo,
                "--format",
                "json",
            ]),
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["failed_stage"], "deploy nowhere", "{report}");
    let detail = report["stages"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("127.0.0.1:9"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_variable_comes_from_the_secret_mount_not_the_configmap() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let _ = token(&tokens, "read", "viewer");
    let app = common::webapp_copy(dir.path(), "\n[variables.token]\nsecret = true\n");
    let layout = format!("oci-layout:{}:v1", dir.path().join("layout").display());
    let out = common::run(&["push", app.to_str().unwrap(), &layout]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    let secret = "sup3r-s3cret";
    kubelet_mount(
        &apps,
        "v1",
        &[(
            "shop.toml",
            format!("reference = \"{layout}\"\nvariables = {{ token = \"{secret}\" }}\n"),
        )],
    );
    let node = start_node(
        &dir.path().join("data"),
        &tokens,
        &[
            "--apps-dir",
            apps.to_str().unwrap(),
            "--apps-dir-interval",
            "100ms",
        ],
    );
    let api = Api::new(&node);
    wait_ready(&api).await;
    let r = readyz(&api).await;
    let failed = r["declarations"]["failed"].to_string();
    assert!(failed.contains("`token` is secret"), "{r}");
    assert!(!failed.contains(secret), "{r}");
    assert!(
        !node.log().contains(secret),
        "the value never reaches the log"
    );

    // From a mounted Secret it is applied.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("token"), format!("{secret}\n")).unwrap();
    kubelet_mount(
        &apps,
        "v2",
        &[(
            "shop.toml",
            format!(
                "reference = \"{layout}\"\nsecrets_dir = \"{}\"\n",
                secrets.display()
            ),
        )],
    );
    let start = Instant::now();
    loop {
        let r = readyz(&api).await;
        if r["declarations"]["applied"] == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get_host(&node, "x.test", "/").await;
    assert!(r.text().contains("Welcome to webapp"), "{}", r.text());
    assert!(!node.log().contains(secret));
}

/// Deploys of different apps at the same moment each build the routing
/// table from the current one: every app must still be routed afterwards
/// (without a restart), and of two apps claiming one host exactly one wins,
/// with the state and the table agreeing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_different_apps_all_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let node = start_node(&data, &tokens, &[]);
    let api = Arc::new(Api::new(&node));
    wait_ready(&api).await;
    let digest = upload(
        &api,
        &deployer,
        std::fs::read(test_programs::HELLO).unwrap(),
    )
    .await;
    const APPS: usize = 48;
    let put = |name: String, host: String| {
        let api = api.clone();
        let deployer = deployer.clone();
        let body = serde_json::json!({ "digest": digest, "hosts": [host] });
        async move {
            api.call(
                "PUT",
                &format!("/v1/apps/{name}"),
                "/v1/apps/{name}",
                Some(&deployer),
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..APPS {
        tasks.spawn(put(format!("app{i}"), format!("app{i}.test")));
    }
    // Two apps, one host.
    tasks.spawn(put("claim-a".into(), "claimed.test".into()));
    tasks.spawn(put("claim-b".into(), "claimed.test".into()));
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        statuses.push(r.unwrap());
    }
    let ok = statuses
        .iter()
        .filter(|(s, _)| *s == 201 || *s == 200)
        .count();
    let conflicts: Vec<_> = statuses.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!((ok, conflicts.len()), (APPS + 1, 1), "{statuses:?}");
    assert!(
        conflicts[0].1["error"]
            .as_str()
            .unwrap()
            .contains("claimed.test"),
        "{statuses:?}"
    );
    for i in 0..APPS {
        let r = get_host(&node, &format!("app{i}.test"), "/").await;
        assert_eq!(r.status, 200, "app{i}: {}", r.text());
    }
    let r = get_host(&node, "claimed.test", "/").await;
    assert_eq!(r.status, 200);
    let (_, v) = api
        .call("GET", "/v1/apps", "/v1/apps", Some(&deployer), None)
        .await;
    let names: BTreeSet<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), APPS + 1, "{v}");
    assert!(
        names.contains("claim-a") != names.contains("claim-b"),
        "{v}"
    );
}

/// The tokens file is read on every admin request: a token made while the
/// node runs works at once, one removed from the file is refused at once,
/// and a file that goes bad refuses every token (503, the cause in the log
/// and never a token) until it is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_added_and_revoked_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let first = token(&tokens, "deploy", "first");
    let node = start_node(&data, &tokens, &[]);
    let api = Api::new(&node);
    wait_ready(&api).await;
    let list = |t: String| {
        let api = &api;
        async move {
            api.call("GET", "/v1/apps", "/v1/apps", Some(&t), None)
                .await
        }
    };
    assert_eq!(list(first.clone()).await.0, 200);

    // Added while running.
    let reader = token(&tokens, "read", "later");
    assert_eq!(list(reader.clone()).await.0, 200);
    let (s, v) = api
        .call(
            "PUT",
            "/v1/apps/x",
            "/v1/apps/{name}",
            Some(&reader),
            Some(br#"{"digest":"sha256:00"}"#.to_vec()),
        )
        .await;
    assert_eq!(s, 403, "{v}");

    // Revoked: the file replaced by one without it.
    let kept: String = std::fs::read_to_string(&tokens)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with(" first"))
        .map(|l| format!("{l}\n"))
        .collect();
    let next = dir.path().join("tokens.next");
    std::fs::write(&next, kept).unwrap();
    std::fs::rename(&next, &tokens).unwrap();
    let (s, v) = list(first.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(list(reader.clone()).await.0, 200);

    // A malformed line (a token pasted where its hash belongs): nothing is
    // accepted, and neither the answer nor the log repeats the token.
    let good = std::fs::read_to_string(&tokens).unwrap();
    std::fs::write(&tokens, format!("{good}{first} deploy pasted\n")).unwrap();
    let (s, v) = list(reader.clone()).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("tokens file"), "{v}");
    let log = node.wait_log("cannot be used");
    assert!(log.contains(":2:"), "the log names the line: {log}");
    assert!(!log.contains(&first[3..]), "a token reached the log: {log}");

    // Fixed: accepted again.
    std::fs::write(&tokens, good).unwrap();
    assert_eq!(list(reader).await.0, 200);
    assert_eq!(list(first).await.0, 401);
}

/// A Spin app as Spin users write it (`spin.toml`: two components, a
/// key-value store, a variable given at deploy, a wildcard route beside an
/// exact one), deployed to a node by `wasmops deploy DIR`, serves
/// unchanged: state kept across a restart, Spin's error for a store it was
/// not granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_app_deploys_to_a_node_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::copy(test_programs::SPIN_KV, app.join("spin_kv.wasm")).unwrap();
    std::fs::copy(test_programs::HELLO, app.join("hello.wasm")).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "shop"
[variables]
greeting = { required = true }
[[trigger.http]]
route = "/..."
component = "kv"
[[trigger.http]]
route = "/hello"
component = "hello"
[component.kv]
source = "spin_kv.wasm"
key_value_stores = ["default"]
[component.kv.variables]
greeting = "{{ greeting }}"
[component.hello]
source = "hello.wasm"
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens");
    let deployer = token(&tokens, "deploy", "ci");
    let mut node = start_node(&data, &tokens, &[]);
    let url = node.admin_url("");
    let url = url.trim_end_matches('/').to_string();
    wait_ready(&Api::new(&node)).await;
    let app_dir = app.to_str().unwrap();
    // A required variable not given: refused, saying how to give it.
    let out = client(&deployer, &["deploy", app_dir, "--node", &url]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("--var"), "{}", out.stderr);
    let out = client(
        &deployer,
        &[
            "deploy",
            app_dir,
            "--node",
            &url,
            "--var",
            "greeting=bonjour",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    let get = |path: &'static str| {
        let node = &node;
        async move { get_host(node, "shop.test", path).await }
    };
    let r = get("/hello").await;
    assert_eq!((r.status, r.text().trim()), (200, "Hello, world!"));
    assert_eq!(get("/count").await.text().trim(), "1");
    assert_eq!(get("/count").await.text().trim(), "2");
    assert_eq!(get("/greeting").await.text().trim(), "bonjour");
    let r = get("/denied-store").await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());

    // The store outlives the process.
    node.signal(9);
    node.wait(Duration::from_secs(10));
    let node = start_node(&data, &tokens, &[]);
    wait_ready(&Api::new(&node)).await;
    let r = get_host(&node, "shop.test", "/count").await;
    assert_eq!((r.status, r.text().trim()), (200, "3"));
}
