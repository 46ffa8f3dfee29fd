//! Validation against the host's feature set and conformance to target worlds.

use serde::Serialize;
use wasmparser::{Validator, WasmFeatures};

use crate::capabilities::InterfaceName;
use crate::inspect::{InspectError, inspect};
use crate::report::{ItemKind, WasmKind};

/// The WebAssembly features the wasmops host accepts.
///
/// This is wasmparser's default set (which already includes the component
/// model, component-model async, GC, threads, tail calls, function
/// references, exceptions, memory64, multi-memory, SIMD and relaxed SIMD)
/// with the component model, component-model async, GC, threads, function
/// references and tail calls forced on, matching the wasmtime 48 engine
/// configured by `wasmops-runtime`. Proposals wasmtime does not enable by
/// default (shared-everything threads, stack switching, custom page sizes,
/// wide arithmetic, legacy exceptions, the newer component-model extensions)
/// stay off.
pub fn features() -> WasmFeatures {
    WasmFeatures::default()
        | WasmFeatures::COMPONENT_MODEL
        | WasmFeatures::CM_ASYNC
        | WasmFeatures::GC
        | WasmFeatures::THREADS
        | WasmFeatures::FUNCTION_REFERENCES
        | WasmFeatures::TAIL_CALL
}

/// A validation failure: one line, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WebAssembly at offset {offset:#x}: {message}")]
pub struct ValidateError {
    /// Byte offset of the first problem.
    pub offset: usize,
    /// The validator's message, on one line.
    pub message: String,
}

/// Validates a component or core module with the given features.
pub fn validate(bytes: &[u8], features: WasmFeatures) -> Result<(), ValidateError> {
    let mut validator = Validator::new_with_features(features);
    validator
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| ValidateError {
            offset: e.offset(),
            message: e.message().replace('\n', " "),
        })
}

/// The target worlds [`conforms`] knows.
pub const KNOWN_WORLDS: &[&str] = &[
    "wasi:http/proxy",
    "wasi:cli/command",
    "wasi:http/service",
    "wasmops:host/http",
];

/// Why a conformance check could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformError {
    /// The world is not one of [`KNOWN_WORLDS`].
    #[error("unknown world `{world}`; known worlds: {}", KNOWN_WORLDS.join(", "))]
    UnknownWorld {
        /// The name that was asked for.
        world: String,
    },
    /// The file is a core module; only components target worlds.
    #[error("a core module cannot target a world; componentize it first")]
    NotAComponent,
    /// The file could not be inspected.
    #[error(transparent)]
    Inspect(#[from] InspectError),
}

/// How a component measures against a target world.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conformance {
    /// The world checked.
    pub world: String,
    /// Exports the world requires that the component lacks (with the
    /// version range expected, e.g. `wasi:http/incoming-handler@0.2.x`).
    pub missing_exports: Vec<String>,
    /// Imports of the component that the world does not provide.
    pub unsupported_imports: Vec<String>,
}

impl Conformance {
    /// Whether the component fits the world.
    pub fn is_ok(&self) -> bool {
        self.missing_exports.is_empty() && self.unsupported_imports.is_empty()
    }
}

/// A world: the interfaces it requires the component to export, and the
/// interfaces it provides for import, all within one WASI minor version.
struct World {
    name: &'static str,
    minor: u64,
    exports: &'static [&'static str],
    /// `pkg/iface` or `pkg/*` patterns (namespace `wasi` implied).
    imports: &'static [&'static str],
    /// Whether it provides Spin's interfaces too.
    spin: bool,
}

/// Spin's platform interfaces the wasmops host provides: the interface,
/// its major version, and the capability it grants.
pub(crate) const SPIN_INTERFACES: &[(&str, u64, &str)] = &[
    ("fermyon:spin/key-value", 2, "key-value"),
    ("fermyon:spin/variables", 2, "config"),
    ("fermyon:spin/sqlite", 2, "sqlite"),
    ("fermyon:spin/redis", 2, "outbound-redis"),
    ("spin:key-value/key-value", 3, "key-value"),
    ("spin:variables/variables", 3, "config"),
    ("spin:sqlite/sqlite", 3, "sqlite"),
    ("spin:redis/redis", 3, "outbound-redis"),
];

/// The capability of `name` if it is one of Spin's interfaces the host
/// provides (at its major version).
/// Whether `name` is in one of Spin's namespaces (`fermyon:spin/*`,
/// `spin:*`): provided by the host, or answered with the interface's errors.
pub(crate) fn is_spin_namespace(name: &str) -> bool {
    name.starts_with("fermyon:spin/") || name.starts_with("spin:")
}

pub(crate) fn spin_capability(name: &str) -> Option<&'static str> {
    let (base, version) = name.split_once('@')?;
    let v = semver::Version::parse(version).ok()?;
    SPIN_INTERFACES
        .iter()
        .find(|(n, major, _)| *n == base && v.major == *major)
        .map(|(.., cap)| *cap)
}

const WORLDS: &[World] = &[
    // What `wasmops serve`, `up` and the node give an HTTP component: the
    // proxy world and what language runtimes import besides (Rust's std,
    // componentize-js and componentize-py import `wasi:cli`, filesystem
    // and socket interfaces; each is granted or denied at run time), with
    // the key-value and config interfaces of the host, and Spin's.
    World {
        name: "wasmops:host/http",
        minor: 2,
        exports: &["http/incoming-handler"],
        imports: &[
            "io/*",
            "clocks/*",
            "random/*",
            "cli/*",
            "filesystem/*",
            "sockets/*",
            "http/*",
            "keyvalue/*",
            "config/*",
        ],
        spin: true,
    },
    World {
        name: "wasi:http/proxy",
        minor: 2,
        exports: &["http/incoming-handler"],
        imports: &[
            "io/*",
            "clocks/*",
            "random/*",
            "cli/stdout",
            "cli/stderr",
            "cli/stdin",
            "http/types",
            "http/outgoing-handler",
        ],
        spin: false,
    },
    World {
        name: "wasi:cli/command",
        minor: 2,
        exports: &["cli/run"],
        imports: &[
            "io/*",
            "clocks/*",
            "random/*",
            "cli/*",
            "filesystem/*",
            "sockets/*",
        ],
        spin: false,
    },
    World {
        name: "wasi:http/service",
        minor: 3,
        exports: &["http/handler"],
        imports: &[
            "clocks/*",
            "random/*",
            "cli/stdout",
            "cli/stderr",
            "cli/stdin",
            "http/types",
            "http/client",
            "http/handler",
        ],
        spin: false,
    },
];

/// Whether `name` is `wasi:<pattern>@0.<minor>.x` (pre-releases included).
fn matches_world_item(name: &str, pattern: &str, minor: u64) -> bool {
    let Some(n) = InterfaceName::parse(name) else {
        return false;
    };
    if n.namespace != "wasi" {
        return false;
    }
    let Some((pkg, iface)) = pattern.split_once('/') else {
        return false;
    };
    if n.package != pkg || (iface != "*" && n.interface != iface) {
        return false;
    }
    match n.version.and_then(|v| semver::Version::parse(v).ok()) {
        Some(v) => v.major == 0 && v.minor == minor,
        None => false,
    }
}

/// Checks a component against a target world: `wasi:http/proxy` and
/// `wasi:cli/command` (any 0.2.x), or `wasi:http/service` (any 0.3.x,
/// release candidates included).
pub fn conforms(bytes: &[u8], world: &str) -> Result<Conformance, ConformError> {
    let w = WORLDS
        .iter()
        .find(|w| w.name == world)
        .ok_or_else(|| ConformError::UnknownWorld {
            world: world.to_string(),
        })?;
    let report = inspect(bytes)?;
    if report.kind != WasmKind::Component {
        return Err(ConformError::NotAComponent);
    }
    let mut out = Conformance {
        world: w.name.to_string(),
        ..Conformance::default()
    };
    for required in w.exports {
        let found = report.exports.iter().any(|e| {
            matches!(e.kind, ItemKind::Interface | ItemKind::Instance)
                && matches_world_item(&e.name, required, w.minor)
        });
        if !found {
            out.missing_exports
                .push(format!("wasi:{required}@0.{}.x", w.minor));
        }
    }
    for import in &report.imports {
        let name = import.interface_name();
        let allowed = matches!(import.kind, ItemKind::Interface | ItemKind::Instance)
            && (w
                .imports
                .iter()
                .any(|p| matches_world_item(name, p, w.minor))
                // Spin interfaces the host lacks are linked to functions
                // returning their errors: the component instantiates.
                || (w.spin && is_spin_namespace(name)));
        if !allowed {
            out.unsupported_imports.push(import.name.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_items() {
        assert!(matches_world_item(
            "wasi:http/incoming-handler@0.2.3",
            "http/incoming-handler",
            2
        ));
        assert!(!matches_world_item(
            "wasi:http/incoming-handler@0.3.0",
            "http/incoming-handler",
            2
        ));
        assert!(matches_world_item("wasi:io/poll@0.2.0", "io/*", 2));
        assert!(matches_world_item(
            "wasi:http/handler@0.3.0-rc-2025-09-16",
            "http/handler",
            3
        ));
        assert!(!matches_world_item("wasi:io/poll", "io/*", 2));
        assert!(!matches_world_item("acme:io/poll@0.2.0", "io/*", 2));
        assert_eq!(spin_capability("spin:sqlite/sqlite@3.1.0"), Some("sqlite"));
        assert_eq!(
            spin_capability("fermyon:spin/key-value@2.0.0"),
            Some("key-value")
        );
        assert_eq!(spin_capability("fermyon:spin/llm@2.0.0"), None);
        assert_eq!(spin_capability("spin:sqlite/sqlite@4.0.0"), None);
    }
}
