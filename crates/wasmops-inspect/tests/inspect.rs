mod common;

use common::*;
use sha2::Digest;
use wasmops_inspect::{DependencyKind, InspectError, ItemKind, WasmKind, inspect};

#[test]
fn component_imports_exports_and_world() {
    let bytes = http_client_component();
    let r = inspect(&bytes).unwrap();
    assert_eq!(r.kind, WasmKind::Component);
    assert!(r.valid, "{:?}", r.validation_error);
    let names: Vec<_> = r.imports.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "wasi:io/streams@0.2.0",
            "wasi:http/types@0.2.0",
            "wasi:http/outgoing-handler@0.2.0"
        ]
    );
    assert!(r.imports.iter().all(|i| i.kind == ItemKind::Interface));
    assert!(r.imports.iter().all(|i| i.module.is_none()));
    assert_eq!(r.exports.len(), 1);
    assert_eq!(r.exports[0].name, "wasi:http/incoming-handler@0.2.0");
    assert_eq!(r.exports[0].kind, ItemKind::Interface);

    let wit = r.wit.as_deref().expect("WIT decoded");
    assert!(wit.contains("world"), "{wit}");
    assert!(
        wit.contains("import wasi:http/outgoing-handler@0.2.0;"),
        "{wit}"
    );
    assert!(
        wit.contains("export wasi:http/incoming-handler@0.2.0;"),
        "{wit}"
    );

    let ids: Vec<_> = r.capabilities.iter().map(|c| c.id).collect();
    assert_eq!(ids, ["outbound-http", "incoming-http"]);
    let out = &r.capabilities[0];
    assert_eq!(out.interfaces, ["wasi:http/outgoing-handler@0.2.0"]);
    assert!(!out.description.is_empty());
}

#[test]
fn capability_mapping_of_many_interfaces() {
    let bytes = component(
        &[
            "wasi:filesystem/types@0.2.0",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:sockets/tcp@0.2.0",
            "wasi:cli/environment@0.2.0",
            "wasi:clocks/wall-clock@0.2.0",
            "wasi:random/random@0.2.0",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:config/store@0.2.0-draft",
            "wasi:cli/stdout@0.2.0",
            "wasi:cli/terminal-stdout@0.2.0",
            "wasi:cli/exit@0.2.0",
            "wasi:io/poll@0.2.0",
            "acme:ledger/accounts@1.0.0",
            "plain-instance",
        ],
        &["wasi:cli/run@0.2.0"],
    );
    let r = inspect(&bytes).unwrap();
    let ids: Vec<_> = r.capabilities.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "filesystem",
            "sockets",
            "environment",
            "clocks",
            "random",
            "key-value",
            "config",
            "stdio",
            "exit",
            "cli-run",
            "unknown-import"
        ]
    );
    let fs = &r.capabilities[0];
    assert_eq!(fs.interfaces.len(), 2);
    let unknown = r.capabilities.last().unwrap();
    assert_eq!(
        unknown.interfaces,
        ["acme:ledger/accounts@1.0.0", "plain-instance"]
    );
    let plain = r
        .imports
        .iter()
        .find(|i| i.name == "plain-instance")
        .unwrap();
    assert_eq!(plain.kind, ItemKind::Instance);
}

#[test]
fn function_and_type_imports_have_kinds() {
    let bytes = wat::parse_str(
        r#"(component
  (import "log" (func (param "msg" string)))
  (type $t (record (field "a" u32)))
  (import "cfg" (type (eq $t)))
  (export "api" (type $t))
)"#,
    )
    .unwrap();
    let r = inspect(&bytes).unwrap();
    let kinds: Vec<_> = r
        .imports
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    assert_eq!(
        kinds,
        [("log", ItemKind::Function), ("cfg", ItemKind::Type)]
    );
    assert_eq!(r.exports[0].kind, ItemKind::Type);
    assert!(r.has_capability("unknown-import"));
}

#[test]
fn rich_component_producers_metadata_and_dependencies() {
    let bytes = rich_component("1.5.4");
    let r = inspect(&bytes).unwrap();
    assert!(r.valid, "{:?}", r.validation_error);

    // Producers from the component and the nested module, deduplicated.
    let producers: Vec<_> = r
        .producers
        .iter()
        .map(|p| (p.field.as_str(), p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        producers,
        [
            ("language", "Rust", ""),
            ("processed-by", "rustc", "1.95.0 (59807616e 2026-04-14)"),
            ("processed-by", "wit-component", "0.254.2"),
        ]
    );

    // Metadata at the top and in the nested module.
    assert_eq!(r.metadata.scope, "");
    assert_eq!(r.metadata.version.as_deref(), Some("0.3.1"));
    assert_eq!(
        r.metadata.source.as_deref(),
        Some("https://example.com/demo-app.git")
    );
    assert_eq!(
        r.metadata.description.as_deref(),
        Some("A demo HTTP handler")
    );
    assert_eq!(r.metadata.licenses, None);
    assert_eq!(r.nested_metadata.len(), 1);
    let nested = &r.nested_metadata[0];
    assert_eq!(nested.scope, "module[0]");
    assert_eq!(nested.name.as_deref(), Some("demo_app.wasm"));
    assert_eq!(nested.licenses.as_deref(), Some("MIT OR Apache-2.0"));
    assert!(r.has_metadata("licenses"));
    assert_eq!(r.metadata_value("licenses"), Some("MIT OR Apache-2.0"));

    // The dependency list found inside the nested module.
    assert!(r.has_dependency_list);
    assert_eq!(r.dependency_list_error, None);
    assert_eq!(r.dependencies.len(), 6);
    let app = &r.dependencies[0];
    assert!(app.root);
    assert_eq!(app.source, "local");
    assert_eq!(app.dependencies, [1, 2, 3, 5]);
    let regex = &r.dependencies[1];
    assert_eq!(
        (regex.name.as_str(), regex.version.as_str()),
        ("regex", "1.5.4")
    );
    assert_eq!(regex.kind, DependencyKind::Runtime);
    assert_eq!(regex.dependencies, [4]);
    assert_eq!(r.dependencies[3].kind, DependencyKind::Build);

    // Sizes and hash.
    assert_eq!(r.size, bytes.len());
    assert_eq!(
        r.sha256,
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert!(r.sections.iter().any(|s| s.name == "core-module"));
    assert!(r.sections.iter().any(|s| s.name == "custom:producers"));
    assert!(r.sections.iter().any(|s| s.name == "import" && s.id == 10));
    let covered: usize = r.sections.iter().map(|s| s.size).sum();
    assert!(covered < bytes.len());
    // Nested sections are not listed at the top level.
    assert!(!r.sections.iter().any(|s| s.name == "custom:.dep-v0"));
}

#[test]
fn dependency_lists_of_several_modules_are_merged() {
    let a = core_module_with(&[dep_section(
        r#"{"packages":[{"name":"app","version":"1.0.0","source":"local","dependencies":[1],"root":true},{"name":"serde","version":"1.0.200","source":"crates.io","kind":"build"}]}"#,
    )]);
    let b = core_module_with(&[dep_section(
        r#"{"packages":[{"name":"serde","version":"1.0.200","source":"crates.io"},{"name":"itoa","version":"1.0.11","source":"crates.io"}]}"#,
    )]);
    let bytes = with_nested_module(with_nested_module(http_server_component(), &a), &b);
    let r = inspect(&bytes).unwrap();
    let names: Vec<_> = r.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["app", "serde", "itoa"]);
    // serde is a runtime dependency of the second module.
    assert_eq!(r.dependencies[1].kind, DependencyKind::Runtime);
    assert_eq!(r.dependencies[0].dependencies, [1]);
}

#[test]
fn core_module_with_preview1_imports() {
    let bytes = preview1_module();
    let r = inspect(&bytes).unwrap();
    assert_eq!(r.kind, WasmKind::Module);
    assert!(r.valid);
    assert_eq!(r.wit, None);
    assert_eq!(r.imports.len(), 9);
    let first = &r.imports[0];
    assert_eq!(first.module.as_deref(), Some("wasi_snapshot_preview1"));
    assert_eq!(first.name, "fd_write");
    assert_eq!(first.kind, ItemKind::Function);
    let exports: Vec<_> = r
        .exports
        .iter()
        .map(|e| (e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        exports,
        [("memory", ItemKind::Memory), ("_start", ItemKind::Function)]
    );
    let ids: Vec<_> = r.capabilities.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "filesystem",
            "sockets",
            "environment",
            "arguments",
            "clocks",
            "random",
            "exit",
            "wasi-preview1",
            "unknown-import"
        ]
    );
    let p1 = r
        .capabilities
        .iter()
        .find(|c| c.id == "wasi-preview1")
        .unwrap();
    assert_eq!(p1.interfaces, ["wasi_snapshot_preview1"]);
    let unknown = r.capabilities.last().unwrap();
    assert_eq!(unknown.interfaces, ["env::log"]);
    assert!(r.sections.iter().any(|s| s.name == "import" && s.id == 2));
}

#[test]
fn not_wasm_errors_are_one_line() {
    let e = inspect(b"hello world, not wasm").unwrap_err();
    assert_eq!(e, InspectError::BadMagic);
    assert_eq!(e.to_string(), "not a WebAssembly file (bad magic)");
    assert_eq!(inspect(b"").unwrap_err(), InspectError::BadMagic);
    assert!(matches!(
        inspect(b"\0asm\x01").unwrap_err(),
        InspectError::TruncatedHeader(5)
    ));
    let e = inspect(b"\0asm\x02\0\0\0").unwrap_err();
    assert!(matches!(e, InspectError::Malformed { .. }), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn invalid_but_readable_binaries_still_report() {
    // Structurally readable, but the function body does not type-check.
    let bytes = wat::parse_str(r#"(module (func (result i32) (i64.const 1)))"#).unwrap();
    let r = inspect(&bytes).unwrap();
    assert!(!r.valid);
    let e = r.validation_error.as_deref().unwrap();
    assert!(e.contains("offset"), "{e}");
}

#[test]
fn bad_custom_sections_become_notes() {
    let bytes = with_sections(
        http_server_component(),
        &[
            custom(
                "producers",
                &[1, 7, b'b', b'o', b'g', b'u', b's', b'!', b'!'],
            ),
            custom("authors", &[0xff, 0xfe]),
            custom(".dep-v0", b"definitely not zlib"),
        ],
    );
    let r = inspect(&bytes).unwrap();
    assert!(r.producers.is_empty());
    assert!(
        r.notes.iter().any(|n| n.contains("producers")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("authors")),
        "{:?}",
        r.notes
    );
    assert!(r.has_dependency_list);
    let e = r.dependency_list_error.as_deref().unwrap();
    assert!(e.contains("zlib"), "{e}");
}

#[test]
fn json_has_stable_field_names() {
    let r = inspect(&rich_component("1.5.5")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    for k in [
        "kind",
        "size",
        "sha256",
        "valid",
        "validation_error",
        "imports",
        "exports",
        "wit",
        "capabilities",
        "producers",
        "metadata",
        "nested_metadata",
        "has_dependency_list",
        "dependency_list_error",
        "dependencies",
        "sections",
        "notes",
    ] {
        assert!(keys.iter().any(|x| x == k), "missing {k}");
    }
    assert_eq!(v["kind"], "component");
    assert_eq!(v["imports"][0]["kind"], "interface");
    assert_eq!(v["capabilities"][0]["id"], "outbound-http");
    assert_eq!(v["dependencies"][3]["kind"], "build");
    assert_eq!(v["metadata"]["version"], "0.3.1");
}

#[test]
fn text_report_mentions_the_essentials() {
    let r = inspect(&rich_component("1.5.4")).unwrap();
    let t = r.to_text();
    for needle in [
        "kind:    component",
        "wasi:http/outgoing-handler@0.2.0",
        "outbound-http",
        "rustc",
        "licenses:",
        "MIT OR Apache-2.0",
        "regex",
        "core-module",
        "total (file)",
        "world",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    let t = inspect(&preview1_module()).unwrap().to_text();
    assert!(t.contains("wasi_snapshot_preview1::fd_write"), "{t}");
}
