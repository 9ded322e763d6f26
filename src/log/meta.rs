//! Data-directory identity and ownership: `meta.properties` (which broker and cluster the
//! data belongs to) and the `.lock` file.
//!
//! Locking: `.lock` is created, held open and `flock`ed exclusively (as Kafka's `FileLock`), so a
//! second broker process pointed at the same directory is refused; the directory is also
//! registered in a process-wide set, which refuses a second `LogManager` in the same process
//! (tests, embedded brokers) with the same clear error.

use super::checkpoint::write_atomic;
use super::error::{IoContext, LogError};
use crate::util::sync::lock;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub(crate) const META_PROPERTIES: &str = "meta.properties";
pub(crate) const LOCK_FILE: &str = ".lock";

fn locked_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static LOCKED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    LOCKED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Ownership of one data directory for the lifetime of a `LogManager`.
pub(crate) struct DirLock {
    canonical: PathBuf,
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LogError> {
        let canonical = dir.canonicalize().at(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::DirLocked {
                    path: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LogError::io(&path, e)),
        }
        if !lock(locked_dirs()).insert(canonical.clone()) {
            return Err(LogError::DirLocked {
                path: dir.to_path_buf(),
            });
        }
        Ok(DirLock {
            canonical,
            _file: file,
        })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        lock(locked_dirs()).remove(&self.canonical);
    }
}

fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Verifies `<dir>/meta.properties` belongs to this broker and cluster, writing it when
/// absent or missing either id.
pub(crate) fn check_or_write(dir: &Path, broker_id: i32, cluster_id: &str) -> Result<(), LogError> {
    let path = dir.join(META_PROPERTIES);
    let existing = match std::fs::read(&path) {
        Ok(bytes) => Some(parse_properties(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(LogError::io(&path, e)),
    };
    if let Some(props) = &existing {
        let mismatch =
            |field: &'static str, expected: String, found: &str| LogError::MetaMismatch {
                path: path.clone(),
                field,
                expected,
                found: found.to_string(),
            };
        if let Some(version) = props.get("version") {
            if version != "0" {
                return Err(mismatch("version", "0".into(), version));
            }
        }
        if let Some(found) = props.get("broker.id") {
            if found.parse::<i32>().ok() != Some(broker_id) {
                return Err(mismatch("broker.id", broker_id.to_string(), found));
            }
        }
        if let Some(found) = props.get("cluster.id") {
            if found != cluster_id {
                return Err(mismatch("cluster.id", cluster_id.to_string(), found));
            }
        }
        if props.contains_key("broker.id") && props.contains_key("cluster.id") {
            return Ok(());
        }
    }
    let text = format!(
        "#\n#Written by gregor\ncluster.id={cluster_id}\nversion=0\nbroker.id={broker_id}\n"
    );
    write_atomic(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_then_verifies_and_refuses_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        check_or_write(dir.path(), 1, "abc").unwrap();
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES)).unwrap();
        assert!(
            text.contains("version=0")
                && text.contains("broker.id=1")
                && text.contains("cluster.id=abc")
        );
        check_or_write(dir.path(), 1, "abc").unwrap();
        match check_or_write(dir.path(), 2, "abc") {
            Err(LogError::MetaMismatch {
                field,
                expected,
                found,
                ..
            }) => {
                assert_eq!(
                    (field, expected.as_str(), found.as_str()),
                    ("broker.id", "2", "1")
                )
            }
            other => panic!("{other:?}"),
        }
        match check_or_write(dir.path(), 1, "xyz") {
            Err(e @ LogError::MetaMismatch { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("meta.properties") && msg.contains("abc") && msg.contains("xyz"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lock_is_exclusive_within_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(LogError::DirLocked { .. })
        ));
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
