//! Per-partition producer state (Kafka 2.8's `ProducerStateManager`): for every producer id
//! that wrote to the partition, its epoch and the metadata of its last five batches, so the
//! leader can refuse gaps and fenced epochs and answer a retried batch with its original
//! offset instead of writing it twice.
//!
//! Rules on a client (leader) append, in Kafka's order:
//! - a batch whose epoch and exact sequence range match a cached batch is a duplicate;
//! - an epoch below the producer's gives INVALID_PRODUCER_EPOCH;
//! - a new epoch must start at sequence 0 unless the producer is unknown here (no state, e.g.
//!   expired or never seen: any sequence is accepted, as 2.5+ brokers do);
//! - the same epoch must continue the last sequence (`i32::MAX` wraps to 0); anything else,
//!   including a retry older than the five cached batches, gives OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a non-transactional batch while the producer has a transaction open gives
//!   INVALID_TXN_STATE.
//!
//! Replicated batches (followers, and the replay of the log at load) are applied without
//! checks, so a new leader knows the batches its predecessor wrote. Snapshots
//! (`producer_snapshot`) let a restart skip most of that replay.
//!
//! Transactions: a producer's first transactional batch opens its transaction (an *ongoing*
//! one, by first offset); its COMMIT or ABORT marker (a control batch the coordinator has the
//! leader write) closes it. A closed transaction stays *unreplicated* until the high watermark
//! passes its marker. The first unstable offset — the lowest first offset of an ongoing or
//! unreplicated transaction — bounds what read_committed consumers may see (the LSO). A marker
//! from the coordinator is refused with INVALID_PRODUCER_EPOCH if its producer epoch is older
//! than the producer's, and with TRANSACTION_COORDINATOR_FENCED if its coordinator epoch is.

use super::error::LogError;
use super::producer_snapshot::{self, SnapshotEntry};
use super::types::TopicPartition;
use crate::protocol::batch::BatchHeader;
use crate::protocol::control::{ControlType, EndTxnMarker};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// How many batches per producer are remembered for de-duplication (the client's limit on
/// in-flight requests is the same five).
pub(crate) const BATCHES_TO_RETAIN: usize = 5;

/// Where an append comes from, which decides how much is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A producer's batch: every rule applies.
    Client,
    /// A batch the broker writes on a coordinator's behalf (a transaction marker, a
    /// transactional offset commit): epochs are checked, sequences are not, control batches
    /// are allowed.
    Coordinator,
    /// A follower's copy of the leader's log, or the replay of the log at load: no checks.
    Replication,
}

/// Why a producer's batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("{0}")]
    OutOfOrderSequence(String),
    #[error("{0}")]
    InvalidProducerEpoch(String),
    #[error("{0}")]
    InvalidTxnState(String),
    #[error("{0}")]
    CoordinatorFenced(String),
}

/// A transaction whose marker has been written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Kafka's `DefaultRecordBatch.decrementSequence`.
pub(crate) fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The last sequence of a batch (its base sequence plus its offset span, wrapping).
pub(crate) fn last_sequence(h: &BatchHeader) -> i32 {
    increment_sequence(h.base_sequence, h.last_offset_delta)
}

/// What is remembered of one written batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub last_seq: i32,
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
}

impl BatchMetadata {
    pub fn first_seq(&self) -> i32 {
        decrement_sequence(self.last_seq, self.offset_delta)
    }

    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// One producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`BATCHES_TO_RETAIN`].
    pub batches: VecDeque<BatchMetadata>,
    pub coordinator_epoch: i32,
    pub last_timestamp: i64,
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn empty() -> ProducerEntry {
        ProducerEntry {
            epoch: -1,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
    }

    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn duplicate_of(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq() == first_seq && b.last_seq == last_seq)
            .copied()
    }

    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata) {
        if self.epoch != epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
        if self.batches.len() == BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_timestamp = batch.timestamp;
    }

    fn to_snapshot(&self, producer_id: i64) -> SnapshotEntry {
        let last = self.batches.back();
        SnapshotEntry {
            producer_id,
            epoch: self.epoch,
            last_sequence: last.map_or(-1, |b| b.last_seq),
            last_offset: last.map_or(-1, |b| b.last_offset),
            offset_delta: last.map_or(0, |b| b.offset_delta),
            timestamp: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_first_offset: self.current_txn_first_offset.unwrap_or(-1),
        }
    }

    fn from_snapshot(e: &SnapshotEntry) -> ProducerEntry {
        let mut batches = VecDeque::new();
        // Kafka keeps only the last batch in a snapshot, so older retries are not recognised
        // after a reload (they get OUT_OF_ORDER_SEQUENCE_NUMBER).
        if e.last_offset >= 0 {
            batches.push_back(BatchMetadata {
                last_seq: e.last_sequence,
                last_offset: e.last_offset,
                offset_delta: e.offset_delta,
                timestamp: e.timestamp,
            });
        }
        ProducerEntry {
            epoch: e.epoch,
            batches,
            coordinator_epoch: e.coordinator_epoch,
            last_timestamp: e.timestamp,
            current_txn_first_offset: (e.current_txn_first_offset >= 0)
                .then_some(e.current_txn_first_offset),
        }
    }
}

/// The outcome of checking a client batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it.
    Append,
    /// Already written: answer with this batch's offsets and write nothing.
    Duplicate(BatchMetadata),
}

pub(crate) struct ProducerStateManager {
    tp: TopicPartition,
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// The offset up to which the state reflects the log (exclusive).
    last_map_offset: i64,
    last_snap_offset: i64,
    /// Offsets of the snapshot files on disk.
    snapshots: BTreeSet<i64>,
    expiration_ms: i64,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker the high watermark has not passed yet: first offset →
    /// (producer id, marker offset).
    unreplicated: BTreeMap<i64, (i64, i64)>,
    /// A rebuild failed part-way (a snapshot write refused, say for want of descriptors, which
    /// does not take the directory offline): the state does not match the log until a
    /// rebuild succeeds, and the log refuses appends until then.
    stale: bool,
}

impl std::fmt::Debug for ProducerStateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerStateManager")
            .field("producers", &self.producers.len())
            .field("last_map_offset", &self.last_map_offset)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

impl ProducerStateManager {
    /// An empty state for the log in `dir`, knowing the snapshot files already there.
    pub(crate) fn new(
        tp: TopicPartition,
        dir: &Path,
        expiration_ms: i64,
    ) -> Result<ProducerStateManager, LogError> {
        Ok(ProducerStateManager {
            tp,
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            last_map_offset: 0,
            last_snap_offset: 0,
            snapshots: producer_snapshot::list(dir)?.into_iter().collect(),
            expiration_ms,
            ongoing: BTreeMap::new(),
            unreplicated: BTreeMap::new(),
            stale: false,
        })
    }

    pub(crate) fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub(crate) fn set_expiration_ms(&mut self, ms: i64) {
        self.expiration_ms = ms;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.producers.is_empty() && self.unreplicated.is_empty()
    }

    pub(crate) fn map_end_offset(&self) -> i64 {
        self.last_map_offset
    }

    pub(crate) fn latest_snapshot(&self) -> Option<i64> {
        self.snapshots.iter().next_back().copied()
    }

    pub(crate) fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.iter().copied().collect()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub(crate) fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Checks a client batch from `producer_id ≥ 0`, whose offsets start at `first_offset`,
    /// against the rules in the module doc. Nothing changes here.
    pub(crate) fn check_client_batch(
        &self,
        h: &BatchHeader,
        first_offset: i64,
    ) -> Result<Verdict, ProducerError> {
        let pid = h.producer_id;
        let first_seq = h.base_sequence;
        let entry = self.producers.get(&pid);
        if let Some(dup) =
            entry.and_then(|e| e.duplicate_of(h.producer_epoch, first_seq, last_sequence(h)))
        {
            return Ok(Verdict::Duplicate(dup));
        }
        let current_epoch = entry.map_or(-1, |e| e.epoch);
        let tp = &self.tp;
        if h.producer_epoch < current_epoch {
            return Err(ProducerError::InvalidProducerEpoch(format!(
                "Epoch of producer {pid} at offset {first_offset} in {tp} is {}, which is smaller than the last seen epoch {current_epoch}",
                h.producer_epoch
            )));
        }
        if h.producer_epoch != current_epoch {
            if first_seq != 0 && current_epoch != -1 {
                return Err(ProducerError::OutOfOrderSequence(format!(
                    "Invalid sequence number for new epoch of producer {pid} at offset {first_offset} in partition {tp}: {} (request epoch), {first_seq} (seq. number), {current_epoch} (current producer epoch)",
                    h.producer_epoch
                )));
            }
        } else {
            let last_seq = entry.map_or(-1, ProducerEntry::last_seq);
            if current_epoch != -1 && !in_sequence(last_seq, first_seq) {
                return Err(ProducerError::OutOfOrderSequence(format!(
                    "Out of order sequence number for producer {pid} at offset {first_offset} in partition {tp}: {first_seq} (incoming seq. number), {last_seq} (current end sequence number)"
                )));
            }
        }
        if entry.is_some_and(|e| e.current_txn_first_offset.is_some()) && !h.is_transactional() {
            return Err(ProducerError::InvalidTxnState(format!(
                "Expected transactional write from producer {pid} at offset {first_offset} in partition {tp}"
            )));
        }
        Ok(Verdict::Append)
    }

    /// Records a written data batch (its header carries its final offsets); control batches
    /// go through [`Self::apply_marker`].
    pub(crate) fn apply_batch(&mut self, h: &BatchHeader, origin: Origin) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(ProducerEntry::empty);
        if origin == Origin::Replication && h.producer_epoch < entry.epoch {
            tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition,
                producer_id = h.producer_id, epoch = h.producer_epoch, last_epoch = entry.epoch,
                offset = h.base_offset, "replicated batch has an older producer epoch");
        }
        entry.add_batch(
            h.producer_epoch,
            BatchMetadata {
                last_seq: last_sequence(h),
                last_offset: h.last_offset(),
                offset_delta: h.last_offset_delta,
                timestamp: h.max_timestamp,
            },
        );
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
    }

    /// Kafka's `checkProducerEpoch` and `checkCoordinatorEpoch` for a marker the coordinator
    /// asks this leader to write. Nothing changes here.
    pub(crate) fn check_marker(
        &self,
        h: &BatchHeader,
        marker: &EndTxnMarker,
        offset: i64,
    ) -> Result<(), ProducerError> {
        let pid = h.producer_id;
        let tp = &self.tp;
        let Some(entry) = self.producers.get(&pid) else {
            return Ok(());
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch(format!(
                "Epoch of producer {pid} at offset {offset} in {tp} is {}, which is smaller than the last seen epoch {}",
                h.producer_epoch, entry.epoch
            )));
        }
        if entry.coordinator_epoch > marker.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced(format!(
                "Invalid coordinator epoch for producerId {pid} at offset {offset} in partition {tp}: {} (zombie), {} (current)",
                marker.coordinator_epoch, entry.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// Records a written marker (Kafka's `appendEndTxnMarker`): the producer's transaction, if
    /// one was open, ends here. The caller indexes an abort and then calls
    /// [`Self::complete_txn`].
    pub(crate) fn apply_marker(
        &mut self,
        h: &BatchHeader,
        marker: &EndTxnMarker,
    ) -> Option<CompletedTxn> {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(ProducerEntry::empty);
        if h.producer_epoch < entry.epoch {
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
                producer_id = h.producer_id, epoch = h.producer_epoch, last_epoch = entry.epoch,
                offset = h.base_offset, "marker has an older producer epoch");
        }
        let completed = entry.current_txn_first_offset.map(|first| CompletedTxn {
            producer_id: h.producer_id,
            first_offset: first,
            last_offset: h.base_offset,
            aborted: marker.control == ControlType::Abort,
        });
        if entry.epoch != h.producer_epoch {
            entry.batches.clear();
            entry.epoch = h.producer_epoch;
        }
        entry.current_txn_first_offset = None;
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = h.max_timestamp;
        completed
    }

    /// The LSO once `txn` has ended (what its `.txnindex` entry stores): the first offset of
    /// the next open transaction of another producer, else the offset after its marker.
    pub(crate) fn last_stable_offset_after(&self, txn: &CompletedTxn) -> i64 {
        self.ongoing
            .iter()
            .find(|(_, pid)| **pid != txn.producer_id)
            .map_or(txn.last_offset + 1, |(first, _)| *first)
    }

    /// Moves an ended transaction from ongoing to unreplicated.
    pub(crate) fn complete_txn(&mut self, txn: &CompletedTxn) {
        if self.ongoing.remove(&txn.first_offset).is_none() {
            tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition,
                producer_id = txn.producer_id, first_offset = txn.first_offset,
                "completed a transaction that was not open");
        }
        self.unreplicated
            .insert(txn.first_offset, (txn.producer_id, txn.last_offset));
    }

    /// The lowest first offset of an open or not yet replicated transaction.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Transactions whose marker is below `high_watermark` are replicated: they no longer
    /// hold the LSO back.
    pub(crate) fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, (_, last)| *last >= high_watermark);
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub(crate) fn ongoing_txns(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(o, p)| (*o, *p)).collect()
    }

    pub(crate) fn update_map_end_offset(&mut self, offset: i64) {
        self.last_map_offset = offset;
    }

    /// Writes a snapshot at the map end unless one that recent exists.
    pub(crate) fn take_snapshot(&mut self) -> Result<(), LogError> {
        if self.last_map_offset <= self.last_snap_offset {
            return Ok(());
        }
        let mut entries: Vec<SnapshotEntry> = self
            .producers
            .iter()
            .map(|(pid, e)| e.to_snapshot(*pid))
            .collect();
        entries.sort_unstable_by_key(|e| e.producer_id);
        producer_snapshot::write(&self.dir, self.last_map_offset, &entries)?;
        tracing::debug!(topic = %self.tp.topic, partition = self.tp.partition,
            offset = self.last_map_offset, producers = entries.len(), "wrote producer snapshot");
        self.snapshots.insert(self.last_map_offset);
        self.last_snap_offset = self.last_map_offset;
        Ok(())
    }

    pub(crate) fn delete_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        self.snapshots.remove(&offset);
        producer_snapshot::delete(&self.dir, offset)
    }

    /// Kafka's `removeStraySnapshots`: snapshots at offsets with no segment go, except the
    /// newest one when it lies above every segment base (the clean-shutdown snapshot).
    pub(crate) fn remove_stray_snapshots(&mut self, bases: &BTreeSet<i64>) -> Result<(), LogError> {
        let max_base = bases.iter().next_back().copied();
        let strays: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| !bases.contains(o))
            .collect();
        let keep = strays
            .last()
            .copied()
            .filter(|o| max_base.is_none_or(|m| *o > m));
        for offset in strays {
            if Some(offset) != keep {
                self.delete_snapshot(offset)?;
            }
        }
        Ok(())
    }

    fn is_expired(&self, now: i64, e: &ProducerEntry) -> bool {
        e.current_txn_first_offset.is_none()
            && now.saturating_sub(e.last_timestamp) >= self.expiration_ms
    }

    /// Forgets producers idle for `transactional.id.expiration.ms` with no open transaction.
    pub(crate) fn remove_expired(&mut self, now: i64) -> usize {
        let before = self.producers.len();
        let expired: Vec<i64> = self
            .producers
            .iter()
            .filter(|(_, e)| self.is_expired(now, e))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in expired {
            self.producers.remove(&pid);
        }
        before - self.producers.len()
    }

    /// Loads the newest readable snapshot at or below `at_most` (deleting corrupt ones on the
    /// way), or starts empty at `log_start`.
    fn load_from_snapshot(
        &mut self,
        log_start: i64,
        at_most: i64,
        now: i64,
    ) -> Result<(), LogError> {
        while let Some(offset) = self.snapshots.range(..=at_most).next_back().copied() {
            match producer_snapshot::read(&self.dir, offset)? {
                Ok(entries) => {
                    tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, offset,
                        producers = entries.len(), "loading producer state from snapshot");
                    for e in &entries {
                        let entry = ProducerEntry::from_snapshot(e);
                        if !self.is_expired(now, &entry) {
                            if let Some(first) = entry.current_txn_first_offset {
                                self.ongoing.insert(first, e.producer_id);
                            }
                            self.producers.insert(e.producer_id, entry);
                        }
                    }
                    self.last_snap_offset = offset;
                    self.last_map_offset = offset;
                    return Ok(());
                }
                Err(corrupt) => {
                    tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, offset,
                        error = %corrupt, "deleting unreadable producer snapshot");
                    self.delete_snapshot(offset)?;
                }
            }
        }
        self.last_snap_offset = log_start;
        self.last_map_offset = log_start;
        Ok(())
    }

    /// Kafka's `truncateAndReload`: drops snapshots above `log_end` or at or below
    /// `log_start` and, unless the state already ends at `log_end`, reloads the newest
    /// remaining snapshot (the caller replays the log after it).
    pub(crate) fn truncate_and_reload(
        &mut self,
        log_start: i64,
        log_end: i64,
        now: i64,
    ) -> Result<(), LogError> {
        let doomed: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| *o > log_end || *o <= log_start)
            .collect();
        for offset in doomed {
            self.delete_snapshot(offset)?;
        }
        if log_end != self.last_map_offset {
            self.producers.clear();
            self.ongoing.clear();
            self.unreplicated.clear();
            self.load_from_snapshot(log_start, log_end, now)
        } else {
            self.on_log_start_offset_incremented(log_start);
            Ok(())
        }
    }

    /// Forgets everything and loads the newest snapshot at or below `offset`, keeping newer
    /// snapshot files: a replay from there rebuilds what only the log holds (a recovered
    /// segment's transaction index).
    pub(crate) fn reload_at_or_below(
        &mut self,
        log_start: i64,
        offset: i64,
        now: i64,
    ) -> Result<(), LogError> {
        self.producers.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
        self.load_from_snapshot(log_start, offset, now)
    }

    /// The log start moved up: the state keeps its producers (they expire by time, as in
    /// Kafka since KAFKA-7190), but cannot end below the log.
    pub(crate) fn on_log_start_offset_incremented(&mut self, log_start: i64) {
        self.unreplicated.retain(|_, (_, last)| *last >= log_start);
        if self.last_map_offset < log_start {
            self.last_map_offset = log_start;
        }
        self.last_snap_offset = self.latest_snapshot().unwrap_or(log_start);
    }

    /// Everything is gone (full truncation): no producers, no snapshots.
    pub(crate) fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.producers.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
        for o in self.snapshot_offsets() {
            self.delete_snapshot(o)?;
        }
        self.last_snap_offset = 0;
        self.last_map_offset = offset;
        // Empty is right for an empty log, whatever an earlier rebuild left.
        self.stale = false;
        Ok(())
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.stale
    }

    pub(crate) fn set_stale(&mut self, stale: bool) {
        self.stale = stale;
    }
}
