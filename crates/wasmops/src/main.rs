//! The `wasmops` binary: parses arguments and calls the libraries.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod accesslog;
mod artifact;
mod commands;
mod logwriter;
mod options;
mod progress;
mod sources;

/// A `--log-level` filter, checked when the flags are read.
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e}; write a level (error, warn, info, debug, trace) or TARGET=LEVEL, e.g. `wasmops=debug`"))
}

#[derive(Parser)]
#[command(
    name = "wasmops",
    version,
    about = "Build, inspect, ship, run and serve WebAssembly components",
    propagate_version = true
)]
struct Cli {
    /// Log filter (e.g. `info`, `wasmops=debug`); `RUST_LOG` is used when unset.
    #[arg(long, global = true, value_name = "FILTER", value_parser = log_filter)]
    log_level: Option<String>,
    /// Log format: JSON lines when stderr is not a terminal, readable text on one.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    Run(commands::run::RunArgs),
    Serve(commands::serve::ServeArgs),
    Up(commands::up::UpArgs),
    New(commands::new::NewArgs),
    Build(commands::build::BuildArgs),
    Doctor(commands::doctor::DoctorArgs),
    Inspect(commands::inspect::InspectArgs),
    Validate(commands::inspect::ValidateArgs),
    Scan(commands::inspect::ScanArgs),
    Check(commands::inspect::CheckArgs),
    Compose(commands::compose::ComposeArgs),
    Push(commands::oci::PushArgs),
    Pull(commands::oci::PullArgs),
    Sign(commands::oci::SignArgs),
    Verify(commands::oci::VerifyArgs),
    Keygen(commands::oci::KeygenArgs),
    Registry(commands::oci::RegistryCommand),
    Node(commands::node::NodeArgs),
    Deploy(commands::client::DeployArgs),
    Apps(commands::client::AppsArgs),
    Promote(commands::client::PromoteArgs),
    Kube(commands::kube::KubeArgs),
    Test(commands::test::TestArgs),
    Ci(commands::ci::CiArgs),
    Cache(commands::cache::CacheArgs),
    Pipeline(commands::pipeline::PipelineArgs),
    Completions(commands::completions::CompletionsArgs),
    Man(commands::completions::ManArgs),
}

fn init_logging(cli: &Cli, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log_level {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|_| EnvFilter::new(default)),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let json = match cli.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let writer = logwriter::LogWriter::new();
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        let general = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer);
        registry.with(general).init();
        // Access lines skip the subscriber, written directly if the filter
        // wants them at all.
        if tracing::enabled!(target: accesslog::TARGET, tracing::Level::INFO) {
            wasmops_telemetry::access::install(Box::new(accesslog::AccessJson::new(writer)));
        }
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    // Colour only on a terminal, not in a file or a pipe.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(writer),
            )
            .init();
    }
}

fn main() -> ExitCode {
    restore_sigpipe_for_pipelines();
    raise_open_files_limit();
    // A panic is a bug in wasmops: say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error in wasmops: {msg}{at}; please report this");
    }));

    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match &cli.command {
        Command::Run(args) => {
            init_logging(&cli, "warn");
            commands::run::run(args)
        }
        Command::Serve(args) => {
            init_logging(&cli, "info");
            commands::serve::run(args)
        }
        Command::Up(args) => {
            init_logging(&cli, "info");
            commands::up::run(args)
        }
        Command::New(args) => {
            init_logging(&cli, "warn");
            commands::new::run(args)
        }
        Command::Build(args) => {
            init_logging(&cli, "warn");
            commands::build::run(args)
        }
        Command::Doctor(args) => {
            init_logging(&cli, "warn");
            commands::doctor::run(args)
        }
        Command::Inspect(args) => {
            init_logging(&cli, "warn");
            commands::inspect::inspect(args)
        }
        Command::Validate(args) => {
            init_logging(&cli, "warn");
            commands::inspect::validate(args)
        }
        Command::Scan(args) => {
            init_logging(&cli, "warn");
            commands::inspect::scan(args)
        }
        Command::Compose(args) => {
            init_logging(&cli, "warn");
            commands::compose::run(args)
        }
        Command::Check(args) => {
            init_logging(&cli, "warn");
            commands::inspect::check(args)
        }
        Command::Push(args) => {
            init_logging(&cli, "warn");
            commands::oci::push(args)
        }
        Command::Pull(args) => {
            init_logging(&cli, "warn");
            commands::oci::pull(args)
        }
        Command::Sign(args) => {
            init_logging(&cli, "warn");
            commands::oci::sign_cmd(args)
        }
        Command::Verify(args) => {
            init_logging(&cli, "warn");
            commands::oci::verify_cmd(args)
        }
        Command::Keygen(args) => {
            init_logging(&cli, "warn");
            commands::oci::keygen(args)
        }
        Command::Registry(args) => {
            init_logging(&cli, "warn");
            commands::oci::registry_cmd(args)
        }
        Command::Node(args) => {
            init_logging(&cli, "info");
            commands::node::run(args)
        }
        Command::Deploy(args) => {
            init_logging(&cli, "warn");
            commands::client::deploy(args)
        }
        Command::Apps(args) => {
            init_logging(&cli, "warn");
            commands::client::apps(args)
        }
        Command::Promote(args) => {
            init_logging(&cli, "warn");
            commands::client::promote(args)
        }
        Command::Kube(args) => {
            init_logging(&cli, "warn");
            commands::kube::run(args)
        }
        Command::Pipeline(args) => {
            init_logging(&cli, "warn");
            commands::pipeline::run(args)
        }
        Command::Cache(args) => {
            init_logging(&cli, "warn");
            commands::cache::run(args)
        }
        Command::Ci(args) => {
            init_logging(&cli, "warn");
            commands::ci::run(args)
        }
        Command::Test(args) => {
            init_logging(&cli, "warn");
            commands::test::run(args)
        }
        Command::Completions(args) => {
            commands::completions::completions(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => {
            commands::completions::man(args, <Cli as clap::CommandFactory>::command())
        }
    };
    match code {
        Ok(code) => exit_code(code),
        Err(e) => {
            logwriter::flush();
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(1)
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as servers do: a
/// loaded component keeps its mapped artifact's file open, and the soft
/// limit is often 1,024, fewer than the apps a node loads (the runtime
/// reads artifacts instead of mapping them once half the limit is in use).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            // An unlimited hard limit is not a valid soft one on Linux
            // (it is capped by fs.nr_open, 1Mi by default).
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Commands that write a report (`inspect`, `scan`, `apps list`, ...) end
/// quietly when their reader goes away (`| head`, `| jq -e`, `| grep -q`),
/// as Unix tools do: SIGPIPE is given its default action back (Rust
/// ignores it, which turns a closed pipe into a panic in `println!`).
/// Servers and `run` keep ignoring it: a peer closing a socket must not end
/// the process.
fn restore_sigpipe_for_pipelines() {
    let mut args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let mut sub = None;
    while let Some(a) = args.next() {
        if a == "--log-level" || a == "--log-format" {
            args.next();
        } else if !a.starts_with('-') {
            sub = Some(a);
            break;
        }
    }
    if matches!(sub.as_deref(), Some("serve" | "up" | "node" | "run")) {
        return;
    }
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes on one line.
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = wasmops_component::one_line(&cause.to_string());
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn exit_code(code: i32) -> ExitCode {
    use std::io::Write;
    logwriter::flush();
    let _ = std::io::stdout().flush();
    ExitCode::from((code & 0xff) as u8)
}
