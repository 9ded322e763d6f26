//! The controller's channel to brokers (Kafka's `ControllerChannelManager`).
//!
//! One queue and one task per broker; strictly one request in flight, retried every 100 ms until
//! it succeeds or the broker is removed. Each broker's queue keeps the order the batch gave it
//! (LeaderAndIsr, then UpdateMetadata, then StopReplica). The controller reaches every broker
//! this way, itself included, over the Kafka protocol. Each request type has its own sender,
//! which knows its version and what to do with the answer.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{LeaderAndIsrRequest, StopReplicaRequest, UpdateMetadataRequest};
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Event;
use crate::common::TopicPartition;
use crate::protocol::client::{BrokerConnection, ClientError};

/// Versions the controller sends (IBP 2.4-IV1 level: grouped by topic, flexible, no topic ids).
const LEADER_AND_ISR_VERSION: i16 = 4;
const UPDATE_METADATA_VERSION: i16 = 6;
const STOP_REPLICA_VERSION: i16 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A request queued for one broker.
pub enum ControlRequest {
    /// Partitions answered KAFKA_STORAGE_ERROR are reported back as an event (KIP-112).
    LeaderAndIsr {
        request: LeaderAndIsrRequest,
        report_to: mpsc::UnboundedSender<Event>,
    },
    UpdateMetadata(UpdateMetadataRequest),
    /// Deletion progress needs the per-partition outcome, reported back as an event.
    StopReplica {
        request: StopReplicaRequest,
        report_to: Option<mpsc::UnboundedSender<Event>>,
    },
}

/// A request with an optional signal fired once the broker has answered it (whatever the
/// per-partition outcome), so a caller can wait until the brokers know what was decided.
struct Queued {
    request: ControlRequest,
    applied: Option<oneshot::Sender<()>>,
}

struct BrokerQueue {
    tx: mpsc::UnboundedSender<Queued>,
    task: JoinHandle<()>,
}

/// The per-broker senders of the active controller.
pub struct ChannelManager {
    controller_id: i32,
    timeout: Duration,
    queues: HashMap<i32, BrokerQueue>,
}

impl ChannelManager {
    pub fn new(controller_id: i32, timeout: Duration) -> Self {
        Self {
            controller_id,
            timeout,
            queues: HashMap::new(),
        }
    }

    /// Starts the sender for `broker` at `addr` ("host:port"), replacing any previous one.
    pub fn add_broker(&mut self, broker: i32, addr: String) {
        self.remove_broker(broker);
        let (tx, rx) = mpsc::unbounded_channel();
        let client_id = format!("gregor-controller-{}", self.controller_id);
        let task = tokio::spawn(sender_loop(broker, addr, client_id, self.timeout, rx));
        self.queues.insert(broker, BrokerQueue { tx, task });
    }

    /// Starts the sender for `broker` on its endpoint of `listener` (the control plane's, else
    /// the inter-broker listener, as Kafka's controller picks it). A broker that does not
    /// advertise it cannot be reached, which is logged.
    pub fn add_broker_on(&mut self, broker: i32, info: &crate::zk::BrokerInfo, listener: &str) {
        match info.address(listener) {
            Some(addr) => self.add_broker(broker, addr),
            None => tracing::error!(broker, listener,
                "broker does not advertise the controller's listener; it gets no controller requests"),
        }
    }

    /// Stops the sender for `broker`, dropping whatever it still had queued.
    pub fn remove_broker(&mut self, broker: i32) {
        if let Some(q) = self.queues.remove(&broker) {
            q.task.abort();
        }
    }

    pub(super) fn send(
        &self,
        broker: i32,
        request: ControlRequest,
        applied: Option<oneshot::Sender<()>>,
    ) {
        match self.queues.get(&broker) {
            Some(q) => {
                if q.tx.send(Queued { request, applied }).is_err() {
                    tracing::warn!(broker, "controller channel to broker is closed");
                }
            }
            None => tracing::debug!(broker, "no controller channel to broker; request dropped"),
        }
    }

    /// Stops every sender (on resignation).
    pub fn shutdown(&mut self) {
        for (_, q) in self.queues.drain() {
            q.task.abort();
        }
    }
}

impl Drop for ChannelManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn sender_loop(
    broker: i32,
    addr: String,
    client_id: String,
    timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    let mut conn: Option<BrokerConnection> = None;
    while let Some(Queued { request, applied }) = rx.recv().await {
        loop {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match BrokerConnection::connect(&addr, &client_id, timeout).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::debug!(broker, error = %e, "controller cannot reach broker; retrying");
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        continue;
                    }
                },
            };
            let outcome = match &request {
                ControlRequest::LeaderAndIsr { request, report_to } => {
                    send_leader_and_isr(c, broker, request, report_to).await
                }
                ControlRequest::UpdateMetadata(request) => {
                    send_update_metadata(c, broker, request).await
                }
                ControlRequest::StopReplica { request, report_to } => {
                    send_stop_replica(c, broker, request, report_to.as_ref()).await
                }
            };
            match outcome {
                Ok(()) => {
                    if let Some(tx) = applied {
                        let _ = tx.send(());
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(broker, error = %e, "controller request failed; retrying");
                    conn = None;
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }
}

async fn send_leader_and_isr(
    c: &mut BrokerConnection,
    broker: i32,
    request: &LeaderAndIsrRequest,
    report_to: &mpsc::UnboundedSender<Event>,
) -> Result<(), ClientError> {
    let resp = c.send(request, LEADER_AND_ISR_VERSION).await?;
    let storage_error = ResponseError::KafkaStorageError.code();
    let offline: Vec<TopicPartition> = resp
        .partition_errors
        .iter()
        .filter(|p| p.error_code == storage_error)
        .map(|p| TopicPartition::new(p.topic_name.0.as_str(), p.partition_index))
        .collect();
    if !offline.is_empty() {
        let _ = report_to.send(Event::LeaderAndIsrStorageErrors { broker, offline });
    }
    if resp.error_code != 0 {
        tracing::warn!(
            broker,
            error_code = resp.error_code,
            "broker rejected LeaderAndIsr"
        );
    }
    for p in resp.partition_errors.iter().filter(|p| p.error_code != 0) {
        tracing::debug!(broker, topic = %p.topic_name.0.as_str(),
            partition = p.partition_index, error_code = p.error_code,
            "LeaderAndIsr partition error");
    }
    Ok(())
}

async fn send_update_metadata(
    c: &mut BrokerConnection,
    broker: i32,
    request: &UpdateMetadataRequest,
) -> Result<(), ClientError> {
    let resp = c.send(request, UPDATE_METADATA_VERSION).await?;
    if resp.error_code != 0 {
        tracing::warn!(
            broker,
            error_code = resp.error_code,
            "broker rejected UpdateMetadata"
        );
    }
    Ok(())
}

async fn send_stop_replica(
    c: &mut BrokerConnection,
    broker: i32,
    request: &StopReplicaRequest,
    report_to: Option<&mpsc::UnboundedSender<Event>>,
) -> Result<(), ClientError> {
    let resp = c.send(request, STOP_REPLICA_VERSION).await?;
    if let Some(tx) = report_to {
        let results = resp
            .partition_errors
            .iter()
            .map(|p| {
                let code = if resp.error_code != 0 {
                    resp.error_code
                } else {
                    p.error_code
                };
                (
                    TopicPartition::new(p.topic_name.0.as_str(), p.partition_index),
                    (code != 0).then(|| format!("StopReplica answered error code {code}")),
                )
            })
            .collect();
        let _ = tx.send(Event::StopReplicaResponse { broker, results });
    }
    Ok(())
}
