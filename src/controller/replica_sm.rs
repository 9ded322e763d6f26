//! The replica state machine (Kafka's `ZkReplicaStateMachine`): moves a batch of (partition,
//! broker) replicas between `NonExistent`, `New`, `Online`, `Offline` and the deletion states,
//! refusing (and logging) any transition whose previous state is not valid.
//!
//! Going Offline takes the replica out of the ISR of every partition in the batch at once: one
//! pipelined round of epoch-fenced writes conditional on the cached versions (more, on states
//! read afresh, only for those that changed underneath), then LeaderAndIsr to the remaining
//! replicas. An ISR is never emptied: the last member stays, as in Kafka, so a clean election
//! can still find it when it returns.

use std::collections::BTreeMap;

use super::context::{ControllerContext, Leadership, ReplicaState};
use super::partition_sm::states_to_decide_on;
use super::request_batch::RequestBatch;
use crate::common::{TopicPartition, NO_LEADER};
use crate::zk::{KafkaZkClient, LeaderIsrAndControllerEpoch, ZkError};

/// Rounds of conditional writes before an ISR removal that keeps conflicting is given up on.
const WRITE_ROUNDS: usize = 5;

pub(super) struct ReplicaStateMachine<'a> {
    pub ctx: &'a mut ControllerContext,
    pub zk: &'a KafkaZkClient,
    pub batch: &'a mut RequestBatch,
}

/// `state` without `broker`: out of the ISR (unless it is the last member) and no longer
/// leader; `None` if it already is.
fn without_replica(
    state: &LeaderIsrAndControllerEpoch,
    broker: i32,
    controller_epoch: i32,
) -> Option<LeaderIsrAndControllerEpoch> {
    let isr: Vec<i32> = if state.isr == [broker] {
        state.isr.clone()
    } else {
        state.isr.iter().copied().filter(|r| *r != broker).collect()
    };
    let leader = if state.leader == broker {
        NO_LEADER
    } else {
        state.leader
    };
    if leader == state.leader && isr == state.isr {
        return None;
    }
    Some(LeaderIsrAndControllerEpoch {
        leader,
        leader_epoch: state.leader_epoch + 1,
        isr,
        controller_epoch,
    })
}

impl ReplicaStateMachine<'_> {
    /// Moves `replicas` to `target`. Invalid transitions are refused and logged.
    ///
    /// # Errors
    /// `ControllerMoved` and session loss (from the ISR writes of an Offline transition).
    pub async fn handle_state_changes(
        &mut self,
        replicas: &[(TopicPartition, i32)],
        target: ReplicaState,
    ) -> Result<(), ZkError> {
        let mut offline: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for (tp, broker) in replicas {
            let current = self.ctx.replica_state(tp, *broker);
            if !target.can_follow(current) {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, broker = *broker,
                    from = ?current, to = ?target, epoch = self.ctx.epoch,
                    "illegal replica state transition refused");
                continue;
            }
            match target {
                ReplicaState::Online
                    if current != ReplicaState::New && self.ctx.leadership.contains_key(tp) =>
                {
                    self.batch
                        .add_leader_and_isr(self.ctx, &[*broker], tp, false);
                }
                ReplicaState::Offline => {
                    // The replica stops fetching; a dead broker's request is simply dropped.
                    self.batch.add_stop_replica(self.ctx, *broker, tp, false);
                    if !self.ctx.is_deleting(&tp.topic) {
                        offline.entry(*broker).or_default().push(tp.clone());
                    }
                }
                ReplicaState::DeletionStarted => {
                    self.batch.add_stop_replica(self.ctx, *broker, tp, true);
                }
                _ => {}
            }
            if target == ReplicaState::NonExistent {
                self.ctx.replica_states.remove(&(tp.clone(), *broker));
            } else {
                self.ctx
                    .replica_states
                    .insert((tp.clone(), *broker), target);
            }
        }
        for (broker, partitions) in offline {
            self.remove_from_isr(broker, partitions).await?;
        }
        Ok(())
    }

    /// LeaderAndIsr with `tp`'s current state to its replicas other than `broker`.
    fn tell_other_replicas(&mut self, tp: &TopicPartition, broker: i32) {
        let others: Vec<i32> = self
            .ctx
            .replicas(tp)
            .iter()
            .copied()
            .filter(|r| *r != broker)
            .collect();
        self.batch.add_leader_and_isr(self.ctx, &others, tp, false);
    }

    /// Kafka's `removeReplicasFromIsr` for one broker over a batch of partitions.
    async fn remove_from_isr(
        &mut self,
        broker: i32,
        mut todo: Vec<TopicPartition>,
    ) -> Result<(), ZkError> {
        // Only partitions whose cached state involves the broker can need a write; the znode
        // decides, as leaders may have changed the ISR since.
        todo.retain(|tp| {
            self.ctx
                .leadership
                .get(tp)
                .is_some_and(|l| l.state.leader == broker || l.state.isr.contains(&broker))
        });
        for round in 0..WRITE_ROUNDS {
            if todo.is_empty() {
                return Ok(());
            }
            let states =
                states_to_decide_on(self.ctx, self.zk, std::mem::take(&mut todo), round == 0)
                    .await?;
            let mut writes = Vec::new();
            for (tp, leadership) in states {
                let Some(Leadership { state, zk_version }) = leadership else {
                    continue;
                };
                match without_replica(&state, broker, self.ctx.epoch) {
                    Some(new_state) => writes.push((tp, new_state, zk_version)),
                    None => {
                        // Already without the replica. If the znode moved on from what we
                        // knew (our own write whose answer was lost, say), the replicas must
                        // still hear of it.
                        let known = self.ctx.leadership.get(&tp).map(|l| l.zk_version);
                        self.ctx
                            .leadership
                            .insert(tp.clone(), Leadership { state, zk_version });
                        if known != Some(zk_version) {
                            self.tell_other_replicas(&tp, broker);
                        }
                    }
                }
            }
            let outcomes = self
                .zk
                .update_partition_states_batch(&writes, self.ctx.epoch_zk_version)
                .await?;
            let mut removed = 0usize;
            for ((tp, state, _), outcome) in writes.into_iter().zip(outcomes) {
                match outcome {
                    Ok(zk_version) => {
                        self.ctx
                            .leadership
                            .insert(tp.clone(), Leadership { state, zk_version });
                        self.tell_other_replicas(&tp, broker);
                        removed += 1;
                    }
                    Err(e) if e.is_retriable() || matches!(e, ZkError::BadVersion { .. }) => {
                        todo.push(tp)
                    }
                    Err(e) => {
                        tracing::warn!(topic = %tp.topic, partition = tp.partition, broker,
                            error = %e, "cannot remove replica from ISR");
                    }
                }
            }
            if removed > 0 {
                tracing::info!(
                    broker,
                    partitions = removed,
                    epoch = self.ctx.epoch,
                    "replica removed from ISR"
                );
            }
        }
        for tp in todo {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, broker,
                "partition state kept changing; ISR removal skipped");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: i32, isr: &[i32]) -> LeaderIsrAndControllerEpoch {
        LeaderIsrAndControllerEpoch {
            leader,
            leader_epoch: 4,
            isr: isr.to_vec(),
            controller_epoch: 1,
        }
    }

    #[test]
    fn a_removed_leader_leaves_no_leader_and_bumps_the_epoch() {
        let s = without_replica(&state(1, &[1, 2, 3]), 1, 7).unwrap();
        assert_eq!(
            (s.leader, s.isr.as_slice(), s.leader_epoch),
            (NO_LEADER, &[2, 3][..], 5)
        );
        assert_eq!(s.controller_epoch, 7);
    }

    #[test]
    fn a_removed_follower_keeps_the_leader() {
        let s = without_replica(&state(1, &[1, 2, 3]), 3, 7).unwrap();
        assert_eq!((s.leader, s.isr.as_slice()), (1, &[1, 2][..]));
    }

    #[test]
    fn the_last_isr_member_stays() {
        let s = without_replica(&state(2, &[2]), 2, 7).unwrap();
        assert_eq!((s.leader, s.isr.as_slice()), (NO_LEADER, &[2][..]));
        // Already recorded as offline: nothing to write.
        assert_eq!(without_replica(&state(NO_LEADER, &[2]), 2, 7), None);
        // Not involved at all.
        assert_eq!(without_replica(&state(1, &[1, 3]), 2, 7), None);
    }
}
