//! Hostile artifacts: thousands of deterministic mutations of a valid app
//! artifact (its manifest, its config, its files layer) go through pull,
//! component extraction and unpacking. Each must end in `Ok` or a clear
//! error: no panic, and nothing written outside the destination.

use serde_json::{Value, json};
use wasmops_oci::Layout;
use wasmops_oci::app::{AppInput, app_artifact, components, unpack_app};
use wasmops_oci::distribution::{Target, pull};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every leaf path of a JSON value.
fn leaves(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(json!(k));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(json!(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match p {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap_or(0) as usize],
        _ => v,
    })
}

fn nasty(rng: &mut Rng, digests: &[String]) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(1e300),
        3 => json!(u64::MAX),
        4 => json!("../../escape"),
        5 => json!("/etc/passwd"),
        6 => json!(""),
        7 => json!([]),
        8 => json!({}),
        9 => json!("x".repeat(10_000)),
        10 => json!("sha256:zz"),
        11 => json!(digests[rng.below(digests.len())]),
        12 => json!("application/wasm"),
        _ => json!("components/../../x.wasm"),
    }
}

#[test]
fn mutated_app_artifacts_never_panic_or_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("static");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(files.join("sub/a.txt"), "a").unwrap();
    let input = AppInput {
        name: "app".into(),
        version: Some("1.0.0".into()),
        description: None,
        created: "2026-01-01T00:00:00Z".into(),
        manifest: "manifest_version = 1\n[app]\nname = \"app\"\n".into(),
        components: vec![
            ("web".into(), b"\0asm\x0d\0\x01\0web".to_vec()),
            ("api".into(), b"\0asm\x0d\0\x01\0api".to_vec()),
        ],
        files: vec![("files/web/0".into(), files)],
    };
    let (blobs, manifest) = app_artifact(&input).unwrap();
    let store_dir = tmp.path().join("store");
    let store = Layout::open(&store_dir, true).unwrap();
    for b in &blobs {
        store.put_blob(&b.data).unwrap();
    }
    store.tag(&manifest, "good").unwrap();
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let config: Value = serde_json::from_slice(&blobs[0].data).unwrap();
    let tar_index = blobs.len() - 1;
    let digests: Vec<String> = blobs.iter().map(|b| b.digest.clone()).collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let quiet = wasmops_oci::registry::quiet();
    let out_root = tmp.path().join("out");
    std::fs::create_dir_all(&out_root).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = [0usize; 2];
    for round in 0..2000 {
        let mut m = manifest.clone();
        match rng.below(4) {
            // A leaf of the manifest.
            0 | 1 => {
                let mut paths = Vec::new();
                leaves(&m, &mut Vec::new(), &mut paths);
                for _ in 0..=rng.below(3) {
                    let p = paths[rng.below(paths.len())].clone();
                    *at(&mut m, &p) = nasty(&mut rng, &digests);
                }
            }
            // A leaf of the config, stored as a new blob.
            2 => {
                let mut c = config.clone();
                let mut paths = Vec::new();
                leaves(&c, &mut Vec::new(), &mut paths);
                let p = paths[rng.below(paths.len())].clone();
                *at(&mut c, &p) = nasty(&mut rng, &digests);
                let bytes = serde_json::to_vec(&c).unwrap();
                let d = store.put_blob(&bytes).unwrap();
                m["config"]["digest"] = json!(d);
                m["config"]["size"] = json!(bytes.len());
            }
            // Bytes of the files layer, stored as a new blob.
            _ => {
                let mut tar = blobs[tar_index].data.to_vec();
                for _ in 0..=rng.below(8) {
                    let i = rng.below(tar.len());
                    tar[i] = rng.next() as u8;
                }
                let d = store.put_blob(&tar).unwrap();
                let layers = m["layers"].as_array_mut().unwrap();
                let last = layers.len() - 1;
                layers[last]["digest"] = json!(d);
                layers[last]["size"] = json!(tar.len());
            }
        }
        let bytes = serde_json::to_vec(&m).unwrap();
        store.tag(&bytes, "mutant").unwrap();
        let target = Target::Layout {
            store: Layout::open(&store_dir, false).unwrap(),
            reference: "mutant".into(),
        };
        let dest = out_root.join(format!("d{round}"));
        let result = rt.block_on(pull(&target, &store, &quiet)).and_then(|p| {
            components(&store, &p)?;
            unpack_app(&store, &p, &dest)
        });
        outcomes[usize::from(result.is_ok())] += 1;
        if let Err(e) = &result {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }
    // Nothing was written beside the destinations.
    for entry in std::fs::read_dir(&out_root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with('d'),
            "unexpected {name} in the output root"
        );
    }
    assert!(!tmp.path().join("escape").exists());
    eprintln!("refused {}, accepted {}", outcomes[0], outcomes[1]);
    assert!(outcomes[0] > 500 && outcomes[1] > 50, "{outcomes:?}");
}
