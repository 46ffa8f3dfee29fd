//! Loading a component: read, classify, adapt core modules, compile or fetch
//! from the artifact cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmops_component::{DecodeError, Kind, one_line};
use wasmtime::component::Component;

use crate::cache::Lookup;
use crate::engine::Runtime;

/// Why a file could not be loaded. Displayed as one line that names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Decode { path: PathBuf, source: DecodeError },
    #[error(
        "{path}: is a core WebAssembly module that does not import WASI preview1, so it cannot be run as a component; build it as a component (e.g. `--target wasm32-wasip2`) or wrap it with `wasm-tools component new`"
    )]
    NotAdaptable { path: PathBuf },
    #[error("{path}: {message}")]
    Compile { path: PathBuf, message: String },
}

/// How the cache took part in a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// An entry existed but was damaged or stale; it was rebuilt.
    Rebuilt(String),
    Disabled,
}

/// A loaded component.
pub struct Loaded {
    pub component: Component,
    /// What the file held before adaptation.
    pub source_kind: Kind,
    /// blake3 of the file's bytes, hex.
    pub digest: String,
    pub cache: CacheOutcome,
    pub elapsed: Duration,
}

impl Runtime {
    /// Loads a component from a file. Core modules that import WASI preview1
    /// are adapted into components automatically.
    pub fn load(&self, path: &Path) -> Result<Loaded, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(path, &bytes)
    }

    /// Loads a component from bytes; `path` is only used in messages.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let start = Instant::now();
        let decode = |source| LoadError::Decode {
            path: path.to_owned(),
            source,
        };
        let text;
        let bytes = if looks_like_text(bytes) {
            text = wat::parse_bytes(bytes)
                .map_err(|e| decode(DecodeError::Invalid(one_line(&e.to_string()))))?
                .into_owned();
            &text[..]
        } else {
            bytes
        };
        let source_kind = wasmops_component::kind(bytes).map_err(decode)?;
        let digest = blake3::hash(bytes).to_hex().to_string();
        let key = format!("{digest}-{}", self.fingerprint);

        let mut outcome = CacheOutcome::Disabled;
        if let Some(cache) = &self.cache {
            outcome = CacheOutcome::Miss;
            match cache.get(&key) {
                Lookup::Hit(payload) => {
                    // SAFETY: the payload was produced by `Component::serialize`
                    // of an engine with the same fingerprint, and its checksum
                    // was verified, so it is the bytes we wrote.
                    match unsafe { Component::deserialize(&self.engine, &payload) } {
                        Ok(component) => {
                            return Ok(Loaded {
                                component,
                                source_kind,
                                digest,
                                cache: CacheOutcome::Hit,
                                elapsed: start.elapsed(),
                            });
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "stale compiled artifact; recompiling");
                            cache.remove(&key);
                            outcome = CacheOutcome::Rebuilt("stale".into());
                        }
                    }
                }
                Lookup::Corrupt(why) => {
                    tracing::warn!(path = %path.display(), reason = %why, "corrupt compiled artifact; recompiling");
                    outcome = CacheOutcome::Rebuilt(why);
                }
                Lookup::Miss => {}
            }
        }

        let adapted;
        let component_bytes = match source_kind {
            Kind::Component => bytes,
            Kind::CoreModule => {
                let info = wasmops_component::core_module_info(bytes).map_err(decode)?;
                if !info.imports_preview1 {
                    return Err(LoadError::NotAdaptable {
                        path: path.to_owned(),
                    });
                }
                adapted = wasmops_component::componentize_preview1(bytes).map_err(decode)?;
                &adapted[..]
            }
        };
        let component =
            Component::new(&self.engine, component_bytes).map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                message: compile_message(&e),
            })?;
        if let Some(cache) = &self.cache {
            match component.serialize() {
                Ok(payload) => {
                    if let Err(e) = cache.put(&key, &payload) {
                        tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot write to the artifact cache");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot serialize the compiled component")
                }
            }
        }
        Ok(Loaded {
            component,
            source_kind,
            digest,
            cache: outcome,
            elapsed: start.elapsed(),
        })
    }
}

fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'(' || b == b';')
}

fn compile_message(e: &wasmtime::Error) -> String {
    let msg = one_line(&format!("{e:#}"));
    if msg.contains("failed to parse") || msg.contains("invalid") || msg.contains("unexpected") {
        format!("invalid WebAssembly: {msg}")
    } else {
        msg
    }
}
