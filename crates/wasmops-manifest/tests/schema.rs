//! `docs/wasmops.schema.json` must be the schema the crate generates.
//! `UPDATE_SNAPSHOTS=1` rewrites it.

use std::path::Path;

#[test]
fn schema_file_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/wasmops.schema.json");
    let generated = wasmops_manifest::json_schema();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date: rerun with UPDATE_SNAPSHOTS=1 to regenerate it",
        path.display()
    );
}

#[test]
fn schema_is_valid_json_describing_the_manifest() {
    let schema: serde_json::Value = serde_json::from_str(&wasmops_manifest::json_schema()).unwrap();
    assert_eq!(schema["title"], "wasmops.toml");
    let props = &schema["properties"];
    for key in [
        "manifest_version",
        "app",
        "variables",
        "key_value",
        "component",
    ] {
        assert!(props.get(key).is_some(), "missing {key}");
    }
    assert_eq!(schema["additionalProperties"], false);
    assert!(!serde_json::to_string(&schema).unwrap().contains("\"null\""));
}
