//! A log's transactional side (Kafka's `Log.updateProducers`, `completeTxn`, `lastStableOffset`
//! and `collectAbortedTransactions`): applying written batches and markers to the producer
//! state, indexing aborted transactions in the segment that holds their ABORT marker, the last
//! stable offset, and the aborted transactions a read_committed fetch must be told about.

use super::error::LogError;
use super::partition_log::{active_mut, Log};
use super::producer_state::{CompletedTxn, Origin, ProducerError, ProducerStateManager};
use super::segment::{LogSegment, CONTROL_PREFIX};
use super::txn_index::AbortedTxn;
use crate::protocol::batch::BatchHeader;
use crate::protocol::control::{self, EndTxnMarker};
use crate::util::sync::{lock, read};
use std::collections::BTreeMap;
use std::ops::Range;

/// The first bytes of batch `range` of the logical concatenation `parts`: enough to read a
/// control batch's marker.
fn prefix_of(parts: &[&[u8]], range: &Range<usize>) -> Vec<u8> {
    let want = range.len().min(CONTROL_PREFIX);
    let mut out = Vec::with_capacity(want);
    let mut start = 0;
    for p in parts {
        let end = start + p.len();
        let lo = range.start.max(start);
        let hi = (range.start + want).min(end);
        if lo < hi {
            out.extend_from_slice(&p[lo - start..hi - start]);
        }
        start = end;
    }
    out
}

/// The marker of a control batch, or `None` (logged) if it has none or it is unreadable: a
/// leader validated it, so a bad one is a damaged log, and skipping it beats refusing the
/// partition's whole history.
pub(super) fn marker_of(
    state: &ProducerStateManager,
    h: &BatchHeader,
    prefix: &[u8],
) -> Option<EndTxnMarker> {
    match control::parse_marker(h, prefix) {
        Ok(m) => m,
        Err(e) => {
            let tp = state.topic_partition();
            tracing::warn!(topic = %tp.topic, partition = tp.partition, offset = h.base_offset,
                error = %e, "skipping unreadable transaction marker");
            None
        }
    }
}

/// Applies one written batch to the producer state; a marker that ends a transaction returns
/// it.
pub(super) fn apply_one(
    state: &mut ProducerStateManager,
    h: &BatchHeader,
    prefix: Option<&[u8]>,
    origin: Origin,
) -> Option<CompletedTxn> {
    if !h.is_control() {
        state.apply_batch(h, origin);
        return None;
    }
    let marker = marker_of(state, h, prefix.unwrap_or_default())?;
    if h.producer_id < 0 {
        return None;
    }
    state.apply_marker(h, &marker)
}

/// The `.txnindex` entry of an aborted transaction, with the LSO its end leaves.
pub(super) fn index_entry(state: &ProducerStateManager, txn: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: txn.producer_id,
        first_offset: txn.first_offset,
        last_offset: txn.last_offset,
        last_stable_offset: state.last_stable_offset_after(txn),
    }
}

/// Indexes an ended transaction if it aborted (with the LSO it leaves) and completes it. Done
/// right after its marker, before the next batch: a rebuild replays batch by batch, so the
/// LSO it stores is the one written here, whatever batches shared the append.
pub(super) fn finish_txn(
    state: &mut ProducerStateManager,
    segment: &mut LogSegment,
    txn: &CompletedTxn,
) -> Result<(), LogError> {
    if txn.aborted {
        segment.txn_index_mut().append(index_entry(state, txn))?;
    }
    state.complete_txn(txn);
    Ok(())
}

impl Log {
    /// Applies a group of batches just written to the active segment (`data` holds them at
    /// `ranges`) to the producer state, indexing aborts.
    pub(super) fn apply_written(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        data: &[&[u8]],
        group: &[(BatchHeader, Range<usize>)],
        origin: Origin,
    ) -> Result<(), LogError> {
        let mut state = lock(&self.producers);
        for (h, range) in group {
            let prefix = h.is_control().then(|| prefix_of(data, range));
            if let Some(txn) = apply_one(&mut state, h, prefix.as_deref(), origin) {
                finish_txn(&mut state, active_mut(segments)?, &txn)?;
            }
        }
        if let Some((last, _)) = group.last() {
            state.update_map_end_offset(last.next_offset());
        }
        Ok(())
    }

    /// The checks of a batch written on a coordinator's behalf, before it is written: a
    /// marker's epochs, or a transactional data batch's producer epoch.
    pub(super) fn check_coordinator_batch(
        &self,
        h: &BatchHeader,
        batch: &[u8],
        offset: i64,
    ) -> Result<(), LogError> {
        let state = lock(&self.producers);
        if h.is_control() {
            let marker = control::parse_marker(h, batch)
                .map_err(|e| LogError::InvalidArgument {
                    topic_partition: self.tp.to_string(),
                    reason: e.to_string(),
                })?
                .ok_or_else(|| LogError::InvalidArgument {
                    topic_partition: self.tp.to_string(),
                    reason: "control batch without a record".into(),
                })?;
            return Ok(state.check_marker(h, &marker, offset)?);
        }
        match state.entry(h.producer_id) {
            Some(e) if h.producer_id >= 0 && h.producer_epoch < e.epoch => {
                Err(LogError::Producer(ProducerError::InvalidProducerEpoch(format!(
                    "Epoch of producer {} at offset {offset} in {} is {}, which is smaller than the last seen epoch {}",
                    h.producer_id, self.tp, h.producer_epoch, e.epoch
                ))))
            }
            _ => Ok(()),
        }
    }

    /// Transactions whose marker is below the new high watermark stop holding the LSO back.
    pub fn on_high_watermark_updated(&self, high_watermark: i64) {
        lock(&self.producers).on_high_watermark_updated(high_watermark);
    }

    /// The last stable offset under `high_watermark`: the first unstable offset if it is
    /// lower, else the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let mut state = lock(&self.producers);
        state.on_high_watermark_updated(high_watermark);
        state
            .first_unstable_offset()
            .map_or(high_watermark, |fuo| fuo.min(high_watermark))
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        lock(&self.producers).ongoing_txns()
    }

    /// Kafka's `collectAbortedTransactions` for a read_committed fetch at `fetch_offset`: the
    /// aborted transactions overlapping the segment it reads (up to the next segment's base,
    /// or the log end), walking on into later segments' indexes until an entry's LSO reaches
    /// that bound. May name transactions past the data returned; consumers ignore those.
    ///
    /// # Errors
    /// An unreadable `.txnindex`.
    pub fn collect_aborted_transactions(
        &self,
        fetch_offset: i64,
    ) -> Result<Vec<AbortedTxn>, LogError> {
        let segments = read(&self.segments);
        let start = segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let upper = segments
            .range(start + 1..)
            .next()
            .map_or(self.log_end_offset(), |(b, _)| *b);
        let mut out = Vec::new();
        for (_, segment) in segments.range(start..) {
            if segment.txn_index().is_empty() {
                continue;
            }
            let found = segment.txn_index().collect(fetch_offset, upper)?;
            out.extend(found.aborted);
            if found.complete {
                break;
            }
        }
        Ok(out)
    }

    /// Every entry of every segment's `.txnindex`, oldest first (tests and tools).
    pub fn aborted_index_entries(&self) -> Result<Vec<AbortedTxn>, LogError> {
        let segments = read(&self.segments);
        let mut out = Vec::new();
        for segment in segments.values() {
            out.extend(segment.txn_index().all()?);
        }
        Ok(out)
    }
}
