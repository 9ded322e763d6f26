//! `ReplicaManager`: the partitions this broker hosts and the produce, fetch and role-change paths
//! over them (Kafka's `server/ReplicaManager.scala`).
//!
//! Waiting (acks=all, long-poll fetch) uses one broker-wide change counter on a `watch` channel,
//! bumped on every append and high-watermark move: a waiter subscribes before it checks, so no
//! wake-up is lost. Every waiter re-checks its own partitions on a bump; per-partition watchers are
//! a later optimisation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::partition::{FetchIsolation, LeaderAndIsrState, Partition, PartitionRead};
use super::ReplicaError;
use crate::log::{AppendInfo, LogConfig, LogManager, TopicPartition};
use crate::metadata::MetadataCache;
use crate::protocol::batch;
use crate::zk::ZkHandle;

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

struct Inner {
    broker_id: i32,
    logs: LogManager,
    metadata: MetadataCache,
    zk: ZkHandle,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The largest controller epoch seen in a control request; older ones are stale.
    controller_epoch: Mutex<i32>,
    changes: watch::Sender<u64>,
}

/// Cheap-clone handle to the replica manager.
#[derive(Clone)]
pub struct ReplicaManager {
    inner: Arc<Inner>,
}

/// A controller request carried an epoch older than one already seen.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("controller epoch {got} is older than the latest seen ({current})")]
pub struct StaleControllerEpoch {
    pub got: i32,
    pub current: i32,
}

impl ReplicaManager {
    pub fn new(broker_id: i32, logs: LogManager, metadata: MetadataCache, zk: ZkHandle) -> Self {
        let (changes, _) = watch::channel(0u64);
        Self {
            inner: Arc::new(Inner {
                broker_id,
                logs,
                metadata,
                zk,
                partitions: RwLock::new(HashMap::new()),
                controller_epoch: Mutex::new(-1),
                changes,
            }),
        }
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

    fn notify_change(&self) {
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
        self.inner
            .logs
            .default_config()
            .with_overrides(&overrides)
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// Applies LeaderAndIsr (reference §4 "Broker handling of LeaderAndIsr"); the controller
    /// epoch has already been checked. Returns a per-partition outcome; `Err(None)` means the
    /// request's leader epoch was not newer (answered STALE_CONTROLLER_EPOCH, like Kafka).
    pub async fn become_leader_or_follower(
        &self,
        states: Vec<(TopicPartition, LeaderAndIsrState)>,
    ) -> Vec<(TopicPartition, Result<(), Option<ReplicaError>>)> {
        let mut out = Vec::with_capacity(states.len());
        for (tp, s) in states {
            let r = self.apply_partition_state(&tp, &s).await;
            out.push((tp, r));
        }
        self.notify_change();
        out
    }

    async fn apply_partition_state(
        &self,
        tp: &TopicPartition,
        s: &LeaderAndIsrState,
    ) -> Result<(), Option<ReplicaError>> {
        if !s.replicas.contains(&self.inner.broker_id) {
            return Err(Some(ReplicaError::UnknownTopicOrPartition));
        }
        let partition = match self.partition(tp) {
            Some(p) => p,
            None => {
                let config = self.topic_log_config(&tp.topic).await.map_err(Some)?;
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
                let p = Arc::new(Partition::new(tp.clone(), self.inner.broker_id, log));
                self.partitions_mut().entry(tp.clone()).or_insert(p).clone()
            }
        };
        let changed = if s.leader == self.inner.broker_id {
            partition.make_leader(s).map_err(Some)?
        } else {
            // Followers fetching from their leader arrive with replication; until then a
            // follower replica only keeps its log.
            partition.make_follower(s)
        };
        if changed {
            Ok(())
        } else {
            Err(None)
        }
    }

    /// Applies StopReplica: stops hosting each partition and, with `delete`, removes its log.
    pub fn stop_replicas(
        &self,
        partitions: Vec<(TopicPartition, bool)>,
    ) -> Vec<(TopicPartition, Result<(), ReplicaError>)> {
        let mut out = Vec::with_capacity(partitions.len());
        for (tp, delete) in partitions {
            self.partitions_mut().remove(&tp);
            let r = if delete && self.inner.logs.get_log(&tp).is_some() {
                self.inner
                    .logs
                    .delete_log(&tp)
                    .map_err(ReplicaError::from_log)
            } else {
                Ok(())
            };
            if delete {
                tracing::info!(topic = %tp.topic, partition = tp.partition, "deleted replica");
            }
            out.push((tp, r));
        }
        self.notify_change();
        out
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
            Ok((read, moved)) => {
                *hw_moved |= moved;
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
