//! Spin platform interfaces this host does not implement (PostgreSQL,
//! MySQL, MQTT, LLM inferencing), answered with their own errors.
//!
//! Some toolchains import every interface of the Spin world whether the
//! program uses it or not: a componentize-py program built against the
//! Python Spin SDK imports `fermyon:spin/postgres`, `mysql`, `mqtt`, `llm`
//! and `spin:postgres/postgres`. Refusing such a component would refuse
//! every Python Spin app. So an import of a Spin interface that the host
//! does not provide is linked, for that component only, to functions that
//! return the interface's own error (`connection-failed`,
//! `model-not-supported`, `other`, ...), saying that this host does not
//! provide it: exactly what such a call gets from Spin when the app was not
//! granted the host or model. Nothing is reachable through them; a function
//! without an error result traps with the same message. Imports outside the
//! Spin namespaces are still refused at load ([`crate::world`]).

use std::sync::Arc;

use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Linker, ResourceType, Val};
use wasmtime::{Engine, StoreContextMut};

use crate::host::Host;

/// Whether `name` (an import, with version) is a Spin platform interface.
pub fn is_spin_interface(name: &str) -> bool {
    name.starts_with("fermyon:spin/") || name.starts_with("spin:")
}

/// Logs, once the component is linked, the Spin interfaces it imports that
/// are answered with errors.
pub(crate) fn warn_stand_ins(names: &[String]) {
    if !names.is_empty() {
        tracing::warn!(
            interfaces = %names.join(", "),
            "the component imports Spin interfaces this host does not implement; their calls return errors"
        );
    }
}

/// The host-side type behind the stand-ins' resources (never created: the
/// functions that would make one return errors).
struct Unavailable;

/// Error cases preferred for the answer, in order.
const CASES: &[&str] = &[
    "connection-failed",
    "model-not-supported",
    "other",
    "runtime-error",
];

/// `base` with every import in `names` (Spin interfaces it lacks) defined
/// by stand-ins, or `base` itself when there are none.
pub(crate) fn linker_with_stand_ins(
    base: &Arc<Linker<Host>>,
    engine: &Engine,
    component: &Component,
    names: &[String],
) -> anyhow::Result<Arc<Linker<Host>>> {
    if names.is_empty() {
        return Ok(base.clone());
    }
    let mut linker = (**base).clone();
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            anyhow::bail!("`{name}` is imported as something other than an interface");
        };
        let mut def = linker.instance(name)?;
        for (export, ext) in instance.exports(engine) {
            match ext.ty {
                ComponentItem::Resource(_) => {
                    def.resource(export, ResourceType::host::<Unavailable>(), |_, _| Ok(()))?;
                }
                ComponentItem::ComponentFunc(_) => {
                    let message = format!(
                        "{name}: this host does not provide this interface (wasmops implements Spin's key-value, variables, SQLite, Redis and outbound HTTP)"
                    );
                    def.func_new(
                        export,
                        move |_: StoreContextMut<'_, Host>, f, _, results| {
                            let Some(slot) = results.first_mut() else {
                                return Err(wasmtime::format_err!("{message}"));
                            };
                            match f.results().next().and_then(|r| error_value(&r, &message)) {
                                Some(v) => {
                                    *slot = v;
                                    Ok(())
                                }
                                None => Err(wasmtime::format_err!("{message}")),
                            }
                        },
                    )?;
                }
                // Types need no definition.
                _ => {}
            }
        }
    }
    Ok(Arc::new(linker))
}

/// `Err(case(message))` for a `result<_, error>` whose error is a variant
/// with one of [`CASES`] (or any case carrying a string).
fn error_value(result: &Type, message: &str) -> Option<Val> {
    let Type::Result(r) = result else {
        return None;
    };
    let Type::Variant(v) = r.err()? else {
        return None;
    };
    let cases: Vec<_> = v.cases().collect();
    let pick = CASES
        .iter()
        .find_map(|want| cases.iter().find(|c| c.name == *want))
        .or_else(|| cases.iter().find(|c| matches!(c.ty, Some(Type::String))))?;
    let payload = match &pick.ty {
        None => None,
        Some(Type::String) => Some(Box::new(Val::String(message.to_string()))),
        Some(_) => return None,
    };
    Some(Val::Result(Err(Some(Box::new(Val::Variant(
        pick.name.to_string(),
        payload,
    ))))))
}
