//! Rebuilding a log's producer state from its snapshots and segments (Kafka's
//! `Log.rebuildProducerState`), at load and after a truncation.
//!
//! The newest snapshot at or below the end is loaded and the batch headers after it are
//! replayed as replicated batches (no checks), writing snapshots at the bases of the last two
//! segments on the way and at the end, so the next rebuild starts late. A log that stopped
//! cleanly yet has no snapshot at all was written before producer state existed (or never had
//! an idempotent batch): as Kafka does on upgrade, it gets empty snapshots instead of a scan.
//!
//! Markers in the replay end transactions as they did when written. Segments recovered after
//! a crash had their `.txnindex` emptied (`recovery`): for them the replay starts at a
//! snapshot no later than the first such segment and writes their aborted transactions again,
//! with the LSO each abort left, so the index reads as it did before the crash.

use super::error::LogError;
use super::partition_log::Log;
use super::producer_state::{Origin, ProducerEntry, ProducerStateManager};
use super::segment::LogSegment;
use super::txn_log::{apply_one, index_entry};
use crate::util::sync::{lock, read};
use std::collections::BTreeMap;

impl Log {
    /// Forgets producers idle past `transactional.id.expiration.ms` (Kafka's periodic
    /// `removeExpiredProducers`); returns how many went.
    pub fn remove_expired_producers(&self, now: i64) -> usize {
        let _segments = read(&self.segments);
        let mut producers = lock(&self.producers);
        producers.set_expiration_ms(self.config().producer_expiration_ms);
        producers.remove_expired(now)
    }

    /// This partition's state of `producer_id`, if it has one.
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        lock(&self.producers).entry(producer_id).cloned()
    }

    /// Rebuilds the producer state when an earlier rebuild failed part-way; called under the
    /// segments' write lock before every append (leader or follower), roll and truncation,
    /// which fail with the rebuild's error for as long as it keeps failing: an idempotent batch checked against a half-built
    /// state could be taken for new when it is a retry, or refused when it is not.
    pub(crate) fn repair_producer_state(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
    ) -> Result<(), LogError> {
        let mut producers = lock(&self.producers);
        if !producers.is_stale() {
            return Ok(());
        }
        let last_offset = self.log_end_offset();
        let log_start = self.log_start_offset().min(last_offset);
        let now = crate::util::clock::now_ms();
        // Whatever the failed rebuild left in memory goes; its snapshots were written by the
        // replay before the failure and hold the state at their offsets, so reloading the
        // newest one and replaying from there is exact.
        producers.reload_at_or_below(log_start, last_offset, now)?;
        rebuild(
            &mut producers,
            &mut Rebuild {
                segments,
                log_start,
                last_offset,
                reload_from_clean_shutdown: false,
                now,
                txn_index_from: None,
            },
        )?;
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
            log_end_offset = last_offset, "producer state rebuilt after an earlier failure");
        Ok(())
    }

    /// The offsets of this log's producer snapshot files.
    pub fn producer_snapshot_offsets(&self) -> Vec<i64> {
        lock(&self.producers).snapshot_offsets()
    }
}

pub(crate) struct Rebuild<'a> {
    pub segments: &'a mut BTreeMap<i64, LogSegment>,
    pub log_start: i64,
    /// The offset the state must end at (the log end).
    pub last_offset: i64,
    pub reload_from_clean_shutdown: bool,
    pub now: i64,
    /// Segments from this base on have an emptied `.txnindex` to write again.
    pub txn_index_from: Option<i64>,
}

/// Rebuilds `state` for the log `r` describes; a failure part-way leaves it marked stale, so
/// that the log repairs it before the next append (see [`Log::repair_producer_state`]).
pub(crate) fn rebuild(
    state: &mut ProducerStateManager,
    r: &mut Rebuild<'_>,
) -> Result<(), LogError> {
    let result = rebuild_state(state, r);
    state.set_stale(result.is_err());
    result
}

fn rebuild_state(state: &mut ProducerStateManager, r: &mut Rebuild<'_>) -> Result<(), LogError> {
    let mut bases = r.segments.keys().rev();
    let last_base = bases.next().copied();
    let second_last_base = bases.next().copied();
    let to_snapshot = [second_last_base, last_base, Some(r.last_offset)];
    if state.latest_snapshot().is_none()
        && r.reload_from_clean_shutdown
        && r.txn_index_from.is_none()
    {
        for offset in to_snapshot.into_iter().flatten() {
            state.update_map_end_offset(offset);
            state.take_snapshot()?;
        }
        return Ok(());
    }
    let empty_before = state.is_empty() && state.map_end_offset() >= r.last_offset;
    state.truncate_and_reload(r.log_start, r.last_offset, r.now)?;
    let index_from = r.txn_index_from.filter(|b| *b < r.last_offset);
    if let Some(from) = index_from.filter(|b| state.map_end_offset() > *b) {
        state.reload_at_or_below(r.log_start, from, r.now)?;
    }
    if r.last_offset > state.map_end_offset() && (!empty_before || index_from.is_some()) {
        let from = state.map_end_offset();
        let first = r
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut replayed = 0usize;
        let bases: Vec<i64> = r
            .segments
            .range(first..r.last_offset)
            .map(|(b, _)| *b)
            .collect();
        for base in bases {
            let Some(segment) = r.segments.get(&base) else {
                continue;
            };
            let start = base.max(state.map_end_offset()).max(r.log_start);
            state.update_map_end_offset(start);
            if to_snapshot.contains(&Some(base)) {
                state.take_snapshot()?;
            }
            let holds_end = r
                .segments
                .range(base + 1..)
                .next()
                .is_none_or(|(next, _)| *next > r.last_offset);
            let to = holds_end.then_some(r.last_offset);
            let reindex = index_from.is_some_and(|from| base >= from);
            let mut aborted = Vec::new();
            segment.for_each_header(start, to, |h, prefix| {
                replayed += 1;
                if let Some(txn) = apply_one(state, h, prefix, Origin::Replication) {
                    if txn.aborted && reindex {
                        aborted.push(index_entry(state, &txn));
                    }
                    state.complete_txn(&txn);
                }
                Ok(())
            })?;
            if let Some(segment) = r.segments.get_mut(&base) {
                for entry in aborted {
                    segment.txn_index_mut().append(entry)?;
                }
            }
        }
        let tp = state.topic_partition();
        tracing::info!(topic = %tp.topic, partition = tp.partition, from, to = r.last_offset, batches = replayed, producers = state.producer_count(),
            "rebuilt producer state from the log");
    }
    state.update_map_end_offset(r.last_offset);
    state.take_snapshot()
}
