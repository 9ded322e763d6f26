//! gregor: a Kafka-compatible message broker coordinated by ZooKeeper, as classic (2.x) Kafka was.
//!
//! Module map (dependencies point down; `protocol` is a leaf anyone may use). The full map, the
//! data paths, the tasks a broker runs and the import rule (checked by `import_rule_tests`) are in
//! `docs/architecture.md`.
//!
//! - [`network`]: listeners, one task per connection, framing, size limits, idle close; calls `api`.
//! - [`api`]: the dispatcher on `ApiKey`, one file per API family; the only place where errors become
//!   Kafka error codes. Calls `replication`, `controller` (admin requests go through ZooKeeper),
//!   `metadata`.
//! - [`replication`]: `ReplicaManager` and `Partition` (leader/follower role, ISR, high watermark,
//!   leader epoch), delayed produce/fetch. Calls `log` and `zk`.
//! - [`controller`]: election on `/controller`, the single event loop, partition and replica state
//!   machines, and the channel that sends LeaderAndIsr/UpdateMetadata/StopReplica to brokers over the
//!   Kafka protocol. Calls `zk` and `protocol::client`.
//! - [`coordinator`]: the group coordinator: the group state machine, committed offsets, both stored
//!   in `__consumer_offsets` through `replication`.
//! - [`metadata`]: the broker's cache of live brokers, topics, leaders and ISR fed by UpdateMetadata.
//! - [`log`]: the LogManager: segments, indexes, checkpoints, recovery, retention. No ZooKeeper, no
//!   sockets.
//! - [`zk`]: the ZooKeeper client: session, chroot, one typed function per znode, epoch-fenced writes.
//! - [`protocol`]: frames, request headers, the supported-version table, the RecordBatch v2 view and a
//!   small Kafka-protocol client used for broker-to-broker requests.
//! - [`common`]: the leaf vocabulary (`TopicPartition`, leader sentinels, `Endpoint`).
//! - [`util`]: leaf helpers (clock, poison-ignoring locks, the open-file limit).
//! - [`config`], [`server`]: `server.properties` and the composition root (ordered start-up, reverse
//!   shutdown).

pub mod api;
pub mod cli;
pub mod common;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod log;
pub mod metadata;
pub mod network;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod util;
pub mod zk;

#[cfg(test)]
mod import_rule_tests;
