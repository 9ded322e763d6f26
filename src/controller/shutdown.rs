//! Controlled shutdown (reference §4), both sides.
//!
//! Broker side, [`controlled_shutdown`]: before a broker stops serving it asks the active
//! controller (found through `/controller`, itself included) to move leadership away, and keeps
//! asking until nothing is left or the retries run out.
//!
//! Controller side, [`Controller::on_controlled_shutdown`]: the broker joins the shutting-down
//! set (never chosen as a leader again while it is there), partitions it leads get the
//! ControlledShutdown election, partitions it follows get StopReplica(delete=false) and its
//! replica goes Offline; the reply lists the partitions it still leads.
//!
//! The request handler awaits the controller's event loop through a oneshot, so the broker's
//! shutdown path never runs controller code itself: a controller shutting itself down answers
//! its own request from its still-running loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{BrokerId, ControlledShutdownRequest};
use tokio::sync::oneshot;

use super::context::{PartitionState, ReplicaState};
use super::election::Strategy;
use super::event_loop::Controller;
use super::request_batch::RequestBatch;
use super::{ControllerHandle, Event};
use crate::common::TopicPartition;
use crate::config::KafkaConfig;
use crate::protocol::client::{BrokerConnection, ClientError};
use crate::zk::{ZkError, ZkHandle};

/// The version the broker sends (2.8's latest; the handler serves 0–3).
const CONTROLLED_SHUTDOWN_VERSION: i16 = 3;

/// Why the controller refused a controlled shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    #[error("this broker is not the active controller")]
    NotController,
    #[error("the broker is not registered")]
    BrokerNotAvailable,
    #[error("the request's broker epoch is older than the broker's registration")]
    StaleBrokerEpoch,
}

/// What the controller answers: the partitions the broker still leads, or why it refused.
pub type ShutdownOutcome = Result<Vec<TopicPartition>, ShutdownError>;

/// Where the controller sends a controlled shutdown's outcome. Clone because events are cloned
/// for retries; the first answer wins. Dropping every clone unanswered reads as NOT_CONTROLLER
/// (the event was discarded because this broker is not, or no longer, the controller).
#[derive(Clone)]
pub struct ShutdownReply(Arc<Mutex<Option<oneshot::Sender<ShutdownOutcome>>>>);

impl ShutdownReply {
    fn new() -> (Self, oneshot::Receiver<ShutdownOutcome>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    fn send(&self, outcome: ShutdownOutcome) {
        let tx = match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(tx) = tx {
            // The requester may have timed out and gone; nothing to do then.
            let _ = tx.send(outcome);
        }
    }
}

impl std::fmt::Debug for ShutdownReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownReply")
    }
}

impl ControllerHandle {
    /// Runs a controlled shutdown of `broker` on the controller's event loop and waits for it.
    /// `broker_epoch` -1 means unknown (requests before v2), which is accepted.
    pub async fn controlled_shutdown(&self, broker: i32, broker_epoch: i64) -> ShutdownOutcome {
        if !self.is_active() {
            return Err(ShutdownError::NotController);
        }
        let (reply, rx) = ShutdownReply::new();
        self.notify(Event::ControlledShutdown {
            broker,
            broker_epoch,
            reply,
        });
        rx.await.unwrap_or(Err(ShutdownError::NotController))
    }
}

impl Controller {
    /// Kafka's `doControlledShutdown`. ZooKeeper failures propagate so the event loop retries
    /// the whole event (every step is idempotent); the reply stays pending meanwhile.
    pub(super) async fn on_controlled_shutdown(
        &mut self,
        broker: i32,
        broker_epoch: i64,
        reply: ShutdownReply,
    ) -> Result<(), ZkError> {
        if !self.ctx.is_live(broker) {
            tracing::warn!(
                broker,
                "controlled shutdown of a broker that is not registered"
            );
            reply.send(Err(ShutdownError::BrokerNotAvailable));
            return Ok(());
        }
        let cached = self.ctx.broker_epoch(broker);
        if broker_epoch != -1 && broker_epoch < cached {
            tracing::info!(
                broker,
                broker_epoch,
                current = cached,
                "controlled shutdown from an old broker epoch"
            );
            reply.send(Err(ShutdownError::StaleBrokerEpoch));
            return Ok(());
        }
        self.ctx.shutting_down.insert(broker);
        tracing::info!(broker, broker_epoch, shutting_down = ?self.ctx.shutting_down,
            "controlled shutdown");

        // Single-replica partitions have nowhere to go; deleting topics are left to deletion.
        let (led, followed): (Vec<TopicPartition>, Vec<TopicPartition>) = self
            .ctx
            .partitions_on_broker(broker)
            .into_iter()
            .filter(|tp| {
                self.ctx.replicas(tp).len() > 1
                    && self.ctx.leadership.contains_key(tp)
                    && !self.ctx.is_deleting(&tp.topic)
            })
            .partition(|tp| {
                self.ctx
                    .leadership
                    .get(tp)
                    .is_some_and(|l| l.state.leader == broker)
            });
        let (applied, result) = self.move_off_broker(broker, &led, followed).await;
        result?;

        let remaining = self.replicated_partitions_led_by(broker);
        tracing::info!(
            broker,
            led = led.len(),
            remaining = remaining.len(),
            "controlled shutdown step done"
        );
        // Answer once every broker has applied the new leadership, so the broker exits only
        // when clients can already find the new leaders. Bounded by half the socket timeout,
        // which also bounds the shutting-down broker's wait for this answer.
        let wait = Duration::from_millis(self.config.controller_socket_timeout_ms / 2);
        tokio::spawn(async move {
            if tokio::time::timeout(wait, applied).await.is_err() {
                tracing::warn!(
                    broker,
                    "controlled shutdown: brokers did not confirm the new leaders in time"
                );
            }
            reply.send(Ok(remaining));
        });
        Ok(())
    }

    /// Leadership of `led` moves to other in-sync replicas (one batched election) and the
    /// broker's replicas of them stop; those requests go out at once, and the returned receiver
    /// resolves when every broker has applied them. Then the broker's replicas of partitions led
    /// elsewhere go Offline (StopReplica, out of the ISR), sent as a second batch nobody waits
    /// for: the broker may exit once clients can find the new leaders.
    async fn move_off_broker(
        &mut self,
        broker: i32,
        led: &[TopicPartition],
        followed: Vec<TopicPartition>,
    ) -> (oneshot::Receiver<()>, Result<(), ZkError>) {
        let zk = self.zk.get();
        let mut batch = RequestBatch::new();
        let applied = batch.when_applied();
        let moved = async {
            let failed = self
                .partition_sm(&zk, &mut batch)
                .handle_state_changes(led, PartitionState::Online, Strategy::ControlledShutdown)
                .await?;
            // The replicas it just gave up leading stop at once (the election left them out of
            // the ISR, so no write is needed), so it never follows the new leader back into
            // the ISR before it exits.
            let moved: Vec<(TopicPartition, i32)> = led
                .iter()
                .filter(|tp| !failed.contains_key(*tp))
                .map(|tp| (tp.clone(), broker))
                .collect();
            self.replica_sm(&zk, &mut batch)
                .handle_state_changes(&moved, ReplicaState::Offline)
                .await
        }
        .await;
        // Whatever was decided (and written) before a failure must still reach the brokers.
        self.send(batch.take());
        if moved.is_err() {
            return (applied, moved);
        }
        let replicas: Vec<(TopicPartition, i32)> =
            followed.into_iter().map(|tp| (tp, broker)).collect();
        let result = self
            .replica_sm(&zk, &mut batch)
            .handle_state_changes(&replicas, ReplicaState::Offline)
            .await;
        self.send(batch);
        (applied, result)
    }

    fn replicated_partitions_led_by(&self, broker: i32) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                l.state.leader == broker
                    && self.ctx.replicas(tp).len() > 1
                    && !self.ctx.is_deleting(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        out.sort();
        out
    }
}

/// Why one controlled-shutdown attempt did not finish the job.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("no controller is registered")]
    NoController,
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("controller {0} has no registration or endpoint")]
    ControllerUnreachable(i32),
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
    #[error("request to controller {controller}: {source}")]
    Request {
        controller: i32,
        source: ClientError,
    },
    #[error("controller {controller} answered error code {code}")]
    Rejected { controller: i32, code: i16 },
    #[error("controller {controller} left {count} partitions led by this broker")]
    Remaining { controller: i32, count: usize },
}

/// Broker side of controlled shutdown (Kafka's `KafkaServer.controlledShutdown`): asks the
/// controller to move leadership off this broker, up to `controlled.shutdown.max.retries`
/// attempts `controlled.shutdown.retry.backoff.ms` apart. Returns whether it succeeded; on
/// failure the broker shuts down anyway and the controller falls back to broker-failure
/// handling when the registration disappears.
pub async fn controlled_shutdown(config: &KafkaConfig, zk: &ZkHandle, broker_epoch: i64) -> bool {
    let broker = config.broker_id;
    let attempts = config.controlled_shutdown_max_retries;
    let backoff = Duration::from_millis(config.controlled_shutdown_retry_backoff_ms);
    // ZooKeeper reads have no deadline of their own; one attempt as a whole gets the socket
    // timeout, so an unreachable ZooKeeper cannot hold the shutdown up indefinitely.
    let attempt_timeout = Duration::from_millis(config.controller_socket_timeout_ms);
    for attempt in 1..=attempts {
        let outcome = tokio::time::timeout(attempt_timeout, attempt_once(config, zk, broker_epoch))
            .await
            .unwrap_or(Err(AttemptError::TimedOut(attempt_timeout)));
        match outcome {
            Ok(controller) => {
                tracing::info!(
                    broker,
                    broker_epoch,
                    controller,
                    attempt,
                    "controlled shutdown succeeded"
                );
                return true;
            }
            Err(e) => {
                tracing::warn!(broker, broker_epoch, attempt, attempts, error = %e,
                    "controlled shutdown attempt failed");
            }
        }
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
        }
    }
    tracing::warn!(
        broker,
        attempts,
        "controlled shutdown did not complete; shutting down without it"
    );
    false
}

/// One request to the current controller; `Ok(controller id)` when it left nothing behind.
async fn attempt_once(
    config: &KafkaConfig,
    zk: &ZkHandle,
    broker_epoch: i64,
) -> Result<i32, AttemptError> {
    let client = zk.get();
    let controller = client
        .get_controller_id()
        .await?
        .ok_or(AttemptError::NoController)?;
    let (info, _) = client
        .get_broker(controller)
        .await?
        .ok_or(AttemptError::ControllerUnreachable(controller))?;
    // The controller's control-plane listener, else its inter-broker one (Kafka's choice).
    let addr = info
        .address(config.controller_listener_name())
        .ok_or(AttemptError::ControllerUnreachable(controller))?;
    let timeout = Duration::from_millis(config.controller_socket_timeout_ms);
    let client_id = format!("gregor-broker-{}-shutdown", config.broker_id);
    let request_error = |source| AttemptError::Request { controller, source };
    let mut conn = BrokerConnection::connect(&addr, &client_id, timeout)
        .await
        .map_err(request_error)?;
    let mut req = ControlledShutdownRequest::default();
    req.broker_id = BrokerId(config.broker_id);
    req.broker_epoch = broker_epoch;
    let resp = conn
        .send(&req, CONTROLLED_SHUTDOWN_VERSION)
        .await
        .map_err(request_error)?;
    if resp.error_code != 0 {
        return Err(AttemptError::Rejected {
            controller,
            code: resp.error_code,
        });
    }
    if !resp.remaining_partitions.is_empty() {
        for p in &resp.remaining_partitions {
            tracing::info!(topic = %p.topic_name.0.as_str(), partition = p.partition_index,
                controller, "partition still led by this broker");
        }
        return Err(AttemptError::Remaining {
            controller,
            count: resp.remaining_partitions.len(),
        });
    }
    Ok(controller)
}
