//! Builders for test inputs: components from WAT, custom sections and
//! nested core modules with wasm-encoder, and `.dep-v0` payloads.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use wasm_encoder::{
    ComponentSection, CustomSection, Module, ModuleSection, ProducersField, ProducersSection,
    Section,
};

/// The project's shared data folder: `$WASMOPS_SHARED_DATA`, else the first
/// `shared/data` found beside the repository (walking up from this crate).
pub fn shared_data() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMOPS_SHARED_DATA") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/data"))
        .find(|d| d.join("rustsec-advisory-db").is_dir() && d.join("schemas").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "shared/data (RustSec snapshot and JSON schemas) not found above {}; \
                 set WASMOPS_SHARED_DATA",
                here.display()
            )
        })
}

/// The real RustSec snapshot shipped with the project.
pub fn advisory_db_dir() -> PathBuf {
    shared_data().join("rustsec-advisory-db")
}

/// The JSON schemas shipped with the project.
pub fn schema_dir() -> PathBuf {
    shared_data().join("schemas")
}

/// A component importing the given interfaces (as empty instances) and
/// exporting the given interfaces (as empty instances).
pub fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
    let mut wat = String::from("(component\n");
    for i in imports {
        wat.push_str(&format!("  (import \"{i}\" (instance))\n"));
    }
    for (n, e) in exports.iter().enumerate() {
        wat.push_str(&format!("  (instance $e{n})\n"));
        wat.push_str(&format!("  (export \"{e}\" (instance $e{n}))\n"));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("test component WAT")
}

/// A WASI HTTP proxy-style component that imports outgoing HTTP.
pub fn http_client_component() -> Vec<u8> {
    component(
        &[
            "wasi:io/streams@0.2.0",
            "wasi:http/types@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
        ],
        &["wasi:http/incoming-handler@0.2.0"],
    )
}

/// The same without outgoing HTTP.
pub fn http_server_component() -> Vec<u8> {
    component(
        &["wasi:io/streams@0.2.0", "wasi:http/types@0.2.0"],
        &["wasi:http/incoming-handler@0.2.0"],
    )
}

/// A custom section with the given name and payload, encoded for either a
/// module or a component (the encoding is the same).
pub fn custom(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    CustomSection {
        name: name.into(),
        data: data.into(),
    }
    .append_to(&mut out);
    out
}

/// A producers custom section.
pub fn producers(fields: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
    let mut p = ProducersSection::new();
    for (field, values) in fields {
        let mut f = ProducersField::new();
        for (name, version) in *values {
            f.value(name, version);
        }
        p.field(field, &f);
    }
    let mut out = Vec::new();
    p.append_to(&mut out);
    out
}

/// A core module holding the given raw (already encoded) custom sections.
pub fn core_module_with(sections: &[Vec<u8>]) -> Module {
    let mut m = Module::new();
    for s in sections {
        // Custom sections are appended verbatim: id 0, size, name, data.
        m.section(&wasm_encoder::RawSection {
            id: 0,
            data: &strip_header(s),
        });
    }
    m
}

/// The payload of an encoded section (without its id and size).
fn strip_header(section: &[u8]) -> Vec<u8> {
    let mut i = 1;
    while section[i] & 0x80 != 0 {
        i += 1;
    }
    section[i + 1..].to_vec()
}

/// Appends a nested core module section to a component.
pub fn with_nested_module(mut component: Vec<u8>, module: &Module) -> Vec<u8> {
    ModuleSection(module).append_to_component(&mut component);
    component
}

/// Appends raw sections to a binary.
pub fn with_sections(mut bin: Vec<u8>, sections: &[Vec<u8>]) -> Vec<u8> {
    for s in sections {
        bin.extend_from_slice(s);
    }
    bin
}

/// zlib-compresses `data`.
pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A `.dep-v0` custom section for the given JSON.
pub fn dep_section(json: &str) -> Vec<u8> {
    custom(".dep-v0", &zlib(json.as_bytes()))
}

/// The dependency list of a small Rust app using `regex` at `regex_version`.
pub fn dep_json(regex_version: &str) -> String {
    format!(
        r#"{{"packages":[
  {{"name":"demo-app","version":"0.3.1","source":"local","dependencies":[1,2,3,5],"root":true}},
  {{"name":"regex","version":"{regex_version}","source":"crates.io","dependencies":[4]}},
  {{"name":"smallvec","version":"1.13.2","source":"crates.io"}},
  {{"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"}},
  {{"name":"memchr","version":"2.7.4","source":"crates.io","kind":"runtime"}},
  {{"name":"time","version":"0.1.40","source":"git"}}
]}}"#
    )
}

/// A realistic test component: an HTTP handler with outgoing HTTP, with a
/// nested core module carrying producers, metadata and a dependency list,
/// and top-level producers and metadata.
pub fn rich_component(regex_version: &str) -> Vec<u8> {
    let module = core_module_with(&[
        custom("name", &name_section("demo_app.wasm")),
        producers(&[
            ("language", &[("Rust", "")]),
            (
                "processed-by",
                &[("rustc", "1.95.0 (59807616e 2026-04-14)")],
            ),
        ]),
        custom("licenses", b"MIT OR Apache-2.0"),
        dep_section(&dep_json(regex_version)),
    ]);
    let comp = with_nested_module(http_client_component(), &module);
    with_sections(
        comp,
        &[
            producers(&[
                ("processed-by", &[("wit-component", "0.254.2")]),
                ("language", &[("Rust", "")]),
            ]),
            custom("version", b"0.3.1"),
            custom("source", b"https://example.com/demo-app.git"),
            custom("description", b"A demo HTTP handler"),
        ],
    )
}

/// The payload of a `name` section holding just a module name.
pub fn name_section(name: &str) -> Vec<u8> {
    let mut sub = Vec::new();
    leb(&mut sub, name.len() as u64);
    sub.extend_from_slice(name.as_bytes());
    let mut out = vec![0u8];
    leb(&mut out, sub.len() as u64);
    out.extend_from_slice(&sub);
    out
}

/// Unsigned LEB128.
pub fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

/// A core module with preview 1 imports.
pub fn preview1_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (type $fd_write (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (type $fd_write)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
  (import "env" "log" (func (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "_start"))
)"#,
    )
    .expect("test module WAT")
}

/// Writes a tiny advisory database with one well-formed and two broken files.
pub fn write_small_db(dir: &Path) {
    let crates = dir.join("crates");
    std::fs::create_dir_all(crates.join("demo")).unwrap();
    std::fs::write(
        crates.join("demo/RUSTSEC-2099-0001.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"demo\"\ndate = \"2099-01-01\"\n\n[versions]\npatched = [\">= 1.0.0\"]\n```\n\n# Demo is broken\n",
    )
    .unwrap();
    std::fs::write(
        crates.join("demo/RUSTSEC-2099-0002.md"),
        "no front matter\n",
    )
    .unwrap();
    std::fs::write(
        crates.join("demo/RUSTSEC-2099-0003.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0003\"\npackage = \"demo\"\n[versions]\npatched = [\"not a version\"]\n```\n",
    )
    .unwrap();
}
