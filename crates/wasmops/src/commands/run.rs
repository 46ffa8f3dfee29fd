//! `wasmops run`: run a command component (or a WASI preview1 module).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wasmops_component::Kind;
use wasmops_runtime::{EngineSettings, LoadError, Runtime, command, preview1};

use crate::options::{EngineArgs, GrantArgs, LimitArgs, limits, nonzero_duration};

/// Run a `wasi:cli` command component, or a WASI preview1 core module (on
/// the host's preview1 implementation, as it was built for). Standard streams are inherited; the guest's exit code
/// becomes wasmops' exit code (134 when it traps, 124 on --timeout).
/// Nothing else is granted unless asked for: no files, environment, sockets
/// or outbound HTTP.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The component or module to run (.wasm, or .wat text), or a
    /// reference: `HOST[:PORT]/REPO[:TAG]` or `oci-layout:PATH[:TAG]`.
    #[arg(value_name = "FILE|REF")]
    pub file: PathBuf,
    /// Arguments passed to the guest (after `--`).
    #[arg(value_name = "ARGS", last = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Stop the guest after this long (e.g. 500ms, 10s).
    #[arg(long, value_name = "DURATION", value_parser = nonzero_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub source: crate::sources::SourceArgs,
}

pub fn run(args: &RunArgs) -> anyhow::Result<i32> {
    let mut grants = args.grants.to_grants().map_err(anyhow::Error::msg)?;
    let program = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main.wasm".into());
    grants.args = std::iter::once(program)
        .chain(args.args.iter().cloned())
        .collect();
    let limits = limits(&args.limits, args.timeout);

    let mut settings = EngineSettings::for_command();
    args.engine.apply(&mut settings);
    let rt = Runtime::new(settings).context("cannot create the WebAssembly engine")?;
    // A file, or a reference (a registry, or `oci-layout:PATH:TAG`).
    let bytes = match crate::sources::read_source(&args.file, &args.source)? {
        Some(bytes) => bytes,
        None => std::fs::read(&args.file).map_err(|source| LoadError::Read {
            path: args.file.clone(),
            source,
        })?,
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A preview1 core module runs on the preview1 host, as it was built
    // for: its exit status is kept whole.
    if wasmops_runtime::load::source_kind(&args.file, &bytes)? == Kind::CoreModule {
        let (module, cache) = rt.load_module_bytes(&args.file, &bytes)?;
        tracing::debug!(cache = %cache, "module loaded");
        return match tokio.block_on(preview1::run(&rt, &module, &grants, &limits)) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {}: {e}", args.file.display());
                Ok(e.exit_code())
            }
        };
    }
    let loaded = rt.load_bytes(&args.file, &bytes)?;
    tracing::debug!(cache = %loaded.cache, load_ms = wasmops_units::millis(loaded.elapsed), "component loaded");

    match tokio.block_on(command::run(&rt, &loaded.component, &grants, &limits)) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            Ok(e.exit_code())
        }
    }
}
