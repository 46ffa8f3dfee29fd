//! Prints, as WIT files, the packages of the world recorded in a core
//! module's `component-type` custom section (what wit-bindgen embeds).
//! Used to derive the WASI WIT the templates carry from the toolchain that
//! will consume it: `cargo run -p wasmops-component --example
//! wit-from-bindings -- ENGINE.wasm OUT_DIR`.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, wasm, out] = &args[..] else {
        anyhow::bail!("usage: wit-from-bindings MODULE.wasm OUT_DIR");
    };
    let bytes = std::fs::read(wasm)?;
    let (_, bindgen) = wit_component::metadata::decode(&bytes)?;
    let resolve = &bindgen.resolve;
    for (id, pkg) in resolve.packages.iter() {
        if pkg.name.namespace != "wasi" {
            continue;
        }
        let mut printer = wit_component::WitPrinter::default();
        printer.print(resolve, id, &[])?;
        let text = printer.output.to_string();
        let dir = std::path::Path::new(out).join(&pkg.name.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("package.wit"), text)?;
        println!("{}", pkg.name);
    }
    Ok(())
}
