//! Where copying data segments into a pool slot stops paying against a
//! copy-on-write image: `cargo run --release -p wasmops-runtime --example
//! copy_threshold -- [MODULES] [N] [KIB,KIB,...]` (run by `bench/copy_threshold.sh`).
//!
//! For data sizes from 4 KiB to 128 KiB (or those given), MODULES distinct core modules (each
//! its own data bytes) are compiled twice: for a pooled engine with images
//! (`memory_init_cow`, every slot warm) and for one that copies (no images,
//! no slot affinity), with the pool settings the runtime uses. Each cycle
//! makes a store, instantiates, calls a function that writes 16 KiB (a
//! request's stack and heap) and reads one byte per 4 KiB of the data, and
//! drops the store; N cycles round-robin over the modules. Prints the mean
//! cycle of each engine, for one module and for all.
use std::time::Instant;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store,
};

fn engine(copy: bool, slots: u32) -> wasmtime::Result<Engine> {
    let mut p = PoolingAllocationConfig::default();
    p.total_core_instances(slots);
    p.total_memories(slots);
    p.total_tables(slots);
    p.max_memory_size(128 << 20);
    p.linear_memory_keep_resident(8 << 20);
    p.table_keep_resident(1 << 20);
    p.pagemap_scan(wasmtime::Enabled::Auto);
    p.max_unused_warm_slots(if copy { 0 } else { slots });
    let mut c = Config::new();
    c.memory_init_cow(!copy);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    Engine::new(&c)
}

fn module_text(data: usize, seed: usize) -> String {
    // 16 bytes per escape-free chunk: the seed makes each module distinct.
    let chunk = format!("{seed:016}");
    let bytes = chunk.repeat(data / 16);
    let pages = (1 << 20) + data;
    let pages = pages.div_ceil(65536) + 1;
    format!(
        r#"(module
            (memory (export "memory") {pages})
            (data (i32.const 1048576) "{bytes}")
            (func (export "run") (result i32) (local $i i32) (local $sum i32)
                ;; A request's stack and heap: 16 KiB written below the data.
                (memory.fill (i32.const 1015808) (i32.const 7) (i32.const 16384))
                ;; One byte read per page of the data.
                (block $done (loop $next
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {data})))
                    (local.set $sum (i32.add (local.get $sum)
                        (i32.load8_u offset=1048576 (local.get $i))))
                    (local.set $i (i32.add (local.get $i) (i32.const 4096)))
                    (br $next)))
                (local.get $sum)))"#
    )
}

fn measure(pres: &[InstancePre<()>], engine: &Engine, n: usize) -> wasmtime::Result<f64> {
    let cycle = |i: usize| -> wasmtime::Result<()> {
        let mut store = Store::new(engine, ());
        let instance = pres[i % pres.len()].instantiate(&mut store)?;
        let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
        std::hint::black_box(run.call(&mut store, ())?);
        Ok(())
    };
    // Warm: every module through a slot once or more.
    for i in 0..pres.len().max(n / 10) {
        cycle(i)?;
    }
    let start = Instant::now();
    for i in 0..n {
        cycle(i)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn main() -> wasmtime::Result<()> {
    let mut args = std::env::args().skip(1);
    let modules: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let n: usize = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let sizes: Vec<usize> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?,
        None => vec![4, 8, 16, 32, 64, 128],
    };
    let slots = (modules as u32 + 16) * 2;
    println!(
        "| data | image, one module | copied, one module | image, {modules} modules | copied, {modules} modules |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for kib in sizes {
        let mut row = Vec::new();
        let mut per_engine = Vec::new();
        for copy in [false, true] {
            let engine = engine(copy, slots)?;
            let linker = Linker::<()>::new(&engine);
            let pres = (0..modules)
                .map(|seed| {
                    let m = Module::new(&engine, module_text(kib << 10, seed))?;
                    linker.instantiate_pre(&m)
                })
                .collect::<wasmtime::Result<Vec<_>>>()?;
            per_engine.push((engine, pres));
        }
        for spread in [false, true] {
            for (engine, pres) in &per_engine {
                let pres = if spread { &pres[..] } else { &pres[..1] };
                row.push(format!("{:.2} µs", measure(pres, engine, n)?));
            }
        }
        println!("| {kib} KiB | {} |", row.join(" | "));
    }
    Ok(())
}
