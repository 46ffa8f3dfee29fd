//! Loading a component: read, classify, adapt core modules, compile or fetch
//! from the artifact cache.
//!
//! A component is compiled for the engine without concurrency support
//! (cheaper instances, see [`crate::engine`]) unless it cannot run there:
//! compiling fails because it uses the async ABI, or it imports what only
//! the concurrent engine's linker provides. It is then compiled for the
//! concurrent engine, and only that artifact is kept, so the next load finds
//! it at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmops_component::{DecodeError, Kind, one_line};
use wasmtime::component::Component;

use crate::cache::{Lookup, StoredSource};
use crate::engine::{EngineSlot, Runtime};

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

impl std::fmt::Display for CacheOutcome {
    /// `hit`, `miss`, `rebuilt (why)`, `disabled`: what logs show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheOutcome::Hit => f.write_str("hit"),
            CacheOutcome::Miss => f.write_str("miss"),
            CacheOutcome::Rebuilt(why) => write!(f, "rebuilt ({why})"),
            CacheOutcome::Disabled => f.write_str("disabled"),
        }
    }
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

    /// Loads a component from a file that is never changed in place once
    /// written (a content-addressed store's, such as a node's blobs). Its
    /// first load records the digest of its bytes in the cache's index of
    /// stored sources; later loads, in this process or the next, find the
    /// compiled artifact by that digest without reading or hashing the file
    /// (a componentize-js component is 13 MB). Whatever the index cannot
    /// settle (no entry, no artifact, a damaged one) is a plain [`Self::load`].
    pub fn load_stored(&self, path: &Path) -> Result<Loaded, LoadError> {
        let start = Instant::now();
        let known = self.cache.as_ref().and_then(|c| c.source_digest(path));
        if let Some(known) = known
            && let Some(loaded) = self.load_known(&known, start)
        {
            return Ok(loaded);
        }
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let loaded = self.load_bytes(path, &bytes)?;
        if let Some(cache) = &self.cache
            && let Ok((decoded, _)) = decode_input(path, &bytes)
            && let Ok(data) = wasmops_component::initial_data_bytes(&decoded)
        {
            cache.record_source(path, &loaded.digest, loaded.source_kind, data);
        }
        Ok(loaded)
    }

    /// Whether the artifact cache holds the compiled form of the stored
    /// source `path` (see [`Self::load_stored`]), checked by name, not
    /// loaded (a damaged entry is found and rebuilt when it is loaded): by
    /// the index when it knows the file, else by reading and hashing it,
    /// recording what it finds.
    pub fn is_cached_stored(&self, path: &Path) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        if let Some(known) = cache.source_digest(path) {
            return self.artifact_for(&known).is_some();
        }
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let Ok((decoded, kind)) = decode_input(path, &bytes) else {
            return false;
        };
        let Ok(data) = wasmops_component::initial_data_bytes(&decoded) else {
            return false;
        };
        let known = StoredSource {
            digest: blake3::hash(&decoded).to_hex().to_string(),
            kind,
            data,
        };
        let cached = self.artifact_for(&known).is_some();
        if cached {
            cache.record_source(path, &known.digest, kind, data);
        }
        cached
    }

    /// Verifies now the checksum of the artifact a load of the stored source
    /// `path` would take, so that its first load in this process does not
    /// (a node does this for every app on one low-priority thread after it
    /// is ready: a componentize-js artifact is 37 MB to hash). Reading it
    /// also brings it into the page cache. Nothing happens for a source the
    /// index does not know or whose artifact is missing.
    pub fn verify_stored(&self, path: &Path) {
        let Some(cache) = &self.cache else {
            return;
        };
        if let Some(known) = cache.source_digest(path)
            && let Some((slot, _)) = self.artifact_for(&known)
        {
            // A damaged entry is removed here, and compiled again by the
            // load, as it would have been anyway.
            let _ = cache.get(&component_key(&known.digest, slot));
        }
    }

    /// The engine whose artifact a load of `known` takes, as
    /// [`Self::load_bytes`] would choose it, and whether that engine pools
    /// its instances; `None` when the cache holds none a load would take
    /// (one of the image engine for a component that copies its data in is
    /// not taken: see `pooled_sync`).
    fn artifact_for(&self, known: &StoredSource) -> Option<(&EngineSlot, bool)> {
        let cache = self.cache.as_ref()?;
        let has = |slot: &EngineSlot| has_artifact(cache, &known.digest, slot);
        match &self.on_demand {
            Some((s, _)) if has(s) => Some((s, false)),
            Some((_, c)) if has(c) => Some((c, false)),
            _ => match &self.copied {
                Some(c) if has(c) => Some((c, true)),
                Some(_) if has(&self.sync) && copies(known.data) => None,
                _ if has(&self.sync) => Some((&self.sync, true)),
                _ if has(&self.concurrent) => Some((&self.concurrent, true)),
                _ => None,
            },
        }
    }

    /// The component `digest` from the artifact it was last compiled to,
    /// found as [`Self::load_bytes`] would find it; `None` for anything
    /// that needs the source's bytes.
    fn load_known(&self, known: &StoredSource, start: Instant) -> Option<Loaded> {
        let cache = self.cache.as_ref()?;
        let digest = known.digest.as_str();
        let (slot, pooled) = self.artifact_for(known)?;
        let Lookup::Hit { path, crowded } = cache.get(&component_key(digest, slot)) else {
            return None;
        };
        let component = self
            .open_artifact(&path, crowded, &slot.engine, &deserialize_component)
            .ok()?;
        // As `load_bytes` would: one too large for its share of the pool
        // goes to the on-demand engines (its pooled artifact is normally
        // gone by then).
        if pooled && self.on_demand.is_some() && !fits_share(&component) {
            return None;
        }
        Some(Loaded {
            component,
            source_kind: known.kind,
            digest: digest.to_string(),
            cache: CacheOutcome::Hit,
            elapsed: start.elapsed(),
        })
    }

    /// Loads a component from bytes; `path` is only used in messages.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let start = Instant::now();
        let (bytes, source_kind) = decode_input(path, bytes)?;
        let bytes = &bytes[..];
        let digest = blake3::hash(bytes).to_hex().to_string();
        let cached_for = |slot: &EngineSlot| {
            self.cache
                .as_ref()
                .is_some_and(|c| has_artifact(c, &digest, slot))
        };
        let pooled = (self.pooled_sync(&digest, bytes), &self.concurrent);
        let (component, cache) = match &self.on_demand {
            // Found too large for the pool before: straight to its twins.
            Some((s, c)) if cached_for(s) || cached_for(c) => {
                self.load_on(path, bytes, source_kind, &digest, (s, c))?
            }
            Some((s, c)) => match self.load_on(path, bytes, source_kind, &digest, pooled) {
                // Its instances could not start within the memory limit
                // on any engine (the pool's slots are that limit's size).
                Err(LoadError::Compile { message, .. })
                    if message.contains("minimum byte size") =>
                {
                    return Err(LoadError::Compile {
                        path: path.to_owned(),
                        message: format!(
                            "its linear memory starts larger than the memory limit ({message}); raise the limit (`--max-memory`, or `memory` in the manifest's `[component.NAME.limits]`)"
                        ),
                    });
                }
                Err(LoadError::Compile { message, .. }) if exceeds_pool(&message) => {
                    tracing::info!(
                        path = %path.display(),
                        reason = %message,
                        "the component does not fit the instance pool's slots; its instances are allocated on demand (same limits, slower instantiation)"
                    );
                    self.load_on(path, bytes, source_kind, &digest, (s, c))?
                }
                // Fits, but takes more slots than the pool holds per
                // instance: a flood of it could exhaust the pool for every
                // other component, so it runs on demand as well.
                Ok((component, _)) if !fits_share(&component) => {
                    tracing::info!(
                        path = %path.display(),
                        "the component's instances need more memories or tables than the instance pool holds per instance; they are allocated on demand (same limits, slower instantiation)"
                    );
                    if let Some(c) = &self.cache {
                        c.remove(&component_key(&digest, self.slot_for(component.engine())));
                    }
                    self.load_on(path, bytes, source_kind, &digest, (s, c))?
                }
                r => r?,
            },
            None => self.load_on(path, bytes, source_kind, &digest, pooled)?,
        };
        Ok(Loaded {
            component,
            source_kind,
            digest,
            cache,
            elapsed: start.elapsed(),
        })
    }

    /// The pooled engine without concurrency for the component `digest`:
    /// the one that copies data segments when its memories start with little
    /// data (see [`crate::engine`]).
    fn pooled_sync(&self, digest: &str, bytes: &[u8]) -> &EngineSlot {
        let Some(copied) = &self.copied else {
            return &self.sync;
        };
        if let Some(cache) = &self.cache
            && has_artifact(cache, digest, copied)
        {
            return copied;
        }
        // By its data, not by an artifact of the other engine found in the
        // cache: one compiled before copying existed, or under another
        // bound, would keep the component on the slower path for good.
        // Unreadable bytes fail to compile on either engine, saying why.
        if wasmops_component::initial_data_bytes(bytes).is_ok_and(copies) {
            copied
        } else {
            &self.sync
        }
    }

    /// Loads on `sync` if the component runs there, on `concurrent`
    /// otherwise (the engines of one allocation strategy).
    fn load_on(
        &self,
        path: &Path,
        bytes: &[u8],
        source_kind: Kind,
        digest: &str,
        (sync, concurrent): (&EngineSlot, &EngineSlot),
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let compile = |engine: &wasmtime::Engine| {
            let component_bytes = component_bytes(path, bytes, source_kind)?;
            Component::new(engine, &component_bytes).map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                message: compile_message(&e),
            })
        };
        let load = |slot: &EngineSlot| {
            self.cached(
                path,
                &component_key(digest, slot),
                slot,
                deserialize_component,
                compile,
                Component::serialize,
            )
        };
        // Compiled for the concurrent engine before: straight there.
        let known_concurrent = self
            .cache
            .as_ref()
            .is_some_and(|c| has_artifact(c, digest, concurrent) && !has_artifact(c, digest, sync));
        let on_sync = if known_concurrent {
            None
        } else {
            match load(sync) {
                // An artifact of this engine is kept only once it linked
                // here, so a cached one needs no second check (the caller
                // links it anyway).
                Ok((component, cache))
                    if cache == CacheOutcome::Hit || self.links_without_concurrency(&component) =>
                {
                    Some((component, cache))
                }
                Ok(_) => {
                    if let Some(cache) = &self.cache {
                        cache.remove(&component_key(digest, sync));
                    }
                    None
                }
                // Too large for the pool: so it is on the other engine too.
                Err(e @ LoadError::Compile { .. }) if matches!(&e, LoadError::Compile { message, .. } if exceeds_pool(message)) =>
                {
                    return Err(e);
                }
                // Uses the async ABI (or is broken: then the concurrent
                // engine's compile says so).
                Err(LoadError::Compile { .. }) => None,
                Err(e) => return Err(e),
            }
        };
        match on_sync {
            Some(loaded) => Ok(loaded),
            None => load(concurrent),
        }
    }

    /// Whether everything `component` imports is provided without
    /// concurrency support.
    fn links_without_concurrency(&self, component: &Component) -> bool {
        self.linker_for_component(component)
            .is_ok_and(|(l, _)| l.instantiate_pre(component).is_ok())
    }

    /// Loads a WASI preview1 core module as a module (not adapted into a
    /// component), for running on the host's preview1 implementation.
    pub fn load_module_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(wasmtime::Module, CacheOutcome), LoadError> {
        let (bytes, _) = decode_input(path, bytes)?;
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let key = format!("{digest}-p1-{}", self.concurrent.fingerprint);
        self.cached(
            path,
            &key,
            &self.concurrent,
            // SAFETY: as for components, the payload is what
            // `Module::serialize` of an engine with this fingerprint wrote.
            |engine, artifact| unsafe {
                match artifact {
                    Artifact::File(path) => wasmtime::Module::deserialize_file(engine, path),
                    Artifact::Bytes(bytes) => wasmtime::Module::deserialize(engine, bytes),
                }
            },
            |engine| {
                wasmtime::Module::new(engine, &bytes).map_err(|e| LoadError::Compile {
                    path: path.to_owned(),
                    message: compile_message(&e),
                })
            },
            wasmtime::Module::serialize,
        )
    }

    /// Maps a verified cache entry into the engine; where the file system
    /// refuses executable mappings, reads it into memory instead (and
    /// says so once), as when the process has many files open (`crowded`:
    /// a mapping keeps its file open while the component lives).
    fn open_artifact<T>(
        &self,
        file: &Path,
        crowded: bool,
        engine: &wasmtime::Engine,
        deserialize: &impl Fn(&wasmtime::Engine, Artifact<'_>) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        use std::sync::atomic::Ordering;
        if crowded && !self.crowded_said.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "half the open-file limit is in use: compiled artifacts are read into memory instead of mapped while it is (raise `ulimit -n` for smaller loads)"
            );
        }
        let mapped = if crowded || self.map_refused.load(Ordering::Relaxed) {
            None
        } else {
            match deserialize(engine, Artifact::File(file)) {
                Ok(t) => return Ok(t),
                Err(e) => Some(e),
            }
        };
        let bytes = crate::cache::payload(file)?;
        let read = deserialize(engine, Artifact::Bytes(&bytes))?;
        if let Some(e) = mapped
            && !self.map_refused.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                file = %file.display(),
                error = %format!("{e:#}"),
                "the artifact cache's file system refuses executable mappings (mounted noexec?); artifacts are read into memory instead (slower loads, more memory per loaded component)"
            );
        }
        Ok(read)
    }

    /// Fetches a compiled artifact from the cache, or compiles and stores it.
    fn cached<T>(
        &self,
        path: &Path,
        key: &str,
        slot: &EngineSlot,
        deserialize: impl Fn(&wasmtime::Engine, Artifact<'_>) -> wasmtime::Result<T>,
        compile: impl Fn(&wasmtime::Engine) -> Result<T, LoadError>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<(T, CacheOutcome), LoadError> {
        let mut outcome = CacheOutcome::Disabled;
        if let Some(cache) = &self.cache {
            outcome = CacheOutcome::Miss;
            match cache.get(key) {
                Lookup::Hit {
                    path: file,
                    crowded,
                } => match self.open_artifact(&file, crowded, &slot.engine, &deserialize) {
                    Ok(t) => return Ok((t, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "stale compiled artifact; recompiling");
                        cache.remove(key);
                        outcome = CacheOutcome::Rebuilt("stale".into());
                    }
                },
                Lookup::Corrupt(why) => {
                    tracing::warn!(path = %path.display(), reason = %why, "corrupt compiled artifact; recompiling");
                    outcome = CacheOutcome::Rebuilt(why);
                }
                Lookup::Miss => {}
            }
        }
        let compiled = compile(&slot.engine)?;
        if let Some(cache) = &self.cache {
            match serialize(&compiled) {
                Ok(payload) => {
                    if let Err(e) = cache.put(key, &payload) {
                        tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot write to the artifact cache");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot serialize the compiled artifact")
                }
            }
        }
        Ok((compiled, outcome))
    }
}

/// A verified cache entry, as given to the engine.
enum Artifact<'a> {
    /// The entry's file, to map.
    File(&'a Path),
    /// Its payload, read into memory.
    Bytes(&'a [u8]),
}

/// Whether memories starting with `data` bytes are copied in rather than
/// mapped from an image (see [`crate::engine`]).
fn copies(data: u64) -> bool {
    data <= crate::engine::COPY_INIT_MAX_DATA
}

/// A component from a verified cache entry.
fn deserialize_component(
    engine: &wasmtime::Engine,
    artifact: Artifact<'_>,
) -> wasmtime::Result<Component> {
    // SAFETY: cache payloads are produced by `Component::serialize` of an
    // engine with the same fingerprint, and their checksum was verified, so
    // they are the bytes we wrote; entries are replaced by rename, never
    // changed in place, so a mapped file stays what was verified.
    unsafe {
        match artifact {
            Artifact::File(path) => Component::deserialize_file(engine, path),
            Artifact::Bytes(bytes) => Component::deserialize(engine, bytes),
        }
    }
}

/// The artifact cache's name for a component compiled for `slot`'s engine.
fn component_key(digest: &str, slot: &EngineSlot) -> String {
    format!("{digest}-{}", slot.fingerprint)
}

/// Whether the cache holds the component `digest` compiled for `slot`
/// (checked by name).
fn has_artifact(cache: &crate::cache::ArtifactCache, digest: &str, slot: &EngineSlot) -> bool {
    cache.path_for(&component_key(digest, slot)).is_file()
}

/// The component to compile: `bytes` itself, or a preview1 module adapted.
fn component_bytes<'a>(
    path: &Path,
    bytes: &'a [u8],
    kind: Kind,
) -> Result<std::borrow::Cow<'a, [u8]>, LoadError> {
    match kind {
        Kind::Component => Ok(bytes.into()),
        Kind::CoreModule => {
            let info = wasmops_component::core_module_info(bytes)
                .map_err(|source| decode_err(path, source))?;
            if !info.imports_preview1 {
                return Err(LoadError::NotAdaptable {
                    path: path.to_owned(),
                });
            }
            wasmops_component::componentize_preview1(bytes)
                .map(Into::into)
                .map_err(|source| decode_err(path, source))
        }
    }
}

/// What `bytes` (binary or text format) hold: a component or a core module.
pub fn source_kind(path: &Path, bytes: &[u8]) -> Result<Kind, LoadError> {
    decode_input(path, bytes).map(|(_, kind)| kind)
}

fn decode_err(path: &Path, source: DecodeError) -> LoadError {
    LoadError::Decode {
        path: path.to_owned(),
        source,
    }
}

/// The binary of `bytes` (text format is assembled) and what it holds.
fn decode_input<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(std::borrow::Cow<'a, [u8]>, Kind), LoadError> {
    let bytes = if looks_like_text(bytes) {
        std::borrow::Cow::Owned(
            wat::parse_bytes(bytes)
                .map_err(|e| decode_err(path, DecodeError::Invalid(one_line(&e.to_string()))))?
                .into_owned(),
        )
    } else {
        std::borrow::Cow::Borrowed(bytes)
    };
    let kind = wasmops_component::kind(&bytes).map_err(|source| decode_err(path, source))?;
    Ok((bytes, kind))
}

fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'(' || b == b';')
}

/// Whether an instance of `component` takes no more pool slots than the
/// pool holds per instance (unknown, for a component that instantiates
/// imported modules: then it is taken to fit).
fn fits_share(component: &Component) -> bool {
    component.resources_required().is_none_or(|r| {
        r.num_memories <= crate::engine::MEMORIES_PER_INSTANCE
            && r.num_tables <= crate::engine::TABLES_PER_INSTANCE
    })
}

/// Whether a compile failed only because the component does not fit the
/// pooling allocator's slots (wasmtime checks this when it makes the
/// component, and says "... pooling allocator ...").
fn exceeds_pool(message: &str) -> bool {
    message.contains("pooling allocator")
}

fn compile_message(e: &wasmtime::Error) -> String {
    let msg = one_line(&format!("{e:#}"));
    if msg.contains("failed to parse") || msg.contains("invalid") || msg.contains("unexpected") {
        format!("invalid WebAssembly: {msg}")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineSettings;
    use wasmtime::Engine;

    fn artifacts(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    }

    /// A store with nothing granted.
    fn store(engine: &Engine) -> wasmtime::Store<crate::host::Host> {
        crate::host::new_store(
            engine,
            &Default::default(),
            Default::default(),
            &Default::default(),
            crate::host::Stdio::Inherit,
        )
        .unwrap()
    }

    #[test]
    fn cached_artifacts_are_mapped_from_the_cache_and_read_where_mapping_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = || EngineSettings {
            cache_dir: Some(dir.path().to_owned()),
            ..EngineSettings::for_command()
        };
        let hello = Path::new(test_programs::HELLO);
        let first = Runtime::new(settings()).unwrap().load(hello).unwrap();
        assert_eq!(first.cache, CacheOutcome::Miss);
        let rt = Runtime::new(settings()).unwrap();
        let loaded = rt.load(hello).unwrap();
        assert_eq!(loaded.cache, CacheOutcome::Hit);
        // The code runs from a mapping of the cache entry itself.
        let entry = rt
            .cache
            .as_ref()
            .unwrap()
            .path_for(&component_key(&loaded.digest, &rt.sync));
        let code = loaded.component.image_range().start as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mapping = maps.lines().find(|l| {
            let (lo, hi) = l.split(' ').next().unwrap().split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            (lo..hi).contains(&code)
        });
        assert!(
            mapping.is_some_and(|m| m.ends_with(entry.to_str().unwrap())),
            "{mapping:?} is not {}",
            entry.display()
        );
        let mut instance = store(loaded.component.engine());
        let pre = rt.link(&loaded.component).unwrap();
        futures::executor::block_on(pre.instantiate_async(&mut instance)).unwrap();

        // A file system that refuses executable mappings (`noexec`): the
        // payload, without the trailer, is read instead, and from then on
        // no mapping is tried.
        let payload_len = std::fs::metadata(&entry).unwrap().len() as usize - 40;
        let refuse = |_: &wasmtime::Engine, a: Artifact<'_>| match a {
            Artifact::File(_) => Err(wasmtime::format_err!("unable to make memory executable")),
            Artifact::Bytes(b) => Ok(b.len()),
        };
        assert_eq!(
            rt.open_artifact(&entry, false, &rt.sync.engine, &refuse)
                .unwrap(),
            payload_len
        );
        let no_mapping = |_: &wasmtime::Engine, a: Artifact<'_>| match a {
            Artifact::File(_) => panic!("mapped again after a refusal"),
            Artifact::Bytes(b) => Ok(b.len()),
        };
        assert_eq!(
            rt.open_artifact(&entry, false, &rt.sync.engine, &no_mapping)
                .unwrap(),
            payload_len
        );
        // Crowded: read, without trying to map.
        let rt = Runtime::new(settings()).unwrap();
        assert_eq!(
            rt.open_artifact(&entry, true, &rt.sync.engine, &no_mapping)
                .unwrap(),
            payload_len
        );
        assert!(!rt.map_refused.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn only_components_using_the_async_abi_go_to_the_concurrent_engine() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(EngineSettings {
            cache_dir: Some(dir.path().to_owned()),
            ..EngineSettings::for_command()
        })
        .unwrap();
        let p2 = rt.load(Path::new(test_programs::HELLO)).unwrap();
        assert!(rt.copied.is_none(), "no pool, no copying engine");
        assert!(Engine::same(p2.component.engine(), &rt.sync.engine));
        for p3 in [test_programs::HELLO_P3, test_programs::SPIN_APIS_P3] {
            let loaded = rt.load(Path::new(p3)).unwrap();
            assert!(
                Engine::same(loaded.component.engine(), &rt.concurrent.engine),
                "{p3}"
            );
            // It links there (the async interfaces are in that linker only).
            rt.linker_for(loaded.component.engine())
                .unwrap()
                .instantiate_pre(&loaded.component)
                .unwrap();
            assert!(rt.is_cached_stored(Path::new(p3)));
        }
        // One artifact per component: the one that runs.
        assert_eq!(artifacts(dir.path()), 3);
        // Found again at once, on the engine it runs on.
        let again = rt.load(Path::new(test_programs::HELLO_P3)).unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(
            again.component.engine(),
            &rt.concurrent.engine
        ));
        let again = rt.load(Path::new(test_programs::HELLO)).unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(again.component.engine(), &rt.sync.engine));
    }

    /// A stored source (never changed in place) is loaded by the digest its
    /// first load recorded: the file is not read again, in this process or
    /// the next, and each engine's artifact is found where a plain load
    /// would find it.
    #[test]
    fn stored_sources_are_loaded_by_their_recorded_digest_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let settings = || EngineSettings {
            cache_dir: Some(dir.path().join("cache")),
            max_instances: 4,
            ..EngineSettings::default()
        };
        let src = dir.path().join("blob");
        let bytes = std::fs::read(test_programs::HELLO).unwrap();
        std::fs::write(&src, &bytes).unwrap();
        let rt = Runtime::new(settings()).unwrap();
        assert!(!rt.is_cached_stored(&src));
        let first = rt.load_stored(&src).unwrap();
        assert_eq!(first.cache, CacheOutcome::Miss);

        // Garbage of the same size in its place shows it is not read.
        std::fs::write(&src, vec![0u8; bytes.len()]).unwrap();
        let rt = Runtime::new(settings()).unwrap();
        assert!(rt.is_cached_stored(&src));
        let again = rt.load_stored(&src).unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert_eq!(again.digest, first.digest);
        assert_eq!(again.source_kind, Kind::Component);
        // On the engine a plain load picks for it (it copies its little
        // data in, where instances are pooled).
        let expected = rt.copied.as_ref().unwrap_or(&rt.sync);
        assert!(Engine::same(again.component.engine(), &expected.engine));
        let pre = rt.link(&again.component).unwrap();
        let mut instance = store(again.component.engine());
        futures::executor::block_on(pre.instantiate_async(&mut instance)).unwrap();
        // A plain load reads it, and refuses it.
        assert!(rt.load(&src).is_err());
        // A file of another size is not taken for the one recorded.
        std::fs::write(&src, b"\0asm, then not WebAssembly").unwrap();
        assert!(rt.load_stored(&src).is_err());
        assert!(!rt.is_cached_stored(&src));

        // Artifact gone: compiled from the file again.
        std::fs::write(&src, &bytes).unwrap();
        let cache = rt.cache.as_ref().unwrap();
        for slot in rt.slots() {
            cache.remove(&component_key(&first.digest, slot));
        }
        assert_eq!(rt.load_stored(&src).unwrap().cache, CacheOutcome::Miss);

        // One that runs on demand (more table elements than a pool slot
        // holds) is found on that engine again.
        if rt.on_demand.is_none() {
            return;
        }
        let big = dir.path().join("big.wat");
        std::fs::write(
            &big,
            r#"(component (core module (table 30000 funcref)) (core instance (instantiate 0)))"#,
        )
        .unwrap();
        assert_eq!(rt.load_stored(&big).unwrap().cache, CacheOutcome::Miss);
        let rt = Runtime::new(settings()).unwrap();
        let (on_demand, _) = rt.on_demand.as_ref().unwrap();
        let again = rt.load_stored(&big).unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(again.component.engine(), &on_demand.engine));
    }

    /// A stored source's artifact verified ahead of its load is not hashed
    /// again by the load; a damaged one is found and rebuilt.
    #[test]
    fn a_stored_source_verified_ahead_is_not_verified_again_by_its_load() {
        let dir = tempfile::tempdir().unwrap();
        let settings = || EngineSettings {
            cache_dir: Some(dir.path().join("cache")),
            ..EngineSettings::for_command()
        };
        let src = dir.path().join("blob");
        std::fs::copy(test_programs::HELLO, &src).unwrap();
        let first = Runtime::new(settings()).unwrap().load_stored(&src).unwrap();
        let entry = |rt: &Runtime| {
            rt.cache
                .as_ref()
                .unwrap()
                .path_for(&component_key(&first.digest, &rt.sync))
        };
        // Damaged in place after the check, its time put back: the load
        // trusts the check (a damage after it is what the identity misses).
        let damage = |path: &Path| {
            let modified = std::fs::metadata(path).unwrap().modified().unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            let len = f.metadata().unwrap().len();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"\xff", len - 41).unwrap();
            f.set_modified(modified).unwrap();
        };
        let rt = Runtime::new(settings()).unwrap();
        rt.verify_stored(&src);
        damage(&entry(&rt));
        assert_eq!(rt.load_stored(&src).unwrap().cache, CacheOutcome::Hit);
        // Without the check ahead, the load finds the damage and rebuilds.
        let rt = Runtime::new(settings()).unwrap();
        let loaded = rt.load_stored(&src).unwrap();
        assert!(
            matches!(loaded.cache, CacheOutcome::Rebuilt(_) | CacheOutcome::Miss),
            "{:?}",
            loaded.cache
        );
        // And a check ahead of a damaged entry removes it.
        damage(&entry(&rt));
        let rt = Runtime::new(settings()).unwrap();
        rt.verify_stored(&src);
        assert!(!entry(&rt).exists());
        assert_eq!(rt.load_stored(&src).unwrap().cache, CacheOutcome::Miss);
    }

    /// A component whose memories start with little data is copied in even
    /// where the cache holds its artifact for the image engine (compiled
    /// before copying existed, or under another bound): by a plain load and
    /// by a stored source's recorded digest.
    #[test]
    fn an_artifact_of_the_image_engine_does_not_keep_a_small_component_from_copying() {
        let dir = tempfile::tempdir().unwrap();
        let settings = || EngineSettings {
            cache_dir: Some(dir.path().join("cache")),
            max_instances: 4,
            ..EngineSettings::default()
        };
        let rt = Runtime::new(settings()).unwrap();
        let Some(copied) = &rt.copied else {
            eprintln!("no instance pool on this machine: nothing is copied in");
            return;
        };
        let bytes = std::fs::read(test_programs::HELLO).unwrap();
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let cache = rt.cache.as_ref().unwrap();
        let image = Component::new(&rt.sync.engine, &bytes).unwrap();
        let put_image = || {
            cache
                .put(
                    &component_key(&digest, &rt.sync),
                    &image.serialize().unwrap(),
                )
                .unwrap()
        };
        put_image();
        let loaded = rt.load(Path::new(test_programs::HELLO)).unwrap();
        assert!(Engine::same(loaded.component.engine(), &copied.engine));
        assert_eq!(loaded.cache, CacheOutcome::Miss);

        // A stored source recorded when only the image artifact existed.
        let src = dir.path().join("blob");
        std::fs::write(&src, &bytes).unwrap();
        cache.remove(&component_key(&digest, copied));
        put_image();
        let data = wasmops_component::initial_data_bytes(&bytes).unwrap();
        cache.record_source(&src, &digest, Kind::Component, data);
        let rt = Runtime::new(settings()).unwrap();
        // Not counted as compiled, so a node's start compiles it then
        // rather than on its first request.
        assert!(!rt.is_cached_stored(&src));
        let stored = rt.load_stored(&src).unwrap();
        let copied = &rt.copied.as_ref().unwrap().engine;
        assert!(Engine::same(stored.component.engine(), copied));
        assert_eq!(stored.cache, CacheOutcome::Miss);
        let again = rt.load_stored(&src).unwrap();
        assert!(Engine::same(again.component.engine(), copied));
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(rt.is_cached_stored(&src));
    }

    #[test]
    fn a_component_too_large_for_the_pool_runs_on_demand_and_is_found_there_again() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(EngineSettings {
            cache_dir: Some(dir.path().to_owned()),
            max_instances: 4,
            ..EngineSettings::default()
        })
        .unwrap();
        let Some((on_demand, _)) = &rt.on_demand else {
            eprintln!("no instance pool on this machine: nothing to fall back from");
            return;
        };
        // More table elements than a pool slot holds (20,000).
        let big =
            br#"(component (core module (table 30000 funcref)) (core instance (instantiate 0)))"#;
        let path = Path::new("big-table.wat");
        let loaded = rt.load_bytes(path, big).unwrap();
        assert!(Engine::same(loaded.component.engine(), &on_demand.engine));
        assert_eq!(loaded.cache, CacheOutcome::Miss);
        let linker = rt.linker_for(loaded.component.engine()).unwrap();
        let pre = linker.instantiate_pre(&loaded.component).unwrap();
        let mut store = store(loaded.component.engine());
        pre.instantiate(&mut store).unwrap();
        // Only the artifact that runs is kept, and found again at once.
        assert_eq!(artifacts(dir.path()), 1);
        let again = rt.load_bytes(path, big).unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(again.component.engine(), &on_demand.engine));
        // A component that fits stays pooled.
        let small = rt
            .load_bytes(path, br#"(component (core module (table 10 funcref)))"#)
            .unwrap();
        assert!(!Engine::same(small.component.engine(), &on_demand.engine));
        // Three memories fit a slot each, but exceed the pool's share per
        // instance: on demand too, and only that artifact is kept.
        let before = artifacts(dir.path());
        let three = rt
            .load_bytes(
                Path::new("three-memories.wat"),
                br#"(component
                    (core module $m (memory 1))
                    (core instance (instantiate $m))
                    (core instance (instantiate $m))
                    (core instance (instantiate $m)))"#,
            )
            .unwrap();
        assert!(Engine::same(three.component.engine(), &on_demand.engine));
        assert_eq!(artifacts(dir.path()), before + 1);

        // A memory that starts above the memory limit cannot run anywhere:
        // refused at load, saying which limit to raise.
        let err = rt
            .load_bytes(
                Path::new("big-memory.wat"),
                br#"(component (core module (memory 4096)) (core instance (instantiate 0)))"#,
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("big-memory.wat: "), "{err}");
        assert!(err.contains("--max-memory"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn memories_with_little_data_are_copied_in_and_images_kept_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = || EngineSettings {
            cache_dir: Some(dir.path().to_owned()),
            max_instances: 4,
            ..EngineSettings::default()
        };
        let rt = Runtime::new(settings()).unwrap();
        let Some(copied) = &rt.copied else {
            eprintln!("no instance pool on this machine: one engine for all");
            return;
        };
        let run = |rt: &Runtime, loaded: &Loaded, expect: &[u8]| {
            let linker = rt.linker_for(loaded.component.engine()).unwrap();
            let pre = linker.instantiate_pre(&loaded.component).unwrap();
            let mut store = store(loaded.component.engine());
            // Async calls: the store's epoch callback yields.
            futures::executor::block_on(async {
                let instance = pre.instantiate_async(&mut store).await.unwrap();
                let read = instance
                    .get_typed_func::<(u32,), (u32,)>(&mut store, "read")
                    .unwrap();
                for (at, byte) in expect.iter().enumerate() {
                    let (got,) = read.call_async(&mut store, (at as u32,)).await.unwrap();
                    assert_eq!(got, u32::from(*byte), "byte {at}");
                }
                // Written over: the next instance, maybe in this slot,
                // must start from the data again.
                let scribble = instance
                    .get_typed_func::<(), ()>(&mut store, "scribble")
                    .unwrap();
                scribble.call_async(&mut store, ()).await.unwrap();
                let (got,) = read.call_async(&mut store, (0,)).await.unwrap();
                assert_eq!(got, 0x21);
            });
        };
        let component = |data: &str| {
            format!(
                r#"(component
                    (core module $m
                        (memory (export "memory") 2)
                        (data (i32.const 16) "{data}")
                        (func (export "read") (param i32) (result i32)
                            (i32.load8_u offset=16 (local.get 0)))
                        (func (export "scribble")
                            (memory.fill (i32.const 16) (i32.const 0x21) (i32.const 64))))
                    (core instance $i (instantiate $m))
                    (func (export "read") (param "at" u32) (result u32)
                        (canon lift (core func $i "read")))
                    (func (export "scribble") (canon lift (core func $i "scribble"))))"#
            )
        };
        let small = component("little data");
        let loaded = rt
            .load_bytes(Path::new("small.wat"), small.as_bytes())
            .unwrap();
        assert!(Engine::same(loaded.component.engine(), &copied.engine));
        run(&rt, &loaded, b"little data");
        run(&rt, &loaded, b"little data");
        // More data than is worth copying per instance: a memory image.
        let large_data = "x".repeat(crate::engine::COPY_INIT_MAX_DATA as usize + 1);
        let large = component(&large_data);
        let loaded = rt
            .load_bytes(Path::new("large.wat"), large.as_bytes())
            .unwrap();
        assert!(Engine::same(loaded.component.engine(), &rt.sync.engine));
        run(&rt, &loaded, &large_data.as_bytes()[..64]);
        // Each found again on its engine, by its artifact.
        drop(rt);
        let rt = Runtime::new(settings()).unwrap();
        let again = rt
            .load_bytes(Path::new("small.wat"), small.as_bytes())
            .unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(
            again.component.engine(),
            &rt.copied.as_ref().unwrap().engine
        ));
        run(&rt, &again, b"little data");
        let again = rt
            .load_bytes(Path::new("large.wat"), large.as_bytes())
            .unwrap();
        assert_eq!(again.cache, CacheOutcome::Hit);
        assert!(Engine::same(again.component.engine(), &rt.sync.engine));
        assert_eq!(artifacts(dir.path()), 2);
    }
}
