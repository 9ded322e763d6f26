//! The controller's cache of the cluster (Kafka's `ControllerContext`): live brokers and their
//! epochs, topic assignments, every partition's leadership as last written to ZooKeeper, and the
//! partition/replica state machines' current states. Only the event loop touches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::log::TopicPartition;
use crate::zk::{BrokerInfo, LeaderIsrAndControllerEpoch};

/// Partition states (reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    New,
    Online,
    Offline,
}

/// Replica states (reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    New,
    Online,
    Offline,
    DeletionStarted,
    DeletionSuccessful,
    DeletionIneligible,
}

/// A partition's leadership as stored in its state znode, with the znode's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub state: LeaderIsrAndControllerEpoch,
    pub zk_version: i32,
}

#[derive(Debug, Default)]
pub struct ControllerContext {
    pub epoch: i32,
    pub epoch_zk_version: i32,
    /// Live brokers with their broker epoch (czxid of `/brokers/ids/<id>`).
    pub live_brokers: BTreeMap<i32, (BrokerInfo, i64)>,
    pub assignments: BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
    pub leadership: HashMap<TopicPartition, Leadership>,
    pub partition_states: HashMap<TopicPartition, PartitionState>,
    pub replica_states: HashMap<(TopicPartition, i32), ReplicaState>,
    pub topics_to_delete: BTreeSet<String>,
    /// Topics whose StopReplica(delete) requests have been sent for the current attempt.
    pub deletion_started: HashSet<String>,
    /// Brokers in a controlled shutdown: still live, but never chosen as leaders.
    pub shutting_down: BTreeSet<i32>,
}

impl ControllerContext {
    pub fn is_live(&self, broker: i32) -> bool {
        self.live_brokers.contains_key(&broker)
    }

    pub fn live_ids(&self) -> Vec<i32> {
        self.live_brokers.keys().copied().collect()
    }

    pub fn broker_epoch(&self, broker: i32) -> i64 {
        self.live_brokers
            .get(&broker)
            .map(|(_, e)| *e)
            .unwrap_or(-1)
    }

    pub fn replicas(&self, tp: &TopicPartition) -> &[i32] {
        self.assignments
            .get(&tp.topic)
            .and_then(|a| a.get(&tp.partition))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn all_partitions(&self) -> Vec<TopicPartition> {
        self.assignments
            .iter()
            .flat_map(|(t, parts)| {
                parts.keys().map(move |p| TopicPartition {
                    topic: t.clone(),
                    partition: *p,
                })
            })
            .collect()
    }

    pub fn partitions_of(&self, topic: &str) -> Vec<TopicPartition> {
        self.assignments
            .get(topic)
            .map(|parts| {
                parts
                    .keys()
                    .map(|p| TopicPartition {
                        topic: topic.to_string(),
                        partition: *p,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Partitions with a replica on `broker`.
    pub fn partitions_on_broker(&self, broker: i32) -> Vec<TopicPartition> {
        self.all_partitions()
            .into_iter()
            .filter(|tp| self.replicas(tp).contains(&broker))
            .collect()
    }

    pub fn is_deleting(&self, topic: &str) -> bool {
        self.topics_to_delete.contains(topic)
    }

    /// Forgets a topic entirely (after its deletion completed).
    pub fn remove_topic(&mut self, topic: &str) {
        self.assignments.remove(topic);
        self.leadership.retain(|tp, _| tp.topic != topic);
        self.partition_states.retain(|tp, _| tp.topic != topic);
        self.replica_states.retain(|(tp, _), _| tp.topic != topic);
        self.topics_to_delete.remove(topic);
        self.deletion_started.remove(topic);
    }
}
