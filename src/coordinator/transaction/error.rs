//! What the transaction coordinator answers when it cannot do what a request asks, one variant
//! per outcome a transactional client acts on (Kafka's `TransactionCoordinator` error paths).
//! Only `api` knows each one's Kafka error code, and which request versions see
//! PRODUCER_FENCED as INVALID_PRODUCER_EPOCH.

use crate::replication::ReplicaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transactional id is empty")]
    InvalidRequest,
    #[error("the transaction timeout is outside (0, transaction.max.timeout.ms]")]
    InvalidTransactionTimeout,
    #[error("this broker does not coordinate the transactional id")]
    NotCoordinator,
    #[error("the transactional id's partition of __transaction_state is still loading")]
    LoadInProgress,
    #[error("the transaction coordinator cannot serve the request right now")]
    CoordinatorNotAvailable,
    #[error("a previous transition of this transactional id is still being completed")]
    ConcurrentTransactions,
    #[error("a newer producer with the same transactional id has been initialised")]
    ProducerFenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("the request is not valid in the transaction's current state")]
    InvalidTxnState,
    #[error("writing the transaction state failed in a way the client cannot act on")]
    StoreFailed,
}

impl TxnError {
    /// Kafka's mapping of a failed `__transaction_state` append.
    pub fn from_append(e: &ReplicaError) -> TxnError {
        use ReplicaError as R;
        match e {
            R::UnknownTopicOrPartition
            | R::NotEnoughReplicas { .. }
            | R::NotEnoughReplicasAfterAppend { .. }
            | R::RequestTimedOut => TxnError::CoordinatorNotAvailable,
            R::NotLeader | R::FencedLeaderEpoch | R::UnknownLeaderEpoch => TxnError::NotCoordinator,
            _ => TxnError::StoreFailed,
        }
    }
}
