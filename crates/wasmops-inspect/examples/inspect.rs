//! Prints the inspection report (and, with a database, the scan) of a file.
//!
//! `cargo run -p wasmops-inspect --example inspect -- FILE [--json] [--db DIR] [--sarif] [--sbom]`

use std::path::Path;

use wasmops_inspect::scan::{AdvisoryDb, Policy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!("usage: inspect FILE [--json] [--db DIR] [--sarif] [--sbom]");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
    };
    let report = match wasmops_inspect::inspect(&bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
    };
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--json") {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    let db = args
        .iter()
        .position(|a| a == "--db")
        .and_then(|i| args.get(i + 1))
        .map(|d| AdvisoryDb::load(Path::new(d)).expect("advisory database"));
    let scan = wasmops_inspect::scan(file, &report, &Policy::default(), db.as_ref());
    println!("{}", scan.to_table());
    if flag("--sarif") {
        println!("{}", scan.to_sarif(file));
    }
    if flag("--sbom") {
        println!("{}", scan.to_cyclonedx(&report));
    }
}
