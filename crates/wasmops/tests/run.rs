//! `wasmops run` against the real guest programs.

mod common;
use common::*;

fn cli() -> &'static str {
    test_programs::CLI
}

#[test]
fn prints_args_and_returns_exit_code() {
    let out = run(&["run", cli(), "--", "args", "one", "two words"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "cli.wasm\nargs\none\ntwo words\n");

    // WASI 0.2's `exit` carries success or failure only: Rust's
    // `process::exit(7)` on wasm32-wasip2 becomes 1.
    let out = run(&["run", cli(), "--", "exit", "7"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let out = run(&["run", cli(), "--", "exit", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn preview1_core_modules_run_natively_with_their_exit_status() {
    let out = run(&["run", test_programs::CLI_P1, "--", "args", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "cli.wasm\nargs\nx\n");
    // Statuses of 126 and above are refused by the preview1 host, as by
    // `wasmtime run`.
    for code in ["3", "7", "33", "125"] {
        let out = run(&["run", test_programs::CLI_P1, "--", "exit", code]);
        assert_eq!(out.code.to_string(), code, "{}", out.stderr);
    }
    // proc_exit straight from a hand-written module.
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("exit33.wat");
    std::fs::write(
        &wat,
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 33))))"#,
    )
    .unwrap();
    assert_eq!(run(&["run", wat.to_str().unwrap()]).code, 33);

    // The same grants, limits and timeout as a component.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("note.txt"), "hello").unwrap();
    let grant = format!("{}::/data:ro", data.path().display());
    let out = run(&[
        "run",
        "--dir",
        &grant,
        test_programs::CLI_P1,
        "--",
        "read",
        "/data/note.txt",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hello"),
        "{}",
        out.stderr
    );
    let out = run(&["run", test_programs::CLI_P1, "--", "read", "/etc/passwd"]);
    assert_eq!(out.code, 3, "no file is granted: {}", out.stdout);
    let out = run(&["run", test_programs::CLI_P1, "--", "env"]);
    assert_eq!(out.stdout, "");
    let out = run(&[
        "run",
        "--timeout",
        "300ms",
        test_programs::CLI_P1,
        "--",
        "loop",
    ]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    let out = run(&[
        "run",
        "--max-memory",
        "16MiB",
        test_programs::CLI_P1,
        "--",
        "hog",
    ]);
    assert_eq!(out.code, 134, "{}", out.stderr);
    assert!(out.stderr.contains("memory limit"), "{}", out.stderr);
}

#[test]
fn preview1_modules_importing_other_modules_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("env.wat");
    std::fs::write(
        &wat,
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
             (import "env" "host_log" (func (param i32)))
             (func (export "_start")))"#,
    )
    .unwrap();
    let out = run(&["run", wat.to_str().unwrap()]);
    common::assert_one_line_error(&out);
    assert!(
        out.stderr.contains("`host_log` from `env`"),
        "{}",
        out.stderr
    );
}

#[test]
fn stdin_is_inherited() {
    let out = common::with_stdin(
        wasmops().args(["run", cli(), "--", "stdin"]),
        b"from the host\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "from the host\n");
}

#[test]
fn environment_is_denied_unless_granted() {
    let out = output(
        wasmops()
            .args(["run", cli(), "--", "env"])
            .env("SECRET_TOKEN", "hunter2"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "no variable may leak by default");

    let out = output(
        wasmops()
            .args([
                "run",
                "--env",
                "GREETING=hi",
                "--env",
                "SECRET_TOKEN",
                cli(),
                "--",
                "env",
            ])
            .env("SECRET_TOKEN", "hunter2"),
    );
    assert_eq!(out.stdout, "GREETING=hi\nSECRET_TOKEN=hunter2\n");

    let out = output(
        wasmops()
            .args(["run", "--env-inherit", cli(), "--", "env"])
            .env("SECRET_TOKEN", "hunter2"),
    );
    assert!(
        out.stdout.contains("SECRET_TOKEN=hunter2\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn files_are_denied_unless_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "granted content\n").unwrap();
    let host = dir.path().to_str().unwrap();

    let out = run(&["run", cli(), "--", "read", "/data/note.txt"]);
    assert_eq!(
        out.code, 1,
        "reading without a grant must fail: {}",
        out.stdout
    );
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    let out = run(&["run", cli(), "--", "read", &format!("{host}/note.txt")]);
    assert_eq!(out.code, 1, "the host path itself is not visible either");

    let grant = format!("{host}::/data:ro");
    let out = run(&[
        "run",
        "--dir",
        &grant,
        cli(),
        "--",
        "read",
        "/data/note.txt",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "granted content\n");

    // Read-only means read-only.
    let out = run(&[
        "run",
        "--dir",
        &grant,
        cli(),
        "--",
        "write",
        "/data/new.txt",
        "x",
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(!dir.path().join("new.txt").exists());

    // Read-write grant; nothing outside it is reachable through `..`.
    let grant = format!("{host}::/data");
    let out = run(&[
        "run",
        "--dir",
        &grant,
        cli(),
        "--",
        "write",
        "/data/new.txt",
        "written",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written"
    );
    let out = run(&[
        "run",
        "--dir",
        &grant,
        cli(),
        "--",
        "read",
        "/data/../../etc/passwd",
    ]);
    assert_eq!(out.code, 1);

    let out = run(&[
        "run",
        "--dir",
        "/definitely/not/here::/x",
        cli(),
        "--",
        "args",
    ]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("/definitely/not/here"));
}

#[test]
fn sockets_are_denied_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();

    let out = run(&["run", cli(), "--", "connect", &addr]);
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("denied"), "{}", out.stdout);
    assert!(
        listener.accept().is_err(),
        "no connection may reach the listener"
    );

    let out = run(&[
        "run",
        "--allow-net=127.0.0.1:1",
        cli(),
        "--",
        "connect",
        &addr,
    ]);
    assert_eq!(
        out.code, 1,
        "a grant for another port does not allow this one"
    );

    let out = run(&[
        "run",
        &format!("--allow-net={addr}"),
        cli(),
        "--",
        "connect",
        &addr,
    ]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "connected\n");

    let out = run(&["run", "--allow-net", cli(), "--", "connect", &addr]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
}

#[test]
fn timeout_stops_an_infinite_loop() {
    let start = std::time::Instant::now();
    let out = run(&["run", "--timeout", "300ms", cli(), "--", "loop"]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert!(out.stderr.contains("timeout"), "{}", out.stderr);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    assert_one_line_error(&out);
}

#[test]
fn memory_hog_is_trapped_at_the_limit() {
    let out = run(&["run", "--max-memory", "32MiB", cli(), "--", "hog"]);
    assert_eq!(out.code, 134, "{}", out.stderr);
    assert!(
        out.stderr.contains("memory limit of 33554432 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn guest_panic_is_a_trap_not_a_host_crash() {
    let out = run(&["run", cli(), "--", "panic"]);
    assert_eq!(out.code, 134, "{}", out.stderr);
    assert!(
        out.stderr.contains("the cli guest panicked on purpose"),
        "guest stderr is shown: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("error: ") && out.stderr.contains("trapped"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("internal error in wasmops"));
}

#[test]
fn bad_files_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(test_programs::HELLO).unwrap();

    let not_wasm = fixture("not-wasm.txt");
    let out = run(&["run", not_wasm.to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains("not-wasm.txt") && out.stderr.contains("not a WebAssembly binary"),
        "{}",
        out.stderr
    );

    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &hello[..hello.len() / 3]).unwrap();
    let out = run(&["run", truncated.to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("truncated.wasm"), "{}", out.stderr);

    let header_only = dir.path().join("header.wasm");
    std::fs::write(&header_only, b"\0asm\x01").unwrap();
    let out = run(&["run", header_only.to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains("truncated WebAssembly header"),
        "{}",
        out.stderr
    );

    let bad_section = dir.path().join("bad-section.wasm");
    std::fs::write(&bad_section, b"\0asm\x01\0\0\0\x01\x05\xff\xff\xff\xff\xff").unwrap();
    let out = run(&["run", bad_section.to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains("bad-section.wasm") && out.stderr.contains("invalid WebAssembly"),
        "{}",
        out.stderr
    );

    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    let out = run(&["run", empty.to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(out.stderr.contains("empty file"), "{}", out.stderr);

    let out = run(&["run", "/no/such/file.wasm"]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains("/no/such/file.wasm: cannot read"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_imports_are_listed() {
    let out = run(&["run", fixture("unknown-import.wat").to_str().unwrap()]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains(
            "imports interfaces this host does not provide: acme:widgets/frobnicate@1.0.0"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn http_component_is_not_a_command() {
    let out = run(&["run", test_programs::HELLO]);
    assert_one_line_error(&out);
    assert!(
        out.stderr.contains("does not export `wasi:cli/run`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("wasi:http/incoming-handler@0.2"),
        "{}",
        out.stderr
    );
}

#[test]
fn artifact_cache_is_reused_and_repaired() {
    let cache = tempfile::tempdir().unwrap();
    let run_logged = || {
        output(wasmops().env("WASMOPS_CACHE_DIR", cache.path()).args([
            "--log-level",
            "wasmops_runtime=debug,wasmops=debug",
            "--log-format",
            "json",
            "run",
            cli(),
            "--",
            "exit",
            "0",
        ]))
    };
    let first = run_logged();
    assert_eq!(first.code, 0, "{}", first.stderr);
    // Values in their natural form: `"cache":"miss"`, not a Debug name.
    assert!(
        first.stderr.contains(r#""cache":"miss""#),
        "{}",
        first.stderr
    );
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    let second = run_logged();
    assert!(
        second.stderr.contains(r#""cache":"hit""#),
        "{}",
        second.stderr
    );

    // Damage the entry: detected, rebuilt, and the program still runs.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&entries[0], &bytes).unwrap();
    let third = run_logged();
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third.stderr.contains("corrupt compiled artifact"),
        "{}",
        third.stderr
    );
    let fourth = run_logged();
    assert!(
        fourth.stderr.contains(r#""cache":"hit""#),
        "the rebuilt entry is used: {}",
        fourth.stderr
    );

    // A cache directory that cannot be created does not stop the run.
    let out = output(
        wasmops()
            .env("WASMOPS_CACHE_DIR", "/proc/wasmops-cannot-exist")
            .args(["run", cli(), "--", "exit", "0"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn help_and_version() {
    let out = run(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("run") && out.stdout.contains("serve"));
    for sub in ["run", "serve"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.code, 0, "{sub}");
        assert!(
            out.stdout.contains("Usage: wasmops"),
            "{sub}: {}",
            out.stdout
        );
    }
    let out = run(&["--version"]);
    assert_eq!(
        out.stdout.trim(),
        format!("wasmops {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["frobnicate"]);
    assert_eq!(out.code, 2);
}

#[test]
fn text_format_is_read_by_inspect_and_validate_too() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("m.wat");
    std::fs::write(&wat, "(module (func (export \"_start\")))").unwrap();
    let f = wat.to_str().unwrap();
    assert_eq!(run(&["run", f]).code, 0);
    let out = run(&["inspect", f]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("module") && out.stdout.contains("valid:   yes"),
        "{}",
        out.stdout
    );
    let out = run(&["validate", f]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(&wat, "(module (func (export \"_start\") (i32.add)))").unwrap();
    let out = run(&["validate", f]);
    assert_ne!(out.code, 0);
    assert!(!out.stderr.contains("magic"), "{}", out.stderr);
}

/// The public WASI preview1 test suite (`wasi-testsuite`, in the shared
/// data beside the checkout) through its own runner: every test passes but
/// those listed, with their reason, in
/// `conformance/wasi-testsuite/expectations.toml`.
#[test]
fn wasi_testsuite_passes_but_the_expected_failures() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/wasi-testsuite/run.sh");
    let out = output(
        std::process::Command::new("bash")
            .arg(script)
            .env("WASMOPS", env!("CARGO_BIN_EXE_wasmops"))
            .env("WASMOPS_CACHE_DIR", common::shared_cache()),
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("wasi-testsuite: "), "{}", out.stdout);
}

#[test]
fn a_closed_pipe_ends_a_report_quietly() {
    for args in [
        &["inspect", test_programs::HELLO, "--format", "json"][..],
        &[
            "--log-level",
            "warn",
            "inspect",
            test_programs::ECHO,
            "--format",
            "json",
        ],
    ] {
        let mut child = wasmops()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the pipe before wasmops writes, as `| head -c 0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("internal error") && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "{stderr}");
    }
}
