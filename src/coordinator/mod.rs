//! The group coordinator on `__consumer_offsets` (Kafka's `GroupCoordinator` and
//! `GroupMetadataManager`, reference §7). For now the pure pieces: the group state machine.

pub mod group;
pub mod membership;
