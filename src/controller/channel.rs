//! The controller's channel to brokers (Kafka's `ControllerChannelManager` and
//! `ControllerBrokerRequestBatch`).
//!
//! One queue and one task per broker; strictly one request in flight, retried every 100 ms until
//! it succeeds or the broker is removed. An event's requests go out as LeaderAndIsr, then
//! UpdateMetadata, then StopReplica, and each broker's queue keeps that order. The controller
//! reaches every broker this way, itself included, over the Kafka protocol.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kafka_protocol::messages::leader_and_isr_request::{
    LeaderAndIsrLiveLeader, LeaderAndIsrPartitionState, LeaderAndIsrTopicState,
};
use kafka_protocol::messages::stop_replica_request::{
    StopReplicaPartitionState, StopReplicaTopicState,
};
use kafka_protocol::messages::update_metadata_request::{
    UpdateMetadataBroker, UpdateMetadataEndpoint, UpdateMetadataPartitionState,
    UpdateMetadataTopicState,
};
use kafka_protocol::messages::{
    BrokerId, LeaderAndIsrRequest, StopReplicaRequest, TopicName, UpdateMetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::context::ControllerContext;
use super::Event;
use crate::log::TopicPartition;
use crate::metadata::LEADER_DURING_DELETE;
use crate::protocol::client::BrokerConnection;

/// Versions the controller sends (IBP 2.4-IV1 level: grouped by topic, flexible, no topic ids).
const LEADER_AND_ISR_VERSION: i16 = 4;
const UPDATE_METADATA_VERSION: i16 = 6;
const STOP_REPLICA_VERSION: i16 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A request queued for one broker.
pub enum ControlRequest {
    LeaderAndIsr(LeaderAndIsrRequest),
    UpdateMetadata(UpdateMetadataRequest),
    /// Deletion progress needs the per-partition outcome, reported back as an event.
    StopReplica {
        request: StopReplicaRequest,
        report_to: Option<mpsc::UnboundedSender<Event>>,
    },
}

struct BrokerQueue {
    tx: mpsc::UnboundedSender<ControlRequest>,
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

    /// Stops the sender for `broker`, dropping whatever it still had queued.
    pub fn remove_broker(&mut self, broker: i32) {
        if let Some(q) = self.queues.remove(&broker) {
            q.task.abort();
        }
    }

    fn send(&self, broker: i32, req: ControlRequest) {
        match self.queues.get(&broker) {
            Some(q) => {
                if q.tx.send(req).is_err() {
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
    mut rx: mpsc::UnboundedReceiver<ControlRequest>,
) {
    let mut conn: Option<BrokerConnection> = None;
    while let Some(req) = rx.recv().await {
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
            let outcome = match &req {
                ControlRequest::LeaderAndIsr(r) => {
                    c.send(r, LEADER_AND_ISR_VERSION).await.map(|resp| {
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
                    })
                }
                ControlRequest::UpdateMetadata(r) => {
                    c.send(r, UPDATE_METADATA_VERSION).await.map(|resp| {
                        if resp.error_code != 0 {
                            tracing::warn!(
                                broker,
                                error_code = resp.error_code,
                                "broker rejected UpdateMetadata"
                            );
                        }
                    })
                }
                ControlRequest::StopReplica { request, report_to } => {
                    c.send(request, STOP_REPLICA_VERSION).await.map(|resp| {
                        if let Some(tx) = report_to {
                            let results = resp
                                .partition_errors
                                .iter()
                                .map(|p| {
                                    (
                                        TopicPartition {
                                            topic: p.topic_name.0.as_str().to_string(),
                                            partition: p.partition_index,
                                        },
                                        if resp.error_code != 0 {
                                            resp.error_code
                                        } else {
                                            p.error_code
                                        },
                                    )
                                })
                                .collect();
                            let _ = tx.send(Event::StopReplicaResponse { broker, results });
                        }
                    })
                }
            };
            match outcome {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(broker, error = %e, "controller request failed; retrying");
                    conn = None;
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }
}

/// Collects one event's requests per broker, then sends them in Kafka's order.
#[derive(Default)]
pub struct RequestBatch {
    /// broker → partition → is_new
    leader_and_isr: BTreeMap<i32, BTreeMap<TopicPartition, bool>>,
    update_metadata: BTreeMap<i32, BTreeSet<TopicPartition>>,
    stop_replica: BTreeMap<i32, BTreeMap<TopicPartition, bool>>,
}

impl RequestBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// LeaderAndIsr for `tp` to `brokers` (with its current leadership at send time), plus
    /// UpdateMetadata for `tp` to every live broker, as Kafka's `addLeaderAndIsrRequestForBrokers`.
    pub fn add_leader_and_isr(
        &mut self,
        ctx: &ControllerContext,
        brokers: &[i32],
        tp: &TopicPartition,
        is_new: bool,
    ) {
        for b in brokers.iter().filter(|b| ctx.is_live(**b)) {
            let e = self
                .leader_and_isr
                .entry(*b)
                .or_default()
                .entry(tp.clone())
                .or_insert(is_new);
            *e |= is_new;
        }
        self.add_update_metadata(&ctx.live_ids(), std::slice::from_ref(tp));
    }

    /// UpdateMetadata to `brokers` for `partitions` (may be empty: the broker list alone).
    pub fn add_update_metadata(&mut self, brokers: &[i32], partitions: &[TopicPartition]) {
        for b in brokers {
            self.update_metadata
                .entry(*b)
                .or_default()
                .extend(partitions.iter().cloned());
        }
    }

    pub fn add_stop_replica(&mut self, broker: i32, tp: &TopicPartition, delete: bool) {
        let e = self
            .stop_replica
            .entry(broker)
            .or_default()
            .entry(tp.clone())
            .or_insert(delete);
        *e |= delete;
    }

    /// Builds and queues every request. Partition states are read from `ctx` now, so the batch
    /// always carries the latest leadership.
    pub fn send(
        self,
        ctx: &ControllerContext,
        channel: &ChannelManager,
        controller_id: i32,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        for (broker, parts) in self.leader_and_isr {
            let mut by_topic: BTreeMap<String, Vec<LeaderAndIsrPartitionState>> = BTreeMap::new();
            let mut leaders = BTreeSet::new();
            for (tp, is_new) in parts {
                let Some(l) = ctx.leadership.get(&tp) else {
                    continue;
                };
                let mut s = LeaderAndIsrPartitionState::default();
                s.partition_index = tp.partition;
                s.controller_epoch = l.state.controller_epoch;
                s.leader = BrokerId(l.state.leader);
                s.leader_epoch = l.state.leader_epoch;
                s.isr = l.state.isr.iter().map(|b| BrokerId(*b)).collect();
                s.partition_epoch = l.zk_version;
                s.replicas = ctx.replicas(&tp).iter().map(|b| BrokerId(*b)).collect();
                s.is_new = is_new;
                if l.state.leader >= 0 {
                    leaders.insert(l.state.leader);
                }
                by_topic.entry(tp.topic.clone()).or_default().push(s);
            }
            if by_topic.is_empty() {
                continue;
            }
            let mut req = LeaderAndIsrRequest::default();
            req.controller_id = BrokerId(controller_id);
            req.controller_epoch = ctx.epoch;
            req.broker_epoch = ctx.broker_epoch(broker);
            req.topic_states = by_topic
                .into_iter()
                .map(|(t, states)| {
                    let mut ts = LeaderAndIsrTopicState::default();
                    ts.topic_name = topic_name(&t);
                    ts.partition_states = states;
                    ts
                })
                .collect();
            req.live_leaders = leaders
                .into_iter()
                .filter_map(|id| {
                    let (info, _) = ctx.live_brokers.get(&id)?;
                    let ep = info.endpoints.first()?;
                    let mut l = LeaderAndIsrLiveLeader::default();
                    l.broker_id = BrokerId(id);
                    l.host_name = StrBytes::from_string(ep.host.clone());
                    l.port = ep.port;
                    Some(l)
                })
                .collect();
            channel.send(broker, ControlRequest::LeaderAndIsr(req));
        }

        let live_brokers = live_broker_list(ctx);
        for (broker, parts) in self.update_metadata {
            if !ctx.is_live(broker) {
                continue;
            }
            let mut by_topic: BTreeMap<String, Vec<UpdateMetadataPartitionState>> = BTreeMap::new();
            for tp in parts {
                let Some(l) = ctx.leadership.get(&tp) else {
                    continue;
                };
                let replicas = ctx.replicas(&tp);
                let mut s = UpdateMetadataPartitionState::default();
                s.partition_index = tp.partition;
                s.controller_epoch = l.state.controller_epoch;
                s.leader = BrokerId(if ctx.deletion_started.contains(&tp.topic) {
                    LEADER_DURING_DELETE
                } else {
                    l.state.leader
                });
                s.leader_epoch = l.state.leader_epoch;
                s.isr = l.state.isr.iter().map(|b| BrokerId(*b)).collect();
                s.zk_version = l.zk_version;
                s.replicas = replicas.iter().map(|b| BrokerId(*b)).collect();
                s.offline_replicas = replicas
                    .iter()
                    .filter(|r| !ctx.is_live(**r))
                    .map(|b| BrokerId(*b))
                    .collect();
                by_topic.entry(tp.topic.clone()).or_default().push(s);
            }
            let mut req = UpdateMetadataRequest::default();
            req.controller_id = BrokerId(controller_id);
            req.controller_epoch = ctx.epoch;
            req.broker_epoch = ctx.broker_epoch(broker);
            req.topic_states = by_topic
                .into_iter()
                .map(|(t, states)| {
                    let mut ts = UpdateMetadataTopicState::default();
                    ts.topic_name = topic_name(&t);
                    ts.partition_states = states;
                    ts
                })
                .collect();
            req.live_brokers = live_brokers.clone();
            channel.send(broker, ControlRequest::UpdateMetadata(req));
        }

        for (broker, parts) in self.stop_replica {
            let mut by_topic: BTreeMap<String, Vec<StopReplicaPartitionState>> = BTreeMap::new();
            let mut any_delete = false;
            for (tp, delete) in parts {
                let mut s = StopReplicaPartitionState::default();
                s.partition_index = tp.partition;
                // -2 tells the broker to skip its leader-epoch check (Kafka's deletion sentinel);
                // otherwise the epoch of the leadership being stopped.
                s.leader_epoch = if delete {
                    -2
                } else {
                    ctx.leadership
                        .get(&tp)
                        .map(|l| l.state.leader_epoch)
                        .unwrap_or(-1)
                };
                s.delete_partition = delete;
                any_delete |= delete;
                by_topic.entry(tp.topic.clone()).or_default().push(s);
            }
            let mut req = StopReplicaRequest::default();
            req.controller_id = BrokerId(controller_id);
            req.controller_epoch = ctx.epoch;
            req.broker_epoch = ctx.broker_epoch(broker);
            req.topic_states = by_topic
                .into_iter()
                .map(|(t, states)| {
                    let mut ts = StopReplicaTopicState::default();
                    ts.topic_name = topic_name(&t);
                    ts.partition_states = states;
                    ts
                })
                .collect();
            channel.send(
                broker,
                ControlRequest::StopReplica {
                    request: req,
                    report_to: any_delete.then(|| events.clone()),
                },
            );
        }
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// The complete live-broker list every UpdateMetadata carries.
fn live_broker_list(ctx: &ControllerContext) -> Vec<UpdateMetadataBroker> {
    ctx.live_brokers
        .values()
        .map(|(info, _)| {
            let mut b = UpdateMetadataBroker::default();
            b.id = BrokerId(info.id);
            b.endpoints = info
                .endpoints
                .iter()
                .map(|e| {
                    let mut ep = UpdateMetadataEndpoint::default();
                    ep.port = e.port;
                    ep.host = StrBytes::from_string(e.host.clone());
                    ep.listener = StrBytes::from_string(e.listener_name.clone());
                    // PLAINTEXT is security protocol 0 (the only one gregor serves).
                    ep.security_protocol = 0;
                    ep
                })
                .collect();
            b.rack = info.rack.clone().map(StrBytes::from_string);
            b
        })
        .collect()
}
