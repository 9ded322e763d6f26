//! The machinery shared by the `.index` and `.timeindex` files: a memory-mapped array of
//! fixed-size, big-endian entries, with an in-use prefix (`entries`) ahead of a preallocated
//! tail (Kafka's `AbstractIndex`). The entry type decides the byte layout and what a lookup
//! compares; the searching, appending, truncating and resizing are written once here.

use super::error::LogError;
use super::mmap_file::MappedFile;
use std::marker::PhantomData;
use std::path::Path;

/// One entry of a fixed-entry index file.
pub(crate) trait Entry: Copy {
    /// Bytes per entry on disk.
    const SIZE: usize;
    /// Decodes from exactly [`Entry::SIZE`] bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// Encodes into exactly [`Entry::SIZE`] bytes.
    fn encode(&self, out: &mut [u8]);
}

/// A mapped index file of `E` entries.
pub(crate) struct FixedEntryIndex<E> {
    file: MappedFile,
    entries: usize,
    entry: PhantomData<E>,
}

impl<E: Entry> FixedEntryIndex<E> {
    /// Opens (creating if absent) an index, trusting its length for the entry count; callers
    /// check it before relying on it.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<Self, LogError> {
        let file = MappedFile::open(path)?;
        let entries = file.len() / E::SIZE;
        Ok(FixedEntryIndex {
            file,
            entries,
            entry: PhantomData,
        })
    }

    /// An index whose file is opened if it exists and deferred otherwise (see `mmap_file`).
    pub(crate) fn open_or_defer(path: &Path) -> Result<Self, LogError> {
        let file = MappedFile::open_or_defer(path)?;
        let entries = file.len() / E::SIZE;
        Ok(FixedEntryIndex {
            file,
            entries,
            entry: PhantomData,
        })
    }

    pub(crate) fn is_on_disk(&self) -> bool {
        self.file.is_on_disk()
    }

    pub(crate) fn create_on_disk(&mut self) -> Result<(), LogError> {
        self.file.create_on_disk()
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// How many entries the file has room for.
    pub(crate) fn max_entries(&self) -> usize {
        self.file.len() / E::SIZE
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        self.file.rename(new_path)
    }

    /// Entry `n`, if it is in use.
    pub(crate) fn get(&self, n: usize) -> Option<E> {
        if n >= self.entries {
            return None;
        }
        let at = n * E::SIZE;
        self.file.bytes().get(at..at + E::SIZE).map(E::decode)
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.get(self.entries.checked_sub(1)?)
    }

    /// The number of leading entries for which `before` holds; `before` must be true for a
    /// prefix of the entries and false after it (a binary search).
    pub(crate) fn partition_point(&self, before: impl Fn(&E) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).is_some_and(|e| before(&e)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Writes `entry` after the last one; false (nothing written) when the file is full.
    pub(crate) fn push(&mut self, entry: E) -> bool {
        let mut buf = [0u8; 16];
        let Some(bytes) = buf.get_mut(..E::SIZE) else {
            return false;
        };
        entry.encode(bytes);
        if self.file.write_at(self.entries * E::SIZE, bytes) {
            self.entries += 1;
            true
        } else {
            false
        }
    }

    /// Keeps only the first `n` entries (the file keeps its size).
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    /// Forgets all entries (before a rebuild); the file keeps its size.
    pub(crate) fn reset(&mut self) {
        self.entries = 0;
    }

    /// Sets the file size to `size` rounded down to whole entries, but never below the
    /// entries in use.
    pub(crate) fn resize(&mut self, size: usize) -> Result<(), LogError> {
        let target = (size - size % E::SIZE).max(self.entries * E::SIZE);
        self.file.resize(target)
    }

    /// Shrinks the file to exactly the entries in use (on roll and close).
    pub(crate) fn trim_to_valid_size(&mut self) -> Result<(), LogError> {
        self.file.resize(self.entries * E::SIZE)
    }

    /// The first part of every sanity check: the file holds whole entries.
    pub(crate) fn check_whole_entries(&self) -> Result<(), String> {
        if self.file.len().is_multiple_of(E::SIZE) {
            Ok(())
        } else {
            Err(format!(
                "size {} is not a multiple of {}",
                self.file.len(),
                E::SIZE
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Pair(u16, u8);

    impl Entry for Pair {
        const SIZE: usize = 3;
        fn decode(b: &[u8]) -> Self {
            Pair(u16::from_be_bytes([b[0], b[1]]), b[2])
        }
        fn encode(&self, out: &mut [u8]) {
            out[..2].copy_from_slice(&self.0.to_be_bytes());
            out[2] = self.1;
        }
    }

    #[test]
    fn push_search_truncate_and_resize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        let mut idx = FixedEntryIndex::<Pair>::open(&path).unwrap();
        assert!(!idx.push(Pair(1, 1)), "an empty file has no room");
        idx.resize(10).unwrap(); // rounds down to 3 entries
        assert_eq!(idx.max_entries(), 3);
        for (k, v) in [(10, 1), (20, 2), (30, 3)] {
            assert!(idx.push(Pair(k, v)));
        }
        assert!(!idx.push(Pair(40, 4)), "full");
        assert_eq!(idx.partition_point(|e| e.0 <= 25), 2);
        assert_eq!(idx.partition_point(|e| e.0 < 10), 0);
        assert_eq!(idx.last(), Some(Pair(30, 3)));
        idx.resize(0).unwrap();
        assert_eq!(idx.max_entries(), 3, "never below the entries in use");
        idx.truncate_entries(1);
        assert_eq!((idx.entries(), idx.get(1)), (1, None));
        idx.trim_to_valid_size().unwrap();
        drop(idx);
        assert_eq!(std::fs::read(&path).unwrap(), vec![0, 10, 1]);
        let idx = FixedEntryIndex::<Pair>::open(&path).unwrap();
        assert_eq!((idx.entries(), idx.get(0)), (1, Some(Pair(10, 1))));
        assert!(idx.check_whole_entries().is_ok());
        std::fs::write(&path, [0u8; 4]).unwrap();
        let idx = FixedEntryIndex::<Pair>::open(&path).unwrap();
        assert!(idx.check_whole_entries().is_err());
    }
}
