//! A memory-mapped, fixed-entry-size index file: the shared machinery behind `.index` and
//! `.timeindex`. Like Kafka, the active segment's index files are preallocated to
//! `segment.index.bytes` and trimmed to the bytes in use once the segment stops growing, so
//! lookups are plain memory reads and appends are memory writes.

use super::error::{IoContext, LogError};
use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct MappedFile {
    path: PathBuf,
    /// Shared so `flush` can fsync without holding the log lock.
    file: Arc<File>,
    /// `None` while the file is empty: a zero-length mapping is not portable.
    mmap: Option<MmapMut>,
    len: usize,
}

impl MappedFile {
    /// Opens (creating if absent) and maps the file at its current length.
    pub(crate) fn open(path: &Path) -> Result<MappedFile, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        let len = file.metadata().at(path)?.len();
        let len = usize::try_from(len).map_err(|_| LogError::Corrupt {
            path: path.to_path_buf(),
            position: len,
            reason: "index file larger than the address space".into(),
        })?;
        let mut f = MappedFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            mmap: None,
            len,
        };
        f.remap()?;
        Ok(f)
    }

    fn remap(&mut self) -> Result<(), LogError> {
        self.mmap = None;
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: the mapping is shared with the file only. The file lives in a partition
        // directory this broker owns exclusively (see the data-dir lock), and it is only
        // resized through `resize`, which drops the mapping first, so no access can fall
        // beyond the end of the file while mapped.
        let map = unsafe { MmapOptions::new().len(self.len).map_mut(&*self.file) };
        self.mmap = Some(map.at(&self.path)?);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// The mapped bytes (empty when the file is empty).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.mmap.as_deref().unwrap_or(&[])
    }

    /// Copies `data` to `at`; returns false (and writes nothing) if it would not fit.
    pub(crate) fn write_at(&mut self, at: usize, data: &[u8]) -> bool {
        let Some(map) = self.mmap.as_mut() else {
            return false;
        };
        match map.get_mut(at..at.saturating_add(data.len())) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Changes the file length and remaps it. Growing creates a sparse tail, so
    /// preallocation costs address space, not disk.
    pub(crate) fn resize(&mut self, new_len: usize) -> Result<(), LogError> {
        if new_len == self.len {
            return Ok(());
        }
        self.mmap = None;
        self.file.set_len(new_len as u64).at(&self.path)?;
        self.len = new_len;
        self.remap()
    }

    /// Renames the file (used when a segment is scheduled for deletion); the mapping and
    /// descriptor stay valid across a rename.
    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        std::fs::rename(&self.path, new_path).at(&self.path)?;
        self.path = new_path.to_path_buf();
        Ok(())
    }
}

/// Renames `path` to `path` + `suffix`, e.g. `…/00000000000000000000.index.deleted`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
