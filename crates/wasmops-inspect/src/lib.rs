//! Inspection, validation and supply-chain scanning of WebAssembly
//! components and core modules.
//!
//! The crate is a library: the `wasmops` command line wires it up. Every
//! entry point takes untrusted bytes and returns either a value or an error;
//! none of them panics on any input.
//!
//! # Inspecting
//!
//! [`inspect`] reads a binary and returns a [`Report`]:
//!
//! * the kind of file ([`WasmKind`]): a component or a core module;
//! * the imports and exports (for a component the top-level names such as
//!   `wasi:http/incoming-handler@0.2.0`, with their [`ItemKind`]; for a core
//!   module the `module`/`name` pairs);
//! * the WIT text of a component's world (decoded with
//!   [`wit_component::decode`] and printed with [`wit_component::WitPrinter`];
//!   `None` plus a note in [`Report::notes`] when that is not possible);
//! * the [`Capability`] list: what the imports let the code do, in plain words;
//! * the `producers` custom sections (of the component and of every nested
//!   core module, deduplicated);
//! * the metadata sections written by `wasm-metadata`: `name` /
//!   `component-name`, and the OCI-annotation style sections `authors`,
//!   `description`, `licenses`, `source`, `homepage`, `revision`, `version`;
//! * the Rust dependency list embedded by `cargo auditable` (the `.dep-v0`
//!   section, zlib-compressed JSON, searched in nested modules too, at most
//!   [`MAX_DEP_LIST_SIZE`] bytes once decompressed);
//! * the size of every top-level section, the total size, and the SHA-256 of
//!   the file.
//!
//! The report serializes to JSON with stable field names (snake_case) and
//! prints as text with [`Report::to_text`].
//!
//! # Capabilities
//!
//! Imports are mapped by package and interface name; versions are ignored.
//!
//! | id | derived from |
//! | --- | --- |
//! | `filesystem` | `wasi:filesystem/*`; preview 1 `fd_*`, `path_*` |
//! | `sockets` | `wasi:sockets/*`; preview 1 `sock_*` |
//! | `outbound-http` | `wasi:http/outgoing-handler`, `wasi:http/client`, an *imported* `wasi:http/handler` |
//! | `environment` | `wasi:cli/environment`; preview 1 `environ_*` |
//! | `arguments` | preview 1 `args_*` (components read arguments through `wasi:cli/environment`) |
//! | `clocks` | `wasi:clocks/*`; preview 1 `clock_*` |
//! | `random` | `wasi:random/*`; preview 1 `random_get` |
//! | `key-value` | `wasi:keyvalue/*`; Spin's `fermyon:spin/key-value@2`, `spin:key-value@3` |
//! | `config` | `wasi:config/*`; Spin's `fermyon:spin/variables@2`, `spin:variables@3` |
//! | `sqlite` | Spin's `fermyon:spin/sqlite@2`, `spin:sqlite@3` |
//! | `outbound-redis` | Spin's `fermyon:spin/redis@2`, `spin:redis@3` |
//! | `stdio` | `wasi:cli/stdin`, `stdout`, `stderr`, `terminal-*` |
//! | `exit` | `wasi:cli/exit`; preview 1 `proc_exit` |
//! | `incoming-http` | *exports* `wasi:http/incoming-handler` or `wasi:http/handler` |
//! | `cli-run` | *exports* `wasi:cli/run` |
//! | `wasi-preview1` | a core module importing `wasi_snapshot_preview1` (or `wasi_unstable`) |
//! | `unavailable-spin` | Spin's other interfaces (`fermyon:spin/*`, `spin:*`: PostgreSQL, MySQL, MQTT, LLM), which the host answers with their errors |
//! | `unknown-import` | any other import, except `wasi:io/*` and `wasi:http/types` which grant nothing by themselves |
//!
//! # Validating
//!
//! [`validate`] runs the wasmparser validator with a feature set
//! ([`features`]) matching what the wasmops host (wasmtime 48 with the
//! component model and component-model async enabled) accepts.
//! [`conforms`] checks a component against a target world, strictly by the
//! world's definition:
//!
//! | world | must export | may import |
//! | --- | --- | --- |
//! | `wasi:http/proxy` | `wasi:http/incoming-handler@0.2.x` | `wasi:io/*`, `wasi:clocks/*`, `wasi:random/*`, `wasi:cli/stdin`, `stdout`, `stderr`, `wasi:http/types`, `wasi:http/outgoing-handler` (all 0.2.x) |
//! | `wasi:cli/command` | `wasi:cli/run@0.2.x` | `wasi:io/*`, `wasi:clocks/*`, `wasi:random/*`, `wasi:cli/*`, `wasi:filesystem/*`, `wasi:sockets/*` (all 0.2.x) |
//! | `wasi:http/service` | `wasi:http/handler@0.3.x` | `wasi:clocks/*`, `wasi:random/*`, `wasi:cli/stdin`, `stdout`, `stderr`, `wasi:http/types`, `wasi:http/client`, `wasi:http/handler` (all 0.3.x, release candidates included) |
//!
//! Note that components built with Rust's standard library for
//! `wasm32-wasip2` also import `wasi:cli/environment`, `exit` and the
//! `terminal-*` interfaces, which the proxy world does not include: they
//! are listed in [`Conformance::unsupported_imports`] even though the
//! wasmops host provides them.
//!
//! # Scanning
//!
//! [`scan`] applies a [`scan::Policy`] to a report and checks its embedded
//! dependency list against a RustSec advisory database
//! ([`scan::AdvisoryDb`]). The result, a [`scan::ScanReport`], prints as JSON,
//! as a table, as SARIF 2.1.0 and, together with the [`Report`], as a
//! CycloneDX 1.5 SBOM.
//!
//! ## Rules
//!
//! | rule id | name | default severity | what it finds |
//! | --- | --- | --- | --- |
//! | `WOPS001` | `invalid-binary` | high | the binary does not validate with [`features`] |
//! | `WOPS002` | `denied-capability` | high | an import (or export) grants a capability listed in `deny_capabilities`; one finding per interface |
//! | `WOPS003` | `import-not-allowed` | high | an import matches none of the `allow_interfaces` patterns (only when that list is set) |
//! | `WOPS004` | `unknown-import` | high (policy `unknown_imports`) | an import the wasmops host does not know (capability `unknown-import`): the component would not instantiate |
//! | `WOPS005` | `size-limit` | medium | the file is larger than `max_size` |
//! | `WOPS006` | `missing-metadata` | low | a metadata section named in `require_metadata` is missing (top level and nested modules both count) |
//! | `WOPS007` | `missing-producers` | low | a producers field named in `require_producers` is missing |
//! | `WOPS008` | `old-toolchain` | high | a `processed-by`/`sdk` producer is older than a `banned_toolchains` floor (versions compared by their leading `x.y.z`) |
//! | `WOPS009` | `unreadable-dependency-list` | low | the embedded dependency list (`.dep-v0`) is present but cannot be read (not zlib, not the expected JSON, over the size cap) |
//! | `WOPS010` | `no-dependency-list` | info | an advisory database was given but the binary embeds no dependency list |
//! | `WOPS011` | `undecodable-wit` | info | a valid component whose WIT world cannot be decoded |
//! | `WOPS012` | `unavailable-spin-interface` | low | an import of a Spin interface the host does not implement (capability `unavailable-spin`): it links, and calls to it return the interface's errors |
//!
//! Every severity can be changed, or the rule turned off, in the policy's
//! `[severity]` table (`WOPS006 = "medium"`, `WOPS010 = "off"`).
//!
//! Advisories found in the dependency list are reported as
//! [`scan::Vulnerability`] values; in SARIF their rule id is the advisory id
//! (`RUSTSEC-YYYY-NNNN`).
//!
//! ## Default policy
//!
//! A policy file ([`scan::Policy::from_toml`]) replaces the built-in policy:
//! a field it leaves out is not checked, except `unknown_imports`, which
//! stays `high` unless set to another severity or `"off"`. Unknown keys are
//! errors reported with their line and column.
//!
//! [`scan::Policy::default`] is meant to be quiet for ordinary components:
//!
//! * `deny_capabilities = []`, `allow_interfaces` unset (everything allowed);
//! * `unknown_imports = "high"`: an import the host cannot provide makes the
//!   component fail to instantiate, so it is reported as an error;
//! * `max_size = "64MiB"` (medium);
//! * `require_metadata = ["licenses"]` (low);
//! * `require_producers = []`, `banned_toolchains = []`.
//!
//! ## Advisory severities
//!
//! * withdrawn advisories are skipped;
//! * informational advisories (`unsound`, `unmaintained`) are reported with
//!   severity `low`, other informational kinds (`notice`, ...) with `info`,
//!   and carry [`scan::Vulnerability::informational`];
//! * real vulnerabilities take their severity from the CVSS vector (v3.0,
//!   v3.1 or v4.0, scored by the `cvss` crate: none → info, then low,
//!   medium, high, critical); an advisory without a vector (or with one that
//!   does not parse) is `medium`.
//!
//! Only dependencies whose source is `crates.io` (or absent / unrecognised)
//! are matched against the database: `git`, `local` and alternative
//! `registry` packages are different code under the same name.

#![warn(missing_docs)]

mod capabilities;
mod deps;
mod inspect;
mod report;
pub mod scan;
mod text;
mod util;
mod validate;

pub use capabilities::capability_ids;
pub use deps::{DepListError, MAX_DEP_LIST_SIZE, decode_dep_list};
pub use inspect::{InspectError, inspect};
pub use report::{
    Capability, Dependency, DependencyKind, Export, Import, ItemKind, Metadata, Producer, Report,
    SectionSize, WasmKind,
};
pub use scan::scan;
pub use validate::{
    ConformError, Conformance, KNOWN_WORLDS, ValidateError, conforms, features, validate,
};
/// The feature set type taken by [`validate`] (re-exported from wasmparser).
pub use wasmparser::WasmFeatures;
