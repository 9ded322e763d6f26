//! The transaction coordinator (Kafka's `TransactionCoordinator` and `TransactionStateManager`):
//! for each transactional id whose `__transaction_state` partition this broker leads, its
//! metadata, the requests that move it through the state machine ([`super::metadata`]), the
//! writes of each transition to the log, and the end of a transaction: PrepareCommit or
//! PrepareAbort written, the client answered, markers sent to every partition's leader
//! ([`super::markers`]), then CompleteCommit or CompleteAbort written.
//!
//! The cache sits behind one mutex that is never held across an `.await`; a transition is
//! prepared under it (marking the id pending), written without it, and completed under it if
//! this broker still coordinates the partition at the same epoch.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::util::periodic::spawn_every;

use super::error::TxnError;
use super::markers::{MarkerOutcome, MarkerSender};
use super::metadata::{TxnMetadata, TxnState, TxnTransit};
use super::records::{self, TRANSACTION_STATE_TOPIC};
use super::ProducerIdManager;
use crate::config::KafkaConfig;
use crate::coordinator::hash;
use crate::log::TopicPartition;
use crate::metadata::MetadataCache;
use crate::protocol::batch;
use crate::replication::ReplicaManager;
use crate::util::clock::now_ms;
use crate::util::sync::lock;

/// The settings the coordinator runs with (from the broker's config).
#[derive(Debug, Clone)]
pub struct TxnCoordinatorConfig {
    pub broker_id: i32,
    pub num_partitions: i32,
    pub max_timeout_ms: i32,
    pub load_buffer_size: usize,
    /// How long a write of the transaction state, or of markers, may wait for replication.
    pub write_timeout: Duration,
    pub abort_check_interval: Duration,
    pub expiration_ms: i64,
    pub expiry_check_interval: Duration,
    /// The listener markers are sent on (the inter-broker one).
    pub listener: String,
}

/// One `__transaction_state` partition this broker leads.
pub(super) struct Owned {
    pub epoch: i32,
    pub loading: bool,
    pub txns: HashMap<String, TxnMetadata>,
}

pub(super) struct Inner {
    pub config: TxnCoordinatorConfig,
    pub replicas: ReplicaManager,
    pub producer_ids: Arc<ProducerIdManager>,
    pub owned: Mutex<HashMap<i32, Owned>>,
    pub markers: MarkerSender,
}

/// The transaction coordinator. Cheap to clone.
#[derive(Clone)]
pub struct TransactionCoordinator {
    pub(super) inner: Arc<Inner>,
}

/// What InitProducerId decided under the lock.
enum InitStep {
    Write(i32, TxnTransit),
    Fence(TxnTransit),
}

impl TxnCoordinatorConfig {
    /// The broker's transaction settings.
    pub fn from_broker(c: &KafkaConfig) -> Self {
        Self {
            broker_id: c.broker_id,
            num_partitions: c.transaction_state_log_num_partitions,
            max_timeout_ms: c.transaction_max_timeout_ms,
            load_buffer_size: c.transaction_state_log_load_buffer_size,
            write_timeout: Duration::from_millis(c.request_timeout_ms),
            abort_check_interval: Duration::from_millis(
                c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            ),
            expiration_ms: c.transactional_id_expiration_ms,
            expiry_check_interval: Duration::from_millis(
                c.transaction_remove_expired_transaction_cleanup_interval_ms,
            ),
            listener: c.inter_broker_listener_name.clone(),
        }
    }
}

impl TransactionCoordinator {
    pub fn new(
        config: TxnCoordinatorConfig,
        replicas: ReplicaManager,
        metadata: MetadataCache,
        producer_ids: Arc<ProducerIdManager>,
    ) -> Self {
        let markers = MarkerSender::new(metadata, config.listener.clone(), config.write_timeout);
        Self {
            inner: Arc::new(Inner {
                config,
                replicas,
                producer_ids,
                owned: Mutex::new(HashMap::new()),
                markers,
            }),
        }
    }

    pub(super) fn owned(&self) -> MutexGuard<'_, HashMap<i32, Owned>> {
        lock(&self.inner.owned)
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        hash::partition_for(transactional_id, self.inner.config.num_partitions)
    }

    /// Runs `f` on the id's metadata (creating nothing) with the partition's coordinator
    /// epoch, after Kafka's ownership checks.
    fn with_txn<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut TxnMetadata, i32) -> Result<T, TxnError>,
    ) -> Result<T, TxnError> {
        let mut owned = self.owned();
        let p = owned
            .get_mut(&self.partition_for(id))
            .ok_or(TxnError::NotCoordinator)?;
        if p.loading {
            return Err(TxnError::LoadInProgress);
        }
        let epoch = p.epoch;
        let txn = p
            .txns
            .get_mut(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        f(txn, epoch)
    }

    fn check_owned(&self, id: &str) -> Result<(), TxnError> {
        match self.owned().get(&self.partition_for(id)) {
            None => Err(TxnError::NotCoordinator),
            Some(p) if p.loading => Err(TxnError::LoadInProgress),
            Some(_) => Ok(()),
        }
    }

    /// Writes `transit` for `id` and, if this broker still coordinates it at
    /// `coordinator_epoch`, completes it in the cache; a failed write clears the pending
    /// transition (Kafka's `appendTransactionToLog`).
    pub(super) async fn write(
        &self,
        id: &str,
        coordinator_epoch: i32,
        transit: &TxnTransit,
    ) -> Result<(), TxnError> {
        let partition = self.partition_for(id);
        let value = (transit.state != TxnState::Dead).then(|| records::value(transit));
        let key = records::key(id);
        let batch = batch::build_batch(0, now_ms(), &[(Some(key.as_ref()), value.as_deref())]);
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        let result = self
            .inner
            .replicas
            .append_records(
                -1,
                self.inner.config.write_timeout,
                vec![(tp, Some(batch.freeze()))],
            )
            .await
            .into_iter()
            .next()
            .map(|r| r.result);
        let mut owned = self.owned();
        let current = owned
            .get_mut(&partition)
            .filter(|p| p.epoch == coordinator_epoch && !p.loading);
        let outcome = match result {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                tracing::warn!(transactional_id = id, topic = TRANSACTION_STATE_TOPIC, partition,
                    state = transit.state.name(), error = %e, "writing transaction state failed");
                Err(TxnError::from_append(&e))
            }
            None => Err(TxnError::StoreFailed),
        };
        let Some(p) = current else {
            return Err(TxnError::NotCoordinator);
        };
        match outcome {
            Ok(()) => {
                if transit.state == TxnState::Dead {
                    p.txns.remove(id);
                    return Ok(());
                }
                let Some(txn) = p.txns.get_mut(id) else {
                    return Err(TxnError::NotCoordinator);
                };
                txn.complete(transit).map_err(|e| {
                    tracing::error!(transactional_id = id, error = %e, "transition not completed");
                    TxnError::StoreFailed
                })
            }
            Err(e) => {
                if let Some(txn) = p.txns.get_mut(id) {
                    txn.abort_pending();
                }
                Err(e)
            }
        }
    }

    /// InitProducerId with a transactional id (reference §2.4): the producer id and epoch to
    /// use, after fencing any earlier producer of the id.
    ///
    /// # Errors
    /// See [`TxnError`]; a fence of an open transaction answers CONCURRENT_TRANSACTIONS and the
    /// client retries.
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        // The expiry of idle ids may remove this one between the lookup below and its use
        // (the lock is not held across the producer-id allocation): the second try finds it
        // gone and starts it afresh, as Kafka would, instead of answering a mapping error.
        match self.init_producer_id_once(id, timeout_ms, expected).await {
            Err(TxnError::InvalidProducerIdMapping) => {
                self.init_producer_id_once(id, timeout_ms, expected).await
            }
            other => other,
        }
    }

    async fn init_producer_id_once(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.inner.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        self.check_owned(id)?;
        let known = self
            .owned()
            .get(&self.partition_for(id))
            .is_some_and(|p| p.txns.contains_key(id));
        if !known {
            let pid = self.generate_id().await?;
            let mut owned = self.owned();
            let p = owned
                .get_mut(&self.partition_for(id))
                .filter(|p| !p.loading)
                .ok_or(TxnError::NotCoordinator)?;
            p.txns
                .entry(id.to_string())
                .or_insert_with(|| TxnMetadata::new(id, pid, timeout_ms, now_ms()));
        }
        // A rotation to a new producer id needs one generated outside the lock.
        let needs_rotation = self.with_txn(id, |t, _| {
            Ok(t.is_epoch_exhausted()
                && matches!(
                    t.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                )
                && expected.is_none_or(|(_, e)| e == t.producer_epoch))
        })?;
        let rotated = if needs_rotation {
            Some(self.generate_id().await?)
        } else {
            None
        };
        let step = self.with_txn(id, |t, epoch| {
            prepare_init(t, epoch, timeout_ms, expected, rotated)
        })?;
        match step {
            InitStep::Write(epoch, transit) => {
                self.write(id, epoch, &transit).await?;
                tracing::info!(
                    transactional_id = id,
                    producer_id = transit.producer_id,
                    epoch = transit.producer_epoch,
                    "initialised transactional producer"
                );
                Ok((transit.producer_id, transit.producer_epoch))
            }
            InitStep::Fence(transit) => {
                tracing::info!(
                    transactional_id = id,
                    producer_id = transit.producer_id,
                    epoch = transit.producer_epoch,
                    "fencing the producer's open transaction"
                );
                self.end_transaction(
                    id,
                    transit.producer_id,
                    transit.producer_epoch,
                    false,
                    false,
                )
                .await?;
                Err(TxnError::ConcurrentTransactions)
            }
        }
    }

    async fn generate_id(&self) -> Result<i64, TxnError> {
        self.inner.producer_ids.generate().await.map_err(|e| {
            tracing::warn!(error = %e, "no producer id for a transactional producer");
            TxnError::CoordinatorNotAvailable
        })
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn (reference §2.5).
    ///
    /// # Errors
    /// See [`TxnError`].
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<(), TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        let step = self.with_txn(id, |t, coordinator_epoch| {
            if t.producer_id != producer_id {
                return Err(TxnError::InvalidProducerIdMapping);
            }
            if t.producer_epoch != epoch {
                return Err(TxnError::ProducerFenced);
            }
            if t.pending.is_some() || t.state.is_prepare() {
                return Err(TxnError::ConcurrentTransactions);
            }
            if t.state == TxnState::Ongoing && partitions.is_subset(&t.partitions) {
                return Ok(None);
            }
            let transit = t
                .prepare_add_partitions(partitions, now_ms())
                .map_err(|e| illegal(id, &e))?;
            Ok(Some((coordinator_epoch, transit)))
        })?;
        match step {
            None => Ok(()),
            Some((coordinator_epoch, transit)) => self.write(id, coordinator_epoch, &transit).await,
        }
    }

    /// EndTxn from the client (reference §2.6).
    ///
    /// # Errors
    /// See [`TxnError`].
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.end_transaction(id, producer_id, epoch, commit, true)
            .await
    }

    /// Kafka's `endTransaction`: write Prepare*, answer, then markers and Complete* in the
    /// background. `from_client == false` is the coordinator's own abort after a fence.
    pub(super) async fn end_transaction(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        from_client: bool,
    ) -> Result<(), TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        let mut is_fence = false;
        let step = self.with_txn(id, |t, coordinator_epoch| {
            if t.producer_id != producer_id {
                return Err(TxnError::InvalidProducerIdMapping);
            }
            if (from_client && epoch != t.producer_epoch) || epoch < t.producer_epoch {
                return Err(TxnError::ProducerFenced);
            }
            if t.pending.is_some() && t.pending != Some(TxnState::PrepareEpochFence) {
                return Err(TxnError::ConcurrentTransactions);
            }
            use TxnState::*;
            match (t.state, commit) {
                (Ongoing, _) => {
                    let fence = (!commit && t.pending == Some(PrepareEpochFence)).then_some(epoch);
                    is_fence = fence.is_some();
                    let transit = t
                        .prepare_end(commit, now_ms(), fence)
                        .map_err(|e| illegal(id, &e))?;
                    Ok(Some((coordinator_epoch, transit)))
                }
                (CompleteCommit, true) | (CompleteAbort, false) => Ok(None),
                (PrepareCommit, true) | (PrepareAbort, false) => {
                    Err(TxnError::ConcurrentTransactions)
                }
                _ => Err(TxnError::InvalidTxnState),
            }
        })?;
        let Some((coordinator_epoch, prepared)) = step else {
            return Ok(());
        };
        if let Err(e) = self.write(id, coordinator_epoch, &prepared).await {
            if is_fence {
                let _ = self.with_txn(id, |t, _| {
                    t.failed_epoch_fence = true;
                    Ok(())
                });
            }
            return Err(e);
        }
        let complete = self.with_txn(id, |t, current_epoch| {
            if current_epoch != coordinator_epoch {
                return Err(TxnError::NotCoordinator);
            }
            if t.producer_id != producer_id || t.producer_epoch != prepared.producer_epoch {
                return Err(TxnError::ProducerFenced);
            }
            if t.pending.is_some() {
                return Err(TxnError::ConcurrentTransactions);
            }
            t.prepare_complete(now_ms()).map_err(|e| illegal(id, &e))
        })?;
        self.spawn_completion(id.to_string(), coordinator_epoch, prepared, complete);
        Ok(())
    }

    /// Sends the markers of a prepared transaction, then writes its completion.
    pub(super) fn spawn_completion(
        &self,
        id: String,
        coordinator_epoch: i32,
        prepared: TxnTransit,
        complete: TxnTransit,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let commit = prepared.state == TxnState::PrepareCommit;
            let partition = me.partition_for(&id);
            let still_ours = || {
                me.owned()
                    .get(&partition)
                    .is_some_and(|p| p.epoch == coordinator_epoch && !p.loading)
            };
            let outcome = me
                .inner
                .markers
                .write_markers(
                    prepared.producer_id,
                    prepared.producer_epoch,
                    commit,
                    coordinator_epoch,
                    &prepared.partitions,
                    &still_ours,
                )
                .await;
            if outcome != MarkerOutcome::Written {
                tracing::info!(transactional_id = %id, ?outcome,
                    "markers not all written; the transaction stays prepared");
                let _ = me.with_txn(&id, |t, _| {
                    t.abort_pending();
                    Ok(())
                });
                return;
            }
            loop {
                match me.write(&id, coordinator_epoch, &complete).await {
                    Ok(()) => {
                        tracing::debug!(transactional_id = %id, state = complete.state.name(),
                            "transaction completed");
                        return;
                    }
                    Err(TxnError::CoordinatorNotAvailable) if still_ours() => {
                        // Kafka retries this write until it lands or the partition moves.
                        let _ = me.with_txn(&id, |t, _| {
                            t.pending = Some(complete.state);
                            Ok(())
                        });
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tracing::info!(transactional_id = %id, error = %e,
                            "completion not written; the next coordinator finishes it");
                        return;
                    }
                }
            }
        });
    }

    /// Aborts every open transaction past its timeout (fencing its producer first), as
    /// Kafka's `abortTimedOutTransactions`. Returns how many it started to abort.
    pub async fn abort_timed_out(&self, now: i64) -> usize {
        let candidates: Vec<(String, i64)> = self
            .owned()
            .values()
            .filter(|p| !p.loading)
            .flat_map(|p| p.txns.values())
            .filter(|t| {
                t.state == TxnState::Ongoing
                    && t.pending.is_none()
                    && t.start_ms.saturating_add(i64::from(t.timeout_ms)) < now
            })
            .map(|t| (t.transactional_id.clone(), t.producer_id))
            .collect();
        let mut started = 0;
        for (id, pid) in candidates {
            let fence = self.with_txn(&id, |t, _| {
                if t.producer_id != pid || t.pending.is_some() || t.state != TxnState::Ongoing {
                    return Ok(None);
                }
                t.prepare_fence().map(Some).map_err(|e| illegal(&id, &e))
            });
            let Ok(Some(transit)) = fence else { continue };
            tracing::info!(transactional_id = %id, producer_id = pid, epoch = transit.producer_epoch,
                "aborting a transaction past its timeout");
            match self
                .end_transaction(&id, pid, transit.producer_epoch, false, false)
                .await
            {
                Ok(()) => started += 1,
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "timed-out transaction not aborted");
                    let _ = self.with_txn(&id, |t, _| {
                        if t.pending == Some(TxnState::PrepareEpochFence) {
                            t.abort_pending();
                        }
                        Ok(())
                    });
                }
            }
        }
        started
    }

    /// Removes transactional ids idle for `transactional.id.expiration.ms`, as Kafka's
    /// `removeExpiredTransactionalIds`: only an id with no transaction open or completing
    /// (Empty, CompleteCommit, CompleteAbort, nothing pending) goes; a tombstone in
    /// `__transaction_state` makes the removal survive a reload. Returns how many went.
    pub async fn expire_transactional_ids(&self, now: i64) -> usize {
        let horizon = now.saturating_sub(self.inner.config.expiration_ms);
        let candidates: Vec<(String, i64, i16)> = self
            .owned()
            .values()
            .filter(|p| !p.loading)
            .flat_map(|p| p.txns.values())
            .filter(|t| t.pending.is_none() && is_idle(t.state) && t.last_update_ms <= horizon)
            .map(|t| (t.transactional_id.clone(), t.producer_id, t.producer_epoch))
            .collect();
        let mut removed = 0;
        for (id, pid, epoch) in candidates {
            // Re-checked under the lock: the producer may have come back since the scan.
            let dead = self.with_txn(&id, |t, coordinator_epoch| {
                let unchanged = t.producer_id == pid && t.producer_epoch == epoch;
                if !unchanged
                    || t.pending.is_some()
                    || !is_idle(t.state)
                    || t.last_update_ms > horizon
                {
                    return Ok(None);
                }
                let transit = t.prepare_dead().map_err(|e| illegal(&id, &e))?;
                Ok(Some((transit, coordinator_epoch)))
            });
            let Ok(Some((transit, coordinator_epoch))) = dead else {
                continue;
            };
            match self.write(&id, coordinator_epoch, &transit).await {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(transactional_id = %id, producer_id = pid,
                        "transactional id expired");
                }
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "expired transactional id not removed")
                }
            }
        }
        removed
    }

    /// Starts the periodic abort of timed-out transactions and removal of expired ids.
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let aborter = self.clone();
        let expirer = self.clone();
        vec![
            spawn_every(
                self.inner.config.abort_check_interval,
                shutdown.clone(),
                move || {
                    let me = aborter.clone();
                    async move {
                        me.abort_timed_out(now_ms()).await;
                    }
                },
            ),
            spawn_every(
                self.inner.config.expiry_check_interval,
                shutdown,
                move || {
                    let me = expirer.clone();
                    async move {
                        me.expire_transactional_ids(now_ms()).await;
                    }
                },
            ),
        ]
    }

    /// (state, producer id, epoch, partitions) of `id`, for tests and tools.
    pub fn describe(&self, id: &str) -> Option<(TxnState, i64, i16, BTreeSet<TopicPartition>)> {
        self.owned()
            .get(&self.partition_for(id))
            .and_then(|p| p.txns.get(id))
            .map(|t| {
                (
                    t.state,
                    t.producer_id,
                    t.producer_epoch,
                    t.partitions.clone(),
                )
            })
    }
}

/// States in which no transaction of the id is open or being completed.
fn is_idle(state: TxnState) -> bool {
    matches!(
        state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    )
}

fn illegal(id: &str, e: &super::metadata::TransitionError) -> TxnError {
    tracing::error!(transactional_id = id, error = %e, "refused an illegal transaction transition");
    TxnError::InvalidTxnState
}

/// Kafka's `prepareInitProducerIdTransit`, under the lock.
fn prepare_init(
    t: &mut TxnMetadata,
    coordinator_epoch: i32,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    rotated: Option<i64>,
) -> Result<InitStep, TxnError> {
    let id = t.transactional_id.clone();
    if t.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    let valid = |(pid, epoch): (i64, i16)| {
        t.producer_epoch == -1
            || pid == t.producer_id
            || (pid == t.last_producer_id && super::metadata::is_epoch_exhausted(epoch))
    };
    if !expected.is_none_or(valid) {
        return Err(TxnError::ProducerFenced);
    }
    let now = now_ms();
    match t.state {
        TxnState::PrepareAbort | TxnState::PrepareCommit => Err(TxnError::ConcurrentTransactions),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let transit = match rotated {
                Some(new_pid) if t.is_epoch_exhausted() => t
                    .prepare_producer_id_rotation(new_pid, timeout_ms, now, expected.is_some())
                    .map_err(|e| illegal(&id, &e))?,
                _ => t
                    .prepare_increment_epoch(timeout_ms, expected.map(|(_, e)| e), now)
                    .map_err(|e| illegal(&id, &e))?
                    .ok_or(TxnError::ProducerFenced)?,
            };
            Ok(InitStep::Write(coordinator_epoch, transit))
        }
        TxnState::Ongoing => {
            let transit = t.prepare_fence().map_err(|e| illegal(&id, &e))?;
            Ok(InitStep::Fence(transit))
        }
        TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::InvalidTxnState),
    }
}
