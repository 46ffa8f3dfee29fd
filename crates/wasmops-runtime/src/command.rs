//! Running `wasi:cli/run` components as commands.

use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::engine::Runtime;
use crate::grants::Grants;
use crate::host::{self, OutboundPolicy, Stdio};
use crate::limits::Limits;
use crate::world::{self, WorldError};

/// Exit code for a guest that trapped (as a process killed by SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// Exit code for a guest stopped by `--timeout` (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// How a command ended, when it did not end normally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("{0}")]
    Host(String),
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error(
        "the component exceeded its memory limit of {limit} bytes ({detail}); raise it with --max-memory"
    )]
    MemoryLimit { limit: u64, detail: String },
    #[error(
        "the component ran longer than its timeout of {0:?} and was stopped; raise it with --timeout"
    )]
    Timeout(std::time::Duration),
    /// The host had no room for the instance (its pool was full): not the
    /// guest's fault, and a retry may succeed.
    #[error("server busy: {0}")]
    Busy(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Timeout(_) => EXIT_TIMEOUT,
            RunError::Trap(_) | RunError::MemoryLimit { .. } => EXIT_TRAP,
            _ => 1,
        }
    }
}

/// Prepares a command: links it and checks that it exports `wasi:cli/run`.
pub fn prepare(rt: &Runtime, component: &Component) -> Result<CommandPre<host::Host>, WorldError> {
    let engine = component.engine();
    let pre = rt.link(component)?;
    CommandPre::new(pre).map_err(|_| WorldError::MissingExport {
        wanted: vec![world::P2_CLI_RUN.to_string()],
        what: "a command",
        exports: world::exports(component, engine),
    })
}

/// Runs a command to completion and returns its exit code.
pub async fn run(
    rt: &Runtime,
    component: &Component,
    grants: &Grants,
    limits: &Limits,
) -> Result<i32, RunError> {
    let pre = prepare(rt, component)?;
    let outbound = OutboundPolicy::new(
        grants.outbound_http.clone(),
        Arc::from("command"),
        None,
        None,
    );
    let mut store = host::new_store(component.engine(), grants, outbound, limits, Stdio::Inherit)
        .map_err(|e| RunError::Host(format!("{e:#}")))?;
    let result = async {
        let cmd = pre.instantiate_async(&mut store).await?;
        cmd.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Ok(exit.0);
            }
            Err(classify(&store, limits, &e))
        }
    }
}

/// Turns a guest failure into the error that explains it.
pub(crate) fn classify(
    store: &wasmtime::Store<host::Host>,
    limits: &Limits,
    e: &wasmtime::Error,
) -> RunError {
    let host = store.data();
    explain(host.timed_out, host.limiter.memory_limit_hit, limits, e)
}

/// A guest failure explained by whether the deadline passed or the memory
/// limit was hit.
pub(crate) fn explain(
    timed_out: bool,
    memory_limit_hit: bool,
    limits: &Limits,
    e: &wasmtime::Error,
) -> RunError {
    if let Some(full) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return RunError::Busy(format!(
            "the instance pool is full ({full}): the component needs more core instances, \
             tables or memories per instance than the pool reserves; run it with \
             --allocator on-demand"
        ));
    }
    let detail = trap_summary(e);
    if timed_out {
        RunError::Timeout(limits.timeout.unwrap_or_default())
    } else if memory_limit_hit {
        RunError::MemoryLimit {
            limit: limits.max_memory,
            detail,
        }
    } else {
        RunError::Trap(detail)
    }
}

/// The first line of a trap, without the wasm backtrace.
pub fn trap_summary(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    let full = format!("{e:#}");
    wasmops_component::one_line(full.split("\nwasm backtrace:").next().unwrap_or(&full))
}
