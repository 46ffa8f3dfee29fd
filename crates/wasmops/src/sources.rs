//! Reading a component or an app from a file or a reference, for every
//! command that takes one (`run`, `serve`, `up`, `node`, `deploy`, `scan`,
//! `check`, `compose`, `test`): the registry and signature-policy flags, the
//! pull under the policy (`wasmops_oci::resolve`), and the hand-down of
//! what a supervisor pulled to its worker processes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use clap::Args;
use wasmops_oci::distribution::{self, ArtifactKind};
use wasmops_oci::{Layout, resolve};

/// How registries are reached (shared by every command that takes a
/// reference).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// A registry (`host[:port]`) to reach over plain HTTP; loopback ones
    /// (`localhost`, `127.0.0.1`) always are. Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "WASMOPS_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
}

/// Where `run`/`serve`/`up` may take a reference from, and the signature
/// policy applied to it.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Refuse a reference unless it carries a signature that verifies with
    /// this public key (cosign format); local files are not affected.
    #[arg(long, value_name = "FILE", env = "WASMOPS_VERIFY_KEY")]
    pub verify_key: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub(crate) fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn store() -> anyhow::Result<Layout> {
    let dir = wasmops_oci::default_store_dir();
    Ok(Layout::open(&dir, true)?)
}

/// How a command without a signature policy of its own (push) pulls what
/// an app refers to: through the same registries, unsigned accepted.
pub fn pull_args(registry: &RegistryArgs) -> SourceArgs {
    SourceArgs {
        verify_key: None,
        registry: registry.clone(),
    }
}

impl SourceArgs {
    pub fn policy(&self) -> resolve::SourcePolicy {
        resolve::SourcePolicy {
            verify_key: self.verify_key.clone(),
            insecure: self.registry.insecure.clone(),
        }
    }
}

/// Whether `run`/`serve`/`up` should read `source` as a reference.
pub fn is_reference(source: &Path) -> bool {
    resolve::is_reference(&source.to_string_lossy())
}

/// Pulls a reference (checking the signature policy) for run/serve/up.
fn pull_checked(source: &str, args: &SourceArgs) -> anyhow::Result<(distribution::Pulled, Layout)> {
    let cache = store()?;
    Ok(tokio()?.block_on(resolve::pull_checked(source, &args.policy(), &cache))?)
}

/// The environment variable that hands a supervisor's pulls down to its
/// worker processes: one `REF<TAB>DIGEST<TAB>PATH` line per reference.
const PULLED_ENV: &str = "WASMOPS_PULLED";

/// What this process pulled, by reference: the digest (an app's manifest
/// digest; a component's content digest) and the file (a component) or
/// directory (an app) that holds it.
static PULLED: Mutex<Vec<(String, String, PathBuf)>> = Mutex::new(Vec::new());

/// Remembers a pull, so that worker processes read what this one pulled.
fn remember_pull(reference: &str, digest: &str, path: PathBuf) {
    let mut pulled = PULLED.lock().unwrap_or_else(|p| p.into_inner());
    pulled.retain(|(r, _, _)| r != reference);
    pulled.push((reference.to_string(), digest.to_string(), path));
}

/// For a supervisor about to start worker processes: the environment that
/// gives each the exact content this process pulled (a tag that moves in
/// between cannot make two workers serve two versions, and the registry is
/// asked once).
pub fn worker_env() -> Vec<(String, String)> {
    let pulled = PULLED.lock().unwrap_or_else(|p| p.into_inner());
    if pulled.is_empty() {
        return Vec::new();
    }
    let lines: Vec<String> = pulled
        .iter()
        .map(|(r, d, p)| format!("{r}\t{d}\t{}", p.display()))
        .collect();
    vec![(PULLED_ENV.to_string(), lines.join("\n"))]
}

/// In a worker process: what the supervisor pulled for `reference`.
fn handed_down(reference: &str) -> Option<(String, PathBuf)> {
    wasmops_server::workers::this_worker()?;
    let env = std::env::var(PULLED_ENV).ok()?;
    env.lines().find_map(|l| {
        let mut parts = l.splitn(3, '\t');
        (parts.next()? == reference)
            .then(|| Some((parts.next()?.to_string(), PathBuf::from(parts.next()?))))?
    })
}

/// Writes `bytes` into the content store's `dir` under their digest (once);
/// returns the digest and the file.
fn store_file(dir: &str, bytes: &[u8]) -> anyhow::Result<(String, PathBuf)> {
    let dir = wasmops_oci::default_store_dir().join(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let digest = wasmops_oci::digest(bytes);
    let file = dir.join(format!("{}.wasm", digest.replace(':', "-")));
    if !file.exists() {
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok((digest, file))
}

/// For a supervisor about to start worker processes: keeps the component
/// `read_source` pulled for `source` in the content store, for the
/// workers to read (a single process needs no file).
pub fn hand_down_component(source: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if is_reference(source) {
        let (digest, file) = store_file("components", bytes)?;
        remember_pull(&source.to_string_lossy(), &digest, file);
    }
    Ok(())
}

/// The bytes of a component given as a reference, or `None` for a file.
pub fn read_source(source: &Path, args: &SourceArgs) -> anyhow::Result<Option<Vec<u8>>> {
    if !is_reference(source) {
        return Ok(None);
    }
    let s = source.to_string_lossy();
    if let Some((_, file)) = handed_down(&s) {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(Some(bytes));
    }
    let (pulled, store) = pull_checked(&s, args)?;
    if matches!(pulled.kind, ArtifactKind::App | ArtifactKind::Spin) {
        anyhow::bail!("{s} is an app; serve it with `wasmops up {s}`");
    }
    Ok(Some(resolve::single_component(&s, &pulled, &store)?))
}

/// Pulls the app's dependencies given as registry references (under the
/// signature policy) into the content store, and points each at its file,
/// so that composing them reads files only.
pub fn resolve_dependencies(
    app: &mut wasmops_manifest::App,
    args: &SourceArgs,
) -> anyhow::Result<()> {
    use wasmops_manifest::DependencySource;
    for c in &mut app.components {
        for d in &mut c.dependencies {
            let DependencySource::Reference(r) = &d.source else {
                continue;
            };
            let context = |e: anyhow::Error| {
                anyhow::anyhow!("component `{}`: dependency `{}`: {e:#}", c.id, d.import)
            };
            if !resolve::is_reference(r) {
                return Err(context(anyhow::anyhow!(
                    "`{r}` is not a registry reference; write HOST[:PORT]/REPO:TAG"
                )));
            }
            let bytes = read_source(Path::new(r), args)
                .map_err(context)?
                .unwrap_or_default();
            let (digest, file) = store_file("components", &bytes)?;
            remember_pull(r, &digest, file.clone());
            d.source = DependencySource::Path(file);
        }
    }
    Ok(())
}

/// For `up`: a reference to an app is pulled and unpacked (once per
/// digest) into the content store; returns the app directory and the
/// app's digest, or `None` for a local path.
pub fn app_source(source: &Path, args: &SourceArgs) -> anyhow::Result<Option<(PathBuf, String)>> {
    if !is_reference(source) {
        return Ok(None);
    }
    let s = source.to_string_lossy();
    if let Some((digest, dir)) = handed_down(&s) {
        return Ok(Some((dir, digest)));
    }
    let (pulled, store) = pull_checked(&s, args)?;
    if !matches!(pulled.kind, ArtifactKind::App | ArtifactKind::Spin) {
        anyhow::bail!("{s} is a single component, not an app; serve it with `wasmops serve {s}`");
    }
    let root = wasmops_oci::default_store_dir().join("apps");
    let dir = resolve::unpacked_app(&s, &pulled, &store, &root)?;
    remember_pull(&s, &pulled.digest, dir.clone());
    Ok(Some((dir, pulled.digest)))
}

/// A reference pulled under the signature policy.
pub enum Fetched {
    /// An app, unpacked (once per digest) into the content store: its
    /// directory.
    App(PathBuf),
    /// A single component's bytes.
    Component(Vec<u8>),
}

/// For `scan`/`check`: a reference pulled, whatever it holds; `None` for a
/// local path.
pub fn fetch_source(source: &Path, args: &SourceArgs) -> anyhow::Result<Option<Fetched>> {
    if !is_reference(source) {
        return Ok(None);
    }
    let s = source.to_string_lossy();
    let (pulled, store) = pull_checked(&s, args)?;
    if matches!(pulled.kind, ArtifactKind::App | ArtifactKind::Spin) {
        let root = wasmops_oci::default_store_dir().join("apps");
        let dir = resolve::unpacked_app(&s, &pulled, &store, &root)?;
        return Ok(Some(Fetched::App(dir)));
    }
    Ok(Some(Fetched::Component(resolve::single_component(
        &s, &pulled, &store,
    )?)))
}
