//! The node's client commands: `wasmops deploy`, `wasmops apps
//! list|status|rollback|delete` and `wasmops promote`. A node is named
//! directly (`--node URL`) or through an environment (`--env NAME`) from
//! the user's environments file; the token comes from `WASMOPS_TOKEN` or
//! the credentials file (mode 0600), never from a manifest or a flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::options::{memory_size, nonzero_duration, positive};

/// Which node to talk to.
#[derive(Args, Debug, Clone, Default)]
pub struct NodeTarget {
    /// The node's admin URL, e.g. `http://127.0.0.1:9464`.
    #[arg(long, value_name = "URL", env = "WASMOPS_NODE", conflicts_with = "env")]
    pub node: Option<String>,
    /// An environment named in the app's manifest (`[environments.NAME]
    /// node = "URL"`) or in the environments file
    /// (`$XDG_CONFIG_HOME/wasmops/environments.toml`: `[NAME] node = "URL"`).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// A PEM certificate authority to trust for the node's TLS (besides the
    /// system's) [default: the environment's `ca`].
    #[arg(long, value_name = "FILE", env = "WASMOPS_NODE_CA")]
    pub ca: Option<PathBuf>,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
}

/// Deploy to a node: an app directory or manifest (uploaded whole as an
/// app bundle: its components, files, routes, variables and key-value
/// stores), a `.wasm` component (uploaded), or a reference to either
/// (pulled by the node under its signature policy, and pinned to the digest
/// it resolved).
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// What to deploy: FILE.wasm, an app directory or manifest, or a
    /// reference (`HOST[:PORT]/REPO[:TAG]`).
    #[arg(value_name = "APP|REF|FILE", default_value = ".")]
    pub what: String,
    /// The app's name on the node [default: the app's name, or the file's
    /// stem].
    #[arg(long)]
    pub name: Option<String>,
    /// A host name the app answers for (`Host` header; `*.example.com`
    /// allowed). Repeatable.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// A path prefix the app answers under. Repeatable [default: for an
    /// app, the prefixes of its routes; for a component, `/`].
    #[arg(long = "route", value_name = "PATH")]
    pub routes: Vec<String>,
    /// A value of one of the app's `[variables]` (`NAME=VALUE`). Repeatable.
    /// Variables not given keep the value the app has on the node.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// An environment variable of the app's instances (`K=V`). Repeatable.
    #[arg(long = "app-env", value_name = "K=V")]
    pub app_env: Vec<String>,
    /// Linear memory of one instance.
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub memory: Option<u64>,
    /// Time limit of one request.
    #[arg(long, value_name = "DURATION", value_parser = nonzero_duration)]
    pub timeout: Option<Duration>,
    /// Requests the app handles at once.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub target: NodeTarget,
}

/// List, inspect, roll back or delete the apps of a node.
#[derive(Args, Debug)]
pub struct AppsArgs {
    #[command(subcommand)]
    pub command: AppsSub,
}

#[derive(Subcommand, Debug)]
pub enum AppsSub {
    /// Every app with its version, digest and state.
    List(NodeTarget),
    /// One app: its versions, history, requests and last error.
    Status {
        name: String,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Make the previous (or a named) version current again.
    Rollback {
        name: String,
        /// The version to go back to [default: the one before the current].
        #[arg(long)]
        to: Option<i64>,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Remove an app from the node.
    Delete {
        name: String,
        #[command(flatten)]
        target: NodeTarget,
    },
}

/// Deploy to environment TO exactly what runs in FROM: the same component
/// digest with the same hosts, routes and limits.
#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The environment (or node URL) the app runs in now.
    pub from: String,
    /// The environment (or node URL) to deploy it to.
    pub to: String,
    /// The app.
    #[arg(long)]
    pub app: String,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
}

fn config_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".config")
        })
        .join("wasmops")
}

/// The app manifest an environment may be named in: the app being
/// deployed, else `./wasmops.toml` when there is one.
fn manifest_for(app: Option<&Path>) -> anyhow::Result<Option<wasmops_manifest::App>> {
    let path = match app {
        Some(p) if p.is_dir() || p.extension().is_some_and(|e| e == "toml") => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let manifest = if path.is_dir() {
        wasmops_manifest::manifest_in(&path).unwrap_or_else(|| path.join("wasmops.toml"))
    } else {
        path.clone()
    };
    if !manifest.is_file() {
        return Ok(None);
    }
    wasmops_manifest::load(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The URL of an environment, and the CA it names (if any): from the app's
/// manifest (`[environments.NAME] node = "URL"`), else from the user's
/// environments file.
/// The node an environment names, in the app's manifest or the user's
/// `environments.toml`; `or` says what else the user may write instead.
fn environment(
    name: &str,
    app: Option<&Path>,
    or: &str,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(m) = manifest_for(app)?
        && let Some(env) = m.environment(name)
    {
        let url = env.node.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: environment `{name}` names no node; add `node = \"https://HOST:PORT\"` to [environments.{name}]",
                m.manifest_path.display()
            )
        })?;
        return Ok((url, env.ca.clone()));
    }
    let path = config_dir().join("environments.toml");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow::anyhow!(
            "no environment `{name}`: neither the app's manifest ([environments.{name}]) nor {} names it; add it to either, or {or}",
            path.display()
        )
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let env = table.get(name);
    let url = env
        .and_then(|e| e.get("node"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no environment `{name}` in {}: add `[{name}]` with `node = \"http://HOST:PORT\"`",
                path.display()
            )
        })?;
    let ca = env
        .and_then(|e| e.get("ca"))
        .and_then(|c| c.as_str())
        .map(PathBuf::from);
    Ok((url, ca))
}

/// The node (URL and CA to trust) a target names.
fn node_url(t: &NodeTarget, app: Option<&Path>) -> anyhow::Result<(String, Option<PathBuf>)> {
    let (url, ca) = match (&t.node, &t.env) {
        (Some(u), _) => (u.clone(), None),
        (None, Some(e)) => environment(e, app, "give --node URL")?,
        (None, None) => anyhow::bail!("which node? give --node URL or --env NAME"),
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        anyhow::bail!(
            "the node `{url}` is not a URL: write it as http://HOST:PORT (or https:// with --ca), the node's admin listener"
        );
    }
    Ok((url.trim_end_matches('/').to_string(), t.ca.clone().or(ca)))
}

/// An environment name or a URL (its CA from `WASMOPS_NODE_CA`).
fn url_of(s: &str) -> anyhow::Result<(String, Option<PathBuf>)> {
    if s.starts_with("http://") || s.starts_with("https://") {
        let ca = std::env::var_os("WASMOPS_NODE_CA").map(PathBuf::from);
        Ok((s.trim_end_matches('/').to_string(), ca))
    } else {
        let (url, ca) = environment(
            s,
            None,
            "write the node's URL (http://HOST:PORT) in its place",
        )?;
        Ok((url.trim_end_matches('/').to_string(), ca))
    }
}

/// The token for `url`: `WASMOPS_TOKEN`, else the credentials file
/// (`[nodes."URL"] token = "..."`), which must not be readable by others.
fn token_for(url: &str) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("WASMOPS_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let path = config_dir().join("credentials.toml");
    credentials_token(&path, url)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no token for {url}: set WASMOPS_TOKEN, or add `[nodes.\"{url}\"]` with `token = \"...\"` to {} (mode 0600)",
            path.display()
        )
    })
}

fn credentials_token(path: &Path, url: &str) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "{} holds tokens but others may read it; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    Ok(table
        .get("nodes")
        .and_then(|n| n.get(url))
        .and_then(|n| n.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_string))
}

/// A client for one node.
struct Client {
    url: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new((url, ca): (String, Option<PathBuf>)) -> anyhow::Result<Self> {
        let token = token_for(&url)?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600));
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().context("cannot make an HTTP client")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Self {
            url,
            token,
            http,
            rt,
        })
    }

    /// Sends a request; a JSON error from the node becomes this error.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let bytes = self.call_raw(method, path, body)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}{path}: not JSON: {e}", self.url))
    }

    fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Vec<u8>> {
        let (status, bytes) = self.send(method, path, body)?;
        if !status.is_success() {
            return Err(self.refusal(status, &bytes));
        }
        Ok(bytes)
    }

    /// The error of a call the node answered with `status`.
    fn refusal(&self, status: reqwest::StatusCode, bytes: &[u8]) -> anyhow::Error {
        let msg = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_string());
        anyhow::anyhow!(
            "the node at {} answered {}: {msg}",
            self.url,
            status.as_u16()
        )
    }

    /// The spec of app `name`'s current version, `None` when the node has
    /// no such app.
    fn current_spec(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let (status, bytes) = self.send(reqwest::Method::GET, &app_path(name)?, None)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refusal(status, &bytes));
        }
        let app: Value = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", self.url))?;
        let current = app["version"].as_i64();
        Ok(app["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["version"].as_i64() == current))
            .map(|v| v["spec"].clone()))
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
        let url = format!("{}{path}", self.url);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Blob(b)) => {
                let media = if wasmops_oci::app::is_tar(&b) {
                    "application/x-tar"
                } else {
                    "application/wasm"
                };
                req.header("content-type", media).body(b)
            }
            None => req,
        };
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| {
                let mut why = e.to_string();
                let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                anyhow::anyhow!("cannot reach the node at {}: {why}", self.url)
            })?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            Ok((status, bytes.to_vec()))
        })
    }
}

enum Body {
    Json(Value),
    /// A component or an app bundle.
    Blob(Vec<u8>),
}

/// What a deploy sends besides the component.
fn spec_json(a: &DeployArgs, routes: &[String], hosts: &[String]) -> anyhow::Result<Value> {
    let mut env = BTreeMap::new();
    for kv in &a.app_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--app-env `{kv}`: write K=V"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut vars = BTreeMap::new();
    for kv in &a.vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--var `{kv}`: write NAME=VALUE"))?;
        vars.insert(k.to_string(), v.to_string());
    }
    let mut spec = json!({ "hosts": hosts, "routes": routes });
    if !env.is_empty() {
        spec["env"] = json!(env);
    }
    if !vars.is_empty() {
        spec["variables"] = json!(vars);
    }
    if let Some(m) = a.memory {
        spec["memory"] = json!(m);
    }
    if let Some(t) = a.timeout {
        spec["timeout_ms"] = json!(t.as_millis() as u64);
    }
    if let Some(c) = a.concurrency {
        spec["concurrency"] = json!(c);
    }
    Ok(spec)
}

fn print_version(v: &Value, app: &str, what: &str, json_out: bool) {
    if json_out {
        println!("{v}");
    } else {
        println!(
            "{what} {app} version {} ({})",
            v["version"],
            v["digest"].as_str().unwrap_or("")
        );
    }
}

pub fn deploy(a: &DeployArgs) -> anyhow::Result<i32> {
    if let Some(name) = &a.name {
        app_path(name)?;
    }
    let url = node_url(&a.target, Some(Path::new(&a.what)))?;
    let client = Client::new(url)?;
    let routes = a.routes.clone();
    // Hosts: the flags, else the environment's in the app's manifest.
    let mut hosts = a.hosts.clone();
    if hosts.is_empty()
        && let Some(env) = &a.target.env
        && let Some(m) = manifest_for(Some(Path::new(&a.what)))?
        && let Some(e) = m.environment(env)
    {
        hosts = e.hosts.clone();
    }
    let (name, mut body) = if wasmops_oci::resolve::is_reference(&a.what) {
        let name = a.name.clone().ok_or_else(|| {
            anyhow::anyhow!("deploying a reference needs --name NAME (the app's name on the node)")
        })?;
        (name, json!({ "reference": a.what }))
    } else {
        let path = Path::new(&a.what);
        let (default_name, blob) = if path.is_dir() || path.extension().is_some_and(|e| e == "toml")
        {
            // The whole app, as the node will unpack it.
            let input = crate::artifact::app_input(path, &crate::sources::SourceArgs::default())?;
            let bundle = wasmops_oci::app::app_bundle(&input)?;
            (input.name, bundle)
        } else {
            let wasm =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
                .unwrap_or_else(|| "app".into());
            (stem, wasm)
        };
        if a.name.is_none() {
            app_path(&default_name)
                .map_err(|e| anyhow::anyhow!("{e:#}; the name comes from {}", path.display()))?;
        }
        let uploaded = client.call(reqwest::Method::POST, "/v1/blobs", Some(Body::Blob(blob)))?;
        let digest = uploaded["digest"].as_str().unwrap_or_default().to_string();
        (
            a.name.clone().unwrap_or(default_name),
            json!({ "digest": digest }),
        )
    };
    // A new version keeps the host names and routes of the one it
    // replaces unless it is given its own: a redeploy of a new build must
    // not widen a host-scoped app to every host.
    let (mut hosts, mut routes) = (hosts, routes);
    if hosts.is_empty()
        && routes.is_empty()
        && let Some(current) = client.current_spec(&name)?
    {
        let list = |k: &str| -> Vec<String> {
            current[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        hosts = list("hosts");
        routes = list("routes");
    }
    let spec = spec_json(a, &routes, &hosts)?;
    if let (Some(b), Some(s)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(s.clone());
    }
    let v = client.call(
        reqwest::Method::PUT,
        &app_path(&name)?,
        Some(Body::Json(body)),
    )?;
    print_version(&v, &name, "deployed", a.target.format.json());
    Ok(0)
}

/// The API path of app `name`, refused unless `name` is an app name (so
/// that nothing in it can point the request at another path).
fn app_path(name: &str) -> anyhow::Result<String> {
    if !wasmops_node::valid_name(name) {
        anyhow::bail!(
            "`{name}` is not an app name: lowercase letters, digits and `-`, starting with a letter, at most 63 characters (give one with --name)"
        );
    }
    Ok(format!("/v1/apps/{name}"))
}

pub fn apps(a: &AppsArgs) -> anyhow::Result<i32> {
    match &a.command {
        AppsSub::List(t) => {
            let client = Client::new(node_url(t, None)?)?;
            let v = client.call(reqwest::Method::GET, "/v1/apps", None)?;
            if t.format.json() {
                println!("{v}");
                return Ok(0);
            }
            let apps = v["apps"].as_array().cloned().unwrap_or_default();
            if apps.is_empty() {
                println!("no apps");
            }
            for app in apps {
                println!(
                    "{:<24} v{:<4} {} {} {}",
                    app["name"].as_str().unwrap_or(""),
                    app["version"],
                    &app["digest"].as_str().unwrap_or("")
                        [..19.min(app["digest"].as_str().unwrap_or("").len())],
                    if app["loaded"].as_bool() == Some(true) {
                        "loaded  "
                    } else {
                        "unloaded"
                    },
                    app["requests"]
                );
            }
        }
        AppsSub::Status { name, target } => {
            let client = Client::new(node_url(target, None)?)?;
            let v = client.call(reqwest::Method::GET, &app_path(name)?, None)?;
            if target.format.json() {
                println!("{v}");
                return Ok(0);
            }
            println!("app:        {}", v["name"].as_str().unwrap_or(""));
            println!(
                "version:    {} ({})",
                v["version"],
                v["digest"].as_str().unwrap_or("")
            );
            println!("source:     {}", v["source"].as_str().unwrap_or(""));
            println!(
                "deployed:   {} by {}",
                v["deployed_at"].as_str().unwrap_or(""),
                v["deployed_by"].as_str().unwrap_or("")
            );
            println!("hosts:      {}", v["hosts"]);
            println!("routes:     {}", v["routes"]);
            println!("loaded:     {}", v["loaded"]);
            println!("requests:   {}", v["requests"]);
            if let Some(e) = v["last_error"].as_str() {
                match v["last_error_at"].as_str() {
                    Some(at) => println!("last error: {e} ({at})"),
                    None => println!("last error: {e}"),
                }
            }
            for h in v["history"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  {} {} v{} by {}",
                    h["at"].as_str().unwrap_or(""),
                    h["action"].as_str().unwrap_or(""),
                    h["version"],
                    h["by"].as_str().unwrap_or("")
                );
            }
        }
        AppsSub::Rollback { name, to, target } => {
            let client = Client::new(node_url(target, None)?)?;
            let body = match to {
                Some(v) => json!({ "version": v }),
                None => json!({}),
            };
            let v = client.call(
                reqwest::Method::POST,
                &format!("{}/rollback", app_path(name)?),
                Some(Body::Json(body)),
            )?;
            print_version(&v, name, "rolled back", target.format.json());
        }
        AppsSub::Delete { name, target } => {
            let client = Client::new(node_url(target, None)?)?;
            let v = client.call(reqwest::Method::DELETE, &app_path(name)?, None)?;
            if target.format.json() {
                println!("{v}");
            } else {
                println!("deleted {name}");
            }
        }
    }
    Ok(0)
}

pub fn promote(a: &PromoteArgs) -> anyhow::Result<i32> {
    if a.from.trim_end_matches('/') == a.to.trim_end_matches('/') {
        anyhow::bail!(
            "promote from `{}` to itself: promotion deploys what runs in one environment to another; name two",
            a.from
        );
    }
    let from = Client::new(url_of(&a.from)?)?;
    let to = Client::new(url_of(&a.to)?)?;
    let app = from.call(reqwest::Method::GET, &app_path(&a.app)?, None)?;
    let digest = app["digest"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the node at {} gave no digest for `{}`", from.url, a.app))?
        .to_string();
    let current = app["version"].as_i64().unwrap_or_default();
    let mut spec = app["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["version"].as_i64() == Some(current)))
        .map(|v| v["spec"].clone())
        .ok_or_else(|| anyhow::anyhow!("the node at {} gave no spec for `{}`", from.url, a.app))?;
    // Variables are the environment's own (the node shows only their
    // names): the app keeps the values it has in TO.
    if let Some(s) = spec.as_object_mut() {
        s.remove("variables");
    }
    // Host names are the environment's when the app's manifest gives TO
    // its own (`[environments.production] hosts`), as `deploy --env` does:
    // production must not answer staging's names.
    if !a.to.starts_with("http://")
        && !a.to.starts_with("https://")
        && let Some(m) = manifest_for(None)?
        && let Some(e) = m.environment(&a.to)
        && !e.hosts.is_empty()
    {
        spec["hosts"] = json!(e.hosts);
    }
    // The exact component: the blob itself, checked against its digest.
    let wasm = from.call_raw(reqwest::Method::GET, &format!("/v1/blobs/{digest}"), None)?;
    let got = {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(&wasm))
    };
    if got != digest {
        anyhow::bail!(
            "the component fetched from {} is {got}, not {digest}; nothing was deployed",
            from.url
        );
    }
    let uploaded = to.call(reqwest::Method::POST, "/v1/blobs", Some(Body::Blob(wasm)))?;
    if uploaded["digest"].as_str() != Some(digest.as_str()) {
        anyhow::bail!(
            "{} stored the component under another digest; nothing was deployed",
            to.url
        );
    }
    let mut body = json!({ "digest": digest });
    if let (Some(b), Some(s)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(s.clone());
    }
    let v = to.call(
        reqwest::Method::PUT,
        &app_path(&a.app)?,
        Some(Body::Json(body)),
    )?;
    if a.format.json() {
        println!("{v}");
    } else {
        println!(
            "promoted {} {} ({digest}) from {} to {} as version {}",
            a.app, current, a.from, a.to, v["version"]
        );
    }
    Ok(0)
}
