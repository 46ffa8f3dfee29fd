#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasmops_inspect::validate(data, wasmops_inspect::features());
    if let Ok(report) = wasmops_inspect::inspect(data) {
        let _ = report.to_text();
        let _ = report.to_json();
        let scan = wasmops_inspect::scan(
            "fuzz.wasm",
            &report,
            &wasmops_inspect::scan::Policy::default(),
            None,
        );
        let _ = scan.to_sarif("fuzz.wasm");
        let _ = scan.to_cyclonedx(&report);
    }
    let _ = wasmops_inspect::conforms(data, "wasi:http/proxy");
});
