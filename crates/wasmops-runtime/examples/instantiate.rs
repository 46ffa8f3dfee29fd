//! Instantiation cost of an HTTP component, the way `serve` instantiates it
//! (the same engine settings, linker and store), without a network in
//! between: `cargo run --release -p wasmops-runtime --example instantiate --
//! COMPONENT [N]`. Prints the mean time of `instantiate_async` and of a whole
//! store + instantiate + drop cycle.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmops_runtime::host::{self, OutboundPolicy, Stdio};
use wasmops_runtime::{EngineSettings, Grants, Limits, Runtime};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: instantiate COMPONENT [N]"));
    let n: u32 = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let settings = EngineSettings {
        cache_dir: None,
        ..EngineSettings::default()
    };
    let rt = Runtime::new(settings)?;
    let loaded = rt.load(&path)?;
    let engine = loaded.component.engine();
    let pre = ProxyPre::new(rt.linker_for(engine)?.instantiate_pre(&loaded.component)?)?;
    let grants = Grants::default();
    let limits = Limits::default();
    let outbound = OutboundPolicy::new(Vec::new(), Arc::from("bench"), None, None);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let mut inst = Duration::ZERO;
        let mut cycle = Duration::ZERO;
        for i in 0..n + n / 10 {
            let start = Instant::now();
            let mut store = host::new_store(
                engine,
                &grants,
                outbound.clone(),
                &limits,
                Stdio::Log {
                    component: Arc::from("bench"),
                    request_id: Arc::from("0"),
                },
            )?;
            let t = Instant::now();
            let _proxy = pre.instantiate_async(&mut store).await?;
            let dt = t.elapsed();
            drop(store);
            // The first tenth warms the pool and caches.
            if i >= n / 10 {
                inst += dt;
                cycle += start.elapsed();
            }
        }
        println!(
            "instantiate_async mean {:.2} µs; store + instantiate + drop mean {:.2} µs ({n} instances)",
            inst.as_secs_f64() * 1e6 / n as f64,
            cycle.as_secs_f64() * 1e6 / n as f64
        );
        anyhow::Ok(())
    })
}
