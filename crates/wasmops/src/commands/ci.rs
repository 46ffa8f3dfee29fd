//! `wasmops ci init github|gitlab`: the pipeline of an app, written as a
//! workflow the user commits as it is.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use wasmops_manifest::{App, Language};

/// CI/CD: pipelines generated from the app.
#[derive(Args, Debug)]
pub struct CiArgs {
    #[command(subcommand)]
    pub command: CiSub,
}

#[derive(Subcommand, Debug)]
pub enum CiSub {
    Init(InitArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    Github,
    Gitlab,
}

/// Write the app's CI/CD pipeline: a job building every component with its
/// language's toolchain, `wasmops check` (SARIF to code scanning, a
/// CycloneDX SBOM kept), `wasmops test`; then, on the main branch: push to
/// the registry, sign, deploy the pushed digest to staging, test it there
/// (rolling staging back when that fails), and promote the same digest to
/// production behind a protected environment. Running it again shows the
/// difference instead of overwriting edits, unless --force.
#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(value_enum)]
    pub provider: Provider,
    /// The app: a directory holding `wasmops.toml`, or the manifest.
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    /// Where the app is pushed [default: ghcr.io/OWNER/NAME on GitHub,
    /// $CI_REGISTRY_IMAGE on GitLab].
    #[arg(long, value_name = "REPO")]
    pub registry: Option<String>,
    /// The branch that deploys.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The wasmops version the pipeline installs.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub wasmops_version: String,
    /// Overwrite a file that differs from what would be written.
    #[arg(long)]
    pub force: bool,
}

/// A YAML node, written in the order given.
enum Y {
    /// A string, double-quoted.
    S(String),
    /// A plain scalar (numbers, booleans) or a `|` block for scripts.
    Plain(String),
    Script(String),
    M(Vec<(String, Y)>),
    L(Vec<Y>),
}

fn s(v: &str) -> Y {
    Y::S(v.to_string())
}

fn m(entries: Vec<(&str, Y)>) -> Y {
    Y::M(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn script(lines: &[&str]) -> Y {
    Y::Script(lines.join("\n") + "\n")
}

fn write(out: &mut String, y: &Y, level: usize) {
    let pad = " ".repeat(level);
    match y {
        Y::M(entries) => {
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(&key(k));
                out.push(':');
                after_key(out, v, level);
            }
        }
        Y::L(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Y::M(entries) if !entries.is_empty() => {
                        for (i, (k, v)) in entries.iter().enumerate() {
                            if i == 0 {
                                out.push(' ');
                            } else {
                                out.push_str(&pad);
                                out.push_str("  ");
                            }
                            out.push_str(&key(k));
                            out.push(':');
                            after_key(out, v, level + 2);
                        }
                    }
                    other => {
                        out.push(' ');
                        scalar(out, other, level + 2);
                    }
                }
            }
        }
        other => scalar(out, other, level),
    }
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        && !matches!(
            k,
            "on" | "off" | "yes" | "no" | "true" | "false" | "y" | "n"
        );
    if plain {
        k.to_string()
    } else {
        serde_json::Value::String(k.to_string()).to_string()
    }
}

fn after_key(out: &mut String, v: &Y, level: usize) {
    match v {
        Y::M(e) if !e.is_empty() => {
            out.push('\n');
            write(out, v, level + 2);
        }
        Y::L(l) if !l.is_empty() => {
            out.push('\n');
            write(out, v, level + 2);
        }
        Y::M(_) => out.push_str(" {}\n"),
        Y::L(_) => out.push_str(" []\n"),
        _ => {
            out.push(' ');
            scalar(out, v, level + 2);
        }
    }
}

fn scalar(out: &mut String, v: &Y, level: usize) {
    match v {
        Y::S(t) => {
            out.push_str(&serde_json::Value::String(t.clone()).to_string());
            out.push('\n');
        }
        Y::Plain(t) => {
            out.push_str(t);
            out.push('\n');
        }
        Y::Script(t) => {
            out.push_str("|\n");
            for line in t.lines() {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(level));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        Y::M(_) | Y::L(_) => write(out, v, level),
    }
}

/// The languages the app's components are built from.
fn languages(app: &App) -> Vec<Language> {
    let mut v: Vec<Language> = Vec::new();
    for c in &app.components {
        if let Some(b) = &c.build
            && !v.contains(&b.language)
        {
            v.push(b.language);
        }
    }
    v
}

const HEADER: &str = "# Generated by `wasmops ci init`; edit freely (running it again shows the\n# difference instead of overwriting, unless --force).\n";

/// Steps that set up a language's toolchain on a GitHub runner.
fn github_toolchain(l: Language) -> Vec<Y> {
    match l {
        // The commands' own tools are the app's to set up.
        Language::Command => Vec::new(),
        Language::Rust => vec![m(vec![
            ("name", s("Rust toolchain")),
            ("run", s("rustup target add wasm32-wasip2")),
        ])],
        Language::JavaScript | Language::TypeScript => vec![m(vec![
            ("name", s("Node.js")),
            ("uses", s("actions/setup-node@v4.1.0")),
            ("with", m(vec![("node-version", s("22"))])),
        ])],
        Language::Python => vec![
            m(vec![
                ("name", s("Python")),
                ("uses", s("actions/setup-python@v5.3.0")),
                ("with", m(vec![("python-version", s("3.12"))])),
            ]),
            m(vec![
                ("name", s("componentize-py")),
                ("run", s("pip install componentize-py==0.25.1")),
            ]),
        ],
        Language::Go => vec![m(vec![
            ("name", s("Go")),
            ("uses", s("actions/setup-go@v5.1.0")),
            ("with", m(vec![("go-version", s("1.24"))])),
        ])],
        Language::C => vec![m(vec![
            ("name", s("clang and wasi-libc")),
            (
                "run",
                s(
                    "sudo apt-get update && sudo apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32",
                ),
            ),
        ])],
    }
}

fn github_checkout() -> Y {
    m(vec![("uses", s("actions/checkout@v4.2.2"))])
}

/// Toolchains, the installed wasmops and the build cache, across runs.
fn github_cache() -> Y {
    m(vec![
        ("name", s("Caches: toolchains, wasmops, build outputs")),
        ("uses", s("actions/cache@v4.1.2")),
        (
            "with",
            m(vec![
                (
                    "path",
                    script(&[
                        "~/.cargo/bin",
                        "~/.cargo/registry",
                        "~/.cache/wasmops",
                        ".wasmops",
                    ]),
                ),
                (
                    "key",
                    s(
                        "wasmops-${{ runner.os }}-${{ hashFiles('**/wasmops.toml', '**/Cargo.lock', '**/package-lock.json') }}",
                    ),
                ),
                ("restore-keys", s("wasmops-${{ runner.os }}-")),
            ]),
        ),
    ])
}

fn github_install() -> Y {
    m(vec![
        ("name", s("wasmops")),
        (
            "run",
            s("cargo install --locked wasmops@${{ env.WASMOPS_VERSION }}"),
        ),
    ])
}

fn github(app: &App, a: &InitArgs) -> String {
    let name = &app.name;
    let registry = a
        .registry
        .clone()
        .unwrap_or_else(|| format!("ghcr.io/${{{{ github.repository_owner }}}}/{name}"));
    let main = format!(
        "github.ref == 'refs/heads/{}' && github.event_name == 'push'",
        a.branch
    );
    let mut build_steps = vec![github_checkout(), github_cache()];
    for l in languages(app) {
        build_steps.extend(github_toolchain(l));
    }
    build_steps.push(github_install());
    build_steps.extend([
        m(vec![("name", s("Build")), ("run", s("wasmops build"))]),
        m(vec![
            ("name", s("Check (validate, scan, policy)")),
            ("run", s("wasmops check --format sarif > wasmops.sarif")),
        ]),
        m(vec![
            ("name", s("Findings to code scanning")),
            ("if", s("always()")),
            ("uses", s("github/codeql-action/upload-sarif@v3.27.5")),
            ("with", m(vec![("sarif_file", s("wasmops.sarif"))])),
        ]),
        m(vec![
            ("name", s("SBOM")),
            ("run", s("wasmops check --format cyclonedx > sbom.cdx.json")),
        ]),
        m(vec![
            ("name", s("Smoke tests")),
            ("run", s("wasmops test --junit junit.xml")),
        ]),
        m(vec![
            ("name", s("Keep the SBOM and the test report")),
            ("if", s("always()")),
            ("uses", s("actions/upload-artifact@v4.4.3")),
            (
                "with",
                m(vec![
                    ("name", s("wasmops-reports")),
                    (
                        "path",
                        script(&["sbom.cdx.json", "junit.xml", "wasmops.sarif"]),
                    ),
                ]),
            ),
        ]),
    ]);
    let mut publish_steps = vec![github_checkout(), github_cache()];
    for l in languages(app) {
        publish_steps.extend(github_toolchain(l));
    }
    publish_steps.extend([
        github_install(),
        m(vec![("name", s("Build")), ("run", s("wasmops build"))]),
        m(vec![
            ("name", s("Push and sign")),
            ("id", s("push")),
            (
                "env",
                m(vec![
                    ("REGISTRY_TOKEN", s("${{ secrets.GITHUB_TOKEN }}")),
                    ("COSIGN_KEY", s("${{ secrets.COSIGN_KEY }}")),
                    ("COSIGN_PASSWORD", s("${{ secrets.COSIGN_PASSWORD }}")),
                ]),
            ),
            (
                "run",
                script(&[
                    "echo \"$REGISTRY_TOKEN\" | wasmops registry login ghcr.io --username \"${{ github.actor }}\" --password-stdin",
                    &format!("digest=$(wasmops push . \"{registry}:${{{{ github.sha }}}}\" --format json | jq -r .digest)"),
                    "printf '%s' \"$COSIGN_KEY\" > cosign.key",
                    &format!("wasmops sign \"{registry}@$digest\" --key cosign.key"),
                    "rm -f cosign.key",
                    &format!("echo \"reference={registry}@$digest\" >> \"$GITHUB_OUTPUT\""),
                ]),
            ),
        ]),
    ]);
    let deploy_env = |env: &str| {
        m(vec![(
            "WASMOPS_TOKEN",
            s(&format!(
                "${{{{ secrets.WASMOPS_TOKEN_{} }}}}",
                env.to_ascii_uppercase()
            )),
        )])
    };
    let staging_steps = vec![
        github_checkout(),
        github_install(),
        m(vec![
            ("name", s("Deploy the pushed digest to staging")),
            ("env", deploy_env("staging")),
            (
                "run",
                s(&format!(
                    "wasmops deploy \"${{{{ needs.publish.outputs.reference }}}}\" --env staging --name {name}"
                )),
            ),
        ]),
        m(vec![
            ("name", s("Smoke tests against staging")),
            (
                "run",
                s("wasmops test --env staging --junit staging-junit.xml"),
            ),
        ]),
        m(vec![
            ("name", s("Roll staging back when its tests fail")),
            ("if", s("failure()")),
            ("env", deploy_env("staging")),
            (
                "run",
                s(&format!("wasmops apps rollback {name} --env staging")),
            ),
        ]),
    ];
    let production_steps = vec![
        github_checkout(),
        github_install(),
        m(vec![
            (
                "name",
                s("Promote the digest tested in staging to production"),
            ),
            (
                "env",
                m(vec![(
                    "WASMOPS_TOKEN",
                    s("${{ secrets.WASMOPS_TOKEN_PRODUCTION }}"),
                )]),
            ),
            (
                "run",
                s(&format!("wasmops promote staging production --app {name}")),
            ),
        ]),
    ];
    let workflow = m(vec![
        ("name", s(&format!("wasmops: {name}"))),
        (
            "on",
            m(vec![
                ("push", m(vec![("branches", Y::L(vec![s(&a.branch)]))])),
                ("pull_request", Y::M(vec![])),
            ]),
        ),
        ("permissions", m(vec![("contents", s("read"))])),
        (
            "concurrency",
            m(vec![
                (
                    "group",
                    s("wasmops-${{ github.workflow }}-${{ github.ref }}"),
                ),
                ("cancel-in-progress", Y::Plain("true".into())),
            ]),
        ),
        ("env", m(vec![("WASMOPS_VERSION", s(&a.wasmops_version))])),
        (
            "jobs",
            m(vec![
                (
                    "build",
                    m(vec![
                        ("runs-on", s("ubuntu-latest")),
                        (
                            "permissions",
                            m(vec![
                                ("contents", s("read")),
                                ("security-events", s("write")),
                            ]),
                        ),
                        ("steps", Y::L(build_steps)),
                    ]),
                ),
                (
                    "publish",
                    m(vec![
                        ("needs", s("build")),
                        ("if", s(&main)),
                        ("runs-on", s("ubuntu-latest")),
                        (
                            "permissions",
                            m(vec![("contents", s("read")), ("packages", s("write"))]),
                        ),
                        (
                            "outputs",
                            m(vec![(
                                "reference",
                                s("${{ steps.push.outputs.reference }}"),
                            )]),
                        ),
                        ("steps", Y::L(publish_steps)),
                    ]),
                ),
                (
                    "staging",
                    m(vec![
                        ("needs", s("publish")),
                        ("runs-on", s("ubuntu-latest")),
                        ("environment", s("staging")),
                        (
                            "concurrency",
                            m(vec![
                                ("group", s("wasmops-staging")),
                                ("cancel-in-progress", Y::Plain("false".into())),
                            ]),
                        ),
                        ("steps", Y::L(staging_steps)),
                    ]),
                ),
                (
                    "production",
                    m(vec![
                        ("needs", Y::L(vec![s("publish"), s("staging")])),
                        ("runs-on", s("ubuntu-latest")),
                        // A protected environment: its reviewers approve.
                        ("environment", s("production")),
                        (
                            "concurrency",
                            m(vec![
                                ("group", s("wasmops-production")),
                                ("cancel-in-progress", Y::Plain("false".into())),
                            ]),
                        ),
                        ("steps", Y::L(production_steps)),
                    ]),
                ),
            ]),
        ),
    ]);
    let mut out = String::from(HEADER);
    write(&mut out, &workflow, 0);
    out
}

/// The image a GitLab job runs in, and its set-up lines, per language.
fn gitlab_setup(l: Language) -> &'static str {
    match l {
        Language::Rust => "rustup target add wasm32-wasip2",
        Language::JavaScript | Language::TypeScript => {
            "apt-get update && apt-get install -y nodejs npm"
        }
        Language::Python => {
            "apt-get update && apt-get install -y python3-pip && pip install --break-system-packages componentize-py==0.25.1"
        }
        Language::Go => "apt-get update && apt-get install -y golang-go",
        Language::C => {
            "apt-get update && apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32"
        }
        // The commands' own tools are the app's to set up.
        Language::Command => "",
    }
}

fn gitlab(app: &App, a: &InitArgs) -> String {
    let name = &app.name;
    let registry = a
        .registry
        .clone()
        .unwrap_or_else(|| "$CI_REGISTRY_IMAGE".to_string());
    let mut setup = vec!["cargo install --locked wasmops@$WASMOPS_VERSION".to_string()];
    for l in languages(app) {
        let line = gitlab_setup(l);
        if !line.is_empty() {
            setup.push(line.to_string());
        }
    }
    let setup_refs: Vec<&str> = setup.iter().map(String::as_str).collect();
    let on_main = m(vec![(
        "if",
        s(&format!(
            "$CI_COMMIT_BRANCH == \"{}\" && $CI_PIPELINE_SOURCE == \"push\"",
            a.branch
        )),
    )]);
    let cache = m(vec![
        ("key", s("wasmops-$CI_COMMIT_REF_SLUG")),
        ("paths", Y::L(vec![s(".cargo/"), s(".wasmops/")])),
    ]);
    let pipeline = m(vec![
        (
            "stages",
            Y::L(vec![
                s("build"),
                s("publish"),
                s("staging"),
                s("production"),
            ]),
        ),
        (
            "variables",
            m(vec![
                ("WASMOPS_VERSION", s(&a.wasmops_version)),
                ("CARGO_HOME", s("$CI_PROJECT_DIR/.cargo")),
            ]),
        ),
        (
            "default",
            m(vec![
                ("image", s("rust:1-bookworm")),
                ("cache", cache),
                (
                    "before_script",
                    Y::L(setup_refs.iter().map(|l| s(l)).collect()),
                ),
            ]),
        ),
        (
            "build",
            m(vec![
                ("stage", s("build")),
                (
                    "script",
                    Y::L(vec![
                        s("wasmops build"),
                        s("wasmops check --format sarif > wasmops.sarif"),
                        s("wasmops check --format cyclonedx > sbom.cdx.json"),
                        s("wasmops test --junit junit.xml"),
                    ]),
                ),
                (
                    "artifacts",
                    m(vec![
                        ("when", s("always")),
                        ("paths", Y::L(vec![s("wasmops.sarif"), s("sbom.cdx.json")])),
                        (
                            "reports",
                            m(vec![
                                ("junit", s("junit.xml")),
                                ("cyclonedx", Y::L(vec![s("sbom.cdx.json")])),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "publish",
            m(vec![
                ("stage", s("publish")),
                ("rules", Y::L(vec![on_main])),
                (
                    "script",
                    Y::L(vec![
                        s("wasmops build"),
                        s(
                            "echo \"$CI_REGISTRY_PASSWORD\" | wasmops registry login \"$CI_REGISTRY\" --username \"$CI_REGISTRY_USER\" --password-stdin",
                        ),
                        s(&format!(
                            "digest=$(wasmops push . \"{registry}:$CI_COMMIT_SHA\" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"digest\"])')"
                        )),
                        s(&format!(
                            "wasmops sign \"{registry}@$digest\" --key \"$COSIGN_KEY_FILE\""
                        )),
                        s(&format!(
                            "echo \"REFERENCE={registry}@$digest\" > publish.env"
                        )),
                    ]),
                ),
                (
                    "artifacts",
                    m(vec![("reports", m(vec![("dotenv", s("publish.env"))]))]),
                ),
            ]),
        ),
        (
            "staging",
            m(vec![
                ("stage", s("staging")),
                ("needs", Y::L(vec![s("publish")])),
                (
                    "rules",
                    Y::L(vec![m(vec![(
                        "if",
                        s(&format!(
                            "$CI_COMMIT_BRANCH == \"{}\" && $CI_PIPELINE_SOURCE == \"push\"",
                            a.branch
                        )),
                    )])]),
                ),
                ("environment", m(vec![("name", s("staging"))])),
                ("resource_group", s("staging")),
                (
                    "script",
                    Y::L(vec![
                        s(&format!(
                            "WASMOPS_TOKEN=\"$WASMOPS_TOKEN_STAGING\" wasmops deploy \"$REFERENCE\" --env staging --name {name}"
                        )),
                        s(&format!(
                            "wasmops test --env staging --junit staging-junit.xml || (WASMOPS_TOKEN=\"$WASMOPS_TOKEN_STAGING\" wasmops apps rollback {name} --env staging; exit 1)"
                        )),
                    ]),
                ),
            ]),
        ),
        (
            "production",
            m(vec![
                ("stage", s("production")),
                ("needs", Y::L(vec![s("staging")])),
                (
                    "rules",
                    Y::L(vec![m(vec![
                        (
                            "if",
                            s(&format!(
                                "$CI_COMMIT_BRANCH == \"{}\" && $CI_PIPELINE_SOURCE == \"push\"",
                                a.branch
                            )),
                        ),
                        ("when", s("manual")),
                    ])]),
                ),
                ("environment", m(vec![("name", s("production"))])),
                ("resource_group", s("production")),
                (
                    "script",
                    Y::L(vec![s(&format!(
                        "WASMOPS_TOKEN=\"$WASMOPS_TOKEN_PRODUCTION\" wasmops promote staging production --app {name}"
                    ))]),
                ),
            ]),
        ),
    ]);
    let mut out = String::from(HEADER);
    write(&mut out, &pipeline, 0);
    out
}

/// A short line-by-line difference: `-` lines on disk, `+` lines written.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence, enough for files of a few hundred lines.
    let mut l = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || l[i][j + 1] >= l[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

pub fn run(args: &CiArgs) -> anyhow::Result<i32> {
    let CiSub::Init(a) = &args.command;
    let manifest_path = if a.app.is_dir() {
        wasmops_manifest::manifest_in(&a.app).unwrap_or_else(|| a.app.join("wasmops.toml"))
    } else {
        a.app.clone()
    };
    if !manifest_path.is_file() {
        anyhow::bail!(
            "{} is not an app: no wasmops.toml; run `wasmops ci init` in an app directory (`wasmops new` makes one)",
            a.app.display()
        );
    }
    let app = wasmops_manifest::load(&a.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (rel, text) = match a.provider {
        Provider::Github => (
            Path::new(".github/workflows").join(format!("wasmops-{}.yml", app.name)),
            github(&app, a),
        ),
        Provider::Gitlab => (PathBuf::from(".gitlab-ci.yml"), gitlab(&app, a)),
    };
    let path = app.dir.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => {
            println!("{} is up to date", path.display());
            return Ok(0);
        }
        Ok(old) if !a.force => {
            println!(
                "{} differs from what `wasmops ci init` writes now:",
                path.display()
            );
            print!("{}", diff(&old, &text));
            println!("(left as it is: rerun with --force to overwrite it)");
            return Ok(1);
        }
        _ => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    let next = match a.provider {
        Provider::Github => {
            "secrets COSIGN_KEY, COSIGN_PASSWORD, WASMOPS_TOKEN_STAGING, WASMOPS_TOKEN_PRODUCTION; environments `staging` and `production` (protected, with reviewers)"
        }
        Provider::Gitlab => {
            "CI/CD variables COSIGN_KEY_FILE (file), COSIGN_PASSWORD, WASMOPS_TOKEN_STAGING, WASMOPS_TOKEN_PRODUCTION (masked, protected)"
        }
    };
    println!(
        "next: commit it, and set {next}; [environments.staging] and [environments.production] in wasmops.toml name the nodes"
    );
    Ok(0)
}
