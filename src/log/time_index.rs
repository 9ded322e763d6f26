//! The `.timeindex`: 12-byte entries `(i64 max timestamp so far, i32 relative offset)`,
//! written alongside offset-index entries only when the segment's max timestamp grew. It
//! answers ListOffsets-by-timestamp: the floor entry for a timestamp gives an offset from
//! which a forward scan finds the first batch at or after that time.

use super::error::LogError;
use super::fixed_index::{Entry, FixedEntryIndex};
use std::path::Path;

pub(crate) const TIME_ENTRY_SIZE: usize = 12;

/// Kafka's "no timestamp" value.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// `(timestamp, relative offset)`: a big-endian `i64` then `i32`.
#[derive(Clone, Copy, Debug)]
struct TimeEntry {
    ts: i64,
    rel: i32,
}

impl Entry for TimeEntry {
    const SIZE: usize = TIME_ENTRY_SIZE;

    fn decode(e: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        TimeEntry {
            ts: i64::from_be_bytes(ts),
            rel: i32::from_be_bytes([e[8], e[9], e[10], e[11]]),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.rel.to_be_bytes());
    }
}

pub(crate) struct TimeIndex {
    index: FixedEntryIndex<TimeEntry>,
    base_offset: i64,
}

impl TimeIndex {
    #[cfg(test)]
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<TimeIndex, LogError> {
        Ok(TimeIndex {
            index: FixedEntryIndex::open(path)?,
            base_offset,
        })
    }

    /// Opens the index file if it exists, else defers it (see `mmap_file`).
    pub(crate) fn open_or_defer(path: &Path, base_offset: i64) -> Result<TimeIndex, LogError> {
        Ok(TimeIndex {
            index: FixedEntryIndex::open_or_defer(path)?,
            base_offset,
        })
    }

    pub(crate) fn is_on_disk(&self) -> bool {
        self.index.is_on_disk()
    }

    pub(crate) fn create_on_disk(&mut self) -> Result<(), LogError> {
        self.index.create_on_disk()
    }

    /// Full one slot early: the last slot is reserved for the final entry appended when the
    /// segment becomes inactive (Kafka's `TimeIndex.isFull`).
    pub(crate) fn is_full(&self) -> bool {
        self.index.entries() >= self.index.max_entries().saturating_sub(1)
    }

    pub(crate) fn path(&self) -> &Path {
        self.index.path()
    }

    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        self.index.rename(new_path)
    }

    /// An entry as (timestamp, absolute offset); `(NO_TIMESTAMP, base_offset)` for none.
    fn absolute(&self, e: Option<TimeEntry>) -> (i64, i64) {
        match e {
            Some(e) => (e.ts, self.base_offset.saturating_add(i64::from(e.rel))),
            None => (NO_TIMESTAMP, self.base_offset),
        }
    }

    /// Last entry as (timestamp, absolute offset); `(NO_TIMESTAMP, base_offset)` when empty.
    pub(crate) fn last_entry(&self) -> (i64, i64) {
        self.absolute(self.index.last())
    }

    /// Appends `(timestamp, offset)` if the timestamp is newer than the last entry. With
    /// `skip_full_check` the reserved last slot may be used.
    pub(crate) fn maybe_append(
        &mut self,
        timestamp: i64,
        offset: i64,
        skip_full_check: bool,
    ) -> bool {
        if !skip_full_check && self.is_full() {
            return false;
        }
        let (last_ts, last_offset) = self.last_entry();
        if timestamp <= last_ts || (self.index.entries() > 0 && offset < last_offset) {
            return false;
        }
        let Ok(rel) = i32::try_from(offset.saturating_sub(self.base_offset)) else {
            return false;
        };
        if rel < 0 {
            return false;
        }
        self.index.push(TimeEntry { ts: timestamp, rel })
    }

    /// The entry with the largest timestamp ≤ `target`, as (timestamp, offset);
    /// `(NO_TIMESTAMP, base_offset)` when none is.
    pub(crate) fn lookup(&self, target: i64) -> (i64, i64) {
        let floor = self
            .index
            .partition_point(|e| e.ts <= target)
            .checked_sub(1)
            .and_then(|n| self.index.get(n));
        self.absolute(floor)
    }

    /// Drops every entry whose offset is ≥ `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let target_rel = offset.saturating_sub(self.base_offset);
        let keep = self
            .index
            .partition_point(|e| i64::from(e.rel) < target_rel);
        self.index.truncate_entries(keep);
    }

    pub(crate) fn reset(&mut self) {
        self.index.reset();
    }

    pub(crate) fn resize(&mut self, size: usize) -> Result<(), LogError> {
        self.index.resize(size)
    }

    pub(crate) fn trim_to_valid_size(&mut self) -> Result<(), LogError> {
        self.index.trim_to_valid_size()
    }

    /// Size must be whole entries; the last entry must lie in `[base_offset, next_offset)`
    /// and, as every append is strictly newer, its timestamp must exceed the one before it
    /// (which rejects a zero-filled preallocated tail).
    pub(crate) fn sanity_check(&self, next_offset: i64) -> Result<(), String> {
        self.index.check_whole_entries()?;
        let Some(last) = self.index.entries().checked_sub(1) else {
            return Ok(());
        };
        let Some(TimeEntry { ts, rel }) = self.index.get(last) else {
            return Ok(());
        };
        let offset = self.base_offset.saturating_add(i64::from(rel));
        if rel < 0 || offset >= next_offset.max(self.base_offset.saturating_add(1)) {
            return Err(format!(
                "last entry offset {offset} is outside [{}, {next_offset})",
                self.base_offset
            ));
        }
        if let Some(prev) = last.checked_sub(1).and_then(|n| self.index.get(n)) {
            if prev.ts >= ts || prev.rel > rel {
                return Err(format!("entries do not increase at entry {last}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let mut idx = TimeIndex::open(&path, 50).unwrap();
        idx.resize(48).unwrap(); // 4 slots, 3 usable before the reserved one
        assert_eq!(idx.lookup(10), (NO_TIMESTAMP, 50));
        assert!(idx.maybe_append(1000, 55, false));
        assert!(!idx.maybe_append(1000, 57, false), "timestamp must grow");
        assert!(idx.maybe_append(2000, 60, false));
        assert!(idx.maybe_append(3000, 70, false));
        assert!(idx.is_full());
        assert!(!idx.maybe_append(4000, 80, false));
        assert!(idx.maybe_append(4000, 80, true));
        assert_eq!(idx.lookup(999), (NO_TIMESTAMP, 50));
        assert_eq!(idx.lookup(2500), (2000, 60));
        assert_eq!(idx.lookup(i64::MAX), (4000, 80));
        assert!(idx.sanity_check(81).is_ok());
        assert!(idx.sanity_check(80).is_err());
        idx.truncate_to(60);
        assert_eq!(idx.last_entry(), (1000, 55));
        idx.trim_to_valid_size().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
    }

    #[test]
    fn zero_filled_tail_fails_sanity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        std::fs::write(&path, vec![0u8; 120]).unwrap();
        assert!(TimeIndex::open(&path, 0)
            .unwrap()
            .sanity_check(100)
            .is_err());
    }
}
