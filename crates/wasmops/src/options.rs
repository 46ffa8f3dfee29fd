//! Option groups shared by several commands; each fills one library struct.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use wasmops_runtime::grants::AddrRule;
use wasmops_runtime::{
    DirGrant, EngineSettings, Grants, Limits, NetGrant, OutboundRule, PoolingChoice,
};
use wasmops_units::parse_size;

/// Capabilities given to the guest. Nothing is granted by default.
#[derive(Args, Debug, Clone, Default)]
pub struct GrantArgs {
    /// Grant a host directory: HOST[::GUEST][:ro] (read-write unless `:ro`).
    #[arg(long = "dir", value_name = "HOST[::GUEST][:ro]", value_parser = DirGrant::parse)]
    pub dirs: Vec<DirGrant>,
    /// Set an environment variable for the guest: K=V (or K to copy the host's value).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Give the guest the host's whole environment.
    #[arg(long)]
    pub env_inherit: bool,
    /// Allow sockets: `--allow-net` for any address, `--allow-net=IP[/PREFIX][:PORT]` for some (repeatable).
    #[arg(long = "allow-net", value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "*", value_parser = parse_net)]
    pub allow_net: Vec<Option<AddrRule>>,
    /// Allow outbound HTTP to SCHEME://HOST[:PORT] (wildcards: `*`, `*.example.com`; repeatable).
    #[arg(long = "allow-http", value_name = "URL", value_parser = OutboundRule::parse)]
    pub allow_http: Vec<OutboundRule>,
}

fn parse_net(s: &str) -> Result<Option<AddrRule>, String> {
    if s == "*" {
        Ok(None)
    } else {
        AddrRule::parse(s).map(Some)
    }
}

impl GrantArgs {
    pub fn to_grants(&self) -> Result<Grants, String> {
        let mut env = Vec::new();
        for e in &self.env {
            match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
                Some(_) => return Err(format!("invalid --env `{e}`: expected K=V")),
                None => match std::env::var(e) {
                    Ok(v) => env.push((e.clone(), v)),
                    Err(_) => {
                        return Err(format!(
                            "invalid --env `{e}`: expected K=V, and `{e}` is not set in the host environment"
                        ));
                    }
                },
            }
        }
        let net = if self.allow_net.is_empty() {
            NetGrant::None
        } else if self.allow_net.iter().any(Option::is_none) {
            NetGrant::All
        } else {
            NetGrant::Only(self.allow_net.iter().flatten().cloned().collect())
        };
        let grants = Grants {
            dirs: self.dirs.clone(),
            env,
            env_inherit: self.env_inherit,
            net,
            outbound_http: self.allow_http.clone(),
            args: Vec::new(),
            ..Grants::default()
        };
        grants.check()?;
        Ok(grants)
    }
}

/// Per-instance limits.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Linear memory per instance, all memories counted (e.g. 64MiB).
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = memory_size)]
    pub max_memory: u64,
}

/// Engine and cache settings.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Directory of the compiled-artifact cache [default: $WASMOPS_CACHE_DIR or ~/.cache/wasmops/artifacts].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time; do not read or write the artifact cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl EngineArgs {
    pub fn apply(&self, s: &mut EngineSettings) {
        if self.no_cache {
            s.cache_dir = None;
        } else if let Some(d) = &self.cache_dir {
            s.cache_dir = Some(d.clone());
        }
    }
}

/// Pool tuning for servers.
#[derive(Args, Debug, Clone)]
pub struct PoolArgs {
    /// Instance allocation: auto (pooling when the address space can be reserved), pooling, on-demand.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_pooling)]
    pub allocator: PoolingChoice,
    /// Bytes of each linear memory reset in place (dirty pages only) rather than decommitted when an instance ends.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub memory_keep_resident: u64,
    /// Memory slots of the instance pool kept warm (their image mapped) for reuse by components with memory images (more than 32 KiB of data; smaller ones take any slot); `node` keeps every slot warm.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub warm_slots: u32,
}

fn parse_pooling(s: &str) -> Result<PoolingChoice, String> {
    match s {
        "auto" => Ok(PoolingChoice::Auto),
        "pooling" => Ok(PoolingChoice::Always),
        "on-demand" => Ok(PoolingChoice::Never),
        _ => Err(format!(
            "invalid allocator `{s}`: use auto, pooling or on-demand"
        )),
    }
}

/// A memory limit flag: the manifest's rule (at least one WebAssembly page).
pub fn memory_size(s: &str) -> Result<u64, String> {
    wasmops_units::check_memory(parse_size(s)?)
}

/// A size flag that must not be zero.
pub fn nonzero_size(s: &str) -> Result<u64, String> {
    wasmops_units::parse_nonzero_size(s)
}

/// A duration flag that must not be zero (a time limit), as in the manifest.
pub fn nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

/// A count flag that must be at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A duration flag; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return wasmops_units::parse_duration(&format!("{t}s"));
    }
    wasmops_units::parse_duration(t)
}

pub fn limits(l: &LimitArgs, timeout: Option<Duration>) -> Limits {
    Limits {
        max_memory: l.max_memory,
        timeout,
        ..Limits::default()
    }
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| format!("invalid port in `{s}`"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "invalid listen address `{s}`: expected IP:PORT, e.g. 127.0.0.1:3000"
    ))
}

/// The admin listener's address, or none when `off`.
#[derive(Debug, Clone, Copy)]
pub struct AdminAddr(pub Option<SocketAddr>);

pub fn parse_admin(s: &str) -> Result<AdminAddr, String> {
    if s == "off" {
        Ok(AdminAddr(None))
    } else {
        parse_listen(s).map(|a| AdminAddr(Some(a)))
    }
}

/// The admin listener's address when none is given.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

impl ServerArgs {
    /// Where the admin endpoints listen, if anywhere.
    pub fn admin(&self) -> Option<SocketAddr> {
        self.admin_listen
            .as_ref()
            .map_or(Some(DEFAULT_ADMIN), |a| a.0)
    }

    /// Whether the user chose the admin address (then a taken port is an
    /// error; the default's is only a warning).
    pub fn admin_asked(&self) -> bool {
        self.admin_listen.is_some()
    }
}

/// What every server command (`serve`, `up`) takes: where to listen, the
/// admin listener, request-body and shutdown limits, threads, pool, engine.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, short = 'l', value_name = "ADDR", default_value = "127.0.0.1:3000", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Largest request body accepted; 413 beyond.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = nonzero_size)]
    pub max_body: u64,
    /// Time a client has to send a request body's first 256KiB (read
    /// before an instance is taken), and at most between two parts of the
    /// rest; 408 beyond.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = nonzero_duration)]
    pub body_timeout: Duration,
    /// Memory the running instances may reserve at once, each its memory
    /// limit; requests wait for it, then get 503 [default: the app's
    /// `memory_budget`, else 3/4 of the machine's or container's memory].
    #[arg(long, value_name = "SIZE", value_parser = nonzero_size)]
    pub memory_budget: Option<u64>,
    /// Put error details (trap messages) in 500 response bodies.
    #[arg(long)]
    pub debug_errors: bool,
    /// How long in-flight requests may run after a shutdown signal.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), or `off`. Keep it
    /// on loopback: it is not authenticated [default: 127.0.0.1:9464; when
    /// that port is taken, the server runs without it and says so].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_admin)]
    pub admin_listen: Option<AdminAddr>,
    /// Worker threads [default: one per core; one per worker process with
    /// --workers].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub threads: Option<usize>,
    /// Serve from N processes sharing the listener (`auto`: one per core),
    /// each with its own instance pool and a share of the memory budget.
    /// Faster than threads for guests that write much of their memory image
    /// (Python, JavaScript); see docs/workers.md [default: one per core,
    /// as far as the memory budget holds; one process under --watch or
    /// when a setting is about one process: --threads, --memory-budget, a
    /// concurrency limit, instance reuse].
    #[arg(long, value_name = "N|auto", value_parser = wasmops_server::workers::parse_workers)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The memory budget of a server given none: the machine's default, or
/// 16 GiB where it cannot be read.
fn machine_budget() -> u64 {
    wasmops_runtime::budget::default_budget().unwrap_or(16 << 30)
}

impl ServerArgs {
    /// The worker processes to start, when this process is to supervise
    /// them (more than one, and this is not a worker itself). Without
    /// `--workers`: one per core, no more than the default memory budget
    /// holds with each worker's share above `largest_limit`; one process
    /// when `one_process` (a setting the command knows is about one
    /// process: --watch, a concurrency limit, instance reuse, the app's
    /// memory budget) or when --threads or --memory-budget is given, so
    /// that what they set holds exactly as written.
    pub fn supervise(&self, one_process: bool, largest_limit: u64) -> Option<usize> {
        if wasmops_server::workers::this_worker().is_some() {
            return None;
        }
        let n = match self.workers {
            Some(n) => n,
            None if one_process || self.threads.is_some() || self.memory_budget.is_some() => 1,
            None => wasmops_server::workers::default_count(machine_budget(), largest_limit),
        };
        (n > 1).then_some(n)
    }

    /// The async runtime's threads: the flag, else one per worker process,
    /// else one per core.
    pub fn threads(&self) -> Option<usize> {
        self.threads
            .or_else(|| wasmops_server::workers::this_worker().map(|_| 1))
    }

    /// The process's memory budget: the flag, else the app's setting, else
    /// the machine's default. Refused when one instance's memory limit
    /// (`largest_limit`) could never fit in it.
    pub fn memory_budget(
        &self,
        manifest: Option<u64>,
        largest_limit: u64,
    ) -> anyhow::Result<Arc<wasmops_runtime::budget::MemoryBudget>> {
        let bytes = self
            .memory_budget
            .or(manifest)
            .unwrap_or_else(machine_budget);
        // Each worker process holds its share.
        let worker = wasmops_server::workers::this_worker();
        let total = bytes;
        let bytes = match worker {
            Some(w) => bytes / w.count as u64,
            None => bytes,
        };
        if let Some(w) = worker
            && largest_limit > bytes
        {
            anyhow::bail!(
                "the memory limit of one instance ({}) is larger than each worker's share of the memory budget ({} of {} for {} workers); raise --memory-budget, lower the memory limit, or use fewer --workers",
                show_size(largest_limit),
                show_size(bytes),
                show_size(total),
                w.count
            );
        }
        if largest_limit > bytes {
            anyhow::bail!(
                "the memory limit of one instance ({}) is larger than the memory budget ({}); raise --memory-budget or lower the memory limit",
                show_size(largest_limit),
                show_size(bytes)
            );
        }
        Ok(wasmops_runtime::budget::MemoryBudget::new(bytes))
    }
}

/// A size in the largest binary unit that keeps it whole.
pub fn show_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// What a command prints on stdout: text for people, or one JSON document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The `--format text|json` switch of a command that reports something
/// (the shapes are in docs/cli.md); `--json` is its older spelling.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct FormatArg {
    /// `json`: one JSON document on stdout, shaped as docs/cli.md says.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

impl FormatArg {
    pub fn json(&self) -> bool {
        self.json || self.format == Format::Json
    }
}

/// Prints a JSON document on stdout (pretty, one trailing newline).
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}
