//! Removing data from a log: retention (time, size, below the log start), log-start
//! advancement, and truncation for replication. Removed segments are renamed to `.deleted`
//! and erased after `file.delete.delay.ms`, so concurrent readers holding their file
//! handles are never cut off mid-read. A removed segment takes the producer snapshot at its
//! base with it, and truncation rebuilds the producer state for the shorter log.

use super::config::LogConfig;
use super::deleter;
use super::error::LogError;
use super::partition_log::{active_mut, Log};
use super::producer_rebuild::{self, Rebuild};
use super::segment::LogSegment;
use crate::util::clock::now_ms;
use crate::util::sync::{lock, write};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

impl Log {
    pub(super) fn delete_segments_locked(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        bases: &[i64],
        reason: &str,
    ) -> Result<(), LogError> {
        let mut paths = Vec::new();
        let mut producers = lock(&self.producers);
        for base in bases {
            if let Some(mut segment) = segments.remove(base) {
                paths.extend(segment.rename_to_deleted()?);
                producers.delete_snapshot(*base)?;
            }
        }
        drop(producers);
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, count = bases.len(), reason, "deleting segments");
        deleter::schedule(paths, self.config().file_delete_delay_ms);
        Ok(())
    }

    /// Truncates the log so that `offset` becomes the LEO (replication: divergence after a
    /// leader change). A batch straddling `offset` is removed whole, so the LEO may end up
    /// slightly below `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        if offset < 0 {
            return Err(LogError::InvalidArgument {
                topic_partition: self.tp.to_string(),
                reason: format!("cannot truncate to negative offset {offset}"),
            });
        }
        let config = self.config();
        let mut segments = write(&self.segments);
        if offset >= self.log_end_offset() {
            // Nothing to cut, but a retry after a failed rebuild must still repair the state.
            return self.repair_producer_state(&mut segments);
        }
        if segments.keys().next().is_some_and(|first| *first > offset) {
            return self.truncate_fully_locked(&mut segments, &config, offset);
        }
        let doomed: Vec<i64> = segments.range(offset + 1..).map(|(b, _)| *b).collect();
        self.delete_segments_locked(&mut segments, &doomed, "truncation")?;
        let next = active_mut(&mut segments)?.truncate_to(
            offset,
            config.max_index_size as usize,
            now_ms(),
        )?;
        self.log_end_offset.store(next, Ordering::Release);
        if self.recovery_point() > next {
            self.recovery_point.store(next, Ordering::Release);
        }
        self.epoch_cache.truncate_from_end(next)?;
        producer_rebuild::rebuild(
            &mut lock(&self.producers),
            &mut Rebuild {
                segments: &mut segments,
                log_start: self.log_start_offset().min(next),
                last_offset: next,
                reload_from_clean_shutdown: false,
                now: now_ms(),
                txn_index_from: None,
            },
        )?;
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, target = offset, log_end_offset = next, "truncated log");
        Ok(())
    }

    /// Drops all data and restarts the log empty at `offset` (follower far behind the
    /// leader's log start).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        if offset < 0 {
            return Err(LogError::InvalidArgument {
                topic_partition: self.tp.to_string(),
                reason: format!("cannot start the log at negative offset {offset}"),
            });
        }
        let config = self.config();
        let mut segments = write(&self.segments);
        self.truncate_fully_locked(&mut segments, &config, offset)
    }

    fn truncate_fully_locked(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        config: &LogConfig,
        offset: i64,
    ) -> Result<(), LogError> {
        let all: Vec<i64> = segments.keys().copied().collect();
        self.delete_segments_locked(segments, &all, "full truncation")?;
        segments.insert(
            offset,
            LogSegment::create(&self.dir, offset, config, now_ms())?,
        );
        self.log_end_offset.store(offset, Ordering::Release);
        self.log_start_offset.store(offset, Ordering::Release);
        self.recovery_point.store(offset, Ordering::Release);
        self.epoch_cache.clear_and_flush()?;
        lock(&self.producers).truncate_fully_and_start_at(offset)?;
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, offset, "truncated log fully");
        Ok(())
    }

    /// Raises the log start offset (DeleteRecords, or a follower adopting the leader's);
    /// whole segments below it go at the next retention pass.
    pub fn maybe_increment_log_start_offset(&self, new_start: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        let _segments = write(&self.segments);
        if new_start > self.log_end_offset() {
            return Err(self.out_of_range(new_start));
        }
        if new_start > self.log_start_offset() {
            self.log_start_offset.store(new_start, Ordering::Release);
            self.epoch_cache.truncate_from_start(new_start)?;
            lock(&self.producers).on_log_start_offset_incremented(new_start);
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, log_start_offset = new_start, "advanced log start offset");
        }
        Ok(())
    }

    /// Deletes the longest prefix of segments satisfying `predicate(segment, next)` whose
    /// data lies wholly below `high_watermark`, never an empty active segment; rolls first
    /// if every segment would go, then moves the log start to the first remaining segment.
    fn delete_prefix_where(
        &self,
        high_watermark: i64,
        reason: &str,
        mut predicate: impl FnMut(&LogSegment, Option<&LogSegment>) -> bool,
    ) -> Result<usize, LogError> {
        let config = self.config();
        let mut segments = write(&self.segments);
        let log_end = self.log_end_offset();
        let mut doomed = Vec::new();
        {
            let mut iter = segments.values().peekable();
            while let Some(segment) = iter.next() {
                let next = iter.peek().copied();
                let upper = next.map(LogSegment::base_offset).unwrap_or(log_end);
                let last_and_empty = next.is_none() && segment.size() == 0;
                if high_watermark >= upper && !last_and_empty && predicate(segment, next) {
                    doomed.push(segment.base_offset());
                } else {
                    break;
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        if doomed.len() == segments.len() {
            self.roll_locked(&mut segments, &config, log_end, now_ms())?;
        }
        self.delete_segments_locked(&mut segments, &doomed, reason)?;
        let first = segments.keys().next().copied().unwrap_or(log_end);
        if first > self.log_start_offset() {
            self.log_start_offset.store(first, Ordering::Release);
            self.epoch_cache.truncate_from_start(first)?;
            lock(&self.producers).on_log_start_offset_incremented(first);
        }
        Ok(doomed.len())
    }

    /// Retention (Kafka's `deleteOldSegments`): segments wholly below the log start always,
    /// plus, under `cleanup.policy=delete`, segments past `retention.bytes` / `retention.ms`.
    /// Only segments whose data is all below `high_watermark` are eligible.
    pub fn delete_old_segments(&self, high_watermark: i64) -> Result<usize, LogError> {
        if self.is_closed() {
            return Ok(0);
        }
        self.ensure_open()?;
        let config = self.config();
        let log_start = self.log_start_offset();
        let mut deleted =
            self.delete_prefix_where(high_watermark, "log start offset breach", |_, next| {
                next.is_some_and(|n| n.base_offset() <= log_start)
            })?;
        if !config.cleanup_policy_delete {
            return Ok(deleted);
        }
        if config.retention_bytes >= 0 {
            let mut excess = self.size_in_bytes() as i64 - config.retention_bytes;
            if excess > 0 {
                deleted += self.delete_prefix_where(
                    high_watermark,
                    "retention size breach",
                    |segment, _| {
                        let size = segment.size() as i64;
                        if excess - size >= 0 {
                            excess -= size;
                            true
                        } else {
                            false
                        }
                    },
                )?;
            }
        }
        if config.retention_ms >= 0 {
            let now = now_ms();
            deleted +=
                self.delete_prefix_where(high_watermark, "retention time breach", |segment, _| {
                    now.saturating_sub(segment.largest_timestamp()) > config.retention_ms
                })?;
        }
        Ok(deleted)
    }
}
