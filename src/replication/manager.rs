//! `ReplicaManager`: the partitions this broker hosts and the produce, fetch and role-change paths
//! over them (Kafka's `server/ReplicaManager.scala`).
//!
//! Waiting (acks=all produce, long-poll fetch) goes through the per-partition [`Purgatory`]: a
//! parked request watches its own partitions, and each append, high-watermark move or role change
//! wakes only the waiters of the partition it happened to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::fetcher::{FetcherConfig, FetcherManager};
use super::isr::{IsrRequest, PendingIsrChanges};
use super::partition::{LeaderAndIsrState, Partition};
use super::purgatory::{Event, Interest, Purgatory};
use super::ReplicaError;
use crate::common::{EPOCH_DURING_DELETE, NO_EPOCH};
use crate::log::{AppendInfo, AppendOrigin, LogConfig, LogManager, TopicPartition};
use crate::metadata::MetadataCache;
use crate::protocol::batch;
use crate::zk::ZkHandle;

/// A partition to start following: name, partition, leader epoch, offset to fetch from.
type FollowStart = (TopicPartition, Arc<Partition>, i32, i64);

/// One partition's produce outcome.
#[derive(Debug, Clone)]
pub struct ProducePartitionResult {
    pub tp: TopicPartition,
    pub result: Result<AppendInfo, ReplicaError>,
    pub log_start_offset: i64,
}

/// The `replica.*` settings the replica manager runs with.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub fetcher: FetcherConfig,
    pub lag_time_max_ms: u64,
    pub high_watermark_checkpoint_interval_ms: u64,
}

pub(super) struct Inner {
    broker_id: i32,
    config: ReplicationConfig,
    pub(super) logs: LogManager,
    metadata: MetadataCache,
    pub(super) zk: ZkHandle,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The largest controller epoch seen in a control request; older ones are stale.
    controller_epoch: Mutex<i32>,
    pub(super) purgatory: Arc<Purgatory>,
    pub(super) fetchers: FetcherManager,
    pub(super) isr_tx: mpsc::UnboundedSender<IsrRequest>,
    isr_rx: Mutex<Option<mpsc::UnboundedReceiver<IsrRequest>>>,
    pending_isr: Mutex<PendingIsrChanges>,
    /// `replication-offset-checkpoint` as read at start-up, consumed as partitions appear.
    checkpointed_hws: Mutex<BTreeMap<TopicPartition, i64>>,
    /// Partitions whose log directory went offline (Kafka's `HostedPartition.Offline`): every
    /// request for them is answered KAFKA_STORAGE_ERROR until the broker restarts.
    pub(super) offline: Mutex<HashSet<TopicPartition>>,
}

/// Runs blocking work on a multi-threaded runtime without stalling the tasks that share its
/// worker (`block_in_place`); inline elsewhere (current-thread runtimes in tests).
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub(super) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Cheap-clone handle to the replica manager.
#[derive(Clone)]
pub struct ReplicaManager {
    pub(super) inner: Arc<Inner>,
}

/// A controller request carried an epoch older than one already seen.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("controller epoch {got} is older than the latest seen ({current})")]
pub struct StaleControllerEpoch {
    pub got: i32,
    pub current: i32,
}

impl ReplicaManager {
    pub fn new(
        broker_id: i32,
        config: ReplicationConfig,
        logs: LogManager,
        metadata: MetadataCache,
        zk: ZkHandle,
    ) -> Self {
        let (isr_tx, isr_rx) = mpsc::unbounded_channel();
        let fetchers = FetcherManager::new(config.fetcher.clone(), metadata.clone());
        let checkpointed_hws = logs.read_high_watermarks();
        Self {
            inner: Arc::new(Inner {
                broker_id,
                config,
                logs,
                metadata,
                zk,
                partitions: RwLock::new(HashMap::new()),
                controller_epoch: Mutex::new(-1),
                purgatory: Arc::new(Purgatory::default()),
                fetchers,
                isr_tx,
                isr_rx: Mutex::new(Some(isr_rx)),
                pending_isr: Mutex::new(PendingIsrChanges::default()),
                checkpointed_hws: Mutex::new(checkpointed_hws),
                offline: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Starts the ISR writer, the ISR expiration/propagation schedules and the high-watermark
    /// checkpoint; they stop when `shutdown` turns true. Call once.
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(rx) = locked(&self.inner.isr_rx).take() {
            tasks.push(tokio::spawn(self.clone().run_isr_writer(rx)));
        }
        tasks.push(tokio::spawn(self.clone().run_isr_schedules(
            self.inner.config.lag_time_max_ms,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(self.clone().run_hw_checkpoints(shutdown)));
        tasks
    }

    async fn run_hw_checkpoints(self, mut shutdown: watch::Receiver<bool>) {
        let period = Duration::from_millis(
            self.inner
                .config
                .high_watermark_checkpoint_interval_ms
                .max(1),
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.checkpoint_high_watermarks()).await;
                }
            }
        }
    }

    /// Writes `replication-offset-checkpoint` now (periodically and at shutdown).
    pub fn checkpoint_high_watermarks(&self) {
        let hw = |tp: &TopicPartition| self.high_watermark(tp);
        if let Err(e) = self.inner.logs.checkpoint_high_watermarks(&hw) {
            tracing::warn!(broker = self.inner.broker_id, error = %e,
                "high watermark checkpoint failed");
        }
    }

    /// Stops the fetchers (shutdown, before the logs close).
    pub fn shutdown(&self) {
        self.inner.fetchers.shutdown();
        self.checkpoint_high_watermarks();
    }

    pub(super) fn pending_isr_changes(&self) -> MutexGuard<'_, PendingIsrChanges> {
        locked(&self.inner.pending_isr)
    }

    pub fn broker_id(&self) -> i32 {
        self.inner.broker_id
    }

    pub fn log_manager(&self) -> &LogManager {
        &self.inner.logs
    }

    /// The partition hosted here, if any.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        match self.inner.partitions.read() {
            Ok(m) => m.get(tp).cloned(),
            Err(p) => p.into_inner().get(tp).cloned(),
        }
    }

    pub(super) fn partitions_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        match self.inner.partitions.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// The high watermark of a hosted partition (for retention, which stops at the HW).
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partition(tp).map(|p| p.high_watermark())
    }

    /// Wakes the parked requests of `tp` that `event` may complete.
    pub(super) fn wake(&self, tp: &TopicPartition, event: Event) {
        self.inner.purgatory.wake(tp, event);
    }

    /// Checks a control request's controller epoch and adopts it if newer (reference §2 fencing).
    ///
    /// # Errors
    /// The epoch is older than the largest seen.
    pub fn check_controller_epoch(&self, epoch: i32) -> Result<(), StaleControllerEpoch> {
        let mut cur = match self.inner.controller_epoch.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if epoch < *cur {
            return Err(StaleControllerEpoch {
                got: epoch,
                current: *cur,
            });
        }
        *cur = epoch;
        Ok(())
    }

    /// The log config for `topic`: broker defaults with `/config/topics/<topic>` applied.
    async fn topic_log_config(&self, topic: &str) -> Result<LogConfig, ReplicaError> {
        let overrides = self
            .inner
            .zk
            .get()
            .get_topic_config(topic)
            .await
            .map_err(|e| ReplicaError::Unavailable(format!("reading topic config: {e}")))?;
        crate::config::topic_log_config(self.inner.logs.default_config(), &overrides)
            .map_err(|e| ReplicaError::Unavailable(format!("topic {topic}: {e}")))
    }

    /// Applies LeaderAndIsr (reference §4 "Broker handling of LeaderAndIsr"); the controller
    /// epoch has already been checked. Returns a per-partition outcome; `Err(None)` means the
    /// request's leader epoch was not newer (answered STALE_CONTROLLER_EPOCH, like Kafka).
    pub async fn become_leader_or_follower(
        &self,
        states: Vec<(TopicPartition, LeaderAndIsrState)>,
        live_leaders: &[(i32, String)],
    ) -> Vec<(TopicPartition, Result<(), Option<ReplicaError>>)> {
        for (id, addr) in live_leaders {
            self.inner.fetchers.set_leader_addr(*id, addr.clone());
        }
        // A request for thousands of new partitions of one topic reads its config once.
        let mut configs: HashMap<String, Result<LogConfig, ReplicaError>> = HashMap::new();
        for (tp, _) in &states {
            if !configs.contains_key(&tp.topic) && self.partition(tp).is_none() {
                let config = self.topic_log_config(&tp.topic).await;
                configs.insert(tp.topic.clone(), config);
            }
        }
        let mut follows: BTreeMap<i32, Vec<FollowStart>> = BTreeMap::new();
        let apply_all = || {
            let mut out = Vec::with_capacity(states.len());
            for (tp, s) in states {
                let config = configs.get(&tp.topic).cloned();
                let r = self.apply_partition_state(&tp, &s, config, &mut follows);
                out.push((tp, r));
            }
            out
        };
        // Thousands of new logs and epoch checkpoints: their fsyncs are batched into a few
        // syncfs calls, and the work runs where it does not hold up other tasks.
        let started = std::time::Instant::now();
        let ((mut out, applied_in), synced) =
            run_blocking(|| crate::log::batched_sync(|| (apply_all(), started.elapsed())));
        tracing::debug!(
            broker = self.inner.broker_id,
            partitions = out.len(),
            apply_ms = applied_in.as_millis() as u64,
            sync_ms = (started.elapsed() - applied_in).as_millis() as u64,
            "partition states applied"
        );
        if let Err(e) = synced {
            tracing::error!(broker = self.inner.broker_id, error = %e,
                "cannot make partition state changes durable");
            for (_, r) in &mut out {
                if r.is_ok() {
                    *r = Err(Some(ReplicaError::Storage(e.to_string())));
                }
            }
        }
        // Fetchers start once per leader for the whole request (Kafka's makeFollowers).
        for (leader, partitions) in follows {
            self.inner.fetchers.add_partitions(leader, partitions);
        }
        // Waiters re-check: a produce waiter on a former leader fails, a fetch is answered.
        for (tp, _) in &out {
            self.wake(tp, Event::StateChanged);
        }
        out
    }

    fn apply_partition_state(
        &self,
        tp: &TopicPartition,
        s: &LeaderAndIsrState,
        config: Option<Result<LogConfig, ReplicaError>>,
        follows: &mut BTreeMap<i32, Vec<FollowStart>>,
    ) -> Result<(), Option<ReplicaError>> {
        if !s.replicas.contains(&self.inner.broker_id) {
            return Err(Some(ReplicaError::UnknownTopicOrPartition));
        }
        if let Some(e) = self.offline_error(tp) {
            return Err(Some(e));
        }
        let partition = match self.partition(tp) {
            Some(p) => p,
            None => {
                // Only when the partition vanished between the config read and now (a
                // concurrent StopReplica): refuse rather than guess its config.
                let config = config
                    .unwrap_or_else(|| {
                        Err(ReplicaError::Unavailable(format!(
                            "config of topic {} was not loaded",
                            tp.topic
                        )))
                    })
                    .map_err(Some)?;
                let log = match self.inner.logs.get_log(tp) {
                    Some(l) => {
                        l.set_config(config);
                        l
                    }
                    None => self
                        .inner
                        .logs
                        .get_or_create_log_for(tp, config, s.is_new)
                        .map_err(|e| Some(ReplicaError::from_log(e)))?,
                };
                let p = Arc::new(Partition::new(
                    tp.clone(),
                    self.inner.broker_id,
                    log,
                    self.inner.config.lag_time_max_ms as i64,
                ));
                if let Some(hw) = locked(&self.inner.checkpointed_hws).remove(tp) {
                    p.set_initial_high_watermark(hw);
                }
                self.partitions_mut().entry(tp.clone()).or_insert(p).clone()
            }
        };
        let changed = if s.leader == self.inner.broker_id {
            self.inner
                .fetchers
                .remove_partitions(std::slice::from_ref(tp));
            partition.make_leader(s).map_err(Some)?
        } else {
            let changed = partition.make_follower(s);
            if changed {
                if s.leader >= 0 {
                    // Kafka's makeFollowers: restart fetching from the new leader, truncating
                    // first from the local high watermark.
                    // Stop fetching from the old leader now; the new fetch starts below.
                    self.inner
                        .fetchers
                        .remove_partitions(std::slice::from_ref(tp));
                    follows.entry(s.leader).or_default().push((
                        tp.clone(),
                        partition.clone(),
                        s.leader_epoch,
                        partition.high_watermark(),
                    ));
                } else {
                    self.inner
                        .fetchers
                        .remove_partitions(std::slice::from_ref(tp));
                }
            }
            changed
        };
        if changed {
            Ok(())
        } else {
            Err(None)
        }
    }

    /// Applies StopReplica: stops hosting each partition and, with `delete`, removes its log
    /// (all deletions of the request in one batch).
    pub fn stop_replicas(
        &self,
        partitions: Vec<(TopicPartition, bool, i32)>,
    ) -> Vec<(TopicPartition, Result<(), ReplicaError>)> {
        // Kafka's epoch rule: the sentinels and a newer epoch stop the replica; an epoch not
        // newer than the hosted partition's is FENCED_LEADER_EPOCH and the replica stays.
        let mut fenced = Vec::new();
        let mut partitions_to_stop = Vec::with_capacity(partitions.len());
        let mut offline = Vec::new();
        for (tp, delete, epoch) in partitions {
            if self.offline_error(&tp).is_some() {
                offline.push(tp);
                continue;
            }
            let current = self.partition(&tp).map(|p| p.leader_epoch());
            match current {
                Some(current)
                    if epoch != NO_EPOCH && epoch != EPOCH_DURING_DELETE && epoch <= current =>
                {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, epoch,
                        current_epoch = current, delete,
                        "ignoring StopReplica: its leader epoch is not newer than the partition's");
                    fenced.push(tp);
                }
                _ => partitions_to_stop.push((tp, delete)),
            }
        }
        let partitions = partitions_to_stop;
        let stopped: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
        self.inner.fetchers.remove_partitions(&stopped);
        {
            let mut hosted = self.partitions_mut();
            for tp in &stopped {
                hosted.remove(tp);
            }
        }
        let to_delete: Vec<TopicPartition> = partitions
            .iter()
            .filter(|(_, delete)| *delete)
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut deleted = self.inner.logs.delete_logs(&to_delete).into_iter();
        let out = partitions
            .into_iter()
            .map(|(tp, delete)| {
                let r = if delete {
                    deleted
                        .next()
                        .unwrap_or(Ok(()))
                        .map_err(ReplicaError::from_log)
                } else {
                    Ok(())
                };
                (tp, r)
            })
            .chain(
                fenced
                    .into_iter()
                    .map(|tp| (tp, Err(ReplicaError::FencedLeaderEpoch))),
            )
            .chain(offline.into_iter().map(|tp| {
                let e = self.offline_error(&tp);
                (tp, Err(e.unwrap_or(ReplicaError::UnknownTopicOrPartition)))
            }))
            .collect();
        if !to_delete.is_empty() {
            tracing::info!(
                broker = self.inner.broker_id,
                partitions = to_delete.len(),
                "deleted replicas"
            );
        }
        for tp in &stopped {
            self.wake(tp, Event::StateChanged);
        }
        out
    }

    /// The hosted partition, or the error a client gets for it: NOT_LEADER when the cluster
    /// knows the partition (it lives elsewhere), UNKNOWN_TOPIC_OR_PARTITION otherwise.
    ///
    /// # Errors
    /// As described.
    pub fn partition_or_error(&self, tp: &TopicPartition) -> Result<Arc<Partition>, ReplicaError> {
        self.partition(tp)
            .ok_or_else(|| self.missing_partition_error(tp))
    }

    pub(super) fn missing_partition_error(&self, tp: &TopicPartition) -> ReplicaError {
        if let Some(e) = self.offline_error(tp) {
            return e;
        }
        let snap = self.inner.metadata.snapshot();
        if snap.partition(&tp.topic, tp.partition).is_some() {
            ReplicaError::NotLeader
        } else {
            ReplicaError::UnknownTopicOrPartition
        }
    }

    /// The produce path: validate each partition's batch, append as leader, and for `acks == -1`
    /// wait (up to `timeout`) until the high watermark passes each append (Kafka's
    /// `DelayedProduce`, watched on its partitions).
    pub async fn append_records(
        &self,
        acks: i16,
        timeout: Duration,
        entries: Vec<(TopicPartition, Option<Bytes>)>,
    ) -> Vec<ProducePartitionResult> {
        self.append_records_from(acks, timeout, entries, AppendOrigin::Client)
            .await
    }

    /// [`Self::append_records`] for batches from `origin` (transaction markers and
    /// transactional offset commits come from a coordinator).
    pub async fn append_records_from(
        &self,
        acks: i16,
        timeout: Duration,
        entries: Vec<(TopicPartition, Option<Bytes>)>,
        origin: AppendOrigin,
    ) -> Vec<ProducePartitionResult> {
        let mut results = Vec::with_capacity(entries.len());
        // (index into results, offset the high watermark must reach)
        let mut waiting: Vec<(usize, i64)> = Vec::new();
        for (tp, records) in entries {
            let partition = self.partition(&tp);
            let log_start = partition
                .as_ref()
                .map(|p| p.log().log_start_offset())
                .unwrap_or(-1);
            let result = match (&partition, records) {
                (None, _) => Err(self.missing_partition_error(&tp)),
                (Some(_), None) => Err(ReplicaError::CorruptMessage(
                    "produce request carries no records".into(),
                )),
                (Some(p), Some(bytes)) => match batch::validate_single_batch(&bytes) {
                    Err(e) => Err(ReplicaError::CorruptMessage(e.to_string())),
                    Ok(_) => p.append_from(bytes, acks, origin).map(|(info, hw_moved)| {
                        // Kafka's tryCompleteDelayedRequests after an append: followers can
                        // fetch it now; consumers and acks=all waiters only if the HW moved.
                        let event = if hw_moved {
                            Event::HighWatermark
                        } else {
                            Event::Appended
                        };
                        self.wake(&tp, event);
                        info
                    }),
                },
            };
            if let Err(e) = &result {
                tracing::debug!(topic = %tp.topic, partition = tp.partition, error = %e,
                    "produce failed");
            }
            if let (Ok(info), -1) = (&result, acks) {
                waiting.push((results.len(), info.last_offset + 1));
            }
            results.push(ProducePartitionResult {
                tp,
                result,
                log_start_offset: log_start,
            });
        }
        if waiting.is_empty() {
            return results;
        }
        let watch = self.inner.purgatory.watch(
            waiting.iter().map(|(i, _)| results[*i].tp.clone()),
            Interest::Produce,
        );
        let deadline = Instant::now() + timeout;
        let completed = watch
            .wait_until(deadline, || {
                waiting.retain(|(i, required)| {
                    match self.delayed_produce_outcome(&results[*i].tp, *required) {
                        None => true,
                        Some(Ok(())) => false,
                        Some(Err(e)) => {
                            results[*i].result = Err(e);
                            false
                        }
                    }
                });
                waiting.is_empty().then_some(())
            })
            .await;
        if completed.is_none() {
            for (i, _) in waiting {
                results[i].result = Err(ReplicaError::RequestTimedOut);
            }
        }
        results
    }

    /// A delayed produce's check on the partition as hosted now (it may have moved or gone).
    fn delayed_produce_outcome(
        &self,
        tp: &TopicPartition,
        required_offset: i64,
    ) -> Option<Result<(), ReplicaError>> {
        match self.partition(tp) {
            Some(p) => p.check_enough_replicas_reach_offset(required_offset),
            None => Some(Err(self.missing_partition_error(tp))),
        }
    }

    /// All partitions hosted here (for checkpoints and shutdown).
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        match self.inner.partitions.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }
}
