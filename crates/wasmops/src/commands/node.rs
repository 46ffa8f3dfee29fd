//! `wasmops node`: run a node (many apps in one process, loaded on first
//! request, with the admin API); `wasmops node token`: make an admin token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use wasmops_node::auth::{self, Scope, TokenFile};
use wasmops_node::{AppDefaults, Node, NodeConfig};
use wasmops_runtime::{EngineSettings, Runtime};
use wasmops_server::hosting;
use wasmops_telemetry::{AppDetail, Metrics};

use crate::options::{LimitArgs, ServerArgs, nonzero_duration, nonzero_size, positive};

/// Run a node: one long-running process serving many apps, each deployed
/// under a name (with `wasmops deploy` or the admin API) and reached by host
/// name and/or path prefix. Apps are compiled when deployed, loaded on their
/// first request and unloaded when idle; deployments survive restarts.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: Option<NodeSub>,
    #[command(flatten)]
    pub run: NodeRunArgs,
}

#[derive(Subcommand, Debug)]
pub enum NodeSub {
    /// Make an admin token: prints the token (keep it secret) and adds its
    /// hash to the tokens file.
    Token(TokenArgs),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// What the token may do: `read` (list, status) or `deploy` (also
    /// deploy, roll back, delete).
    #[arg(long, default_value = "deploy", value_parser = parse_scope)]
    pub scope: Scope,
    /// A name for the token, recorded as who deployed.
    #[arg(long, default_value = "admin")]
    pub name: String,
    /// The tokens file to add the token's hash to (created with mode 0600).
    #[arg(long, value_name = "FILE", env = "WASMOPS_NODE_TOKENS_FILE")]
    pub tokens_file: PathBuf,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| format!("unknown scope `{s}`: use read or deploy"))
}

#[derive(Args, Debug)]
pub struct NodeRunArgs {
    /// Where the node keeps its state (deployments, components, compiled
    /// code).
    #[arg(
        long,
        value_name = "DIR",
        env = "WASMOPS_NODE_DATA_DIR",
        default_value = ".wasmops-node"
    )]
    pub data_dir: PathBuf,
    /// The admin API's tokens: lines `SCOPE sha256:HEX NAME` (see `wasmops
    /// node token`), read again when the file changes, so tokens are added
    /// and revoked without a restart. Without it, the API refuses every
    /// request.
    #[arg(long, value_name = "FILE", env = "WASMOPS_NODE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Also take apps from this directory of declarations (`NAME.toml`
    /// each; the shape of a mounted ConfigMap, kubelet's `..data` swaps
    /// included): new and changed ones are deployed, removed ones deleted.
    /// Apps deployed through the admin API are left alone.
    #[arg(long, value_name = "DIR", env = "WASMOPS_NODE_APPS_DIR")]
    pub apps_dir: Option<PathBuf>,
    /// How often the apps directory is looked at.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = nonzero_duration)]
    pub apps_dir_interval: Duration,
    /// Unload an app that served nothing for this long.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = nonzero_duration)]
    pub idle_unload: Duration,
    /// Apps loaded at once, at most (least recently used first out).
    #[arg(long, value_name = "N", default_value = "2000", value_parser = positive)]
    pub max_loaded: usize,
    /// Compiled code of the loaded apps, at most (least recently used
    /// first out). A hello-world in Rust maps ~0.2 MiB, a JavaScript or
    /// Python app 10-40 MiB.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = nonzero_size)]
    pub max_loaded_code: u64,
    /// Pool slots of the whole node. Apps with little initial data take any
    /// free slot; the others' slots keep the app they last ran (its memory
    /// image stays mapped), so as many slots as such apps busy at once keeps
    /// traffic spread over them cheap. Instances running at once are
    /// bounded by the memory budget, not by this.
    #[arg(long, value_name = "N", default_value = "1000", value_parser = positive)]
    pub max_instances: usize,
    /// Requests one app handles at once, unless its deployment says.
    #[arg(long, value_name = "N", default_value = "64", value_parser = positive)]
    pub app_concurrency: usize,
    /// Requests waiting for an instance, per app; beyond, 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_queue: usize,
    /// Time limit of one request, unless the deployment says.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = nonzero_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Serve the admin API over TLS with this PEM certificate (chain).
    #[arg(long, value_name = "FILE", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of --admin-tls-cert.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// Largest component accepted by upload.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = nonzero_size)]
    pub max_upload: u64,
    /// Series each app gets in `/metrics`. `requests`: requests, durations,
    /// guest failures and instances in use per app (about 25 series for a
    /// healthy app), instantiation times and memory high-water marks for
    /// the whole node; `all`: those two per app as well (about 70).
    #[arg(long, value_enum, value_name = "DETAIL", default_value = "requests")]
    pub app_metrics: AppMetrics,
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AppMetrics {
    Requests,
    All,
}

pub fn run(args: &NodeArgs) -> anyhow::Result<i32> {
    match &args.command {
        Some(NodeSub::Token(t)) => token(t),
        None => serve(&args.run),
    }
}

fn token(args: &TokenArgs) -> anyhow::Result<i32> {
    if args.name.is_empty() || args.name.chars().any(char::is_whitespace) {
        anyhow::bail!("--name must be one word, e.g. `ci`");
    }
    if args.name == wasmops_node::appsdir::OWNER {
        anyhow::bail!(
            "--name {} is what the node records for the apps directory's changes: choose another",
            args.name
        );
    }
    let token = auth::generate().map_err(anyhow::Error::msg)?;
    let line = auth::line(&token, args.scope, &args.name);
    if let Some(dir) = args
        .tokens_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&args.tokens_file)
            .with_context(|| format!("cannot open {}", args.tokens_file.display()))?;
        writeln!(f, "{line}")
            .with_context(|| format!("cannot write {}", args.tokens_file.display()))?;
    }
    eprintln!(
        "added a {} token named `{}` to {} (only its hash is stored); the token:",
        args.scope.name(),
        args.name,
        args.tokens_file.display()
    );
    println!("{token}");
    Ok(0)
}

fn serve(args: &NodeRunArgs) -> anyhow::Result<i32> {
    if args.server.workers.is_some_and(|n| n > 1) {
        anyhow::bail!(
            "--workers: the node keeps its apps, deploy state and admin API in one process; drop the flag (run several nodes behind a load balancer to use more processes)"
        );
    }
    let tokens = match &args.tokens_file {
        Some(f) => TokenFile::open(f).map_err(anyhow::Error::msg)?,
        None => {
            tracing::warn!(
                "no --tokens-file: the admin API refuses every change until the node is started with one"
            );
            TokenFile::none()
        }
    };
    let tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
        (Some(cert), Some(key)) => {
            Some(wasmops_server::Tls::from_pem_files(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let budget = args.server.memory_budget(None, args.limits.max_memory)?;
    let mut settings = EngineSettings::default();
    args.server.engine.apply(&mut settings);
    if args.server.engine.cache_dir.is_none() && !args.server.engine.no_cache {
        settings.cache_dir = Some(args.data_dir.join("cache"));
    }
    settings.pooling = args.server.pool.allocator;
    settings.max_memory = args.limits.max_memory;
    settings.memory_keep_resident = args.server.pool.memory_keep_resident as usize;
    // Every memory slot may stay warm with its app: a slot that runs
    // another app must be re-imaged (mmap, then page faults). wasmtime
    // shards the pool per core and keeps a slot warm for the app that last
    // ran in it, so with traffic on every core each app wants a warm slot
    // in every shard; with only `max_instances` warm slots, split between
    // two shards, traffic spread over 1,000 apps re-imaged a slot on most
    // requests (bench/node.sh: 0.42 of one app's requests/s, 0.6 after).
    // Running instances are bounded by the memory budget, which reserves
    // each one's limit.
    settings.max_instances = u32::try_from(args.max_instances).unwrap_or(u32::MAX).max(1);
    settings.warm_slots = args.server.pool.warm_slots.max(settings.memory_slots());
    // A signature policy whose key cannot be read would refuse every
    // reference deploy: refused at the start instead.
    if let Some(key) = &args.source.verify_key {
        wasmops_oci::resolve::load_public_key(key)
            .with_context(|| format!("--verify-key {}", key.display()))?;
    }
    let rt = Arc::new(Runtime::new(settings).context("cannot create the WebAssembly engine")?);
    let metrics = Arc::new(Metrics::with_detail(match args.app_metrics {
        AppMetrics::Requests => AppDetail::Requests,
        AppMetrics::All => AppDetail::All,
    }));
    let metrics_on = args.server.admin().is_some();
    let config = NodeConfig {
        data_dir: args.data_dir.clone(),
        idle_unload: args.idle_unload,
        max_loaded: args.max_loaded,
        max_loaded_code: args.max_loaded_code,
        app_defaults: AppDefaults {
            memory: args.limits.max_memory,
            timeout: args.timeout,
            concurrency: args.app_concurrency,
        },
        max_queue: args.max_queue,
        max_body: args.server.max_body,
        body_timeout: args.server.body_timeout,
        debug_errors: args.server.debug_errors,
        policy: args.source.policy(),
        max_upload: args.max_upload,
    };
    let tokio = hosting::tokio_runtime(args.server.threads)?;
    let _enter = tokio.enter();
    let node = Node::open(rt, config, budget, metrics.clone(), metrics_on)?;
    let admin = wasmops_node::api::Admin {
        node: node.clone(),
        tokens: Arc::new(tokens),
    };
    tokio.block_on(async {
        node.spawn_sweeper();
        if let Some(dir) = &args.apps_dir {
            node.spawn_apps_dir(dir.clone(), args.apps_dir_interval, Duration::from_secs(10));
        }
        {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.warm());
        }
        let admin_task = match args.server.admin() {
            Some(addr) => {
                let listener = wasmops_server::bind(addr).map_err(|e| {
                    anyhow::anyhow!(
                        "{e} (the admin API's address: set it with --admin-listen ADDR)"
                    )
                })?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                eprintln!("wasmops: admin on {scheme}://{}/", listener.local_addr()?);
                let admin = admin.clone();
                Some(tokio::spawn(wasmops_server::serve_with(
                    listener,
                    tls.clone(),
                    move |req| {
                        let admin = admin.clone();
                        async move { admin.handle(req).await }
                    },
                    wasmops_server::ServeOptions {
                        shutdown_grace: Duration::from_secs(5),
                        secondary: true,
                        ..wasmops_server::ServeOptions::default()
                    },
                    wasmops_server::shutdown_signal(),
                )))
            }
            None => None,
        };
        let listener = wasmops_server::bind(args.server.listen)
            .map_err(|e| anyhow::anyhow!("{e} (the apps' address: set it with --listen ADDR)"))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            data_dir = %args.data_dir.display(),
            apps = node.table_len(),
            memory_budget = node.budget().bytes(),
            "node serving on http://{addr}/"
        );
        eprintln!("wasmops: serving http://{addr}/");
        let h = node.clone();
        let summary = wasmops_server::serve(
            listener,
            move |req| {
                let h = h.clone();
                async move { h.handle(req).await }
            },
            wasmops_server::ServeOptions {
                shutdown_grace: args.server.shutdown_grace,
                ..wasmops_server::ServeOptions::default()
            },
            wasmops_server::shutdown_signal(),
        )
        .await?;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        tracing::info!(
            connections = summary.connections,
            abandoned = summary.abandoned,
            "stopped"
        );
        anyhow::Ok(())
    })?;
    Ok(0)
}
