//! The types of an inspection report.

use serde::Serialize;

/// What kind of WebAssembly binary a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasmKind {
    /// A component (component-model binary, layer 1).
    Component,
    /// A core WebAssembly module.
    Module,
}

impl WasmKind {
    /// The stable lowercase name: `component` or `module`.
    pub fn as_str(self) -> &'static str {
        match self {
            WasmKind::Component => "component",
            WasmKind::Module => "module",
        }
    }
}

/// The kind of an imported or exported item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    /// A component instance named by an interface id (`ns:pkg/name@version`).
    Interface,
    /// A component instance with a plain name.
    Instance,
    /// A function (component or core).
    Function,
    /// A type.
    Type,
    /// A core module.
    Module,
    /// A component.
    Component,
    /// A component value.
    Value,
    /// A core table.
    Table,
    /// A core memory.
    Memory,
    /// A core global.
    Global,
    /// A core exception tag.
    Tag,
}

impl ItemKind {
    /// The stable lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Interface => "interface",
            ItemKind::Instance => "instance",
            ItemKind::Function => "function",
            ItemKind::Type => "type",
            ItemKind::Module => "module",
            ItemKind::Component => "component",
            ItemKind::Value => "value",
            ItemKind::Table => "table",
            ItemKind::Memory => "memory",
            ItemKind::Global => "global",
            ItemKind::Tag => "tag",
        }
    }
}

/// One import of a component or core module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// For a core module, the module name (`wasi_snapshot_preview1`, `env`...);
    /// `None` for a component.
    pub module: Option<String>,
    /// The import name: for a component the top-level name
    /// (`wasi:http/outgoing-handler@0.2.0`), for a core module the field name.
    pub name: String,
    /// The interface this import implements, when the name carries an
    /// `implements` option (components only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implements: Option<String>,
    /// What is imported.
    pub kind: ItemKind,
}

impl Import {
    /// The name to show: `module::name` for a core import, the name otherwise.
    pub fn display_name(&self) -> String {
        match &self.module {
            Some(m) => format!("{m}::{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The interface name used to derive capabilities and to match policies:
    /// the `implements` option if there is one, else the name.
    pub fn interface_name(&self) -> &str {
        self.implements.as_deref().unwrap_or(&self.name)
    }
}

/// One export of a component or core module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The export name.
    pub name: String,
    /// What is exported.
    pub kind: ItemKind,
}

/// A capability the binary's imports (or exports) grant it, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// Stable identifier; see the table in the crate documentation.
    pub id: &'static str,
    /// One sentence saying what the capability allows.
    pub description: String,
    /// The imports (or exports) this capability was derived from.
    pub interfaces: Vec<String>,
}

/// One entry of a `producers` custom section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Producer {
    /// The field: `language`, `processed-by` or `sdk`.
    pub field: String,
    /// The producer name (`Rust`, `rustc`, `wit-component`...).
    pub name: String,
    /// Its version string as written (may be empty).
    pub version: String,
}

/// Metadata sections found at one level of the binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// Where the sections were found: empty for the top level, otherwise a
    /// path such as `module[0]` or `component[1]/module[0]`.
    pub scope: String,
    /// The module or component name from the `name` / `component-name` section.
    pub name: Option<String>,
    /// The `authors` section.
    pub authors: Option<String>,
    /// The `description` section.
    pub description: Option<String>,
    /// The `licenses` section (an SPDX expression by convention).
    pub licenses: Option<String>,
    /// The `source` section (source repository URL).
    pub source: Option<String>,
    /// The `homepage` section.
    pub homepage: Option<String>,
    /// The `revision` section (source revision, e.g. a commit hash).
    pub revision: Option<String>,
    /// The `version` section.
    pub version: Option<String>,
}

/// The names of the metadata fields, as written in policies (`require_metadata`).
pub(crate) const METADATA_FIELDS: &[&str] = &[
    "name",
    "authors",
    "description",
    "licenses",
    "source",
    "homepage",
    "revision",
    "version",
];

impl Metadata {
    /// The value of a metadata field by its section name (`licenses`...);
    /// `None` when absent or when `field` is not a metadata field.
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "name" => self.name.as_deref(),
            "authors" => self.authors.as_deref(),
            "description" => self.description.as_deref(),
            "licenses" => self.licenses.as_deref(),
            "source" => self.source.as_deref(),
            "homepage" => self.homepage.as_deref(),
            "revision" => self.revision.as_deref(),
            "version" => self.version.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn slot(&mut self, field: &str) -> Option<&mut Option<String>> {
        match field {
            "authors" => Some(&mut self.authors),
            "description" => Some(&mut self.description),
            "licenses" => Some(&mut self.licenses),
            "source" => Some(&mut self.source),
            "homepage" => Some(&mut self.homepage),
            "revision" => Some(&mut self.revision),
            "version" => Some(&mut self.version),
            _ => None,
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        METADATA_FIELDS.iter().all(|f| self.get(f).is_none())
    }
}

/// Whether a dependency is needed at run time or only to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// Compiled into the binary.
    Runtime,
    /// Only used at build time (build scripts, proc macros).
    Build,
}

/// A Rust package from the embedded `cargo auditable` dependency list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Crate name.
    pub name: String,
    /// Version as written (normally semver).
    pub version: String,
    /// Where it came from: `crates.io`, `git`, `local`, `registry`, or
    /// another string written by the tool.
    pub source: String,
    /// Runtime or build-only.
    pub kind: DependencyKind,
    /// Whether this is a root package (the crate that was built).
    pub root: bool,
    /// Indices (into [`Report::dependencies`]) of the packages this one
    /// depends on.
    pub dependencies: Vec<usize>,
}

/// The size of one top-level section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionSize {
    /// The section id byte (its meaning depends on [`Report::kind`]).
    pub id: u8,
    /// A readable name: `type`, `code`, `core-module`, `custom:producers`...
    pub name: String,
    /// Offset of the section contents in the file.
    pub offset: usize,
    /// Size of the section contents in bytes (without the id and length).
    pub size: usize,
}

/// Everything [`crate::inspect`] learned about a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Component or core module.
    pub kind: WasmKind,
    /// Total size of the file in bytes.
    pub size: usize,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// Whether the binary validates with [`crate::features`].
    pub valid: bool,
    /// The validation error when [`Report::valid`] is false.
    pub validation_error: Option<String>,
    /// Top-level imports.
    pub imports: Vec<Import>,
    /// Top-level exports.
    pub exports: Vec<Export>,
    /// The WIT text of the component's world, when it could be decoded.
    pub wit: Option<String>,
    /// Capabilities derived from the imports and exports.
    pub capabilities: Vec<Capability>,
    /// Producers of the binary and of its nested modules, deduplicated.
    pub producers: Vec<Producer>,
    /// Metadata sections at the top level.
    pub metadata: Metadata,
    /// Metadata sections found in nested modules and components (only scopes
    /// that have at least one field).
    pub nested_metadata: Vec<Metadata>,
    /// Whether an embedded dependency list (`.dep-v0`) was found.
    pub has_dependency_list: bool,
    /// Why an embedded dependency list could not be read, if so.
    pub dependency_list_error: Option<String>,
    /// The embedded Rust dependencies, merged over all nested modules.
    pub dependencies: Vec<Dependency>,
    /// Top-level sections with their sizes, in file order.
    pub sections: Vec<SectionSize>,
    /// Things worth knowing that are not errors (undecodable sections...).
    pub notes: Vec<String>,
}

impl Report {
    /// Serializes the report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Whether the binary, or any nested part, carries the metadata `field`.
    pub fn has_metadata(&self, field: &str) -> bool {
        self.metadata.get(field).is_some()
            || self.nested_metadata.iter().any(|m| m.get(field).is_some())
    }

    /// The first value of a metadata field: top level first, then nested.
    pub fn metadata_value(&self, field: &str) -> Option<&str> {
        self.metadata
            .get(field)
            .or_else(|| self.nested_metadata.iter().find_map(|m| m.get(field)))
    }

    /// Section sizes summed by section name, largest first:
    /// `(name, number of sections, total bytes)`.
    pub fn section_totals(&self) -> Vec<(String, usize, usize)> {
        let mut totals: Vec<(String, usize, usize)> = Vec::new();
        for s in &self.sections {
            match totals.iter_mut().find(|t| t.0 == s.name) {
                Some(t) => {
                    t.1 += 1;
                    t.2 += s.size;
                }
                None => totals.push((s.name.clone(), 1, s.size)),
            }
        }
        totals.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        totals
    }

    /// Whether the report has the given capability.
    pub fn has_capability(&self, id: &str) -> bool {
        self.capabilities.iter().any(|c| c.id == id)
    }
}
