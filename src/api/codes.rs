//! The one place where domain errors become Kafka error codes: each domain error maps to one of
//! kafka-protocol's [`ResponseError`]s (Kafka's `Errors.java`), whose number goes on the wire.
//! Domain modules never see the numbers.

use kafka_protocol::ResponseError;

use crate::controller::admin::AdminError;
use crate::controller::ShutdownError;
use crate::coordinator::transaction::TxnError;
use crate::coordinator::GroupError;
use crate::log::{ProducerError, ValidationError};
use crate::replication::ReplicaError;

/// Kafka's `Errors.NONE`: the one code [`ResponseError`], which lists failures only, lacks.
pub(crate) const NONE: i16 = 0;

/// A partition-level failure.
pub(crate) fn replica(e: &ReplicaError) -> ResponseError {
    match e {
        ReplicaError::NotLeader => ResponseError::NotLeaderOrFollower,
        ReplicaError::UnknownTopicOrPartition | ReplicaError::UnknownReplica(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        ReplicaError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        ReplicaError::CorruptMessage(_) => ResponseError::CorruptMessage,
        ReplicaError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        ReplicaError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
        ReplicaError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        ReplicaError::RequestTimedOut => ResponseError::RequestTimedOut,
        ReplicaError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        ReplicaError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        ReplicaError::Storage(_) => ResponseError::KafkaStorageError,
        ReplicaError::Unavailable(_) => ResponseError::UnknownServerError,
        ReplicaError::Rejected(v) => match v {
            ValidationError::InvalidRecord(_) => ResponseError::InvalidRecord,
            ValidationError::Corrupt(_) => ResponseError::CorruptMessage,
            ValidationError::Records {
                invalid_timestamp: true,
                ..
            } => ResponseError::InvalidTimestamp,
            ValidationError::Records { .. } => ResponseError::InvalidRecord,
            ValidationError::TooLarge(_) => ResponseError::MessageTooLarge,
        },
        ReplicaError::Producer(p) => match p {
            ProducerError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
            ProducerError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
            ProducerError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            ProducerError::CoordinatorFenced(_) => ResponseError::TransactionCoordinatorFenced,
        },
    }
}

/// Kafka's error code for a partition-level failure.
pub(crate) fn error_code(e: &ReplicaError) -> i16 {
    replica(e).code()
}

/// A group coordinator failure.
pub(crate) fn group(e: GroupError) -> ResponseError {
    match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::InvalidCommitOffsetSize => ResponseError::InvalidCommitOffsetSize,
        GroupError::StoreFailed => ResponseError::UnknownServerError,
        GroupError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
    }
}

/// The code of a group outcome: [`NONE`] when there is no error.
pub(crate) fn group_code(error: Option<GroupError>) -> i16 {
    error.map_or(NONE, |e| group(e).code())
}

/// A topic creation or deletion failure.
/// A transaction coordinator failure. `fenced_as_epoch`: the request version predates
/// PRODUCER_FENCED (KIP-588), so the client is told INVALID_PRODUCER_EPOCH instead.
pub(crate) fn txn(e: TxnError, fenced_as_epoch: bool) -> ResponseError {
    match e {
        TxnError::InvalidRequest => ResponseError::InvalidRequest,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::ProducerFenced if fenced_as_epoch => ResponseError::InvalidProducerEpoch,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::StoreFailed => ResponseError::UnknownServerError,
    }
}

pub(crate) fn admin(e: &AdminError) -> ResponseError {
    match e {
        AdminError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        AdminError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        AdminError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        AdminError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        AdminError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        AdminError::InvalidConfig(_) => ResponseError::InvalidConfig,
        AdminError::InvalidRequest(_) => ResponseError::InvalidRequest,
        AdminError::Zk(_) => ResponseError::UnknownServerError,
    }
}

/// A refused controlled shutdown.
pub(crate) fn shutdown(e: ShutdownError) -> ResponseError {
    match e {
        ShutdownError::NotController => ResponseError::NotController,
        ShutdownError::BrokerNotAvailable => ResponseError::BrokerNotAvailable,
        ShutdownError::StaleBrokerEpoch => ResponseError::StaleBrokerEpoch,
    }
}

/// The expected numbers come from the error table of Kafka's protocol guide
/// (<https://kafka.apache.org/protocol#protocol_error_codes>), not from kafka-protocol.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::ZkError;

    #[test]
    fn replica_errors_carry_kafkas_codes() {
        let cases = [
            (ReplicaError::NotLeader, 6),
            (ReplicaError::UnknownTopicOrPartition, 3),
            (ReplicaError::UnknownReplica(2), 3),
            (ReplicaError::NotEnoughReplicas { isr: 1, min_isr: 2 }, 19),
            (
                ReplicaError::NotEnoughReplicasAfterAppend { isr: 1, min_isr: 2 },
                20,
            ),
            (ReplicaError::CorruptMessage("crc".into()), 2),
            (ReplicaError::MessageTooLarge { size: 2, max: 1 }, 10),
            (
                ReplicaError::RecordListTooLarge {
                    size: 2,
                    segment_bytes: 1,
                },
                18,
            ),
            (
                ReplicaError::OffsetOutOfRange {
                    offset: 9,
                    log_start: 0,
                    log_end: 5,
                },
                1,
            ),
            (ReplicaError::RequestTimedOut, 7),
            (ReplicaError::FencedLeaderEpoch, 74),
            (ReplicaError::UnknownLeaderEpoch, 75),
            (ReplicaError::Storage("disk".into()), 56),
            (
                ReplicaError::Rejected(ValidationError::InvalidRecord("count".into())),
                87,
            ),
            (
                ReplicaError::Rejected(ValidationError::Corrupt("gzip".into())),
                2,
            ),
            (
                ReplicaError::Rejected(ValidationError::Records {
                    invalid_timestamp: true,
                    message: "ts".into(),
                    errors: vec![],
                }),
                32,
            ),
            (
                ReplicaError::Rejected(ValidationError::Records {
                    invalid_timestamp: false,
                    message: "key".into(),
                    errors: vec![],
                }),
                87,
            ),
            (
                ReplicaError::Rejected(ValidationError::TooLarge("big".into())),
                10,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(error_code(&e), code, "{e}");
        }
    }

    #[test]
    fn group_errors_carry_kafkas_codes() {
        let cases = [
            (GroupError::InvalidGroupId, 24),
            (GroupError::NotCoordinator, 16),
            (GroupError::LoadInProgress, 14),
            (GroupError::CoordinatorNotAvailable, 15),
            (GroupError::InvalidSessionTimeout, 26),
            (GroupError::UnknownMemberId, 25),
            (GroupError::IllegalGeneration, 22),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::GroupMaxSizeReached, 81),
            (GroupError::MemberIdRequired, 79),
            (GroupError::OffsetMetadataTooLarge, 12),
            (GroupError::InvalidCommitOffsetSize, 28),
            (GroupError::StoreFailed, -1),
        ];
        for (e, code) in cases {
            assert_eq!(group(e).code(), code, "{e}");
            assert_eq!(group_code(Some(e)), code, "{e}");
        }
        assert_eq!(group_code(None), 0);
    }

    #[test]
    fn transaction_errors_carry_kafkas_codes() {
        let cases = [
            (TxnError::InvalidRequest, 42),
            (TxnError::InvalidTransactionTimeout, 50),
            (TxnError::NotCoordinator, 16),
            (TxnError::LoadInProgress, 14),
            (TxnError::CoordinatorNotAvailable, 15),
            (TxnError::ConcurrentTransactions, 51),
            (TxnError::ProducerFenced, 90),
            (TxnError::InvalidProducerIdMapping, 49),
            (TxnError::InvalidTxnState, 48),
            (TxnError::StoreFailed, -1),
        ];
        for (e, code) in cases {
            assert_eq!(txn(e, false).code(), code, "{e}");
        }
        assert_eq!(txn(TxnError::ProducerFenced, true).code(), 47);
    }

    #[test]
    fn admin_errors_carry_kafkas_codes() {
        let s = String::new;
        let cases = [
            (AdminError::TopicExists(s()), 36),
            (AdminError::InvalidTopic(s()), 17),
            (AdminError::InvalidPartitions(s()), 37),
            (AdminError::InvalidReplicationFactor(s()), 38),
            (AdminError::InvalidReplicaAssignment(s()), 39),
            (AdminError::InvalidConfig(s()), 40),
            (AdminError::InvalidRequest(s()), 42),
            (AdminError::Zk(ZkError::NoNode { path: "/x".into() }), -1),
        ];
        for (e, code) in cases {
            assert_eq!(admin(&e).code(), code, "{e}");
        }
    }

    #[test]
    fn shutdown_refusals_carry_kafkas_codes() {
        let cases = [
            (ShutdownError::NotController, 41),
            (ShutdownError::BrokerNotAvailable, 8),
            (ShutdownError::StaleBrokerEpoch, 77),
        ];
        for (e, code) in cases {
            assert_eq!(shutdown(e).code(), code, "{e}");
        }
    }
}
