//! Partition and replica state machines and topic deletion (reference §3), as transitions on the
//! controller's context. Each leadership change is a conditional write of the partition's state
//! znode, fenced on the controller epoch; on success the context is updated and LeaderAndIsr /
//! UpdateMetadata are added to the event's request batch.

use std::collections::BTreeSet;

use super::channel::RequestBatch;
use super::context::{Leadership, PartitionState, ReplicaState};
use super::core::{arm, Controller};
use super::Event;
use crate::log::TopicPartition;
use crate::zk::{LeaderIsrAndControllerEpoch, ZkError};

/// How many times a conditional state write is retried after a concurrent change (BADVERSION).
pub(super) const STATE_WRITE_ATTEMPTS: usize = 3;

impl Controller {
    /// New partitions: New → Online (initial leader = first live replica, ISR = live replicas).
    pub(super) async fn on_new_partitions(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ZkError> {
        let mut batch = RequestBatch::new();
        for tp in &partitions {
            self.ctx
                .partition_states
                .insert(tp.clone(), PartitionState::New);
            for r in self.ctx.replicas(tp).to_vec() {
                self.ctx
                    .replica_states
                    .insert((tp.clone(), r), ReplicaState::New);
            }
        }
        for tp in &partitions {
            self.init_leadership(tp, &mut batch).await?;
            for r in self.ctx.replicas(tp).to_vec() {
                if self.ctx.is_live(r) {
                    self.ctx
                        .replica_states
                        .insert((tp.clone(), r), ReplicaState::Online);
                }
            }
        }
        self.send(batch);
        Ok(())
    }

    /// Elects leaders for every New or Offline partition of a topic not being deleted.
    pub(super) async fn trigger_online_partition_state_change(
        &mut self,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        let mut todo: Vec<(TopicPartition, PartitionState)> = self
            .ctx
            .partition_states
            .iter()
            .filter(|(tp, s)| {
                matches!(s, PartitionState::New | PartitionState::Offline)
                    && !self.ctx.is_deleting(&tp.topic)
            })
            .map(|(tp, s)| (tp.clone(), *s))
            .collect();
        todo.sort_by(|a, b| a.0.cmp(&b.0));
        for (tp, state) in todo {
            match state {
                PartitionState::New => self.init_leadership(&tp, batch).await?,
                _ => self.elect_offline(&tp, batch).await?,
            }
        }
        Ok(())
    }

    /// New → Online: create the state znode with the first live replica as leader.
    async fn init_leadership(
        &mut self,
        tp: &TopicPartition,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        let live: Vec<i32> = self
            .ctx
            .replicas(tp)
            .iter()
            .copied()
            .filter(|r| self.ctx.can_lead(*r))
            .collect();
        let Some(&leader) = live.first() else {
            tracing::warn!(topic = %tp.topic, partition = tp.partition,
                "no live replica for new partition; it stays New");
            return Ok(());
        };
        let state = LeaderIsrAndControllerEpoch {
            leader,
            leader_epoch: 0,
            isr: live.clone(),
            controller_epoch: self.ctx.epoch,
        };
        let zk = self.zk.get();
        match zk
            .create_partition_state(&tp.topic, tp.partition, &state, self.ctx.epoch_zk_version)
            .await
        {
            Ok(zk_version) => {
                self.ctx
                    .leadership
                    .insert(tp.clone(), Leadership { state, zk_version });
                self.ctx
                    .partition_states
                    .insert(tp.clone(), PartitionState::Online);
                batch.add_leader_and_isr(&self.ctx, &live, tp, true);
                tracing::info!(topic = %tp.topic, partition = tp.partition, leader,
                    epoch = self.ctx.epoch, "partition online");
                Ok(())
            }
            Err(ZkError::NodeExists { .. }) => {
                // Someone (an earlier controller) initialised it already: adopt it and elect
                // as for an offline partition.
                if let Some((state, zk_version)) =
                    zk.get_partition_state(&tp.topic, tp.partition).await?
                {
                    self.ctx
                        .leadership
                        .insert(tp.clone(), Leadership { state, zk_version });
                    self.ctx
                        .partition_states
                        .insert(tp.clone(), PartitionState::Offline);
                    self.elect_offline(tp, batch).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn unclean_election_enabled(&self, topic: &str) -> Result<bool, ZkError> {
        let cfg = self.zk.get().get_topic_config(topic).await?;
        Ok(cfg
            .get("unclean.leader.election.enable")
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(self.config.unclean_leader_election_enable))
    }

    /// Offline/Online → Online with the offline strategy: first assigned replica that is live and
    /// in the ISR; unclean (first live replica) only if enabled for the topic. No leader → stays
    /// Offline and nothing is written.
    pub(super) async fn elect_offline(
        &mut self,
        tp: &TopicPartition,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        // The ISR in the cache may predate a leader's expansion; elect from the znode.
        self.refresh_leadership(tp).await?;
        for _ in 0..STATE_WRITE_ATTEMPTS {
            let Some(current) = self.ctx.leadership.get(tp).cloned() else {
                // Never initialised: the next trigger creates it as a New partition.
                self.ctx
                    .partition_states
                    .insert(tp.clone(), PartitionState::New);
                return Ok(());
            };
            if current.state.controller_epoch > self.ctx.epoch {
                tracing::warn!(topic = %tp.topic, partition = tp.partition,
                    "state written by a newer controller; aborting election");
                return Err(ZkError::ControllerMoved {
                    detail: "partition state has a newer controller epoch".into(),
                });
            }
            let replicas = self.ctx.replicas(tp).to_vec();
            let live_isr: Vec<i32> = current
                .state
                .isr
                .iter()
                .copied()
                .filter(|r| self.ctx.can_lead(*r))
                .collect();
            let clean = replicas.iter().copied().find(|r| live_isr.contains(r));
            let (leader, isr) = match clean {
                Some(l) => (l, live_isr.clone()),
                None => {
                    let unclean = replicas.iter().copied().find(|r| self.ctx.can_lead(*r));
                    match unclean {
                        Some(l) if self.unclean_election_enabled(&tp.topic).await? => {
                            tracing::warn!(topic = %tp.topic, partition = tp.partition,
                                leader = l, "unclean leader election: data may be lost");
                            (l, vec![l])
                        }
                        _ => {
                            tracing::info!(topic = %tp.topic, partition = tp.partition,
                                isr = ?current.state.isr, "no live in-sync replica; partition stays offline");
                            self.ctx
                                .partition_states
                                .insert(tp.clone(), PartitionState::Offline);
                            return Ok(());
                        }
                    }
                }
            };
            if self
                .commit_election(tp, &current, leader, isr, batch)
                .await?
            {
                return Ok(());
            }
        }
        tracing::warn!(topic = %tp.topic, partition = tp.partition,
            "partition state kept changing; election skipped");
        Ok(())
    }

    /// Writes an elected `leader`/`isr` with the leader epoch bumped, conditional on the version
    /// `current` was read at; on success marks the partition Online and queues LeaderAndIsr for
    /// its live replicas. `false`: the znode changed underneath (the cache is refreshed).
    pub(super) async fn commit_election(
        &mut self,
        tp: &TopicPartition,
        current: &Leadership,
        leader: i32,
        isr: Vec<i32>,
        batch: &mut RequestBatch,
    ) -> Result<bool, ZkError> {
        let new_state = LeaderIsrAndControllerEpoch {
            leader,
            leader_epoch: current.state.leader_epoch + 1,
            isr,
            controller_epoch: self.ctx.epoch,
        };
        if !self
            .write_leadership(tp, &new_state, current.zk_version)
            .await?
        {
            return Ok(false);
        }
        self.ctx
            .partition_states
            .insert(tp.clone(), PartitionState::Online);
        let live_replicas: Vec<i32> = self
            .ctx
            .replicas(tp)
            .iter()
            .copied()
            .filter(|r| self.ctx.is_live(*r))
            .collect();
        batch.add_leader_and_isr(&self.ctx, &live_replicas, tp, false);
        tracing::info!(topic = %tp.topic, partition = tp.partition, leader,
            previous = current.state.leader, leader_epoch = new_state.leader_epoch,
            isr = ?new_state.isr, "elected leader");
        Ok(true)
    }

    /// Writes `state` to the partition's state znode, conditional on `expected_version` and
    /// fenced on the controller epoch. On success the context holds the new leadership and
    /// `true` is returned; on a concurrent change (BADVERSION) the context is refreshed from
    /// ZooKeeper and `false` is returned so the caller can decide again.
    pub(super) async fn write_leadership(
        &mut self,
        tp: &TopicPartition,
        state: &LeaderIsrAndControllerEpoch,
        expected_version: i32,
    ) -> Result<bool, ZkError> {
        match self
            .zk
            .get()
            .update_partition_state(
                &tp.topic,
                tp.partition,
                state,
                expected_version,
                self.ctx.epoch_zk_version,
            )
            .await
        {
            Ok(zk_version) => {
                self.ctx.leadership.insert(
                    tp.clone(),
                    Leadership {
                        state: state.clone(),
                        zk_version,
                    },
                );
                Ok(true)
            }
            Err(ZkError::BadVersion { .. }) => {
                self.refresh_leadership(tp).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn refresh_leadership(&mut self, tp: &TopicPartition) -> Result<(), ZkError> {
        if let Some((state, zk_version)) = self
            .zk
            .get()
            .get_partition_state(&tp.topic, tp.partition)
            .await?
        {
            self.ctx
                .leadership
                .insert(tp.clone(), Leadership { state, zk_version });
        }
        Ok(())
    }

    /// Replicas on a (re)started broker → Online: each gets LeaderAndIsr with the current,
    /// unchanged leadership.
    pub(super) fn replicas_online(&mut self, broker: i32, batch: &mut RequestBatch) {
        for tp in self.ctx.partitions_on_broker(broker) {
            if self.ctx.is_deleting(&tp.topic) {
                continue;
            }
            if self.ctx.leadership.contains_key(&tp) {
                batch.add_leader_and_isr(&self.ctx, &[broker], &tp, false);
            }
            self.ctx
                .replica_states
                .insert((tp, broker), ReplicaState::Online);
        }
    }

    /// Replicas on a dead broker → Offline: removed from the ISR in ZooKeeper (never emptying it),
    /// `leader = -1` if it led, leader epoch + 1; the other replicas get LeaderAndIsr.
    pub(super) async fn replicas_offline(
        &mut self,
        broker: i32,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        let partitions = self.ctx.partitions_on_broker(broker);
        self.replicas_offline_in(broker, partitions, batch).await
    }

    /// [`Self::replicas_offline`] for some of the broker's partitions only.
    pub(super) async fn replicas_offline_in(
        &mut self,
        broker: i32,
        partitions: Vec<TopicPartition>,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        for tp in partitions {
            let deleting = self.ctx.is_deleting(&tp.topic);
            self.ctx.replica_states.insert(
                (tp.clone(), broker),
                if deleting {
                    ReplicaState::DeletionIneligible
                } else {
                    ReplicaState::Offline
                },
            );
            if deleting {
                continue;
            }
            for _ in 0..STATE_WRITE_ATTEMPTS {
                let Some(current) = self.ctx.leadership.get(&tp).cloned() else {
                    break;
                };
                let in_isr = current.state.isr.contains(&broker);
                if !in_isr && current.state.leader != broker {
                    break;
                }
                let isr = if current.state.isr == [broker] {
                    current.state.isr.clone()
                } else {
                    current
                        .state
                        .isr
                        .iter()
                        .copied()
                        .filter(|r| *r != broker)
                        .collect()
                };
                let leader = if current.state.leader == broker {
                    -1
                } else {
                    current.state.leader
                };
                if leader == current.state.leader && isr == current.state.isr {
                    // Already recorded as offline (an ISR of one is never emptied).
                    break;
                }
                let new_state = LeaderIsrAndControllerEpoch {
                    leader,
                    leader_epoch: current.state.leader_epoch + 1,
                    isr,
                    controller_epoch: self.ctx.epoch,
                };
                if self
                    .write_leadership(&tp, &new_state, current.zk_version)
                    .await?
                {
                    let others: Vec<i32> = self
                        .ctx
                        .replicas(&tp)
                        .iter()
                        .copied()
                        .filter(|r| *r != broker)
                        .collect();
                    batch.add_leader_and_isr(&self.ctx, &others, &tp, false);
                    batch.add_update_metadata(&self.ctx.live_ids(), std::slice::from_ref(&tp));
                    break;
                }
            }
        }
        Ok(())
    }

    /// `/admin/delete_topics` changed.
    pub(super) async fn on_topic_deletion(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (topics, w) = zk.get_topic_deletions_and_watch().await?;
        arm(w, &self.events, Event::TopicDeletion);
        for topic in topics {
            if !self.ctx.assignments.contains_key(&topic) {
                zk.delete_topic_deletion_flag(&topic, self.ctx.epoch_zk_version)
                    .await?;
            } else if !self.config.delete_topic_enable {
                tracing::info!(topic = %topic, "delete.topic.enable is false; removing deletion request");
                zk.delete_topic_deletion_flag(&topic, self.ctx.epoch_zk_version)
                    .await?;
            } else if self.ctx.topics_to_delete.insert(topic.clone()) {
                tracing::info!(topic = %topic, "topic queued for deletion");
            }
        }
        self.resume_deletions().await
    }

    /// Starts (or re-drives) deletion of every queued topic whose replicas are all reachable.
    pub(super) async fn resume_deletions(&mut self) -> Result<(), ZkError> {
        let mut batch = RequestBatch::new();
        let topics: Vec<String> = self.ctx.topics_to_delete.iter().cloned().collect();
        for topic in topics {
            let partitions = self.ctx.partitions_of(&topic);
            if partitions.is_empty() {
                self.complete_deletion(&topic).await?;
                continue;
            }
            let pending: Vec<(TopicPartition, i32)> = partitions
                .iter()
                .flat_map(|tp| self.ctx.replicas(tp).iter().map(move |r| (tp.clone(), *r)))
                .filter(|k| {
                    self.ctx.replica_states.get(k) != Some(&ReplicaState::DeletionSuccessful)
                })
                .collect();
            if pending.is_empty() {
                self.complete_deletion(&topic).await?;
                continue;
            }
            let unreachable: BTreeSet<i32> = pending
                .iter()
                .map(|(_, r)| *r)
                .filter(|r| !self.ctx.is_live(*r))
                .collect();
            if !unreachable.is_empty() {
                tracing::info!(topic = %topic, brokers = ?unreachable,
                    "topic deletion waits for offline replicas");
                continue;
            }
            if self.ctx.deletion_started.insert(topic.clone()) {
                tracing::info!(topic = %topic, "deleting topic");
                // Leader -2 (LeaderDuringDelete) makes brokers drop the partitions from metadata.
                batch.add_update_metadata(&self.ctx.live_ids(), &partitions);
            }
            for (tp, r) in pending {
                if self.ctx.replica_states.get(&(tp.clone(), r))
                    == Some(&ReplicaState::DeletionStarted)
                {
                    continue;
                }
                self.ctx
                    .replica_states
                    .insert((tp.clone(), r), ReplicaState::DeletionStarted);
                batch.add_stop_replica(r, &tp, true);
            }
        }
        self.send(batch);
        Ok(())
    }

    /// A broker answered StopReplica(delete=true).
    pub(super) async fn on_stop_replica_response(
        &mut self,
        broker: i32,
        results: Vec<(TopicPartition, i16)>,
    ) -> Result<(), ZkError> {
        let mut touched = BTreeSet::new();
        for (tp, code) in results {
            if !self.ctx.is_deleting(&tp.topic) {
                continue;
            }
            let state = if code == 0 {
                ReplicaState::DeletionSuccessful
            } else {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, broker,
                    error_code = code, "replica deletion failed; will retry");
                ReplicaState::DeletionIneligible
            };
            self.ctx.replica_states.insert((tp.clone(), broker), state);
            touched.insert(tp.topic);
        }
        if touched.is_empty() {
            return Ok(());
        }
        self.resume_deletions().await
    }

    async fn complete_deletion(&mut self, topic: &str) -> Result<(), ZkError> {
        self.zk
            .get()
            .delete_topic_znodes(topic, self.ctx.epoch_zk_version)
            .await?;
        self.ctx.remove_topic(topic);
        tracing::info!(topic, "topic deleted");
        Ok(())
    }
}
