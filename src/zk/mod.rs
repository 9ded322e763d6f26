//! ZooKeeper layer: Kafka 2.8's znode layout, broker registration, controller election with
//! epoch fencing, topics, partition state and the controller's notification queues
//! (reference `kafka-classic.md` §1–§2).
//!
//! Depends only on `zookeeper-client`; nothing above it knows about znodes or JSON.
//!
//! - `log_dir_events`: KIP-112 log-directory failure notifications.
//! - `producer_ids`: blocks of producer ids from `/latest_producer_id_block`.
//! - `client`: [`KafkaZkClient`] session set-up (chroot bootstrap), session loss, start-up znodes.
//! - `brokers`, `controller`, `topics`, `admin`: the typed API, by znode family.
//! - `ops`: shared low-level reads/writes and the controller-epoch–checked multi.
//! - [`data`] / [`paths`]: pure payload codecs and path builders.
//! - `watch`: one-shot [`Watch`]es; `error`: [`ZkError`].
//!
//! The tests that need a real ZooKeeper live in `integration-tests/tests/zk/`.

mod admin;
mod brokers;
mod client;
mod consumers;
mod controller;
pub mod data;
mod error;
mod handle;
mod log_dir_events;
mod ops;
pub mod paths;
mod producer_ids;
mod states;
mod topics;
mod watch;

pub use client::KafkaZkClient;
pub use data::{
    BrokerInfo, EndPoint, LeaderIsrAndControllerEpoch, ProducerIdBlock, SecurityProtocol,
    TopicAssignment,
};
pub use error::{CodecError, ZkError};
pub use handle::ZkHandle;
pub use producer_ids::PRODUCER_ID_BLOCK_SIZE;
pub use states::{VersionedState, WriteOutcome};
pub use watch::{SessionLoss, Watch, WatchEvent, WatchEventKind};
