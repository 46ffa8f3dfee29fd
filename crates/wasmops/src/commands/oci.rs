//! `wasmops push`, `pull`, `sign`, `verify`, `keygen` and `registry
//! login/logout`; and the reading of references for `run`, `serve` and
//! `up`. A reference is `oci-layout:PATH[:TAG|@DIGEST]` (a local OCI layout)
//! or `[HOST[:PORT]/]REPO[:TAG][@DIGEST]` (a registry).

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use wasmops_oci::auth::{Credential, Credentials};
use wasmops_oci::distribution::{self, ArtifactKind, Blob, Target};
use wasmops_oci::registry::{Progress, ProgressFn, Registry, RegistryOptions};
use wasmops_oci::{ComponentInfo, resolve, sign};

use crate::sources::{RegistryArgs, pull_args, store, tokio};

/// Store a component (a `.wasm` file) as a CNCF Wasm OCI artifact, or an
/// app (a directory with `wasmops.toml`, or the manifest) as a wasmops app
/// artifact, and print the manifest digest. Blobs the registry has are not
/// sent again.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The component (.wasm), or the app (directory or wasmops.toml).
    #[arg(value_name = "FILE|APP")]
    pub source: PathBuf,
    /// Where: `HOST[:PORT]/REPO[:TAG]`, or `oci-layout:PATH[:TAG]` (tag `latest` by default).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The app's layout: `wasmops` (its manifest, components and files), or
    /// `spin`, Spin's own (a locked app, a layer per component and file),
    /// which `spin up --from` and SpinKube run.
    #[arg(long, value_enum, default_value_t = AppLayout::Wasmops)]
    pub layout: AppLayout,
    /// `json`: one JSON document on stdout (docs/cli.md); `spin`: the same
    /// as `--layout spin`, with the text output.
    #[arg(long = "format", value_enum, default_value_t = PushFormat::Text)]
    pub format: PushFormat,
    /// The same as `--format json`.
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What `push --format` takes: the output (`text`, `json`), or `spin`,
/// Spin's own layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PushFormat {
    Text,
    Json,
    Spin,
}

impl PushArgs {
    fn layout(&self) -> AppLayout {
        if self.format == PushFormat::Spin {
            AppLayout::Spin
        } else {
            self.layout
        }
    }

    fn json(&self) -> bool {
        self.json || self.format == PushFormat::Json
    }
}

/// How an app is laid out in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AppLayout {
    Wasmops,
    Spin,
}

/// Fetch an artifact into the local content store, verifying every digest
/// (blobs the store holds are not fetched again), and write its components:
/// a CNCF component to `-o FILE`; a wasmops app, or a Spin app's
/// components, into the directory `-o DIR`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// What: `HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]` or `oci-layout:PATH[:TAG|@sha256:DIGEST]`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Where to write the component (a file) or the app (a new directory);
    /// without it, the artifact is only stored.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Sign an artifact with a cosign key; the signature is stored beside it
/// (tag `sha256-<digest>.sig`), where cosign looks.
#[derive(Args, Debug)]
pub struct SignArgs {
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The private key (`wasmops keygen` or `cosign generate-key-pair`);
    /// its password comes from COSIGN_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// An annotation to sign along (`KEY=VALUE`). Repeatable.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Check that an artifact carries a signature by a key; exit 1 if not.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The public key (cosign format, `.pub`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub format: crate::options::FormatArg,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Generate a cosign-compatible ECDSA P-256 key pair: PREFIX.key (encrypted
/// with COSIGN_PASSWORD, else a prompted password) and PREFIX.pub.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Path prefix of the two files.
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_prefix: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Registry credentials, kept where Docker keeps them.
#[derive(Args, Debug)]
pub struct RegistryCommand {
    #[command(subcommand)]
    pub command: RegistrySub,
}

#[derive(Subcommand, Debug)]
pub enum RegistrySub {
    /// Check credentials against a registry and store them (in Docker's
    /// config.json, or the credential helper it names).
    Login(LoginArgs),
    /// Forget the credentials of a registry.
    Logout(LogoutArgs),
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry: `host[:port]`.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// The user name.
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: String,
    /// Read the password from stdin (else WASMOPS_REGISTRY_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    #[arg(value_name = "HOST")]
    pub host: String,
}

fn registry(args: &RegistryArgs) -> anyhow::Result<Arc<Registry>> {
    Ok(Arc::new(Registry::new(RegistryOptions {
        insecure: args.insecure.clone(),
        ..RegistryOptions::default()
    })?))
}

/// A reference as a target; a layout is created when `create`.
fn target(s: &str, args: &RegistryArgs, create: bool) -> anyhow::Result<Target> {
    Ok(resolve::target(s, &args.insecure, create)?)
}

/// Progress bars on a terminal, nothing otherwise.
fn progress() -> (ProgressFn, Option<indicatif::MultiProgress>) {
    if !std::io::stderr().is_terminal() {
        return (wasmops_oci::registry::quiet(), None);
    }
    let multi = indicatif::MultiProgress::new();
    let bars: Mutex<std::collections::HashMap<String, indicatif::ProgressBar>> =
        Mutex::new(std::collections::HashMap::new());
    let m = multi.clone();
    let style = indicatif::ProgressStyle::with_template(
        "{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let f: ProgressFn = Arc::new(move |p| {
        let Ok(mut bars) = bars.lock() else { return };
        match p {
            Progress::Start { digest, total } => {
                let bar = m.add(indicatif::ProgressBar::new(total));
                bar.set_style(style.clone());
                bar.set_message(digest[7..19].to_string());
                bars.insert(digest, bar);
            }
            Progress::Advance { digest, bytes } => {
                if let Some(b) = bars.get(&digest) {
                    b.inc(bytes);
                }
            }
            Progress::Done { digest, skipped } => {
                if let Some(b) = bars.remove(&digest) {
                    b.finish();
                } else if skipped {
                    let _ = m.println(format!("{} already there", &digest[7..19]));
                }
            }
        }
    });
    (f, Some(multi))
}

fn component_info(path: &Path, wasm: &[u8]) -> anyhow::Result<ComponentInfo> {
    let report =
        wasmops_inspect::inspect(wasm).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !report.valid {
        anyhow::bail!(
            "{}: not a valid WebAssembly file: {}",
            path.display(),
            report.validation_error.as_deref().unwrap_or("invalid")
        );
    }
    let component = matches!(report.kind, wasmops_inspect::WasmKind::Component);
    let mut annotations = Vec::new();
    for (field, key) in [
        ("version", "version"),
        ("description", "description"),
        ("licenses", "licenses"),
        ("source", "source"),
        ("revision", "revision"),
        ("homepage", "url"),
    ] {
        if let Some(v) = report.metadata_value(field) {
            annotations.push((key.to_string(), v.to_string()));
        }
    }
    if let Some(name) = path.file_name() {
        annotations.push(("title".into(), name.to_string_lossy().into_owned()));
    }
    let exports: Vec<String> = report.exports.iter().map(|e| e.name.clone()).collect();
    Ok(ComponentInfo {
        os: if component { "wasip2" } else { "wasip1" }.into(),
        imports: report.imports.iter().map(|i| i.display_name()).collect(),
        target: target_world(&exports),
        exports,
        author: report.metadata_value("authors").map(str::to_string),
        annotations,
        created: crate::artifact::created_rfc3339(&[path]),
    })
}

/// The standard world a component's exports make it, with their version:
/// `wasi:http/proxy` for an incoming handler, `wasi:cli/command` for `run`.
fn target_world(exports: &[String]) -> Option<String> {
    exports.iter().find_map(|e| {
        let (name, version) = e.split_once('@').unwrap_or((e, ""));
        let world = match name {
            "wasi:http/incoming-handler" | "wasi:http/handler" => "wasi:http/proxy",
            "wasi:cli/run" => "wasi:cli/command",
            _ => return None,
        };
        Some(if version.is_empty() {
            world.to_string()
        } else {
            format!("{world}@{version}")
        })
    })
}

pub fn push(args: &PushArgs) -> anyhow::Result<i32> {
    let t = target(&args.reference, &args.registry, true)?;
    match &t {
        Target::Layout { reference, .. } if reference.starts_with("sha256:") => {
            anyhow::bail!("push needs a tag, not a digest: oci-layout:PATH:TAG")
        }
        Target::Registry { reference, .. } if reference.digest.is_some() => {
            anyhow::bail!("push needs a tag, not a digest: HOST/REPO:TAG")
        }
        _ => {}
    }
    let is_app = args.source.is_dir() || args.source.extension().is_some_and(|e| e == "toml");
    let layout = args.layout();
    let (blobs, manifest, kind) = if is_app && layout == AppLayout::Spin {
        let input = crate::artifact::spin_input(&args.source, &pull_args(&args.registry))?;
        let (blobs, manifest) = wasmops_oci::spin::spin_artifact(&input)?;
        (blobs, manifest, "spin")
    } else if is_app {
        let input = crate::artifact::app_input(&args.source, &pull_args(&args.registry))?;
        let (blobs, manifest) = wasmops_oci::app::app_artifact(&input)?;
        (blobs, manifest, "app")
    } else if layout == AppLayout::Spin {
        anyhow::bail!(
            "--layout spin is for apps: give the app's directory (with wasmops.toml or spin.toml)"
        );
    } else {
        let wasm = std::fs::read(&args.source)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.source.display()))?;
        let info = component_info(&args.source, &wasm)?;
        let (config, manifest) = wasmops_oci::component_artifact(&wasm, &info);
        (
            vec![Blob::new(config), Blob::new(wasm)],
            manifest,
            "component",
        )
    };
    let (progress, _bars) = progress();
    let pushed = tokio()?.block_on(distribution::push(&t, &blobs, &manifest, &progress))?;
    if args.json() {
        println!(
            "{}",
            serde_json::json!({
                "digest": pushed.digest,
                "reference": t.to_string(),
                "kind": kind,
                "uploaded": pushed.uploaded,
                "skipped": pushed.skipped,
            })
        );
    } else {
        println!("{}", pushed.digest);
    }
    Ok(0)
}

pub fn pull(args: &PullArgs) -> anyhow::Result<i32> {
    let t = target(&args.reference, &args.registry, false)?;
    let cache = store()?;
    let (progress, _bars) = progress();
    let pulled = tokio()?.block_on(distribution::pull(&t, &cache, &progress))?;
    let blobs_in = match &t {
        Target::Layout { store, .. } => store,
        Target::Registry { .. } => &cache,
    };
    let mut written = Vec::new();
    if let Some(out) = &args.output {
        match pulled.kind {
            ArtifactKind::Component => {
                let (_, wasm) = wasmops_oci::app::components(blobs_in, &pulled)?
                    .into_iter()
                    .next()
                    .context("no component")?;
                write_file(out, &wasm)?;
                written.push(out.clone());
            }
            ArtifactKind::App => {
                wasmops_oci::app::unpack_app(blobs_in, &pulled, out)?;
                written.push(out.clone());
            }
            ArtifactKind::Spin => {
                std::fs::create_dir_all(out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                for (id, wasm) in wasmops_oci::app::components(blobs_in, &pulled)? {
                    let p = out.join(format!("{id}.wasm"));
                    write_file(&p, &wasm)?;
                    written.push(p);
                }
            }
        }
    }
    let kind = match pulled.kind {
        ArtifactKind::Component => "component",
        ArtifactKind::App => "app",
        ArtifactKind::Spin => "spin-app",
    };
    if args.format.json() {
        println!(
            "{}",
            serde_json::json!({
                "digest": pulled.digest,
                "reference": t.to_string(),
                "kind": kind,
                "fetched": pulled.fetched,
                "written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "store": blobs_in.root().display().to_string(),
            })
        );
    } else {
        let to = if written.is_empty() {
            blobs_in.root().display().to_string()
        } else {
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("{} {to}", pulled.digest);
    }
    Ok(0)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wasm.partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        })
}

/// COSIGN_PASSWORD, else a prompt on the terminal.
fn key_password(confirm: bool) -> anyhow::Result<Vec<u8>> {
    if let Ok(p) = std::env::var("COSIGN_PASSWORD") {
        return Ok(p.into_bytes());
    }
    let p = read_secret("Password for the private key: ")?;
    if confirm && read_secret("Again: ")? != p {
        anyhow::bail!("the passwords differ");
    }
    Ok(p.into_bytes())
}

/// Reads a line from the terminal without echo.
fn read_secret(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            anyhow::anyhow!(
                "no terminal to ask for the password; set COSIGN_PASSWORD (it may be empty)"
            )
        })?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the duration of the calls.
    let saved = unsafe { libc::tcgetattr(fd, &mut term) } == 0;
    let old = term;
    if saved {
        term.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    }
    let mut w = &tty;
    let _ = write!(w, "{prompt}");
    let _ = w.flush();
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    if saved {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    let _ = writeln!(w);
    r.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<i32> {
    let key = args.output_prefix.with_extension("key");
    let public = args.output_prefix.with_extension("pub");
    for p in [&key, &public] {
        if p.exists() && !args.force {
            anyhow::bail!("{} exists; pass --force to overwrite it", p.display());
        }
    }
    let password = key_password(true)?;
    let (private_pem, public_pem) = sign::generate(&password)?;
    write_private(&key, private_pem.as_bytes())?;
    std::fs::write(&public, public_pem)
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!("Private key written to {}", key.display());
    println!("Public key written to {}", public.display());
    Ok(0)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn parse_annotations(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|a| {
            a.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("annotation `{a}`: expected KEY=VALUE"))
        })
        .collect()
}

pub fn sign_cmd(args: &SignArgs) -> anyhow::Result<i32> {
    let annotations = parse_annotations(&args.annotations)?;
    let pem = std::fs::read(&args.key)
        .with_context(|| format!("cannot read the key {}", args.key.display()))?;
    if !String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
        anyhow::bail!(
            "{} is not a private key; sign with the `.key` file (`.pub` is for verify)",
            args.key.display()
        );
    }
    let signer = sign::signer(&pem, &key_password(false)?)?;
    let t = target(&args.reference, &args.registry, false)?;
    let (progress, _bars) = progress();
    let (digest, tag) = tokio()?.block_on(sign::sign(&t, &signer, &annotations, &progress))?;
    if args.format.json() {
        crate::options::print_json(&serde_json::json!({
            "digest": digest,
            "reference": t.to_string(),
            "signature_tag": tag,
            "annotations": annotations.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        }));
    } else {
        println!("signed {digest} (signature at tag {tag})");
    }
    Ok(0)
}

pub fn verify_cmd(args: &VerifyArgs) -> anyhow::Result<i32> {
    let key = load_public_key(&args.key)?;
    let t = target(&args.reference, &args.registry, false)?;
    let v = tokio()?.block_on(sign::verify(&t, &key))?;
    if args.format.json() {
        println!(
            "{}",
            serde_json::json!({"digest": v.digest, "verified": true, "identity": v.identity, "annotations": v.annotations})
        );
    } else {
        println!("verified {} ({})", v.digest, t);
    }
    Ok(0)
}

fn load_public_key(path: &Path) -> anyhow::Result<sign::PublicKey> {
    Ok(resolve::load_public_key(path)?)
}

pub fn registry_cmd(args: &RegistryCommand) -> anyhow::Result<i32> {
    let creds = Credentials::from_env();
    match &args.command {
        RegistrySub::Login(a) => {
            let password = if a.password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the password from stdin")?;
                s.trim_end_matches(['\n', '\r']).to_string()
            } else if let Ok(p) = std::env::var("WASMOPS_REGISTRY_PASSWORD") {
                p
            } else {
                read_secret("Password: ").map_err(|_| {
                    anyhow::anyhow!("no terminal to ask for the password; pass --password-stdin")
                })?
            };
            let host = a.host.trim_end_matches('/');
            let cred = Credential {
                username: a.username.clone(),
                password,
            };
            tokio()?.block_on(registry(&a.registry)?.check_login(host, &cred))?;
            let wherein = creds.store(host, &cred)?;
            println!("Login succeeded; credentials stored in {wherein}");
            Ok(0)
        }
        RegistrySub::Logout(a) => {
            if creds.erase(&a.host)? {
                println!("Removed the credentials of {}", a.host);
            } else {
                println!("No credentials for {}", a.host);
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let t = crate::artifact::created_rfc3339(&[]);
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T");
    }

    #[test]
    fn target_worlds() {
        let w =
            |e: &[&str]| super::target_world(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            w(&["wasi:http/incoming-handler@0.2.6"]).as_deref(),
            Some("wasi:http/proxy@0.2.6")
        );
        assert_eq!(
            w(&["x:y/z", "wasi:cli/run@0.2.0"]).as_deref(),
            Some("wasi:cli/command@0.2.0")
        );
        assert_eq!(w(&["x:y/z"]), None);
    }

    #[test]
    fn annotations() {
        assert_eq!(
            super::parse_annotations(&["a=b=c".into()]).unwrap(),
            vec![("a".to_string(), "b=c".to_string())]
        );
        assert!(super::parse_annotations(&["=x".into()]).is_err());
        assert!(super::parse_annotations(&["x".into()]).is_err());
    }
}
