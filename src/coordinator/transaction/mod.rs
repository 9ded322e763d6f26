//! The transaction coordinator's side of the broker (Kafka's `kafka.coordinator.transaction`).
//! Today it holds the producer-id manager that InitProducerId draws from for idempotent
//! producers ([`producer_ids`]); transactional ids, `__transaction_state` and markers come
//! with transactions.

pub mod producer_ids;

pub use producer_ids::{ProducerIdError, ProducerIdManager};
