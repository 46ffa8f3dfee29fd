//! Embeds the project templates (`templates/<name>/...`) in the binary. The
//! HTTP templates for JavaScript, TypeScript and Python also get the shared
//! WIT of `templates/_wit` under `wit/`.
use std::path::{Path, PathBuf};

fn files(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, root, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, p));
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    let mut wit = Vec::new();
    files(&root.join("_wit"), &root.join("_wit"), &mut wit);
    let mut code = String::from("pub static TEMPLATES: &[(&str, &[(&str, &str)])] = &[\n");
    for name in &names {
        let mut list = Vec::new();
        files(&root.join(name), &root.join(name), &mut list);
        if ["http-js", "http-ts", "http-python"].contains(&name.as_str()) {
            for (rel, p) in &wit {
                list.push((format!("wit/{rel}"), p.clone()));
            }
        }
        code.push_str(&format!("    ({name:?}, &[\n"));
        for (rel, p) in list {
            code.push_str(&format!(
                "        ({rel:?}, include_str!({:?})),\n",
                p.display().to_string()
            ));
        }
        code.push_str("    ]),\n");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("templates.rs");
    std::fs::write(out, code).unwrap();
}
