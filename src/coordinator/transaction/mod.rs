//! The transaction coordinator (Kafka's `kafka.coordinator.transaction`): the producer ids
//! InitProducerId hands out ([`producer_ids`]), and for transactional ids the state kept in
//! `__transaction_state` ([`records`]) and moved through Kafka's state machine
//! ([`metadata`]) by InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
//! ([`coordinator`]); the markers that end a transaction on each partition ([`markers`]);
//! and loading a partition of `__transaction_state` when this broker becomes its leader
//! ([`loader`]). Failures are [`TxnError`]s; `api` turns them into Kafka error codes.

pub mod coordinator;
pub mod error;
pub mod loader;
pub mod markers;
pub mod metadata;
pub mod producer_ids;
pub mod records;

#[cfg(test)]
mod metadata_tests;

pub use coordinator::{TransactionCoordinator, TxnCoordinatorConfig};
pub use error::TxnError;
pub use producer_ids::{ProducerIdError, ProducerIdManager};
pub use records::TRANSACTION_STATE_TOPIC;
