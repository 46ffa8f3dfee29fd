//! What a component imports and exports, compared with what the host gives.

use wasmtime::Engine;
use wasmtime::component::Component;

/// Interfaces of WASI 0.2 that the host provides (any 0.2.x version).
const P2_PROVIDED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Interfaces of WASI 0.3 that the host provides (0.3.x releases).
const P3_PROVIDED: &[&str] = &[
    "wasi:clocks/types",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/system-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/types",
    "wasi:sockets/ip-name-lookup",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/types",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/client",
];

/// Interfaces provided at exactly one pre-release version.
const EXACT_PROVIDED: &[&str] = &[
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
    // The draft the Spin SDKs import.
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:config/store@0.2.0-rc.1",
    // Spin's platform interfaces (components built with the Spin SDKs).
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/variables@2.0.0",
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "fermyon:spin/sqlite@2.0.0",
    "fermyon:spin/redis@2.0.0",
    // The current Spin SDKs (WASIp3, asynchronous).
    "spin:key-value/key-value@3.0.0",
    "spin:variables/variables@3.0.0",
    "spin:sqlite/sqlite@3.0.0",
    "spin:sqlite/sqlite@3.1.0",
    "spin:redis/redis@3.0.0",
];

/// The `wasi:http` handler export of WASI 0.3 (the `service` world).
pub const P3_HTTP_HANDLER: &str = "wasi:http/handler";
/// The `wasi:http` handler export of WASI 0.2.
pub const P2_HTTP_HANDLER: &str = "wasi:http/incoming-handler";
/// The `wasi:cli` command export of WASI 0.2.
pub const P2_CLI_RUN: &str = "wasi:cli/run";

/// Splits `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
pub fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn provided(name: &str) -> bool {
    if EXACT_PROVIDED.contains(&name) {
        return true;
    }
    let (iface, version) = split_version(name);
    let p2 = version.is_some_and(|v| v.starts_with("0.2."));
    let p3 = version.is_some_and(|v| v.starts_with("0.3.") && !v.contains('-'));
    (p2 && P2_PROVIDED.contains(&iface)) || (p3 && P3_PROVIDED.contains(&iface))
}

/// Names of the component's top-level imports.
pub fn imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Names of the component's top-level exports.
pub fn exports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Imports the host does not provide (Spin interfaces it stands in for,
/// [`stand_in_imports`], aside).
pub fn missing_imports(component: &Component, engine: &Engine) -> Vec<String> {
    imports(component, engine)
        .into_iter()
        .filter(|n| !provided(n) && !crate::standin::is_spin_interface(n))
        .collect()
}

/// Spin interfaces the component imports that the host does not
/// implement: linked to stand-ins that return their errors
/// ([`crate::standin`]).
pub fn stand_in_imports(component: &Component, engine: &Engine) -> Vec<String> {
    imports(component, engine)
        .into_iter()
        .filter(|n| !provided(n) && crate::standin::is_spin_interface(n))
        .collect()
}

/// Whether the component exports an interface, any version.
pub fn exports_interface(component: &Component, engine: &Engine, iface: &str) -> bool {
    exports(component, engine)
        .iter()
        .any(|n| split_version(n).0 == iface)
}

/// Why a component cannot be used the way it was asked to be.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    #[error("the component imports interfaces this host does not provide: {}", .missing.join(", "))]
    MissingImports { missing: Vec<String> },
    #[error("{0}")]
    Link(String),
    #[error(
        "the component does not export {} ({what}); it exports: {}",
        .wanted.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" or "),
        if .exports.is_empty() { "nothing".to_string() } else { .exports.join(", ") }
    )]
    MissingExport {
        wanted: Vec<String>,
        what: &'static str,
        exports: Vec<String>,
    },
    #[error(
        "instance reuse does not apply: the component exports `{0}` (WASIp3), which wasmtime's concurrent handler serves, one request per instance"
    )]
    NotReusable(String),
}

impl WorldError {
    /// Explains a failed `instantiate_pre`: lists every missing import when
    /// they can be named, otherwise passes the linker's message on.
    pub fn from_link(component: &Component, engine: &Engine, err: &wasmtime::Error) -> Self {
        let missing = missing_imports(component, engine);
        if missing.is_empty() {
            WorldError::Link(wasmops_component::one_line(&format!("{err:#}")))
        } else {
            WorldError::MissingImports { missing }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_interfaces() {
        assert!(provided("wasi:cli/stdout@0.2.0"));
        assert!(provided("wasi:http/types@0.2.12"));
        assert!(provided("wasi:http/types@0.3.0"));
        assert!(!provided("wasi:http/types@0.3.0-rc-2025-09-16"));
        assert!(!provided("wasi:http/types@0.4.0"));
        assert!(provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(provided("wasi:keyvalue/store@0.2.0-draft2"));
        assert!(provided("spin:sqlite/sqlite@3.0.0"));
        assert!(!provided("fermyon:spin/llm@2.0.0"));
        assert!(provided("wasi:config/store@0.2.0-rc.1"));
        assert!(!provided("acme:widgets/frob@1.0.0"));
        assert!(!provided("wasi:cli/stdout"));
    }
}
