//! The counts on the device: one journal per sample, `DATA/counts/<SAMPLE>.journal`, read through a cache
//! that re-reads a journal only when its length or modification time changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::journal::{self, State};

/// Folder of the journals inside the data folder.
pub const COUNTS_DIR: &str = "counts";

/// Whether a sample ID is usable as a file name: 1 to 64 letters, digits, '.', '_' or '-', not starting
/// with '.'.
pub fn valid_sample(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// One journal's identity on disk, for the cache.
type Stamp = (u64, Option<SystemTime>);

/// The journals of a data folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    cache: Mutex<HashMap<String, (Stamp, Arc<State>)>>,
}

impl Store {
    /// The counts of data folder `data` (the folder is created).
    pub fn open(data: &Path) -> std::io::Result<Self> {
        let dir = data.join(COUNTS_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(Store {
            dir,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The journal of a sample.
    pub fn path(&self, sample: &str) -> PathBuf {
        self.dir.join(format!("{sample}.journal"))
    }

    /// Whether a sample has a journal.
    pub fn exists(&self, sample: &str) -> bool {
        self.path(sample).exists()
    }

    /// Every sample with a journal, newest first.
    pub fn samples(&self) -> Vec<String> {
        let mut v: Vec<(Option<SystemTime>, String)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sample = name.strip_suffix(".journal")?.to_string();
                valid_sample(&sample)
                    .then(|| (e.metadata().ok().and_then(|m| m.modified().ok()), sample))
            })
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// A sample's journal, replayed (from the cache when the file has not changed).
    pub fn state(&self, sample: &str) -> Result<Arc<State>, journal::JournalError> {
        let path = self.path(sample);
        let meta = std::fs::metadata(&path).map_err(|source| journal::JournalError::Io {
            path: path.clone(),
            source,
        })?;
        let stamp = (meta.len(), meta.modified().ok());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, st)) = cache.get(sample) {
            if *s == stamp {
                return Ok(Arc::clone(st));
            }
        }
        let st = Arc::new(journal::read(&path)?);
        cache.insert(sample.to_string(), (stamp, Arc::clone(&st)));
        Ok(st)
    }

    /// Forgets a sample's cached state (after writing to it).
    pub fn forget(&self, sample: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::valid_sample;

    #[test]
    fn sample_ids_are_file_names() {
        for ok in ["S1", "2026-12-02_a.b", &"x".repeat(64)] {
            assert!(valid_sample(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "ü",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(!valid_sample(bad), "{bad:?}");
        }
    }
}
