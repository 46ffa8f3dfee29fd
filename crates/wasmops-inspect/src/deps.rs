//! The `cargo auditable` dependency list (`.dep-v0` custom section).

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;

use crate::report::{Dependency, DependencyKind};

/// The largest decompressed dependency list accepted, in bytes (8 MiB).
pub const MAX_DEP_LIST_SIZE: u64 = 8 * 1024 * 1024;

/// The name of the custom section written by `cargo auditable`.
pub(crate) const DEP_SECTION: &str = ".dep-v0";

/// Why a `.dep-v0` section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepListError {
    /// The payload is not a valid zlib stream.
    #[error("dependency list is not valid zlib data: {0}")]
    Zlib(String),
    /// The payload inflates to more than [`MAX_DEP_LIST_SIZE`] bytes.
    #[error("dependency list inflates to more than {} bytes", MAX_DEP_LIST_SIZE)]
    TooLarge,
    /// The inflated payload is not the expected JSON.
    #[error("dependency list is not valid JSON: {0}")]
    Json(String),
    /// A dependency index points outside the package list.
    #[error("dependency list package {package} refers to missing package index {index}")]
    BadIndex {
        /// Index of the package with the bad reference.
        package: usize,
        /// The out-of-range index.
        index: usize,
    },
}

#[derive(Deserialize)]
struct RawList {
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    kind: Option<DependencyKind>,
    #[serde(default)]
    dependencies: Vec<usize>,
    #[serde(default)]
    root: bool,
}

/// Decodes the payload of a `.dep-v0` section: zlib-compressed JSON of the
/// form `{"packages":[{"name","version","source","kind","dependencies","root"}]}`.
///
/// The decompressed size is capped at [`MAX_DEP_LIST_SIZE`].
pub fn decode_dep_list(payload: &[u8]) -> Result<Vec<Dependency>, DepListError> {
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(payload);
    decoder
        .take(MAX_DEP_LIST_SIZE + 1)
        .read_to_end(&mut json)
        .map_err(|e| DepListError::Zlib(e.to_string()))?;
    if json.len() as u64 > MAX_DEP_LIST_SIZE {
        return Err(DepListError::TooLarge);
    }
    let raw: RawList =
        serde_json::from_slice(&json).map_err(|e| DepListError::Json(e.to_string()))?;
    let count = raw.packages.len();
    let mut out = Vec::with_capacity(count);
    for (i, p) in raw.packages.into_iter().enumerate() {
        if let Some(&bad) = p.dependencies.iter().find(|&&d| d >= count) {
            return Err(DepListError::BadIndex {
                package: i,
                index: bad,
            });
        }
        let mut dependencies = p.dependencies;
        dependencies.sort_unstable();
        dependencies.dedup();
        out.push(Dependency {
            name: p.name,
            version: p.version,
            source: p.source.unwrap_or_default(),
            kind: p.kind.unwrap_or(DependencyKind::Runtime),
            root: p.root,
            dependencies,
        });
    }
    Ok(out)
}

/// Merges the package list of one section into `all`, deduplicating by
/// name, version and source, and remapping dependency indices.
pub(crate) fn merge_into(all: &mut Vec<Dependency>, list: Vec<Dependency>) {
    let mut index: HashMap<(String, String, String), usize> = all
        .iter()
        .enumerate()
        .map(|(i, d)| ((d.name.clone(), d.version.clone(), d.source.clone()), i))
        .collect();
    let mut map = Vec::with_capacity(list.len());
    for d in &list {
        let key = (d.name.clone(), d.version.clone(), d.source.clone());
        let idx = match index.get(&key) {
            Some(&i) => {
                if d.kind == DependencyKind::Runtime {
                    all[i].kind = DependencyKind::Runtime;
                }
                all[i].root |= d.root;
                i
            }
            None => {
                all.push(Dependency {
                    dependencies: Vec::new(),
                    ..d.clone()
                });
                index.insert(key, all.len() - 1);
                all.len() - 1
            }
        };
        map.push(idx);
    }
    for (local, d) in list.iter().enumerate() {
        let target = map[local];
        // Indices were checked by `decode_dep_list`; `get` keeps this total.
        let extra = d
            .dependencies
            .iter()
            .filter_map(|&dep| map.get(dep).copied());
        let deps = &mut all[target].dependencies;
        deps.extend(extra);
        deps.sort_unstable();
        deps.dedup();
    }
}
