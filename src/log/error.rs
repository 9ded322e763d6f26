//! The storage layer's error type. Each variant carries the values a caller (or an operator
//! reading the log line) needs, so request handlers can map them to Kafka error codes
//! without string matching.

use super::producer_state::ProducerError;
use super::validator::ValidationError;
use crate::protocol::batch::BatchError;
use crate::util::fd_limit;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An open failed because the process (EMFILE) or the system (ENFILE) has no descriptor
    /// left; `advice` names the limit and how to raise it.
    #[error("cannot open {path}: {source}; {advice}")]
    OutOfDescriptors {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        advice: String,
    },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("corrupt checkpoint file {path}: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: String },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A client batch that Kafka's `LogValidator` rules refuse.
    #[error("{0}")]
    Rejected(#[from] ValidationError),
    /// A producer's batch that its sequence, epoch or transaction state refuses.
    #[error("{0}")]
    Producer(#[from] ProducerError),
    #[error("offset {offset} is out of range for {topic_partition} (log start {log_start}, log end {log_end})")]
    OffsetOutOfRange {
        topic_partition: String,
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: i32 },
    #[error("batch of {size} bytes exceeds segment.bytes {segment_bytes}")]
    BatchLargerThanSegment { size: usize, segment_bytes: u64 },
    #[error("append to {topic_partition} expected first offset {expected} but got {found}")]
    OffsetMismatch {
        topic_partition: String,
        expected: i64,
        found: i64,
    },
    #[error("{path}: {field} is {found} on disk but this broker was started with {expected}")]
    MetaMismatch {
        path: PathBuf,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("log directory {path} is already in use by this process")]
    DirLocked { path: PathBuf },
    #[error("log for {topic_partition} is closed or deleted")]
    Closed { topic_partition: String },
    #[error("invalid argument for {topic_partition}: {reason}")]
    InvalidArgument {
        topic_partition: String,
        reason: String,
    },
    #[error("no log directories configured")]
    NoLogDirs,
    /// The partition's data directory went offline after an I/O error (KIP-112); nothing in
    /// it is read or written until the broker restarts.
    #[error("log directory {dir} of {topic_partition} is offline")]
    DirOffline {
        topic_partition: String,
        dir: PathBuf,
    },
    /// Every data directory is offline; no log can be created.
    #[error("every log directory is offline")]
    AllDirsOffline,
}

impl LogError {
    /// Wraps an I/O error with the path it happened on; every I/O call in this module goes
    /// through here so no error reaches the operator without a file name, and running out of
    /// descriptors is reported with the limit to raise. Any other I/O error takes the data
    /// directory holding `path` offline before this returns (see `dir_failure`).
    pub(crate) fn io(path: &Path, source: std::io::Error) -> LogError {
        super::dir_failure::report(path, &source);
        let path = path.to_path_buf();
        match fd_limit::describe_exhaustion(&source) {
            Some(advice) => LogError::OutOfDescriptors {
                path,
                source,
                advice,
            },
            None => LogError::Io { path, source },
        }
    }
}

/// Extension for attaching a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T, LogError> {
        self.map_err(|e| LogError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_names_the_limit_and_other_errors_stay_io() {
        let path = Path::new("/data/t-0/leader-epoch-checkpoint.tmp");
        let e = LogError::io(path, std::io::Error::from_raw_os_error(libc::EMFILE));
        let text = e.to_string();
        assert!(matches!(e, LogError::OutOfDescriptors { .. }), "{e:?}");
        assert!(
            text.contains("leader-epoch-checkpoint.tmp") && text.contains("ulimit -n"),
            "{text}"
        );
        let e = LogError::io(path, std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, LogError::Io { .. }), "{e:?}");
    }
}
