//! Compiles the guest programs in `guests/` once per build of this crate and
//! exports their paths as constants (see `src/lib.rs`).
use std::path::{Path, PathBuf};
use std::process::Command;

const P2_GUESTS: &[(&str, &str, &str)] = &[
    // (package, artifact file name, constant)
    ("hello", "hello.wasm", "HELLO"),
    ("hello-p3", "hello_p3.wasm", "HELLO_P3"),
    ("echo", "echo.wasm", "ECHO"),
    ("stream", "stream.wasm", "STREAM"),
    ("hostile", "hostile.wasm", "HOSTILE"),
    ("cli", "cli.wasm", "CLI"),
    ("compose-greeter", "compose_greeter.wasm", "COMPOSE_GREETER"),
    ("compose-app", "compose_app.wasm", "COMPOSE_APP"),
];

fn cargo_build(guests: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    clean_env(&mut cmd);
    let status = cmd
        .status()
        .expect("failed to run cargo for the guest programs");
    assert!(
        status.success(),
        "building the guest programs for {target} failed"
    );
}

/// Example apps (directory under `examples/`, constant).
const EXAMPLES: &[(&str, &str)] = &[("webapp", "EXAMPLE_WEBAPP")];

fn cargo_build_example(dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir).args([
        "build",
        "--release",
        "--locked",
        "--target",
        "wasm32-wasip2",
    ]);
    clean_env(&mut cmd);
    let status = cmd
        .status()
        .expect("failed to run cargo for an example app");
    assert!(
        status.success(),
        "building the example app {} failed",
        dir.display()
    );
}

/// The outer build's settings must not leak into a guest build.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(&key);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let guests = manifest_dir.join("guests");
    // Shared by every profile of the host build, so the guests build once.
    let target_dir = manifest_dir.join("../../target/guests");
    println!("cargo:rerun-if-changed={}", guests.display());
    println!("cargo:rerun-if-changed=build.rs");

    let p2: Vec<&str> = P2_GUESTS.iter().map(|g| g.0).collect();
    cargo_build(&guests, &target_dir, "wasm32-wasip2", &p2);
    cargo_build(&guests, &target_dir, "wasm32-wasip1", &["cli"]);

    let mut out = String::new();
    for (_, file, name) in P2_GUESTS {
        let path = target_dir
            .join("wasm32-wasip2/release")
            .join(file)
            .canonicalize()
            .unwrap();
        assert!(path.exists(), "missing guest artifact {}", path.display());
        out.push_str(&format!(
            "/// Guest component `{file}` (wasm32-wasip2).\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let p1 = target_dir
        .join("wasm32-wasip1/release/cli.wasm")
        .canonicalize()
        .unwrap();
    out.push_str(&format!("/// The `cli` guest as a WASI preview1 core module (wasm32-wasip1).\npub const CLI_P1: &str = {:?};\n", p1.display().to_string()));
    // Components built with the Spin SDK (a workspace of their own, for
    // the SDK's dependency tree).
    let spin = manifest_dir.join("spin-guests");
    println!(
        "cargo:rerun-if-changed={}",
        spin.join("Cargo.toml").display()
    );
    let spin_guests = [
        (
            "spin-kv",
            "spin_kv.wasm",
            "SPIN_KV",
            "An HTTP component built with the Spin SDK 5.2 (WASIp2; key-value, variables, SQLite, outbound Redis).",
        ),
        (
            "spin-hello-p3",
            "spin_hello_p3.wasm",
            "SPIN_HELLO_P3",
            "An HTTP component built with the Spin SDK 7 (WASIp3 `wasi:http/handler@0.3.0`).",
        ),
        (
            "spin-apis-p3",
            "spin_apis_p3.wasm",
            "SPIN_APIS_P3",
            "An HTTP component built with the Spin SDK 7 that uses its asynchronous key-value, variables, SQLite and Redis interfaces.",
        ),
    ];
    for (package, ..) in spin_guests {
        println!("cargo:rerun-if-changed={}", spin.join(package).display());
    }
    let packages: Vec<&str> = spin_guests.iter().map(|g| g.0).collect();
    cargo_build(&spin, &target_dir, "wasm32-wasip2", &packages);
    for (_, file, name, doc) in spin_guests {
        let path = target_dir
            .join("wasm32-wasip2/release")
            .join(file)
            .canonicalize()
            .unwrap();
        out.push_str(&format!(
            "/// {doc}\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    // The example apps, built where their manifests expect their components
    // (their own `target/`), as a user would build them.
    for (name, constant) in EXAMPLES {
        let dir = manifest_dir
            .join("../../examples")
            .join(name)
            .canonicalize()
            .unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let file_name = entry.file_name();
            if file_name != "target" && file_name != ".wasmops" {
                println!("cargo:rerun-if-changed={}", entry.path().display());
            }
        }
        cargo_build_example(&dir);
        out.push_str(&format!(
            "/// The example app `examples/{name}`, its components built.\npub const {constant}: &str = {:?};\n",
            dir.display().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, out).unwrap();
}
