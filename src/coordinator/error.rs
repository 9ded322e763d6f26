//! What the group coordinator answers when it cannot do what a request asks: one variant per
//! outcome a group client acts on (Kafka's `GroupCoordinator` and `GroupMetadataManager` error
//! paths). Only `api` knows the Kafka error code of each.

use crate::log::ProducerError;
use crate::replication::ReplicaError;

/// A group request's failure, per group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) or per
/// partition (OffsetCommit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("this broker does not coordinate the group")]
    NotCoordinator,
    #[error("the group's offsets partition is still loading")]
    LoadInProgress,
    #[error("the coordinator cannot serve the group right now")]
    CoordinatorNotAvailable,
    #[error(
        "the session timeout is outside group.min.session.timeout.ms..group.max.session.timeout.ms"
    )]
    InvalidSessionTimeout,
    #[error("the group does not know this member")]
    UnknownMemberId,
    #[error("the request's generation is not the group's")]
    IllegalGeneration,
    #[error("the group is rebalancing; the member must rejoin")]
    RebalanceInProgress,
    #[error("the member's protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the group already has group.max.size members")]
    GroupMaxSizeReached,
    #[error("a new member must join again with the member id it was given")]
    MemberIdRequired,
    #[error("the offset metadata is longer than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the offset commit is too large to append")]
    InvalidCommitOffsetSize,
    #[error("appending to __consumer_offsets failed in a way the client cannot act on")]
    StoreFailed,
    #[error("a transactional offset commit from a fenced producer epoch")]
    InvalidProducerEpoch,
}

/// Why an append to `__consumer_offsets` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("the append returned no result for its partition")]
    NoResult,
}

impl GroupError {
    /// What a SyncGroup gets when the leader's group record could not be appended (Kafka's
    /// `storeGroup` mapping): the client looks the coordinator up again, or gives up.
    pub fn from_group_store(e: &AppendError) -> Self {
        use ReplicaError as R;
        match e {
            AppendError::Replica(
                R::UnknownTopicOrPartition
                | R::UnknownReplica(_)
                | R::NotEnoughReplicas { .. }
                | R::NotEnoughReplicasAfterAppend { .. }
                | R::RequestTimedOut,
            ) => GroupError::CoordinatorNotAvailable,
            AppendError::Replica(R::NotLeader | R::Storage(_)) => GroupError::NotCoordinator,
            _ => GroupError::StoreFailed,
        }
    }

    /// What an OffsetCommit gets when its records could not be appended (Kafka's
    /// `storeOffsets` mapping): as [`GroupError::from_group_store`], except that a batch too
    /// large to append is the commit's own fault.
    pub fn from_offset_store(e: &AppendError) -> Self {
        match e {
            AppendError::Replica(
                ReplicaError::MessageTooLarge { .. } | ReplicaError::RecordListTooLarge { .. },
            ) => GroupError::InvalidCommitOffsetSize,
            AppendError::Replica(ReplicaError::Producer(ProducerError::InvalidProducerEpoch(
                _,
            ))) => GroupError::InvalidProducerEpoch,
            other => GroupError::from_group_store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(e: ReplicaError) -> AppendError {
        AppendError::Replica(e)
    }

    #[test]
    fn group_store_failures_follow_kafka() {
        let unavailable = [
            ReplicaError::UnknownTopicOrPartition,
            ReplicaError::UnknownReplica(3),
            ReplicaError::NotEnoughReplicas { isr: 1, min_isr: 2 },
            ReplicaError::NotEnoughReplicasAfterAppend { isr: 1, min_isr: 2 },
            ReplicaError::RequestTimedOut,
        ];
        for e in unavailable {
            assert_eq!(
                GroupError::from_group_store(&replica(e.clone())),
                GroupError::CoordinatorNotAvailable,
                "{e}"
            );
        }
        for e in [
            ReplicaError::NotLeader,
            ReplicaError::Storage("disk".into()),
        ] {
            assert_eq!(
                GroupError::from_group_store(&replica(e.clone())),
                GroupError::NotCoordinator,
                "{e}"
            );
        }
        let too_large = ReplicaError::MessageTooLarge { size: 10, max: 1 };
        for e in [
            replica(too_large),
            replica(ReplicaError::CorruptMessage("crc".into())),
            AppendError::NoResult,
        ] {
            assert_eq!(
                GroupError::from_group_store(&e),
                GroupError::StoreFailed,
                "{e}"
            );
        }
    }

    #[test]
    fn offset_store_failures_follow_kafka() {
        let too_large = [
            ReplicaError::MessageTooLarge { size: 10, max: 1 },
            ReplicaError::RecordListTooLarge {
                size: 10,
                segment_bytes: 1,
            },
        ];
        for e in too_large {
            assert_eq!(
                GroupError::from_offset_store(&replica(e.clone())),
                GroupError::InvalidCommitOffsetSize,
                "{e}"
            );
        }
        assert_eq!(
            GroupError::from_offset_store(&replica(ReplicaError::NotLeader)),
            GroupError::NotCoordinator
        );
        assert_eq!(
            GroupError::from_offset_store(&replica(ReplicaError::RequestTimedOut)),
            GroupError::CoordinatorNotAvailable
        );
        assert_eq!(
            GroupError::from_offset_store(&AppendError::NoResult),
            GroupError::StoreFailed
        );
    }
}
