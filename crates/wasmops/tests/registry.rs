//! `wasmops push`/`pull`/`sign`/`verify`/`registry login` and
//! `serve`/`up` from references, against Debian's `docker-registry`
//! (Docker distribution 2.8) started on loopback, with independent clients
//! (`oras` from PyPI, `skopeo` from Debian) on the other side.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::registry::{Registry, free_port, which};
use common::{Output, Server, get, output, wasmops};
use serde_json::Value;

/// A private environment: content store, Docker config, state.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "WASMOPS_OCI_STORE",
                self.path("store").display().to_string(),
            ),
            ("DOCKER_CONFIG", self.path("docker").display().to_string()),
            ("XDG_STATE_HOME", self.path("state").display().to_string()),
            ("COSIGN_PASSWORD", "test-password".into()),
        ]
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = wasmops();
        c.envs(self.vars())
            .env_remove("WASMOPS_REGISTRY_USERNAME")
            .env_remove("WASMOPS_REGISTRY_PASSWORD")
            .env_remove("WASMOPS_VERIFY_KEY")
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(out.code, 0, "wasmops {args:?}: {}", out.stderr);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }
}

fn serve(env: &Env, reference: &str, args: &[&str]) -> Server {
    let envs = env.vars();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with_env(reference, args, &envs)
}

#[test]
fn worker_processes_serve_what_the_supervisor_pulled_though_the_tag_moves() {
    let reg = Registry::start(None);
    let env = Env::new();
    let reference = reg.reference("components/moving:v1");
    env.ok(&["push", test_programs::HELLO, &reference]);
    let server = serve(&env, &reference, &["--workers", "2"]);
    // The tag moves to another component while the workers serve.
    env.ok(&["push", test_programs::ECHO, &reference]);
    let workers = common::children(server.pid());
    assert_eq!(workers.len(), 2, "{}", server.log());
    // A worker started again serves what the supervisor pulled, not what
    // the tag names now.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        common::kill_worker_and_wait(&server, workers[1]).await;
        for _ in 0..20 {
            assert_eq!(get(&server.url("/")).await.text(), "Hello, world!\n");
        }
    });
}

#[test]
fn push_pull_serve_and_tamper_with_a_registry() {
    let reg = Registry::start(None);
    let env = Env::new();
    let reference = reg.reference("components/hello:v1");

    // SOURCE_DATE_EPOCH makes the artifact reproducible.
    let reproducible = |args: &[&str]| -> Value {
        let out = output(env.cmd(args).env("SOURCE_DATE_EPOCH", "1767225600"));
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let pushed = reproducible(&["push", test_programs::HELLO, &reference, "--format", "json"]);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert_eq!(pushed["kind"], "component");
    assert_eq!(pushed["uploaded"], 2, "config and layer: {pushed}");

    // The CNCF layout, field by field, as the registry serves it.
    let manifest = reg.manifest("components/hello", "v1");
    let config = reg.blob(
        "components/hello",
        manifest["config"]["digest"].as_str().unwrap(),
    );
    common::assert_cncf_hello(&manifest, &config);
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["created"], "2026-01-01T00:00:00Z");
    let wasm = std::fs::read(test_programs::HELLO).unwrap();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reg.blob("components/hello", &layer_digest), wasm);

    // Pushing again sends no blob, and gives the same digest.
    let again = reproducible(&[
        "push",
        test_programs::HELLO,
        &reg.reference("components/hello:v2"),
        "--format",
        "json",
    ]);
    assert_eq!(
        (again["uploaded"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );
    assert_eq!(again["digest"], digest.as_str());

    // Pull: byte-identical; a second pull fetches nothing.
    let out_file = env.path("pulled.wasm");
    let pulled = env.json(&[
        "pull",
        &reference,
        "-o",
        out_file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(pulled["digest"], digest.as_str());
    assert_eq!(pulled["fetched"], 2);
    assert_eq!(std::fs::read(&out_file).unwrap(), wasm);
    let by_digest = format!("{}/components/hello@{digest}", reg.host);
    let again = env.json(&["pull", &by_digest, "--format", "json"]);
    assert_eq!(again["fetched"], 0, "{again}");

    // Serve and run straight from the registry.
    let server = serve(&env, &reference, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { assert_eq!(get(&server.url("/")).await.text(), "Hello, world!\n") });
    drop(server);
    env.ok(&[
        "push",
        test_programs::CLI,
        &reg.reference("components/cli:v1"),
    ]);
    let out = env.ok(&[
        "run",
        &reg.reference("components/cli:v1"),
        "--",
        "args",
        "one",
        "two words",
    ]);
    assert!(out.stdout.contains("one\ntwo words"), "{}", out.stdout);

    // Missing tags, bad references, an unreachable registry: one-line errors.
    let out = env.run(&["pull", &reg.reference("components/hello:nope")]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    common::assert_one_line_error(&env.run(&["pull", &reg.reference("Components/X:1")]));
    common::assert_one_line_error(&env.run(&["pull", "https://ghcr.io/x/y:1"]));
    let dead = format!("127.0.0.1:{}/x/y:1", free_port());
    let out = env.run(&["pull", &dead]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("cannot reach registry"),
        "{}",
        out.stderr
    );
    common::assert_one_line_error(&env.run(&["push", "/nonexistent.wasm", &reference]));
    let broken = env.path("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0garbage").unwrap();
    common::assert_one_line_error(&env.run(&["push", broken.to_str().unwrap(), &reference]));

    // A blob altered in the registry's storage is caught at pull, and
    // neither the store nor the output gets anything.
    let fresh = Env::new();
    std::fs::write(reg.blob_file(&layer_digest), b"\0asm\x0d\0\x01\0 tampered").unwrap();
    let out_file = fresh.path("tampered.wasm");
    let out = fresh.run(&["pull", &reference, "-o", out_file.to_str().unwrap()]);
    common::assert_one_line_error(&out);
    // Named as the registry's fault, not the local store's.
    assert!(
        out.stderr.contains("the registry 127.0.0.1") && out.stderr.contains("tampered"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("content store"), "{}", out.stderr);
    assert!(!out_file.exists());
    let blobs: Vec<_> = std::fs::read_dir(fresh.path("store/blobs/sha256"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "nothing stored: {blobs:?}");
    // The copy verified earlier is still served from the store.
    let out = env.json(&[
        "pull",
        &by_digest,
        "-o",
        env.path("cached.wasm").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out["fetched"], 0);
    assert_eq!(std::fs::read(env.path("cached.wasm")).unwrap(), wasm);
}

#[test]
fn apps_go_through_the_registry_and_up() {
    let reg = Registry::start(None);
    let env = Env::new();
    let app = PathBuf::from(test_programs::EXAMPLE_WEBAPP);
    let reference = reg.reference("apps/webapp:1.0");
    let pushed = env.json(&[
        "push",
        app.to_str().unwrap(),
        &reference,
        "--format",
        "json",
    ]);
    assert_eq!(pushed["kind"], "app");

    // The pushed app scans as an app, from the registry: one SBOM with its
    // three components inside it, one SARIF run over their files.
    let bom = env.json(&["scan", &reference, "--format", "cyclonedx"]);
    assert_eq!(bom["metadata"]["component"]["name"], "webapp", "{bom}");
    let names: Vec<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "api", "proxy"]);
    let sarif = env.json(&["check", &reference, "--format", "sarif"]);
    assert_eq!(sarif["runs"].as_array().unwrap().len(), 1, "{sarif}");
    assert_eq!(sarif["runs"][0]["artifacts"].as_array().unwrap().len(), 3);

    let manifest = reg.manifest("apps/webapp", "1.0");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasmops.app.config.v1+json"
    );
    let titles: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap()
        })
        .collect();
    for t in [
        "wasmops.toml",
        "components/web.wasm",
        "components/api.wasm",
        "components/proxy.wasm",
        "files/web/0",
    ] {
        assert!(titles.contains(&t), "{t} in {titles:?}");
    }

    // Pulled into a directory, it is a complete app.
    let dir = env.path("pulled-app");
    env.ok(&["pull", &reference, "-o", dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(dir.join("components/api.wasm")).unwrap(),
        std::fs::read(app.join("target/wasm32-wasip2/release/api.wasm")).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.join("files/web/0/index.html")).unwrap(),
        std::fs::read(app.join("static/index.html")).unwrap()
    );
    env.ok(&["up", dir.to_str().unwrap(), "--check"]);
    // Pulling into a directory that has files is refused.
    common::assert_one_line_error(&env.run(&["pull", &reference, "-o", dir.to_str().unwrap()]));

    // `up` straight from the registry: static files, the API with its
    // store (kept outside the content store), the manifest's routes.
    let envs = env.vars();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::up(Path::new(&reference), &[], &envs);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert!(
            get(&server.url("/"))
                .await
                .text()
                .contains("Welcome to webapp")
        );
        let r = common::post(&server.url("/api/counter"), b"").await;
        assert!(r.text().contains("\"count\":1"), "{}", r.text());
    });
    drop(server);
    assert!(
        env.path("state/wasmops/apps/webapp/kv/default.db")
            .is_file()
    );

    // A component is not an app, and an app is not a component.
    env.ok(&[
        "push",
        test_programs::HELLO,
        &reg.reference("components/hello:v1"),
    ]);
    let out = env.run(&["up", &reg.reference("components/hello:v1"), "--check"]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("wasmops serve"), "{}", out.stderr);
    let out = env.run(&["serve", &reference]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("wasmops up"), "{}", out.stderr);
}

fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new(which("htpasswd"))
        .args(["-nbB", user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn credentials_from_login_env_and_helpers() {
    let reg = Registry::start(Some(&htpasswd("ci", "s3cret")));
    let env = Env::new();
    let reference = reg.reference("private/hello:v1");

    // No credentials: a clear error naming the fix.
    let out = env.run(&["push", test_programs::HELLO, &reference]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("registry login"), "{}", out.stderr);

    // A wrong password is refused at login and nothing is stored.
    let login = |password: &[u8]| {
        common::with_stdin(
            &mut env.cmd(&[
                "registry",
                "login",
                &reg.host,
                "-u",
                "ci",
                "--password-stdin",
            ]),
            password,
        )
    };
    let out = login(b"wrong\n");
    common::assert_one_line_error(&out);
    assert!(!env.path("docker/config.json").exists());

    // The right one is stored in Docker's config.json and used.
    let out = login(b"s3cret\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value =
        serde_json::from_slice(&std::fs::read(env.path("docker/config.json")).unwrap()).unwrap();
    assert!(config["auths"][&reg.host]["auth"].is_string(), "{config}");
    env.ok(&["push", test_programs::HELLO, &reference]);
    let out_file = env.path("p.wasm");
    env.ok(&["pull", &reference, "-o", out_file.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(test_programs::HELLO).unwrap()
    );

    // Wrong stored credentials: a clear error.
    let fresh = Env::new();
    std::fs::create_dir_all(fresh.path("docker")).unwrap();
    std::fs::write(
        fresh.path("docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"Y2k6bm9wZQ=="}}}}}}"#,
            reg.host
        ),
    )
    .unwrap();
    let out = fresh.run(&["pull", &reference]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);

    // Environment variables.
    let out = output(
        fresh
            .cmd(&["pull", &reference])
            .env("WASMOPS_REGISTRY_USERNAME", "ci")
            .env("WASMOPS_REGISTRY_PASSWORD", "s3cret"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A credential helper named in credHelpers.
    let helper_dir = fresh.path("bin");
    std::fs::create_dir_all(&helper_dir).unwrap();
    let helper = helper_dir.join("docker-credential-wasmopstest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\n[ \"$1\" = get ] && printf '{\"ServerURL\":\"%s\",\"Username\":\"ci\",\"Secret\":\"s3cret\"}' \"$server\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        fresh.path("docker/config.json"),
        format!(r#"{{"credHelpers":{{"{}":"wasmopstest"}}}}"#, reg.host),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = output(
        fresh
            .cmd(&["pull", &reference, "--format", "json"])
            .env("PATH", &path),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Logout forgets.
    env.ok(&["registry", "logout", &reg.host]);
    common::assert_one_line_error(&env.run(&["pull", &reg.reference("private/hello:v1")]));
}

/// Checks a signature the way cosign does, independently of wasmops: the
/// `sha256-<hex>.sig` manifest's simple-signing layers, each payload
/// verified with the public key (Python's `cryptography`), naming the digest.
const COSIGN_CHECK: &str = r#"
import sys, json, base64, urllib.request as u
from cryptography.hazmat.primitives import serialization, hashes
from cryptography.hazmat.primitives.asymmetric import ec
host, repo, digest, pub = sys.argv[1:5]
tag = digest.replace(":", "-") + ".sig"
req = u.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
m = json.load(u.urlopen(req))
key = serialization.load_pem_public_key(open(pub, "rb").read())
ok = 0
for layer in m["layers"]:
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = u.urlopen(f"http://{host}/v2/{repo}/blobs/{layer['digest']}").read()
    sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    try:
        key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    except Exception:
        continue
    p = json.loads(payload)
    assert p["critical"]["type"] == "cosign container image signature"
    assert p["critical"]["image"]["docker-manifest-digest"] == digest
    ok += 1
print(ok)
"#;

/// How many signatures of `digest` in `repo` verify with `public`, by
/// [`COSIGN_CHECK`].
fn cosign_check(reg: &Registry, repo: &str, digest: &str, public: &str) -> usize {
    let check = Command::new("python3")
        .args(["-c", COSIGN_CHECK, &reg.host, repo, digest, public])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    String::from_utf8_lossy(&check.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn sign_verify_and_the_signature_policy() {
    let reg = Registry::start(None);
    let env = Env::new();
    let reference = reg.reference("signed/hello:v1");
    let digest =
        env.json(&["push", test_programs::HELLO, &reference, "--format", "json"])["digest"]
            .as_str()
            .unwrap()
            .to_string();
    let key = env.path("release");
    let other = env.path("other");
    env.ok(&["keygen", "--output-prefix", key.to_str().unwrap()]);
    env.ok(&["keygen", "--output-prefix", other.to_str().unwrap()]);
    let private = std::fs::read_to_string(key.with_extension("key")).unwrap();
    assert!(private.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    // keygen does not overwrite.
    common::assert_one_line_error(&env.run(&["keygen", "--output-prefix", key.to_str().unwrap()]));
    let public = key.with_extension("pub");
    let public = public.to_str().unwrap();
    let other_public = other.with_extension("pub");
    let other_public = other_public.to_str().unwrap();

    // Unsigned: verify fails with a clear message, and the policy refuses it.
    let out = env.run(&["verify", &reference, "--key", public]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("not signed"), "{}", out.stderr);
    let out = env.run(&["serve", &reference, "--verify-key", public]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("refusing"), "{}", out.stderr);

    // Signed: verify succeeds, where cosign looks and as cosign checks.
    let key_file = key.with_extension("key");
    env.ok(&[
        "sign",
        &reference,
        "--key",
        key_file.to_str().unwrap(),
        "-a",
        "stage=prod",
    ]);
    let v = env.json(&["verify", &reference, "--key", public, "--format", "json"]);
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["annotations"]["stage"], "prod");
    assert_eq!(cosign_check(&reg, "signed/hello", &digest, public), 1);

    // The wrong key, and a wrong password.
    let out = env.run(&["verify", &reference, "--key", other_public]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("another key"), "{}", out.stderr);
    let out = output(
        env.cmd(&["sign", &reference, "--key", key_file.to_str().unwrap()])
            .env("COSIGN_PASSWORD", "wrong"),
    );
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("password"), "{}", out.stderr);

    // The policy: signed by the trusted key is served, by another is not.
    drop(serve(&env, &reference, &["--verify-key", public]));
    drop(serve(&env, &reference, &[]));
    let out = output(
        env.cmd(&["run", &reference])
            .env("WASMOPS_VERIFY_KEY", other_public),
    );
    common::assert_one_line_error(&out);

    // A key written by cosign itself signs too (the sigstore crate ships
    // one, generated by `cosign generate-key-pair` with an empty password).
    {
        let cosign_key =
            cosign_generated_key().expect("the sigstore crate's sources are unpacked by cargo");
        let out = output(
            env.cmd(&["sign", &reference, "--key", cosign_key.to_str().unwrap()])
                .env("COSIGN_PASSWORD", ""),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        // Both signatures stay.
        assert_eq!(cosign_check(&reg, "signed/hello", &digest, public), 1);
        env.ok(&["verify", &reference, "--key", public]);
    }
}

/// The cosign-generated private key in the sigstore crate's sources.
fn cosign_generated_key() -> Option<PathBuf> {
    // Cargo records where it unpacked the crate.
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"))
            .ok()?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"sigstore\""))?
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))?
        .trim_end_matches('"')
        .to_string();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = home.join("registry/src");
    for index in std::fs::read_dir(src).ok()?.flatten() {
        for krate in std::fs::read_dir(index.path()).ok()?.flatten() {
            if krate.file_name().to_string_lossy() == format!("sigstore-{version}") {
                let k = krate
                    .path()
                    .join("tests/data/keys/cosign_generated_encrypted_empty_private.key");
                if k.is_file() {
                    return Some(k);
                }
            }
        }
    }
    None
}

/// oras-py (PyPI `oras`), an independent client.
const ORAS: &str = r#"
import sys, json, oras.client
op, host = sys.argv[1], sys.argv[2]
c = oras.client.OrasClient(hostname=host, insecure=True)
if op == "pull":
    files = c.pull(target=sys.argv[3], outdir=sys.argv[4])
    print(json.dumps(files))
else:
    target, config, config_type = sys.argv[3], sys.argv[4], sys.argv[5]
    files = sys.argv[6:]
    c.push(files=files, target=target, manifest_config=f"{config}:{config_type}", disable_path_validation=True)
"#;

fn oras(args: &[&str], cwd: &Path) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(ORAS)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn interop_with_oras_skopeo_and_spin_layouts() {
    let reg = Registry::start(None);
    let env = Env::new();
    let wasm = std::fs::read(test_programs::HELLO).unwrap();

    // wasmops pushes, oras pulls the same bytes.
    let reference = reg.reference("interop/hello:v1");
    env.ok(&["push", test_programs::HELLO, &reference]);
    let out_dir = env.path("oras-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    oras(
        &["pull", &reg.host, &reference, out_dir.to_str().unwrap()],
        env.dir.path(),
    );
    let files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(files[0].path()).unwrap(), wasm);

    // oras pushes a CNCF component; wasmops pulls and serves it.
    let work = env.path("oras-in");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(test_programs::HELLO, work.join("hello.wasm")).unwrap();
    std::fs::write(
        work.join("config.json"),
        r#"{"architecture":"wasm","os":"wasip2","layerDigests":[],"component":{"exports":[],"imports":[]}}"#,
    )
    .unwrap();
    let by_oras = reg.reference("interop/by-oras:v1");
    oras(
        &[
            "push",
            &reg.host,
            &by_oras,
            "config.json",
            "application/vnd.wasm.config.v0+json",
            "hello.wasm:application/wasm",
        ],
        &work,
    );
    let pulled = env.path("by-oras.wasm");
    env.ok(&["pull", &by_oras, "-o", pulled.to_str().unwrap()]);
    assert_eq!(std::fs::read(&pulled).unwrap(), wasm);
    let server = serve(&env, &by_oras, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { assert_eq!(get(&server.url("/")).await.text(), "Hello, world!\n") });
    drop(server);

    // Spin's app layout (pushed by oras with Spin's media types): the
    // components come out by id.
    std::fs::copy(test_programs::ECHO, work.join("echo.wasm")).unwrap();
    let digest = |p: &str| format!("sha256:{}", sha256_hex(&std::fs::read(p).unwrap()));
    std::fs::write(
        work.join("spin.json"),
        serde_json::json!({
            "spin_lock_version": 1,
            "metadata": {"name": "spinapp"},
            "triggers": [],
            "components": [
                {"id": "hello", "source": {"content_type": "application/wasm", "content": {"digest": digest(test_programs::HELLO)}}},
                {"id": "echo", "source": {"content_type": "application/wasm", "content": {"digest": digest(test_programs::ECHO)}}},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let spin = reg.reference("interop/spinapp:v1");
    oras(
        &[
            "push",
            &reg.host,
            &spin,
            "spin.json",
            "application/vnd.fermyon.spin.application.v1+config",
            "hello.wasm:application/vnd.wasm.content.layer.v1+wasm",
            "echo.wasm:application/vnd.wasm.content.layer.v1+wasm",
        ],
        &work,
    );
    let spin_dir = env.path("spin-out");
    let out = env.json(&[
        "pull",
        &spin,
        "-o",
        spin_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out["kind"], "spin-app");
    assert_eq!(std::fs::read(spin_dir.join("hello.wasm")).unwrap(), wasm);
    assert_eq!(
        std::fs::read(spin_dir.join("echo.wasm")).unwrap(),
        std::fs::read(test_programs::ECHO).unwrap()
    );
    let out = env.run(&["serve", &spin]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("is an app; serve it with `wasmops up"),
        "{}",
        out.stderr
    );

    // skopeo copies our artifact out of the registry into an OCI layout,
    // and wasmops reads that layout; and back the other way.
    let policy = env.path("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let layout = env.path("skopeo-layout");
    let status = Command::new(which("skopeo"))
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:v1", layout.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let from_layout = env.path("from-skopeo.wasm");
    env.ok(&[
        "pull",
        &format!("oci-layout:{}:v1", layout.display()),
        "-o",
        from_layout.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&from_layout).unwrap(), wasm);
    let mine = env.path("mine");
    env.ok(&[
        "push",
        test_programs::HELLO,
        &format!("oci-layout:{}:v9", mine.display()),
    ]);
    let status = Command::new(which("skopeo"))
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v9", mine.display()))
        .arg(format!(
            "docker://{}",
            reg.reference("interop/via-skopeo:v9")
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let via = env.path("via-skopeo.wasm");
    env.ok(&[
        "pull",
        &reg.reference("interop/via-skopeo:v9"),
        "-o",
        via.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&via).unwrap(), wasm);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,hashlib;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A TCP front that answers the first `failures` connections with a 503
/// and closes them (or, with `resets` set, resets them after reading the
/// request), then forwards to the registry: retries with backoff carry a
/// push and a pull through.
#[test]
fn retries_carry_through_5xx_and_resets() {
    let reg = Registry::start(None);
    let env = Env::new();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_host = front.local_addr().unwrap().to_string();
    let backend = reg.host.clone();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, reset) = (failures.clone(), resets.clone());
    std::thread::spawn(move || {
        for conn in front.incoming() {
            let Ok(mut conn) = conn else { continue };
            if f.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                f.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                if reset.load(std::sync::atomic::Ordering::SeqCst) {
                    // SO_LINGER 0: closing sends a RST.
                    use std::os::fd::AsRawFd;
                    let linger = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    // SAFETY: a valid socket and a properly sized option.
                    unsafe {
                        libc::setsockopt(
                            conn.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&linger as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                    drop(conn);
                    continue;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let backend = backend.clone();
            std::thread::spawn(move || {
                let Ok(up) = std::net::TcpStream::connect(&backend) else {
                    return;
                };
                let (mut a, mut b) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut d) = (up, conn);
                let _ = std::io::copy(&mut c, &mut d);
                let _ = d.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    let reference = format!("{front_host}/retry/hello:v1");
    env.ok(&["push", test_programs::HELLO, &reference]);
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 0);
    failures.store(3, std::sync::atomic::Ordering::SeqCst);
    let out = env.path("r.wasm");
    env.ok(&["pull", &reference, "-o", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(test_programs::HELLO).unwrap()
    );
    // Connection resets are retried too.
    resets.store(true, std::sync::atomic::Ordering::SeqCst);
    failures.store(2, std::sync::atomic::Ordering::SeqCst);
    let fresh = Env::new();
    let out = fresh.path("reset.wasm");
    fresh.ok(&["pull", &reference, "-o", out.to_str().unwrap()]);
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 0);
    resets.store(false, std::sync::atomic::Ordering::SeqCst);
    // More failures than attempts: a clear error, not a hang.
    failures.store(100, std::sync::atomic::Ordering::SeqCst);
    let fresh = Env::new();
    let out = fresh.run(&["pull", &reference]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("503"), "{}", out.stderr);
}

/// `push --layout spin`: a Spin app in Spin's own OCI layout, checked field
/// by field against Spin's media types and locked-app format, then pulled
/// back by wasmops.
#[test]
fn spin_apps_push_in_spins_layout() {
    let reg = Registry::start(None);
    let env = Env::new();
    let app = env.path("app");
    std::fs::create_dir_all(app.join("static/css")).unwrap();
    std::fs::copy(test_programs::SPIN_KV, app.join("spin_kv.wasm")).unwrap();
    std::fs::write(app.join("static/small.txt"), "hi").unwrap();
    let big = "body { color: black; }\n".repeat(20);
    std::fs::write(app.join("static/css/site.css"), &big).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        r#"spin_manifest_version = 2

[application]
name = "shop"
version = "1.2.0"
description = "A shop"

[variables]
greeting = { default = "Hello" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "web"

[component.web]
source = "spin_kv.wasm"
files = ["static/**/*"]
key_value_stores = ["default"]
allowed_outbound_hosts = ["https://api.example.com"]
environment = { MODE = "prod" }
[component.web.variables]
greeting = "{{ greeting }}!"
"#,
    )
    .unwrap();
    let reference = reg.reference("apps/shop:1.2.0");
    let pushed = env.json(&[
        "push",
        app.to_str().unwrap(),
        &reference,
        "--layout",
        "spin",
        "--format",
        "json",
    ]);
    assert_eq!(pushed["kind"], "spin");
    // `--format spin` is the same layout (the same bytes, so the same
    // digest); its output is the digest, as text.
    let again = env.run(&[
        "push",
        app.to_str().unwrap(),
        &reg.reference("apps/shop:same"),
        "--format",
        "spin",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout.trim(), pushed["digest"].as_str().unwrap());

    let manifest = reg.manifest("apps/shop", "1.2.0");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "shop"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        "1.2.0"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let media: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        media,
        [
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.wasm.content.layer.v1+data",
            "application/vnd.fermyon.spin.application.v1+config",
        ],
        "{manifest}"
    );
    let config: Value = serde_json::from_slice(
        &reg.blob("apps/shop", manifest["config"]["digest"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    let locked_digest = layers[2]["digest"].as_str().unwrap();
    assert_eq!(
        config["config"]["Labels"]["com.fermyon.spin.lockedAppDigest"],
        locked_digest
    );
    let locked: Value = serde_json::from_slice(&reg.blob("apps/shop", locked_digest)).unwrap();
    assert_eq!(locked["spin_lock_version"], 0);
    assert_eq!(locked["metadata"]["name"], "shop");
    assert_eq!(locked["metadata"]["trigger"]["type"], "http");
    assert_eq!(locked["variables"]["greeting"]["default"], "Hello");
    assert_eq!(locked["variables"]["token"]["secret"], true);
    assert!(locked["variables"]["token"].get("default").is_none());
    let trigger = &locked["triggers"][0];
    assert_eq!(trigger["trigger_type"], "http");
    assert_eq!(trigger["trigger_config"]["component"], "web");
    assert_eq!(trigger["trigger_config"]["route"], "/...");
    let web = &locked["components"][0];
    assert_eq!(web["id"], "web");
    assert_eq!(web["source"]["content_type"], "application/wasm");
    assert_eq!(web["source"]["digest"], layers[0]["digest"]);
    assert_eq!(web["config"]["greeting"], "{{ greeting }}!");
    assert_eq!(web["env"]["MODE"], "prod");
    assert_eq!(web["metadata"]["key_value_stores"][0], "default");
    assert_eq!(
        web["metadata"]["allowed_outbound_hosts"][0],
        "https://api.example.com"
    );
    // Small files inline (base64), larger ones as data layers, by path.
    let files = web["files"].as_array().unwrap();
    let css = files
        .iter()
        .find(|f| f["path"] == "static/css/site.css")
        .unwrap();
    assert_eq!(css["digest"], layers[1]["digest"]);
    assert_eq!(
        reg.blob("apps/shop", layers[1]["digest"].as_str().unwrap()),
        big.as_bytes()
    );
    let small = files
        .iter()
        .find(|f| f["path"] == "static/small.txt")
        .unwrap();
    assert_eq!(small["inline"], "aGk=");
    // The layer digests are the bytes' own.
    assert_eq!(
        reg.blob("apps/shop", layers[0]["digest"].as_str().unwrap()),
        std::fs::read(test_programs::SPIN_KV).unwrap()
    );

    // wasmops reads it back as a Spin app.
    let out_dir = env.path("pulled");
    let pulled = env.json(&[
        "pull",
        &reference,
        "-o",
        out_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(pulled["kind"], "spin-app");
    assert_eq!(
        std::fs::read(out_dir.join("web.wasm")).unwrap(),
        std::fs::read(test_programs::SPIN_KV).unwrap()
    );
    // And serves it from the reference: the locked app becomes a
    // `spin.toml` beside its components and files.
    let state = env.path("served-state");
    let mut envs = env.vars();
    envs.push(("WASMOPS_VARIABLE_TOKEN", "t".into()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::up(
        Path::new(&reference),
        &["--state-dir", state.to_str().unwrap()],
        &envs,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(common::get(&server.url("/count")).await.text(), "1");
        assert_eq!(common::get(&server.url("/greeting")).await.text(), "Hello!");
    });
    drop(server);
    // A single component has no Spin layout of its own.
    let out = env.run(&[
        "push",
        test_programs::SPIN_KV,
        &reference,
        "--layout",
        "spin",
    ]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("--layout spin is for apps"),
        "{}",
        out.stderr
    );
}
