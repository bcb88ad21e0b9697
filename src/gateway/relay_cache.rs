//! The relay's cache: verified files by SHA-256 under `relay_cache`, shared by every job
//! of the gateway, bounded in size (`relay_cache_max_mb`): when a new file makes it
//! larger, the least recently used files go (a file's modification time is its last use:
//! set when it is stored and each time it is served).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct RelayCache {
    dir: PathBuf,
    max_bytes: u64,
    /// One lock per file being downloaded.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RelayCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> RelayCache {
        RelayCache {
            dir,
            max_bytes,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    pub(crate) fn lock(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inflight
            .lock()
            .unwrap()
            .entry(sha256.to_string())
            .or_default()
            .clone()
    }

    /// Marks a cached file used now (it goes last).
    pub fn touch(&self, path: &Path) {
        if let Ok(f) = std::fs::File::options().append(true).open(path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Removes the least recently used files until the cache fits its bound, never
    /// `keep` (the file just stored).  Returns the bytes removed.
    pub fn evict(&self, keep: &Path) -> u64 {
        let mut files = cached_files(&self.dir);
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort_by_key(|f| f.2);
        let mut removed = 0;
        for (path, size, _) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
                removed += size;
            }
        }
        removed
    }
}

/// Every complete cached file: (path, size, last use).
fn cached_files(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let Ok(subdirs) = std::fs::read_dir(dir) else {
        return out;
    };
    for sub in subdirs.flatten() {
        let Ok(entries) = std::fs::read_dir(sub.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "part") {
                continue;
            }
            if let Some(m) = e.metadata().ok().filter(|m| m.is_file()) {
                let used = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((path, m.len(), used));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_files_go_when_the_cache_is_over_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RelayCache::new(dir.path().to_path_buf(), 2500);
        let put = |name: &str, age_s: u64| {
            let sha = format!("{name}{}", "0".repeat(63));
            let p = cache.path(&sha);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![0u8; 1000]).unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            std::fs::File::options()
                .append(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            p
        };
        let (a, b, c) = (put("a", 300), put("b", 200), put("c", 100));
        cache.touch(&a); // used just now: `b` is now the oldest
        assert_eq!(cache.evict(&c), 1000);
        assert!(a.exists() && !b.exists() && c.exists());
        let d = put("d", 1000); // the file just stored is never removed, even if oldest
        assert_eq!(cache.evict(&d), 1000);
        assert!(!c.exists() && a.exists() && d.exists());
    }
}
