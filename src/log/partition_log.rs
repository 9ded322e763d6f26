//! One partition's log (Kafka's `Log`): an ordered set of segments, the log start/end offsets,
//! the recovery point, the leader-epoch cache and the producer state (`producer_state`).
//!
//! Locking: segment metadata lives behind one `RwLock`. Appends, rolls, truncation and
//! retention take it for writing; reads take it for reading only long enough to locate the
//! bytes, then `pread` through a shared file handle with no lock held, so a large fetch never
//! stalls producers. Offsets readers poll often (LEO, log start) are mirrored in atomics.
//! No lock is ever held across an `.await` (there are none in this module). The producer
//! state's mutex is only taken with `segments` held for writing (or at open), never the
//! other way round.

use super::config::{LogConfig, TimestampType};
use super::dir_failure::DataDir;
use super::epoch_cache::LeaderEpochCache;
use super::error::{IoContext, LogError};
use super::producer_rebuild::{self, Rebuild};
use super::producer_state::{Origin, ProducerStateManager, Verdict};
use super::recovery::{self, LoadParams};
use super::segment::{BatchMeta, LogSegment};
use super::types::{AppendInfo, TopicPartition};
use super::validator;
use crate::protocol::batch::{self, BatchError, BatchHeader};
use crate::util::clock::now_ms;
use crate::util::sync::{lock, read, write};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// ListOffsets sentinel timestamps.
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;

pub struct Log {
    pub(super) tp: TopicPartition,
    pub(super) dir: PathBuf,
    config: RwLock<LogConfig>,
    pub(super) segments: RwLock<BTreeMap<i64, LogSegment>>,
    pub(super) epoch_cache: LeaderEpochCache,
    pub(super) producers: Mutex<ProducerStateManager>,
    /// Shared with the epoch cache; only written with `segments` locked for writing.
    pub(super) log_end_offset: Arc<AtomicI64>,
    pub(super) log_start_offset: AtomicI64,
    pub(super) recovery_point: AtomicI64,
    last_flush_ms: AtomicI64,
    closed: AtomicBool,
    /// The data directory this log lives in; once it is offline the log refuses all work.
    data_dir: Arc<DataDir>,
    /// Serialises fsyncs: after a failed fsync Linux marks the pages clean, so a concurrent
    /// fsync could "succeed" and move the recovery point over data the disk never got. Under
    /// this lock the failure has taken the directory offline before another flush looks.
    flush_lock: Mutex<()>,
    /// Lets a roll hand the old segment's fsync to a background thread.
    self_ref: Weak<Log>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("topic_partition", &self.tp)
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .finish()
    }
}

/// Where a log's load starts from (checkpoint values and how the broker last stopped).
pub(crate) struct OpenParams {
    pub recovery_point: i64,
    pub log_start_offset: i64,
    pub had_clean_shutdown: bool,
    pub data_dir: Arc<DataDir>,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering it if `params` says so.
    pub(crate) fn open(
        dir: PathBuf,
        tp: TopicPartition,
        config: LogConfig,
        params: OpenParams,
    ) -> Result<Arc<Log>, LogError> {
        std::fs::create_dir_all(&dir).at(&dir)?;
        let log_end_offset = Arc::new(AtomicI64::new(0));
        let epoch_cache = LeaderEpochCache::load(&dir, tp.clone(), Arc::clone(&log_end_offset))?;
        let now = now_ms();
        let loaded = recovery::load_log(
            &dir,
            &LoadParams {
                tp: &tp,
                config: &config,
                recovery_point: params.recovery_point,
                log_start_offset: params.log_start_offset,
                had_clean_shutdown: params.had_clean_shutdown,
                now,
            },
            &epoch_cache,
        )?;
        log_end_offset.store(loaded.next_offset, Ordering::Release);
        let mut producers =
            ProducerStateManager::new(tp.clone(), &dir, config.producer_expiration_ms)?;
        producers.remove_stray_snapshots(&loaded.segments.keys().copied().collect())?;
        let mut segments = loaded.segments;
        producer_rebuild::rebuild(
            &mut producers,
            &mut Rebuild {
                segments: &mut segments,
                log_start: loaded.log_start_offset,
                last_offset: loaded.next_offset,
                reload_from_clean_shutdown: params.had_clean_shutdown,
                now,
                txn_index_from: loaded.txn_index_from,
            },
        )?;
        tracing::info!(topic = %tp.topic, partition = tp.partition, log_start_offset = loaded.log_start_offset,
            log_end_offset = loaded.next_offset, segments = segments.len(), "loaded log");
        Ok(Arc::new_cyclic(|self_ref| Log {
            tp,
            dir,
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            epoch_cache,
            producers: Mutex::new(producers),
            log_end_offset,
            log_start_offset: AtomicI64::new(loaded.log_start_offset),
            recovery_point: AtomicI64::new(loaded.recovery_point),
            last_flush_ms: AtomicI64::new(now),
            closed: AtomicBool::new(false),
            data_dir: params.data_dir,
            flush_lock: Mutex::new(()),
            self_ref: self_ref.clone(),
        }))
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        read(&self.config).clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        *write(&self.config) = config;
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Wall-clock time of the last completed flush (for `flush.ms`).
    pub fn last_flush_ms(&self) -> i64 {
        self.last_flush_ms.load(Ordering::Acquire)
    }

    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    /// Kafka's `maybeAssignEpochStartOffset`: a new leader records `(epoch, LEO)`.
    pub fn assign_epoch_start_offset(&self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        self.epoch_cache.assign(epoch, start_offset)
    }

    /// OffsetForLeaderEpoch answer for `epoch` (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache.end_offset_for(epoch)
    }

    pub fn size_in_bytes(&self) -> u64 {
        read(&self.segments).values().map(LogSegment::size).sum()
    }

    pub fn num_segments(&self) -> usize {
        read(&self.segments).len()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The data directory this log lives in.
    pub fn data_dir(&self) -> &Arc<DataDir> {
        &self.data_dir
    }

    pub(super) fn ensure_open(&self) -> Result<(), LogError> {
        if self.data_dir.is_offline() {
            return Err(LogError::DirOffline {
                topic_partition: self.tp.to_string(),
                dir: self.data_dir.path().to_path_buf(),
            });
        }
        if self.is_closed() {
            return Err(LogError::Closed {
                topic_partition: self.tp.to_string(),
            });
        }
        Ok(())
    }

    fn check_size(&self, size: usize, config: &LogConfig) -> Result<(), LogError> {
        if size > config.max_message_bytes.max(0) as usize {
            return Err(LogError::MessageTooLarge {
                size,
                max: config.max_message_bytes,
            });
        }
        if size as u64 > config.segment_bytes {
            return Err(LogError::BatchLargerThanSegment {
                size,
                segment_bytes: config.segment_bytes,
            });
        }
        Ok(())
    }

    /// Leader append of one client batch whose framing and CRC the produce path checked:
    /// validates its records as Kafka's `LogValidator` does (which may rebuild it), assigns
    /// offsets from the LEO, stamps `leader_epoch` and the max timestamp (the broker time for
    /// LogAppendTime topics).
    pub fn append_as_leader(
        &self,
        batch: impl Into<Bytes>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        self.append_from(batch, leader_epoch, Origin::Client)
    }

    /// [`Self::append_as_leader`] for a batch from `origin`: a coordinator's batch (a
    /// transaction marker, a transactional offset commit) has its epochs checked instead of
    /// the client rules of the producer state.
    pub fn append_from(
        &self,
        batch: impl Into<Bytes>,
        leader_epoch: i32,
        origin: Origin,
    ) -> Result<AppendInfo, LogError> {
        let batch: Bytes = batch.into();
        self.ensure_open()?;
        let config = self.config();
        let header = BatchHeader::parse(&batch)?;
        if header.total_size() != batch.len() {
            return Err(BatchError::LengthMismatch {
                batch_size: header.total_size(),
                buffer_len: batch.len(),
            }
            .into());
        }
        self.check_size(batch.len(), &config)?;
        let now = now_ms();
        // Validation walks every record, so it runs before the lock: appends to this
        // partition from other requests wait only for the write.
        let validated = validator::validate_batch(&batch, &header, &config, now, &self.tp, origin)?;
        let (batch, header) = match validated.rebuilt {
            Some(rebuilt) => {
                let rebuilt = rebuilt.freeze();
                self.check_size(rebuilt.len(), &config)?;
                let header = BatchHeader::parse(&rebuilt)?;
                (rebuilt, header)
            }
            None => (batch, header),
        };
        // Only the 61-byte header changes: it is patched in a copy of its own and the records
        // are written straight from the request's buffer (no copy of record data).
        let mut head = [0u8; batch::HEADER_LEN];
        head.copy_from_slice(&batch[..batch::HEADER_LEN]);
        let rest = &batch[batch::HEADER_LEN..];
        // The CRC covers the timestamp, so stamp before taking the lock; offsets and epoch
        // are outside the CRC and are set under it.
        let (log_append_time, max_timestamp) = match config.message_timestamp_type {
            TimestampType::LogAppendTime => {
                batch::set_log_append_time_split(&mut head, rest, now)?;
                (now, now)
            }
            TimestampType::CreateTime => {
                batch::set_max_timestamp_split(&mut head, rest, false, validated.max_timestamp)?;
                (-1, validated.max_timestamp)
            }
        };
        batch::set_partition_leader_epoch(&mut head, leader_epoch)?;
        let mut segments = write(&self.segments);
        self.ensure_open()?;
        self.repair_producer_state(&mut segments)?;
        let base_offset = self.log_end_offset();
        batch::set_base_offset(&mut head, base_offset)?;
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            max_timestamp,
            ..header
        };
        if origin == Origin::Coordinator {
            self.check_coordinator_batch(&header, &batch, base_offset)?;
        } else if header.producer_id >= 0 {
            let verdict = lock(&self.producers).check_client_batch(&header, base_offset)?;
            if let Verdict::Duplicate(dup) = verdict {
                tracing::debug!(topic = %self.tp.topic, partition = self.tp.partition,
                    producer_id = header.producer_id, first_sequence = header.base_sequence,
                    offset = dup.first_offset(), "duplicate batch answered with its original offset");
                // Kafka answers a duplicate with the cached batch's timestamp as its log
                // append time, whatever the topic's timestamp type.
                return Ok(AppendInfo {
                    first_offset: dup.first_offset(),
                    last_offset: dup.last_offset,
                    log_append_time: dup.timestamp,
                    max_timestamp: dup.timestamp,
                    valid_bytes: 0,
                });
            }
        }
        let len = batch.len();
        self.append_locked(
            &mut segments,
            &config,
            &[&head, rest],
            &[(header, 0..len)],
            now,
            origin,
        )?;
        drop(segments);
        self.maybe_flush_by_count(&config)?;
        Ok(AppendInfo {
            first_offset: base_offset,
            last_offset: header.last_offset(),
            log_append_time,
            max_timestamp,
            valid_bytes: len,
        })
    }

    /// Follower append of batches exactly as the leader sent them. A trailing partial batch
    /// (a fetch response cut at its byte limit) is ignored; any other invalid batch rejects
    /// the whole append.
    pub fn append_as_follower(&self, batches: Bytes) -> Result<AppendInfo, LogError> {
        self.ensure_open()?;
        let config = self.config();
        let mut parsed: Vec<(BatchHeader, Range<usize>)> = Vec::new();
        for item in batch::batches(&batches) {
            match item {
                Ok((header, range)) => {
                    self.check_size(range.len(), &config)?;
                    if let Some((prev, _)) = parsed.last() {
                        if header.base_offset < prev.next_offset() {
                            return Err(LogError::OffsetMismatch {
                                topic_partition: self.tp.to_string(),
                                expected: prev.next_offset(),
                                found: header.base_offset,
                            });
                        }
                    }
                    parsed.push((header, range));
                }
                Err(BatchError::Truncated { .. } | BatchError::TooShort { .. })
                    if !parsed.is_empty() =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut segments = write(&self.segments);
        self.ensure_open()?;
        self.repair_producer_state(&mut segments)?;
        let leo = self.log_end_offset();
        let Some((first, _)) = parsed.first() else {
            return Ok(AppendInfo {
                first_offset: leo,
                last_offset: leo - 1,
                log_append_time: -1,
                max_timestamp: -1,
                valid_bytes: 0,
            });
        };
        if first.base_offset != leo {
            return Err(LogError::OffsetMismatch {
                topic_partition: self.tp.to_string(),
                expected: leo,
                found: first.base_offset,
            });
        }
        let first_offset = first.base_offset;
        self.append_locked(
            &mut segments,
            &config,
            &[&batches],
            &parsed,
            now_ms(),
            Origin::Replication,
        )?;
        drop(segments);
        self.maybe_flush_by_count(&config)?;
        let last = parsed
            .last()
            .map(|(h, _)| h.last_offset())
            .unwrap_or(leo - 1);
        Ok(AppendInfo {
            first_offset,
            last_offset: last,
            log_append_time: -1,
            max_timestamp: parsed
                .iter()
                .map(|(h, _)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
            valid_bytes: parsed.last().map(|(_, r)| r.end).unwrap_or(0),
        })
    }

    /// Writes `batches` (ranges of `data`) to the active segment, rolling first whenever a
    /// batch would not fit the current one, and coalescing consecutive batches into one write.
    /// Each written group enters the producer state before a roll snapshots it.
    fn append_locked(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        config: &LogConfig,
        data: &[&[u8]],
        batches: &[(BatchHeader, Range<usize>)],
        now: i64,
        origin: Origin,
    ) -> Result<(), LogError> {
        let mut group_start = 0;
        for (i, (header, range)) in batches.iter().enumerate() {
            let pending = batches
                .get(group_start)
                .map(|(_, r)| (range.start - r.start) as u64)
                .unwrap_or(0);
            let should_roll = active(segments)?.should_roll(
                config,
                pending + range.len() as u64,
                header.max_timestamp,
                header.last_offset(),
                now,
            );
            if should_roll {
                self.write_group(segments, config, data, &batches[group_start..i], origin)?;
                group_start = i;
                self.roll_locked(segments, config, header.base_offset, now)?;
            }
        }
        self.write_group(segments, config, data, &batches[group_start..], origin)?;
        for (header, _) in batches {
            let epoch = header.partition_leader_epoch;
            if epoch >= 0
                && self
                    .epoch_cache
                    .latest_epoch()
                    .is_none_or(|latest| epoch > latest)
            {
                self.epoch_cache.assign(epoch, header.base_offset)?;
            }
        }
        Ok(())
    }

    fn write_group(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        config: &LogConfig,
        data: &[&[u8]],
        group: &[(BatchHeader, Range<usize>)],
        origin: Origin,
    ) -> Result<(), LogError> {
        let (Some((_, first)), Some((last_header, last))) = (group.first(), group.last()) else {
            return Ok(());
        };
        let metas: Vec<BatchMeta> = group
            .iter()
            .map(|(h, r)| BatchMeta::new(r.start - first.start, h))
            .collect();
        let parts = sub_parts(data, first.start..last.end);
        active_mut(segments)?.append(&parts, &metas, config.index_interval_bytes)?;
        self.log_end_offset
            .store(last_header.next_offset(), Ordering::Release);
        self.apply_written(segments, data, group, origin)
    }

    /// Starts a new active segment at `new_offset`. The old one is trimmed now and fsynced by
    /// a background thread, which also moves the recovery point up to `new_offset`.
    pub(super) fn roll_locked(
        &self,
        segments: &mut BTreeMap<i64, LogSegment>,
        config: &LogConfig,
        new_offset: i64,
        now: i64,
    ) -> Result<(), LogError> {
        // A roll snapshots the producer state, which must not be a half-built one.
        self.repair_producer_state(segments)?;
        let new_offset = new_offset.max(self.log_end_offset());
        let current = active_mut(segments)?;
        if current.base_offset() == new_offset && current.size() == 0 {
            return Ok(());
        }
        if current.base_offset() >= new_offset {
            return Err(LogError::InvalidArgument {
                topic_partition: self.tp.to_string(),
                reason: format!(
                    "cannot roll to offset {new_offset}: active segment starts at {}",
                    current.base_offset()
                ),
            });
        }
        current.on_become_inactive()?;
        // The snapshot at the new base lets a rebuild start at this segment.
        {
            let mut producers = lock(&self.producers);
            producers.update_map_end_offset(new_offset);
            producers.take_snapshot()?;
        }
        let segment = LogSegment::create(&self.dir, new_offset, config, now)?;
        segments.insert(new_offset, segment);
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, base_offset = new_offset, "rolled new log segment");
        let weak = self.self_ref.clone();
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                if let Some(log) = weak.upgrade() {
                    if let Err(e) = log.flush_up_to(new_offset) {
                        tracing::warn!(topic = %log.tp.topic, partition = log.tp.partition, error = %e, "flush after roll failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, error = %e,
                "could not start flush after roll; the next flush will cover it");
        }
        Ok(())
    }

    /// Forces a roll (used when retention would otherwise delete the active segment).
    pub fn roll(&self) -> Result<(), LogError> {
        self.ensure_open()?;
        let config = self.config();
        let mut segments = write(&self.segments);
        let leo = self.log_end_offset();
        self.roll_locked(&mut segments, &config, leo, now_ms())
    }

    fn maybe_flush_by_count(&self, config: &LogConfig) -> Result<(), LogError> {
        let unflushed = self.log_end_offset() - self.recovery_point();
        if unflushed >= 0 && unflushed as u64 >= config.flush_interval_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Fsyncs every segment holding data below `offset` that is above the recovery point,
    /// then advances the recovery point. The fsyncs run without the log lock.
    pub fn flush_up_to(&self, offset: i64) -> Result<(), LogError> {
        let _flushing = lock(&self.flush_lock);
        self.ensure_open_or_closed()?;
        let from = self.recovery_point();
        if offset <= from {
            return Ok(());
        }
        let targets: Vec<_> = {
            let segments = read(&self.segments);
            let first = segments
                .range(..=from)
                .next_back()
                .map(|(b, _)| *b)
                .unwrap_or(i64::MIN);
            segments
                .range(first..offset)
                .map(|(_, s)| s.sync_targets())
                .collect()
        };
        for target in &targets {
            target.sync()?;
        }
        let _segments = write(&self.segments);
        // A failed fsync anywhere in the directory (another thread's) forbids the advance.
        self.ensure_open_or_closed()?;
        let target = offset.min(self.log_end_offset());
        if target > self.recovery_point() {
            self.recovery_point.store(target, Ordering::Release);
        }
        self.last_flush_ms.store(now_ms(), Ordering::Release);
        tracing::debug!(topic = %self.tp.topic, partition = self.tp.partition, recovery_point = target, "flushed log");
        Ok(())
    }

    /// Like `ensure_open`, but a log closed by shutdown may still be flushed (close flushes
    /// last); only an offline directory stops it.
    fn ensure_open_or_closed(&self) -> Result<(), LogError> {
        match self.ensure_open() {
            Err(LogError::Closed { .. }) => Ok(()),
            other => other,
        }
    }

    /// Fsyncs everything written so far and moves the recovery point to the LEO.
    pub fn flush(&self) -> Result<(), LogError> {
        self.flush_up_to(self.log_end_offset())
    }

    /// Clean shutdown of this log: flush, record the final time-index entry and trim the
    /// active segment's preallocated indexes so the files hold exactly their entries.
    pub(crate) fn close(&self) -> Result<(), LogError> {
        if self.is_closed() {
            return Ok(());
        }
        self.flush()?;
        let mut segments = write(&self.segments);
        lock(&self.producers).take_snapshot()?;
        self.closed.store(true, Ordering::Release);
        if let Some((_, active)) = segments.iter_mut().next_back() {
            active.on_become_inactive()?;
        }
        Ok(())
    }

    /// Marks the log unusable (its directory is being deleted).
    pub(crate) fn mark_deleted(&self) {
        let _segments = write(&self.segments);
        self.closed.store(true, Ordering::Release);
    }
}

fn active(segments: &BTreeMap<i64, LogSegment>) -> Result<&LogSegment, LogError> {
    segments
        .values()
        .next_back()
        .ok_or(LogError::InvalidArgument {
            topic_partition: String::new(),
            reason: "log has no segments".into(),
        })
}

pub(super) fn active_mut(
    segments: &mut BTreeMap<i64, LogSegment>,
) -> Result<&mut LogSegment, LogError> {
    segments
        .values_mut()
        .next_back()
        .ok_or(LogError::InvalidArgument {
            topic_partition: String::new(),
            reason: "log has no segments".into(),
        })
}

/// The slices of `parts` (a logical concatenation) that cover `range`.
fn sub_parts<'a>(parts: &[&'a [u8]], range: Range<usize>) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(parts.len());
    let mut start = 0;
    for p in parts {
        let end = start + p.len();
        let lo = range.start.max(start);
        let hi = range.end.min(end);
        if lo < hi {
            out.push(&p[lo - start..hi - start]);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod sub_parts_tests {
    use super::sub_parts;

    #[test]
    fn slices_across_parts() {
        let a: &[u8] = &[0, 1, 2];
        let b: &[u8] = &[3, 4, 5, 6];
        assert_eq!(sub_parts(&[a, b], 0..7).concat(), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(sub_parts(&[a, b], 2..5).concat(), vec![2, 3, 4]);
        assert_eq!(sub_parts(&[a, b], 3..7), vec![b]);
        assert!(sub_parts(&[a, b], 1..1).is_empty());
    }
}
