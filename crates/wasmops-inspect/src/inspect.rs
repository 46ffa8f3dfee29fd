//! Walking a binary and building a [`Report`].

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use wasmparser::{
    ComponentExternalKind, ComponentName, ComponentTypeRef, Encoding, ExternalKind, KnownCustom,
    Name, Parser, Payload, TypeRef, WasmFeatures,
};

use crate::capabilities;
use crate::deps::{self, DEP_SECTION};
use crate::report::{Export, Import, ItemKind, Metadata, Producer, Report, SectionSize, WasmKind};
use crate::util::sha256_hex;

/// Why a file could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The file does not start with the `\0asm` magic number.
    #[error("not a WebAssembly file (bad magic)")]
    BadMagic,
    /// The file is shorter than the 8-byte header.
    #[error("not a WebAssembly file (truncated header: {0} bytes)")]
    TruncatedHeader(usize),
    /// The binary structure could not be read.
    #[error("malformed WebAssembly at offset {offset:#x}: {message}")]
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What the parser said.
        message: String,
    },
}

impl InspectError {
    fn from_parser(e: wasmparser::BinaryReaderError) -> Self {
        InspectError::Malformed {
            offset: e.offset(),
            message: e.message().replace('\n', " "),
        }
    }
}

const MAGIC: &[u8; 4] = b"\0asm";

/// One level of nesting while walking: the top level, or a nested module
/// or component.
struct Scope {
    path: String,
    modules: usize,
    components: usize,
    metadata: Metadata,
}

impl Scope {
    fn new(path: String) -> Self {
        Scope {
            metadata: Metadata {
                scope: path.clone(),
                ..Metadata::default()
            },
            path,
            modules: 0,
            components: 0,
        }
    }

    fn child(&mut self, module: bool) -> Scope {
        let label = if module {
            self.modules += 1;
            format!("module[{}]", self.modules - 1)
        } else {
            self.components += 1;
            format!("component[{}]", self.components - 1)
        };
        if self.path.is_empty() {
            Scope::new(label)
        } else {
            Scope::new(format!("{}/{label}", self.path))
        }
    }
}

struct Walk {
    kind: Option<WasmKind>,
    imports: Vec<Import>,
    exports: Vec<Export>,
    producers: Vec<Producer>,
    producer_seen: HashSet<(String, String, String)>,
    top_metadata: Option<Metadata>,
    nested_metadata: Vec<Metadata>,
    has_dependency_list: bool,
    dependency_errors: Vec<String>,
    dependencies: Vec<crate::report::Dependency>,
    sections: Vec<SectionSize>,
    notes: Vec<String>,
}

/// Inspects a WebAssembly component or core module.
///
/// Returns an error only when the bytes are not WebAssembly or their
/// structure cannot be read; problems inside custom sections (producers,
/// metadata, the dependency list) and validation errors are reported in the
/// [`Report`] instead.
pub fn inspect(bytes: &[u8]) -> Result<Report, InspectError> {
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(InspectError::BadMagic);
    }
    if bytes.len() < 8 {
        return Err(InspectError::TruncatedHeader(bytes.len()));
    }
    let mut walk = Walk {
        kind: None,
        imports: Vec::new(),
        exports: Vec::new(),
        producers: Vec::new(),
        producer_seen: HashSet::new(),
        top_metadata: None,
        nested_metadata: Vec::new(),
        has_dependency_list: false,
        dependency_errors: Vec::new(),
        dependencies: Vec::new(),
        sections: Vec::new(),
        notes: Vec::new(),
    };
    walk.run(bytes)?;
    let Some(kind) = walk.kind else {
        return Err(InspectError::Malformed {
            offset: 0,
            message: "no header".to_string(),
        });
    };

    let validation_error = crate::validate::validate(bytes, crate::validate::features())
        .err()
        .map(|e| e.to_string());
    let valid = validation_error.is_none();

    let wit = if kind == WasmKind::Component {
        if valid {
            match decode_wit(bytes) {
                Ok(text) => Some(text),
                Err(e) => {
                    walk.notes.push(format!("WIT world not decoded: {e}"));
                    None
                }
            }
        } else {
            walk.notes
                .push("WIT world not decoded: the component does not validate".to_string());
            None
        }
    } else {
        None
    };

    let capabilities = capabilities::derive(kind, &walk.imports, &walk.exports);
    let dependency_list_error = if walk.dependency_errors.is_empty() {
        None
    } else {
        Some(walk.dependency_errors.join("; "))
    };
    Ok(Report {
        kind,
        size: bytes.len(),
        sha256: sha256_hex(bytes),
        valid,
        validation_error,
        imports: walk.imports,
        exports: walk.exports,
        wit,
        capabilities,
        producers: walk.producers,
        metadata: walk.top_metadata.unwrap_or_default(),
        nested_metadata: walk.nested_metadata,
        has_dependency_list: walk.has_dependency_list,
        dependency_list_error,
        dependencies: walk.dependencies,
        sections: walk.sections,
        notes: walk.notes,
    })
}

impl Walk {
    fn run(&mut self, bytes: &[u8]) -> Result<(), InspectError> {
        let mut parser = Parser::new(0);
        // Read with every feature on: inspection should describe whatever it
        // is given; `validate` decides what the host accepts.
        parser.set_features(WasmFeatures::all());
        let mut stack: Vec<Scope> = Vec::new();
        for payload in parser.parse_all(bytes) {
            let payload = payload.map_err(InspectError::from_parser)?;
            let depth = stack.len();
            if depth == 1
                && let Some((id, range)) = payload.as_section()
            {
                let name = match &payload {
                    Payload::CustomSection(c) => format!("custom:{}", c.name()),
                    _ => section_name(self.kind, id).to_string(),
                };
                self.sections.push(SectionSize {
                    id,
                    name,
                    offset: range.start,
                    size: range.len(),
                });
            }
            match payload {
                Payload::Version { encoding, .. } if stack.is_empty() => {
                    self.kind = Some(match encoding {
                        Encoding::Component => WasmKind::Component,
                        Encoding::Module => WasmKind::Module,
                    });
                    stack.push(Scope::new(String::new()));
                }
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                    let module = matches!(payload, Payload::ModuleSection { .. });
                    let child = match stack.last_mut() {
                        Some(parent) => parent.child(module),
                        None => Scope::new(String::new()),
                    };
                    stack.push(child);
                }
                Payload::End(_) => {
                    if let Some(scope) = stack.pop() {
                        if stack.is_empty() {
                            self.top_metadata = Some(scope.metadata);
                            break;
                        } else if !scope.metadata.is_empty() {
                            self.nested_metadata.push(scope.metadata);
                        }
                    }
                }
                Payload::ImportSection(reader) if depth == 1 => {
                    for import in reader.into_imports() {
                        let import = import.map_err(InspectError::from_parser)?;
                        self.imports.push(Import {
                            module: Some(import.module.to_string()),
                            name: import.name.to_string(),
                            implements: None,
                            kind: core_type_kind(&import.ty),
                        });
                    }
                }
                Payload::ExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export.map_err(InspectError::from_parser)?;
                        self.exports.push(Export {
                            name: export.name.to_string(),
                            kind: core_export_kind(export.kind),
                        });
                    }
                }
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import = import.map_err(InspectError::from_parser)?;
                        let name = import.name.name;
                        let kind = match import.ty {
                            ComponentTypeRef::Module(_) => ItemKind::Module,
                            ComponentTypeRef::Func(_) => ItemKind::Function,
                            ComponentTypeRef::Value(_) => ItemKind::Value,
                            ComponentTypeRef::Type(_) => ItemKind::Type,
                            ComponentTypeRef::Instance(_) => instance_kind(name),
                            ComponentTypeRef::Component(_) => ItemKind::Component,
                        };
                        self.imports.push(Import {
                            module: None,
                            name: name.to_string(),
                            implements: import.name.implements.map(str::to_string),
                            kind,
                        });
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export.map_err(InspectError::from_parser)?;
                        let name = export.name.name;
                        let kind = match export.kind {
                            ComponentExternalKind::Module => ItemKind::Module,
                            ComponentExternalKind::Func => ItemKind::Function,
                            ComponentExternalKind::Value => ItemKind::Value,
                            ComponentExternalKind::Type => ItemKind::Type,
                            ComponentExternalKind::Instance => instance_kind(name),
                            ComponentExternalKind::Component => ItemKind::Component,
                        };
                        self.exports.push(Export {
                            name: name.to_string(),
                            kind,
                        });
                    }
                }
                Payload::CustomSection(custom) => {
                    if let Some(scope) = stack.last_mut() {
                        self.custom_section(&custom, scope);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn custom_section(&mut self, custom: &wasmparser::CustomSectionReader<'_>, scope: &mut Scope) {
        let where_ = if scope.path.is_empty() {
            String::new()
        } else {
            format!(" in {}", scope.path)
        };
        match custom.name() {
            "producers" => {
                if let Err(e) = self.read_producers(custom) {
                    self.notes
                        .push(format!("unreadable producers section{where_}: {e}"));
                }
            }
            "name" | "component-name" => {
                if let Err(e) = read_name(custom, &mut scope.metadata) {
                    self.notes
                        .push(format!("unreadable {} section{where_}: {e}", custom.name()));
                }
            }
            DEP_SECTION => {
                self.has_dependency_list = true;
                match deps::decode_dep_list(custom.data()) {
                    Ok(list) => deps::merge_into(&mut self.dependencies, list),
                    Err(e) => self.dependency_errors.push(format!("{e}{where_}")),
                }
            }
            other => {
                if let Some(slot) = scope.metadata.slot(other) {
                    match std::str::from_utf8(custom.data()) {
                        Ok(s) => *slot = Some(s.to_string()),
                        Err(_) => self
                            .notes
                            .push(format!("metadata section `{other}`{where_} is not UTF-8")),
                    }
                }
            }
        }
    }

    fn read_producers(
        &mut self,
        custom: &wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), wasmparser::BinaryReaderError> {
        let KnownCustom::Producers(reader) = custom.as_known() else {
            return Ok(());
        };
        // Collect first so that a section with an error midway adds nothing.
        let mut found = Vec::new();
        for field in reader {
            let field = field?;
            for value in field.values {
                let value = value?;
                found.push(Producer {
                    field: field.name.to_string(),
                    name: value.name.to_string(),
                    version: value.version.to_string(),
                });
            }
        }
        for p in found {
            let key = (p.field.clone(), p.name.clone(), p.version.clone());
            if self.producer_seen.insert(key) {
                self.producers.push(p);
            }
        }
        Ok(())
    }
}

fn read_name(
    custom: &wasmparser::CustomSectionReader<'_>,
    metadata: &mut Metadata,
) -> Result<(), wasmparser::BinaryReaderError> {
    match custom.as_known() {
        KnownCustom::Name(reader) => {
            for name in reader {
                if let Name::Module { name, .. } = name? {
                    metadata.name = Some(name.to_string());
                }
            }
        }
        KnownCustom::ComponentName(reader) => {
            for name in reader {
                if let ComponentName::Component { name, .. } = name? {
                    metadata.name = Some(name.to_string());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn instance_kind(name: &str) -> ItemKind {
    if capabilities::InterfaceName::parse(name).is_some() {
        ItemKind::Interface
    } else {
        ItemKind::Instance
    }
}

fn core_type_kind(ty: &TypeRef) -> ItemKind {
    match ty {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => ItemKind::Function,
        TypeRef::Table(_) => ItemKind::Table,
        TypeRef::Memory(_) => ItemKind::Memory,
        TypeRef::Global(_) => ItemKind::Global,
        TypeRef::Tag(_) => ItemKind::Tag,
    }
}

fn core_export_kind(kind: ExternalKind) -> ItemKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ItemKind::Function,
        ExternalKind::Table => ItemKind::Table,
        ExternalKind::Memory => ItemKind::Memory,
        ExternalKind::Global => ItemKind::Global,
        ExternalKind::Tag => ItemKind::Tag,
    }
}

fn section_name(kind: Option<WasmKind>, id: u8) -> &'static str {
    match kind {
        Some(WasmKind::Component) => match id {
            0 => "custom",
            1 => "core-module",
            2 => "core-instance",
            3 => "core-type",
            4 => "component",
            5 => "instance",
            6 => "alias",
            7 => "type",
            8 => "canonical",
            9 => "start",
            10 => "import",
            11 => "export",
            12 => "value",
            _ => "unknown",
        },
        _ => match id {
            0 => "custom",
            1 => "type",
            2 => "import",
            3 => "function",
            4 => "table",
            5 => "memory",
            6 => "global",
            7 => "export",
            8 => "start",
            9 => "element",
            10 => "code",
            11 => "data",
            12 => "data-count",
            13 => "tag",
            _ => "unknown",
        },
    }
}

/// Decodes the WIT world of a (valid) component and prints it.
fn decode_wit(bytes: &[u8]) -> Result<String, String> {
    // The decoder is only run on binaries that validated; the unwind guard is
    // a second line of defence so that a decoder bug cannot take the caller
    // down with it.
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<String, String> {
        let decoded = wit_component::decode(bytes).map_err(|e| format!("{e:#}"))?;
        let resolve = decoded.resolve();
        let pkg = decoded.package();
        let mut printer = wit_component::WitPrinter::default();
        printer.emit_docs(false);
        printer
            .print(resolve, pkg, &[])
            .map_err(|e| format!("{e:#}"))?;
        Ok(printer.output.to_string())
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err("the WIT decoder failed unexpectedly".to_string()),
    }
}
