//! Partition log storage, byte-compatible with Kafka 2.8's on-disk format.
//!
//! - [`LogManager`]: data directories, log lifecycle, background retention/flush/checkpoints,
//!   clean shutdown (`manager`), and `meta.properties` / `.lock` (`meta`).
//! - [`Log`]: one partition: appends, reads, flushes (`partition_log`); truncation and
//!   retention (`retention`).
//! - Segments (`segment`) with their `.index` (`index`) and `.timeindex` (`time_index`),
//!   both fixed-entry indexes (`fixed_index`) over a memory-mapped file (`mmap_file`);
//!   header scanning (`scan`); startup recovery (`recovery`).
//! - [`LeaderEpochCache`] (`epoch_cache`) and the text checkpoint files (`checkpoint`).
//! - [`LogConfig`] with Kafka's topic-level overrides (`config`), [`LogError`] (`error`).
//! - Kafka's `LogValidator` for batches from clients (`validator`).
//! - Producer state (Kafka's `ProducerStateManager`): sequence and epoch checks, duplicate
//!   detection for idempotent producers (`producer_state`), the `.snapshot` files
//!   (`producer_snapshot`) and the rebuild from snapshots plus the log (`producer_rebuild`).
//! - Log-directory failure (KIP-112): the first I/O error in a data directory takes it offline
//!   (`dir_failure`).
//!
//! Batches are stored and served as opaque RecordBatch v2 bytes. Only the leader's append of a
//! client batch walks its records (to validate them); every other path reads the 61-byte header.

mod checkpoint;
mod config;
mod deleter;
mod dir_failure;
mod epoch_cache;
mod error;
mod fixed_index;
mod index;
mod log_read;
mod manager;
mod meta;
mod mmap_file;
mod partition_log;
mod producer_rebuild;
mod producer_snapshot;
mod producer_state;
mod recovery;
mod retention;
mod scan;
mod segment;
mod tail_positions;
mod time_index;
mod txn_index;
mod txn_log;
mod types;
mod validator;

#[cfg(test)]
mod dir_failure_tests;
#[cfg(test)]
mod fd_tests;
#[cfg(test)]
mod name_tests;
#[cfg(test)]
mod producer_state_tests;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod validator_tests;

pub use checkpoint::batched_sync;
pub use config::{BackgroundIntervals, CompressionType, LogConfig, TimestampType};
pub use dir_failure::{DataDir, FailureReceiver};
pub use epoch_cache::{EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use error::LogError;
pub use manager::{HighWatermarkFn, LogManager, CLEAN_SHUTDOWN_FILE};
pub use partition_log::{Log, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
pub use producer_state::{BatchMetadata, Origin as AppendOrigin, ProducerEntry, ProducerError};
pub use txn_index::AbortedTxn;
pub use types::{AppendInfo, ReadInfo, TopicPartition};
pub use validator::{RecordError, ValidationError};
