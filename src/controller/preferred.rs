//! Preferred leader elections (reference §1 `/admin/preferred_replica_election`, §3 "Auto
//! rebalance"): requested through the znode, or triggered by the periodic leader-imbalance check
//! while `auto.leader.rebalance.enable` is on.
//!
//! Both end in the Preferred strategy of `election`: the first assigned replica leads again if
//! it is live and in the ISR, otherwise nothing changes.

use std::collections::BTreeSet;
use std::time::Duration;

use super::context::PartitionState;
use super::election::{imbalanced_partitions, Strategy};
use super::event_loop::{arm, Controller};
use super::request_batch::RequestBatch;
use super::Event;
use crate::common::TopicPartition;
use crate::zk::ZkError;

/// Kafka's scheduler runs the first imbalance check this long after failover.
const FIRST_REBALANCE_CHECK: Duration = Duration::from_secs(5);

impl Controller {
    /// `/admin/preferred_replica_election` changed (or failover found it): run the listed
    /// elections, delete the znode (epoch-checked, as Kafka does, whatever the outcome) and
    /// re-arm the watch.
    pub(super) async fn on_preferred_replica_election(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let partitions = match zk.get_preferred_replica_election_and_watch().await {
            Ok((request, w)) => {
                arm(w, &self.events, Event::PreferredReplicaElection);
                match request {
                    Some(p) => p,
                    None => return Ok(()),
                }
            }
            Err(e @ ZkError::MalformedData { .. }) => {
                // Nothing can ever run from it: drop it, then come back to watch the path.
                tracing::warn!(error = %e, "discarding a malformed preferred replica election request");
                zk.delete_preferred_replica_election(self.ctx.epoch_zk_version)
                    .await?;
                let _ = self.events.send(Event::PreferredReplicaElection);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let partitions: BTreeSet<TopicPartition> = partitions
            .into_iter()
            .map(|(topic, partition)| TopicPartition { topic, partition })
            .collect();
        tracing::info!(
            partitions = partitions.len(),
            "preferred replica election requested in ZooKeeper"
        );
        self.preferred_elections(&partitions, "zookeeper").await?;
        zk.delete_preferred_replica_election(self.ctx.epoch_zk_version)
            .await
    }

    /// Runs the Preferred election for each partition that exists, is not being deleted and is
    /// not led by its preferred replica already; logs which ones ended with the preferred leader.
    async fn preferred_elections(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        trigger: &str,
    ) -> Result<(), ZkError> {
        let mut batch = RequestBatch::new();
        let result = self
            .elect_preferred_in(partitions, trigger, &mut batch)
            .await;
        // Whatever was written before a failure must still reach the brokers.
        self.send(batch);
        result
    }

    async fn elect_preferred_in(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        trigger: &str,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        let mut todo = Vec::new();
        for tp in partitions {
            let Some(&preferred) = self.ctx.replicas(tp).first() else {
                tracing::info!(topic = %tp.topic, partition = tp.partition, trigger,
                    "skipping preferred election: no such partition");
                continue;
            };
            if self.ctx.is_deleting(&tp.topic) {
                tracing::info!(topic = %tp.topic, partition = tp.partition, trigger,
                    "skipping preferred election: topic is being deleted");
                continue;
            }
            match self.ctx.leadership.get(tp).map(|l| l.state.leader) {
                Some(current) if current != preferred => todo.push(tp.clone()),
                _ => {}
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let zk = self.zk.get();
        let failed = self
            .partition_sm(&zk, batch)
            .handle_state_changes(&todo, PartitionState::Online, Strategy::Preferred)
            .await?;
        tracing::info!(
            trigger,
            elected = todo.len() - failed.len(),
            failed = failed.len(),
            "preferred replica elections"
        );
        for (tp, why) in failed {
            tracing::debug!(topic = %tp.topic, partition = tp.partition, trigger, ?why,
                "preferred replica election did not complete");
        }
        Ok(())
    }

    pub(super) fn start_auto_rebalance(&self, epoch: i32) {
        if !self.config.auto_leader_rebalance_enable {
            return;
        }
        let interval = Duration::from_secs(self.config.leader_imbalance_check_interval_seconds);
        let handle = self.handle.clone();
        let events = self.events.clone();
        let broker = self.broker_id;
        tokio::spawn(async move {
            let mut delay = FIRST_REBALANCE_CHECK.min(interval);
            loop {
                tokio::time::sleep(delay).await;
                if !handle.is_active() || handle.epoch() != epoch {
                    tracing::debug!(broker, epoch, "leader imbalance timer stopped");
                    return;
                }
                if events.send(Event::AutoRebalance).is_err() {
                    return;
                }
                delay = interval;
            }
        });
    }

    /// The periodic check: for every broker whose leader imbalance is above
    /// `leader.imbalance.per.broker.percentage`, preferred elections for the partitions it
    /// should lead and can (live, not shutting down, in the ISR).
    pub(super) async fn on_auto_rebalance(&mut self) -> Result<(), ZkError> {
        let imbalanced = imbalanced_partitions(
            &self.ctx.assignments,
            |tp| self.ctx.leadership.get(tp).map(|l| l.state.leader),
            |topic| self.ctx.is_deleting(topic),
            self.config.leader_imbalance_per_broker_percentage,
        );
        for (broker, not_led) in imbalanced {
            let candidates: BTreeSet<TopicPartition> = not_led
                .iter()
                .filter(|tp| {
                    self.ctx.can_lead_replica(tp, broker)
                        && self
                            .ctx
                            .leadership
                            .get(*tp)
                            .is_some_and(|l| l.state.isr.contains(&broker))
                })
                .cloned()
                .collect();
            tracing::debug!(
                broker,
                not_led = not_led.len(),
                electable = candidates.len(),
                "leader imbalance above threshold"
            );
            if !candidates.is_empty() {
                tracing::info!(
                    broker,
                    partitions = candidates.len(),
                    "auto rebalance: preferred elections"
                );
                self.preferred_elections(&candidates, "auto-rebalance")
                    .await?;
            }
        }
        Ok(())
    }
}
