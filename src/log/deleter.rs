//! Delayed file deletion (`file.delete.delay.ms`). Segments removed by retention or
//! truncation, and whole partition directories removed by StopReplica, are renamed first
//! (`.deleted` / `-delete`) and removed later, so readers still holding open descriptors finish
//! undisturbed. One lazily started worker thread serves the whole process, which bounds the
//! cost of many concurrent deletions to one sleeping thread.

use crate::util::sync::lock;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Job {
    due: Instant,
    paths: Vec<PathBuf>,
}

static WORKER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Removes a file or a directory tree, ignoring "already gone".
pub(crate) fn remove_now(path: &Path) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => tracing::debug!(path = %path.display(), "deleted"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "failed to delete"),
    }
}

fn run(rx: mpsc::Receiver<Job>) {
    // Min-heap on due time; the sequence number keeps jobs with equal due times distinct.
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut jobs = std::collections::HashMap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while let Some(Reverse((due, id))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            if let Some(paths) = jobs.remove(&id) {
                let paths: Vec<PathBuf> = paths;
                paths.iter().for_each(|p| remove_now(p));
            }
        }
        let received = match heap.peek() {
            Some(Reverse((due, _))) => rx.recv_timeout(due.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(job) => {
                seq += 1;
                heap.push(Reverse((job.due, seq)));
                jobs.insert(seq, job.paths);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Deletes `paths` after `delay_ms`; immediately when the delay is zero or the worker thread
/// cannot be started.
pub(crate) fn schedule(paths: Vec<PathBuf>, delay_ms: u64) {
    if paths.is_empty() {
        return;
    }
    if delay_ms == 0 {
        paths.iter().for_each(|p| remove_now(p));
        return;
    }
    let due = Instant::now()
        .checked_add(Duration::from_millis(delay_ms))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let worker = WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("log-deleter".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the log deleter thread; deleting inline");
        }
        Mutex::new(tx)
    });
    let sent = lock(worker).send(Job { due, paths });
    if let Err(mpsc::SendError(job)) = sent {
        job.paths.iter().for_each(|p| remove_now(p));
    }
}
