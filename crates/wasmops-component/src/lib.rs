//! Pure functions over the bytes of a WebAssembly file: what kind of file it
//! is, whether it is well formed, and turning a WASI preview1 core module into
//! a component. No IO happens here.

pub mod compose;

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// What a `.wasm` file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A component (layer 1 of the binary format).
    Component,
    /// A core WebAssembly module.
    CoreModule,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Component => "component",
            Kind::CoreModule => "core module",
        })
    }
}

/// Why bytes are not a usable WebAssembly file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty file: expected a WebAssembly binary")]
    Empty,
    #[error(
        "not a WebAssembly binary (it does not start with the `\\0asm` magic bytes); pass a compiled `.wasm` file"
    )]
    NotWasm,
    #[error("truncated WebAssembly header ({0} bytes); the file is incomplete")]
    TruncatedHeader(usize),
    #[error("unsupported WebAssembly binary version/layer {0:#x}")]
    UnknownVersion(u32),
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error("cannot adapt the core module to a component: {0}")]
    Adapt(String),
}

/// Tells a component from a core module by its header, without validating.
pub fn kind(bytes: &[u8]) -> Result<Kind, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if !bytes.starts_with(b"\0asm") {
        // Text format is accepted by the host; everything else is not wasm.
        return Err(DecodeError::NotWasm);
    }
    if bytes.len() < 8 {
        return Err(DecodeError::TruncatedHeader(bytes.len()));
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    match version {
        0x0000_0001 => Ok(Kind::CoreModule),
        0x0001_000d => Ok(Kind::Component),
        other => Err(DecodeError::UnknownVersion(other)),
    }
}

/// The WebAssembly features the wasmops host enables, for validation that
/// agrees with what the engine will accept.
pub fn host_features() -> WasmFeatures {
    WasmFeatures::default()
}

/// Validates a module or component completely; the error names the first
/// problem with its byte offset.
pub fn validate(bytes: &[u8]) -> Result<Kind, DecodeError> {
    let k = kind(bytes)?;
    let mut validator = Validator::new_with_features(host_features());
    validator
        .validate_all(bytes)
        .map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
    Ok(k)
}

/// Whether a core module imports WASI preview1 (`wasi_snapshot_preview1`) and
/// whether it exports `_start` (a command) or not (a reactor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreModuleInfo {
    pub imports_preview1: bool,
    pub has_start: bool,
    pub other_import_modules: Vec<String>,
}

pub fn core_module_info(bytes: &[u8]) -> Result<CoreModuleInfo, DecodeError> {
    let mut info = CoreModuleInfo::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
        match payload {
            Payload::ImportSection(reader) => {
                for imports in reader {
                    let imports =
                        imports.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
                    for import in imports {
                        let (_, import) =
                            import.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
                        if import.module == "wasi_snapshot_preview1" {
                            info.imports_preview1 = true;
                        } else if !info.other_import_modules.iter().any(|m| m == import.module) {
                            info.other_import_modules.push(import.module.to_string());
                        }
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export =
                        export.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
                    if export.name == "_start" {
                        info.has_start = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Turns a WASI preview1 core module into a component with the preview1
/// adapter: the command adapter when the module exports `_start`, the reactor
/// adapter otherwise.
pub fn componentize_preview1(module: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let info = core_module_info(module)?;
    if !info.other_import_modules.is_empty() {
        return Err(DecodeError::Adapt(format!(
            "it imports modules other than WASI preview1 ({}); only `wasi_snapshot_preview1` imports can be adapted",
            info.other_import_modules.join(", ")
        )));
    }
    let adapter = if info.has_start {
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER
    } else {
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
    };
    let encoder = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(|e| DecodeError::Adapt(one_line(&format!("{e:#}"))))?
        .adapter("wasi_snapshot_preview1", adapter)
        .map_err(|e| DecodeError::Adapt(one_line(&format!("{e:#}"))))?;
    let mut encoder = encoder;
    encoder
        .encode()
        .map_err(|e| DecodeError::Adapt(one_line(&format!("{e:#}"))))
}

/// Bytes that instantiating `bytes` (a module or a component, every core
/// module nested in it) copies into linear memories: the sum of the active
/// data segments. Passive segments are copied only when the guest asks.
pub fn initial_data_bytes(bytes: &[u8]) -> Result<u64, DecodeError> {
    let mut total = 0u64;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
        if let Payload::DataSection(reader) = payload {
            for data in reader {
                let data = data.map_err(|e| DecodeError::Invalid(one_line(&e.to_string())))?;
                if matches!(data.kind, wasmparser::DataKind::Active { .. }) {
                    total += data.data.len() as u64;
                }
            }
        }
    }
    Ok(total)
}

/// Folds a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_data_counts_active_segments_of_every_module() {
        let wat = r#"(component
            (core module $a (memory 1) (data (i32.const 0) "abcd") (data "passive"))
            (core module $b (memory 1) (data (i32.const 8) "0123456789")))"#;
        let bytes = wat::parse_str(wat).unwrap();
        assert_eq!(initial_data_bytes(&bytes).unwrap(), 14);
        let module = wat::parse_str(r#"(module (memory 1) (data (i32.const 0) "xy"))"#).unwrap();
        assert_eq!(initial_data_bytes(&module).unwrap(), 2);
        assert!(initial_data_bytes(b"\0asm\x01\0\0\0\x0b\x05").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(b"\0asm\x01\0\0\0").unwrap(), Kind::CoreModule);
        assert_eq!(kind(b"\0asm\x0d\0\x01\0").unwrap(), Kind::Component);
        assert!(matches!(kind(b""), Err(DecodeError::Empty)));
        assert!(matches!(kind(b"hello"), Err(DecodeError::NotWasm)));
        assert!(matches!(
            kind(b"\0asm\x01"),
            Err(DecodeError::TruncatedHeader(5))
        ));
        assert!(matches!(
            kind(b"\0asm\x02\0\0\0"),
            Err(DecodeError::UnknownVersion(2))
        ));
    }

    #[test]
    fn invalid_section_is_reported() {
        // A module header followed by a type section that claims more bytes than exist.
        let bytes = b"\0asm\x01\0\0\0\x01\x10\x01";
        let err = validate(bytes).unwrap_err().to_string();
        assert!(err.starts_with("invalid WebAssembly:"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn one_line_folds() {
        assert_eq!(one_line("a\n  b\n\nc"), "a: b: c");
    }
}
