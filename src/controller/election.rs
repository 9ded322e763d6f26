//! Leader choice (reference §3 "Strategies"), as pure functions the partition state machine
//! applies to a whole batch: new partitions, offline partitions (clean, or unclean when the
//! topic allows it), controlled shutdown and preferred replica; plus the per-broker leader
//! imbalance rule of the auto rebalance.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::TopicPartition;

/// How an election picks a partition's leader (Kafka's `PartitionLeaderElectionStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    /// The leader is gone: first live in-sync replica; unclean if the topic allows it.
    Offline,
    /// Move leadership off brokers that are shutting down.
    ControlledShutdown,
    /// Give leadership back to the first assigned replica.
    Preferred,
}

/// A leader and ISR chosen for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Choice {
    pub leader: i32,
    pub isr: Vec<i32>,
    /// Chosen from outside the ISR: data may be lost.
    pub unclean: bool,
}

/// New → Online: the first assigned replica that may lead; the ISR is every replica that may.
pub(super) fn new_partition_choice(
    assignment: &[i32],
    can_lead: impl Fn(i32) -> bool,
) -> Option<Choice> {
    let isr: Vec<i32> = assignment
        .iter()
        .copied()
        .filter(|r| can_lead(*r))
        .collect();
    let leader = *isr.first()?;
    Some(Choice {
        leader,
        isr,
        unclean: false,
    })
}

/// Offline → Online: the first assigned replica that may lead and is in the ISR, the ISR
/// narrowed to replicas that may lead. Without one, and only if `allow_unclean`, the first
/// assigned replica that may lead, alone in the ISR (Kafka's `offlinePartitionLeaderElection`).
pub(super) fn offline_choice(
    assignment: &[i32],
    isr: &[i32],
    can_lead: impl Fn(i32) -> bool,
    allow_unclean: bool,
) -> Option<Choice> {
    let live_isr: Vec<i32> = isr.iter().copied().filter(|r| can_lead(*r)).collect();
    if let Some(leader) = assignment.iter().copied().find(|r| live_isr.contains(r)) {
        return Some(Choice {
            leader,
            isr: live_isr,
            unclean: false,
        });
    }
    if !allow_unclean {
        return None;
    }
    let leader = assignment.iter().copied().find(|r| can_lead(*r))?;
    Some(Choice {
        leader,
        isr: vec![leader],
        unclean: true,
    })
}

/// Whether [`offline_choice`] would have to go outside the ISR (so the topic's unclean setting
/// matters): no in-sync replica may lead, but some assigned replica may.
pub(super) fn needs_unclean(
    assignment: &[i32],
    isr: &[i32],
    can_lead: impl Fn(i32) -> bool,
) -> bool {
    let clean = assignment.iter().any(|r| isr.contains(r) && can_lead(*r));
    !clean && assignment.iter().any(|r| can_lead(*r))
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

    #[test]
    fn new_partition_leader_is_the_first_replica_that_may_lead() {
        let c = new_partition_choice(&[3, 1, 2], |b| b != 3).unwrap();
        assert_eq!((c.leader, c.isr, c.unclean), (1, vec![1, 2], false));
        assert_eq!(new_partition_choice(&[1, 2], |_| false), None);
    }

    #[test]
    fn offline_prefers_assignment_order_within_the_live_isr() {
        let live = |b: i32| b != 1;
        // 1 (the old leader) is dead; 3 comes before 2 in the assignment.
        let c = offline_choice(&[1, 3, 2], &[1, 2, 3], live, false).unwrap();
        assert_eq!((c.leader, c.isr, c.unclean), (3, vec![2, 3], false));
    }

    #[test]
    fn offline_goes_unclean_only_when_allowed() {
        // Only 1 was in sync and it is dead; 2 is live but out of sync.
        let live = |b: i32| b == 2;
        assert_eq!(offline_choice(&[1, 2], &[1], live, false), None);
        assert!(needs_unclean(&[1, 2], &[1], live));
        let c = offline_choice(&[1, 2], &[1], live, true).unwrap();
        assert_eq!((c.leader, c.isr, c.unclean), (2, vec![2], true));
        // Nobody at all may lead: no choice, and the unclean setting is irrelevant.
        assert_eq!(offline_choice(&[1, 2], &[1], |_| false, true), None);
        assert!(!needs_unclean(&[1, 2], &[1], |_| false));
        // A clean choice exists: unclean is never needed.
        assert!(!needs_unclean(&[1, 2], &[1, 2], live));
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
