//! Running WASI preview1 core modules natively, on wasmtime's preview1
//! host (as `wasmtime run` does), rather than through the component
//! adapter: exit statuses are kept (`proc_exit(n)` is n) and programs that
//! the adapter cannot run (AssemblyScript's argument and environment
//! handling) run as they do elsewhere. Same grants, limits and timeout as
//! a component.

use std::time::Instant;

use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::command::RunError;
use crate::engine::Runtime;
use crate::grants::Grants;
use crate::limits::{Limiter, Limits};
use crate::world::WorldError;

/// The module name of WASI preview1 imports.
pub const PREVIEW1: &str = "wasi_snapshot_preview1";

struct P1Host {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    timed_out: bool,
}

/// Checks that `module` can run on the preview1 host: it imports nothing
/// but WASI preview1 and exports a `_start` command entry point.
pub fn check(module: &Module) -> Result<(), WorldError> {
    if let Some(other) = module.imports().find(|i| i.module() != PREVIEW1) {
        return Err(WorldError::Link(format!(
            "the module imports `{}` from `{}`, which this host does not provide; a WASI preview1 program may import only `{PREVIEW1}`",
            other.name(),
            other.module()
        )));
    }
    if module.get_export("_start").is_none() {
        return Err(WorldError::Link(
            "the module exports no `_start` function, so it is not a WASI command; build it as a program (a `main`), not a library".to_string(),
        ));
    }
    Ok(())
}

/// Runs a preview1 command module to completion with inherited stdio and
/// returns its exit status.
pub async fn run(
    rt: &Runtime,
    module: &Module,
    grants: &Grants,
    limits: &Limits,
) -> Result<i32, RunError> {
    check(module)?;
    let mut linker: Linker<P1Host> = Linker::new(rt.engine());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut P1Host| &mut h.wasi)
        .map_err(|e| RunError::Host(format!("{e:#}")))?;
    let mut b = WasiCtxBuilder::new();
    // One guest on a current-thread runtime: file-system calls run in
    // place rather than being handed to a blocking thread and back (a
    // directory walk makes hundreds of thousands of them).
    b.inherit_stdio().allow_blocking_current_thread(true);
    grants
        .apply(&mut b)
        .map_err(|e| RunError::Host(format!("{e:#}")))?;
    let mut store = Store::new(
        rt.engine(),
        P1Host {
            wasi: b.build_p1(),
            limiter: Limiter::new(limits),
            timed_out: false,
        },
    );
    store.limiter(|h| &mut h.limiter);
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    crate::host::arm_deadline_with(&mut store, deadline, |h| &mut h.timed_out);

    let call = async {
        let instance = linker.instantiate_async(&mut store, module).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    };
    // A guest blocked in the host (a sleep, a read) is stopped by a timer.
    let result = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), call).await {
            Ok(r) => r,
            Err(_) => {
                store.data_mut().timed_out = true;
                Err(wasmtime::Trap::Interrupt.into())
            }
        },
        None => call.await,
    };
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Ok(exit.0);
            }
            let host = store.data();
            Err(crate::command::explain(
                host.timed_out,
                host.limiter.memory_limit_hit,
                limits,
                &e,
            ))
        }
    }
}
