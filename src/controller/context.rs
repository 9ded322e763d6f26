//! The controller's cache of the cluster (Kafka's `ControllerContext`): live brokers and their
//! epochs, topic assignments, every partition's leadership as last written to ZooKeeper, and the
//! partition/replica state machines' current states, with Kafka's valid-previous-state rules.
//! Only the event loop touches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::common::TopicPartition;
use crate::zk::{BrokerInfo, LeaderIsrAndControllerEpoch};

/// Partition states (reference §3, Kafka's `PartitionState`). A partition the context does not
/// list is `NonExistent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionState {
    NonExistent,
    New,
    Online,
    Offline,
}

impl PartitionState {
    /// The states a partition may move to `self` from (Kafka's `validPreviousStates`).
    pub fn valid_previous(self) -> &'static [PartitionState] {
        use PartitionState::*;
        match self {
            New => &[NonExistent],
            Online => &[New, Online, Offline],
            Offline => &[New, Online, Offline],
            NonExistent => &[Offline],
        }
    }

    pub fn can_follow(self, previous: PartitionState) -> bool {
        self.valid_previous().contains(&previous)
    }
}

/// Replica states (reference §3, Kafka's `ReplicaState`). A replica the context does not list
/// is `NonExistent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplicaState {
    NonExistent,
    New,
    Online,
    Offline,
    DeletionStarted,
    DeletionSuccessful,
    DeletionIneligible,
}

impl ReplicaState {
    /// The states a replica may move to `self` from (Kafka's `validPreviousStates`).
    pub fn valid_previous(self) -> &'static [ReplicaState] {
        use ReplicaState::*;
        match self {
            New => &[NonExistent],
            Online | Offline => &[New, Online, Offline, DeletionIneligible],
            DeletionStarted => &[Offline],
            DeletionSuccessful => &[DeletionStarted],
            DeletionIneligible => &[Offline, DeletionStarted],
            NonExistent => &[DeletionSuccessful],
        }
    }

    pub fn can_follow(self, previous: ReplicaState) -> bool {
        self.valid_previous().contains(&previous)
    }
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
    /// Kafka's `replicasOnOfflineDirs`: per live broker, the partitions whose replica there
    /// answered KAFKA_STORAGE_ERROR (its log directory failed). Such a replica is offline
    /// although its broker is live; forgotten when the broker registers again or dies.
    pub offline_dir_replicas: HashMap<i32, HashSet<TopicPartition>>,
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

    pub fn partition_state(&self, tp: &TopicPartition) -> PartitionState {
        self.partition_states
            .get(tp)
            .copied()
            .unwrap_or(PartitionState::NonExistent)
    }

    pub fn replica_state(&self, tp: &TopicPartition, broker: i32) -> ReplicaState {
        self.replica_states
            .get(&(tp.clone(), broker))
            .copied()
            .unwrap_or(ReplicaState::NonExistent)
    }

    /// Fencing by the state itself: a state znode written by a newer controller means this one
    /// has been replaced, whatever `/controller_epoch` said when it was read.
    ///
    /// # Errors
    /// `ControllerMoved` naming the partition and both epochs.
    pub fn check_state_epoch(
        &self,
        tp: &TopicPartition,
        state: &crate::zk::LeaderIsrAndControllerEpoch,
    ) -> Result<(), crate::zk::ZkError> {
        if state.controller_epoch > self.epoch {
            return Err(crate::zk::ZkError::ControllerMoved {
                detail: format!(
                    "state of {tp} was written by controller epoch {} (ours is {})",
                    state.controller_epoch, self.epoch
                ),
            });
        }
        Ok(())
    }

    /// Whether `broker` may be chosen as a leader: live and not shutting down.
    pub fn can_lead(&self, broker: i32) -> bool {
        self.is_live(broker) && !self.shutting_down.contains(&broker)
    }

    /// Kafka's `isReplicaOnline`: the broker is live and its replica of `tp` is not on a
    /// failed log directory.
    pub fn is_replica_online(&self, tp: &TopicPartition, broker: i32) -> bool {
        self.is_live(broker)
            && !self
                .offline_dir_replicas
                .get(&broker)
                .is_some_and(|parts| parts.contains(tp))
    }

    /// Whether `broker`'s replica of `tp` may be chosen as its leader.
    pub fn can_lead_replica(&self, tp: &TopicPartition, broker: i32) -> bool {
        self.can_lead(broker) && self.is_replica_online(tp, broker)
    }

    /// `tp`'s replicas on live brokers, in assignment order.
    pub fn live_replicas(&self, tp: &TopicPartition) -> Vec<i32> {
        self.replicas(tp)
            .iter()
            .copied()
            .filter(|r| self.is_live(*r))
            .collect()
    }

    /// Every (partition, replica) of `topic`.
    pub fn replicas_of_topic(&self, topic: &str) -> Vec<(TopicPartition, i32)> {
        self.partitions_of(topic)
            .into_iter()
            .flat_map(|tp| {
                self.replicas(&tp)
                    .iter()
                    .map(|r| (tp.clone(), *r))
                    .collect::<Vec<_>>()
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_transitions_follow_kafka() {
        use PartitionState::*;
        assert!(New.can_follow(NonExistent));
        assert!(
            !New.can_follow(Online),
            "an existing partition is never New again"
        );
        assert!(Online.can_follow(New) && Online.can_follow(Offline) && Online.can_follow(Online));
        assert!(
            !Online.can_follow(NonExistent),
            "a partition is created before it is elected"
        );
        assert!(Offline.can_follow(Online));
        assert!(NonExistent.can_follow(Offline));
        assert!(
            !NonExistent.can_follow(Online),
            "only an offline partition is removed"
        );
    }

    #[test]
    fn replica_transitions_follow_kafka() {
        use ReplicaState::*;
        assert!(New.can_follow(NonExistent));
        assert!(Online.can_follow(DeletionIneligible));
        assert!(
            !Online.can_follow(DeletionStarted),
            "a replica being deleted never comes back"
        );
        assert!(DeletionStarted.can_follow(Offline));
        assert!(
            !DeletionStarted.can_follow(Online),
            "deletion starts from an offline replica"
        );
        assert!(DeletionSuccessful.can_follow(DeletionStarted));
        assert!(!DeletionSuccessful.can_follow(Offline));
        assert!(
            DeletionIneligible.can_follow(DeletionStarted)
                && DeletionIneligible.can_follow(Offline)
        );
        assert!(NonExistent.can_follow(DeletionSuccessful));
        assert!(!NonExistent.can_follow(Online));
    }

    #[test]
    fn unknown_partitions_and_replicas_are_non_existent() {
        let ctx = ControllerContext::default();
        let tp = TopicPartition::new("t", 0);
        assert_eq!(ctx.partition_state(&tp), PartitionState::NonExistent);
        assert_eq!(ctx.replica_state(&tp, 1), ReplicaState::NonExistent);
    }

    #[test]
    fn a_replica_on_a_failed_dir_is_offline_on_a_live_broker() {
        let mut ctx = ControllerContext::default();
        let tp = TopicPartition::new("t", 0);
        let other = TopicPartition::new("t", 1);
        let info = BrokerInfo {
            id: 1,
            endpoints: Vec::new(),
            rack: None,
        };
        ctx.live_brokers.insert(1, (info, 10));
        ctx.offline_dir_replicas
            .entry(1)
            .or_default()
            .insert(tp.clone());
        assert!(ctx.is_live(1) && ctx.can_lead(1));
        assert!(!ctx.is_replica_online(&tp, 1) && !ctx.can_lead_replica(&tp, 1));
        assert!(ctx.is_replica_online(&other, 1) && ctx.can_lead_replica(&other, 1));
        ctx.shutting_down.insert(1);
        assert!(ctx.is_replica_online(&other, 1) && !ctx.can_lead_replica(&other, 1));
        assert!(
            !ctx.is_replica_online(&tp, 2),
            "a dead broker's replicas are offline"
        );
    }
}
