//! `wasi:keyvalue@0.2.0-draft2`, the draft the Spin SDKs import (Rust
//! `spin-sdk` 5's `wit::wasi::keyvalue`, the current SDKs' experimental
//! module, Python's whole world), over the same stores and grants as
//! `wasi:keyvalue@0.2.0-draft`: cursors are strings (the draft's numeric
//! cursor in decimal), increments are signed, and `cas` handles give
//! compare-and-swap.

use wasmtime::component::Resource;

use crate::kv::bindings::wasi::keyvalue0_2_0_draft2::{atomics, batch, store};
use crate::kv::{Bucket, KvError, KvStore, KvView, op};

/// A compare-and-swap handle: a key's value as it was read.
pub struct Cas {
    store: KvStore,
    key: String,
    current: Option<Vec<u8>>,
}

crate::kv::keyvalue_store!(
    store,
    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, KvError> {
        let s = self.store(&b)?;
        let cursor = match cursor {
            None => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                KvError::Other(format!(
                    "invalid cursor {c:?}: pass back the cursor a previous list-keys returned"
                ))
            })?),
        };
        let (keys, next) = op(
            self.metrics,
            self.trace,
            &s,
            "list-keys",
            s.list_keys(cursor),
        )
        .await?;
        Ok(store::KeyResponse {
            keys,
            cursor: next.map(|n| n.to_string()),
        })
    }
);

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, KvError> {
        let s = self.store(&b)?;
        op(
            self.metrics,
            self.trace,
            &s,
            "increment",
            s.increment(&key, delta),
        )
        .await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let c = self.table.delete(cas)?;
        let swapped = op(
            self.metrics,
            self.trace,
            &c.store,
            "swap",
            c.store
                .compare_and_swap(&c.key, c.current.as_deref(), &value),
        )
        .await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Changed meanwhile: a fresh handle on the value now there.
                let current = match c.store.get(&c.key).await {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(Err(atomics::CasError::StoreError(self.convert_error(e)?)));
                    }
                };
                let fresh = self.table.push(Cas {
                    store: c.store,
                    key: c.key,
                    current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(self.convert_error(e)?))),
        }
    }
}

impl KvView<'_> {
    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        <Self as store::Host>::convert_error(self, err)
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(&mut self, b: Resource<Bucket>, key: String) -> Result<Resource<Cas>, KvError> {
        let s = self.store(&b)?;
        let current = op(self.metrics, self.trace, &s, "get", s.get(&key)).await?;
        Ok(self.table.push(Cas {
            store: s,
            key,
            current,
        })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.table.get(&cas)?.current.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

crate::kv::keyvalue_batch!(
    batch::Host,
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
        let s = self.store(&b)?;
        let values = op(self.metrics, self.trace, &s, "get-many", s.get_many(&keys)).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k, v.map(|(_, v)| v)))
            .collect())
    }
);
