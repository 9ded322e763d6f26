//! The ReplicationManager: partitions hosted by this broker, their roles and high watermarks, the
//! produce and fetch paths, the controller requests that change roles (LeaderAndIsr,
//! StopReplica), follower fetchers, and the leader's ISR management. Mirrors Kafka's
//! `ReplicaManager`, `Partition` and `ReplicaFetcherThread`.
//!
//! Errors here are domain values ([`ReplicaError`]); `api` turns them into Kafka error codes.

mod fetch_path;
mod fetcher;
mod isr;
mod manager;
mod offline;
mod partition;
mod purgatory;
pub mod rules;
mod session_handler;

pub use fetch_path::{FetchFailure, FetchParams, FetchPartitionRequest, FetchPartitionResult};
pub use fetcher::FetcherConfig;
pub use manager::{
    ProducePartitionResult, ReplicaManager, ReplicationConfig, StaleControllerEpoch,
};
pub use partition::{
    FetchIsolation, IsrProposal, IsrWriteOutcome, LeaderAndIsrState, Partition, PartitionRead,
};

use crate::log::{LogError, ProducerError, ValidationError};

/// Why a partition-level operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplicaError {
    #[error("this broker is not the leader for the partition")]
    NotLeader,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("replica {0} is not assigned to this partition")]
    UnknownReplica(i32),
    #[error("ISR has {isr} members, fewer than min.insync.replicas={min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: i32 },
    #[error("written, but the ISR shrank to {isr}, below min.insync.replicas={min_isr}")]
    NotEnoughReplicasAfterAppend { isr: usize, min_isr: i32 },
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes={max}")]
    MessageTooLarge { size: usize, max: i32 },
    #[error("record batch of {size} bytes is larger than segment.bytes={segment_bytes}")]
    RecordListTooLarge { size: usize, segment_bytes: u64 },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("request timed out waiting for replication")]
    RequestTimedOut,
    #[error("the request's leader epoch is older than the partition's")]
    FencedLeaderEpoch,
    #[error("the request's leader epoch is newer than the partition's")]
    UnknownLeaderEpoch,
    #[error("storage error: {0}")]
    Storage(String),
    /// Something this broker needs for the partition (its topic config from ZooKeeper) could
    /// not be had just now; not a storage fault, so the controller does not take the replica
    /// offline over it.
    #[error("{0}")]
    Unavailable(String),
    /// A client batch refused by the log validator (nothing was written).
    #[error("{0}")]
    Rejected(ValidationError),
    /// An idempotent or transactional batch refused by the producer state (nothing written).
    #[error("{0}")]
    Producer(ProducerError),
}

impl ReplicaError {
    /// Maps a log failure to the partition-level error a client can act on.
    pub fn from_log(e: LogError) -> Self {
        match e {
            LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
                ..
            } => ReplicaError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            },
            LogError::MessageTooLarge { size, max } => ReplicaError::MessageTooLarge { size, max },
            LogError::InvalidBatch(b) => ReplicaError::CorruptMessage(b.to_string()),
            LogError::Rejected(v) => ReplicaError::Rejected(v),
            LogError::Producer(p) => ReplicaError::Producer(p),
            LogError::BatchLargerThanSegment {
                size,
                segment_bytes,
            } => ReplicaError::RecordListTooLarge {
                size,
                segment_bytes,
            },
            other => ReplicaError::Storage(other.to_string()),
        }
    }
}
