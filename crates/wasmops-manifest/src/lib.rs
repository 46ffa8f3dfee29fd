//! The `wasmops.toml` app manifest: parsing with source positions,
//! validation, and resolution into plain types for the runtime.
//!
//! Every error is one line, `{path}:{line}:{col}: {message}; hint: {hint}`,
//! pointing at the offending key or value.
//!
//! ```no_run
//! let app = wasmops_manifest::load(std::path::Path::new("wasmops.toml"))?;
//! for component in &app.components {
//!     println!("{} <- {}", component.id, component.source.display());
//! }
//! # Ok::<(), wasmops_manifest::ManifestError>(())
//! ```

mod dotenv;
mod error;
mod raw;
mod routes;
mod spin;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ManifestError;
pub use routes::{Route, default_outbound_host_check};
pub use spin::{SPIN_FILE_NAME, apply_runtime_config};
pub use units::{parse_duration, parse_size};

/// The file name of a manifest.
pub const FILE_NAME: &str = "wasmops.toml";

/// Prefix of the environment variables that give values to app variables:
/// `WASMOPS_VARIABLE_<NAME>` with the name in upper case.
pub const VARIABLE_ENV_PREFIX: &str = "WASMOPS_VARIABLE_";

/// Default linear memory limit of an instance (128 MiB).
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// Default time limit to handle a request (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of requests a component handles at once.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// Checks whose rules are defined outside of this crate.
pub struct Checks<'a> {
    /// Checks one entry of `allowed_outbound_hosts`; `Err(message)` is
    /// reported at the entry.
    pub outbound_host: &'a dyn Fn(&str) -> Result<(), String>,
}

impl Default for Checks<'static> {
    /// The checks used by [`load`]: [`default_outbound_host_check`].
    fn default() -> Self {
        Checks {
            outbound_host: &default_outbound_host_check,
        }
    }
}

impl fmt::Debug for Checks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checks").finish_non_exhaustive()
    }
}

/// A validated app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Absolute path of the manifest.
    pub manifest_path: PathBuf,
    /// Absolute path of the directory of the manifest (the app directory).
    pub dir: PathBuf,
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    /// `[app] memory_budget`, in bytes.
    pub memory_budget: Option<u64>,
    /// The declared variables, in manifest order.
    pub variables: Vec<Variable>,
    /// The declared stores and those only named by components, sorted by
    /// label.
    pub key_value: Vec<KvStore>,
    /// The SQLite databases components name, sorted by label.
    pub sqlite: Vec<SqliteDatabase>,
    /// The components, in manifest order.
    pub components: Vec<ComponentSpec>,
    /// Deployment environments, in manifest order.
    pub environments: Vec<Environment>,
    /// Smoke tests (`[[test]]`), in manifest order.
    pub tests: Vec<SmokeTest>,
}

/// A smoke test (`[[test]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeTest {
    pub name: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expect: Expect,
}

/// What a smoke test's response must show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// `None`: any 2xx.
    pub status: Option<u16>,
    /// Lower-case names and exact values.
    pub headers: Vec<(String, String)>,
    pub body_contains: Option<String>,
    /// JSON pointers and their values.
    pub json: Vec<(String, serde_json::Value)>,
}

/// A deployment environment of the app (`[environments.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// The node's admin API URL.
    pub node: Option<String>,
    /// The CA of the node's certificate, resolved against the app
    /// directory.
    pub ca: Option<PathBuf>,
    pub hosts: Vec<String>,
    /// Where the app's traffic reaches it (for `wasmops test --env`).
    pub url: Option<String>,
    pub kube: Option<KubeSettings>,
}

/// `[environments.NAME.kube]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeSettings {
    pub image: Option<String>,
    pub reference: Option<String>,
    pub namespace: Option<String>,
    pub fleet: Option<String>,
    pub replicas: Option<u32>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    pub cpu: Option<String>,
    pub memory: Option<u64>,
    pub memory_limit: Option<u64>,
}

impl App {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}

/// A declared app variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
    pub description: Option<String>,
}

/// A key-value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStore {
    pub label: String,
    pub backend: KvBackend,
}

/// A dependency of a component (`[component.ID.dependencies]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What it fills: `ns:pkg/iface[@version]` or `ns:pkg[@version]`.
    pub import: String,
    pub source: DependencySource,
    /// The dependency's export to use, when named.
    pub export: Option<String>,
}

/// Where a dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencySource {
    /// A component file (absolute path).
    Path(PathBuf),
    /// Another component of the app, by id.
    Component(String),
    /// A component in an OCI registry, by reference; the commands that
    /// need its bytes pull it first (see `DependencySource::Path`).
    Reference(String),
}

/// An embedded SQLite database of the app (Spin's `sqlite_databases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteDatabase {
    pub label: String,
    /// Absolute path of the database file.
    pub path: PathBuf,
}

/// Where a key-value store keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum KvBackend {
    /// A database file on the local disk.
    Embedded {
        /// Absolute path of the database file.
        path: PathBuf,
        durability: Durability,
    },
    /// A Redis server; the URL may hold a password (`Debug` hides it).
    Redis { url: String },
}

impl fmt::Debug for KvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvBackend::Embedded { path, durability } => f
                .debug_struct("Embedded")
                .field("path", path)
                .field("durability", durability)
                .finish(),
            KvBackend::Redis { url } => f
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

/// `redis://user:password@host` -> `redis://user:<redacted>@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let user = if userinfo.contains(':') {
                format!("{user}:<redacted>")
            } else {
                "<redacted>".to_string()
            };
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// When a write to an embedded store is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Written data survives a crash of the process.
    #[default]
    Process,
    /// Written data is flushed to disk and survives a power loss.
    Fsync,
}

/// A component of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    pub id: String,
    /// Absolute path of the `.wasm` file.
    pub source: PathBuf,
    pub description: Option<String>,
    /// Its routes, in manifest order (empty: not routed).
    pub routes: Vec<Route>,
    /// As written, each accepted by [`Checks::outbound_host`].
    pub allowed_outbound_hosts: Vec<String>,
    /// Labels of the stores it may open (each is in [`App::key_value`]).
    pub key_value_stores: Vec<String>,
    /// Labels of the SQLite databases it may open (each is in
    /// [`App::sqlite`]).
    pub sqlite_databases: Vec<String>,
    /// Components composed with it to fill its imports, in manifest order.
    pub dependencies: Vec<Dependency>,
    /// Whether its dependencies may import what carries its configuration.
    pub dependencies_inherit_configuration: bool,
    /// Names of the app variables it may read (each is declared).
    pub variables: Vec<String>,
    /// What the component reads as its variables (`wasi:config`, Spin's
    /// `variables`): (name, template), the template's `{{ app_variable }}`
    /// parts replaced by values. A wasmops manifest's `variables = ["x"]`
    /// gives `("x", "{{ x }}")`; a Spin manifest's component variables are
    /// templates of their own.
    pub config: Vec<(String, String)>,
    /// Directories mounted read-only.
    pub files: Vec<FileMount>,
    /// Environment variables, in manifest order.
    pub environment: Vec<(String, String)>,
    pub limits: ComponentLimits,
    /// `instance_reuse = N`: an instance serves up to N requests.
    pub instance_reuse: Option<InstanceReuse>,
    /// How to build `source`, when the manifest says.
    pub build: Option<BuildSpec>,
}

/// A component's `instance_reuse` setting, with where it is written (for
/// errors found when the component is loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests an instance serves before it is discarded (at least 1).
    pub requests: std::num::NonZeroU32,
    /// 1-based line and column of the value in the manifest.
    pub line: usize,
    pub col: usize,
}

/// A component's build recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub language: Language,
    /// Absolute path of the directory the toolchain runs in.
    pub dir: PathBuf,
    pub entry: Option<String>,
    pub world: Option<String>,
    pub wit: Option<String>,
    pub sources: Vec<String>,
    pub args: Vec<String>,
    /// `command`: the shell commands to run, in order (Spin's `build.command`).
    pub command: Vec<String>,
    /// Glob patterns (relative to `dir`) of the files `up --watch` watches;
    /// empty: every file of `dir`.
    pub watch: Vec<String>,
}

/// The languages `wasmops build` knows, and `command` for a build given as
/// shell commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    JavaScript,
    TypeScript,
    Python,
    C,
    Go,
    /// Shell commands that produce `source` (e.g. a Spin app's
    /// `[component.ID.build] command`).
    Command,
}

impl Language {
    pub const ALL: [Language; 7] = [
        Language::Rust,
        Language::JavaScript,
        Language::TypeScript,
        Language::Python,
        Language::C,
        Language::Go,
        Language::Command,
    ];

    /// The name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Python => "python",
            Language::C => "c",
            Language::Go => "go",
            Language::Command => "command",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        Some(match s {
            "rust" => Language::Rust,
            "javascript" | "js" => Language::JavaScript,
            "typescript" | "ts" => Language::TypeScript,
            "python" | "py" => Language::Python,
            "c" | "cpp" | "c++" => Language::C,
            "go" => Language::Go,
            "command" => Language::Command,
            _ => return None,
        })
    }
}

/// A host directory mounted read-only in a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// Absolute path of the directory on the host.
    pub source: PathBuf,
    /// Absolute path in the guest.
    pub destination: String,
    /// Glob patterns, relative to `source`, of the files mounted (Spin's
    /// `files = ["static/*.html"]`); empty: the whole directory.
    pub include: Vec<String>,
    /// Glob patterns, relative to the app directory, of files left out
    /// (Spin's `exclude_files`).
    pub exclude: Vec<String>,
}

impl FileMount {
    /// Whether only some of the directory's files are mounted.
    pub fn is_filtered(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }
}

/// Resource limits of a component; `None` means the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Bytes of linear memory per instance.
    pub memory: Option<u64>,
    /// Time to handle a request.
    pub timeout: Option<Duration>,
    /// Requests handled at once.
    pub concurrency: Option<usize>,
}

impl ComponentLimits {
    /// The memory limit, or [`DEFAULT_MEMORY`].
    pub fn memory_or_default(&self) -> u64 {
        self.memory.unwrap_or(DEFAULT_MEMORY)
    }
    /// The timeout, or [`DEFAULT_TIMEOUT`].
    pub fn timeout_or_default(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
    /// The concurrency limit, or [`DEFAULT_CONCURRENCY`].
    pub fn concurrency_or_default(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }
}

/// The value of an app variable. `Debug` shows `<redacted>` for a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedVariable {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for ResolvedVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ResolvedVariable");
        s.field("name", &self.name);
        if self.secret {
            s.field("value", &format_args!("<redacted>"));
        } else {
            s.field("value", &self.value);
        }
        s.field("secret", &self.secret).finish()
    }
}

/// The app manifest in `dir`: `wasmops.toml`, else Spin's `spin.toml`.
pub fn manifest_in(dir: &Path) -> Option<PathBuf> {
    [FILE_NAME, spin::SPIN_FILE_NAME]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Whether `path` names an app: a directory holding a manifest, or a
/// manifest file (`wasmops.toml`, `spin.toml`).
pub fn is_app_path(path: &Path) -> bool {
    if path.is_dir() {
        return manifest_in(path).is_some();
    }
    path.file_name()
        .is_some_and(|n| n == FILE_NAME || n == spin::SPIN_FILE_NAME)
}

/// Loads and validates a manifest. `path` is the manifest file, or a
/// directory containing `wasmops.toml`. Outbound hosts are checked with
/// [`default_outbound_host_check`].
pub fn load(path: &Path) -> Result<App, ManifestError> {
    load_with(path, &Checks::default())
}

/// Like [`load`], with the given checks.
pub fn load_with(path: &Path, checks: &Checks) -> Result<App, ManifestError> {
    let display = path.display().to_string();
    let file = if path.is_dir() {
        let file = path.join(FILE_NAME);
        let spin = path.join(spin::SPIN_FILE_NAME);
        if file.is_file() {
            file
        } else if spin.is_file() {
            spin
        } else {
            return Err(ManifestError::without_position(
                display,
                format!("no `{FILE_NAME}` (or Spin's `spin.toml`) in this directory"),
                Some(format!(
                    "create `{FILE_NAME}` there, or give the path of the manifest"
                )),
            ));
        }
    } else if path.exists() {
        path.to_path_buf()
    } else {
        return Err(ManifestError::without_position(
            display,
            "no such file or directory",
            Some(format!(
                "give the path of `{FILE_NAME}` or of the directory that holds it"
            )),
        ));
    };
    let display = file.display().to_string();
    let bytes = std::fs::read(&file).map_err(|e| {
        ManifestError::without_position(
            display.clone(),
            format!("cannot read the manifest: {e}"),
            None,
        )
    })?;
    if bytes.starts_with(b"\0asm") {
        let what = if bytes.get(4..8) == Some(&[1, 0, 0, 0][..]) {
            "a core WebAssembly module: run it with `wasmops run`"
        } else {
            "a WebAssembly component: serve it with `wasmops serve`, or name it as a component's `source` in a manifest"
        };
        return Err(ManifestError::without_position(
            display,
            "this is a WebAssembly file, not an app manifest",
            Some(format!("it is {what}")),
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let (line, col) = error::position_in(valid, valid.len());
        ManifestError {
            path: display.clone(),
            line,
            col,
            message: "the manifest is not valid UTF-8".into(),
            hint: Some("save the file as UTF-8".into()),
        }
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut app = parse_str(text, &display, dir, checks)?;
    app.manifest_path = absolute(&file);
    Ok(app)
}

/// Parses and validates a manifest given as text. `display_path` is the path
/// shown in errors; `dir` is the app directory, against which relative paths
/// are resolved (and in which `source` files must exist).
pub fn parse_str(
    text: &str,
    display_path: &str,
    dir: &Path,
    checks: &Checks,
) -> Result<App, ManifestError> {
    let dir = absolute(dir);
    let file_name = Path::new(display_path)
        .file_name()
        .map_or_else(|| FILE_NAME.into(), |n| n.to_os_string());
    let manifest_path = dir.join(file_name);
    validate::parse(text, display_path, &dir, &manifest_path, checks)
}

/// The JSON Schema of the manifest format, pretty-printed.
pub fn json_schema() -> String {
    raw::json_schema()
}

impl App {
    /// The directory where wasmops keeps the app's local state:
    /// `<dir>/.wasmops`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".wasmops")
    }

    /// Whether component `id` only serves as another component's dependency:
    /// it has no routes and some component names it in `dependencies`. It
    /// is composed into those components, not served itself.
    pub fn is_library(&self, id: &str) -> bool {
        self.component(id).is_some_and(|c| c.routes.is_empty())
            && self.components.iter().any(|c| {
                c.dependencies
                    .iter()
                    .any(|d| d.source == DependencySource::Component(id.to_string()))
            })
    }

    /// The component with this id.
    pub fn component(&self, id: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.id == id)
    }

    /// The store with this label.
    pub fn key_value_store(&self, label: &str) -> Option<&KvStore> {
        self.key_value.iter().find(|s| s.label == label)
    }

    /// Values of the app's variables, in declaration order. A value comes from
    /// the environment variable `WASMOPS_VARIABLE_<NAME>` (name in upper case)
    /// first, then from the dotenv file `<dir>/.env` (`NAME=value` or
    /// `WASMOPS_VARIABLE_NAME=value`), then from the default. A variable
    /// without any value is left out, unless it is required, which is an
    /// error. Secret values never appear in errors.
    ///
    /// `env` looks up an environment variable, e.g.
    /// `&|name| std::env::var(name).ok()`.
    pub fn resolve_variables(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedVariable>, ManifestError> {
        validate::resolve_variables(self, env)
    }
}

/// The name of the environment variable that sets an app variable:
/// `WASMOPS_VARIABLE_<NAME>`.
pub fn variable_env_name(name: &str) -> String {
    format!("{VARIABLE_ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// An absolute form of `path`: canonical when it exists.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}
