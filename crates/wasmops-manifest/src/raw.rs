//! The manifest as written: serde types that keep the source position of
//! every value that is checked after parsing. The JSON Schema is derived from
//! these types, so their doc comments are the descriptions editors show.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use serde_spanned::Spanned;

/// A `wasmops.toml` manifest: an app made of WebAssembly components served
/// behind HTTP routes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "wasmops.toml")]
pub(crate) struct RawManifest {
    /// Version of the manifest format. Must be `1`.
    #[schemars(with = "u32", required, extend("const" = 1))]
    #[allow(dead_code)] // checked before, from a `VersionProbe`
    pub manifest_version: Option<Spanned<i64>>,

    /// The app: its name and metadata.
    #[schemars(with = "RawApp", required)]
    pub app: Option<Spanned<RawApp>>,

    /// App variables, read by components through `wasi:config/store`. Each
    /// key is a variable name: lowercase letters, digits and `_`, starting
    /// with a letter.
    #[serde(default)]
    #[schemars(
        with = "BTreeMap<String, RawVariable>",
        extend("propertyNames" = { "pattern": "^[a-z][a-z0-9_]*$" })
    )]
    pub variables: Option<Entries<RawVariable>>,

    /// Key-value stores. A component may name only stores declared here,
    /// and `default`, which is an embedded store with the defaults unless
    /// declared. Each key is a store label: lowercase letters, digits, `-`
    /// and `_`, starting with a letter.
    #[serde(default)]
    #[schemars(
        with = "BTreeMap<String, RawKvStore>",
        extend("propertyNames" = { "pattern": "^[a-z][a-z0-9_-]*$" })
    )]
    pub key_value: Option<Entries<RawKvStore>>,

    /// The app's components, by id. An id is made of lowercase letters,
    /// digits, `-` and `_`, and starts with a letter. At least one component
    /// is required.
    #[schemars(
        with = "BTreeMap<String, RawComponent>",
        required,
        extend("propertyNames" = { "pattern": "^[a-z][a-z0-9_-]*$" }, "minProperties" = 1)
    )]
    pub component: Option<Entries<RawComponent>>,

    /// Where the app is deployed, by name (`staging`, `production`): the
    /// node `deploy`, `promote` and `apps` reach with `--env NAME`, and the
    /// fleet `kube render --env NAME` writes. Tokens never go here: they
    /// come from `WASMOPS_TOKEN` or the credentials file.
    #[serde(default)]
    #[schemars(
        with = "BTreeMap<String, RawEnvironment>",
        extend("propertyNames" = { "pattern": "^[a-z][a-z0-9_-]*$" })
    )]
    pub environments: Option<Entries<RawEnvironment>>,

    /// Smoke tests `wasmops test` runs against the app (served on a free
    /// port, or deployed in an environment): a request, and what the
    /// response must show.
    #[serde(default)]
    #[schemars(with = "Vec<RawTest>")]
    pub test: Option<Vec<Spanned<RawTest>>>,
}

/// A smoke test: one request and what its response must show.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
pub(crate) struct RawTest {
    /// The test's name in reports [default: METHOD PATH].
    #[serde(default)]
    pub name: Option<String>,
    /// The request method [default: GET].
    #[schemars(with = "String")]
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// The request path, with its query, e.g. `"/api/items?limit=2"`.
    #[schemars(with = "String", required)]
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// The `Host` header [default: the server's address, or the
    /// environment's first host].
    #[serde(default)]
    pub host: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The request body.
    #[serde(default)]
    pub body: Option<String>,
    /// What the response must show [default: a 2xx status].
    #[schemars(with = "RawExpect")]
    #[serde(default)]
    pub expect: Option<Spanned<RawExpect>>,
}

/// What a smoke test's response must show.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub(crate) struct RawExpect {
    /// The status code [default: any 2xx].
    #[schemars(with = "u16")]
    #[serde(default)]
    pub status: Option<Spanned<i64>>,
    /// Response headers and their exact values (names in any case).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// JSON pointers into the body (RFC 6901, e.g. `"/items/0/id"`) and the
    /// value each must have.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    #[serde(default)]
    pub json: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
}

/// A deployment environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Environment")]
pub(crate) struct RawEnvironment {
    /// The admin API of the environment's node, e.g.
    /// `"https://node.internal:9464"`.
    #[schemars(with = "String")]
    #[serde(default)]
    pub node: Option<Spanned<String>>,
    /// A PEM file with the CA that signed the node's certificate (relative
    /// to the app directory, or absolute).
    #[schemars(with = "String")]
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    /// Host names the app answers for in this environment.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Where the app's traffic reaches it in this environment (the nodes'
    /// HTTP listener or a load balancer), for `wasmops test --env NAME`.
    #[schemars(with = "String")]
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// The fleet `kube render --env NAME` writes (flags override these).
    #[schemars(with = "RawKube")]
    #[serde(default)]
    pub kube: Option<Spanned<RawKube>>,
}

/// Kubernetes settings of an environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Kube")]
pub(crate) struct RawKube {
    /// The node image, e.g. `"registry.example.com/wasmops-node:0.1.0"`.
    #[serde(default)]
    pub image: Option<String>,
    /// Where the app was pushed (`HOST/REPO@sha256:...` or a tag).
    #[serde(default)]
    pub reference: Option<String>,
    /// The namespace of the fleet's objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Names the fleet's objects (default `wasmops`).
    #[serde(default)]
    pub fleet: Option<String>,
    /// A fixed number of pods.
    #[schemars(with = "u32")]
    #[serde(default)]
    pub replicas: Option<Spanned<i64>>,
    /// Autoscale from this many pods.
    #[schemars(with = "u32")]
    #[serde(default)]
    pub min_replicas: Option<Spanned<i64>>,
    /// Autoscale up to this many pods.
    #[schemars(with = "u32")]
    #[serde(default)]
    pub max_replicas: Option<Spanned<i64>>,
    /// CPU request of a pod, a Kubernetes quantity (`"500m"`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory request of a pod, a size with a unit (`"512MiB"`).
    #[schemars(schema_with = "size_schema")]
    #[serde(default)]
    pub memory: Option<Spanned<Scalar>>,
    /// Memory limit of a pod.
    #[schemars(schema_with = "size_schema")]
    #[serde(default)]
    pub memory_limit: Option<Spanned<Scalar>>,
}

/// The `[app]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "App")]
pub(crate) struct RawApp {
    /// Name of the app: lowercase letters, digits and `-`, starting with a
    /// letter, at most 63 characters.
    #[schemars(
        with = "String",
        required,
        pattern(r"^[a-z][a-z0-9-]{0,62}$"),
        length(max = 63)
    )]
    pub name: Option<Spanned<String>>,
    /// Version of the app, free-form (e.g. `0.1.0`).
    #[serde(default)]
    pub version: Option<String>,
    /// What the app does.
    #[serde(default)]
    pub description: Option<String>,
    /// Memory the app's instances may hold at once: each running instance
    /// reserves its memory limit from it, and a request waits (then gets
    /// 503) while the budget is in use. A size with a unit, e.g. `"8GiB"`.
    /// Default: three quarters of the machine's (or the container's) memory.
    #[schemars(schema_with = "size_schema")]
    #[serde(default)]
    pub memory_budget: Option<Spanned<Scalar>>,
}

/// An app variable. A variable with neither `default` nor `required` is
/// optional: without a value it is absent from the configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Variable")]
pub(crate) struct RawVariable {
    /// Value used when neither the environment nor `.env` gives one.
    /// Cannot be combined with `required = true`.
    #[schemars(with = "String")]
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    /// The app does not start unless the variable has a value. Default
    /// `false`.
    #[schemars(with = "bool")]
    #[serde(default)]
    pub required: Option<Spanned<bool>>,
    /// The value is never shown in logs or error messages. Default `false`.
    #[serde(default)]
    pub secret: Option<bool>,
    /// What the variable is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// Backend of a key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Backend")]
pub(crate) enum RawBackend {
    /// A file-backed store on the local disk (the default).
    Embedded,
    /// A Redis server; keys are prefixed with `<app>:<store>:`.
    Redis,
}

/// When a write to an embedded store is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Durability")]
pub(crate) enum RawDurability {
    /// Written data survives a crash of the process (the default).
    Process,
    /// Written data is flushed to disk and survives a power loss (slower).
    Fsync,
}

/// A key-value store.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "KeyValueStore")]
pub(crate) struct RawKvStore {
    /// `embedded` (default) or `redis`.
    #[schemars(with = "RawBackend")]
    #[serde(default)]
    pub backend: Option<Spanned<RawBackend>>,
    /// Embedded only: the database file, relative to the app directory.
    /// Default `.wasmops/kv/<label>.db`.
    #[schemars(with = "String")]
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Embedded only: `process` (default) or `fsync`.
    #[schemars(with = "RawDurability")]
    #[serde(default)]
    pub durability: Option<Spanned<RawDurability>>,
    /// Redis only, required: `redis://HOST[:PORT][/DB]`, or `rediss://` for
    /// TLS.
    #[schemars(with = "String", pattern(r"^rediss?://."))]
    #[serde(default)]
    pub url: Option<Spanned<String>>,
}

/// A component: a WebAssembly component and how it is served.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Component")]
pub(crate) struct RawComponent {
    /// Path of the `.wasm` file, relative to the manifest's directory. The
    /// file must exist.
    #[schemars(with = "String", required)]
    pub source: Option<Spanned<String>>,
    /// What the component does.
    #[serde(default)]
    pub description: Option<String>,
    /// HTTP routes served by this component: a path, or an array of paths
    /// and `{ path, host }` tables. `/api/...` matches `/api` and everything
    /// under it; `/...` matches everything; any other path matches exactly.
    /// Without routes the component is not reachable over HTTP.
    #[schemars(schema_with = "route_schema")]
    #[serde(default)]
    pub route: Option<Spanned<RouteField>>,
    /// Hosts the component may send HTTP requests to, as
    /// `SCHEME://HOST[:PORT]` (e.g. `https://api.example.com`,
    /// `https://*.example.com`), or `*` for any host. Default: none.
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub allowed_outbound_hosts: Option<Vec<Spanned<String>>>,
    /// Labels of the key-value stores the component may open.
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub key_value_stores: Option<Vec<Spanned<String>>>,
    /// Labels of the SQLite databases the component may open (Spin's
    /// `sqlite_databases`); each is an embedded database of the app.
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub sqlite_databases: Option<Vec<Spanned<String>>>,
    /// App variables the component may read; each must be declared in
    /// `[variables]`.
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub variables: Option<Vec<Spanned<String>>>,
    /// Directories of the app mounted read-only in the component. A string
    /// `"static"` mounts `<app dir>/static` at `/static`.
    #[schemars(with = "Vec<FileEntry>")]
    #[serde(default)]
    pub files: Option<Vec<Spanned<FileEntry>>>,
    /// Environment variables of the component (string values).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub environment: Option<Entries<String>>,
    /// Opt-in instance reuse for an HTTP component: an instance serves up
    /// to this many requests, one at a time, then is discarded. What the
    /// guest keeps in memory (globals, caches, an interpreter's state)
    /// carries over between those requests; an instance whose request
    /// trapped or timed out is never reused. Default: off, a fresh instance
    /// per request. Not for WASIp3 components.
    #[schemars(with = "Option<u32>", range(min = 1))]
    #[serde(default)]
    pub instance_reuse: Option<Spanned<i64>>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// A Spin manifest's component variables: (name, template). Never read
    /// from a wasmops manifest.
    #[serde(skip)]
    #[schemars(skip)]
    pub spin_variables: Option<Vec<(Spanned<String>, Spanned<String>)>>,
    /// A Spin manifest's file patterns, one per `files` entry (`None`: the
    /// whole directory). Never read from a wasmops manifest.
    #[serde(skip)]
    #[schemars(skip)]
    pub spin_includes: Vec<Option<String>>,
    /// A Spin manifest's `exclude_files`. Never read from a wasmops
    /// manifest.
    #[serde(skip)]
    #[schemars(skip)]
    pub spin_exclude: Vec<String>,
    /// How to build the component from its sources (`wasmops build`). With
    /// a build recipe, `source` is the recipe's output and need not exist
    /// yet.
    #[serde(default)]
    #[schemars(with = "Option<RawBuild>")]
    pub build: Option<Spanned<RawBuild>>,
    /// Components that fill this component's imports, composed with it when
    /// it is loaded and when it is pushed: keys are what they fill (an
    /// interface `ns:pkg/iface[@version]` or a package `ns:pkg`), values
    /// `{ path = "dep.wasm" }` or `{ component = "other-id" }`, with an
    /// optional `export` naming the dependency's export to use.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, RawDependency>>")]
    pub dependencies: Option<Entries<RawDependency>>,
    /// Whether dependencies may import what carries the component's
    /// configuration and grants (variables, stores, network, files,
    /// environment). Default: false.
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub dependencies_inherit_configuration: Option<Spanned<bool>>,
}

/// A dependency: a version from a package registry (not supported), or a
/// table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Dependency")]
pub(crate) enum RawDependency {
    Version(String),
    Table(RawDependencyTable),
}

/// `{ path = "..." }`, `{ component = "..." }`, optionally with `export`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DependencyTable")]
pub(crate) struct RawDependencyTable {
    /// A component file, relative to the manifest's directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Another component of the app.
    #[serde(default)]
    pub component: Option<String>,
    /// A component in an OCI registry (`HOST[:PORT]/REPO:TAG` or
    /// `@sha256:...`), pulled under the command's signature policy.
    #[serde(default)]
    pub reference: Option<String>,
    /// The dependency's export that fills the import, when its name
    /// differs.
    #[serde(default)]
    pub export: Option<String>,
    /// Not supported (a download): give `path` instead.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    /// With `package` and `version`: the component published as that
    /// package in this OCI registry (`REGISTRY/NS/NAME:VERSION`).
    #[serde(default)]
    pub registry: Option<String>,
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// `[component.NAME.build]`: the recipe that produces `source`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Build")]
pub(crate) struct RawBuild {
    /// The language, which picks the toolchain: `rust` (cargo, wasm32-wasip2),
    /// `javascript` and `typescript` (componentize-js), `python`
    /// (componentize-py), `c` (clang with wasi-libc), `go` (GOOS=wasip1).
    #[schemars(with = "String", required)]
    pub language: Option<Spanned<String>>,
    /// The directory the toolchain runs in, relative to the app directory.
    /// Default: the app directory.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// JavaScript/TypeScript: the entry module (default `index.js` or
    /// `index.ts`); Python: the app module (default `app`); Go: the package
    /// to build (default `.`); Rust: the cargo package (default: the
    /// directory's).
    #[serde(default)]
    pub entry: Option<String>,
    /// JavaScript/TypeScript/Python: the world to target, from the `wit`
    /// directory (default: its only world).
    #[serde(default)]
    pub world: Option<String>,
    /// JavaScript/TypeScript/Python: the WIT directory, relative to `dir`
    /// (default `wit`).
    #[serde(default)]
    pub wit: Option<String>,
    /// C: the source files, relative to `dir` (default: every `*.c` and
    /// `*.cc`/`*.cpp` file in `dir`).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Extra arguments for the compiler (clang, cargo, go build).
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// `command`: the shell commands that produce `source`, run in order in
    /// `dir` with `sh -c` (a string or a list).
    #[serde(default)]
    #[schemars(with = "Option<StringOrList>")]
    pub command: Option<Spanned<StringOrList>>,
    /// Glob patterns, relative to `dir`, of the files whose change makes
    /// `wasmops up --watch` rebuild (Spin's `watch`); default: every file
    /// of `dir` but build output.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub watch: Option<Spanned<Vec<String>>>,
}

/// A string, or a list of strings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// A route given as a table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RouteTable")]
pub(crate) struct RawRouteTable {
    /// The path: `/hello` (exact), `/api/...` (prefix) or `/...` (all).
    #[schemars(with = "String", required)]
    pub path: Option<Spanned<String>>,
    /// Only requests for this host (e.g. `api.example.com` or
    /// `*.example.com`; no scheme, no port).
    #[schemars(with = "String")]
    #[serde(default)]
    pub host: Option<Spanned<String>>,
}

/// The `route` key: one entry or an array of entries.
#[derive(Debug)]
pub(crate) enum RouteField {
    One(RouteEntry),
    Many(Vec<Spanned<RouteEntry>>),
}

/// One route: a path, or a `{ path, host }` table.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RouteEntry {
    /// A path: `/hello` (exact), `/api/...` (prefix) or `/...` (all).
    Path(String),
    /// A path restricted to a host.
    Table(RawRouteTable),
}

/// A directory mounted read-only in the component.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub(crate) enum FileEntry {
    /// A directory relative to the app directory, mounted at the same path
    /// under `/`.
    Path(String),
    /// A directory mounted at an explicit guest path.
    Table(RawFileTable),
}

/// A directory and where to mount it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FileTable")]
pub(crate) struct RawFileTable {
    /// A directory, relative to the app directory; it may not lead outside
    /// of it.
    #[schemars(with = "String", required)]
    pub source: Option<Spanned<String>>,
    /// Absolute path in the guest, e.g. `/assets`.
    #[schemars(with = "String", required, pattern("^/"))]
    pub destination: Option<Spanned<String>>,
}

/// `[component.NAME.limits]`. Every limit is optional.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(crate) struct RawLimits {
    /// Maximum linear memory of an instance: a size with a unit (`B`, `KiB`,
    /// `MiB`, `GiB`, `KB`, `MB`, `GB`), e.g. `"64MiB"`, or an integer number of
    /// bytes. Default `"128MiB"`.
    #[schemars(schema_with = "size_schema")]
    #[serde(default)]
    pub memory: Option<Spanned<Scalar>>,
    /// Maximum time to handle a request: a duration with a unit (`ms`, `s`,
    /// `m`, `h`), e.g. `"250ms"` or `"1.5s"`. Default `"30s"`.
    #[schemars(schema_with = "duration_schema")]
    #[serde(default)]
    pub timeout: Option<Spanned<Scalar>>,
    /// Maximum number of requests handled at once by this component (at
    /// least 1). Default `256`.
    #[schemars(with = "u32", range(min = 1))]
    #[serde(default)]
    pub concurrency: Option<Spanned<i64>>,
}

/// An integer or a string (sizes and durations).
#[derive(Debug)]
pub(crate) enum Scalar {
    Int(i64),
    Str(String),
}

fn route_schema(generator: &mut SchemaGenerator) -> Schema {
    let entry = generator.subschema_for::<RouteEntry>();
    json_schema!({
        "anyOf": [
            entry,
            { "type": "array", "items": entry }
        ]
    })
}

fn size_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "integer", "minimum": 1 },
            { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*([KMG]i?)?B?\s*$" }
        ]
    })
}

fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*(ms|s|m|h)\s*$"
    })
}

/// The entries of a table, in the order they are written.
#[derive(Debug)]
pub(crate) struct Entries<T>(pub Vec<(Spanned<String>, Spanned<T>)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Spanned<String>, Spanned<T>>()? {
                    out.push((k, v));
                }
                // Tables may come sorted by key: restore the written order.
                out.sort_by_key(|(k, _)| k.span().start);
                Ok(Entries(out))
            }
        }
        deserializer.deserialize_map(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for RouteField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RouteField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a route path, a { path, host } table, or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RouteField::One(RouteEntry::Path(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawRouteTable::deserialize(MapAccessDeserializer::new(map))
                    .map(|t| RouteField::One(RouteEntry::Table(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = seq.next_element::<Spanned<RouteEntry>>()? {
                    out.push(e);
                }
                Ok(RouteField::Many(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RouteEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RouteEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a route path or a { path, host } table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RouteEntry::Path(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawRouteTable::deserialize(MapAccessDeserializer::new(map)).map(RouteEntry::Table)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FileEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a directory path or a { source, destination } table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FileEntry::Path(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawFileTable::deserialize(MapAccessDeserializer::new(map)).map(FileEntry::Table)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string with a unit")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Just the version, read before anything else so that a manifest written
/// for another version of the format gets a clear error.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionProbe {
    #[serde(default)]
    pub manifest_version: Option<Spanned<toml::Value>>,
}

/// The JSON Schema (draft 7, understood by most editors) of the manifest.
pub(crate) fn json_schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<RawManifest>();
    let mut value = schema.to_value();
    strip_null(&mut value);
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
    out.push('\n');
    out
}

/// TOML has no null: remove the `null` alternatives schemars gives to
/// optional values.
fn strip_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(options)) = map.get_mut(key) {
                    options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
                    if options.len() == 1 {
                        let only = options.remove(0);
                        map.remove(key);
                        if let Value::Object(only) = only {
                            for (k, v) in only {
                                map.entry(k).or_insert(v);
                            }
                        }
                    }
                }
            }
            for child in map.values_mut() {
                strip_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}
