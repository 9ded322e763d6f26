//! A memory-mapped, fixed-entry-size index file: the shared machinery behind `.index` and
//! `.timeindex`. Like Kafka, the active segment's index files are preallocated to
//! `segment.index.bytes` and trimmed to the bytes in use once the segment stops growing, so
//! lookups are plain memory reads and appends are memory writes.
//!
//! The index files of a segment that holds no data yet exist only in memory (Kafka's
//! `LazyIndex` defers its files in the same spirit): creating a 10,000-partition topic then
//! creates one `.log` per partition, not three files, and a broker restarting with thousands
//! of empty partitions maps nothing. The files appear with the segment's first append.

use super::error::{IoContext, LogError};
use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A mapped index file. It holds no descriptor: as in Kafka, the file is opened only to map it
/// (and, rarely, to resize it), so a broker needs one descriptor per segment (the `.log`), not
/// three.
pub(crate) struct MappedFile {
    path: PathBuf,
    /// `None` while the file is empty: a zero-length mapping is not portable.
    mmap: Option<MmapMut>,
    len: usize,
    /// False while the file is deferred: `len` is then the length it will be created with.
    on_disk: bool,
    /// Bytes from the start known to have disk blocks behind them. The preallocated tail is
    /// sparse (it costs no disk), and a store through the mapping into a sparse page on a full
    /// disk would kill the process with SIGBUS; so blocks are reserved with `fallocate` a chunk
    /// ahead of the entries written, where a full disk is an ordinary error.
    allocated: usize,
}

/// How far ahead of the last entry blocks are reserved: 64 KiB holds 8,192 offset-index
/// entries, one reservation per ~32 MiB of log at the default `index.interval.bytes`.
const ALLOCATION_CHUNK: usize = 64 * 1024;

fn open_rw(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
}

impl MappedFile {
    /// Opens (creating if absent) and maps the file at its current length; the descriptor is
    /// closed before returning.
    pub(crate) fn open(path: &Path) -> Result<MappedFile, LogError> {
        let file = open_rw(path)?;
        let len = file.metadata().at(path)?.len();
        let len = usize::try_from(len).map_err(|_| LogError::Corrupt {
            path: path.to_path_buf(),
            position: len,
            reason: "index file larger than the address space".into(),
        })?;
        let mut f = MappedFile {
            path: path.to_path_buf(),
            mmap: None,
            len,
            on_disk: true,
            allocated: 0,
        };
        f.map(&file)?;
        Ok(f)
    }

    /// Opens the file if it exists; otherwise defers it (empty, nothing created) until
    /// [`Self::create_on_disk`].
    pub(crate) fn open_or_defer(path: &Path) -> Result<MappedFile, LogError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::open(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MappedFile {
                path: path.to_path_buf(),
                mmap: None,
                len: 0,
                on_disk: false,
                allocated: 0,
            }),
            Err(e) => Err(LogError::io(path, e)),
        }
    }

    pub(crate) fn is_on_disk(&self) -> bool {
        self.on_disk
    }

    /// Creates a deferred file at its intended length and maps it; a no-op once on disk. A
    /// file found at the path (left by a crash, say) is replaced, as the deferred one was
    /// empty.
    pub(crate) fn create_on_disk(&mut self) -> Result<(), LogError> {
        if self.on_disk {
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .at(&self.path)?;
        file.set_len(self.len as u64).at(&self.path)?;
        self.on_disk = true;
        self.map(&file)
    }

    fn map(&mut self, file: &File) -> Result<(), LogError> {
        self.mmap = None;
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: the mapping is shared with the file only. The file lives in a partition
        // directory this broker owns exclusively (see the data-dir lock), and it is only
        // resized through `resize`, which drops the mapping first, so no access can fall
        // beyond the end of the file while mapped.
        let map = unsafe { MmapOptions::new().len(self.len).map_mut(file) };
        self.mmap = Some(map.at(&self.path)?);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped bytes (empty when the file is empty).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.mmap.as_deref().unwrap_or(&[])
    }

    /// Copies `data` to `at`; returns false (and writes nothing) if it would not fit, the
    /// file is still deferred, or no disk blocks could be reserved for it (that I/O error has
    /// then taken the data directory offline; a missing index entry only lengthens a scan).
    pub(crate) fn write_at(&mut self, at: usize, data: &[u8]) -> bool {
        let end = at.saturating_add(data.len());
        if self.mmap.is_none() || end > self.len {
            return false;
        }
        if end > self.allocated && self.reserve(end).is_err() {
            return false;
        }
        let Some(map) = self.mmap.as_mut() else {
            return false;
        };
        match map.get_mut(at..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Reserves disk blocks for the file's first `end` bytes and a chunk more (up to its
    /// length). Blocks already there are left as they are.
    fn reserve(&mut self, end: usize) -> Result<(), LogError> {
        let target = end.saturating_add(ALLOCATION_CHUNK).min(self.len).max(end);
        let file = open_rw(&self.path)?;
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(self.allocated),
            libc::off_t::try_from(target - self.allocated),
        ) else {
            return Err(LogError::Corrupt {
                path: self.path.clone(),
                position: target as u64,
                reason: "index file larger than off_t".into(),
            });
        };
        // SAFETY: a plain syscall on a descriptor owned by `file` for its whole duration.
        let rc =
            unsafe { libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), offset, len) };
        if rc != 0 {
            return Err(LogError::io(
                &self.path,
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        self.allocated = target;
        Ok(())
    }

    /// Changes the file length and remaps it. Growing creates a sparse tail, so
    /// preallocation costs address space, not disk.
    pub(crate) fn resize(&mut self, new_len: usize) -> Result<(), LogError> {
        if new_len == self.len {
            return Ok(());
        }
        if !self.on_disk {
            self.len = new_len;
            return Ok(());
        }
        self.mmap = None;
        let file = open_rw(&self.path)?;
        file.set_len(new_len as u64).at(&self.path)?;
        self.len = new_len;
        self.allocated = self.allocated.min(new_len);
        self.map(&file)
    }

    /// Renames the file (used when a segment is scheduled for deletion); the mapping stays
    /// valid across a rename.
    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<(), LogError> {
        if self.on_disk {
            std::fs::rename(&self.path, new_path).at(&self.path)?;
        }
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

/// Fsyncs the file at `path` through a short-lived descriptor. On Linux that writes back the
/// pages dirtied through any shared mapping of it too. A file already gone (its segment was
/// deleted meanwhile) needs no flush.
pub(crate) fn sync_path(path: &Path) -> Result<(), LogError> {
    match File::open(path) {
        Ok(file) => file.sync_all().at(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_no_descriptor_and_survives_resize_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut f = MappedFile::open(&path).unwrap();
        assert!(f.bytes().is_empty());
        f.resize(16).unwrap();
        assert!(f.write_at(8, &[1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!f.write_at(12, &[0; 8]), "past the end");
        let renamed = dir.path().join("0.index.deleted");
        f.rename(&renamed).unwrap();
        sync_path(&renamed).unwrap();
        sync_path(&path).unwrap();
        assert_eq!(
            std::fs::read(&renamed).unwrap()[8..],
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        let open: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir.path()))
            .collect();
        assert!(open.is_empty(), "descriptors left open: {open:?}");
    }

    #[test]
    fn entries_are_written_only_over_reserved_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut f = MappedFile::open(&path).unwrap();
        // A 10 MiB preallocation costs no disk: the tail stays sparse.
        f.resize(10 << 20).unwrap();
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        assert!(blocks(&path) < 4096, "{} bytes allocated", blocks(&path));
        assert!(f.write_at(1 << 20, &[9; 8]));
        let reserved = blocks(&path);
        // Everything up to the entry plus one chunk, not the whole file.
        assert!(
            reserved >= (1 << 20) as u64 && reserved <= ((1 << 20) + 2 * ALLOCATION_CHUNK) as u64,
            "{reserved} bytes allocated"
        );
        // Entries inside the reserved range reserve nothing more.
        assert!(f.write_at((1 << 20) + 8, &[9; 8]));
        assert_eq!(blocks(&path), reserved);
        assert!(!f.write_at((10 << 20) - 4, &[9; 8]), "past the end");
    }

    #[test]
    fn a_deferred_file_appears_only_when_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut f = MappedFile::open_or_defer(&path).unwrap();
        assert!(!f.is_on_disk());
        f.resize(16).unwrap();
        assert_eq!(f.len(), 16);
        assert!(!f.write_at(0, &[1]), "nothing to write into yet");
        let renamed = dir.path().join("1.index");
        f.rename(&renamed).unwrap();
        assert!(!path.exists() && !renamed.exists(), "still nothing on disk");
        f.create_on_disk().unwrap();
        assert!(f.write_at(8, &[7; 8]));
        assert_eq!(std::fs::metadata(&renamed).unwrap().len(), 16);
        drop(f);
        let f = MappedFile::open_or_defer(&renamed).unwrap();
        assert!(f.is_on_disk());
        assert_eq!(f.bytes()[8..], [7; 8]);
    }
}
