//! Composition: a component's imports satisfied by the exports of other
//! components (its dependencies), encoded as one self-contained component
//! that runs on any host. Spin's `[component.x.dependencies]` and
//! `wasmops compose` both come here.
//!
//! A dependency is named by what it satisfies: an interface
//! (`ns:pkg/iface`, optionally `@version`) or a whole package (`ns:pkg`:
//! every import of the component from that package). Its export of the
//! same name (or a semver-compatible one, or the one `export` names)
//! fills the import. Whatever the dependencies import themselves becomes
//! an import of the composition, so the host still decides what they get;
//! unless `inherit_configuration` is set, a dependency sees none of the
//! component's configuration: its `wasi:cli/environment` is filled by a
//! component that answers no variables, no arguments and no directory,
//! and a dependency that imports any other interface carrying
//! configuration or grants (variables, stores, databases, network, files)
//! is refused with the interface named.

use wac_graph::types::{Package, SubtypeChecker};
use wac_graph::{CompositionGraph, EncodeOptions};

/// One dependency of a component.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// What it satisfies: `ns:pkg/iface[@version]` or `ns:pkg[@version]`.
    pub import: String,
    /// Where it came from, for messages (a path, `component other`).
    pub origin: String,
    pub bytes: Vec<u8>,
    /// The dependency's export to use, when its name differs from the
    /// import's (one interface only).
    pub export: Option<String>,
    /// Whether it may import the interfaces that carry configuration.
    pub inherit_configuration: bool,
}

/// Why a composition failed; the message says which dependency and what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(pub String);

fn err(m: impl Into<String>) -> ComposeError {
    ComposeError(m.into())
}

/// `ns:pkg/iface@1.2.3` → (`ns:pkg`, `Some("iface")`, `Some("1.2.3")`).
fn split(name: &str) -> (&str, Option<&str>, Option<&str>) {
    let (base, version) = match name.split_once('@') {
        Some((b, v)) => (b, Some(v)),
        None => (name, None),
    };
    match base.split_once('/') {
        Some((pkg, iface)) => (pkg, Some(iface), version),
        None => (base, None, version),
    }
}

/// Whether `version` (as written in a dependency) admits `actual`: equal,
/// or the same major (minor for 0.x) with `actual` no older.
fn version_admits(wanted: &str, actual: &str) -> bool {
    if wanted == actual {
        return true;
    }
    let (Ok(w), Ok(a)) = (
        semver::Version::parse(wanted),
        semver::Version::parse(actual),
    ) else {
        return false;
    };
    if !w.pre.is_empty() || !a.pre.is_empty() {
        return false;
    }
    let same_line = if w.major == 0 {
        a.major == 0 && a.minor == w.minor
    } else {
        a.major == w.major
    };
    same_line && a >= w
}

/// Whether the import `name` is one `key` (a dependency's name) covers.
fn covers(key: &str, name: &str) -> bool {
    let (kp, ki, kv) = split(key);
    let (np, ni, nv) = split(name);
    if kp != np {
        return false;
    }
    if let Some(ki) = ki
        && Some(ki) != ni
    {
        return false;
    }
    match (kv, nv) {
        (Some(w), Some(a)) => version_admits(w, a),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Interfaces a dependency may import without inheriting the component's
/// configuration: they give no access to anything the manifest grants.
fn carries_no_configuration(name: &str) -> bool {
    let (pkg, iface, _) = split(name);
    match (pkg, iface) {
        ("wasi:io" | "wasi:clocks" | "wasi:random", _) => true,
        ("wasi:cli", Some(i)) => {
            matches!(i, "stdin" | "stdout" | "stderr" | "exit" | "types")
                || i.starts_with("terminal-")
        }
        ("wasi:http", Some("types")) => true,
        _ => false,
    }
}

/// A component exporting `wasi:cli/environment` at `version` that gives
/// nothing: no variables, no arguments, no initial directory. Each function
/// returns a pointer to eight zero bytes, which lifts as an empty list or
/// `none`.
fn empty_environment(version: &str) -> Vec<u8> {
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "empty") (result i32) i32.const 8))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "empty" (core func $empty))
  (func $env (result (list (tuple string string))) (canon lift (core func $empty) (memory $mem)))
  (func $args (result (list string)) (canon lift (core func $empty) (memory $mem)))
  (func $cwd (result (option string)) (canon lift (core func $empty) (memory $mem)))
  (instance $e
    (export "get-environment" (func $env))
    (export "get-arguments" (func $args))
    (export "initial-cwd" (func $cwd)))
  (export "wasi:cli/environment@{version}" (instance $e)))"#
    );
    wat::parse_str(wat).expect("the empty environment component is valid")
}

/// Semver-compatible names: same package and interface, versions on the
/// same release line.
fn compatible(a: &str, b: &str) -> bool {
    let (ap, ai, av) = split(a);
    let (bp, bi, bv) = split(b);
    if ap != bp || ai != bi {
        return false;
    }
    match (av, bv) {
        (Some(x), Some(y)) => version_admits(x, y) || version_admits(y, x),
        (None, None) => true,
        _ => false,
    }
}

/// Composes `main` (named `main_name` in messages) with `deps`.
pub fn compose(main_name: &str, main: &[u8], deps: &[Dependency]) -> Result<Vec<u8>, ComposeError> {
    let mut graph = CompositionGraph::new();
    let main_pkg =
        Package::from_bytes("main", None, main.to_vec(), graph.types_mut()).map_err(|e| {
            err(format!(
                "{main_name}: not a component that can be composed: {e:#}"
            ))
        })?;
    let main_world = main_pkg.ty();
    let main_id = graph
        .register_package(main_pkg)
        .map_err(|e| err(format!("{main_name}: {e:#}")))?;
    let main_inst = graph.instantiate(main_id);
    let main_imports: Vec<String> = graph.types()[main_world].imports.keys().cloned().collect();
    let main_exports: Vec<String> = graph.types()[main_world].exports.keys().cloned().collect();
    let mut filled: Vec<(String, String)> = Vec::new();

    for (n, dep) in deps.iter().enumerate() {
        let what = format!("dependency `{}` ({})", dep.import, dep.origin);
        let targets: Vec<&String> = main_imports
            .iter()
            .filter(|i| covers(&dep.import, i))
            .collect();
        if targets.is_empty() {
            let hint = if main_imports.is_empty() {
                "it imports nothing".to_string()
            } else {
                format!("its imports: {}", main_imports.join(", "))
            };
            return Err(err(format!(
                "{what}: {main_name} has no import `{}`; name one of {hint}",
                dep.import
            )));
        }
        if dep.export.is_some() && targets.len() > 1 {
            return Err(err(format!(
                "{what}: `export` picks one interface, but `{}` names {} imports; name the interface (`ns:pkg/iface`)",
                dep.import,
                targets.len()
            )));
        }
        if let Some((_, by)) = filled.iter().find(|(i, _)| targets.contains(&i)) {
            return Err(err(format!(
                "{what}: the import it fills is already filled by {by}"
            )));
        }
        let pkg = Package::from_bytes(
            &format!("dep{n}"),
            None,
            dep.bytes.clone(),
            graph.types_mut(),
        )
        .map_err(|e| err(format!("{what}: not a component: {e:#}")))?;
        let world = pkg.ty();
        let dep_imports: Vec<String> = graph.types()[world].imports.keys().cloned().collect();
        let dep_exports: Vec<String> = graph.types()[world].exports.keys().cloned().collect();
        let environment = dep_imports
            .iter()
            .find(|i| split(i).0 == "wasi:cli" && split(i).1 == Some("environment"))
            .cloned();
        if !dep.inherit_configuration
            && let Some(i) = dep_imports
                .iter()
                .find(|i| !carries_no_configuration(i) && Some(*i) != environment.as_ref())
        {
            return Err(err(format!(
                "{what} imports `{i}`, through which it would share {main_name}'s configuration and grants; set `dependencies_inherit_configuration = true` on the component to allow it, or use a dependency that does not import it"
            )));
        }
        let id = graph
            .register_package(pkg)
            .map_err(|e| err(format!("{what}: {e:#}")))?;
        let inst = graph.instantiate(id);
        if let Some(env) = environment.filter(|_| !dep.inherit_configuration) {
            let version = split(&env).2.unwrap_or("0.2.0");
            let empty = Package::from_bytes(
                &format!("empty-environment{n}"),
                None,
                empty_environment(version),
                graph.types_mut(),
            )
            .map_err(|e| err(format!("{what}: {e:#}")))?;
            let empty = graph
                .register_package(empty)
                .map_err(|e| err(format!("{what}: {e:#}")))?;
            let empty = graph.instantiate(empty);
            let alias = graph
                .alias_instance_export(empty, &env)
                .map_err(|e| err(format!("{what}: {e:#}")))?;
            graph
                .set_instantiation_argument(inst, &env, alias)
                .map_err(|e| err(format!("{what}: its `{env}`: {e:#}")))?;
        }
        for target in targets {
            let export = match &dep.export {
                Some(e) => {
                    if !dep_exports.contains(e) {
                        return Err(err(format!(
                            "{what} has no export `{e}`; it exports: {}",
                            dep_exports.join(", ")
                        )));
                    }
                    e.clone()
                }
                None => match dep_exports
                    .iter()
                    .find(|e| *e == target || compatible(e, target))
                {
                    Some(e) => e.clone(),
                    None => {
                        return Err(err(format!(
                            "{what} does not export `{target}`, which {main_name} imports; it exports: {}; pick one with `export = \"...\"`",
                            if dep_exports.is_empty() {
                                "nothing".to_string()
                            } else {
                                dep_exports.join(", ")
                            }
                        )));
                    }
                },
            };
            // The type check first, for a message that names both sides.
            let (src, dst) = {
                let types = graph.types();
                (
                    types[world].exports[&export],
                    types[main_world].imports[target],
                )
            };
            let mut cache = Default::default();
            let mut checker = SubtypeChecker::new(&mut cache);
            if let Err(e) = checker.is_subtype(src, graph.types(), dst, graph.types()) {
                return Err(err(format!(
                    "{what}: its export `{export}` does not match {main_name}'s import `{target}`: {e:#}"
                )));
            }
            let alias = graph
                .alias_instance_export(inst, &export)
                .map_err(|e| err(format!("{what}: {e:#}")))?;
            graph
                .set_instantiation_argument(main_inst, target, alias)
                .map_err(|e| err(format!("{what}: `{export}` for `{target}`: {e:#}")))?;
            filled.push((target.clone(), what.clone()));
        }
    }

    for name in &main_exports {
        let alias = graph
            .alias_instance_export(main_inst, name)
            .map_err(|e| err(format!("{main_name}: export `{name}`: {e:#}")))?;
        graph
            .export(alias, name.clone())
            .map_err(|e| err(format!("{main_name}: export `{name}`: {e:#}")))?;
    }
    graph.encode(EncodeOptions::default()).map_err(|e| {
        err(format!(
            "{main_name}: the composition cannot be encoded: {e:#}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(covers("acme:greet/hello", "acme:greet/hello@1.0.0"));
        assert!(covers("acme:greet", "acme:greet/hello@1.0.0"));
        assert!(covers("acme:greet/hello@1.0.0", "acme:greet/hello@1.2.0"));
        assert!(!covers("acme:greet/hello@1.2.0", "acme:greet/hello@1.0.0"));
        assert!(!covers("acme:greet/hello@1.0.0", "acme:greet/hello@2.0.0"));
        assert!(!covers("acme:greet/hello", "acme:greet/other@1.0.0"));
        assert!(!covers("acme:greeter", "acme:greet/hello"));
        assert!(compatible("a:b/c@0.2.0", "a:b/c@0.2.6"));
        assert!(!compatible("a:b/c@0.2.0", "a:b/c@0.3.0"));
        assert!(carries_no_configuration("wasi:io/streams@0.2.6"));
        assert!(carries_no_configuration("wasi:cli/stdout@0.2.0"));
        assert!(!carries_no_configuration("wasi:cli/environment@0.2.0"));
        assert!(!carries_no_configuration("wasi:keyvalue/store@0.2.0-draft"));
        assert!(!carries_no_configuration(
            "wasi:http/outgoing-handler@0.2.0"
        ));
    }
}
