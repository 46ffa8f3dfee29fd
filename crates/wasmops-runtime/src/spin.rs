//! Spin's platform interfaces for components built with the Spin SDKs for
//! WASIp2: `fermyon:spin/key-value@2.0.0` over the same stores as
//! `wasi:keyvalue` (the component's `key_value_stores`), and
//! `fermyon:spin/variables@2.0.0` and the `wasi:config` draft of 2024-09-27
//! over the same values as `wasi:config` (the component's variables). Errors are the ones Spin gives: a label
//! not granted is `access-denied`, a missing key is `none`, a name that is
//! not a variable name is `invalid-name`, a variable not granted is
//! `undefined`.

use wasmtime::component::{HasData, Linker, Resource};

use crate::grants::ConfigVars;
use crate::kv::bindings::fermyon::spin::{key_value, variables};
use crate::kv::bindings::wasi::config::store as config_draft;
use crate::kv::{KvError, KvStore, KvView, op};

/// An open `fermyon:spin/key-value` store.
pub struct SpinStore {
    store: KvStore,
}

/// What Spin's host functions see of an instance.
pub struct SpinView<'a> {
    pub kv: KvView<'a>,
    pub vars: &'a ConfigVars,
}

impl<'a> SpinView<'a> {
    fn store(&self, s: &Resource<SpinStore>) -> wasmtime::Result<KvStore> {
        Ok(self.kv.table.get(s)?.store.clone())
    }

    /// Runs one operation on `st` (counted and traced), with Spin's errors;
    /// only the metrics and trace context are held across the await (the
    /// resource table is not `Sync`).
    fn op<'f, T: 'f>(
        &self,
        st: &'f KvStore,
        name: &'static str,
        f: impl Future<Output = Result<T, KvError>> + Send + 'f,
    ) -> impl Future<Output = KvResult<T>> + Send + 'f
    where
        'a: 'f,
    {
        let (metrics, trace) = (self.kv.metrics, self.kv.trace);
        async move { Ok(op(metrics, trace, st, name, f).await.map_err(kv_error)) }
    }
}

fn kv_error(e: KvError) -> key_value::Error {
    match e {
        KvError::NoSuchStore => key_value::Error::NoSuchStore,
        KvError::AccessDenied => key_value::Error::AccessDenied,
        KvError::Other(m) => key_value::Error::Other(m),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl key_value::Host for SpinView<'_> {}

impl key_value::HostStore for SpinView<'_> {
    async fn open(&mut self, label: String) -> KvResult<Resource<SpinStore>> {
        match self.kv.access.get(&label) {
            Some(store) => Ok(Ok(self.kv.table.push(SpinStore { store })?)),
            None => {
                tracing::warn!(store = %label, "key-value store denied: not granted to the component");
                Ok(Err(key_value::Error::AccessDenied))
            }
        }
    }

    async fn get(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<Option<Vec<u8>>> {
        let st = self.store(&s)?;
        self.op(&st, "get", st.get(&key)).await
    }

    async fn set(&mut self, s: Resource<SpinStore>, key: String, value: Vec<u8>) -> KvResult<()> {
        let st = self.store(&s)?;
        self.op(&st, "set", st.set(&key, &value)).await
    }

    async fn delete(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<()> {
        let st = self.store(&s)?;
        self.op(&st, "delete", st.delete(&key)).await
    }

    async fn exists(&mut self, s: Resource<SpinStore>, key: String) -> KvResult<bool> {
        let st = self.store(&s)?;
        self.op(&st, "exists", st.exists(&key)).await
    }

    async fn get_keys(&mut self, s: Resource<SpinStore>) -> KvResult<Vec<String>> {
        let st = self.store(&s)?;
        let all = async {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) = st.list_keys(cursor).await?;
                keys.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => return Ok(keys),
                }
            }
        };
        self.op(&st, "get-keys", all).await
    }

    async fn drop(&mut self, s: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.kv.table.delete(s)?;
        Ok(())
    }
}

/// Why `name` is not a variable name as Spin has them: lowercase ASCII
/// letters, digits and `_`, starting with a letter, not ending with `_`,
/// no `__`.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a variable name cannot be empty")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("variable names may contain only lower-case letters, numbers, and underscores")
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Some("variable names must start with a letter")
    } else if name.ends_with('_') {
        Some("variable names must end with a letter or a number")
    } else if name.contains("__") {
        Some("variable names cannot contain two consecutive underscores")
    } else {
        None
    }
}

impl variables::Host for SpinView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if let Some(why) = invalid_name(&name) {
            return Ok(Err(variables::Error::InvalidName(format!(
                "{name:?}: {why}"
            ))));
        }
        Ok(match self.vars.get(&name) {
            Some(v) => Ok(v.to_string()),
            None => Err(variables::Error::Undefined(format!(
                "no variable {name:?} for this component (grant it in the manifest's `variables`)"
            ))),
        })
    }
}

/// `wasi:config/store@0.2.0-draft-2024-09-27`, the draft the Spin SDKs
/// import: the component's variables, as `wasi:config@0.2.0-rc.1` gives
/// them.
impl config_draft::Host for SpinView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_draft::Error>> {
        Ok(Ok(self.vars.get(&key).map(str::to_string)))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_draft::Error>> {
        Ok(Ok(self.vars.all()))
    }
}

struct HasSpin;

impl HasData for HasSpin {
    type Data<'a> = SpinView<'a>;
}

/// Adds Spin's key-value and variables interfaces to the linker.
pub fn add_to_linker<T: Send + 'static>(
    l: &mut Linker<T>,
    f: fn(&mut T) -> SpinView<'_>,
) -> wasmtime::Result<()> {
    key_value::add_to_linker::<T, HasSpin>(l, f)?;
    variables::add_to_linker::<T, HasSpin>(l, f)?;
    config_draft::add_to_linker::<T, HasSpin>(l, f)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::invalid_name;

    #[test]
    fn variable_names_as_spin_has_them() {
        for ok in ["a", "greeting", "api_key2", "x1"] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for bad in ["", "Greeting", "1a", "a_", "a__b", "a-b", "é"] {
            assert!(invalid_name(bad).is_some(), "{bad}");
        }
    }
}
