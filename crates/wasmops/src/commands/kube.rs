//! `wasmops kube render`: the Kubernetes objects of a fleet of nodes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use wasmops_kube::{App, Autoscale, Fleet, SECRETS_ROOT, quantity};

use crate::options::{memory_size, nonzero_duration, positive};

/// Kubernetes: the manifests of a fleet of `wasmops node` pods.
#[derive(Args, Debug)]
pub struct KubeArgs {
    #[command(subcommand)]
    pub command: KubeSub,
}

#[derive(Subcommand, Debug)]
pub enum KubeSub {
    Render(RenderArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    /// A SpinKube `SpinApp` resource (YAML) for the app, pushed with
    /// `wasmops push --layout spin`, instead of a fleet of nodes.
    Spinapp,
}

/// Write the manifests of a fleet: a ConfigMap of app declarations, a
/// Deployment of node pods (every pod serves every app), a Service, a
/// HorizontalPodAutoscaler, a PodDisruptionBudget and, if asked, the
/// Namespace. Deterministic, one document per object, for `kubectl apply
/// -f -` or a GitOps repository. Nothing is sent anywhere.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The app: a reference (`HOST[:PORT]/REPO[:TAG|@DIGEST]`) to a
    /// component or app pushed with `wasmops push`, or an app directory
    /// (then --reference says where it was pushed).
    #[arg(value_name = "APP|REF", conflicts_with = "apps")]
    pub what: Option<String>,
    /// Where the app directory's artifact was pushed.
    #[arg(long, value_name = "REF")]
    pub reference: Option<String>,
    /// A directory of app declarations (`NAME.toml`, as `wasmops node
    /// --apps-dir` reads them), all put in the fleet's ConfigMap.
    #[arg(long, value_name = "DIR")]
    pub apps: Option<PathBuf>,
    /// The app's name [default: the manifest's, or the reference's last
    /// path segment].
    #[arg(long)]
    pub name: Option<String>,
    /// A host name the app answers for. Repeatable.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// A path prefix the app answers under. Repeatable.
    #[arg(long = "route", value_name = "PATH")]
    pub routes: Vec<String>,
    /// A plain (not secret) value of one of the app's variables. Secret
    /// variables come from the Secret FLEET-APP, mounted for them.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// The environment: a label on every object, and, with an app
    /// directory, the settings of its `[environments.NAME.kube]` (flags
    /// override them) and its hosts.
    #[arg(long)]
    pub env: Option<String>,
    /// Names the fleet's objects [default: wasmops].
    #[arg(long)]
    pub fleet: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    /// Also write the Namespace.
    #[arg(long)]
    pub create_namespace: bool,
    /// The node image (built from deploy/container/Containerfile).
    #[arg(long, value_name = "REF", env = "WASMOPS_NODE_IMAGE")]
    pub image: Option<String>,
    /// A fixed number of pods (without autoscaling) [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: Option<u32>,
    /// Autoscale from this many pods.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub min_replicas: Option<u32>,
    /// Autoscale up to this many pods (turns autoscaling on).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_replicas: Option<u32>,
    /// Average CPU use the autoscaler aims at, in percent of the request.
    #[arg(long, value_name = "PERCENT", default_value_t = 70)]
    pub cpu_target: u32,
    /// Also scale on requests per second per pod (served to the autoscaler
    /// by a metrics adapter from `wasmops_http_requests_total`).
    #[arg(long, value_name = "N", value_parser = positive)]
    pub requests_per_second: Option<usize>,
    /// CPU request of a pod (a Kubernetes quantity) [default: 500m].
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// Memory request of a pod [default: 512MiB].
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub memory: Option<u64>,
    /// Memory limit of a pod (the node's memory budget follows it)
    /// [default: 2GiB].
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub memory_limit: Option<u64>,
    /// How long a pod drains on SIGTERM; its grace period is 5 s longer.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = nonzero_duration)]
    pub shutdown_grace: Duration,
    /// A Secret holding the admin API's tokens file (key `tokens`).
    #[arg(long, value_name = "SECRET")]
    pub tokens_secret: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret for private registries.
    #[arg(long, value_name = "SECRET")]
    pub registry_secret: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Write to FILE instead of standard output (whole, or not at all).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &KubeArgs) -> anyhow::Result<i32> {
    match &args.command {
        KubeSub::Render(a) => render(a),
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The declaration of one app given by flags.
fn declaration(
    reference: &str,
    hosts: &[String],
    a: &RenderArgs,
    secrets_dir: Option<&str>,
) -> anyhow::Result<String> {
    let mut out = format!("reference = {}\n", quote(reference));
    if !hosts.is_empty() {
        out.push_str(&format!("hosts = {}\n", list(hosts)));
    }
    if !a.routes.is_empty() {
        out.push_str(&format!("routes = {}\n", list(&a.routes)));
    }
    if let Some(d) = secrets_dir {
        out.push_str(&format!("secrets_dir = {}\n", quote(d)));
    }
    if !a.vars.is_empty() {
        out.push_str("\n[variables]\n");
        let mut vars: Vec<(&str, &str)> = Vec::new();
        for kv in &a.vars {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--var `{kv}`: write NAME=VALUE"))?;
            vars.push((k, v));
        }
        vars.sort();
        for (k, v) in vars {
            out.push_str(&format!("{k} = {}\n", quote(v)));
        }
    }
    Ok(out)
}

/// The apps of a declarations directory, checked enough to render (the
/// nodes check the rest, and report what they cannot apply).
fn apps_from_dir(dir: &Path) -> anyhow::Result<Vec<App>> {
    let files = wasmops_node::appsdir::declaration_files(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let mut apps = Vec::new();
    for f in files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", f.display(), e.message().trim()))?;
        if !table.get("reference").is_some_and(toml::Value::is_str) {
            anyhow::bail!(
                "{}: no `reference`: give where the app was pushed (`reference = \"HOST/REPO@sha256:...\"`)",
                f.display()
            );
        }
        let secrets_dir = table
            .get("secrets_dir")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        apps.push(App {
            name,
            declaration: text,
            secrets_dir,
        });
    }
    if apps.is_empty() {
        anyhow::bail!("{}: no declarations (NAME.toml files)", dir.display());
    }
    Ok(apps)
}

/// The settings of `--env NAME` in the app's manifest, when the app is a
/// directory that declares it.
fn manifest_settings(a: &RenderArgs) -> anyhow::Result<Option<wasmops_manifest::Environment>> {
    let (Some(what), Some(env)) = (&a.what, &a.env) else {
        return Ok(None);
    };
    let path = Path::new(what);
    if !(path.is_dir() || path.extension().is_some_and(|e| e == "toml")) {
        return Ok(None);
    }
    let app = wasmops_manifest::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(app.environment(env).cloned())
}

/// The app given by the positional argument and flags.
fn app_from_args(
    what: &str,
    a: &RenderArgs,
    env: Option<&wasmops_manifest::Environment>,
) -> anyhow::Result<App> {
    let path = Path::new(what);
    let is_app = path.is_dir() || path.extension().is_some_and(|e| e == "toml");
    let kube = env.and_then(|e| e.kube.as_ref());
    let (name, reference, secret) = if is_app {
        let app = wasmops_manifest::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let reference = a
            .reference
            .clone()
            .or_else(|| kube.and_then(|k| k.reference.clone()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "an app directory needs --reference REF (or `reference` in [environments.ENV.kube]): where `wasmops push {what} REF` put it"
                )
            })?;
        let secret = app.variables.iter().any(|v| v.secret);
        for kv in &a.vars {
            let k = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            match app.variables.iter().find(|v| v.name == k) {
                None => anyhow::bail!("app `{}` declares no variable `{k}`", app.name),
                Some(v) if v.secret => anyhow::bail!(
                    "variable `{k}` is secret: put it in the Secret {}-{} (key `{k}`), not on the command line",
                    a.fleet.as_deref().unwrap_or("wasmops"),
                    a.name.as_deref().unwrap_or(&app.name)
                ),
                Some(_) => {}
            }
        }
        (app.name, reference, secret)
    } else if wasmops_oci::resolve::is_reference(what) {
        if a.reference.is_some() {
            anyhow::bail!("--reference is for an app directory; {what} is a reference already");
        }
        let last = what
            .split(['@', ':'])
            .next()
            .unwrap_or(what)
            .rsplit('/')
            .next()
            .unwrap_or(what)
            .to_string();
        (last, what.to_string(), false)
    } else {
        anyhow::bail!(
            "`{what}` is neither an app directory nor a reference: give HOST/REPO[:TAG|@DIGEST], an app directory with --reference, or --apps DIR"
        );
    };
    let name = a.name.clone().unwrap_or(name);
    let secrets_dir = secret.then(|| format!("{SECRETS_ROOT}/{name}"));
    let hosts = if a.hosts.is_empty() {
        env.map(|e| e.hosts.clone()).unwrap_or_default()
    } else {
        a.hosts.clone()
    };
    Ok(App {
        declaration: declaration(&reference, &hosts, a, secrets_dir.as_deref())?,
        name,
        secrets_dir,
    })
}

/// A SpinKube `SpinApp` for the app: its image (the reference of a
/// `push --layout spin`), the shim executor, its size (replicas, or the
/// operator's autoscaling with an HPA), pod resources, and its variables
/// (secret ones from the Secret FLEET-APP).
fn spin_app(
    a: &RenderArgs,
    env: Option<&wasmops_manifest::Environment>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use serde_json::json;
    let Some(what) = &a.what else {
        anyhow::bail!(
            "--format spinapp renders one app: give its reference, or its directory with --reference"
        );
    };
    let app = app_from_args(what, a, env)?;
    let kube = env.and_then(|e| e.kube.clone()).unwrap_or_default();
    let reference = a
        .reference
        .clone()
        .or(kube.reference.clone())
        .unwrap_or_else(|| what.clone());
    let path = Path::new(what);
    let manifest = if path.is_dir() || path.extension().is_some_and(|e| e == "toml") {
        Some(wasmops_manifest::load(path).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else {
        None
    };
    let fleet = a
        .fleet
        .clone()
        .or(kube.fleet.clone())
        .unwrap_or_else(|| "wasmops".into());
    let mut variables = Vec::new();
    for kv in &a.vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--var `{kv}`: write NAME=VALUE"))?;
        variables.push(json!({ "name": k, "value": v }));
    }
    for v in manifest
        .iter()
        .flat_map(|m| &m.variables)
        .filter(|v| v.secret)
    {
        variables.push(json!({
            "name": v.name,
            "valueFrom": { "secretKeyRef": { "name": format!("{fleet}-{}", app.name), "key": v.name } },
        }));
    }
    let mut metadata =
        json!({ "name": app.name, "labels": { "app.kubernetes.io/managed-by": "wasmops" } });
    if let Some(ns) = a.namespace.clone().or(kube.namespace.clone()) {
        metadata["namespace"] = json!(ns);
    }
    if let Some(e) = &a.env {
        metadata["labels"]["wasmops.dev/environment"] = json!(e);
    }
    let memory = a.memory.or(kube.memory).unwrap_or(128 << 20);
    let memory_limit = a.memory_limit.or(kube.memory_limit).unwrap_or(512 << 20);
    let cpu = a
        .cpu
        .clone()
        .or(kube.cpu.clone())
        .unwrap_or_else(|| "100m".into());
    let mut spec = json!({
        "image": reference,
        "executor": "containerd-shim-spin",
        "resources": {
            "requests": { "cpu": cpu, "memory": quantity(memory) },
            "limits": { "memory": quantity(memory_limit) },
        },
    });
    if !variables.is_empty() {
        spec["variables"] = json!(variables);
    }
    if let Some(s) = &a.registry_secret {
        spec["imagePullSecrets"] = json!([{ "name": s }]);
    }
    let max = a.max_replicas.or(kube.max_replicas);
    let mut objects = Vec::new();
    match max {
        None => spec["replicas"] = json!(a.replicas.or(kube.replicas).unwrap_or(2)),
        Some(max) => {
            // The operator leaves the replica count to an autoscaler.
            spec["enableAutoscaling"] = json!(true);
            let min = a.min_replicas.or(kube.min_replicas).unwrap_or(1).min(max);
            objects.push(json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": metadata.clone(),
                "spec": {
                    "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": app.name },
                    "minReplicas": min,
                    "maxReplicas": max,
                    "metrics": [{
                        "type": "Resource",
                        "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": a.cpu_target } },
                    }],
                },
            }));
        }
    }
    objects.insert(
        0,
        json!({
            "apiVersion": "core.spinkube.dev/v1alpha1",
            "kind": "SpinApp",
            "metadata": metadata,
            "spec": spec,
        }),
    );
    Ok(objects)
}

fn render(a: &RenderArgs) -> anyhow::Result<i32> {
    let env = manifest_settings(a)?;
    if a.format == Format::Spinapp {
        let objects = spin_app(a, env.as_ref())?;
        return write_out(a, &wasmops_kube::to_yaml(&objects));
    }
    let kube = env
        .as_ref()
        .and_then(|e| e.kube.clone())
        .unwrap_or_default();
    // Flags first, then the manifest's environment, then the defaults.
    // A fixed size on the command line replaces the manifest's sizing; an
    // autoscaling bound given there overrides that bound only.
    let (replicas, min_replicas, max_replicas) = if a.replicas.is_some() {
        (a.replicas, a.min_replicas, a.max_replicas)
    } else if a.min_replicas.is_some() || a.max_replicas.is_some() {
        (
            None,
            a.min_replicas.or(kube.min_replicas),
            a.max_replicas.or(kube.max_replicas),
        )
    } else {
        (kube.replicas, kube.min_replicas, kube.max_replicas)
    };
    let memory = a.memory.or(kube.memory).unwrap_or(512 << 20);
    let memory_limit = a.memory_limit.or(kube.memory_limit).unwrap_or(2 << 30);
    let apps = match (&a.what, &a.apps) {
        (Some(what), None) => vec![app_from_args(what, a, env.as_ref())?],
        (None, Some(dir)) => {
            if !a.hosts.is_empty() || !a.routes.is_empty() || !a.vars.is_empty() || a.name.is_some()
            {
                anyhow::bail!(
                    "--host, --route, --var and --name describe one app; with --apps DIR they are in the declarations"
                );
            }
            apps_from_dir(dir)?
        }
        _ => anyhow::bail!(
            "give the app (a reference, or a directory with --reference) or --apps DIR"
        ),
    };
    let autoscale = match (replicas, min_replicas, max_replicas) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => anyhow::bail!(
            "--replicas is a fixed size; --min-replicas/--max-replicas autoscale: give one or the other"
        ),
        (_, Some(_), None) => anyhow::bail!("--min-replicas needs --max-replicas"),
        (_, min, Some(max)) => Some(Autoscale {
            min: min.unwrap_or(1.min(max)).max(1),
            max,
            cpu_percent: a.cpu_target,
            requests_per_second: a.requests_per_second.map(|n| n as u32),
        }),
        _ => None,
    };
    if a.requests_per_second.is_some() && autoscale.is_none() {
        anyhow::bail!("--requests-per-second is an autoscaling target: give --max-replicas too");
    }
    if memory_limit < memory {
        anyhow::bail!(
            "--memory-limit ({}) is below --memory ({})",
            quantity(memory_limit),
            quantity(memory)
        );
    }
    let namespace = a.namespace.clone().or(kube.namespace.clone());
    if a.create_namespace && namespace.is_none() {
        anyhow::bail!("--create-namespace needs --namespace NAME");
    }
    let fleet = Fleet {
        name: a
            .fleet
            .clone()
            .or(kube.fleet.clone())
            .unwrap_or_else(|| "wasmops".into()),
        namespace,
        create_namespace: a.create_namespace,
        environment: a.env.clone(),
        image: a.image.clone().or(kube.image.clone()).unwrap_or_default(),
        replicas: replicas.unwrap_or(2),
        autoscale,
        cpu_request: a
            .cpu
            .clone()
            .or(kube.cpu.clone())
            .unwrap_or_else(|| "500m".into()),
        memory_request: quantity(memory),
        memory_limit: quantity(memory_limit),
        shutdown_grace_secs: a.shutdown_grace.as_secs().max(1),
        tokens_secret: a.tokens_secret.clone(),
        registry_secret: a.registry_secret.clone(),
        apps,
    };
    let objects = fleet.render()?;
    let text = match a.format {
        Format::Yaml | Format::Spinapp => wasmops_kube::to_yaml(&objects),
        Format::Json => wasmops_kube::to_json(&objects),
    };
    write_out(a, &text)
}

/// Writes the rendered text where `--output` says, whole or not at all.
fn write_out(a: &RenderArgs, text: &str) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => {
            // Whole or nothing: a temporary file renamed into place.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            std::fs::write(tmp.path(), text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(0)
}
