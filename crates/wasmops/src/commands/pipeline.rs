//! `wasmops pipeline`: the CI/CD pipeline of an app on this machine, stage
//! by stage, with the same commands a CI job runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use crate::options::Format;

/// Run the app's pipeline here: build → check (the policy is the gate) →
/// test → push → sign → deploy to the first environment → test there →
/// promote the same digest environment by environment up to --to, testing
/// each. It stops at the first failing stage and says which and why;
/// nothing is deployed when an earlier stage failed, and an environment
/// whose tests fail is rolled back. Environments are taken in the order the
/// manifest declares them (`[environments.staging]`, then
/// `[environments.production]`).
#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// The app: a directory holding `wasmops.toml`, or the manifest.
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    /// Deploy up to this environment (without it: build, check, test only).
    #[arg(long, value_name = "ENV")]
    pub to: Option<String>,
    /// Where to push: `HOST[:PORT]/REPO` (the tag is a timestamp).
    #[arg(long, value_name = "REPO", env = "WASMOPS_REGISTRY")]
    pub registry: Option<String>,
    /// Sign what is pushed with this key (`wasmops keygen`; its password in
    /// COSIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The policy the check stage gates on (a TOML file, as for `wasmops
    /// check --policy`) instead of the built-in default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

struct Stage {
    name: String,
    status: &'static str,
    elapsed: Duration,
    detail: String,
}

struct Runner {
    exe: PathBuf,
    /// The app's directory: every stage runs there, so `--env NAME` finds
    /// the app's environments.
    dir: PathBuf,
    stages: Vec<Stage>,
    text: bool,
    started: Instant,
}

impl Runner {
    /// Runs `wasmops ARGS`; records the stage; returns its stdout, or the
    /// last line of its output as the reason it failed.
    fn run(&mut self, name: &str, args: &[String]) -> Result<String, String> {
        if self.text {
            eprint!("{:<28} ", name);
        }
        let t = Instant::now();
        let out = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output();
        let elapsed = t.elapsed();
        let (ok, stdout, reason) = match out {
            Err(e) => (false, String::new(), format!("cannot run: {e}")),
            Ok(o) => {
                let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
                let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
                let last = |t: &str| {
                    t.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ")
                        .to_string()
                };
                let failures: Vec<&str> = stdout
                    .lines()
                    .filter(|l| l.starts_with("FAIL") || l.starts_with("      "))
                    .collect();
                let reason = if !failures.is_empty() {
                    failures
                        .join("; ")
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                } else if !last(&stderr).is_empty() {
                    last(&stderr)
                } else {
                    last(&stdout)
                };
                (o.status.success(), stdout, reason)
            }
        };
        if self.text {
            let secs = elapsed.as_secs_f64();
            if ok {
                eprintln!("ok      {secs:>7.2} s");
            } else {
                eprintln!("FAILED  {secs:>7.2} s");
                eprintln!("  {reason}");
            }
        }
        self.stages.push(Stage {
            name: name.to_string(),
            status: if ok { "ok" } else { "failed" },
            elapsed,
            detail: if ok { String::new() } else { reason.clone() },
        });
        if ok { Ok(stdout) } else { Err(reason) }
    }

    fn report(&self, app: &str, failed: Option<&str>) -> Value {
        json!({
            "app": app,
            "ok": failed.is_none(),
            "failed_stage": failed,
            "duration_ms": wasmops_units::millis(self.started.elapsed()),
            "stages": self.stages.iter().map(|s| json!({
                "stage": s.name,
                "status": s.status,
                "duration_ms": wasmops_units::millis(s.elapsed),
                "detail": s.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

pub fn run(a: &PipelineArgs) -> anyhow::Result<i32> {
    let app = wasmops_manifest::load(&a.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Which environments, in order; checked before anything runs.
    let chain: Vec<String> = match &a.to {
        None => Vec::new(),
        Some(to) => {
            if app.environments.is_empty() {
                anyhow::bail!(
                    "{}: --to {to}, but the app declares no environments; add [environments.{to}] with `node = \"https://HOST:9464\"` (and `url` for its tests)",
                    app.manifest_path.display()
                );
            }
            let at = app
                .environments
                .iter()
                .position(|e| &e.name == to)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        app.environments.iter().map(|e| e.name.as_str()).collect();
                    anyhow::anyhow!(
                        "{}: no environment `{to}`; it declares {}",
                        app.manifest_path.display(),
                        names.join(", ")
                    )
                })?;
            app.environments[..=at]
                .iter()
                .map(|e| e.name.clone())
                .collect()
        }
    };
    if !chain.is_empty() && a.registry.is_none() {
        anyhow::bail!(
            "--to needs --registry HOST/REPO (or WASMOPS_REGISTRY): where the app is pushed"
        );
    }
    let mut r = Runner {
        exe: std::env::current_exe().context("cannot find the wasmops binary")?,
        dir: app.dir.clone(),
        stages: Vec::new(),
        text: matches!(a.format, Format::Text),
        started: Instant::now(),
    };
    let app_arg = app.dir.display().to_string();
    // The stages run in the app's directory: a relative policy path is
    // taken from here.
    let policy = match &a.policy {
        Some(p) if !p.is_file() => {
            anyhow::bail!("--policy {}: no such file", p.display())
        }
        Some(p) => Some(
            std::path::absolute(p)
                .with_context(|| format!("--policy {}", p.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let result = (|| -> Result<(), String> {
        r.run("build", &s(&["build", &app_arg]))?;
        let mut check = s(&["check", &app_arg]);
        if let Some(p) = &policy {
            check.extend(["--policy".to_string(), p.clone()]);
        }
        r.run("check", &check)?;
        if !app.tests.is_empty() {
            r.run("test", &s(&["test", &app_arg]))?;
        }
        let Some(first) = chain.first() else {
            return Ok(());
        };
        let registry = a.registry.clone().unwrap_or_default();
        let tag = wasmops_units::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        )
        .replace([':', '-'], "")
        .to_ascii_lowercase();
        let pushed = r.run(
            "push",
            &s(&[
                "push",
                &app_arg,
                &format!("{registry}:{tag}"),
                "--format",
                "json",
            ]),
        )?;
        let digest = serde_json::from_str::<Value>(&pushed)
            .ok()
            .and_then(|v| v["digest"].as_str().map(str::to_string))
            .ok_or_else(|| "push gave no digest".to_string())?;
        let reference = format!("{registry}@{digest}");
        if let Some(key) = &a.key {
            r.run(
                "sign",
                &s(&["sign", &reference, "--key", &key.display().to_string()]),
            )?;
        }
        r.run(
            &format!("deploy {first}"),
            &s(&[
                "deploy", &reference, "--env", first, "--name", &app.name, "--format", "json",
            ]),
        )?;
        let tested = |r: &mut Runner, env: &str| -> Result<(), String> {
            if app.tests.is_empty() {
                return Ok(());
            }
            if let Err(why) = r.run(
                &format!("test {env}"),
                &s(&["test", &app_arg, "--env", env]),
            ) {
                let _ = r.run(
                    &format!("rollback {env}"),
                    &s(&["apps", "rollback", &app.name, "--env", env]),
                );
                return Err(why);
            }
            Ok(())
        };
        tested(&mut r, first)?;
        for pair in chain.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            r.run(
                &format!("promote {from} → {to}"),
                &s(&["promote", from, to, "--app", &app.name]),
            )?;
            tested(&mut r, to)?;
        }
        Ok(())
    })();
    let failed = result.as_ref().err().and_then(|_| {
        r.stages
            .iter()
            .rev()
            .find(|s| s.status == "failed")
            .map(|s| s.name.clone())
    });
    match a.format {
        Format::Json => println!("{}", r.report(&app.name, failed.as_deref())),
        Format::Text => {
            let total = r.started.elapsed().as_secs_f64();
            match (&result, &failed) {
                (Ok(()), _) => eprintln!("pipeline of `{}` passed in {total:.2} s", app.name),
                (Err(why), Some(stage)) => {
                    eprintln!("pipeline of `{}` stopped at `{stage}`: {why}", app.name)
                }
                (Err(why), None) => eprintln!("pipeline of `{}` stopped: {why}", app.name),
            }
        }
    }
    Ok(if result.is_ok() { 0 } else { 1 })
}
