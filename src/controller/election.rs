//! Leader elections for partitions that already have a leader (reference §3 "Strategies"): the
//! ControlledShutdown and Preferred strategies as pure choice functions, the per-broker leader
//! imbalance rule of the auto rebalance, and the conditional state write that applies a choice.
//!
//! The Offline strategy (and New→Online) stays in `state`, next to the broker-failure path.

use std::collections::{BTreeMap, BTreeSet};

use super::channel::RequestBatch;
use super::context::ControllerContext;
use super::core::Controller;
use super::state::STATE_WRITE_ATTEMPTS;
use crate::log::TopicPartition;
use crate::zk::ZkError;

/// How a partition with a current leader picks a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    /// Move leadership off brokers that are shutting down.
    ControlledShutdown,
    /// Give leadership back to the first assigned replica.
    Preferred,
}

/// ControlledShutdown: the first assigned replica that is live (shutting-down brokers count as
/// live), in the ISR and not shutting down; the ISR loses every shutting-down broker.
pub(super) fn controlled_shutdown_choice(
    assignment: &[i32],
    isr: &[i32],
    is_live: impl Fn(i32) -> bool,
    shutting_down: &BTreeSet<i32>,
) -> Option<(i32, Vec<i32>)> {
    let leader = assignment
        .iter()
        .copied()
        .find(|r| is_live(*r) && isr.contains(r) && !shutting_down.contains(r))?;
    let new_isr = isr
        .iter()
        .copied()
        .filter(|r| !shutting_down.contains(r))
        .collect();
    Some((leader, new_isr))
}

/// Preferred: only `assignment[0]`, and only if it may lead (live, not shutting down) and is in
/// the ISR; the ISR is unchanged.
pub(super) fn preferred_choice(
    assignment: &[i32],
    isr: &[i32],
    can_lead: impl Fn(i32) -> bool,
) -> Option<(i32, Vec<i32>)> {
    let preferred = *assignment.first()?;
    (can_lead(preferred) && isr.contains(&preferred)).then(|| (preferred, isr.to_vec()))
}

/// The auto-rebalance rule: for each preferred broker b (the first replica of a partition),
/// imbalance = |preferred = b ∧ leader ≠ b| ÷ |preferred = b|. Returns, for every broker whose
/// imbalance exceeds `percentage`%, the partitions it should lead but does not. Topics being
/// deleted are left out of both counts; partitions without leadership are never "not led".
pub(super) fn imbalanced_partitions(
    assignments: &BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
    leader_of: impl Fn(&TopicPartition) -> Option<i32>,
    is_deleting: impl Fn(&str) -> bool,
    percentage: u32,
) -> BTreeMap<i32, Vec<TopicPartition>> {
    // broker → (partitions it is preferred for, those it does not lead)
    let mut per_broker: BTreeMap<i32, (usize, Vec<TopicPartition>)> = BTreeMap::new();
    for (topic, parts) in assignments {
        if is_deleting(topic) {
            continue;
        }
        for (p, replicas) in parts {
            let Some(&preferred) = replicas.first() else {
                continue;
            };
            let tp = TopicPartition {
                topic: topic.clone(),
                partition: *p,
            };
            let entry = per_broker.entry(preferred).or_default();
            entry.0 += 1;
            if leader_of(&tp).is_some_and(|l| l != preferred) {
                entry.1.push(tp);
            }
        }
    }
    per_broker
        .into_iter()
        .filter(|(_, (total, not_led))| {
            // not_led / total > percentage / 100, in integers.
            *total > 0 && not_led.len() as u64 * 100 > u64::from(percentage) * *total as u64
        })
        .map(|(b, (_, not_led))| (b, not_led))
        .collect()
}

impl ControllerContext {
    /// Whether `broker` may be chosen as a leader: live and not shutting down.
    pub fn can_lead(&self, broker: i32) -> bool {
        self.is_live(broker) && !self.shutting_down.contains(&broker)
    }
}

impl Controller {
    /// Online → Online with `strategy`: leader epoch + 1, conditional write fenced on the
    /// controller epoch, LeaderAndIsr to the live replicas and UpdateMetadata to all. Returns
    /// whether leadership was written; `false` means the strategy found no leader (nothing is
    /// written, the partition keeps its leader) or the znode kept changing under us.
    pub(super) async fn elect_leader(
        &mut self,
        tp: &TopicPartition,
        strategy: Strategy,
        batch: &mut RequestBatch,
    ) -> Result<bool, ZkError> {
        // Leaders change the ISR without telling the controller at once (isr_change
        // notifications are batched), so decide on the znode, as Kafka's
        // doElectLeaderForPartitions does, not on the cache.
        self.refresh_leadership(tp).await?;
        for _ in 0..STATE_WRITE_ATTEMPTS {
            let Some(current) = self.ctx.leadership.get(tp).cloned() else {
                return Ok(false);
            };
            if current.state.controller_epoch > self.ctx.epoch {
                return Err(ZkError::ControllerMoved {
                    detail: "partition state has a newer controller epoch".into(),
                });
            }
            let replicas = self.ctx.replicas(tp).to_vec();
            let choice = match strategy {
                Strategy::ControlledShutdown => controlled_shutdown_choice(
                    &replicas,
                    &current.state.isr,
                    |b| self.ctx.is_live(b),
                    &self.ctx.shutting_down,
                ),
                Strategy::Preferred => {
                    preferred_choice(&replicas, &current.state.isr, |b| self.ctx.can_lead(b))
                }
            };
            let Some((leader, isr)) = choice else {
                tracing::info!(topic = %tp.topic, partition = tp.partition, ?strategy,
                    leader = current.state.leader, isr = ?current.state.isr,
                    "no eligible leader; leadership unchanged");
                return Ok(false);
            };
            tracing::debug!(topic = %tp.topic, partition = tp.partition, ?strategy, leader,
                "leader chosen");
            if self
                .commit_election(tp, &current, leader, isr, batch)
                .await?
            {
                return Ok(true);
            }
        }
        tracing::warn!(topic = %tp.topic, partition = tp.partition, ?strategy,
            "partition state kept changing; election skipped");
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn controlled_shutdown_skips_the_shutting_down_broker() {
        let live = |b: i32| [1, 2, 3].contains(&b);
        assert_eq!(
            controlled_shutdown_choice(&[1, 2, 3], &[1, 2, 3], live, &set(&[1])),
            Some((2, vec![2, 3]))
        );
        // Assignment order decides, not ISR order.
        assert_eq!(
            controlled_shutdown_choice(&[1, 3, 2], &[2, 3, 1], live, &set(&[1])),
            Some((3, vec![2, 3]))
        );
    }

    #[test]
    fn controlled_shutdown_needs_a_live_isr_member() {
        let live = |b: i32| [1, 2].contains(&b);
        // 3 is in the ISR but dead, 2 is live but out of the ISR.
        assert_eq!(
            controlled_shutdown_choice(&[1, 2, 3], &[1, 3], live, &set(&[1])),
            None
        );
        // Every other ISR member is shutting down too.
        assert_eq!(
            controlled_shutdown_choice(&[1, 2], &[1, 2], live, &set(&[1, 2])),
            None
        );
    }

    #[test]
    fn controlled_shutdown_counts_shutting_down_brokers_as_live_only_for_the_isr() {
        // Two brokers shut down at once: both leave the ISR, the remaining one leads.
        let live = |b: i32| [1, 2, 3].contains(&b);
        assert_eq!(
            controlled_shutdown_choice(&[1, 2, 3], &[1, 2, 3], live, &set(&[1, 2])),
            Some((3, vec![3]))
        );
    }

    #[test]
    fn preferred_is_only_the_first_replica() {
        let all = |_: i32| true;
        assert_eq!(
            preferred_choice(&[2, 1, 3], &[1, 3, 2], all),
            Some((2, vec![1, 3, 2]))
        );
        // First replica out of the ISR: no fallback to the next one.
        assert_eq!(preferred_choice(&[2, 1, 3], &[1, 3], all), None);
        // First replica in the ISR but unable to lead (dead or shutting down).
        assert_eq!(preferred_choice(&[2, 1, 3], &[1, 2, 3], |b| b != 2), None);
        assert_eq!(preferred_choice(&[], &[1], all), None);
    }

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition {
            topic: t.into(),
            partition: p,
        }
    }

    #[test]
    fn imbalance_is_per_preferred_broker_and_strictly_above_the_threshold() {
        // Broker 1 is preferred for 10 partitions of "a"; broker 2 for 2 of "b".
        let mut assignments = BTreeMap::new();
        assignments.insert(
            "a".to_string(),
            (0..10).map(|p| (p, vec![1, 2])).collect::<BTreeMap<_, _>>(),
        );
        assignments.insert(
            "b".to_string(),
            (0..2).map(|p| (p, vec![2, 1])).collect::<BTreeMap<_, _>>(),
        );
        // a-0 led by 2 (1 of 10 = 10 %, not above 10 %); b-0 led by 1 (1 of 2 = 50 %).
        let leaders = |t: &TopicPartition| -> Option<i32> {
            match (t.topic.as_str(), t.partition) {
                ("a", 0) => Some(2),
                ("a", _) => Some(1),
                ("b", 0) => Some(1),
                _ => Some(2),
            }
        };
        let out = imbalanced_partitions(&assignments, leaders, |_| false, 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[&2], vec![tp("b", 0)]);
        // At 9 % broker 1 is above the threshold too.
        let out = imbalanced_partitions(&assignments, leaders, |_| false, 9);
        assert_eq!(out[&1], vec![tp("a", 0)]);
        assert_eq!(out[&2], vec![tp("b", 0)]);
    }

    #[test]
    fn imbalance_ignores_deleting_topics_and_leaderless_partitions() {
        let mut assignments = BTreeMap::new();
        assignments.insert("gone".to_string(), BTreeMap::from([(0, vec![1, 2])]));
        assignments.insert(
            "new".to_string(),
            BTreeMap::from([(0, vec![1, 2]), (1, vec![1, 2])]),
        );
        // "gone" is led by 2 but being deleted; "new" has no leadership yet.
        let leaders = |t: &TopicPartition| (t.topic == "gone").then_some(2);
        let out = imbalanced_partitions(&assignments, leaders, |t| t == "gone", 0);
        assert!(out.is_empty(), "{out:?}");
        // A leader of -1 (offline) is "not the preferred broker", as in Kafka.
        let offline = |_: &TopicPartition| Some(-1);
        let out = imbalanced_partitions(&assignments, offline, |t| t == "gone", 10);
        assert_eq!(out[&1], vec![tp("new", 0), tp("new", 1)]);
    }
}
