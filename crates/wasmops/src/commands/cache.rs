//! `wasmops cache list|prune`: the compiled-artifact cache and the pull
//! store, both caches: whatever is pruned is rebuilt or fetched again when
//! needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::options::{nonzero_duration, nonzero_size};

/// The artifact cache (compiled components) and the pull store (what
/// `pull`, `run`, `serve` and `up` fetched from registries).
#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheSub,
}

#[derive(Subcommand, Debug)]
pub enum CacheSub {
    /// Where the caches are, how many entries and how much space.
    List {
        #[command(flatten)]
        format: crate::options::FormatArg,
    },
    /// Remove entries not used for --older-than, then the least recently
    /// used until each cache is under --max-size.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove what was not used for this long (e.g. `168h`, `30m`).
    #[arg(long, value_name = "DURATION", value_parser = nonzero_duration)]
    pub older_than: Option<Duration>,
    /// Keep each cache under this size, least recently used out first.
    #[arg(long, value_name = "SIZE", value_parser = nonzero_size)]
    pub max_size: Option<u64>,
    /// Remove everything.
    #[arg(long, conflicts_with_all = ["older_than", "max_size"])]
    pub all: bool,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One cached file: path, size, last use (access time, else modification).
struct Entry {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

fn entries(dir: &Path, pick: &dyn Fn(&Path) -> bool) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && pick(&e.path()) {
                let used = m
                    .accessed()
                    .ok()
                    .into_iter()
                    .chain(m.modified().ok())
                    .max()
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(Entry {
                    path: e.path(),
                    size: m.len(),
                    used,
                });
            }
        }
    }
    out
}

/// A cache: its name, its directory, which files are its entries.
type Cache = (&'static str, PathBuf, fn(&Path) -> bool);

/// The two caches.
fn caches() -> Vec<Cache> {
    let mut v: Vec<Cache> = Vec::new();
    if let Some(d) = wasmops_runtime::cache::ArtifactCache::default_dir() {
        v.push(("artifacts", d, |p| {
            p.extension().is_some_and(|e| e == "cwasm")
        }));
    }
    // Blobs only: the store's index is rewritten to what remains.
    v.push(("pulls", wasmops_oci::default_store_dir(), |p| {
        p.components().any(|c| c.as_os_str() == "blobs")
    }));
    v
}

fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Drops from the store's `index.json` the manifests whose blob is gone.
fn repair_index(store: &Path) {
    let index = store.join("index.json");
    let Ok(text) = std::fs::read_to_string(&index) else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    if let Some(list) = v["manifests"].as_array_mut() {
        list.retain(|m| {
            m["digest"]
                .as_str()
                .and_then(|d| d.strip_prefix("sha256:"))
                .is_some_and(|hex| store.join("blobs/sha256").join(hex).is_file())
        });
    }
    let tmp = store.join("index.json.tmp");
    if std::fs::write(&tmp, v.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, &index);
    }
}

pub fn run(args: &CacheArgs) -> anyhow::Result<i32> {
    match &args.command {
        CacheSub::List { format } => {
            let mut rows = Vec::new();
            for (name, dir, pick) in caches() {
                let e = entries(&dir, &pick);
                let size: u64 = e.iter().map(|e| e.size).sum();
                rows.push((name, dir, e.len(), size));
            }
            if format.json() {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, d, c, s)| json!({"cache": n, "dir": d, "entries": c, "bytes": s}))
                    .collect();
                println!("{}", json!({ "caches": v }));
            } else {
                for (n, d, c, s) in &rows {
                    println!("{n:<10} {:>10}  {c:>6} entries  {}", human(*s), d.display());
                }
            }
            Ok(0)
        }
        CacheSub::Prune(p) => {
            if !p.all && p.older_than.is_none() && p.max_size.is_none() {
                anyhow::bail!(
                    "say what to prune: --older-than DURATION, --max-size SIZE, or --all"
                );
            }
            let now = SystemTime::now();
            for (name, dir, pick) in caches() {
                let mut e = entries(&dir, &pick);
                // Least recently used first.
                e.sort_by_key(|e| e.used);
                let mut size: u64 = e.iter().map(|e| e.size).sum();
                let (mut removed, mut freed) = (0usize, 0u64);
                for entry in &e {
                    let old = p.older_than.is_some_and(|age| {
                        now.duration_since(entry.used).unwrap_or_default() >= age
                    });
                    let over = p.max_size.is_some_and(|max| size > max);
                    if !(p.all || old || over) {
                        continue;
                    }
                    if p.dry_run || std::fs::remove_file(&entry.path).is_ok() {
                        removed += 1;
                        freed += entry.size;
                        size -= entry.size;
                    }
                }
                if name == "pulls" && removed > 0 && !p.dry_run {
                    repair_index(&dir);
                }
                println!(
                    "{name}: {} {removed} entries ({}), {} left",
                    if p.dry_run { "would remove" } else { "removed" },
                    human(freed),
                    human(size)
                );
            }
            Ok(0)
        }
    }
}
