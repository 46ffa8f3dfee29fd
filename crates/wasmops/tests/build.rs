//! `wasmops new`, `build` and `doctor` with the real toolchains: cargo,
//! componentize-js (+ tsc), componentize-py, clang with wasi-libc, and Go.
//! `.ci/run` installs them; the tests work offline (npm packages come from
//! the global install, crates from the local registry cache).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Output, Server, get, output, wasmops};

/// The global npm root, where `.ci/run` installs componentize-js and
/// typescript.
fn npm_global_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let out = Command::new("npm")
            .args(["root", "-g"])
            .output()
            .expect("npm");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// `wasmops new TEMPLATE NAME` in `dir`; JavaScript projects get the
/// globally installed packages instead of an `npm install`.
fn new_project(dir: &Path, template: &str, name: &str) -> PathBuf {
    let out = output(wasmops().current_dir(dir).args(["new", template, name]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let project = dir.join(name);
    for f in ["wasmops.toml", "README.md", ".gitignore"] {
        assert!(project.join(f).is_file(), "{template}: no {f}");
    }
    if template.starts_with("http-js") || template.starts_with("http-ts") {
        std::os::unix::fs::symlink(npm_global_root(), project.join("node_modules")).unwrap();
    }
    project
}

fn build(dir: &Path, args: &[&str]) -> Output {
    output(
        wasmops()
            .current_dir(dir)
            .env("CARGO_NET_OFFLINE", "true")
            .arg("build")
            .args(args),
    )
}

fn serve_once(wasm: &Path) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(wasm.to_str().unwrap(), &[]);
    rt.block_on(async { get(&server.url("/hello?x=1")).await.text() })
}

/// For each language: new, build, then serve or run, with the expected
/// output; then a syntax error fails the build with the compiler's message
/// and the component's id.
fn language_round_trip(template: &str, broken: (&str, &str)) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{template}");
    let project = new_project(tmp.path(), template, &name);
    let out = build(&project, &["--format", "json"]);
    assert_eq!(out.code, 0, "{template}: {}", out.stderr);
    assert!(out.stderr.contains("built in"), "{}", out.stderr);
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(built["components"][0]["outcome"], "built", "{built}");
    let notes = built["components"][0]["notes"].to_string();
    let packaged = !template.starts_with("cli-");
    if packaged {
        assert!(notes.contains("licenses"), "{template}: {notes}");
    }
    if template == "http-rust" {
        assert!(notes.contains("cargo auditable"), "{notes}");
    }

    let app = wasmops_manifest::load(&project).unwrap();
    let wasm = app.components[0].source.clone();
    let bytes = std::fs::read(&wasm).unwrap();
    assert_eq!(
        wasmops_component::kind(&bytes).unwrap(),
        wasmops_component::Kind::Component,
        "{template}: the output is a component"
    );
    // Its producers section names the real toolchain.
    let inspected = common::run(&["inspect", "--format", "json", wasm.to_str().unwrap()]);
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    let report: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    let producers = report["producers"].to_string();
    let expected_tool = match template {
        "http-rust" => "rustc",
        "cli-c" => "clang",
        "http-js" | "http-ts" => "ComponentizeJS",
        "http-python" => "component-init-transform",
        _ => "wit-component",
    };
    assert!(
        producers.contains(expected_tool),
        "{template}: producers without {expected_tool}: {producers}"
    );
    // The package manifest's licence is in the component; a Rust one also
    // carries its dependency list (cargo auditable), for scan and the SBOM.
    if packaged {
        assert_eq!(
            report["metadata"]["licenses"], "Apache-2.0",
            "{template}: {}",
            report["metadata"]
        );
    }
    if template == "http-rust" {
        assert_eq!(report["has_dependency_list"], true);
        assert!(
            report["dependencies"].to_string().contains("\"wasip2\""),
            "{}",
            report["dependencies"]
        );
    }
    let lang = match template {
        "http-rust" => "Rust",
        "http-js" => "JavaScript",
        "http-ts" => "TypeScript",
        "http-python" => "Python",
        "cli-c" => "C",
        "cli-go" => "Go",
        _ => unreachable!(),
    };
    if template.starts_with("http-") {
        let text = serve_once(&wasm);
        assert_eq!(text, format!("Hello from {lang}! path=/hello?x=1\n"));
    } else {
        let out = common::run(&["run", wasm.to_str().unwrap(), "--", "one", "two"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.stdout,
            format!("Hello from {lang}!\narg 1: one\narg 2: two\n")
        );
    }

    // Nothing changed: no work.
    let again = build(&project, &["--format", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["components"][0]["outcome"], "up-to-date", "{again}");

    // A syntax error: the compiler's message and the component's id.
    let (file, bad) = broken;
    std::fs::write(project.join(file), bad).unwrap();
    let out = build(&project, &[]);
    assert_eq!(out.code, 1, "{template}: a broken source must fail");
    assert!(
        out.stderr.contains(&format!("component `{name}`")),
        "{template}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("error") || out.stderr.contains("Error"),
        "{template}: no compiler message in {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // The previous output is kept.
    assert_eq!(std::fs::read(&wasm).unwrap(), bytes);
}

#[test]
fn rust_http_component() {
    language_round_trip("http-rust", ("src/lib.rs", "fn broken( {\n"));
}

#[test]
fn javascript_http_component() {
    language_round_trip(
        "http-js",
        ("index.js", "addEventListener('fetch', (e) => {\n"),
    );
}

#[test]
fn typescript_http_component() {
    language_round_trip(
        "http-ts",
        ("index.ts", "const x: number = 'not a number';\n"),
    );
}

#[test]
fn python_http_component() {
    language_round_trip("http-python", ("app.py", "def broken(:\n    pass\n"));
}

#[test]
fn c_command_component() {
    language_round_trip("cli-c", ("main.c", "int main( { return 0 }\n"));
}

#[test]
fn go_command_component() {
    language_round_trip("cli-go", ("main.go", "package main\n\nfunc main( {\n}\n"));
}

/// One app with a component per language, built by one `wasmops build` and
/// served by `wasmops up`; a no-op rebuild, then touching one source
/// rebuilds only its component.
/// An app `poly` of one component per template (`(template, id, route)`,
/// each in its own directory with the template's build recipe), with
/// `extra` after its `[app]` table.
fn polyglot_manifest(app: &Path, extra: &str, parts: &[(&str, &str, &str)]) -> String {
    let mut manifest = format!("manifest_version = 1\n[app]\nname = \"poly\"\n{extra}");
    for (template, id, route) in parts {
        let project = new_project(app, template, id);
        // Reuse each template's recipe inside one manifest.
        let m = wasmops_manifest::load(&project).unwrap();
        let c = &m.components[0];
        let b = c.build.as_ref().unwrap();
        let source = c.source.strip_prefix(app).unwrap().display().to_string();
        manifest.push_str(&format!("[component.{id}]\nsource = \"{source}\"\n"));
        if !route.is_empty() {
            manifest.push_str(&format!("route = \"{route}\"\n"));
        }
        manifest.push_str(&format!(
            "[component.{id}.build]\nlanguage = \"{}\"\ndir = \"{id}\"\n",
            b.language.name()
        ));
        for (key, v) in [("entry", &b.entry), ("world", &b.world)] {
            if let Some(v) = v {
                manifest.push_str(&format!("{key} = \"{v}\"\n"));
            }
        }
        if !b.sources.is_empty() {
            manifest.push_str(&format!("sources = {:?}\n", b.sources));
        }
    }
    manifest
}

#[test]
fn polyglot_app_builds_once_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("poly");
    std::fs::create_dir(&app).unwrap();
    let parts = [
        ("http-rust", "rs", "/rust/..."),
        ("http-js", "js", "/js/..."),
        ("http-ts", "ts", "/ts/..."),
        ("http-python", "py", "/py/..."),
        ("cli-c", "c", ""),
        ("cli-go", "go", ""),
    ];
    let manifest = polyglot_manifest(&app, "", &parts);
    std::fs::write(app.join("wasmops.toml"), manifest).unwrap();

    let out = build(&app, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (_, id, _) in parts {
        assert!(
            out.stderr.contains(&format!("{id}: built in")),
            "{id} not built: {}",
            out.stderr
        );
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::up(&app, &[], &[("CARGO_NET_OFFLINE", "true")]);
    rt.block_on(async {
        for (lang, path) in [
            ("Rust", "/rust/a"),
            ("JavaScript", "/js/b"),
            ("TypeScript", "/ts/c"),
            ("Python", "/py/d"),
        ] {
            let r = get(&server.url(path)).await;
            assert_eq!(r.text(), format!("Hello from {lang}! path={path}\n"));
        }
    });
    assert!(server.log().contains("has no route"), "{}", server.log());
    drop(server);

    let again = build(&app, &[]);
    assert_eq!(again.code, 0);
    assert_eq!(
        again.stderr.matches("up to date").count(),
        parts.len(),
        "{}",
        again.stderr
    );

    // Touch one source: only its component is rebuilt.
    let main_c = app.join("c/main.c");
    let text = std::fs::read_to_string(&main_c).unwrap();
    std::fs::write(
        &main_c,
        text.replace("Hello from C!", "Hello again from C!"),
    )
    .unwrap();
    let out = build(&app, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("c: built in"), "{}", out.stderr);
    assert_eq!(out.stderr.matches("built in").count(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.matches("up to date").count(), parts.len() - 1);
    let out = common::run(&["run", app.join("c/dist/c.wasm").to_str().unwrap()]);
    assert_eq!(out.stdout, "Hello again from C!\n");

    // `-c` builds just one component.
    let out = build(&app, &["-c", "go", "--force"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.matches("building").count(), 1, "{}", out.stderr);
}

/// A missing toolchain: `build` fails with the install command instead of
/// "command not found", and `doctor` lists it and exits 1.
#[test]
fn missing_toolchain_gives_the_doctor_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let project = new_project(tmp.path(), "http-python", "py");
    // A PATH without componentize-py.
    let path = "/usr/bin:/bin";
    let out = output(
        wasmops()
            .current_dir(&project)
            .env("PATH", path)
            .arg("build"),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("not found"));
    assert!(
        last.contains("pip install componentize-py=="),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("component `py`"), "{}", out.stderr);

    let out = output(
        wasmops()
            .current_dir(&project)
            .env("PATH", path)
            .arg("doctor"),
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("python: missing (needed by py)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("install: pip install componentize-py"),
        "{}",
        out.stdout
    );

    // With the real PATH, everything this app needs is here.
    let out = output(wasmops().current_dir(&project).arg("doctor"));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("python: ok (needed by py)"),
        "{}",
        out.stdout
    );

    // A fresh JavaScript project (no node_modules): what `build` installs
    // itself (componentize-js, with npm install) is not missing.
    let out = output(
        wasmops()
            .current_dir(tmp.path())
            .args(["new", "http-js", "fresh"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = output(
        wasmops()
            .current_dir(tmp.path().join("fresh"))
            .arg("doctor"),
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("javascript: ok (needed by fresh)"),
        "{}",
        out.stdout
    );
}

#[test]
fn new_refuses_bad_names_and_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| output(wasmops().current_dir(tmp.path()).args(args));
    common::assert_one_line_error(&run(&["new", "http-cobol", "x"]));
    common::assert_one_line_error(&run(&["new", "http-rust", "Bad_Name"]));
    let list = run(&["new", "--list"]);
    for t in [
        "http-rust",
        "http-js",
        "http-ts",
        "http-python",
        "cli-c",
        "cli-go",
    ] {
        assert!(list.stdout.contains(t), "{}", list.stdout);
    }
    assert_eq!(run(&["new", "cli-c", "ok"]).code, 0);
    common::assert_one_line_error(&run(&["new", "cli-c", "ok"]));
    // Without arguments: the list; a template without a name: one line.
    let bare = run(&["new"]);
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    assert_eq!(bare.stdout, list.stdout);
    common::assert_one_line_error(&run(&["new", "http-rust"]));
}

#[test]
fn completions_and_man_pages_come_from_the_commands() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = common::run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for cmd in ["serve", "deploy", "kube"] {
            assert!(out.stdout.contains(cmd), "{shell} completions lack `{cmd}`");
        }
    }
    // bash parses its script.
    let script = tmp.path().join("wasmops.bash");
    std::fs::write(&script, common::run(&["completions", "bash"]).stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = common::run(&["man", "-o", tmp.path().join("man").to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let page = std::fs::read_to_string(tmp.path().join("man/wasmops-up.1")).unwrap();
    assert!(
        page.contains(".TH") && page.contains(r"\-\-watch"),
        "{page}"
    );
    assert!(tmp.path().join("man/wasmops.1").is_file());
}

/// `wasmops up` builds a component whose output is missing before serving
/// it, and under --watch rebuilds it when its sources change.
#[test]
fn up_builds_stale_components_and_rebuilds_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let project = new_project(tmp.path(), "http-rust", "site");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::up(&project, &["--watch"], &[("CARGO_NET_OFFLINE", "true")]);
    rt.block_on(async {
        assert_eq!(
            get(&server.url("/a")).await.text(),
            "Hello from Rust! path=/a\n"
        );
        let lib = project.join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        std::fs::write(&lib, text.replace("Hello from Rust!", "Rebuilt by watch!")).unwrap();
        let start = std::time::Instant::now();
        loop {
            let t = get(&server.url("/b")).await.text();
            if t == "Rebuilt by watch! path=/b\n" {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "still `{t}`: {}",
                server.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    // The log lines may still be on their way.
    for line in ["sources changed: component rebuilt", "component reloaded"] {
        let log = server.wait_log(line);
        assert!(log.contains(line), "{log}");
    }
}

/// Runs a validator; panics with its output when it finds anything.
fn validator(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ci init github` and `ci init gitlab` on an app: both files valid
/// (actionlint, the GitHub and GitLab schemas) and as their snapshots
/// (`fixtures/ci/NAME-github.yml`, `NAME-gitlab.yml`); returns the GitHub
/// workflow.
fn generated_pipelines(app: &Path, name: &str) -> String {
    let app_s = app.to_str().unwrap();
    let out = output(wasmops().args(["ci", "init", "github", app_s]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let workflow = app.join(format!(".github/workflows/wasmops-{name}.yml"));
    let text = std::fs::read_to_string(&workflow).unwrap();
    validator("actionlint", &[workflow.to_str().unwrap()]);
    validator(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.github-workflows",
            workflow.to_str().unwrap(),
        ],
    );
    common::snapshot("ci", &format!("{name}-github.yml"), &text);

    let out = output(wasmops().args(["ci", "init", "gitlab", app_s]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gitlab = app.join(".gitlab-ci.yml");
    validator(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.gitlab-ci",
            gitlab.to_str().unwrap(),
        ],
    );
    common::snapshot(
        "ci",
        &format!("{name}-gitlab.yml"),
        &std::fs::read_to_string(&gitlab).unwrap(),
    );
    text
}

/// The example app's pipelines: its three Rust components built by their
/// recipes, checked, tested; with staging and production declared, pushed,
/// signed, deployed and promoted.
#[test]
fn ci_init_for_the_example_app() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("webapp");
    let src = Path::new(test_programs::EXAMPLE_WEBAPP);
    std::fs::create_dir_all(app.join("static")).unwrap();
    for f in ["index.html", "style.css"] {
        std::fs::copy(src.join("static").join(f), app.join("static").join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(src.join("wasmops.toml")).unwrap()
        + "\n[environments.staging]\nnode = \"https://staging.internal:9464\"\nurl = \"https://staging.example.com\"\n\n[environments.production]\nnode = \"https://prod.internal:9464\"\n";
    std::fs::write(app.join("wasmops.toml"), manifest).unwrap();
    let text = generated_pipelines(&app, "webapp");
    assert!(text.contains("rustup target add wasm32-wasip2"), "{text}");
    assert!(!text.contains("setup-node"), "{text}");
}

#[test]
fn ci_init_writes_valid_pipelines_and_keeps_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("poly");
    std::fs::create_dir(&app).unwrap();
    let manifest = polyglot_manifest(
        &app,
        "\n[environments.staging]\nnode = \"https://staging.internal:9464\"\nurl = \"https://staging.example.com\"\n\n[environments.production]\nnode = \"https://prod.internal:9464\"\n",
        &[
            ("http-rust", "rs", ""),
            ("http-js", "js", ""),
            ("http-python", "py", ""),
            ("cli-c", "c", ""),
            ("cli-go", "go", ""),
        ],
    );
    std::fs::write(app.join("wasmops.toml"), manifest).unwrap();
    let app_s = app.to_str().unwrap();
    let text = generated_pipelines(&app, "poly");
    let workflow = app.join(".github/workflows/wasmops-poly.yml");
    for setup in [
        "setup-node",
        "setup-python",
        "setup-go",
        "wasm32-wasip2",
        "wasi-libc",
    ] {
        assert!(text.contains(setup), "no {setup} in the workflow");
    }

    // Run again: nothing to do; after an edit: the difference, the edit kept.
    let out = output(wasmops().args(["ci", "init", "github", app_s]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
    let edited = text.replace("ubuntu-latest", "ubuntu-24.04");
    std::fs::write(&workflow, &edited).unwrap();
    let out = output(wasmops().args(["ci", "init", "github", app_s]));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("+    runs-on: \"ubuntu-latest\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("-    runs-on: \"ubuntu-24.04\""),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&workflow).unwrap(), edited);
    let out = output(wasmops().args(["ci", "init", "github", app_s, "--force"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&workflow).unwrap(), text);

    // Not an app.
    let out = output(wasmops().args(["ci", "init", "github", tmp.path().to_str().unwrap()]));
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("not an app"), "{}", out.stderr);
}
