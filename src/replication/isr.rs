//! The leader's side of ISR management (Kafka 2.x with IBP < 2.7-IV2, reference §5): the
//! periodic shrink check (`replica.lag.time.max.ms / 2`), the conditional write of the partition
//! state znode with the leader epoch unchanged, and the batched `isr_change_<seq>` notifications
//! the controller turns into UpdateMetadata.
//!
//! Proposals from the fetch path (expansion) and the shrink check go through one writer task, so
//! ZooKeeper writes never run under a partition lock and at most one per partition is in flight.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::manager::ReplicaManager;
use super::partition::{IsrProposal, IsrWriteOutcome, Partition};
use crate::zk::{LeaderIsrAndControllerEpoch, ZkError};

/// Kafka's `ReplicaManager` propagation constants.
const PROPAGATION_CHECK: Duration = Duration::from_millis(2500);
const PROPAGATION_QUIET_MS: i64 = 5000;
const PROPAGATION_MAX_DELAY_MS: i64 = 60_000;

/// Partitions whose ISR this leader changed, waiting to be announced.
#[derive(Debug, Default)]
pub(super) struct PendingIsrChanges {
    partitions: BTreeSet<(String, i32)>,
    last_change_ms: i64,
    last_propagation_ms: i64,
}

impl PendingIsrChanges {
    pub(super) fn record(&mut self, topic: &str, partition: i32, now_ms: i64) {
        self.partitions.insert((topic.to_string(), partition));
        self.last_change_ms = now_ms;
    }

    /// Kafka's `maybePropagateIsrChanges` rule: something queued and either no change for 5 s
    /// (changes come in bursts) or nothing announced for 60 s.
    fn take_if_due(&mut self, now_ms: i64) -> Option<Vec<(String, i32)>> {
        if self.partitions.is_empty() {
            return None;
        }
        let quiet = now_ms - self.last_change_ms >= PROPAGATION_QUIET_MS;
        let overdue = now_ms - self.last_propagation_ms >= PROPAGATION_MAX_DELAY_MS;
        if !(quiet || overdue) {
            return None;
        }
        self.last_propagation_ms = now_ms;
        Some(std::mem::take(&mut self.partitions).into_iter().collect())
    }
}

pub(super) type IsrRequest = (Arc<Partition>, IsrProposal);

impl ReplicaManager {
    /// Queues a leader's ISR proposal for the writer task.
    pub(super) fn submit_isr(&self, partition: Arc<Partition>, proposal: IsrProposal) {
        if self
            .inner
            .isr_tx
            .send((partition.clone(), proposal.clone()))
            .is_err()
        {
            // The writer is gone (shutdown): give the partition back its ability to propose.
            partition.complete_isr_update(&proposal, IsrWriteOutcome::Rejected);
        }
    }

    async fn write_isr(&self, partition: &Partition, proposal: &IsrProposal) -> IsrWriteOutcome {
        let tp = partition.topic_partition();
        let state = LeaderIsrAndControllerEpoch {
            leader: proposal.leader,
            leader_epoch: proposal.leader_epoch,
            isr: proposal.isr.clone(),
            controller_epoch: proposal.controller_epoch,
        };
        let zk = self.inner.zk.get();
        match zk
            .update_partition_state_as_leader(&tp.topic, tp.partition, &state, proposal.zk_version)
            .await
        {
            Ok(version) => IsrWriteOutcome::Written(version),
            Err(ZkError::BadVersion { .. }) => {
                // Kafka re-reads: the same content (our earlier write whose reply was lost)
                // counts as success; anything else means the controller moved on.
                match zk.get_partition_state(&tp.topic, tp.partition).await {
                    Ok(Some((current, version)))
                        if current.leader == state.leader
                            && current.leader_epoch == state.leader_epoch
                            && current.isr == state.isr =>
                    {
                        IsrWriteOutcome::Written(version)
                    }
                    _ => IsrWriteOutcome::Rejected,
                }
            }
            Err(e) => {
                tracing::warn!(topic = %tp.topic, partition = tp.partition,
                    epoch = proposal.leader_epoch, error = %e, "ISR write failed");
                IsrWriteOutcome::Rejected
            }
        }
    }

    /// The writer task: one ZooKeeper write at a time, then the partition adopts the result.
    pub(super) async fn run_isr_writer(self, mut rx: mpsc::UnboundedReceiver<IsrRequest>) {
        while let Some((partition, proposal)) = rx.recv().await {
            let outcome = self.write_isr(&partition, &proposal).await;
            let tp = partition.topic_partition();
            match &outcome {
                IsrWriteOutcome::Written(version) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition,
                        epoch = proposal.leader_epoch, isr = ?proposal.isr, zk_version = version,
                        "ISR updated");
                    self.pending_isr_changes().record(
                        &tp.topic,
                        tp.partition,
                        super::partition::now_ms(),
                    );
                }
                IsrWriteOutcome::Rejected => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition,
                        epoch = proposal.leader_epoch, isr = ?proposal.isr,
                        "ISR change not applied; waiting for the controller");
                }
            }
            if partition.complete_isr_update(&proposal, outcome) {
                self.wake(
                    partition.topic_partition(),
                    super::purgatory::Event::HighWatermark,
                );
            }
        }
    }

    /// The `isr-expiration` and `isr-change-propagation` schedules, until shutdown.
    pub(super) async fn run_isr_schedules(
        self,
        lag_max_ms: u64,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut shrink = tokio::time::interval(Duration::from_millis((lag_max_ms / 2).max(1)));
        let mut propagate = tokio::time::interval(PROPAGATION_CHECK);
        shrink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        propagate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = shrink.tick() => {
                    for p in self.all_partitions() {
                        if let Some(proposal) = p.maybe_shrink_isr() {
                            self.submit_isr(p, proposal);
                        }
                    }
                }
                _ = propagate.tick() => self.propagate_isr_changes().await,
            }
        }
    }

    async fn propagate_isr_changes(&self) {
        let due = self
            .pending_isr_changes()
            .take_if_due(super::partition::now_ms());
        let Some(partitions) = due else { return };
        match self
            .inner
            .zk
            .get()
            .create_isr_change_notification(&partitions)
            .await
        {
            Ok(()) => tracing::debug!(count = partitions.len(), "ISR change notification written"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write ISR change notification; retrying later");
                let now = super::partition::now_ms();
                let mut pending = self.pending_isr_changes();
                for (t, p) in &partitions {
                    pending.record(t, *p, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_waits_for_quiet_or_overdue() {
        let mut p = PendingIsrChanges::default();
        assert_eq!(p.take_if_due(100_000), None);
        p.record("t", 0, 100_000);
        p.last_propagation_ms = 99_000;
        // 1 s after the change and announced 2 s ago: wait for the burst to end.
        assert_eq!(p.take_if_due(101_000), None);
        // 5 s of quiet: announce.
        assert_eq!(p.take_if_due(105_000), Some(vec![("t".to_string(), 0)]));
        assert_eq!(p.take_if_due(106_000), None);
        // A steady stream of changes is still announced once a minute.
        for i in 0..70 {
            p.record("t", 1, 105_000 + i * 1000);
        }
        assert_eq!(p.take_if_due(165_000), Some(vec![("t".to_string(), 1)]));
    }
}
