//! The controller's event loop (Kafka's `KafkaController`): election, failover, resignation,
//! and the handlers for broker, topic and notification changes. Each handler works on whole
//! batches through the partition and replica state machines and the topic deletion manager, and
//! sends what it decided as one request batch: at most one request of each type per broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::channel::ChannelManager;
use super::context::{ControllerContext, Leadership, PartitionState, ReplicaState};
use super::deletion::TopicDeletionManager;
use super::election::Strategy;
use super::partition_sm::PartitionStateMachine;
use super::replica_sm::ReplicaStateMachine;
use super::request_batch::RequestBatch;
use super::retry::Retries;
use super::{ControllerHandle, Event};
use crate::common::TopicPartition;
use crate::config::KafkaConfig;
use crate::log::LogConfig;
use crate::zk::{KafkaZkClient, Watch, ZkError, ZkHandle};

pub(super) struct Controller {
    pub(super) broker_id: i32,
    pub(super) config: Arc<KafkaConfig>,
    pub(super) zk: ZkHandle,
    pub(super) handle: ControllerHandle,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) ctx: ControllerContext,
    pub(super) channel: Option<ChannelManager>,
    /// The broker's log defaults, under which topic overrides are read.
    broker_log_config: LogConfig,
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
            broker_log_config: config.default_log_config(),
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

    /// The partition state machine over this controller's context, adding to `batch`.
    pub(super) fn partition_sm<'a>(
        &'a mut self,
        zk: &'a KafkaZkClient,
        batch: &'a mut RequestBatch,
    ) -> PartitionStateMachine<'a> {
        PartitionStateMachine {
            ctx: &mut self.ctx,
            zk,
            batch,
            broker_log_config: &self.broker_log_config,
        }
    }

    /// The replica state machine over this controller's context, adding to `batch`.
    pub(super) fn replica_sm<'a>(
        &'a mut self,
        zk: &'a KafkaZkClient,
        batch: &'a mut RequestBatch,
    ) -> ReplicaStateMachine<'a> {
        ReplicaStateMachine {
            ctx: &mut self.ctx,
            zk,
            batch,
        }
    }

    /// The topic deletion manager over this controller's context, adding to `batch`.
    pub(super) fn deletion<'a>(
        &'a mut self,
        zk: &'a KafkaZkClient,
        batch: &'a mut RequestBatch,
    ) -> TopicDeletionManager<'a> {
        TopicDeletionManager {
            ctx: &mut self.ctx,
            zk,
            batch,
        }
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut retries = Retries::default();
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => break },
                _ = shutdown.changed() => break,
            };
            let name = format!("{event:?}");
            let retry = event.clone();
            match self.process(event).await {
                Ok(()) => retries.succeeded(&name),
                Err(ZkError::ControllerMoved { .. }) => {
                    tracing::warn!(broker = self.broker_id, event = %name,
                        "controller moved while processing; resigning");
                    self.maybe_resign().await;
                }
                Err(e) => {
                    let wait = retries.failed(&name);
                    tracing::warn!(broker = self.broker_id, event = %name, error = %e,
                        retry_in_ms = wait.as_millis() as u64, "controller event failed");
                    // Re-run the whole handler later: each handler re-reads what it needs.
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = events.send(retry);
                    });
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
            Event::LogDirEventNotification => self.on_log_dir_event().await,
            Event::LeaderAndIsrStorageErrors { broker, offline } => {
                self.on_storage_errors(broker, offline).await
            }
            Event::StopReplicaResponse { broker, results } => {
                let zk = self.zk.get();
                let mut batch = RequestBatch::new();
                let result = self
                    .deletion(&zk, &mut batch)
                    .on_stop_replica_response(broker, results)
                    .await;
                self.send(batch);
                result
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
            Some(id) if id == self.broker_id && !self.is_active() => self.elect().await,
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
            if id == self.broker_id && !self.is_active() && zk.delete_own_controller().await? {
                // Held by this session without acting as controller (a failover that failed
                // and could not give it up): released, and its watch brings a new election.
                tracing::warn!(
                    broker = self.broker_id,
                    "released /controller held while inactive"
                );
                return Ok(());
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
                if let Err(e) = self.on_controller_failover(epoch, epoch_zk_version).await {
                    // Kafka's triggerControllerMove: a half-done failover must not leave this
                    // broker holding /controller while inactive, or no election ever runs
                    // again. Giving it up lets any broker (this one included) start afresh.
                    tracing::error!(broker = self.broker_id, epoch, error = %e,
                        "controller failover failed; resigning");
                    self.resign();
                    zk.delete_controller(epoch_zk_version).await?;
                }
                Ok(())
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

    /// Kafka's `onControllerFailover` (reference §2, steps 2–10). The controller is marked
    /// active only once the context is loaded and the first requests are queued.
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
        let topics = self.load_context(&zk).await?;

        let mut channel = ChannelManager::new(
            self.broker_id,
            Duration::from_millis(self.config.controller_socket_timeout_ms),
        );
        let listener = self.config.controller_listener_name();
        for (id, (info, _)) in &self.ctx.live_brokers {
            channel.add_broker_on(*id, info, listener);
        }
        self.channel = Some(channel);

        // Brokers learn endpoints before any LeaderAndIsr.
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&self.ctx.live_ids(), &[]);
        self.send(batch);

        // Replica state machine start-up: replicas on live brokers Online, the rest Offline
        // via Ineligible. Their transitions run after the elections below.
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for tp in self.ctx.all_partitions() {
            for r in self.ctx.replicas(&tp).to_vec() {
                let state = if self.ctx.is_live(r) {
                    online.push((tp.clone(), r));
                    ReplicaState::Online
                } else {
                    offline.push((tp.clone(), r));
                    ReplicaState::DeletionIneligible
                };
                self.ctx.replica_states.insert((tp.clone(), r), state);
            }
        }
        // Partition state machine start-up, then elect for New/Offline partitions first: a
        // partition whose leader died with the old controller gets a leader (and an ISR
        // without the dead replicas) in one write, and its brokers hear of it before the
        // slower steps below. Kafka runs the replica state machine first; the znodes end the
        // same either way.
        for tp in self.ctx.all_partitions() {
            let state = match self.ctx.leadership.get(&tp) {
                None => PartitionState::New,
                Some(l) if self.ctx.is_live(l.state.leader) => PartitionState::Online,
                Some(_) => PartitionState::Offline,
            };
            self.ctx.partition_states.insert(tp, state);
        }
        let mut batch = RequestBatch::new();
        self.partition_sm(&zk, &mut batch)
            .trigger_online_partition_state_change()
            .await?;
        self.send(batch.take());
        // Each live replica gets LeaderAndIsr with the current leadership; the replicas on dead
        // brokers leave the ISRs they are still in.
        self.replica_sm(&zk, &mut batch)
            .handle_state_changes(&online, ReplicaState::Online)
            .await?;
        self.replica_sm(&zk, &mut batch)
            .handle_state_changes(&offline, ReplicaState::Offline)
            .await?;
        // Every broker gets the whole picture once.
        batch.add_update_metadata(&self.ctx.live_ids(), &self.ctx.all_partitions());
        self.deletion(&zk, &mut batch).resume(true).await?;
        self.send(batch);
        self.handle.active.store(true, Ordering::SeqCst);
        self.on_preferred_replica_election().await?;
        self.start_auto_rebalance(epoch);
        tracing::info!(broker = self.broker_id, epoch, brokers = ?self.ctx.live_ids(),
            topics, partitions = self.ctx.leadership.len(), "controller failover complete");
        Ok(())
    }

    /// Failover's read of ZooKeeper: watches, live brokers, every assignment and partition
    /// state (pipelined), the deletion queue. Returns the number of topics.
    async fn load_context(&mut self, zk: &KafkaZkClient) -> Result<usize, ZkError> {
        let (_, w) = zk.get_broker_ids_and_watch().await?;
        arm(w, &self.events, Event::BrokerChange);
        let (topics, w) = zk.get_all_topics_and_watch().await?;
        arm(w, &self.events, Event::TopicChange);
        let (deletions, w) = zk.get_topic_deletions_and_watch().await?;
        arm(w, &self.events, Event::TopicDeletion);
        let (isr_changes, w) = zk.get_isr_change_notifications_and_watch().await?;
        arm(w, &self.events, Event::IsrChangeNotification);
        if !isr_changes.is_empty() {
            zk.delete_isr_change_notifications(&isr_changes, self.ctx.epoch_zk_version)
                .await?;
        }
        self.drop_log_dir_events(zk).await?;
        for (info, broker_epoch) in zk.get_all_brokers().await? {
            self.ctx.live_brokers.insert(info.id, (info, broker_epoch));
        }
        self.load_topics(zk, &topics, true).await?;
        for topic in deletions {
            if self.ctx.assignments.contains_key(&topic) && self.config.delete_topic_enable {
                self.ctx.topics_to_delete.insert(topic);
            } else {
                zk.delete_topic_deletion_flag(&topic, self.ctx.epoch_zk_version)
                    .await?;
            }
        }
        Ok(topics.len())
    }

    /// Reads the assignments of `topics` (watching each) into the context, and with
    /// `with_states` their partitions' state znodes too. Returns the topics that exist.
    async fn load_topics(
        &mut self,
        zk: &KafkaZkClient,
        topics: &[String],
        with_states: bool,
    ) -> Result<Vec<String>, ZkError> {
        let mut found = Vec::new();
        let loaded = zk.get_topic_assignments_and_watch(topics).await?;
        for (topic, (assignment, w)) in topics.iter().zip(loaded) {
            arm(w, &self.events, Event::PartitionModification(topic.clone()));
            if let Some(a) = assignment {
                self.ctx.assignments.insert(topic.clone(), a.partitions);
                found.push(topic.clone());
            }
        }
        if with_states {
            let partitions: Vec<TopicPartition> = found
                .iter()
                .flat_map(|t| self.ctx.partitions_of(t))
                .collect();
            self.refresh_leadership(zk, &partitions).await?;
        }
        Ok(found)
    }

    /// Re-reads the state znodes of `partitions` into the context (pipelined).
    pub(super) async fn refresh_leadership(
        &mut self,
        zk: &KafkaZkClient,
        partitions: &[TopicPartition],
    ) -> Result<Vec<TopicPartition>, ZkError> {
        let states = zk.get_partition_states_batch(partitions).await?;
        let mut refreshed = Vec::new();
        for (tp, state) in partitions.iter().zip(states) {
            if let Some((state, zk_version)) = state {
                self.ctx
                    .leadership
                    .insert(tp.clone(), Leadership { state, zk_version });
                refreshed.push(tp.clone());
            }
        }
        Ok(refreshed)
    }

    pub(super) fn send(&self, batch: RequestBatch) {
        if let Some(ch) = &self.channel {
            batch.send(
                &self.ctx,
                ch,
                self.broker_id,
                &self.events,
                &self.config.inter_broker_listener_name,
            );
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
        // A broker that died or registered again reports its failed directories anew.
        for id in gone.iter().chain(&new) {
            self.ctx.offline_dir_replicas.remove(id);
        }
        let mut forgotten = Vec::new();
        for id in &gone {
            if let Some(entry) = self.ctx.live_brokers.remove(id) {
                forgotten.push((*id, entry));
            }
            if let Some(ch) = self.channel.as_mut() {
                ch.remove_broker(*id);
            }
        }
        if !gone.is_empty() {
            if let Err(e) = self.on_broker_failure(&zk, &gone).await {
                // Known again, so the retried event sees the same change and finishes it.
                self.ctx.live_brokers.extend(forgotten);
                return Err(e);
            }
        }
        let mut started = new.clone();
        started.extend(&bounced);
        for id in &started {
            if let Some((info, epoch)) = current.get(id) {
                self.ctx.live_brokers.insert(*id, (info.clone(), *epoch));
                let listener = self.config.controller_listener_name();
                if let Some(ch) = self.channel.as_mut() {
                    ch.add_broker_on(*id, info, listener);
                }
            }
        }
        if !started.is_empty() {
            if let Err(e) = self.on_broker_startup(&zk, &started).await {
                for id in &started {
                    self.ctx.live_brokers.remove(id);
                    if let Some(ch) = self.channel.as_mut() {
                        ch.remove_broker(*id);
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Kafka's `onBrokerStartup`.
    async fn on_broker_startup(
        &mut self,
        zk: &KafkaZkClient,
        brokers: &[i32],
    ) -> Result<(), ZkError> {
        let existing: Vec<i32> = self
            .ctx
            .live_ids()
            .into_iter()
            .filter(|b| !brokers.contains(b))
            .collect();
        let mut batch = RequestBatch::new();
        batch.add_update_metadata(&existing, &[]);
        batch.add_update_metadata(brokers, &self.ctx.all_partitions());
        let replicas: Vec<(TopicPartition, i32)> = brokers
            .iter()
            .flat_map(|b| {
                self.ctx
                    .partitions_on_broker(*b)
                    .into_iter()
                    .filter(|tp| !self.ctx.is_deleting(&tp.topic))
                    .map(move |tp| (tp, *b))
            })
            .collect();
        let result = self.start_replicas(zk, &replicas, &mut batch).await;
        // Whatever was decided (and written) before a failure must still reach the brokers.
        self.send(batch);
        result
    }

    async fn start_replicas(
        &mut self,
        zk: &KafkaZkClient,
        replicas: &[(TopicPartition, i32)],
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        self.replica_sm(zk, batch)
            .handle_state_changes(replicas, ReplicaState::Online)
            .await?;
        self.partition_sm(zk, batch)
            .trigger_online_partition_state_change()
            .await?;
        self.deletion(zk, batch).resume(true).await
    }

    /// Kafka's `onBrokerFailure` → `onReplicasBecomeOffline`.
    async fn on_broker_failure(
        &mut self,
        zk: &KafkaZkClient,
        brokers: &[i32],
    ) -> Result<(), ZkError> {
        for b in brokers {
            self.ctx.shutting_down.remove(b);
        }
        let led_by_dead: Vec<TopicPartition> = self
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| brokers.contains(&l.state.leader) && !self.ctx.is_deleting(&tp.topic))
            .map(|(tp, _)| tp.clone())
            .collect();
        let (deleting, replicas): (Vec<_>, Vec<_>) = brokers
            .iter()
            .flat_map(|b| {
                self.ctx
                    .partitions_on_broker(*b)
                    .into_iter()
                    .map(move |tp| (tp, *b))
            })
            .partition(|(tp, _)| self.ctx.is_deleting(&tp.topic));
        let mut batch = RequestBatch::new();
        // Nobody may be re-elected: every broker still learns the dead one is gone.
        batch.add_update_metadata(&self.ctx.live_ids(), &[]);
        let result = self
            .replicas_gone(zk, &led_by_dead, &replicas, &deleting, &mut batch)
            .await;
        // Whatever was decided (and written) before a failure must still reach the brokers.
        self.send(batch);
        result
    }

    pub(super) async fn replicas_gone(
        &mut self,
        zk: &KafkaZkClient,
        led_by_dead: &[TopicPartition],
        replicas: &[(TopicPartition, i32)],
        deleting: &[(TopicPartition, i32)],
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        self.partition_sm(zk, batch)
            .handle_state_changes(led_by_dead, PartitionState::Offline, Strategy::Offline)
            .await?;
        self.partition_sm(zk, batch)
            .trigger_online_partition_state_change()
            .await?;
        // The new leaders go out now; taking the dead replicas out of the other ISRs is a
        // second round of ZooKeeper writes that clients need not wait for.
        self.send(batch.take());
        self.replica_sm(zk, batch)
            .handle_state_changes(replicas, ReplicaState::Offline)
            .await?;
        // Replicas of topics being deleted cannot be deleted now; they wait for the broker.
        self.deletion(zk, batch)
            .fail_replica_deletion(deleting)
            .await
    }

    /// `/brokers/topics` changed: create new topics, forget removed ones.
    async fn on_topic_change(&mut self) -> Result<(), ZkError> {
        let zk = self.zk.get();
        let (topics, w) = zk.get_all_topics_and_watch().await?;
        arm(w, &self.events, Event::TopicChange);
        let now: BTreeSet<String> = topics.into_iter().collect();
        let known: BTreeSet<String> = self.ctx.assignments.keys().cloned().collect();
        for gone in known.difference(&now) {
            self.ctx.remove_topic(gone);
        }
        let added: Vec<String> = now.difference(&known).cloned().collect();
        if added.is_empty() {
            return Ok(());
        }
        // A new topic has no state znodes yet; one left by an earlier controller is found
        // when its creation answers NodeExists.
        let created = self.load_topics(&zk, &added, false).await?;
        let new_partitions: Vec<TopicPartition> = created
            .iter()
            .flat_map(|t| self.ctx.partitions_of(t))
            .filter(|tp| !self.ctx.leadership.contains_key(tp))
            .collect();
        self.on_new_partitions(&zk, new_partitions).await
    }

    /// `/brokers/topics/<t>` changed: partitions may have been added.
    async fn on_partition_modification(&mut self, topic: &str) -> Result<(), ZkError> {
        let zk = self.zk.get();
        if !self.ctx.assignments.contains_key(topic) {
            // A deleted topic's watch simply ends.
            return Ok(());
        }
        if self.ctx.is_deleting(topic) {
            let (_, w) = zk.get_topic_assignment_and_watch(topic).await?;
            arm(
                w,
                &self.events,
                Event::PartitionModification(topic.to_string()),
            );
            return Ok(());
        }
        let before: BTreeSet<i32> = self
            .ctx
            .assignments
            .get(topic)
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default();
        self.load_topics(&zk, &[topic.to_string()], false).await?;
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
            self.on_new_partitions(&zk, added).await?;
        }
        Ok(())
    }

    /// Kafka's `onNewPartitionCreation`: New, then Online with their first leader.
    async fn on_new_partitions(
        &mut self,
        zk: &KafkaZkClient,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ZkError> {
        if partitions.is_empty() {
            return Ok(());
        }
        tracing::info!(
            broker = self.broker_id,
            partitions = partitions.len(),
            "new partitions"
        );
        let replicas: Vec<(TopicPartition, i32)> = partitions
            .iter()
            .flat_map(|tp| self.ctx.replicas(tp).iter().map(|r| (tp.clone(), *r)))
            .collect();
        let mut batch = RequestBatch::new();
        let result = self
            .create_partitions(zk, &partitions, replicas, &mut batch)
            .await;
        self.send(batch);
        result
    }

    async fn create_partitions(
        &mut self,
        zk: &KafkaZkClient,
        partitions: &[TopicPartition],
        replicas: Vec<(TopicPartition, i32)>,
        batch: &mut RequestBatch,
    ) -> Result<(), ZkError> {
        self.partition_sm(zk, batch)
            .handle_state_changes(partitions, PartitionState::New, Strategy::Offline)
            .await?;
        self.replica_sm(zk, batch)
            .handle_state_changes(&replicas, ReplicaState::New)
            .await?;
        self.partition_sm(zk, batch)
            .handle_state_changes(partitions, PartitionState::Online, Strategy::Offline)
            .await?;
        let live: Vec<_> = replicas
            .into_iter()
            .filter(|(_, r)| self.ctx.is_live(*r))
            .collect();
        self.replica_sm(zk, batch)
            .handle_state_changes(&live, ReplicaState::Online)
            .await
    }

    /// `/admin/delete_topics` changed.
    async fn on_topic_deletion(&mut self) -> Result<(), ZkError> {
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
        let mut batch = RequestBatch::new();
        let result = self.deletion(&zk, &mut batch).resume(true).await;
        self.send(batch);
        result
    }
}
