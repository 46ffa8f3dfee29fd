mod common;

use common::*;
use wasmops_inspect::{ConformError, conforms, features, validate};

#[test]
fn valid_binaries_validate() {
    validate(&http_client_component(), features()).unwrap();
    validate(&rich_component("1.5.4"), features()).unwrap();
    validate(&preview1_module(), features()).unwrap();
}

#[test]
fn features_cover_the_host_proposals() {
    let f = features();
    for flag in [
        wasmops_inspect::WasmFeatures::COMPONENT_MODEL,
        wasmops_inspect::WasmFeatures::CM_ASYNC,
        wasmops_inspect::WasmFeatures::GC,
        wasmops_inspect::WasmFeatures::THREADS,
        wasmops_inspect::WasmFeatures::FUNCTION_REFERENCES,
        wasmops_inspect::WasmFeatures::TAIL_CALL,
    ] {
        assert!(f.contains(flag), "{flag:?}");
    }
    assert!(!f.contains(wasmops_inspect::WasmFeatures::STACK_SWITCHING));
}

#[test]
fn invalid_binary_error_is_one_line_with_offset() {
    let bytes = wat::parse_str(r#"(module (func (result i32) (i64.const 1)))"#).unwrap();
    let e = validate(&bytes, features()).unwrap_err();
    assert!(e.offset > 8, "{e:?}");
    let s = e.to_string();
    assert!(s.starts_with("invalid WebAssembly at offset 0x"), "{s}");
    assert!(!s.contains('\n'));

    let e = validate(b"\0asm\x01\0\0\0\x01\xff", features()).unwrap_err();
    assert!(!e.to_string().contains('\n'));
    assert!(validate(b"junk", features()).is_err());
    assert!(validate(b"", features()).is_err());
}

#[test]
fn feature_sets_matter() {
    // A tail call is rejected once the proposal is turned off.
    let bytes = wat::parse_str(r#"(module (func $f (return_call $f)))"#).unwrap();
    validate(&bytes, features()).unwrap();
    let without = features() - wasmops_inspect::WasmFeatures::TAIL_CALL;
    assert!(validate(&bytes, without).is_err());
}

#[test]
fn http_proxy_conformance() {
    let c = conforms(&http_client_component(), "wasi:http/proxy").unwrap();
    assert!(c.is_ok(), "{c:?}");
    assert_eq!(c.world, "wasi:http/proxy");

    let other_patch = component(
        &["wasi:io/streams@0.2.3", "wasi:clocks/monotonic-clock@0.2.3"],
        &["wasi:http/incoming-handler@0.2.3"],
    );
    assert!(conforms(&other_patch, "wasi:http/proxy").unwrap().is_ok());

    let bad = component(
        &[
            "wasi:filesystem/types@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:io/streams@0.3.0",
            "acme:db/query@1.0.0",
        ],
        &["wasi:cli/run@0.2.0"],
    );
    let c = conforms(&bad, "wasi:http/proxy").unwrap();
    assert!(!c.is_ok());
    assert_eq!(c.missing_exports, ["wasi:http/incoming-handler@0.2.x"]);
    assert_eq!(
        c.unsupported_imports,
        [
            "wasi:filesystem/types@0.2.0",
            "wasi:io/streams@0.3.0",
            "acme:db/query@1.0.0"
        ]
    );
}

#[test]
fn cli_command_conformance() {
    let cmd = component(
        &[
            "wasi:filesystem/types@0.2.0",
            "wasi:sockets/tcp@0.2.0",
            "wasi:cli/environment@0.2.0",
            "wasi:io/streams@0.2.0",
        ],
        &["wasi:cli/run@0.2.0"],
    );
    assert!(conforms(&cmd, "wasi:cli/command").unwrap().is_ok());
    let c = conforms(&http_client_component(), "wasi:cli/command").unwrap();
    assert_eq!(c.missing_exports, ["wasi:cli/run@0.2.x"]);
    assert_eq!(
        c.unsupported_imports,
        ["wasi:http/types@0.2.0", "wasi:http/outgoing-handler@0.2.0"]
    );
}

#[test]
fn http_service_conformance() {
    let svc = component(
        &[
            "wasi:http/types@0.3.0-rc-2025-09-16",
            "wasi:http/client@0.3.0-rc-2025-09-16",
            "wasi:clocks/monotonic-clock@0.3.0-rc-2025-09-16",
        ],
        &["wasi:http/handler@0.3.0-rc-2025-09-16"],
    );
    assert!(conforms(&svc, "wasi:http/service").unwrap().is_ok());
    let c = conforms(&http_server_component(), "wasi:http/service").unwrap();
    assert_eq!(c.missing_exports, ["wasi:http/handler@0.3.x"]);
}

#[test]
fn conformance_errors() {
    let e = conforms(&http_client_component(), "wasi:nope/world").unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("wasi:http/proxy") && s.contains("wasi:cli/command"),
        "{s}"
    );
    assert_eq!(
        conforms(&preview1_module(), "wasi:cli/command").unwrap_err(),
        ConformError::NotAComponent
    );
    assert!(matches!(
        conforms(b"nope", "wasi:cli/command").unwrap_err(),
        ConformError::Inspect(_)
    ));
}
