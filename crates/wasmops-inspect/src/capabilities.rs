//! Mapping imports and exports to capabilities in plain words.

use crate::report::{Capability, Export, Import, ItemKind, WasmKind};

/// Every capability id, with its description, in report order.
const CAPABILITIES: &[(&str, &str)] = &[
    (
        "filesystem",
        "Reads and writes files in the directories the host preopens",
    ),
    (
        "sockets",
        "Opens TCP/UDP sockets and resolves names on the network",
    ),
    ("outbound-http", "Sends HTTP requests to other servers"),
    ("environment", "Reads environment variables"),
    ("arguments", "Reads its command-line arguments"),
    ("clocks", "Reads the wall clock and monotonic clock"),
    ("random", "Reads random bytes from the host"),
    ("key-value", "Reads and writes a key-value store"),
    ("config", "Reads runtime configuration values"),
    ("sqlite", "Queries an SQLite database"),
    ("outbound-redis", "Sends commands to Redis servers"),
    (
        "stdio",
        "Uses standard input, output, error or the terminal",
    ),
    ("exit", "Can end the process with an exit status"),
    (
        "incoming-http",
        "Serves incoming HTTP requests (exports an HTTP handler)",
    ),
    ("cli-run", "Runs as a command (exports wasi:cli/run)"),
    (
        "wasi-preview1",
        "Uses the WASI preview 1 (wasi_snapshot_preview1) interface",
    ),
    (
        "unavailable-spin",
        "Imports Spin interfaces the wasmops host does not implement (databases, MQTT, LLM); calls to them return errors",
    ),
    (
        "unknown-import",
        "Imports interfaces the wasmops host does not know; it may not instantiate",
    ),
];

/// The stable ids of all capabilities, in report order.
pub fn capability_ids() -> impl Iterator<Item = &'static str> {
    CAPABILITIES.iter().map(|(id, _)| *id)
}

pub(crate) fn is_capability_id(s: &str) -> bool {
    CAPABILITIES.iter().any(|(id, _)| *id == s)
}

/// A component interface name split into its parts:
/// `ns:pkg/iface@version` → (`ns`, `pkg`, `iface`, `version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceName<'a> {
    pub namespace: &'a str,
    pub package: &'a str,
    pub interface: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> InterfaceName<'a> {
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((p, v)) => (p, Some(v)),
            None => (name, None),
        };
        let (namespace, rest) = path.split_once(':')?;
        let (package, interface) = rest.split_once('/')?;
        if namespace.is_empty() || package.is_empty() || interface.is_empty() {
            return None;
        }
        Some(InterfaceName {
            namespace,
            package,
            interface,
            version,
        })
    }
}

/// What a component import grants, by interface name. `None` means the
/// import grants nothing by itself (`wasi:io/*`, `wasi:http/types`).
fn component_import_capability(name: &str) -> Option<&'static str> {
    let Some(n) = InterfaceName::parse(name) else {
        return Some("unknown-import");
    };
    // Spin's platform interfaces that the host provides; Spin's others
    // (LLM, MQTT, databases) are linked to functions returning their errors.
    if crate::validate::is_spin_namespace(name) {
        return Some(crate::validate::spin_capability(name).unwrap_or("unavailable-spin"));
    }
    if n.namespace == "fermyon" || n.namespace == "spin" {
        return Some("unknown-import");
    }
    if n.namespace != "wasi" {
        return Some("unknown-import");
    }
    let id = match (n.package, n.interface) {
        ("io", _) => return None,
        ("http", "types") => return None,
        ("filesystem", _) => "filesystem",
        ("sockets", _) => "sockets",
        ("http", "outgoing-handler" | "client" | "handler") => "outbound-http",
        ("cli", "environment") => "environment",
        ("cli", "stdin" | "stdout" | "stderr") => "stdio",
        ("cli", i) if i.starts_with("terminal-") => "stdio",
        ("cli", "exit") => "exit",
        ("clocks", _) => "clocks",
        ("random", _) => "random",
        ("keyvalue", _) => "key-value",
        ("config", _) => "config",
        _ => "unknown-import",
    };
    Some(id)
}

fn component_export_capability(name: &str) -> Option<&'static str> {
    let n = InterfaceName::parse(name)?;
    match (n.namespace, n.package, n.interface) {
        ("wasi", "http", "incoming-handler" | "handler") => Some("incoming-http"),
        ("wasi", "cli", "run") => Some("cli-run"),
        _ => None,
    }
}

fn is_preview1_module(module: &str) -> bool {
    module == "wasi_snapshot_preview1" || module == "wasi_unstable"
}

/// What a preview 1 function grants. `None` for functions that grant
/// nothing worth naming (`sched_yield`, `poll_oneoff`...).
fn preview1_capability(func: &str) -> Option<&'static str> {
    if func.starts_with("fd_") || func.starts_with("path_") {
        Some("filesystem")
    } else if func.starts_with("sock_") {
        Some("sockets")
    } else if func.starts_with("environ_") {
        Some("environment")
    } else if func.starts_with("clock_") {
        Some("clocks")
    } else if func == "random_get" {
        Some("random")
    } else if func == "proc_exit" {
        Some("exit")
    } else if func.starts_with("args_") {
        Some("arguments")
    } else {
        None
    }
}

/// Derives the capability list of a binary from its imports and exports.
pub(crate) fn derive(kind: WasmKind, imports: &[Import], exports: &[Export]) -> Vec<Capability> {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    match kind {
        WasmKind::Component => {
            for i in imports {
                let iface = i.interface_name();
                // A plain function or type import is not an interface the host
                // could know: it is always "unknown".
                let cap = match i.kind {
                    ItemKind::Interface | ItemKind::Instance => component_import_capability(iface),
                    _ if i.implements.is_some() => component_import_capability(iface),
                    _ => Some("unknown-import"),
                };
                if let Some(id) = cap {
                    found.push((id, i.name.clone()));
                }
            }
            for e in exports {
                if let Some(id) = component_export_capability(&e.name) {
                    found.push((id, e.name.clone()));
                }
            }
        }
        WasmKind::Module => {
            for i in imports {
                let module = i.module.as_deref().unwrap_or_default();
                if is_preview1_module(module) {
                    found.push(("wasi-preview1", module.to_string()));
                    if let Some(id) = preview1_capability(&i.name) {
                        found.push((id, i.display_name()));
                    }
                } else {
                    found.push(("unknown-import", i.display_name()));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (id, description) in CAPABILITIES {
        let mut interfaces: Vec<String> = found
            .iter()
            .filter(|(f, _)| f == id)
            .map(|(_, n)| n.clone())
            .collect();
        if interfaces.is_empty() {
            continue;
        }
        let mut seen = std::collections::HashSet::new();
        interfaces.retain(|n| seen.insert(n.clone()));
        out.push(Capability {
            id,
            description: description.to_string(),
            interfaces,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        let n = InterfaceName::parse("wasi:http/outgoing-handler@0.2.0").unwrap();
        assert_eq!(n.namespace, "wasi");
        assert_eq!(n.package, "http");
        assert_eq!(n.interface, "outgoing-handler");
        assert_eq!(n.version, Some("0.2.0"));
        assert!(InterfaceName::parse("log").is_none());
        assert!(InterfaceName::parse("a:/b").is_none());
    }

    #[test]
    fn import_mapping() {
        let cases = [
            ("wasi:filesystem/types@0.2.0", Some("filesystem")),
            ("wasi:sockets/tcp@0.2.3", Some("sockets")),
            ("wasi:http/outgoing-handler@0.2.0", Some("outbound-http")),
            (
                "wasi:http/client@0.3.0-rc-2025-09-16",
                Some("outbound-http"),
            ),
            ("wasi:cli/environment@0.2.0", Some("environment")),
            ("wasi:cli/stdout@0.2.0", Some("stdio")),
            ("wasi:cli/terminal-output@0.2.0", Some("stdio")),
            ("wasi:cli/exit@0.2.0", Some("exit")),
            ("wasi:clocks/monotonic-clock@0.2.0", Some("clocks")),
            ("wasi:random/random@0.2.0", Some("random")),
            ("wasi:keyvalue/store@0.2.0-draft", Some("key-value")),
            ("wasi:config/store@0.2.0-draft", Some("config")),
            ("wasi:io/streams@0.2.0", None),
            ("wasi:http/types@0.2.0", None),
            ("fermyon:spin/key-value@2.0.0", Some("key-value")),
            ("fermyon:spin/variables@2.0.0", Some("config")),
            ("fermyon:spin/sqlite@2.0.0", Some("sqlite")),
            ("fermyon:spin/redis@2.0.0", Some("outbound-redis")),
            ("spin:key-value/key-value@3.0.0", Some("key-value")),
            ("spin:variables/variables@3.0.0", Some("config")),
            ("spin:sqlite/sqlite@3.1.0", Some("sqlite")),
            ("spin:redis/redis@3.0.0", Some("outbound-redis")),
            ("spin:mqtt/mqtt@3.0.0", Some("unavailable-spin")),
            ("fermyon:spin/llm@2.0.0", Some("unavailable-spin")),
            ("fermyon:other/thing@1.0.0", Some("unknown-import")),
            ("acme:db/query@1.0.0", Some("unknown-import")),
            ("wasi:nn/graph", Some("unknown-import")),
        ];
        for (name, want) in cases {
            assert_eq!(component_import_capability(name), want, "{name}");
        }
    }
}
