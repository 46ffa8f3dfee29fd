//! `wasmops push`, `pull`, and `serve`/`run` from a local OCI layout store.

mod common;

use common::{Server, get, run};

#[test]
fn push_pull_serve_and_tamper_with_a_layout_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reference = format!("oci-layout:{}:v1", store.display());
    // `--json`: the older spelling of `--format json`.
    let out = run(&["push", test_programs::HELLO, &reference, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pushed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The CNCF layout, field by field.
    let blob = |d: &str| std::fs::read(store.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&digest)).unwrap();
    common::assert_cncf_hello(
        &manifest,
        &blob(manifest["config"]["digest"].as_str().unwrap()),
    );

    // Pull: byte-identical.
    let out_file = tmp.path().join("pulled.wasm");
    let out = run(&["pull", &reference, "-o", out_file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(test_programs::HELLO).unwrap()
    );
    let by_digest = format!("oci-layout:{}@{digest}", store.display());
    assert_eq!(
        run(&["pull", &by_digest, "-o", out_file.to_str().unwrap()]).code,
        0
    );

    // Serve straight from the store.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(&reference, &[]);
    rt.block_on(async { assert_eq!(get(&server.url("/")).await.text(), "Hello, world!\n") });
    drop(server);

    // Unknown tag, bad reference: clear errors.
    let missing = format!("oci-layout:{}:v2", store.display());
    let out = run(&["pull", &missing, "-o", out_file.to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("v1"),
        "names the tags it has: {}",
        out.stderr
    );
    common::assert_one_line_error(&run(&["pull", "oci-layout:", "-o", "x.wasm"]));
    common::assert_one_line_error(&run(&["push", test_programs::HELLO, "ghcr.io/x/Y:1"]));

    // Tampering with the layer is detected and nothing is written.
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    std::fs::write(store.join("blobs/sha256").join(&layer[7..]), b"\0asm evil").unwrap();
    let fresh = tmp.path().join("fresh.wasm");
    let out = run(&["pull", &reference, "-o", fresh.to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(out.stderr.contains("tampered with"), "{}", out.stderr);
    assert!(!fresh.exists());
}

#[test]
fn pushing_the_same_files_again_gives_the_same_digest() {
    // Without SOURCE_DATE_EPOCH the time comes from the files, not the clock.
    let tmp = tempfile::tempdir().unwrap();
    let push = |what: &str, tag: &str| -> String {
        let reference = format!("oci-layout:{}:{tag}", tmp.path().join("store").display());
        let out = common::output(
            common::wasmops()
                .env_remove("SOURCE_DATE_EPOCH")
                .args(["push", what, &reference, "--format", "json"]),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["digest"].as_str().unwrap().to_string()
    };
    let first = push(test_programs::HELLO, "a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(push(test_programs::HELLO, "b"), first);
    let app = test_programs::EXAMPLE_WEBAPP;
    let first = push(app, "app-a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(push(app, "app-b"), first);
}

#[test]
fn cache_list_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let (artifacts, store) = (tmp.path().join("artifacts"), tmp.path().join("store"));
    let cache = |args: &[&str]| {
        common::output(
            common::wasmops()
                .env("WASMOPS_CACHE_DIR", &artifacts)
                .env("WASMOPS_OCI_STORE", &store)
                .args(args),
        )
    };
    let out = cache(&["run", test_programs::CLI, "--", "exit", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = |()| -> serde_json::Value {
        let out = cache(&["cache", "list", "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let v = list(());
    assert_eq!(v["caches"][0]["cache"], "artifacts");
    assert_eq!(v["caches"][0]["entries"], 1, "{v}");
    assert!(v["caches"][0]["bytes"].as_u64().unwrap() > 0);

    common::assert_one_line_error(&cache(&["cache", "prune"]));
    let out = cache(&["cache", "prune", "--max-size", "1", "--dry-run"]);
    assert!(
        out.stdout.contains("artifacts: would remove 1 entries"),
        "{}",
        out.stdout
    );
    assert_eq!(list(())["caches"][0]["entries"], 1);
    let out = cache(&["cache", "prune", "--older-than", "24h"]);
    assert!(
        out.stdout.contains("artifacts: removed 0 entries"),
        "{}",
        out.stdout
    );
    let out = cache(&["cache", "prune", "--all"]);
    assert!(
        out.stdout.contains("artifacts: removed 1 entries"),
        "{}",
        out.stdout
    );
    assert_eq!(list(())["caches"][0]["entries"], 0);
    // Pruned entries are rebuilt when needed.
    let out = cache(&["run", test_programs::CLI, "--", "exit", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
