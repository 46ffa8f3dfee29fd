//! Valid manifests resolve to the right values.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmops_manifest::{
    App, Checks, ComponentLimits, Durability, FileMount, KvBackend, KvStore, ManifestError, Route,
    Variable, load, load_with, parse_str,
};

const FULL: &str = r#"
manifest_version = 1

[app]
name = "shop"
version = "0.1.0"
description = "A small shop"

[variables]
greeting = { default = "hello" }
api_token = { required = true, secret = true, description = "token for the upstream" }
region = { description = "optional" }

[key_value.default]
backend = "embedded"

[key_value.sessions]

[key_value.orders]
path = "data/orders.db"
durability = "fsync"

[key_value.cache]
backend = "redis"
url = "redis://:pw@127.0.0.1:6379/2"

[component.web]
source = "web/target/wasm32-wasip2/release/web.wasm"
description = "the front end"
route = "/..."
allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:8080", "https://*.example.com"]
key_value_stores = ["default", "sessions"]
variables = ["greeting"]
files = ["static", { source = "assets/img", destination = "/img/" }]
environment = { LOG_LEVEL = "debug", A_FIRST = "1" }

[component.web.limits]
memory = "64MiB"
timeout = "1.5s"
concurrency = 100

[component.api]
source = "./api.wasm"
route = ["/api/...", { path = "/hello", host = "API.Example.com" }, { path = "/api/...", host = "*.example.com" }, "/exact/"]
key_value_stores = ["orders", "cache"]
variables = ["api_token", "greeting", "region"]

[component.worker]
source = "api.wasm"

[component.worker.limits]
memory = 1048576

[environments.staging]
node = "http://127.0.0.1:9464"
hosts = ["staging.shop.example.com"]

[environments.production]
node = "https://node.internal:9464"
ca = "certs/ca.pem"

[environments.production.kube]
image = "registry.example.com/wasmops-node:0.1.0"
reference = "registry.example.com/shop@sha256:00"
namespace = "shop"
min_replicas = 2
max_replicas = 12
memory = "1GiB"
"#;

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("web/target/wasm32-wasip2/release")).unwrap();
    fs::write(d.join("web/target/wasm32-wasip2/release/web.wasm"), "x").unwrap();
    fs::write(d.join("api.wasm"), "x").unwrap();
    fs::create_dir_all(d.join("static")).unwrap();
    fs::create_dir_all(d.join("assets/img")).unwrap();
    dir
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap()
}

#[test]
fn full_manifest_resolves() {
    let tmp = app_dir();
    fs::write(tmp.path().join("wasmops.toml"), FULL).unwrap();
    let app = load(tmp.path()).unwrap();
    let dir = canonical(tmp.path());

    assert_eq!(app.dir, dir);
    assert_eq!(app.manifest_path, dir.join("wasmops.toml"));
    assert_eq!(app.name, "shop");
    assert_eq!(app.version.as_deref(), Some("0.1.0"));
    assert_eq!(app.description.as_deref(), Some("A small shop"));
    assert_eq!(app.state_dir(), dir.join(".wasmops"));

    assert_eq!(
        app.variables,
        vec![
            Variable {
                name: "greeting".into(),
                default: Some("hello".into()),
                required: false,
                secret: false,
                description: None,
            },
            Variable {
                name: "api_token".into(),
                default: None,
                required: true,
                secret: true,
                description: Some("token for the upstream".into()),
            },
            Variable {
                name: "region".into(),
                default: None,
                required: false,
                secret: false,
                description: Some("optional".into()),
            },
        ]
    );

    let embedded = |path: PathBuf, durability| KvBackend::Embedded { path, durability };
    assert_eq!(
        app.key_value,
        vec![
            KvStore {
                label: "cache".into(),
                backend: KvBackend::Redis {
                    url: "redis://:pw@127.0.0.1:6379/2".into()
                },
            },
            KvStore {
                label: "default".into(),
                backend: embedded(dir.join(".wasmops/kv/default.db"), Durability::Process),
            },
            KvStore {
                label: "orders".into(),
                backend: embedded(dir.join("data/orders.db"), Durability::Fsync),
            },
            KvStore {
                label: "sessions".into(),
                backend: embedded(dir.join(".wasmops/kv/sessions.db"), Durability::Process),
            },
        ]
    );
    // The Redis password does not show in Debug output.
    let debug = format!("{:?}", app.key_value);
    assert!(!debug.contains("pw"), "{debug}");
    assert!(
        debug.contains("redis://:<redacted>@127.0.0.1:6379/2"),
        "{debug}"
    );

    let ids: Vec<&str> = app.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["web", "api", "worker"], "manifest order");

    let web = &app.components[0];
    assert_eq!(
        web.source,
        dir.join("web/target/wasm32-wasip2/release/web.wasm")
    );
    assert_eq!(web.description.as_deref(), Some("the front end"));
    assert_eq!(
        web.routes,
        vec![Route {
            host: None,
            path: "/".into(),
            prefix: true
        }]
    );
    assert_eq!(
        web.allowed_outbound_hosts,
        [
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.example.com"
        ]
    );
    assert_eq!(web.key_value_stores, ["default", "sessions"]);

    let staging = app.environment("staging").unwrap();
    assert_eq!(staging.node.as_deref(), Some("http://127.0.0.1:9464"));
    assert_eq!(staging.hosts, ["staging.shop.example.com"]);
    assert!(staging.kube.is_none());
    let production = app.environment("production").unwrap();
    assert_eq!(
        production.ca.as_deref(),
        Some(dir.join("certs/ca.pem").as_path())
    );
    let kube = production.kube.as_ref().unwrap();
    assert_eq!(
        (kube.min_replicas, kube.max_replicas, kube.replicas),
        (Some(2), Some(12), None)
    );
    assert_eq!(kube.memory, Some(1 << 30));
    assert_eq!(kube.namespace.as_deref(), Some("shop"));
    assert!(app.environment("dev").is_none());
    assert_eq!(web.variables, ["greeting"]);
    assert_eq!(
        web.files,
        vec![
            FileMount {
                source: dir.join("static"),
                destination: "/static".into(),
                include: vec![],
                exclude: vec![],
            },
            FileMount {
                source: dir.join("assets/img"),
                destination: "/img".into(),
                include: vec![],
                exclude: vec![],
            },
        ]
    );
    assert_eq!(
        web.environment,
        vec![
            ("LOG_LEVEL".to_string(), "debug".to_string()),
            ("A_FIRST".to_string(), "1".to_string())
        ],
        "manifest order"
    );
    assert_eq!(
        web.limits,
        ComponentLimits {
            memory: Some(64 << 20),
            timeout: Some(Duration::from_millis(1500)),
            concurrency: Some(100),
        }
    );

    let api = &app.components[1];
    assert_eq!(api.source, dir.join("api.wasm"));
    let routes: Vec<String> = api.routes.iter().map(ToString::to_string).collect();
    assert_eq!(
        routes,
        [
            "/api/...",
            "api.example.com/hello",
            "*.example.com/api/...",
            "/exact/"
        ]
    );
    assert_eq!(api.routes[1].host.as_deref(), Some("api.example.com"));
    assert_eq!(api.routes[1].path, "/hello");
    assert!(!api.routes[1].prefix);
    assert_eq!(api.routes[3].path, "/exact/");
    assert_eq!(api.variables, ["api_token", "greeting", "region"]);
    assert_eq!(api.limits, ComponentLimits::default());
    assert_eq!(api.limits.memory_or_default(), 128 << 20);
    assert_eq!(api.limits.timeout_or_default(), Duration::from_secs(30));
    assert_eq!(api.limits.concurrency_or_default(), 256);

    let worker = &app.components[2];
    assert!(worker.routes.is_empty());
    assert_eq!(worker.limits.memory, Some(1 << 20));
}

#[test]
fn load_takes_a_file_or_a_directory() {
    let tmp = app_dir();
    let manifest = tmp.path().join("wasmops.toml");
    fs::write(&manifest, FULL).unwrap();
    let from_dir = load(tmp.path()).unwrap();
    let from_file = load(&manifest).unwrap();
    assert_eq!(from_dir, from_file);

    let empty = tempfile::tempdir().unwrap();
    let err = load(empty.path()).unwrap_err();
    assert_eq!(err.line, 0);
    assert!(err.to_string().contains("wasmops.toml"), "{err}");
    let err = load(&empty.path().join("nope.toml")).unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("wasmops.toml"));
}

#[test]
fn errors_show_the_path_as_given() {
    let tmp = app_dir();
    let manifest = tmp.path().join("wasmops.toml");
    fs::write(
        &manifest,
        "manifest_version = 1\n[app]\nname = \"x\"\nbogus = 1\n",
    )
    .unwrap();
    let err = load(&manifest).unwrap_err();
    assert_eq!(err.path, manifest.display().to_string());
    assert_eq!((err.line, err.col), (4, 1));
}

#[test]
fn non_utf8_manifest_is_an_error_with_a_position() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("wasmops.toml");
    fs::write(
        &manifest,
        b"manifest_version = 1\n[app]\nname = \"sh\xffop\"\n",
    )
    .unwrap();
    let err = load(&manifest).unwrap_err();
    assert_eq!((err.line, err.col), (3, 11));
    assert!(err.message.contains("UTF-8"), "{err}");
}

#[test]
fn custom_outbound_check_reports_its_message() {
    let tmp = app_dir();
    let text = "manifest_version = 1\n[app]\nname = \"x\"\n[component.a]\nsource = \"api.wasm\"\nallowed_outbound_hosts = [\"mqtt://broker\"]\n";
    let strict = |s: &str| {
        if s.starts_with("https://") {
            Ok(())
        } else {
            Err(format!("only https is allowed, not {s}"))
        }
    };
    let err = parse_str(
        text,
        "wasmops.toml",
        tmp.path(),
        &Checks {
            outbound_host: &strict,
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "wasmops.toml:6:27: only https is allowed, not mqtt://broker; hint: use SCHEME://HOST[:PORT], e.g. https://api.example.com"
    );
    let fs_path = tmp.path().join("wasmops.toml");
    fs::write(&fs_path, text.replace("mqtt://broker", "https://broker")).unwrap();
    load_with(
        &fs_path,
        &Checks {
            outbound_host: &strict,
        },
    )
    .unwrap();
}

fn minimal_app(dir: &Path, variables: &str) -> App {
    let text = format!(
        "manifest_version = 1\n[app]\nname = \"x\"\n[variables]\n{variables}\n[component.a]\nsource = \"api.wasm\"\n"
    );
    parse_str(&text, "wasmops.toml", dir, &Checks::default()).unwrap()
}

fn values(
    result: Result<Vec<wasmops_manifest::ResolvedVariable>, ManifestError>,
) -> Vec<(String, String)> {
    result
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.value))
        .collect()
}

/// Spin's way of setting variables works too: `SPIN_VARIABLE_<NAME>` in
/// the environment (ours wins when both are set) and in `.env`.
#[test]
fn spin_variable_names_are_read_too() {
    let tmp = app_dir();
    let app = minimal_app(tmp.path(), "a = {}\nb = {}\nc = {}");
    fs::write(tmp.path().join(".env"), "SPIN_VARIABLE_C=from-file\n").unwrap();
    let env = |n: &str| match n {
        "SPIN_VARIABLE_A" => Some("spin-a".to_string()),
        "SPIN_VARIABLE_B" => Some("spin-b".to_string()),
        "WASMOPS_VARIABLE_B" => Some("ours-b".to_string()),
        _ => None,
    };
    assert_eq!(
        values(app.resolve_variables(&env)),
        vec![
            ("a".to_string(), "spin-a".to_string()),
            ("b".to_string(), "ours-b".to_string()),
            ("c".to_string(), "from-file".to_string()),
        ]
    );
}

#[test]
fn variable_precedence_env_then_dotenv_then_default() {
    let tmp = app_dir();
    let app = minimal_app(
        tmp.path(),
        "a = { default = \"default-a\" }\nb = { default = \"default-b\" }\nc = { default = \"default-c\" }\nd = {}\ne = { required = true }",
    );
    fs::write(
        tmp.path().join(".env"),
        "# values\nexport B=\"file b\"\nWASMOPS_VARIABLE_C='file c'\nA=file-a\ne=file-e\nUNRELATED=1\n",
    )
    .unwrap();
    let env = |name: &str| (name == "WASMOPS_VARIABLE_A").then(|| "env-a".to_string());
    assert_eq!(
        values(app.resolve_variables(&env)),
        vec![
            ("a".to_string(), "env-a".to_string()),
            ("b".to_string(), "file b".to_string()),
            ("c".to_string(), "file c".to_string()),
            ("e".to_string(), "file-e".to_string()),
        ],
        "env beats .env beats default; `d` has no value and is left out"
    );

    fs::remove_file(tmp.path().join(".env")).unwrap();
    let env = |name: &str| (name == "WASMOPS_VARIABLE_E").then(|| "env-e".to_string());
    assert_eq!(
        values(app.resolve_variables(&env)),
        vec![
            ("a".to_string(), "default-a".to_string()),
            ("b".to_string(), "default-b".to_string()),
            ("c".to_string(), "default-c".to_string()),
            ("e".to_string(), "env-e".to_string()),
        ]
    );
}

#[test]
fn missing_required_variable_names_the_env_var() {
    let tmp = app_dir();
    let app = minimal_app(tmp.path(), "api_token = { required = true, secret = true }");
    let err = app.resolve_variables(&|_| None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`api_token`"), "{text}");
    assert!(text.contains("WASMOPS_VARIABLE_API_TOKEN"), "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn secrets_never_show() {
    let tmp = app_dir();
    let app = minimal_app(
        tmp.path(),
        "api_token = { required = true, secret = true }\nplain = { default = \"visible\" }",
    );
    let env = |name: &str| (name == "WASMOPS_VARIABLE_API_TOKEN").then(|| "hunter2".to_string());
    let resolved = app.resolve_variables(&env).unwrap();
    assert_eq!(resolved[0].value, "hunter2");
    let debug = format!("{resolved:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("visible"), "{debug}");

    // A malformed .env line: the error gives the line, not the value.
    fs::write(tmp.path().join(".env"), "PLAIN=ok\nAPI_TOKEN=\"hunter2\n").unwrap();
    let err = app.resolve_variables(&|_| None).unwrap_err();
    assert_eq!((err.line, err.col), (2, 11));
    assert!(err.path.ends_with(".env"));
    assert!(!err.to_string().contains("hunter2"), "{err}");

    fs::write(tmp.path().join(".env"), "hunter2\n").unwrap();
    let err = app.resolve_variables(&|_| None).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn undeclared_store_is_embedded_with_defaults() {
    let tmp = app_dir();
    let text = "manifest_version = 1\n[app]\nname = \"x\"\n[component.a]\nsource = \"api.wasm\"\nkey_value_stores = [\"default\", \"default\"]\n";
    let app = parse_str(text, "wasmops.toml", tmp.path(), &Checks::default()).unwrap();
    assert_eq!(app.components[0].key_value_stores, ["default"]);
    assert_eq!(app.key_value.len(), 1);
    assert_eq!(
        app.key_value[0].backend,
        KvBackend::Embedded {
            path: canonical(tmp.path()).join(".wasmops/kv/default.db"),
            durability: Durability::Process
        }
    );
}
