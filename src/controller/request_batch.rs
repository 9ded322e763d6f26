//! One event's controller requests, collected per broker and sent once (Kafka's
//! `ControllerBrokerRequestBatch`): however many partitions an event touches, each broker gets
//! at most one LeaderAndIsr, one UpdateMetadata and one StopReplica, in that order.
//!
//! Partition states are read from the context when the batch is sent, so every request carries
//! the latest leadership even if a partition changed twice during the event.

use std::collections::{BTreeMap, BTreeSet};

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
use tokio::sync::{mpsc, oneshot};

use super::channel::{ChannelManager, ControlRequest};
use super::context::ControllerContext;
use super::Event;
use crate::common::{TopicPartition, EPOCH_DURING_DELETE, LEADER_DURING_DELETE};

/// Collects one event's requests per broker.
#[derive(Default)]
pub struct RequestBatch {
    /// broker → partition → is_new
    leader_and_isr: BTreeMap<i32, BTreeMap<TopicPartition, bool>>,
    update_metadata: BTreeMap<i32, BTreeSet<TopicPartition>>,
    /// broker → partition → delete
    stop_replica: BTreeMap<i32, BTreeMap<TopicPartition, bool>>,
    /// Fired when every LeaderAndIsr of the batch has been answered.
    on_applied: Vec<oneshot::Sender<()>>,
}

/// Groups per-partition entries by topic, as every controller request lays them out.
fn by_topic<T, S>(
    entries: impl IntoIterator<Item = (TopicPartition, T)>,
    mut build: impl FnMut(String, Vec<T>) -> S,
) -> Vec<S> {
    let mut topics: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (tp, e) in entries {
        topics.entry(tp.topic).or_default().push(e);
    }
    topics.into_iter().map(|(t, es)| build(t, es)).collect()
}

fn topic_name(t: String) -> TopicName {
    TopicName(StrBytes::from_string(t))
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|b| BrokerId(*b)).collect()
}

impl RequestBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// LeaderAndIsr for `tp` to the live ones of `brokers` (with its leadership at send time),
    /// plus UpdateMetadata for `tp` to every live broker, as Kafka's
    /// `addLeaderAndIsrRequestForBrokers`.
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

    /// StopReplica for `tp` to `broker` if it is live; `delete` wins over an earlier
    /// non-deleting entry for the same replica.
    pub fn add_stop_replica(
        &mut self,
        ctx: &ControllerContext,
        broker: i32,
        tp: &TopicPartition,
        delete: bool,
    ) {
        if !ctx.is_live(broker) {
            return;
        }
        let e = self
            .stop_replica
            .entry(broker)
            .or_default()
            .entry(tp.clone())
            .or_insert(delete);
        *e |= delete;
    }

    /// Everything collected so far, leaving this batch empty: an event sends the requests of
    /// one step (its leader elections, say) before a slower next step is done, as Kafka's state
    /// machines each send their own batch.
    pub fn take(&mut self) -> RequestBatch {
        std::mem::take(self)
    }

    /// A receiver that resolves once every broker has answered this batch's LeaderAndIsr and
    /// UpdateMetadata requests (at once if there are none); dropped unanswered if a broker is
    /// removed first.
    pub fn when_applied(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.on_applied.push(tx);
        rx
    }

    /// Builds and queues every request, in Kafka's order.
    pub fn send(
        self,
        ctx: &ControllerContext,
        channel: &ChannelManager,
        controller_id: i32,
        events: &mpsc::UnboundedSender<Event>,
        inter_broker_listener: &str,
    ) {
        let track = !self.on_applied.is_empty();
        let mut answered = Vec::new();
        let mut signal = || {
            track.then(|| {
                let (tx, rx) = oneshot::channel();
                answered.push(rx);
                tx
            })
        };
        for (broker, parts) in self.leader_and_isr {
            if let Some(req) =
                leader_and_isr(ctx, controller_id, broker, parts, inter_broker_listener)
            {
                let request = ControlRequest::LeaderAndIsr {
                    request: req,
                    report_to: events.clone(),
                };
                channel.send(broker, request, signal());
            }
        }
        let live_brokers = live_broker_list(ctx);
        for (broker, parts) in self.update_metadata {
            if ctx.is_live(broker) {
                let req = update_metadata(ctx, controller_id, broker, parts, &live_brokers);
                channel.send(broker, ControlRequest::UpdateMetadata(req), signal());
            }
        }
        if track {
            let waiters = self.on_applied;
            tokio::spawn(async move {
                for rx in answered {
                    if rx.await.is_err() {
                        // A broker went away before answering: nobody is told "applied".
                        return;
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            });
        }
        for (broker, parts) in self.stop_replica {
            let any_delete = parts.values().any(|d| *d);
            let request = stop_replica(ctx, controller_id, broker, parts);
            let request = ControlRequest::StopReplica {
                request,
                report_to: any_delete.then(|| events.clone()),
            };
            channel.send(broker, request, None);
        }
    }
}

/// LeaderAndIsr names each leader by its `inter_broker_listener` endpoint, the one its
/// followers fetch from (Kafka's `node(interBrokerListenerName)`).
fn leader_and_isr(
    ctx: &ControllerContext,
    controller_id: i32,
    broker: i32,
    parts: BTreeMap<TopicPartition, bool>,
    inter_broker_listener: &str,
) -> Option<LeaderAndIsrRequest> {
    let mut leaders = BTreeSet::new();
    let states: Vec<_> = parts
        .into_iter()
        .filter_map(|(tp, is_new)| {
            let l = ctx.leadership.get(&tp)?;
            let mut s = LeaderAndIsrPartitionState::default();
            s.partition_index = tp.partition;
            s.controller_epoch = l.state.controller_epoch;
            s.leader = BrokerId(l.state.leader);
            s.leader_epoch = l.state.leader_epoch;
            s.isr = broker_ids(&l.state.isr);
            s.partition_epoch = l.zk_version;
            s.replicas = broker_ids(ctx.replicas(&tp));
            s.is_new = is_new;
            if l.state.leader >= 0 {
                leaders.insert(l.state.leader);
            }
            Some((tp, s))
        })
        .collect();
    if states.is_empty() {
        return None;
    }
    let mut req = LeaderAndIsrRequest::default();
    req.controller_id = BrokerId(controller_id);
    req.controller_epoch = ctx.epoch;
    req.broker_epoch = ctx.broker_epoch(broker);
    req.topic_states = by_topic(states, |t, partition_states| {
        let mut ts = LeaderAndIsrTopicState::default();
        ts.topic_name = topic_name(t);
        ts.partition_states = partition_states;
        ts
    });
    req.live_leaders = leaders
        .into_iter()
        .filter_map(|id| {
            let (info, _) = ctx.live_brokers.get(&id)?;
            let ep = info.endpoint(inter_broker_listener)?;
            let mut l = LeaderAndIsrLiveLeader::default();
            l.broker_id = BrokerId(id);
            l.host_name = StrBytes::from_string(ep.host.clone());
            l.port = ep.port;
            Some(l)
        })
        .collect();
    Some(req)
}

fn update_metadata(
    ctx: &ControllerContext,
    controller_id: i32,
    broker: i32,
    parts: BTreeSet<TopicPartition>,
    live_brokers: &[UpdateMetadataBroker],
) -> UpdateMetadataRequest {
    let states = parts.into_iter().filter_map(|tp| {
        let l = ctx.leadership.get(&tp)?;
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
        s.isr = broker_ids(&l.state.isr);
        s.zk_version = l.zk_version;
        s.replicas = broker_ids(replicas);
        s.offline_replicas = replicas
            .iter()
            .filter(|r| !ctx.is_replica_online(&tp, **r))
            .map(|b| BrokerId(*b))
            .collect();
        Some((tp, s))
    });
    let mut req = UpdateMetadataRequest::default();
    req.controller_id = BrokerId(controller_id);
    req.controller_epoch = ctx.epoch;
    req.broker_epoch = ctx.broker_epoch(broker);
    req.topic_states = by_topic(states, |t, partition_states| {
        let mut ts = UpdateMetadataTopicState::default();
        ts.topic_name = topic_name(t);
        ts.partition_states = partition_states;
        ts
    });
    req.live_brokers = live_brokers.to_vec();
    req
}

fn stop_replica(
    ctx: &ControllerContext,
    controller_id: i32,
    broker: i32,
    parts: BTreeMap<TopicPartition, bool>,
) -> StopReplicaRequest {
    let states = parts.into_iter().map(|(tp, delete)| {
        let mut s = StopReplicaPartitionState::default();
        s.partition_index = tp.partition;
        // With delete the broker skips its leader-epoch check; otherwise the epoch of the
        // leadership being stopped fences a stale request.
        s.leader_epoch = if delete {
            EPOCH_DURING_DELETE
        } else {
            ctx.leadership
                .get(&tp)
                .map(|l| l.state.leader_epoch)
                .unwrap_or(-1)
        };
        s.delete_partition = delete;
        (tp, s)
    });
    let mut req = StopReplicaRequest::default();
    req.controller_id = BrokerId(controller_id);
    req.controller_epoch = ctx.epoch;
    req.broker_epoch = ctx.broker_epoch(broker);
    req.topic_states = by_topic(states, |t, partition_states| {
        let mut ts = StopReplicaTopicState::default();
        ts.topic_name = topic_name(t);
        ts.partition_states = partition_states;
        ts
    });
    req
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::context::Leadership;
    use crate::zk::{BrokerInfo, EndPoint, LeaderIsrAndControllerEpoch};

    fn ctx_with(brokers: &[i32], partitions: usize) -> ControllerContext {
        let mut ctx = ControllerContext {
            epoch: 3,
            ..Default::default()
        };
        for b in brokers {
            let info = BrokerInfo {
                id: *b,
                endpoints: vec![
                    EndPoint::plaintext("127.0.0.1", 9092 + b),
                    EndPoint {
                        listener_name: "INTERNAL".into(),
                        ..EndPoint::plaintext("10.0.0.1", 19092 + b)
                    },
                ],
                rack: None,
            };
            ctx.live_brokers.insert(*b, (info, 100 + i64::from(*b)));
        }
        let mut parts = BTreeMap::new();
        for p in 0..partitions as i32 {
            parts.insert(p, brokers.to_vec());
            ctx.leadership.insert(
                TopicPartition::new("t", p),
                Leadership {
                    state: LeaderIsrAndControllerEpoch {
                        leader: brokers[p as usize % brokers.len()],
                        leader_epoch: 1,
                        isr: brokers.to_vec(),
                        controller_epoch: 3,
                    },
                    zk_version: 2,
                },
            );
        }
        ctx.assignments.insert("t".into(), parts);
        ctx
    }

    #[test]
    fn a_thousand_partitions_make_one_request_per_broker_and_type() {
        let ctx = ctx_with(&[0, 1, 2], 1000);
        let mut batch = RequestBatch::new();
        for tp in ctx.all_partitions() {
            batch.add_leader_and_isr(&ctx, &[0, 1, 2], &tp, false);
            batch.add_stop_replica(&ctx, 2, &tp, false);
        }
        assert_eq!(batch.leader_and_isr.len(), 3);
        assert_eq!(batch.update_metadata.len(), 3);
        assert_eq!(batch.stop_replica.len(), 1);
        let req =
            leader_and_isr(&ctx, 0, 1, batch.leader_and_isr[&1].clone(), "PLAINTEXT").unwrap();
        assert!(req
            .live_leaders
            .iter()
            .all(|l| l.port == 9092 + l.broker_id.0));
        // Leaders are named by the inter-broker listener, whichever it is.
        let internal =
            leader_and_isr(&ctx, 0, 1, batch.leader_and_isr[&1].clone(), "INTERNAL").unwrap();
        assert!(internal
            .live_leaders
            .iter()
            .all(|l| l.port == 19092 + l.broker_id.0 && l.host_name.as_str() == "10.0.0.1"));
        assert_eq!(req.topic_states.len(), 1);
        assert_eq!(req.topic_states[0].partition_states.len(), 1000);
        assert_eq!(req.broker_epoch, 101);
        assert_eq!(req.live_leaders.len(), 3);
    }

    #[test]
    fn dead_brokers_get_nothing_and_delete_wins() {
        let mut ctx = ctx_with(&[0, 1], 2);
        ctx.live_brokers.remove(&1);
        let tp = TopicPartition::new("t", 0);
        let mut batch = RequestBatch::new();
        batch.add_leader_and_isr(&ctx, &[0, 1], &tp, true);
        batch.add_stop_replica(&ctx, 1, &tp, true);
        batch.add_stop_replica(&ctx, 0, &tp, false);
        batch.add_stop_replica(&ctx, 0, &tp, true);
        batch.add_stop_replica(&ctx, 0, &tp, false);
        assert!(!batch.leader_and_isr.contains_key(&1));
        assert!(!batch.stop_replica.contains_key(&1));
        assert!(batch.stop_replica[&0][&tp]);
        let req = stop_replica(&ctx, 0, 0, batch.stop_replica[&0].clone());
        assert_eq!(
            req.topic_states[0].partition_states[0].leader_epoch,
            EPOCH_DURING_DELETE
        );
    }

    #[test]
    fn deleting_topics_are_announced_with_leader_minus_two() {
        let mut ctx = ctx_with(&[0], 1);
        ctx.deletion_started.insert("t".into());
        let parts: BTreeSet<_> = ctx.all_partitions().into_iter().collect();
        let req = update_metadata(&ctx, 0, 0, parts, &live_broker_list(&ctx));
        assert_eq!(
            req.topic_states[0].partition_states[0].leader,
            BrokerId(LEADER_DURING_DELETE)
        );
        assert_eq!(req.live_brokers.len(), 1);
    }
}
