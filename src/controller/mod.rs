//! The controller: election on `/controller`, one event loop fed by ZooKeeper watches, the
//! partition and replica state machines, and the channel to brokers (reference §2–§4).
//!
//! Every broker runs this module; the one that creates `/controller` (with the epoch bump in the
//! same multi-op) is active. ZooKeeper watches only enqueue [`Event`]s; the loop in `event_loop`
//! processes them one at a time, so the controller's state needs no locks. Kafka's parts each
//! have their own type: `event_loop` (KafkaController), `partition_sm` and `replica_sm` (the
//! state machines, working on batches with Kafka's valid-previous-state checks), `deletion`
//! (TopicDeletionManager), `election` (pure leader-choice functions), `request_batch` (one
//! request per broker and type per event) and `channel` (one sender task per broker). Every ZooKeeper write
//! it makes is fenced on the `/controller_epoch` version, and every request it sends carries its
//! epoch, so a zombie controller can neither change ZooKeeper nor move brokers.

pub mod admin;
mod channel;
mod context;
mod deletion;
mod election;
mod event_loop;
mod notifications;
mod partition_sm;
mod preferred;
mod replica_sm;
mod request_batch;
mod retry;
mod shutdown;

pub use shutdown::{controlled_shutdown, ShutdownError, ShutdownReply};

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::common::TopicPartition;
use crate::config::KafkaConfig;
use crate::zk::ZkHandle;

/// What the controller's event loop reacts to.
#[derive(Debug, Clone)]
pub enum Event {
    /// First election at start-up, and re-election on a new ZooKeeper session.
    Startup,
    /// `/controller` was created, changed or deleted.
    ControllerChange,
    /// Children of `/brokers/ids` changed.
    BrokerChange,
    /// Children of `/brokers/topics` changed.
    TopicChange,
    /// `/brokers/topics/<t>` changed (partitions added).
    PartitionModification(String),
    /// Children of `/admin/delete_topics` changed.
    TopicDeletion,
    /// Children of `/isr_change_notification` changed.
    IsrChangeNotification,
    /// A StopReplica(delete) completed on a broker: each partition with its error, if any.
    StopReplicaResponse {
        broker: i32,
        results: Vec<(TopicPartition, Option<String>)>,
    },
    /// Children of `/log_dir_event_notification` changed (a broker's log directory failed).
    LogDirEventNotification,
    /// A broker answered LeaderAndIsr with KAFKA_STORAGE_ERROR for these partitions: their
    /// replicas there are on a failed log directory.
    LeaderAndIsrStorageErrors {
        broker: i32,
        offline: Vec<TopicPartition>,
    },
    /// The ZooKeeper session expired: resign until the new session re-elects.
    SessionExpired,
    /// A broker asked for a controlled shutdown; the outcome goes back through `reply`.
    ControlledShutdown {
        broker: i32,
        broker_epoch: i64,
        reply: ShutdownReply,
    },
    /// `/admin/preferred_replica_election` was created, changed or deleted.
    PreferredReplicaElection,
    /// The periodic leader-imbalance check (`auto.leader.rebalance.enable`).
    AutoRebalance,
}

/// A cheap-clone view of the controller for the rest of the broker.
#[derive(Clone)]
pub struct ControllerHandle {
    active: Arc<AtomicBool>,
    epoch: Arc<AtomicI32>,
    events: mpsc::UnboundedSender<Event>,
}

impl ControllerHandle {
    /// Whether this broker is the active controller.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// The epoch under which this broker last became controller (0 if never).
    pub fn epoch(&self) -> i32 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Enqueues an event (the session manager uses this on expiry and on a new session).
    pub fn notify(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// Starts the controller's event loop and triggers the first election. The loop ends (resigning
/// if active) when `shutdown` turns true.
pub fn start(
    config: Arc<KafkaConfig>,
    zk: ZkHandle,
    shutdown: watch::Receiver<bool>,
) -> (ControllerHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ControllerHandle {
        active: Arc::new(AtomicBool::new(false)),
        epoch: Arc::new(AtomicI32::new(0)),
        events: tx.clone(),
    };
    let controller = event_loop::Controller::new(config, zk, handle.clone(), tx.clone());
    let _ = tx.send(Event::Startup);
    let task = tokio::spawn(controller.run(rx, shutdown));
    (handle, task)
}
