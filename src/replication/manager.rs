//! `ReplicaManager`: the partitions this broker hosts and the produce, fetch and role-change paths
//! over them (Kafka's `server/ReplicaManager.scala`).
//!
//! Waiting (acks=all, long-poll fetch) uses one broker-wide change counter on a `watch` channel,
//! bumped on every append and high-watermark move: a waiter subscribes before it checks, so no
//! wake-up is lost. Every waiter re-checks its own partitions on a bump; per-partition watchers are
//! a later optimisation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::fetcher::{FetcherConfig, FetcherManager};
use super::isr::{IsrRequest, PendingIsrChanges};
use super::partition::{FetchIsolation, LeaderAndIsrState, Partition, PartitionRead};
use super::ReplicaError;
use crate::log::{AppendInfo, LogConfig, LogManager, TopicPartition};
use crate::metadata::MetadataCache;
use crate::protocol::batch;
use crate::zk::ZkHandle;

/// A partition to start following: name, partition, leader epoch, offset to fetch from.
type FollowStart = (TopicPartition, Arc<Partition>, i32, i64);

/// Request-level parameters of a Fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchParams {
    /// -1 for consumers; a broker id for followers.
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
}

/// One partition of a Fetch.
#[derive(Debug, Clone)]
pub struct FetchPartitionRequest {
    pub tp: TopicPartition,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// -1 = no check (Fetch < v9).
    pub current_leader_epoch: i32,
}

/// One partition's fetch outcome.
#[derive(Debug, Clone)]
pub struct FetchPartitionResult {
    pub tp: TopicPartition,
    pub result: Result<PartitionRead, FetchFailure>,
}

/// A failed partition read; carries the offsets a client still wants in the response.
#[derive(Debug, Clone)]
pub struct FetchFailure {
    pub error: ReplicaError,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

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
    logs: LogManager,
    metadata: MetadataCache,
    pub(super) zk: ZkHandle,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The largest controller epoch seen in a control request; older ones are stale.
    controller_epoch: Mutex<i32>,
    changes: watch::Sender<u64>,
    fetchers: FetcherManager,
    pub(super) isr_tx: mpsc::UnboundedSender<IsrRequest>,
    isr_rx: Mutex<Option<mpsc::UnboundedReceiver<IsrRequest>>>,
    pending_isr: Mutex<PendingIsrChanges>,
    /// `replication-offset-checkpoint` as read at start-up, consumed as partitions appear.
    checkpointed_hws: Mutex<BTreeMap<TopicPartition, i64>>,
}

/// Runs blocking work on a multi-threaded runtime without stalling the tasks that share its
/// worker (`block_in_place`); inline elsewhere (current-thread runtimes in tests).
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        let (changes, _) = watch::channel(0u64);
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
                changes,
                fetchers,
                isr_tx,
                isr_rx: Mutex::new(Some(isr_rx)),
                pending_isr: Mutex::new(PendingIsrChanges::default()),
                checkpointed_hws: Mutex::new(checkpointed_hws),
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

    fn partitions_mut(
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

    pub(super) fn notify_change(&self) {
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
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
            .map_err(|e| ReplicaError::Storage(format!("reading topic config: {e}")))?;
        crate::config::topic_log_config(self.inner.logs.default_config(), &overrides)
            .map_err(|e| ReplicaError::Storage(format!("topic {topic}: {e}")))
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
        let (mut out, synced) = run_blocking(|| crate::log::batched_sync(apply_all));
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
        self.notify_change();
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
        let partition = match self.partition(tp) {
            Some(p) => p,
            None => {
                // Only when the partition vanished between the config read and now (a
                // concurrent StopReplica): refuse rather than guess its config.
                let config = config
                    .unwrap_or_else(|| {
                        Err(ReplicaError::Storage(format!(
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
                        .get_or_create_log(tp, config)
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
        partitions: Vec<(TopicPartition, bool)>,
    ) -> Vec<(TopicPartition, Result<(), ReplicaError>)> {
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
            .collect();
        if !to_delete.is_empty() {
            tracing::info!(
                broker = self.inner.broker_id,
                partitions = to_delete.len(),
                "deleted replicas"
            );
        }
        self.notify_change();
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

    fn missing_partition_error(&self, tp: &TopicPartition) -> ReplicaError {
        let snap = self.inner.metadata.snapshot();
        if snap.partition(&tp.topic, tp.partition).is_some() {
            ReplicaError::NotLeader
        } else {
            ReplicaError::UnknownTopicOrPartition
        }
    }

    /// The produce path: validate each partition's batch, append as leader, and for `acks == -1`
    /// wait (up to `timeout`) until the high watermark passes each append.
    pub async fn append_records(
        &self,
        acks: i16,
        timeout: Duration,
        entries: Vec<(TopicPartition, Option<Bytes>)>,
    ) -> Vec<ProducePartitionResult> {
        let mut rx = self.inner.changes.subscribe();
        let mut results = Vec::with_capacity(entries.len());
        let mut waiting: Vec<(usize, Arc<Partition>, i64)> = Vec::new();
        let mut any_hw_moved = false;
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
                    Ok(_) => p.append_as_leader(bytes, acks).map(|(info, hw_moved)| {
                        any_hw_moved |= hw_moved;
                        info
                    }),
                },
            };
            if let Err(e) = &result {
                tracing::debug!(topic = %tp.topic, partition = tp.partition, error = %e,
                    "produce failed");
            }
            if let (Ok(info), Some(p), -1) = (&result, &partition, acks) {
                waiting.push((results.len(), p.clone(), info.last_offset + 1));
            }
            results.push(ProducePartitionResult {
                tp,
                result,
                log_start_offset: log_start,
            });
        }
        if any_hw_moved || !results.is_empty() {
            self.notify_change();
        }
        if waiting.is_empty() {
            return results;
        }
        // Delayed produce: re-check on every change until done or the timeout.
        rx.borrow_and_update();
        let deadline = Instant::now() + timeout;
        loop {
            waiting.retain(|(i, p, required)| {
                match p.check_enough_replicas_reach_offset(*required) {
                    None => true,
                    Some(Ok(())) => false,
                    Some(Err(e)) => {
                        results[*i].result = Err(e);
                        false
                    }
                }
            });
            if waiting.is_empty() {
                return results;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    for (i, _, _) in waiting {
                        results[i].result = Err(ReplicaError::RequestTimedOut);
                    }
                    return results;
                }
            }
        }
    }

    fn read_one(
        &self,
        params: &FetchParams,
        req: &FetchPartitionRequest,
        max_bytes: usize,
        min_one_batch: bool,
        hw_moved: &mut bool,
    ) -> Result<PartitionRead, FetchFailure> {
        let fail = |error, p: Option<&Arc<Partition>>| FetchFailure {
            error,
            high_watermark: p.map(|p| p.high_watermark()).unwrap_or(-1),
            log_start_offset: p.map(|p| p.log().log_start_offset()).unwrap_or(-1),
        };
        let Some(p) = self.partition(&req.tp) else {
            return Err(fail(self.missing_partition_error(&req.tp), None));
        };
        if req.current_leader_epoch >= 0 {
            let local = p.leader_epoch();
            if req.current_leader_epoch < local {
                return Err(fail(ReplicaError::FencedLeaderEpoch, Some(&p)));
            }
            if req.current_leader_epoch > local {
                return Err(fail(ReplicaError::UnknownLeaderEpoch, Some(&p)));
            }
        }
        let (isolation, follower) = if params.replica_id >= 0 {
            (FetchIsolation::LogEnd, Some(params.replica_id))
        } else {
            (FetchIsolation::HighWatermark, None)
        };
        match p.read(
            req.fetch_offset,
            max_bytes,
            isolation,
            min_one_batch,
            follower,
        ) {
            Ok((read, moved, proposal)) => {
                *hw_moved |= moved;
                if let Some(proposal) = proposal {
                    self.submit_isr(p.clone(), proposal);
                }
                Ok(read)
            }
            Err(e) => Err(fail(e, Some(&p))),
        }
    }

    /// Reads every partition once, sharing the response budget; returns the results, the bytes
    /// read and whether any partition failed.
    fn read_all(
        &self,
        params: &FetchParams,
        partitions: &[FetchPartitionRequest],
    ) -> (Vec<FetchPartitionResult>, usize, bool) {
        let mut budget = params.max_bytes.max(0) as usize;
        let mut total = 0usize;
        let mut any_error = false;
        let mut hw_moved = false;
        let mut out = Vec::with_capacity(partitions.len());
        for req in partitions {
            let limit = (req.partition_max_bytes.max(0) as usize).min(budget);
            // Kafka returns the first batch of the first non-empty partition whole, even above
            // the limits, so a consumer can always make progress.
            let r = self.read_one(params, req, limit, total == 0, &mut hw_moved);
            match &r {
                Ok(read) => {
                    total += read.info.records.len();
                    budget = budget.saturating_sub(read.info.records.len());
                }
                Err(_) => any_error = true,
            }
            out.push(FetchPartitionResult {
                tp: req.tp.clone(),
                result: r,
            });
        }
        if hw_moved {
            self.notify_change();
        }
        (out, total, any_error)
    }

    /// The fetch path: read every partition; answer at once if `max_wait_ms <= 0`, on an error, or
    /// once `min_bytes` are available; otherwise wait for appends until `max_wait_ms`.
    pub async fn fetch(
        &self,
        params: FetchParams,
        partitions: Vec<FetchPartitionRequest>,
    ) -> Vec<FetchPartitionResult> {
        let mut rx = self.inner.changes.subscribe();
        let deadline = Instant::now() + Duration::from_millis(params.max_wait_ms.max(0) as u64);
        loop {
            rx.borrow_and_update();
            let (out, total, any_error) = self.read_all(&params, &partitions);
            let done = params.max_wait_ms <= 0
                || partitions.is_empty()
                || any_error
                || total >= params.min_bytes.max(0) as usize
                || Instant::now() >= deadline;
            if done {
                return out;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                // Deadline passed: one last read answers the request.
                return self.read_all(&params, &partitions).0;
            }
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
