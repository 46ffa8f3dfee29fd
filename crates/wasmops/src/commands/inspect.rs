//! `wasmops inspect`, `validate`, `scan` and `check`: what a component is,
//! whether it is valid for a world, what it is made of, and whether any of
//! that breaks a policy or is known to be vulnerable.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use wasmops_inspect::scan::{AdvisoryDb, Policy, ScanReport, Severity};

/// A file's WebAssembly binary: the text format (`.wat`) is assembled,
/// as `run` does.
fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'(' || b == b';');
    if !text {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid WebAssembly text: {}",
                path.display(),
                wasmops_component::one_line(&e.to_string())
            )
        })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

/// Show what a component (or core module) is: its world, its capabilities
/// in plain words, producers, metadata, embedded Rust dependencies, size by
/// section and SHA-256.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The file (.wasm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
    /// Print the component's world as WIT only.
    #[arg(long)]
    pub wit: bool,
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<i32> {
    let bytes = read(&args.file)?;
    let report = wasmops_inspect::inspect(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    if args.wit {
        match &report.wit {
            Some(wit) => print!("{wit}"),
            None => anyhow::bail!(
                "{}: no WIT to show ({}); `--wit` needs a valid component",
                args.file.display(),
                report
                    .notes
                    .first()
                    .map_or("not a component", String::as_str)
            ),
        }
        return Ok(0);
    }
    match args.format {
        InspectFormat::Text => print!("{}", report.to_text()),
        InspectFormat::Json => println!("{}", report.to_json()),
    }
    Ok(0)
}

/// Validate components and core modules with the features the host
/// enables; with --world, also check that each component fits that world:
/// the imports it does not provide and the exports that are missing.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The files (.wasm).
    #[arg(value_name = "FILES", required = true)]
    pub files: Vec<PathBuf>,
    /// A world to conform to: the strict `wasi:http/proxy`,
    /// `wasi:cli/command`, `wasi:http/service`, or `wasmops:host/http`, what
    /// the wasmops host gives an HTTP component (the proxy world and the
    /// `wasi:cli`, filesystem, socket, key-value and config interfaces that
    /// language runtimes import; each granted or denied at run time).
    #[arg(long, value_name = "WORLD")]
    pub world: Option<String>,
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<i32> {
    let mut failed = 0;
    for f in &args.files {
        let shown = f.display();
        let bytes = match read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        if let Err(e) = wasmops_inspect::validate(&bytes, wasmops_inspect::features()) {
            eprintln!("error: {shown}: invalid: {e}");
            failed += 1;
            continue;
        }
        match &args.world {
            None => println!("{shown}: valid"),
            Some(world) => match wasmops_inspect::conforms(&bytes, world) {
                Ok(c) if c.is_ok() => println!("{shown}: valid, conforms to {world}"),
                Ok(c) => {
                    failed += 1;
                    let mut why = Vec::new();
                    if !c.missing_exports.is_empty() {
                        why.push(format!("missing exports: {}", c.missing_exports.join(", ")));
                    }
                    if !c.unsupported_imports.is_empty() {
                        why.push(format!(
                            "imports the world does not provide: {}",
                            c.unsupported_imports.join(", ")
                        ));
                    }
                    eprintln!(
                        "error: {shown}: does not conform to {world}: {}",
                        why.join("; ")
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {shown}: {e}");
                }
            },
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
    Sarif,
    Cyclonedx,
}

/// Policy, vulnerabilities and SBOM.
#[derive(Args, Debug)]
pub struct ScanOptions {
    /// A policy file (TOML) instead of the built-in default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The RustSec advisory database (a directory) [default: $WASMOPS_ADVISORY_DB, or ~/.cache/wasmops/advisory-db when present].
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Clone or update the advisory database from this git URL first.
    #[arg(long, value_name = "GIT_URL")]
    pub update_db: Option<String>,
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
    /// Exit 1 when a finding or vulnerability is at least this severe
    /// [default: high]. Given explicitly, a scan that could not check
    /// vulnerabilities (no advisory database) fails too.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
}

impl ScanOptions {
    /// Whether the reports fail the run; an explicit `--fail-on` with no
    /// advisory database fails it, saying why.
    fn failing(
        &self,
        reports: &[(
            wasmops_inspect::scan::ScanReport,
            wasmops_inspect::Report,
            String,
        )],
    ) -> bool {
        let threshold = self.fail_on.unwrap_or(Severity::High);
        let unchecked = reports.iter().any(|(s, _, _)| !s.advisory_database);
        if self.fail_on.is_some() && unchecked {
            eprintln!(
                "error: --fail-on {threshold}: vulnerabilities were not checked: {}",
                wasmops_inspect::scan::NO_DATABASE
            );
            return true;
        }
        reports.iter().any(|(s, _, _)| s.fails(threshold))
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn default_db() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WASMOPS_ADVISORY_DB") {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")?;
    let d = PathBuf::from(home).join(".cache/wasmops/advisory-db");
    d.is_dir().then_some(d)
}

impl ScanOptions {
    fn load(&self) -> anyhow::Result<(Policy, Option<AdvisoryDb>)> {
        let policy = match &self.policy {
            Some(p) => Policy::from_file(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            None => Policy::default(),
        };
        let dir = self.db.clone().or_else(default_db);
        if let Some(url) = &self.update_db {
            let dir = dir
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--update-db needs a directory: give --db DIR"))?;
            let outcome = wasmops_inspect::scan::refresh_db(url, &dir)
                .map_err(|e| anyhow::anyhow!("cannot update the advisory database: {e}"))?;
            eprintln!("wasmops: advisory database {}: {outcome:?}", dir.display());
        }
        let db = match dir {
            Some(d) => Some(AdvisoryDb::load(&d).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the advisory database {}: {e}; fetch it with --update-db https://github.com/rustsec/advisory-db --db {}",
                    d.display(),
                    d.display()
                )
            })?),
            None => None,
        };
        Ok((policy, db))
    }
}

/// Check a component (or every component of an app) against a policy and
/// the RustSec advisory database, and write a report, SARIF or a CycloneDX
/// SBOM.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// A .wasm file, or an app (a directory with `wasmops.toml`, or the manifest).
    #[arg(value_name = "FILE|APP")]
    pub target: PathBuf,
    #[command(flatten)]
    pub options: ScanOptions,
}

/// The files to scan: the file itself, or an app's components.
fn targets(target: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let is_app = target.is_dir()
        || target
            .file_name()
            .is_some_and(|n| n == wasmops_manifest::FILE_NAME);
    if !is_app {
        return Ok(vec![(target.display().to_string(), target.to_path_buf())]);
    }
    let app = wasmops_manifest::load(target).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(app
        .components
        .iter()
        .map(|c| (c.id.clone(), c.source.clone()))
        .collect())
}

fn scan_all(
    files: &[(String, PathBuf)],
    options: &ScanOptions,
) -> anyhow::Result<Vec<(ScanReport, wasmops_inspect::Report, String)>> {
    let (policy, db) = options.load()?;
    let mut out = Vec::new();
    for (name, path) in files {
        let bytes = read(path)?;
        let report = wasmops_inspect::inspect(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let uri = path.display().to_string();
        let scanned = wasmops_inspect::scan(&uri, &report, &policy, db.as_ref());
        out.push((scanned, report, name.clone()));
    }
    Ok(out)
}

fn print_reports(
    reports: &[(ScanReport, wasmops_inspect::Report, String)],
    format: ScanFormat,
) -> anyhow::Result<()> {
    match format {
        ScanFormat::Table => {
            for (s, _, name) in reports {
                if reports.len() > 1 {
                    println!("== {name}");
                }
                print!("{}", s.to_table());
            }
        }
        ScanFormat::Json => {
            let all: Vec<serde_json::Value> = reports
                .iter()
                .map(|(s, _, _)| serde_json::from_str(&s.to_json()).unwrap_or_default())
                .collect();
            if all.len() == 1 {
                println!("{}", serde_json::to_string_pretty(&all[0])?);
            } else {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
        }
        ScanFormat::Sarif | ScanFormat::Cyclonedx if reports.len() > 1 => anyhow::bail!(
            "SARIF and CycloneDX output take one component; scan each file, or use --format json for the app"
        ),
        ScanFormat::Sarif => {
            let (s, _, _) = &reports[0];
            println!("{}", s.to_sarif(&s.file));
        }
        ScanFormat::Cyclonedx => {
            let (s, r, _) = &reports[0];
            println!("{}", s.to_cyclonedx(r));
        }
    }
    Ok(())
}

pub fn scan(args: &ScanArgs) -> anyhow::Result<i32> {
    let files = targets(&args.target)?;
    let reports = scan_all(&files, &args.options)?;
    print_reports(&reports, args.options.format)?;
    let failing = args.options.failing(&reports);
    Ok(if failing { 1 } else { 0 })
}

/// Validate and scan every component of an app: the one command a CI job
/// calls. Exits 1 on an invalid component or a finding at --fail-on.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The app: a directory holding `wasmops.toml`, or the manifest.
    #[arg(value_name = "DIR|FILE", default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub options: ScanOptions,
}

pub fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    let app = wasmops_manifest::load(&args.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut invalid = 0;
    let mut files = Vec::new();
    for c in &app.components {
        let bytes = match std::fs::read(&c.source) {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "error: component `{}`: cannot read {}: {e}; build it first (`wasmops build`)",
                    c.id,
                    c.source.display()
                );
                invalid += 1;
                continue;
            }
        };
        if let Err(e) = wasmops_inspect::validate(&bytes, wasmops_inspect::features()) {
            eprintln!("error: component `{}`: invalid: {e}", c.id);
            invalid += 1;
            continue;
        }
        let world = if c.routes.is_empty() {
            "wasi:cli/command"
        } else {
            "wasi:http/proxy"
        };
        if let Ok(conf) = wasmops_inspect::conforms(&bytes, world)
            && !conf.missing_exports.is_empty()
        {
            eprintln!(
                "error: component `{}`: does not export {} ({})",
                c.id,
                conf.missing_exports.join(", "),
                if c.routes.is_empty() {
                    "a command"
                } else {
                    "it has routes, so it must handle HTTP"
                }
            );
            invalid += 1;
            continue;
        }
        files.push((c.id.clone(), c.source.clone()));
    }
    let reports = scan_all(&files, &args.options)?;
    print_reports(&reports, args.options.format)?;
    let failing = args.options.failing(&reports);
    Ok(if failing || invalid > 0 { 1 } else { 0 })
}
