//! The `.index` offset index: 8-byte entries `(i32 relative offset, i32 position)` mapping
//! the LAST offset of a batch to the file position where that batch starts. It is sparse
//! (one entry per `index.interval.bytes`), so a lookup is a floor search followed by a short
//! forward scan of batch headers in the segment.

use super::error::LogError;
use super::fixed_index::{Entry, FixedEntryIndex};
use std::path::Path;

pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;

/// `(relative offset, position)`, both big-endian `i32`.
#[derive(Clone, Copy, Debug)]
struct OffsetEntry {
    rel: i32,
    pos: i32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = OFFSET_ENTRY_SIZE;

    fn decode(e: &[u8]) -> Self {
        OffsetEntry {
            rel: i32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            pos: i32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.rel.to_be_bytes());
        out[4..8].copy_from_slice(&self.pos.to_be_bytes());
    }
}

pub(crate) struct OffsetIndex {
    index: FixedEntryIndex<OffsetEntry>,
    base_offset: i64,
}

impl OffsetIndex {
    /// Opens an existing index, trusting its length for the entry count (callers run
    /// [`OffsetIndex::sanity_check`] before relying on it).
    #[cfg(test)]
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<OffsetIndex, LogError> {
        Ok(OffsetIndex {
            index: FixedEntryIndex::open(path)?,
            base_offset,
        })
    }

    /// Opens the index file if it exists, else defers it (see `mmap_file`).
    pub(crate) fn open_or_defer(path: &Path, base_offset: i64) -> Result<OffsetIndex, LogError> {
        Ok(OffsetIndex {
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

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.index.entries()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.index.entries() >= self.index.max_entries()
    }

    pub(crate) fn path(&self) -> &Path {
        self.index.path()
    }

    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        self.index.rename(new_path)
    }

    /// An entry as (absolute offset, position).
    fn absolute(&self, e: OffsetEntry) -> (i64, u64) {
        (
            self.base_offset.saturating_add(i64::from(e.rel)),
            e.pos.max(0) as u64,
        )
    }

    /// Last entry as (absolute offset, position).
    pub(crate) fn last_entry(&self) -> Option<(i64, u64)> {
        self.index.last().map(|e| self.absolute(e))
    }

    /// Index of the last entry whose relative offset is ≤ `target_rel`.
    fn floor_slot(&self, target_rel: i64) -> Option<usize> {
        self.index
            .partition_point(|e| i64::from(e.rel) <= target_rel)
            .checked_sub(1)
    }

    /// Floor lookup: the entry with the largest offset ≤ `target`, as (offset, position);
    /// `(base_offset, 0)` when none is, meaning "scan from the start of the segment".
    pub(crate) fn lookup(&self, target: i64) -> (i64, u64) {
        self.floor_slot(target.saturating_sub(self.base_offset))
            .and_then(|n| self.index.get(n))
            .map_or((self.base_offset, 0), |e| self.absolute(e))
    }

    /// Appends an entry. Returns false without writing when the index is full or the offset
    /// does not advance; a missing entry only lengthens a later scan, so that is not an error.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> bool {
        let rel = offset.saturating_sub(self.base_offset);
        let (Ok(rel), Ok(pos)) = (i32::try_from(rel), i32::try_from(position)) else {
            return false;
        };
        if rel < 0 || self.is_full() {
            return false;
        }
        if let Some((last, _)) = self.last_entry() {
            if offset <= last {
                return false;
            }
        }
        self.index.push(OffsetEntry { rel, pos })
    }

    /// Drops every entry whose offset is ≥ `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let rel = offset.saturating_sub(self.base_offset);
        let keep = self.floor_slot(rel.saturating_sub(1)).map_or(0, |n| n + 1);
        self.index.truncate_entries(keep);
    }

    /// Forgets all entries (before a rebuild); the file keeps its size.
    pub(crate) fn reset(&mut self) {
        self.index.reset();
    }

    /// Sets the file size to `size` rounded down to whole entries, but never below the
    /// entries in use.
    pub(crate) fn resize(&mut self, size: usize) -> Result<(), LogError> {
        self.index.resize(size)
    }

    /// Shrinks the file to exactly the entries in use (on roll and close).
    pub(crate) fn trim_to_valid_size(&mut self) -> Result<(), LogError> {
        self.index.trim_to_valid_size()
    }

    /// Kafka's sanity check plus two cheap extras that catch a preallocated, zero-filled
    /// tail left by a crash: the last entry must point inside the segment and offsets must
    /// strictly increase at the end.
    pub(crate) fn sanity_check(&self, log_size: u64) -> Result<(), String> {
        self.index.check_whole_entries()?;
        let Some(last) = self.index.entries().checked_sub(1) else {
            return Ok(());
        };
        let Some(OffsetEntry { rel, pos }) = self.index.get(last) else {
            return Ok(());
        };
        if rel < 0 || pos < 0 || pos as u64 >= log_size {
            return Err(format!(
                "last entry ({rel}, {pos}) is outside a segment of {log_size} bytes"
            ));
        }
        if let Some(prev) = last.checked_sub(1).and_then(|n| self.index.get(n)) {
            if prev.rel >= rel {
                return Err(format!("offsets do not increase at entry {last}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(dir: &Path, base: i64, size: usize) -> OffsetIndex {
        let mut idx = OffsetIndex::open(&dir.join("x.index"), base).unwrap();
        idx.reset();
        idx.resize(size).unwrap();
        idx
    }

    #[test]
    fn floor_lookup_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 100, 80);
        assert_eq!(idx.lookup(150), (100, 0));
        assert!(idx.append(109, 0));
        assert!(idx.append(119, 500));
        assert!(idx.append(129, 1000));
        assert!(!idx.append(129, 1500), "non-increasing offsets are skipped");
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(108), (100, 0));
        assert_eq!(idx.lookup(109), (109, 0));
        assert_eq!(idx.lookup(125), (119, 500));
        assert_eq!(idx.lookup(i64::MAX), (129, 1000));
        idx.truncate_to(119);
        assert_eq!(idx.entries(), 1);
        assert_eq!(idx.last_entry(), Some((109, 0)));
    }

    #[test]
    fn full_trim_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 0, 20); // rounds down to 2 entries
        assert!(idx.append(1, 0));
        assert!(idx.append(2, 10));
        assert!(idx.is_full());
        assert!(!idx.append(3, 20));
        idx.trim_to_valid_size().unwrap();
        drop(idx);
        let path = dir.path().join("x.index");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let idx = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(idx.entries(), 2);
        assert!(idx.sanity_check(11).is_ok());
        assert!(idx.sanity_check(10).is_err());
    }

    #[test]
    fn zero_filled_preallocation_fails_sanity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, vec![0u8; 64]).unwrap();
        let idx = OffsetIndex::open(&path, 0).unwrap();
        assert!(idx.sanity_check(1000).is_err());
        std::fs::write(&path, vec![0u8; 63]).unwrap();
        let idx = OffsetIndex::open(&path, 0).unwrap();
        assert!(idx.sanity_check(1000).is_err());
    }
}
