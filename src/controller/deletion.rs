//! Topic deletion (Kafka's `TopicDeletionManager`), driven through the two state machines.
//!
//! A queued topic whose replicas are all on live brokers starts: every broker drops it from its
//! metadata (UpdateMetadata with leader -2), its replicas go Offline and then DeletionStarted
//! (StopReplica with delete=true, one request per broker for all of them). Each broker's answer
//! moves replicas to DeletionSuccessful or DeletionIneligible; when every replica succeeded the
//! znodes are removed (pipelined) and the topic is forgotten. Ineligible replicas are retried
//! on the next trigger (a broker starting, a new deletion request, a failover), never in a
//! loop on the failed answer itself. A topic with a replica on a dead broker waits for it.
//!
//! Unlike Kafka, the Offline step does not first take each replica out of the ISR in
//! ZooKeeper: the state znodes are about to be deleted, and those writes would be the bulk of
//! a large topic's deletion cost.

use std::collections::BTreeSet;

use super::context::{ControllerContext, PartitionState, ReplicaState};
use super::replica_sm::ReplicaStateMachine;
use super::request_batch::RequestBatch;
use crate::common::TopicPartition;
use crate::zk::{KafkaZkClient, ZkError};

pub(super) struct TopicDeletionManager<'a> {
    pub ctx: &'a mut ControllerContext,
    pub zk: &'a KafkaZkClient,
    pub batch: &'a mut RequestBatch,
}

impl TopicDeletionManager<'_> {
    fn replica_sm(&mut self) -> ReplicaStateMachine<'_> {
        ReplicaStateMachine {
            ctx: self.ctx,
            zk: self.zk,
            batch: self.batch,
        }
    }

    /// Starts or continues the deletion of every queued topic; with `retry_ineligible`, replicas
    /// whose deletion failed before are tried again.
    ///
    /// # Errors
    /// ZooKeeper failures (the event is retried).
    pub async fn resume(&mut self, retry_ineligible: bool) -> Result<(), ZkError> {
        let topics: Vec<String> = self.ctx.topics_to_delete.iter().cloned().collect();
        for topic in topics {
            let replicas = self.ctx.replicas_of_topic(&topic);
            let pending: Vec<(TopicPartition, i32)> = replicas
                .iter()
                .filter(|(tp, r)| {
                    self.ctx.replica_state(tp, *r) != ReplicaState::DeletionSuccessful
                })
                .cloned()
                .collect();
            if pending.is_empty() {
                self.complete(&topic).await?;
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
                let offline: Vec<_> = pending
                    .iter()
                    .filter(|(tp, r)| {
                        !self.ctx.is_live(*r)
                            && self.ctx.replica_state(tp, *r) != ReplicaState::DeletionIneligible
                    })
                    .cloned()
                    .collect();
                self.fail_replica_deletion(&offline).await?;
                continue;
            }
            if self.ctx.deletion_started.insert(topic.clone()) {
                tracing::info!(topic = %topic, partitions = self.ctx.partitions_of(&topic).len(),
                    "deleting topic");
                let partitions = self.ctx.partitions_of(&topic);
                let live = self.ctx.live_ids();
                // Leader -2 (LeaderDuringDelete) makes brokers drop the partitions from metadata.
                self.batch.add_update_metadata(&live, &partitions);
            }
            let start: Vec<_> = pending
                .into_iter()
                .filter(|(tp, r)| match self.ctx.replica_state(tp, *r) {
                    ReplicaState::DeletionStarted => false,
                    ReplicaState::DeletionIneligible => retry_ineligible,
                    _ => true,
                })
                .collect();
            self.replica_sm()
                .handle_state_changes(&start, ReplicaState::Offline)
                .await?;
            self.replica_sm()
                .handle_state_changes(&start, ReplicaState::DeletionStarted)
                .await?;
        }
        Ok(())
    }

    /// Replicas that cannot be deleted now (their broker is gone) → DeletionIneligible, through
    /// Offline unless their deletion had already started (Kafka's `failReplicaDeletion`).
    pub async fn fail_replica_deletion(
        &mut self,
        replicas: &[(TopicPartition, i32)],
    ) -> Result<(), ZkError> {
        let not_started: Vec<_> = replicas
            .iter()
            .filter(|(tp, r)| self.ctx.replica_state(tp, *r) != ReplicaState::DeletionStarted)
            .cloned()
            .collect();
        self.replica_sm()
            .handle_state_changes(&not_started, ReplicaState::Offline)
            .await?;
        self.replica_sm()
            .handle_state_changes(replicas, ReplicaState::DeletionIneligible)
            .await
    }

    /// A broker answered StopReplica(delete=true): record each replica's outcome.
    ///
    /// # Errors
    /// ZooKeeper failures while completing a topic.
    pub async fn on_stop_replica_response(
        &mut self,
        broker: i32,
        results: Vec<(TopicPartition, Option<String>)>,
    ) -> Result<(), ZkError> {
        let mut succeeded = Vec::new();
        let mut ineligible = Vec::new();
        for (tp, error) in results {
            if !self.ctx.is_deleting(&tp.topic) {
                continue;
            }
            match error {
                None => succeeded.push((tp, broker)),
                Some(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, broker,
                        error = %e, "replica deletion failed; retried on the next trigger");
                    ineligible.push((tp, broker));
                }
            }
        }
        if succeeded.is_empty() && ineligible.is_empty() {
            return Ok(());
        }
        self.replica_sm()
            .handle_state_changes(&succeeded, ReplicaState::DeletionSuccessful)
            .await?;
        self.replica_sm()
            .handle_state_changes(&ineligible, ReplicaState::DeletionIneligible)
            .await?;
        self.resume(false).await
    }

    /// Every replica is deleted: replicas and partitions to NonExistent, znodes removed.
    async fn complete(&mut self, topic: &str) -> Result<(), ZkError> {
        // ZooKeeper first: if this fails the topic is still fully tracked and the retry finds
        // every replica DeletionSuccessful and comes straight back here.
        self.zk
            .delete_topic_znodes(topic, self.ctx.epoch_zk_version)
            .await?;
        let replicas = self.ctx.replicas_of_topic(topic);
        self.replica_sm()
            .handle_state_changes(&replicas, ReplicaState::NonExistent)
            .await?;
        for tp in self.ctx.partitions_of(topic) {
            // Offline first, as Kafka's state machine requires, then gone.
            if PartitionState::Offline.can_follow(self.ctx.partition_state(&tp)) {
                self.ctx
                    .partition_states
                    .insert(tp.clone(), PartitionState::Offline);
            }
        }
        self.ctx.remove_topic(topic);
        tracing::info!(topic, epoch = self.ctx.epoch, "topic deleted");
        Ok(())
    }
}
