//! The controller's notification queues: ISR changes written by partition leaders
//! (`/isr_change_notification`) and log-directory failures (`/log_dir_event_notification`,
//! KIP-112), with what the latter leads to: the LeaderAndIsr answers that name the replicas on a
//! failed directory, and their leadership moving to replicas that are still online (Kafka's
//! `processLogDirEventNotification`, `onBrokerLogDirFailure`, `handleLeaderAndIsrResponseReceived`
//! and `onReplicasBecomeOffline`).

use std::collections::BTreeSet;

use super::context::ReplicaState;
use super::event_loop::{arm, Controller};
use super::request_batch::RequestBatch;
use super::Event;
use crate::common::TopicPartition;
use crate::zk::{KafkaZkClient, ZkError};

impl Controller {
    /// Leaders wrote ISR changes: refresh them (pipelined) and tell every broker.
    pub(super) async fn on_isr_change(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (children, w) = zk.get_isr_change_notifications_and_watch().await?;
        arm(w, &self.events, Event::IsrChangeNotification);
        if children.is_empty() {
            return Ok(());
        }
        let mut changed = BTreeSet::new();
        for c in &children {
            for (topic, partition) in zk.read_isr_change_notification(c).await? {
                changed.insert(TopicPartition { topic, partition });
            }
        }
        let known: Vec<TopicPartition> = changed
            .into_iter()
            .filter(|tp| self.ctx.assignments.contains_key(&tp.topic))
            .collect();
        let refreshed = self.refresh_leadership(&zk, &known).await?;
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&self.ctx.live_ids(), &refreshed);
        self.send(batch);
        zk.delete_isr_change_notifications(&children, self.ctx.epoch_zk_version)
            .await
    }

    /// A new controller asks every live replica with LeaderAndIsr anyway, and learns the
    /// failed directories from the answers; pending events are dropped, as Kafka's failover
    /// does, but their watch is armed.
    pub(super) async fn drop_log_dir_events(&mut self, zk: &KafkaZkClient) -> Result<(), ZkError> {
        let (events, w) = zk.get_log_dir_events_and_watch().await?;
        arm(w, &self.events, Event::LogDirEventNotification);
        if !events.is_empty() {
            zk.delete_log_dir_events(&events, self.ctx.epoch_zk_version)
                .await?;
        }
        Ok(())
    }

    /// `/log_dir_event_notification` changed: each broker named gets LeaderAndIsr for every
    /// replica it holds (Kafka's `onBrokerLogDirFailure`, an Online → Online transition); the
    /// replicas it answers KAFKA_STORAGE_ERROR for come back as
    /// [`Event::LeaderAndIsrStorageErrors`].
    pub(super) async fn on_log_dir_event(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (children, w) = zk.get_log_dir_events_and_watch().await?;
        arm(w, &self.events, Event::LogDirEventNotification);
        if children.is_empty() {
            return Ok(());
        }
        let mut brokers = BTreeSet::new();
        for c in &children {
            match zk.read_log_dir_event(c).await {
                Ok(Some(b)) => {
                    brokers.insert(b);
                }
                Ok(None) => {}
                // One undecodable notification must not hold up the others.
                Err(ZkError::MalformedData { .. }) => {
                    tracing::warn!(broker = self.broker_id, child = %c, "skipping undecodable log dir event");
                }
                Err(e) => return Err(e),
            }
        }
        let replicas: Vec<(TopicPartition, i32)> = brokers
            .iter()
            .filter(|b| self.ctx.is_live(**b))
            .flat_map(|b| {
                self.ctx
                    .partitions_on_broker(*b)
                    .into_iter()
                    .map(move |tp| (tp, *b))
            })
            .collect();
        tracing::info!(broker = self.broker_id, failed = ?brokers, replicas = replicas.len(),
            "log directory failure reported; asking the brokers for their offline replicas");
        let mut batch = RequestBatch::new();
        let result = self
            .replica_sm(&zk, &mut batch)
            .handle_state_changes(&replicas, ReplicaState::Online)
            .await;
        self.send(batch);
        result?;
        zk.delete_log_dir_events(&children, self.ctx.epoch_zk_version)
            .await
    }

    /// `broker` answered KAFKA_STORAGE_ERROR for `offline`: those replicas are on a failed
    /// directory. The partitions they led get new leaders from the replicas still online, and
    /// they leave every ISR (Kafka's `onReplicasBecomeOffline`).
    pub(super) async fn on_storage_errors(
        &mut self,
        broker: i32,
        offline: Vec<TopicPartition>,
    ) -> Result<(), ZkError> {
        if !self.ctx.is_live(broker) {
            return Ok(());
        }
        let known = self.ctx.offline_dir_replicas.entry(broker).or_default();
        let mut new = Vec::new();
        for tp in offline {
            if known.insert(tp.clone()) {
                new.push(tp);
            }
        }
        let new: Vec<TopicPartition> = new
            .into_iter()
            .filter(|tp| self.ctx.replicas(tp).contains(&broker))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            broker = self.broker_id,
            replica_broker = broker,
            partitions = new.len(),
            "replicas on a failed log directory are offline"
        );
        let led: Vec<TopicPartition> = new
            .iter()
            .filter(|tp| {
                !self.ctx.is_deleting(&tp.topic)
                    && self
                        .ctx
                        .leadership
                        .get(*tp)
                        .is_some_and(|l| l.state.leader == broker)
            })
            .cloned()
            .collect();
        let (deleting, replicas): (Vec<_>, Vec<_>) = new
            .into_iter()
            .map(|tp| (tp, broker))
            .partition(|(tp, _)| self.ctx.is_deleting(&tp.topic));
        let zk = self.zk.get();
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&self.ctx.live_ids(), &[]);
        let result = self
            .replicas_gone(&zk, &led, &replicas, &deleting, &mut batch)
            .await;
        self.send(batch);
        result
    }
}
