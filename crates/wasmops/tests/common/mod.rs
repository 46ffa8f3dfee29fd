//! Helpers for driving the real `wasmops` binary.
#![allow(dead_code)]

pub mod registry;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A cache directory shared by the tests of one run, so each guest compiles once.
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasmops-test-cache")
}

/// The `wasmops` binary with a clean environment for logging and caching.
pub fn wasmops() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasmops"));
    c.env("WASMOPS_CACHE_DIR", shared_cache())
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    c
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Output {
    output(wasmops().args(args))
}

pub fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cannot run wasmops");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts the error output is one line saying `error: ...`, without a backtrace.
pub fn assert_one_line_error(out: &Output) {
    assert_ne!(out.code, 0, "expected failure: {}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {:?}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", out.stderr);
    assert!(!out.stderr.contains("backtrace"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Sets a resource limit (soft and hard) in the child `cmd` starts.
fn limit_child(cmd: &mut Command, resource: libc::__rlimit_resource_t, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), when on.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(file: &str, args: &[&str]) -> Server {
        match Server::try_start(file, args) {
            Ok(s) => s,
            Err((code, log)) => panic!("server did not start (exit {code}): {log}"),
        }
    }

    /// Starts `wasmops serve FILE --listen 127.0.0.1:0 ARGS...` and waits for
    /// its "serving" line; on failure returns the exit code and stderr.
    pub fn try_start(file: &str, args: &[&str]) -> Result<Server, (i32, String)> {
        Server::try_start_limited(file, args, None)
    }

    /// Like `try_start`, with the process's address space limited to
    /// `address_space` bytes (RLIMIT_AS), when given.
    pub fn try_start_limited(
        file: &str,
        args: &[&str],
        address_space: Option<u64>,
    ) -> Result<Server, (i32, String)> {
        Server::spawn(file, args, address_space, &[])
    }

    /// Starts a server with extra environment variables.
    pub fn start_with_env(file: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::spawn(file, args, None, envs)
            .unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"))
    }

    fn spawn(
        file: &str,
        args: &[&str],
        address_space: Option<u64>,
        envs: &[(&str, &str)],
    ) -> Result<Server, (i32, String)> {
        let mut cmd = wasmops();
        cmd.envs(envs.iter().copied());
        if let Some(limit) = address_space {
            limit_child(&mut cmd, libc::RLIMIT_AS, limit);
        }
        cmd.arg("serve")
            .arg(file)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args);
        Server::launch(cmd, args)
    }

    /// Starts `wasmops node --listen 127.0.0.1:0 ARGS...` (the admin
    /// listener on a free port unless ARGS name one).
    pub fn node(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::node_with_open_files(args, envs, None)
    }

    /// `node`, with the open-file limit (soft and hard) set to `open_files`.
    pub fn node_with_open_files(
        args: &[&str],
        envs: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Server {
        let mut cmd = wasmops();
        cmd.envs(envs.iter().copied());
        if let Some(limit) = open_files {
            limit_child(&mut cmd, libc::RLIMIT_NOFILE, limit);
        }
        cmd.arg("node")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args);
        Server::launch(cmd, args)
            .unwrap_or_else(|(code, log)| panic!("wasmops node did not start (exit {code}): {log}"))
    }

    /// Starts `wasmops up APP --listen 127.0.0.1:0 ARGS...` in `cwd` (when
    /// given) with extra environment variables.
    pub fn try_up(
        app: Option<&std::path::Path>,
        cwd: Option<&std::path::Path>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Server, (i32, String)> {
        let mut cmd = wasmops();
        cmd.envs(envs.iter().copied());
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.arg("up");
        if let Some(a) = app {
            cmd.arg(a);
        }
        cmd.arg("--listen").arg("127.0.0.1:0").args(args);
        Server::launch(cmd, args)
    }

    pub fn up(app: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::try_up(Some(app), None, args, envs)
            .unwrap_or_else(|(code, log)| panic!("wasmops up did not start (exit {code}): {log}"))
    }

    fn launch(mut cmd: Command, args: &[&str]) -> Result<Server, (i32, String)> {
        if !args.contains(&"--log-format") {
            cmd.args(["--log-format", "json"]);
        }
        if !args.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wasmops");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let admin = Arc::new(Mutex::new(None));
        {
            let log = log.clone();
            let admin = admin.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line
                        .strip_prefix("wasmops: admin on http://")
                        .or_else(|| line.strip_prefix("wasmops: admin on https://"))
                    {
                        *admin.lock().unwrap() =
                            rest.trim_end_matches('/').parse::<SocketAddr>().ok();
                    }
                    if let Some(rest) = line.strip_prefix("wasmops: serving http://")
                        && let Some(t) = tx.take()
                    {
                        let _ = t.send(rest.trim_end_matches('/').parse::<SocketAddr>().unwrap());
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => {
                let admin = *admin.lock().unwrap();
                Ok(Server {
                    child,
                    addr,
                    admin,
                    log,
                })
            }
            Err(_) => {
                let status = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
                std::thread::sleep(Duration::from_millis(50));
                let log = log.lock().unwrap().clone();
                Err((status, log))
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("admin listener is off"),
            path
        )
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the log contains `text`; info lines are
    /// flushed in batches. Returns the log.
    pub fn wait_log(&self, text: &str) -> String {
        self.wait_log_until(|log| log.contains(text))
    }

    /// Waits (up to 10 s) until `done` holds for the log. Returns the log.
    pub fn wait_log_until(&self, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if done(&log) || start.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub version: http::Version,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub fn client(h2: bool) -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(h2)
        .build_http()
}

pub async fn send(client: &Client, req: http::Request<Full<Bytes>>) -> Resp {
    let resp = client.request(req).await.expect("request failed");
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body failed")
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
        version,
    }
}

pub async fn get(url: &str) -> Resp {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(false), req).await
}

pub async fn post(url: &str, body: &[u8]) -> Resp {
    let req = http::Request::post(url)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    send(&client(false), req).await
}

/// Runs a command with `input` on its stdin.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the command");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("cannot write stdin");
    }
    let out = child
        .wait_with_output()
        .expect("cannot wait for the command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Checks a CNCF Wasm artifact of the `hello` component field by field:
/// the manifest, and the config whose bytes `config` gives.
pub fn assert_cncf_hello(manifest: &serde_json::Value, config: &[u8]) {
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let wasm_len = std::fs::metadata(test_programs::HELLO).unwrap().len();
    assert_eq!(layers[0]["size"], wasm_len);
    assert!(manifest["annotations"]["org.opencontainers.image.created"].is_string());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "hello.wasm"
    );
    let config: serde_json::Value = serde_json::from_slice(config).expect("config JSON");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(
        config["layerDigests"],
        serde_json::json!([layers[0]["digest"]])
    );
    assert!(config["created"].as_str().is_some_and(|c| c.ends_with('Z')));
    assert!(
        config["component"]["exports"]
            .to_string()
            .contains("wasi:http/incoming-handler")
    );
    assert!(config["component"]["imports"].is_array());
    assert!(
        config["component"]["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("wasi:http/proxy@0.2.")),
        "{config}"
    );
}

/// Compares `text` with the snapshot `tests/fixtures/DIR/NAME` (rewritten
/// with `UPDATE_SNAPSHOTS=1`).
pub fn snapshot(dir: &str, name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(text, want, "{name} differs from its snapshot");
}

/// The shape of a JSON document: each value replaced by its type's name,
/// an array by the shape of its first element; for snapshots of what a
/// command's `--format json` promises, whatever the values.
pub fn json_shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => Value::Array(a.first().map(json_shape).into_iter().collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json_shape(v))).collect())
        }
    }
}

/// A copy of the example app (its manifest, static files and built
/// components; no sources, so no build recipes) with `extra` appended to
/// its manifest. Tests that serve the example use a copy: serving builds
/// stale components, and the example is shared by every test.
pub fn webapp_copy(dir: &std::path::Path, extra: &str) -> PathBuf {
    let src = std::path::Path::new(test_programs::EXAMPLE_WEBAPP);
    let app = dir.join("webapp");
    std::fs::create_dir_all(app.join("static")).unwrap();
    std::fs::create_dir_all(app.join("target/wasm32-wasip2/release")).unwrap();
    for f in ["index.html", "style.css"] {
        std::fs::copy(src.join("static").join(f), app.join("static").join(f)).unwrap();
    }
    for c in ["web", "api", "proxy"] {
        let rel = format!("target/wasm32-wasip2/release/{c}.wasm");
        std::fs::copy(src.join(&rel), app.join(&rel)).unwrap();
    }
    let manifest = std::fs::read_to_string(src.join("wasmops.toml")).unwrap();
    let mut in_recipe = false;
    let kept: String = manifest
        .lines()
        .filter(|l| {
            if l.starts_with('[') {
                in_recipe = l.ends_with(".build]");
            }
            !in_recipe
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(app.join("wasmops.toml"), kept + extra).unwrap();
    app
}

/// Kills `worker`, one of the supervisor `server`'s worker processes, and
/// waits until another took its place and the supervisor is ready again.
pub async fn kill_worker_and_wait(server: &Server, worker: u32) {
    let count = children(server.pid()).len();
    // SAFETY: a signal to a process this test's server started.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let start = Instant::now();
    loop {
        let now = children(server.pid());
        if now.len() == count
            && !now.contains(&worker)
            && get(&server.admin_url("/readyz")).await.status == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker did not come back: {now:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The child processes of `pid` (a supervisor's workers).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `component` with the function table of its first core module grown to
/// `elements` (minimum and maximum): a real program whose table is larger
/// than an instance pool's table slots.
pub fn with_table_size(component: &[u8], elements: u32) -> Vec<u8> {
    fn leb(b: &[u8], i: &mut usize) -> u32 {
        let (mut r, mut s) = (0u32, 0);
        loop {
            let x = b[*i];
            *i += 1;
            r |= u32::from(x & 0x7f) << s;
            s += 7;
            if x < 0x80 {
                return r;
            }
        }
    }
    fn put(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let x = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(x);
                return;
            }
            out.push(x | 0x80);
        }
    }
    // Rewrites the sections of a module or component (after its 8-byte
    // preamble) with `f` deciding each section's new body.
    fn sections(b: &[u8], f: &mut dyn FnMut(u8, &[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut out = b[..8].to_vec();
        let mut i = 8;
        while i < b.len() {
            let id = b[i];
            i += 1;
            let size = leb(b, &mut i) as usize;
            let body = f(id, &b[i..i + size]);
            out.push(id);
            put(&mut out, body.len() as u32);
            out.extend_from_slice(&body);
            i += size;
        }
        out
    }
    let mut done = false;
    sections(component, &mut |id, body| {
        if id != 1 || done {
            return body.to_vec();
        }
        done = true;
        sections(body, &mut |id, body| {
            if id != 4 {
                return body.to_vec();
            }
            // One table: a plain function-reference type and its limits.
            let mut i = 0;
            assert_eq!(leb(body, &mut i), 1, "one table");
            let reftype = body[i];
            let flags = body[i + 1];
            let mut out = vec![1, reftype, flags | 1];
            put(&mut out, elements);
            put(&mut out, elements);
            out
        })
    })
}
