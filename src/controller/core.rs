//! The controller's event loop: election, failover, resignation, and the handlers for broker,
//! topic and notification changes (Kafka's `KafkaController`). State-machine transitions live in
//! `state`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::channel::{ChannelManager, RequestBatch};
use super::context::{ControllerContext, Leadership, PartitionState, ReplicaState};
use super::{ControllerHandle, Event};
use crate::config::KafkaConfig;
use crate::log::TopicPartition;
use crate::zk::{Watch, ZkError, ZkHandle};

/// Backoff before retrying an event that failed on a ZooKeeper connection problem.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Controller {
    pub(super) broker_id: i32,
    pub(super) config: Arc<KafkaConfig>,
    pub(super) zk: ZkHandle,
    pub(super) handle: ControllerHandle,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) ctx: ControllerContext,
    pub(super) channel: Option<ChannelManager>,
}

/// Forwards a one-shot ZooKeeper watch into the event queue.
pub(super) fn arm(watch: Watch, events: &mpsc::UnboundedSender<Event>, event: Event) {
    let events = events.clone();
    tokio::spawn(async move {
        let _ = watch.changed().await;
        let _ = events.send(event);
    });
}

impl Controller {
    pub(super) fn new(
        config: Arc<KafkaConfig>,
        zk: ZkHandle,
        handle: ControllerHandle,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Self {
            broker_id: config.broker_id,
            config,
            zk,
            handle,
            events,
            ctx: ControllerContext::default(),
            channel: None,
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.handle.active.load(Ordering::SeqCst)
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => break },
                _ = shutdown.changed() => break,
            };
            let name = format!("{event:?}");
            let retry = event.clone();
            if let Err(e) = self.process(event).await {
                match e {
                    ZkError::ControllerMoved { .. } => {
                        tracing::warn!(broker = self.broker_id, event = %name,
                            "controller moved while processing; resigning");
                        self.maybe_resign().await;
                    }
                    e => {
                        tracing::warn!(broker = self.broker_id, event = %name, error = %e,
                            "controller event failed; retrying");
                        // Re-run the whole handler later: each handler re-reads what it needs.
                        let events = self.events.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(RETRY_BACKOFF).await;
                            let _ = events.send(retry);
                        });
                    }
                }
            }
        }
        if self.is_active() {
            self.resign();
        }
        tracing::info!(broker = self.broker_id, "controller event loop stopped");
    }

    async fn process(&mut self, event: Event) -> Result<(), ZkError> {
        match event {
            Event::Startup => self.elect().await,
            Event::ControllerChange => self.on_controller_change().await,
            Event::SessionExpired => {
                if self.is_active() {
                    self.resign();
                }
                Ok(())
            }
            _ if !self.is_active() => Ok(()),
            Event::BrokerChange => self.on_broker_change().await,
            Event::TopicChange => self.on_topic_change().await,
            Event::PartitionModification(t) => self.on_partition_modification(&t).await,
            Event::TopicDeletion => self.on_topic_deletion().await,
            Event::IsrChangeNotification => self.on_isr_change().await,
            Event::StopReplicaResponse { broker, results } => {
                self.on_stop_replica_response(broker, results).await
            }
            Event::ControlledShutdown {
                broker,
                broker_epoch,
                reply,
            } => {
                self.on_controlled_shutdown(broker, broker_epoch, reply)
                    .await
            }
            Event::PreferredReplicaElection => self.on_preferred_replica_election().await,
            Event::AutoRebalance => self.on_auto_rebalance().await,
        }
    }

    /// `/controller` changed: re-arm the watch; resign if it is no longer ours; elect if it is gone.
    async fn on_controller_change(&mut self) -> Result<(), ZkError> {
        let (current, w) = self.zk.get().get_controller_and_watch().await?;
        arm(w, &self.events, Event::ControllerChange);
        match current {
            Some(id) if id == self.broker_id => Ok(()),
            Some(_) => {
                if self.is_active() {
                    self.resign();
                }
                Ok(())
            }
            None => {
                if self.is_active() {
                    self.resign();
                }
                self.elect().await
            }
        }
    }

    /// Kafka's `elect()` (reference §2).
    async fn elect(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (current, w) = zk.get_controller_and_watch().await?;
        arm(w, &self.events, Event::ControllerChange);
        if let Some(id) = current {
            if id == self.broker_id && !self.is_active() {
                // Our own znode from this session without an active controller: a previous
                // attempt failed half-way. Kafka resigns in this case so a clean election runs.
                tracing::warn!(
                    broker = self.broker_id,
                    "found own /controller while inactive"
                );
            }
            tracing::debug!(
                broker = self.broker_id,
                controller = id,
                "controller exists"
            );
            return Ok(());
        }
        match zk
            .register_controller_and_increment_epoch(self.broker_id)
            .await
        {
            Ok((epoch, epoch_zk_version)) => {
                tracing::info!(broker = self.broker_id, epoch, "elected controller");
                self.on_controller_failover(epoch, epoch_zk_version).await
            }
            Err(ZkError::ControllerMoved { .. }) => {
                let now = zk.get_controller_id().await?;
                tracing::info!(broker = self.broker_id, controller = ?now, "lost controller election");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Resign only if `/controller` is no longer ours (Kafka's `maybeResign`).
    async fn maybe_resign(&mut self) {
        let still_ours = matches!(
            self.zk.get().get_controller_id().await,
            Ok(Some(id)) if id == self.broker_id
        );
        if self.is_active() && !still_ours {
            self.resign();
        }
        // Try again in case `/controller` disappeared meanwhile.
        let _ = self.events.send(Event::ControllerChange);
    }

    pub(super) fn resign(&mut self) {
        tracing::info!(
            broker = self.broker_id,
            epoch = self.ctx.epoch,
            "resigning as controller"
        );
        self.handle.active.store(false, Ordering::SeqCst);
        if let Some(mut ch) = self.channel.take() {
            ch.shutdown();
        }
        self.ctx = ControllerContext::default();
    }

    /// Kafka's `onControllerFailover` (reference §2, steps 2–10).
    async fn on_controller_failover(
        &mut self,
        epoch: i32,
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        let zk = self.zk.get();
        self.ctx = ControllerContext {
            epoch,
            epoch_zk_version,
            ..Default::default()
        };
        self.handle.epoch.store(epoch, Ordering::SeqCst);
        self.handle.active.store(true, Ordering::SeqCst);

        let (_, w) = zk.get_broker_ids_and_watch().await?;
        arm(w, &self.events, Event::BrokerChange);
        let (topics, w) = zk.get_all_topics_and_watch().await?;
        arm(w, &self.events, Event::TopicChange);
        let (deletions, w) = zk.get_topic_deletions_and_watch().await?;
        arm(w, &self.events, Event::TopicDeletion);
        let (isr_changes, w) = zk.get_isr_change_notifications_and_watch().await?;
        arm(w, &self.events, Event::IsrChangeNotification);
        if !isr_changes.is_empty() {
            zk.delete_isr_change_notifications(&isr_changes, epoch_zk_version)
                .await?;
        }

        for (info, broker_epoch) in zk.get_all_brokers().await? {
            self.ctx.live_brokers.insert(info.id, (info, broker_epoch));
        }
        for topic in &topics {
            self.load_topic(topic).await?;
        }
        for topic in deletions {
            if self.ctx.assignments.contains_key(&topic) && self.config.delete_topic_enable {
                self.ctx.topics_to_delete.insert(topic);
            } else {
                zk.delete_topic_deletion_flag(&topic, epoch_zk_version)
                    .await?;
            }
        }

        let mut channel = ChannelManager::new(
            self.broker_id,
            Duration::from_millis(self.config.controller_socket_timeout_ms),
        );
        for (id, (info, _)) in &self.ctx.live_brokers {
            if let Some(ep) = info.endpoints.first() {
                channel.add_broker(*id, format!("{}:{}", ep.host, ep.port));
            }
        }
        self.channel = Some(channel);

        // Brokers learn endpoints before any LeaderAndIsr.
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&self.ctx.live_ids(), &[]);
        self.send(batch);

        let mut batch = RequestBatch::new();
        // Replica state machine start-up: replicas on live brokers Online, the rest Offline.
        for tp in self.ctx.all_partitions() {
            for r in self.ctx.replicas(&tp).to_vec() {
                let state = if self.ctx.is_live(r) {
                    if self.ctx.leadership.contains_key(&tp) {
                        batch.add_leader_and_isr(&self.ctx, &[r], &tp, false);
                    }
                    ReplicaState::Online
                } else {
                    ReplicaState::Offline
                };
                self.ctx.replica_states.insert((tp.clone(), r), state);
            }
        }
        // Replicas on dead brokers go Offline for real: out of the ISR (never emptying it) and
        // leader -1 where they led, so ZooKeeper shows the partitions as offline.
        let dead: BTreeSet<i32> = self
            .ctx
            .all_partitions()
            .iter()
            .flat_map(|tp| self.ctx.replicas(tp).to_vec())
            .filter(|r| !self.ctx.is_live(*r))
            .collect();
        for b in dead {
            self.replicas_offline(b, &mut batch).await?;
        }
        // Partition state machine start-up, then elect for New/Offline partitions.
        for tp in self.ctx.all_partitions() {
            let state = match self.ctx.leadership.get(&tp) {
                None => PartitionState::New,
                Some(l) if self.ctx.is_live(l.state.leader) => PartitionState::Online,
                Some(_) => PartitionState::Offline,
            };
            self.ctx.partition_states.insert(tp, state);
        }
        self.trigger_online_partition_state_change(&mut batch)
            .await?;
        // Every broker gets the whole picture once.
        batch.add_update_metadata(&self.ctx.live_ids(), &self.ctx.all_partitions());
        self.send(batch);
        self.resume_deletions().await?;
        self.on_preferred_replica_election().await?;
        self.start_auto_rebalance(epoch);
        tracing::info!(broker = self.broker_id, epoch, brokers = ?self.ctx.live_ids(),
            topics = self.ctx.assignments.len(), "controller failover complete");
        Ok(())
    }

    /// Reads a topic's assignment (watching it) and every partition's state znode into the context.
    async fn load_topic(&mut self, topic: &str) -> Result<bool, ZkError> {
        let zk = self.zk.get();
        let (assignment, w) = zk.get_topic_assignment_and_watch(topic).await?;
        arm(
            w,
            &self.events,
            Event::PartitionModification(topic.to_string()),
        );
        let Some(assignment) = assignment else {
            return Ok(false);
        };
        let partitions: Vec<i32> = assignment.partitions.keys().copied().collect();
        self.ctx
            .assignments
            .insert(topic.to_string(), assignment.partitions);
        for (p, (state, zk_version)) in zk.get_partition_states(topic, &partitions).await? {
            self.ctx.leadership.insert(
                TopicPartition {
                    topic: topic.to_string(),
                    partition: p,
                },
                Leadership { state, zk_version },
            );
        }
        Ok(true)
    }

    pub(super) fn send(&self, batch: RequestBatch) {
        if let Some(ch) = &self.channel {
            batch.send(&self.ctx, ch, self.broker_id, &self.events);
        }
    }

    /// `/brokers/ids` changed: new, dead and bounced brokers (reference §2).
    async fn on_broker_change(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (_, w) = zk.get_broker_ids_and_watch().await?;
        arm(w, &self.events, Event::BrokerChange);
        let current: BTreeMap<i32, _> = zk
            .get_all_brokers()
            .await?
            .into_iter()
            .map(|(info, epoch)| (info.id, (info, epoch)))
            .collect();
        let known: BTreeSet<i32> = self.ctx.live_brokers.keys().copied().collect();
        let now: BTreeSet<i32> = current.keys().copied().collect();
        let new: Vec<i32> = now.difference(&known).copied().collect();
        let dead: Vec<i32> = known.difference(&now).copied().collect();
        let bounced: Vec<i32> = now
            .intersection(&known)
            .filter(|id| current.get(id).map(|c| c.1) > self.ctx.live_brokers.get(id).map(|c| c.1))
            .copied()
            .collect();
        if new.is_empty() && dead.is_empty() && bounced.is_empty() {
            return Ok(());
        }
        tracing::info!(
            broker = self.broker_id,
            ?new,
            ?dead,
            ?bounced,
            "broker change"
        );
        let mut gone = dead.clone();
        gone.extend(&bounced);
        for id in &gone {
            self.ctx.live_brokers.remove(id);
            if let Some(ch) = self.channel.as_mut() {
                ch.remove_broker(*id);
            }
        }
        if !gone.is_empty() {
            self.on_broker_failure(&gone).await?;
        }
        let mut started = new.clone();
        started.extend(&bounced);
        for id in &started {
            if let Some((info, epoch)) = current.get(id) {
                self.ctx.live_brokers.insert(*id, (info.clone(), *epoch));
                if let (Some(ch), Some(ep)) = (self.channel.as_mut(), info.endpoints.first()) {
                    ch.add_broker(*id, format!("{}:{}", ep.host, ep.port));
                }
            }
        }
        if !started.is_empty() {
            self.on_broker_startup(&started).await?;
        }
        Ok(())
    }

    /// Kafka's `onBrokerStartup`.
    async fn on_broker_startup(&mut self, brokers: &[i32]) -> Result<(), ZkError> {
        let existing: Vec<i32> = self
            .ctx
            .live_ids()
            .into_iter()
            .filter(|b| !brokers.contains(b))
            .collect();
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&existing, &[]);
        batch.add_update_metadata(brokers, &self.ctx.all_partitions());
        for b in brokers {
            self.replicas_online(*b, &mut batch);
        }
        self.trigger_online_partition_state_change(&mut batch)
            .await?;
        self.send(batch);
        self.resume_deletions().await
    }

    /// Kafka's `onBrokerFailure` → `onReplicasBecomeOffline`.
    async fn on_broker_failure(&mut self, brokers: &[i32]) -> Result<(), ZkError> {
        for b in brokers {
            self.ctx.shutting_down.remove(b);
        }
        let mut batch = RequestBatch::new();
        let mut needed_election = false;
        for tp in self.ctx.all_partitions() {
            let led_by_dead = self
                .ctx
                .leadership
                .get(&tp)
                .is_some_and(|l| brokers.contains(&l.state.leader));
            if led_by_dead && !self.ctx.is_deleting(&tp.topic) {
                self.ctx
                    .partition_states
                    .insert(tp.clone(), PartitionState::Offline);
                needed_election = true;
            }
        }
        self.trigger_online_partition_state_change(&mut batch)
            .await?;
        for b in brokers {
            self.replicas_offline(*b, &mut batch).await?;
        }
        if !needed_election {
            batch.add_update_metadata(&self.ctx.live_ids(), &[]);
        }
        self.send(batch);
        Ok(())
    }

    /// `/brokers/topics` changed: create new topics, forget removed ones.
    async fn on_topic_change(&mut self) -> Result<(), ZkError> {
        let (topics, w) = self.zk.get().get_all_topics_and_watch().await?;
        arm(w, &self.events, Event::TopicChange);
        let now: BTreeSet<String> = topics.into_iter().collect();
        let known: BTreeSet<String> = self.ctx.assignments.keys().cloned().collect();
        for gone in known.difference(&now) {
            self.ctx.remove_topic(gone);
        }
        let mut new_partitions = Vec::new();
        for topic in now.difference(&known) {
            if self.load_topic(topic).await? {
                new_partitions.extend(
                    self.ctx
                        .partitions_of(topic)
                        .into_iter()
                        .filter(|tp| !self.ctx.leadership.contains_key(tp)),
                );
            }
        }
        if !new_partitions.is_empty() {
            tracing::info!(
                broker = self.broker_id,
                partitions = new_partitions.len(),
                "new partitions"
            );
            self.on_new_partitions(new_partitions).await?;
        }
        Ok(())
    }

    /// `/brokers/topics/<t>` changed: partitions may have been added.
    async fn on_partition_modification(&mut self, topic: &str) -> Result<(), ZkError> {
        if self.ctx.is_deleting(topic) || !self.ctx.assignments.contains_key(topic) {
            // Re-arm only if the topic still exists; a deleted topic's watch simply ends.
            if self.ctx.assignments.contains_key(topic) {
                let (_, w) = self.zk.get().get_topic_assignment_and_watch(topic).await?;
                arm(
                    w,
                    &self.events,
                    Event::PartitionModification(topic.to_string()),
                );
            }
            return Ok(());
        }
        let before: BTreeSet<i32> = self
            .ctx
            .assignments
            .get(topic)
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default();
        self.load_topic(topic).await?;
        let added: Vec<TopicPartition> = self
            .ctx
            .partitions_of(topic)
            .into_iter()
            .filter(|tp| !before.contains(&tp.partition))
            .collect();
        if !added.is_empty() {
            tracing::info!(
                broker = self.broker_id,
                topic,
                added = added.len(),
                "partitions added"
            );
            self.on_new_partitions(added).await?;
        }
        Ok(())
    }

    /// Leaders wrote ISR changes: refresh them and tell every broker.
    async fn on_isr_change(&mut self) -> Result<(), ZkError> {
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
        let mut refreshed = Vec::new();
        for tp in changed {
            if !self.ctx.assignments.contains_key(&tp.topic) {
                continue;
            }
            if let Some((state, zk_version)) =
                zk.get_partition_state(&tp.topic, tp.partition).await?
            {
                self.ctx
                    .leadership
                    .insert(tp.clone(), Leadership { state, zk_version });
                refreshed.push(tp);
            }
        }
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&self.ctx.live_ids(), &refreshed);
        self.send(batch);
        zk.delete_isr_change_notifications(&children, self.ctx.epoch_zk_version)
            .await
    }
}
