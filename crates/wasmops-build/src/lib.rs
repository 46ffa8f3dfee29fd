//! Builds an app's components from source with each language's real
//! toolchain: cargo (wasm32-wasip2), componentize-js (JavaScript, and
//! TypeScript after `tsc`), componentize-py, clang with wasi-libc, and Go
//! (GOOS=wasip1). Core modules (C, Go) are turned into components with the
//! WASI preview1 adapter; every output is validated as a component before
//! it replaces the previous one.
//!
//! Results are cached by a hash of the recipe, the toolchain's versions and
//! every input file, so a rebuild with nothing changed does no work and a
//! change rebuilds only its component. Independent components build in
//! parallel.

pub mod metadata;
pub mod toolchain;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmops_manifest::{App, BuildSpec, ComponentSpec, Language};

pub use toolchain::{Tool, tools};

/// Why a component did not build. One line each.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    #[error("component `{id}`: {hint}; or run `wasmops doctor` for details")]
    MissingToolchain { id: String, hint: String },
    #[error("component `{id}`: {tool} failed ({status}); its output is above, the full log in {}", .log.display())]
    Tool {
        id: String,
        tool: String,
        status: String,
        /// The tool's last lines of output.
        output: String,
        log: PathBuf,
    },
    #[error("component `{id}`: the build did not produce {}; check that `source` names the toolchain's output", .path.display())]
    NoOutput { id: String, path: PathBuf },
    #[error("component `{id}`: the build output is not a valid component: {detail}")]
    NotComponent { id: String, detail: String },
    #[error("component `{id}`: {detail}")]
    Io { id: String, detail: String },
    #[error("component `{id}` has no build recipe; add a `[component.{id}.build]` table")]
    NoRecipe { id: String },
}

impl BuildError {
    /// The tool's output to show with the error, if any.
    pub fn output(&self) -> Option<&str> {
        match self {
            BuildError::Tool { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// What happened to one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Built now, with notes on what the output carries (its dependency
    /// list, the package metadata embedded) or lacks.
    Built(Vec<String>),
    /// Nothing changed since the last build.
    Cached,
}

/// Progress, reported as it happens (from several threads).
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        id: &'a str,
        language: Language,
    },
    Finished {
        id: &'a str,
        result: &'a Result<Outcome, BuildError>,
        elapsed: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Components built at once.
    pub jobs: usize,
    /// Build even when the cache says nothing changed.
    pub force: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            force: false,
        }
    }
}

/// Builds the components of `app` that have a recipe (or those named in
/// `only`), in parallel, and returns each one's result in manifest order.
pub fn build_app(
    app: &App,
    only: Option<&[String]>,
    options: &Options,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Vec<(String, Result<Outcome, BuildError>)> {
    let todo: Vec<&ComponentSpec> = app
        .components
        .iter()
        .filter(|c| match only {
            Some(ids) => ids.contains(&c.id),
            None => c.build.is_some(),
        })
        .collect();
    let queue = Mutex::new(todo.iter().copied().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..options.jobs.max(1).min(todo.len().max(1)) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((i, c)) = next else { break };
                    let started = Instant::now();
                    if let Some(b) = &c.build {
                        on_event(Event::Started {
                            id: &c.id,
                            language: b.language,
                        });
                    }
                    let r = build_component(app, c, options.force);
                    on_event(Event::Finished {
                        id: &c.id,
                        result: &r,
                        elapsed: started.elapsed(),
                    });
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, c.id.clone(), r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| r.0);
    results.into_iter().map(|(_, id, r)| (id, r)).collect()
}

/// Where a component's build state lives.
fn state(app: &App, id: &str) -> (PathBuf, PathBuf) {
    let dir = app.state_dir().join("build");
    (
        dir.join(format!("{id}.json")),
        dir.join(format!("{id}.log")),
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    key: String,
    output: String,
}

/// Whether the component's output is missing or stale.
pub fn needs_build(app: &App, c: &ComponentSpec) -> bool {
    let Some(b) = &c.build else { return false };
    let tools = toolchain::tools(b.language, &b.dir);
    let key = cache_key(c, b, &tools);
    !is_fresh(app, c, &key)
}

fn is_fresh(app: &App, c: &ComponentSpec, key: &str) -> bool {
    let (record, _) = state(app, &c.id);
    let Ok(bytes) = std::fs::read(&record) else {
        return false;
    };
    let Ok(r) = serde_json::from_slice::<Record>(&bytes) else {
        return false;
    };
    r.key == key
        && std::fs::read(&c.source)
            .is_ok_and(|out| blake3::hash(&out).to_hex().as_str() == r.output)
}

/// Directories never taken as inputs (nor any Python virtual environment,
/// whatever its name: Spin's Python guide makes one named `venv` in the
/// app, and running the toolchain from it writes into it).
const SKIP_DIRS: &[&str] = &[
    "target",
    "node_modules",
    ".wasmops",
    ".spin",
    ".git",
    "__pycache__",
    ".venv",
];

/// The cache key: the recipe, the toolchain's versions, and every input
/// file's path and contents.
fn cache_key(c: &ComponentSpec, b: &BuildSpec, tools: &[Tool]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"wasmops-build-1\0");
    h.update(format!("{:?}\0", b.language).as_bytes());
    for part in [&b.entry, &b.world, &b.wit] {
        h.update(part.as_deref().unwrap_or("-").as_bytes());
        h.update(b"\0");
    }
    for s in b.sources.iter().chain(&b.args).chain(&b.command) {
        h.update(s.as_bytes());
        h.update(b"\0");
    }
    for t in tools {
        h.update(t.version.as_deref().unwrap_or("-").as_bytes());
        h.update(b"\0");
    }
    h.update(c.source.to_string_lossy().as_bytes());
    let mut files = Vec::new();
    collect_inputs(&b.dir, &c.source, &mut files);
    files.sort();
    for f in files {
        let rel = f.strip_prefix(&b.dir).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        // Contents and modification time: touching a file rebuilds its
        // component, as build tools are expected to.
        if let Ok(m) = std::fs::metadata(&f)
            && let Ok(t) = m.modified()
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            h.update(&d.as_nanos().to_le_bytes());
        }
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    h.finalize().to_hex().to_string()
}

fn collect_inputs(dir: &Path, output: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if SKIP_DIRS.contains(&name.as_ref()) || path.join("pyvenv.cfg").is_file() {
                continue;
            }
            collect_inputs(&path, output, out);
        } else if ft.is_file() && path != output {
            out.push(path);
        }
    }
}

/// Builds one component (when stale, or always with `force`).
pub fn build_component(app: &App, c: &ComponentSpec, force: bool) -> Result<Outcome, BuildError> {
    let Some(b) = &c.build else {
        return Err(BuildError::NoRecipe { id: c.id.clone() });
    };
    let io = |detail: String| BuildError::Io {
        id: c.id.clone(),
        detail,
    };
    let (record, log) = state(app, &c.id);
    std::fs::create_dir_all(record.parent().unwrap_or(Path::new(".")))
        .map_err(|e| io(format!("cannot create the build state directory: {e}")))?;

    // JavaScript projects get their npm dependencies (the toolchain among
    // them) before anything is looked up.
    if matches!(b.language, Language::JavaScript | Language::TypeScript)
        && b.dir.join("package.json").is_file()
        && !b.dir.join("node_modules").is_dir()
        && toolchain::which("npm").is_some()
    {
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-audit", "--no-fund"])
            .current_dir(&b.dir);
        run(c, "npm install", &mut cmd, &log)?;
    }

    let tools = toolchain::tools(b.language, &b.dir);
    if let Some(hint) = toolchain::missing_hint(b.language, &tools) {
        return Err(BuildError::MissingToolchain {
            id: c.id.clone(),
            hint,
        });
    }
    let key = cache_key(c, b, &tools);
    if !force && is_fresh(app, c, &key) {
        return Ok(Outcome::Cached);
    }
    let _ = std::fs::remove_file(&log);

    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", c.id))
        .tempdir_in(record.parent().unwrap_or(Path::new(".")))
        .map_err(|e| io(format!("cannot create a build directory: {e}")))?;
    let staged = work.path().join("out.wasm");
    let mut notes = Vec::new();
    let produced = match b.language {
        Language::Rust => {
            let mut cmd = Command::new("cargo");
            // `cargo auditable` embeds the dependency list that `wasmops
            // scan` checks against the advisory database.
            if tools
                .iter()
                .any(|t| t.name == toolchain::CARGO_AUDITABLE && t.found())
            {
                cmd.arg("auditable");
                notes.push("dependency list embedded (cargo auditable)".to_string());
            } else {
                notes.push(
                    "no dependency list embedded: `cargo auditable` is not installed, so `wasmops scan` cannot check its crates for advisories (install: cargo install cargo-auditable)"
                        .to_string(),
                );
            }
            cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
                .current_dir(&b.dir)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS");
            if let Some(p) = &b.entry {
                cmd.args(["-p", p]);
            }
            cmd.args(&b.args);
            run(c, "cargo", &mut cmd, &log)?;
            c.source.clone()
        }
        Language::JavaScript | Language::TypeScript => {
            let cli = toolchain::npm_file(&b.dir, "@bytecodealliance/componentize-js/src/cli.js")
                .ok_or_else(|| io("componentize-js disappeared".into()))?;
            let default_entry = if b.language == Language::TypeScript {
                "index.ts"
            } else {
                "index.js"
            };
            let mut entry = b.dir.join(b.entry.as_deref().unwrap_or(default_entry));
            if b.language == Language::TypeScript {
                let tsc = toolchain::npm_file(&b.dir, "typescript/bin/tsc")
                    .ok_or_else(|| io("typescript disappeared".into()))?;
                let js_dir = work.path().join("js");
                let mut cmd = Command::new("node");
                cmd.arg(tsc).current_dir(&b.dir);
                if b.dir.join("tsconfig.json").is_file() {
                    cmd.arg("-p").arg(&b.dir);
                } else {
                    cmd.args([
                        "--target",
                        "es2022",
                        "--module",
                        "es2022",
                        "--moduleResolution",
                        "bundler",
                        "--skipLibCheck",
                        "--strict",
                    ])
                    .arg(&entry);
                }
                cmd.arg("--outDir").arg(&js_dir);
                run(c, "tsc", &mut cmd, &log)?;
                let stem = entry
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "index".into());
                entry = find_file(&js_dir, &format!("{stem}.js"))
                    .ok_or_else(|| io(format!("tsc produced no {stem}.js")))?;
            }
            let mut cmd = Command::new("node");
            cmd.arg(cli)
                .arg("--wit")
                .arg(b.dir.join(b.wit.as_deref().unwrap_or("wit")))
                .current_dir(&b.dir);
            if let Some(w) = &b.world {
                cmd.arg("--world-name").arg(w);
            }
            cmd.arg("-o").arg(&staged).args(&b.args).arg(&entry);
            run(c, "componentize-js", &mut cmd, &log)?;
            staged.clone()
        }
        Language::Python => {
            let mut cmd = Command::new("componentize-py");
            cmd.arg("-d")
                .arg(b.dir.join(b.wit.as_deref().unwrap_or("wit")))
                .current_dir(&b.dir);
            if let Some(w) = &b.world {
                cmd.arg("-w").arg(w);
            }
            cmd.arg("componentize")
                .arg(b.entry.as_deref().unwrap_or("app"))
                .arg("-o")
                .arg(&staged)
                .args(&b.args);
            run(c, "componentize-py", &mut cmd, &log)?;
            staged.clone()
        }
        Language::C => {
            let sources = if b.sources.is_empty() {
                c_sources(&b.dir)
            } else {
                b.sources.clone()
            };
            if sources.is_empty() {
                return Err(io(format!(
                    "no C sources in {}; add `sources = [\"main.c\"]` to the build recipe",
                    b.dir.display()
                )));
            }
            let cpp = sources
                .iter()
                .any(|s| s.ends_with(".cc") || s.ends_with(".cpp") || s.ends_with(".cxx"));
            let mut cmd = Command::new(if cpp { "clang++" } else { "clang" });
            cmd.args(["--target=wasm32-wasi", "-O2"])
                .current_dir(&b.dir)
                .args(&b.args)
                .args(&sources)
                .arg("-o")
                .arg(work.path().join("core.wasm"));
            run(c, if cpp { "clang++" } else { "clang" }, &mut cmd, &log)?;
            work.path().join("core.wasm")
        }
        Language::Command => {
            // Each command in turn, in the recipe's directory; the output is
            // `source`, wherever the commands write it.
            let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let before = modified(&c.source);
            for line in &b.command {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(line).current_dir(&b.dir);
                run(c, line, &mut cmd, &log)?;
            }
            // Some toolchains exit 0 on failure (the Spin JS SDK's `j2w`):
            // an output left as it was is worth saying.
            if before.is_some() && modified(&c.source) == before {
                notes.push(format!(
                    "the commands succeeded but left {} as it was; if that is not expected, the toolchain may have failed quietly: see {}",
                    c.source.display(),
                    log.display()
                ));
            }
            c.source.clone()
        }
        Language::Go => {
            let mut cmd = Command::new("go");
            cmd.args(["build", "-o"])
                .arg(work.path().join("core.wasm"))
                .args(&b.args)
                .arg(b.entry.as_deref().unwrap_or("."))
                .current_dir(&b.dir)
                .env("GOOS", "wasip1")
                .env("GOARCH", "wasm");
            run(c, "go build", &mut cmd, &log)?;
            work.path().join("core.wasm")
        }
    };

    // Validate (and adapt a preview1 module) before replacing the output.
    let bytes = std::fs::read(&produced).map_err(|_| BuildError::NoOutput {
        id: c.id.clone(),
        path: produced.clone(),
    })?;
    let not_component = |detail: String| BuildError::NotComponent {
        id: c.id.clone(),
        detail,
    };
    let component = match wasmops_component::validate(&bytes) {
        Ok(wasmops_component::Kind::Component) => bytes,
        Ok(wasmops_component::Kind::CoreModule) => {
            let adapted = wasmops_component::componentize_preview1(&bytes)
                .map_err(|e| not_component(e.to_string()))?;
            wasmops_component::validate(&adapted).map_err(|e| not_component(e.to_string()))?;
            adapted
        }
        Err(e) => return Err(not_component(e.to_string())),
    };
    // The licence and metadata the package manifest declares.
    let mut component = component;
    let mut rewritten = false;
    match metadata::package_metadata(b.language, &b.dir, b.entry.as_deref()) {
        Some(meta) => {
            let (with, added) = metadata::embed(&component, &meta);
            if !added.is_empty() {
                notes.push(format!(
                    "{} from {}",
                    added.join(", "),
                    meta.from
                        .strip_prefix(&app.dir)
                        .unwrap_or(&meta.from)
                        .display()
                ));
                component = with;
                rewritten = true;
            }
            if meta.get("licenses").is_none() {
                notes.push(format!(
                    "no licence: {} declares none",
                    meta.from
                        .strip_prefix(&app.dir)
                        .unwrap_or(&meta.from)
                        .display()
                ));
            }
        }
        None if matches!(b.language, Language::C | Language::Go | Language::Command) => {}
        None => notes.push("no package manifest to take a licence from".to_string()),
    }
    if produced != c.source || rewritten {
        if let Some(parent) = c.source.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io(format!("cannot create {}: {e}", parent.display())))?;
        }
        let tmp = c.source.with_extension("wasm.tmp");
        std::fs::write(&tmp, &component)
            .and_then(|()| std::fs::rename(&tmp, &c.source))
            .map_err(|e| io(format!("cannot write {}: {e}", c.source.display())))?;
    }
    // Keyed on the inputs as the build left them: tools write some of
    // their own (Cargo.lock, package-lock.json).
    let _ = key;
    let rec = Record {
        key: cache_key(c, b, &tools),
        output: blake3::hash(&component).to_hex().to_string(),
    };
    std::fs::write(&record, serde_json::to_vec(&rec).unwrap_or_default())
        .map_err(|e| io(format!("cannot record the build: {e}")))?;
    Ok(Outcome::Built(notes))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(p);
        }
    }
    None
}

fn c_sources(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            [".c", ".cc", ".cpp", ".cxx"]
                .iter()
                .any(|ext| n.ends_with(ext))
                .then_some(n)
        })
        .collect();
    v.sort();
    v
}

/// Runs one tool, appending its output to the log; a failure keeps the
/// output's last lines for the error.
fn run(c: &ComponentSpec, tool: &str, cmd: &mut Command, log: &Path) -> Result<(), BuildError> {
    use std::io::Write;
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BuildError::Io {
            id: c.id.clone(),
            detail: format!("cannot run {tool}: {e}"),
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "$ {cmd:?}\n{text}");
    }
    if out.status.success() {
        return Ok(());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    Err(BuildError::Tool {
        id: c.id.clone(),
        tool: tool.to_string(),
        status: match out.status.code() {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".into(),
        },
        output: tail,
        log: log.to_path_buf(),
    })
}

/// A cheap fingerprint of a component's inputs (file count, newest
/// modification time, total size), for watching them.
pub fn inputs_stamp(c: &ComponentSpec) -> Option<(usize, std::time::SystemTime, u64)> {
    let b = c.build.as_ref()?;
    let mut files = Vec::new();
    collect_inputs(&b.dir, &c.source, &mut files);
    // The recipe's `watch` patterns (Spin's), when it has them, narrow it.
    let patterns: Vec<glob::Pattern> = b
        .watch
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    if !patterns.is_empty() {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        files.retain(|f| {
            f.strip_prefix(&b.dir)
                .is_ok_and(|rel| patterns.iter().any(|p| p.matches_path_with(rel, opts)))
        });
    }
    let mut newest = std::time::UNIX_EPOCH;
    let mut size = 0;
    for f in &files {
        if let Ok(m) = std::fs::metadata(f) {
            size += m.len();
            if let Ok(t) = m.modified() {
                newest = newest.max(t);
            }
        }
    }
    Some((files.len(), newest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spin's `watch` patterns decide what `up --watch` sees change; without
    /// them, every file of the recipe's directory counts.
    #[test]
    fn watch_patterns_narrow_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::write(d.join("src/lib.rs"), "fn a() {}").unwrap();
        std::fs::write(d.join("README.md"), "readme").unwrap();
        let manifest = |watch: &str| {
            format!(
                "spin_manifest_version = 2\n[application]\nname = \"w\"\n\
                 [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
                 [component.c]\nsource = \"out.wasm\"\n\
                 [component.c.build]\ncommand = \"true\"\n{watch}"
            )
        };
        let stamp = |watch: &str| {
            std::fs::write(d.join("spin.toml"), manifest(watch)).unwrap();
            let app = wasmops_manifest::load(d).unwrap();
            inputs_stamp(&app.components[0]).unwrap()
        };
        let watched = "watch = [\"src/**/*.rs\"]\n";
        let (n, ..) = stamp(watched);
        assert_eq!(n, 1, "only src/lib.rs");
        let (all, ..) = stamp("");
        assert!(all >= 3, "every file: {all}");
        let before = stamp(watched);
        std::fs::write(d.join("README.md"), "a longer readme").unwrap();
        assert_eq!(stamp(watched), before, "README.md is not watched");
        std::fs::write(d.join("src/lib.rs"), "fn a() { let _ = 1; }").unwrap();
        assert_ne!(stamp(watched), before);

        // A Python virtual environment in the app, whatever its name, is
        // the toolchain's, not the app's source.
        stamp("");
        let again = || inputs_stamp(&wasmops_manifest::load(d).unwrap().components[0]).unwrap();
        let before = again();
        std::fs::create_dir_all(d.join("venv/lib")).unwrap();
        std::fs::write(d.join("venv/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        std::fs::write(d.join("venv/lib/site.py"), "x = 1\n").unwrap();
        assert_eq!(again(), before, "venv/ is not an input");
        std::fs::create_dir_all(d.join("pkg")).unwrap();
        std::fs::write(d.join("pkg/mod.py"), "y = 2\n").unwrap();
        assert_ne!(again(), before, "pkg/ is");
    }
}
