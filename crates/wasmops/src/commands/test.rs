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
use wasmops_manifest::{App, SmokeTest};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
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
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The outcome of one test.
struct Outcome {
    name: String,
    failures: Vec<String>,
    elapsed: Duration,
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
        failures,
        elapsed: started.elapsed(),
    }
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

/// A JUnit XML report.
fn junit(app: &str, outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let total: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total:.3}\">\n",
        outcomes.len(),
        xml(app),
        outcomes.len()
    );
    for o in outcomes {
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(app),
            xml(&o.name),
            o.elapsed.as_secs_f64()
        ));
        if o.failures.is_empty() {
            out.push_str("/>\n");
        } else {
            out.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(&o.failures[0]),
                xml(&o.failures.join("\n"))
            ));
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
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
    let app = wasmops_manifest::load(&a.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    if app.tests.is_empty() {
        anyhow::bail!(
            "{}: the app declares no smoke tests; add one: [[test]] with `path = \"/\"` (and [test.expect] `status = 200`)",
            app.manifest_path.display()
        );
    }
    let (url, host) = target(a, &app)?;
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
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let mut v = Vec::new();
        for t in &app.tests {
            v.push(run_one(&client, &base, host.as_deref(), t).await);
        }
        v
    });
    drop(served);
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    if let Some(path) = &a.junit {
        std::fs::write(path, junit(&app.name, &outcomes))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match a.format {
        Format::Json => {
            let tests: Vec<Value> = outcomes
                .iter()
                .map(|o| {
                    json!({
                        "name": o.name,
                        "passed": o.failures.is_empty(),
                        "duration_ms": wasmops_units::millis(o.elapsed),
                        "failures": o.failures,
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "app": app.name,
                    "target": base,
                    "passed": outcomes.len() - failed,
                    "failed": failed,
                    "tests": tests,
                })
            );
        }
        Format::Text => {
            for o in &outcomes {
                let ms = wasmops_units::millis(o.elapsed);
                if o.failures.is_empty() {
                    println!("ok    {} ({ms} ms)", o.name);
                } else {
                    println!("FAIL  {} ({ms} ms)", o.name);
                    for f in &o.failures {
                        println!("      {f}");
                    }
                }
            }
            println!(
                "\n{} passed, {failed} failed ({} at {base})",
                outcomes.len() - failed,
                app.name
            );
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
