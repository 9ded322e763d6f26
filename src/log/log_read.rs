//! The read side of a partition's log: a fetch's file range (Kafka's `Log.read` /
//! `LogSegment.read`) and ListOffsets by timestamp. Readers hold the segments' read lock only
//! to locate bytes; the range is sent from the file later, with no lock held.

use super::error::LogError;
use super::partition_log::{Log, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use super::types::ReadInfo;
use crate::protocol::file_region::FileRegion;
use crate::util::sync::read;

impl Log {
    pub(super) fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            topic_partition: self.tp.to_string(),
            offset,
            log_start: self.log_start_offset(),
            log_end: self.log_end_offset(),
        }
    }

    /// Reads from the batch containing `offset` on, within one segment, as a range of the
    /// segment file (Kafka's `LogSegment.read`): nothing is read or copied here. The range ends
    /// at `max_bytes`, at the position of `max_offset` (the high watermark, a batch boundary)
    /// or at the segment's end, whichever comes first, so its last batch may be partial, as in
    /// Kafka; consumers and followers drop a partial trailing batch. With `min_one_batch` the
    /// first batch comes whole even above `max_bytes`; without it such a batch gives nothing.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
        min_one_batch: bool,
    ) -> Result<ReadInfo, LogError> {
        self.ensure_open()?;
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        let empty = || ReadInfo {
            records: FileRegion::default(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        if offset < log_start || offset > log_end {
            return Err(self.out_of_range(offset));
        }
        if offset == log_end || max_offset.is_some_and(|m| offset >= m) {
            return Ok(empty());
        }
        let segments = read(&self.segments);
        // Appends move the log end and the active segment's size together under the write
        // lock, so under the read lock the two agree.
        let locked_end = self.log_end_offset();
        let start = segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(i64::MIN);
        let mut candidates = segments.range(start..).peekable();
        let mut found = None;
        while let Some((_, segment)) = candidates.next() {
            if let Some((pos, header)) = segment.translate_offset(offset)? {
                let next_base = candidates.peek().map(|(b, _)| **b);
                found = Some((segment, next_base, pos, header));
                break;
            }
        }
        let Some((segment, next_base, pos, first)) = found else {
            return Ok(empty());
        };
        if max_offset.is_some_and(|m| first.base_offset >= m) {
            return Ok(empty());
        }
        let end = match max_offset {
            // A cap inside this segment ends the range at the batch that starts there; a cap
            // at the log's end or in a later segment leaves the whole segment readable.
            Some(m) if m < locked_end && next_base.is_none_or(|n| m < n) => segment
                .translate_offset(m)?
                .map_or(segment.size(), |(p, _)| p),
            _ => segment.size(),
        };
        let available = usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX);
        let first_size = first.total_size();
        let len = if first_size > max_bytes {
            if !min_one_batch {
                return Ok(empty());
            }
            first_size.min(available)
        } else {
            max_bytes.min(available)
        };
        Ok(ReadInfo {
            records: FileRegion::new(segment.file(), pos, len),
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    /// ListOffsets by timestamp: the first batch whose max timestamp is ≥ `ts`, as (offset,
    /// timestamp); -2 / -1 ask for the log start / end. Batch granularity, like the rest of
    /// this layer: the offset is the batch's base offset (or the log start, if later).
    pub fn fetch_offset_by_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.ensure_open()?;
        match ts {
            EARLIEST_TIMESTAMP => return Ok(Some((self.log_start_offset(), -1))),
            LATEST_TIMESTAMP => return Ok(Some((self.log_end_offset(), -1))),
            _ => {}
        }
        let log_start = self.log_start_offset();
        let segments = read(&self.segments);
        let bases: Vec<i64> = segments.keys().copied().collect();
        for (i, (_, segment)) in segments.iter().enumerate() {
            let below_start = bases.get(i + 1).is_some_and(|next| *next <= log_start);
            if below_start || segment.largest_timestamp() < ts {
                continue;
            }
            if let Some(found) = segment.find_offset_by_timestamp(ts, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}
