//! One log segment: `<base>.log` holding raw batches back to back, plus its `.index` and
//! `.timeindex` (Kafka's `LogSegment`). The segment appends pre-framed bytes, maintains the
//! sparse indexes, decides when it is due to roll, and can rebuild itself from its data
//! (recovery). It never parses records, only batch headers.

use super::config::LogConfig;
use super::error::{IoContext, LogError};
use super::index::OffsetIndex;
use super::mmap_file::{sync_path, with_suffix};
use super::scan::{read_fully_at, ScanError, Scanner, READ_WINDOW, RECOVERY_WINDOW};
use super::tail_positions::TailPositions;
use super::time_index::{TimeIndex, NO_TIMESTAMP};
use super::txn_index::{TxnIndex, TXN_INDEX_SUFFIX};
use crate::protocol::batch::BatchHeader;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Bytes of a control batch read for the producer-state replay: its header and first record.
pub(crate) const CONTROL_PREFIX: usize = 256;

/// `<dir>/<20-digit base offset><suffix>`, Kafka's segment file naming.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// Where one batch of an append sits in the appended buffer, and what the indexes need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    /// Start of the batch within the appended bytes.
    pub pos: u64,
    pub size: u64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl BatchMeta {
    pub(crate) fn new(pos: usize, header: &BatchHeader) -> BatchMeta {
        BatchMeta {
            pos: pos as u64,
            size: header.total_size() as u64,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        }
    }
}

pub(crate) struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with readers, which `pread` outside the log lock, and with async flushes.
    file: Arc<File>,
    size: u64,
    index: OffsetIndex,
    time_index: TimeIndex,
    txn_index: TxnIndex,
    bytes_since_last_index_entry: u64,
    max_timestamp_so_far: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: time-based rolling is measured from it, so a
    /// follower that replays old data rolls on the data's clock, not the wall clock.
    rolling_based_timestamp: Option<i64>,
    created_ms: i64,
    roll_jitter_ms: i64,
    /// Where the last appended batches start, so tail reads skip the header walk.
    tail: TailPositions,
}

/// The files of one segment to fsync, gathered under the log lock and synced without it.
pub(crate) struct SyncTargets {
    log: (Arc<File>, PathBuf),
    indexes: [PathBuf; 3],
}

impl SyncTargets {
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        let (file, path) = &self.log;
        file.sync_all().at(path)?;
        self.indexes.iter().try_for_each(|p| sync_path(p))
    }
}

/// Result of rebuilding a segment from its data.
pub(crate) struct Recovered {
    pub truncated_bytes: u64,
    pub next_offset: i64,
}

fn relative_offset_fits(base: i64, offset: i64) -> bool {
    offset
        .checked_sub(base)
        .is_some_and(|rel| (0..=i64::from(i32::MAX)).contains(&rel))
}

fn scan_err(path: &Path, e: ScanError) -> LogError {
    match e {
        ScanError::Io(e) => LogError::io(path, e),
        ScanError::Corrupt { position, reason } => LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        },
    }
}

impl LogSegment {
    /// Creates a new, empty segment with indexes preallocated to `max_index_size`. Stale
    /// files of the same name (left by a crash mid-roll) are replaced.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now: i64,
    ) -> Result<LogSegment, LogError> {
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            let path = segment_path(dir, base_offset, suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::warn!(path = %path.display(), "replaced stale segment file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
        let mut segment = LogSegment::open(dir, base_offset, config, now)?;
        segment.resize_indexes(config.max_index_size as usize)?;
        Ok(segment)
    }

    /// Opens an existing segment as found on disk; callers validate or recover it.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now: i64,
    ) -> Result<LogSegment, LogError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .at(&log_path)?;
        let size = file.metadata().at(&log_path)?.len();
        // Index files of a segment without data may not exist (they are created with its first
        // append); `load_log` rebuilds missing ones of a segment that has data.
        let index =
            OffsetIndex::open_or_defer(&segment_path(dir, base_offset, INDEX_SUFFIX), base_offset)?;
        let time_index = TimeIndex::open_or_defer(
            &segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            base_offset,
        )?;
        let txn_index = TxnIndex::open(segment_path(dir, base_offset, TXN_INDEX_SUFFIX))?;
        let (max_ts, max_ts_offset) = time_index.last_entry();
        Ok(LogSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            index,
            time_index,
            txn_index,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: max_ts,
            offset_of_max_timestamp: max_ts_offset,
            rolling_based_timestamp: None,
            created_ms: now,
            roll_jitter_ms: config.random_segment_jitter(),
            tail: TailPositions::default(),
        })
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// What to fsync for this segment: the data file's descriptor, and the paths of its three
    /// indexes (they keep no descriptor; see [`super::mmap_file::sync_path`]).
    pub(crate) fn sync_targets(&self) -> SyncTargets {
        SyncTargets {
            log: (self.file(), self.log_path.clone()),
            indexes: [
                self.index.path().to_path_buf(),
                self.time_index.path().to_path_buf(),
                self.txn_index.path().to_path_buf(),
            ],
        }
    }

    /// Newest timestamp in the segment, falling back to the file's mtime when no batch
    /// carried one (Kafka's `largestTimestamp`), for time-based retention.
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp_so_far >= 0 {
            return self.max_timestamp_so_far;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(NO_TIMESTAMP)
    }

    /// The segment's aborted-transaction index.
    pub(crate) fn txn_index(&self) -> &TxnIndex {
        &self.txn_index
    }

    pub(crate) fn txn_index_mut(&mut self) -> &mut TxnIndex {
        &mut self.txn_index
    }

    /// Whether both index files exist (a segment that never held data may have none).
    pub(crate) fn indexes_on_disk(&self) -> bool {
        self.index.is_on_disk() && self.time_index.is_on_disk()
    }

    /// Creates deferred index files, before the segment's first data.
    fn create_indexes_on_disk(&mut self) -> Result<(), LogError> {
        self.index.create_on_disk()?;
        self.time_index.create_on_disk()
    }

    pub(crate) fn resize_indexes(&mut self, max_index_size: usize) -> Result<(), LogError> {
        self.index.resize(max_index_size)?;
        self.time_index.resize(max_index_size)
    }

    /// Checks the indexes of a segment loaded after a clean shutdown.
    pub(crate) fn sanity_check(&self, next_offset: i64) -> Result<(), String> {
        self.index
            .sanity_check(self.size)
            .map_err(|e| format!("{}: {e}", self.index.path().display()))?;
        self.time_index
            .sanity_check(next_offset)
            .map_err(|e| format!("{}: {e}", self.time_index.path().display()))
    }

    /// For a trusted segment, scans the batches after the last index entries to find the
    /// next offset and the true max timestamp (the tail beyond the sparse indexes).
    pub(crate) fn load_tail(&mut self) -> Result<i64, LogError> {
        let (_, ts_offset) = self.time_index.last_entry();
        let (_, mut pos) = self.index.lookup(ts_offset);
        let mut next = self.base_offset;
        if let Some((last_offset, _)) = self.index.last_entry() {
            next = last_offset.saturating_add(1);
        }
        let mut scanner = Scanner::new(&self.file, self.size, RECOVERY_WINDOW);
        if self.size > 0 && self.rolling_based_timestamp.is_none() {
            if let Some(h) = scanner
                .header_at(0)
                .map_err(|e| scan_err(&self.log_path, e))?
            {
                self.rolling_based_timestamp = Some(h.max_timestamp);
            }
        }
        while let Some(h) = scanner
            .header_at(pos)
            .map_err(|e| scan_err(&self.log_path, e))?
        {
            if h.max_timestamp > self.max_timestamp_so_far {
                self.max_timestamp_so_far = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            next = next.max(h.next_offset());
            pos += h.total_size() as u64;
        }
        Ok(next)
    }

    /// Rebuilds the indexes by re-reading every batch, validating framing, CRC and
    /// increasing offsets, and truncates the file at the first invalid byte. `on_batch`
    /// sees each valid batch (to rebuild the leader-epoch cache).
    pub(crate) fn recover(
        &mut self,
        config: &LogConfig,
        on_batch: &mut dyn FnMut(&BatchHeader) -> Result<(), LogError>,
    ) -> Result<Recovered, LogError> {
        self.index.reset();
        self.time_index.reset();
        self.resize_indexes(config.max_index_size as usize)?;
        if self.size > 0 {
            self.create_indexes_on_disk()?;
        }
        self.max_timestamp_so_far = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.rolling_based_timestamp = None;
        let interval = u64::from(config.index_interval_bytes);
        let file = Arc::clone(&self.file);
        let mut scanner = Scanner::new(&file, self.size, RECOVERY_WINDOW);
        let (mut valid, mut last_index_entry) = (0u64, 0u64);
        let mut next_offset = self.base_offset;
        loop {
            let header = match scanner.header_at(valid) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(ScanError::Io(e)) => return Err(LogError::io(&self.log_path, e)),
                Err(ScanError::Corrupt { position, reason }) => {
                    tracing::warn!(path = %self.log_path.display(), position, %reason, "invalid batch during recovery");
                    break;
                }
            };
            match scanner.verify_crc(valid, &header) {
                Ok(()) => {}
                Err(ScanError::Io(e)) => return Err(LogError::io(&self.log_path, e)),
                Err(ScanError::Corrupt { position, reason }) => {
                    tracing::warn!(path = %self.log_path.display(), position, %reason, "invalid batch during recovery");
                    break;
                }
            }
            if header.base_offset < next_offset
                || !relative_offset_fits(self.base_offset, header.last_offset())
            {
                tracing::warn!(
                    path = %self.log_path.display(),
                    position = valid,
                    base_offset = header.base_offset,
                    expected_at_least = next_offset,
                    "out-of-order or out-of-range offset during recovery"
                );
                break;
            }
            if self.rolling_based_timestamp.is_none() {
                self.rolling_based_timestamp = Some(header.max_timestamp);
            }
            if header.max_timestamp > self.max_timestamp_so_far {
                self.max_timestamp_so_far = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset();
            }
            if valid - last_index_entry > interval {
                self.index.append(header.last_offset(), valid);
                self.time_index.maybe_append(
                    self.max_timestamp_so_far,
                    self.offset_of_max_timestamp,
                    false,
                );
                last_index_entry = valid;
            }
            on_batch(&header)?;
            valid += header.total_size() as u64;
            next_offset = header.next_offset();
        }
        let truncated_bytes = self.size - valid;
        if truncated_bytes > 0 {
            self.file.set_len(valid).at(&self.log_path)?;
            self.size = valid;
        }
        self.tail.clear();
        self.bytes_since_last_index_entry = valid - last_index_entry;
        self.time_index.maybe_append(
            self.max_timestamp_so_far,
            self.offset_of_max_timestamp,
            true,
        );
        self.index.trim_to_valid_size()?;
        self.time_index.trim_to_valid_size()?;
        Ok(Recovered {
            truncated_bytes,
            next_offset,
        })
    }

    /// Kafka's `shouldRoll`, checked before each append of `incoming` bytes.
    pub(crate) fn should_roll(
        &self,
        config: &LogConfig,
        incoming: u64,
        max_timestamp_in: i64,
        max_offset_in: i64,
        now: i64,
    ) -> bool {
        let waited = match self.rolling_based_timestamp {
            Some(t) if t >= 0 => max_timestamp_in.saturating_sub(t),
            _ => now.saturating_sub(self.created_ms),
        };
        let reached_roll_ms = waited > config.segment_ms.saturating_sub(self.roll_jitter_ms);
        self.size.saturating_add(incoming) > config.segment_bytes
            || (self.size > 0 && reached_roll_ms)
            || self.index.is_full()
            || self.time_index.is_full()
            || !relative_offset_fits(self.base_offset, max_offset_in)
    }

    /// Appends `parts` (together: whole batches described by `batches`) at the end of the file and
    /// adds index entries every `index.interval.bytes`. No fsync: durability comes from
    /// replication and explicit flushes, as in Kafka.
    pub(crate) fn append(
        &mut self,
        parts: &[&[u8]],
        batches: &[BatchMeta],
        index_interval_bytes: u32,
    ) -> Result<(), LogError> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        if !relative_offset_fits(self.base_offset, last.last_offset) {
            return Err(LogError::Corrupt {
                path: self.log_path.clone(),
                position: self.size,
                reason: format!(
                    "offset {} does not fit a segment based at {}",
                    last.last_offset, self.base_offset
                ),
            });
        }
        self.create_indexes_on_disk()?;
        let physical = self.size;
        let mut at = physical;
        for part in parts {
            if let Err(e) = self.file.write_all_at(part, at) {
                // Drop any partial write so the file never ends in a torn batch.
                let _ = self.file.set_len(physical);
                return Err(LogError::io(&self.log_path, e));
            }
            at += part.len() as u64;
        }
        let data_len = at - physical;
        if physical == 0 {
            self.rolling_based_timestamp = batches.iter().map(|b| b.max_timestamp).max();
        }
        for b in batches {
            if b.max_timestamp > self.max_timestamp_so_far {
                self.max_timestamp_so_far = b.max_timestamp;
                self.offset_of_max_timestamp = b.last_offset;
            }
            if self.bytes_since_last_index_entry > u64::from(index_interval_bytes) {
                self.index.append(b.last_offset, physical + b.pos);
                self.time_index.maybe_append(
                    self.max_timestamp_so_far,
                    self.offset_of_max_timestamp,
                    false,
                );
                self.bytes_since_last_index_entry = 0;
            }
            self.bytes_since_last_index_entry += b.size;
            self.tail.push(b.last_offset, physical + b.pos);
        }
        self.size += data_len;
        Ok(())
    }

    /// Called when a newer segment takes over: records the final max timestamp and trims
    /// the preallocated indexes to their used size.
    pub(crate) fn on_become_inactive(&mut self) -> Result<(), LogError> {
        // Reads of older segments are rare; the memory goes with the role.
        self.tail.clear();
        self.time_index.maybe_append(
            self.max_timestamp_so_far,
            self.offset_of_max_timestamp,
            true,
        );
        self.index.trim_to_valid_size()?;
        self.time_index.trim_to_valid_size()
    }

    /// Position and header of the first batch whose last offset is ≥ `offset`.
    pub(crate) fn translate_offset(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start = match self.tail.start_for(offset) {
            Some(pos) => pos,
            None => self.index.lookup(offset).1,
        };
        Scanner::new(&self.file, self.size, READ_WINDOW)
            .find_batch(start, offset)
            .map_err(|e| scan_err(&self.log_path, e))
    }

    /// Calls `f` with the header of every batch from the one holding `from` (an offset) up
    /// to, not including, the one holding `to` (or the segment's end): the producer-state
    /// replay, which needs headers only, and the first bytes of control batches (at most
    /// [`CONTROL_PREFIX`], enough for a transaction marker's one record).
    pub(crate) fn for_each_header(
        &self,
        from: i64,
        to: Option<i64>,
        mut f: impl FnMut(&BatchHeader, Option<&[u8]>) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let Some((mut pos, _)) = self.translate_offset(from)? else {
            return Ok(());
        };
        let end = match to {
            Some(to) => self.translate_offset(to)?.map_or(self.size, |(p, _)| p),
            None => self.size,
        };
        let mut scanner = Scanner::new(&self.file, end, RECOVERY_WINDOW);
        while let Some(header) = scanner
            .header_at(pos)
            .map_err(|e| scan_err(&self.log_path, e))?
        {
            if header.is_control() {
                let len = header.total_size().min(CONTROL_PREFIX);
                let prefix = Self::read_at(&self.file, &self.log_path, pos, len)?;
                f(&header, Some(&prefix))?;
            } else {
                f(&header, None)?;
            }
            pos += header.total_size() as u64;
        }
        Ok(())
    }

    /// Removes every batch whose last offset is ≥ `offset` (a batch straddling `offset` goes
    /// whole). Returns the next offset after the remaining data. The segment becomes the
    /// active one, so its indexes are regrown to `max_index_size`.
    pub(crate) fn truncate_to(
        &mut self,
        offset: i64,
        max_index_size: usize,
        now: i64,
    ) -> Result<i64, LogError> {
        let mapping = self.translate_offset(offset)?;
        self.index.truncate_to(offset);
        self.time_index.truncate_to(offset);
        self.txn_index.truncate_to(offset)?;
        self.resize_indexes(max_index_size)?;
        if let Some((pos, _)) = mapping {
            self.file.set_len(pos).at(&self.log_path)?;
            self.size = pos;
        }
        self.tail.truncate_to_size(self.size);
        if self.size == 0 {
            self.created_ms = now;
            self.rolling_based_timestamp = None;
        }
        self.bytes_since_last_index_entry = 0;
        let (ts, ts_offset) = self.time_index.last_entry();
        self.max_timestamp_so_far = ts;
        self.offset_of_max_timestamp = ts_offset;
        self.load_tail()
    }

    /// First batch at or after `starting_offset` whose max timestamp is ≥ `ts`, as
    /// (offset, that batch's max timestamp). Batch granularity: records are not decoded.
    pub(crate) fn find_offset_by_timestamp(
        &self,
        ts: i64,
        starting_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let (_, ts_offset) = self.time_index.lookup(ts);
        let (_, mut pos) = self.index.lookup(ts_offset.max(starting_offset));
        let mut scanner = Scanner::new(&self.file, self.size, READ_WINDOW);
        while let Some(h) = scanner
            .header_at(pos)
            .map_err(|e| scan_err(&self.log_path, e))?
        {
            if h.max_timestamp >= ts && h.last_offset() >= starting_offset {
                // Kafka answers with the exact record: scan this batch's records when it is
                // uncompressed; a compressed batch is answered at batch granularity.
                let bytes = Self::read_at(&self.file, &self.log_path, pos, h.total_size())?;
                let exact = crate::protocol::batch::record_offsets_and_timestamps(&bytes).and_then(
                    |records| {
                        records
                            .into_iter()
                            .find(|(off, rts)| *rts >= ts && *off >= starting_offset)
                    },
                );
                return Ok(Some(
                    exact.unwrap_or((h.base_offset.max(starting_offset), h.max_timestamp)),
                ));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `pos` into a fresh buffer: the one copy on the fetch path.
    pub(crate) fn read_at(
        file: &File,
        path: &Path,
        pos: u64,
        len: usize,
    ) -> Result<bytes::BytesMut, LogError> {
        let mut buf = bytes::BytesMut::zeroed(len);
        let n = read_fully_at(file, &mut buf, pos).at(path)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Renames the segment's files to `*.deleted` and returns the new paths for delayed
    /// removal. Open descriptors (in-flight reads) keep working.
    pub(crate) fn rename_to_deleted(&mut self) -> Result<Vec<PathBuf>, LogError> {
        let log_deleted = with_suffix(&self.log_path, DELETED_SUFFIX);
        std::fs::rename(&self.log_path, &log_deleted).at(&self.log_path)?;
        self.log_path = log_deleted.clone();
        let index_deleted = with_suffix(self.index.path(), DELETED_SUFFIX);
        self.index.rename(&index_deleted)?;
        let time_deleted = with_suffix(self.time_index.path(), DELETED_SUFFIX);
        self.time_index.rename(&time_deleted)?;
        let mut paths = vec![log_deleted, index_deleted, time_deleted];
        let txn_deleted = with_suffix(self.txn_index.path(), DELETED_SUFFIX);
        paths.extend(self.txn_index.rename(&txn_deleted)?);
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{build_batch, BatchHeader};

    fn config() -> LogConfig {
        LogConfig {
            index_interval_bytes: 100,
            max_index_size: 1024,
            ..LogConfig::default()
        }
    }

    fn append(seg: &mut LogSegment, base: i64, ts: i64, value_len: usize) {
        let v = vec![7u8; value_len];
        let b = build_batch(base, ts, &[(None, Some(&v)), (None, Some(&v))]);
        let h = BatchHeader::parse(&b).unwrap();
        seg.append(&[&b], &[BatchMeta::new(0, &h)], 100).unwrap();
    }

    #[test]
    fn append_index_translate_and_time_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 10, &config(), 0).unwrap();
        for i in 0..20 {
            append(&mut seg, 10 + 2 * i, 1000 + i, 80);
        }
        assert!(seg.index.entries() > 3);
        for target in [10, 11, 25, 48, 49] {
            let (_, h) = seg.translate_offset(target).unwrap().unwrap();
            assert!(
                h.base_offset <= target && target <= h.last_offset(),
                "{target}"
            );
        }
        assert!(seg.translate_offset(50).unwrap().is_none());
        assert_eq!(
            seg.find_offset_by_timestamp(1005, 10).unwrap(),
            Some((20, 1005))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(0, 10).unwrap(),
            Some((10, 1000))
        );
        assert_eq!(seg.find_offset_by_timestamp(5000, 10).unwrap(), None);
        assert_eq!(seg.load_tail().unwrap(), 50);
        assert_eq!(seg.largest_timestamp(), 1019);
    }

    #[test]
    fn truncate_drops_straddling_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, &config(), 0).unwrap();
        for i in 0..10 {
            append(&mut seg, 2 * i, 1000 + i, 80);
        }
        let next = seg.truncate_to(7, 1024, 0).unwrap();
        assert_eq!(next, 6);
        assert_eq!(seg.largest_timestamp(), 1002);
        assert!(seg.translate_offset(6).unwrap().is_none());
        append(&mut seg, 6, 2000, 10);
        assert_eq!(seg.load_tail().unwrap(), 8);
    }

    /// The remembered tail positions must give exactly what the index and a header walk give,
    /// before and after a truncation, for every offset.
    #[test]
    fn tail_positions_translate_as_the_index_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, &config(), 0).unwrap();
        for i in 0..300 {
            append(&mut seg, 2 * i, 1000 + i, 10);
        }
        seg.truncate_to(401, 1024, 0).unwrap();
        for i in 200..260 {
            append(&mut seg, 2 * i, 3000 + i, 10);
        }
        let reopened = LogSegment::open(dir.path(), 0, &config(), 0).unwrap();
        assert!(
            reopened.tail.start_for(500).is_none(),
            "a reopened segment walks from the index"
        );
        for target in 0..=521 {
            let walked = reopened.translate_offset(target).unwrap();
            let remembered = seg.translate_offset(target).unwrap();
            assert_eq!(
                walked.map(|(p, h)| (p, h.base_offset)),
                remembered.map(|(p, h)| (p, h.base_offset)),
                "offset {target}"
            );
        }
        assert!(seg.translate_offset(520).unwrap().is_none());
    }

    #[test]
    fn roll_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let c = LogConfig {
            segment_bytes: 1000,
            segment_ms: 100,
            ..config()
        };
        let mut seg = LogSegment::create(dir.path(), 0, &c, 0).unwrap();
        assert!(
            !seg.should_roll(&c, 500, 5000, 0, 10_000),
            "empty segments never roll on time"
        );
        append(&mut seg, 0, 5000, 100);
        assert!(!seg.should_roll(&c, 100, 5050, 5, 0));
        assert!(
            seg.should_roll(&c, 100, 5101, 5, 0),
            "data clock passed segment.ms"
        );
        assert!(seg.should_roll(&c, 900, 5050, 5, 0), "size");
        assert!(
            seg.should_roll(&c, 10, 5050, i64::from(i32::MAX) + 1, 0),
            "offset overflow"
        );
    }
}
