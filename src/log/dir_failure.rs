//! Log-directory failure (Kafka's `LogDirFailureChannel`, KIP-112): the first I/O error in a
//! data directory takes the whole directory offline, at once and for good (until a restart).
//!
//! Why a whole directory and why at once: after a failed write the segment may end in a torn
//! batch, and after a failed fsync Linux marks the dirty pages clean, so a retried fsync
//! "succeeds" over data the disk never got. Nothing written to that directory afterwards can be
//! trusted, so every log in it refuses further work from the moment the error is seen, before
//! the error even reaches the caller. The replica manager then takes the partitions offline,
//! tells the controller, and leadership moves to replicas on healthy directories.
//!
//! Every I/O error of the log layer is built by [`super::error::LogError::io`], which calls
//! [`report`]; that is how no write path can forget to report. The directories of every running
//! `LogManager` are registered here (a process may run several in tests), and the error's path
//! names the directory it happened in.
//!
//! Running out of file descriptors is not a directory fault (the disk is fine, and a client
//! opening connections could otherwise take every directory offline), so it is reported to
//! the caller only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::mpsc;

use crate::util::sync::{lock, read, write};

/// One data directory (an entry of `log.dirs`) and whether it is still usable.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    offline: AtomicBool,
    failures: mpsc::UnboundedSender<PathBuf>,
}

impl DataDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Takes the directory offline; the first call logs and notifies the failure channel.
    /// Returns whether this call did it.
    pub fn fail(&self, reason: &str) -> bool {
        if self.offline.swap(true, Ordering::AcqRel) {
            return false;
        }
        tracing::error!(dir = %self.path.display(), error = reason,
            "log directory is offline: every partition in it stops taking reads and writes");
        let _ = self.failures.send(self.path.clone());
        true
    }
}

/// The receiving end of directory failures, one per `LogManager` (Kafka's
/// `LogDirFailureChannel.takeNextOfflineLogDir`).
pub struct FailureReceiver(mpsc::UnboundedReceiver<PathBuf>);

impl FailureReceiver {
    /// The next directory taken offline; `None` once the log manager is gone.
    pub async fn next(&mut self) -> Option<PathBuf> {
        self.0.recv().await
    }
}

/// Creates the handles of a log manager's directories and registers them, so an I/O error on
/// any path below one of them takes it offline.
pub(crate) fn register(dirs: &[PathBuf]) -> (Vec<Arc<DataDir>>, Mutex<Option<FailureReceiver>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handles: Vec<Arc<DataDir>> = dirs
        .iter()
        .map(|path| {
            Arc::new(DataDir {
                path: path.clone(),
                offline: AtomicBool::new(false),
                failures: tx.clone(),
            })
        })
        .collect();
    let mut registry = write(&REGISTRY);
    registry.retain(|d| d.strong_count() > 0);
    registry.extend(handles.iter().map(Arc::downgrade));
    (handles, Mutex::new(Some(FailureReceiver(rx))))
}

/// Takes `rx` out of its slot (the replica manager's failure handler takes it once).
pub(crate) fn take(slot: &Mutex<Option<FailureReceiver>>) -> Option<FailureReceiver> {
    lock(slot).take()
}

static REGISTRY: RwLock<Vec<Weak<DataDir>>> = RwLock::new(Vec::new());

/// Called for every I/O error of the log layer: the registered directory holding `path`, if
/// any, goes offline. Descriptor exhaustion is left to the caller (see the module docs).
pub(crate) fn report(path: &Path, error: &std::io::Error) {
    if crate::util::fd_limit::describe_exhaustion(error).is_some() {
        return;
    }
    let dir = read(&REGISTRY)
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|d| path.starts_with(&d.path))
        .max_by_key(|d| d.path.as_os_str().len());
    if let Some(dir) = dir {
        dir.fail(&format!("I/O error on {}: {error}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_io_error_below_a_registered_dir_takes_it_offline_once() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("ab");
        let (dirs, rx) = register(&[a.clone(), b.clone()]);
        let mut rx = take(&rx).unwrap();
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        // "ab" shares the prefix string "a" but is not below it.
        report(&b.join("t-0/00000000000000000000.log"), &eio);
        assert!(!dirs[0].is_offline() && dirs[1].is_offline());
        report(&b.join("t-1/00000000000000000000.log"), &eio);
        assert_eq!(rx.next().await, Some(b.clone()));
        assert!(rx.0.try_recv().is_err(), "a directory is reported once");
        // Out of descriptors is not a disk fault.
        report(
            &a.join("t-0/x"),
            &std::io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert!(!dirs[0].is_offline());
        // A path outside every registered directory changes nothing.
        report(Path::new("/elsewhere/t-0/x"), &eio);
        assert!(!dirs[0].is_offline());
    }
}
