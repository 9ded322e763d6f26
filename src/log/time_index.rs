//! The `.timeindex`: 12-byte entries `(i64 max timestamp so far, i32 relative offset)`,
//! written alongside offset-index entries only when the segment's max timestamp grew. It
//! answers ListOffsets-by-timestamp: the floor entry for a timestamp gives an offset from
//! which a forward scan finds the first batch at or after that time.

use super::error::LogError;
use super::mmap_file::MappedFile;
use std::path::Path;

pub(crate) const TIME_ENTRY_SIZE: usize = 12;

/// Kafka's "no timestamp" value.
pub(crate) const NO_TIMESTAMP: i64 = -1;

pub(crate) struct TimeIndex {
    file: MappedFile,
    base_offset: i64,
    entries: usize,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<TimeIndex, LogError> {
        let file = MappedFile::open(path)?;
        let entries = file.len() / TIME_ENTRY_SIZE;
        Ok(TimeIndex {
            file,
            base_offset,
            entries,
        })
    }

    /// Full one slot early: the last slot is reserved for the final entry appended when the
    /// segment becomes inactive (Kafka's `TimeIndex.isFull`).
    pub(crate) fn is_full(&self) -> bool {
        self.entries >= (self.file.len() / TIME_ENTRY_SIZE).saturating_sub(1)
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        self.file.rename(new_path)
    }

    /// Raw entry `n`: (timestamp, relative offset).
    fn raw(&self, n: usize) -> (i64, i32) {
        let at = n * TIME_ENTRY_SIZE;
        match self.file.bytes().get(at..at + TIME_ENTRY_SIZE) {
            Some(e) => {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&e[..8]);
                (
                    i64::from_be_bytes(ts),
                    i32::from_be_bytes([e[8], e[9], e[10], e[11]]),
                )
            }
            None => (NO_TIMESTAMP, 0),
        }
    }

    /// Last entry as (timestamp, absolute offset); `(NO_TIMESTAMP, base_offset)` when empty.
    pub(crate) fn last_entry(&self) -> (i64, i64) {
        match self.entries.checked_sub(1) {
            Some(n) => {
                let (ts, rel) = self.raw(n);
                (ts, self.base_offset.saturating_add(i64::from(rel)))
            }
            None => (NO_TIMESTAMP, self.base_offset),
        }
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
        if timestamp <= last_ts || (self.entries > 0 && offset < last_offset) {
            return false;
        }
        let Ok(rel) = i32::try_from(offset.saturating_sub(self.base_offset)) else {
            return false;
        };
        if rel < 0 {
            return false;
        }
        let mut entry = [0u8; TIME_ENTRY_SIZE];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&rel.to_be_bytes());
        if self.file.write_at(self.entries * TIME_ENTRY_SIZE, &entry) {
            self.entries += 1;
            true
        } else {
            false
        }
    }

    /// The entry with the largest timestamp ≤ `target`, as (timestamp, offset);
    /// `(NO_TIMESTAMP, base_offset)` when none is.
    pub(crate) fn lookup(&self, target: i64) -> (i64, i64) {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.raw(mid).0 <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo.checked_sub(1) {
            Some(n) => {
                let (ts, rel) = self.raw(n);
                (ts, self.base_offset.saturating_add(i64::from(rel)))
            }
            None => (NO_TIMESTAMP, self.base_offset),
        }
    }

    /// Drops every entry whose offset is ≥ `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let target_rel = offset.saturating_sub(self.base_offset);
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if i64::from(self.raw(mid).1) < target_rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.entries = lo;
    }

    pub(crate) fn reset(&mut self) {
        self.entries = 0;
    }

    pub(crate) fn resize(&mut self, size: usize) -> Result<(), LogError> {
        let target = (size - size % TIME_ENTRY_SIZE).max(self.entries * TIME_ENTRY_SIZE);
        self.file.resize(target)
    }

    pub(crate) fn trim_to_valid_size(&mut self) -> Result<(), LogError> {
        self.file.resize(self.entries * TIME_ENTRY_SIZE)
    }

    /// Size must be whole entries; the last entry must lie in `[base_offset, next_offset)`
    /// and, as every append is strictly newer, its timestamp must exceed the one before it
    /// (which rejects a zero-filled preallocated tail).
    pub(crate) fn sanity_check(&self, next_offset: i64) -> Result<(), String> {
        if !self.file.len().is_multiple_of(TIME_ENTRY_SIZE) {
            return Err(format!(
                "size {} is not a multiple of {TIME_ENTRY_SIZE}",
                self.file.len()
            ));
        }
        let Some(last) = self.entries.checked_sub(1) else {
            return Ok(());
        };
        let (ts, rel) = self.raw(last);
        let offset = self.base_offset.saturating_add(i64::from(rel));
        if rel < 0 || offset >= next_offset.max(self.base_offset.saturating_add(1)) {
            return Err(format!(
                "last entry offset {offset} is outside [{}, {next_offset})",
                self.base_offset
            ));
        }
        if let Some(prev) = last.checked_sub(1) {
            let (prev_ts, prev_rel) = self.raw(prev);
            if prev_ts >= ts || prev_rel > rel {
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
