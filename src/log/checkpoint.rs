//! Kafka's text checkpoint files: a version line (`0`), an entry count, then one entry per
//! line. Used for `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`
//! (`topic partition offset`) and `leader-epoch-checkpoint` (`epoch startOffset`).
//!
//! Writes go to `<file>.tmp`, are fsynced, renamed over the target and the directory is
//! fsynced, so a crash leaves either the old or the new file, never a torn one.
//!
//! [`batched_sync`] keeps that guarantee for thousands of files at the cost of a few syscalls:
//! inside it, writes only fill their `.tmp` files and directory syncs are noted; at its end one
//! `syncfs` per filesystem makes every `.tmp` durable, the renames follow, and a second `syncfs`
//! makes the renames durable. A LeaderAndIsr for 10,000 new partitions would otherwise wait for
//! 15,000 fsyncs one after another.

use super::error::{IoContext, LogError};
use super::types::TopicPartition;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub(crate) const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
pub(crate) const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";

const VERSION: u32 = 0;

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn batch_tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".batch.tmp");
    path.with_file_name(name)
}

/// What a [`batched_sync`] scope still owes: `.tmp` files to rename (final path → tmp) and
/// directories whose entries must become durable.
#[derive(Default)]
struct PendingSync {
    renames: BTreeMap<PathBuf, PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

thread_local! {
    static PENDING: RefCell<Option<PendingSync>> = const { RefCell::new(None) };
}

/// Records `f`'s effect on the open batch, if this thread has one; `false` if it has none.
fn defer(f: impl FnOnce(&mut PendingSync)) -> bool {
    PENDING.with(|p| match p.borrow_mut().as_mut() {
        Some(pending) => {
            f(pending);
            true
        }
        None => false,
    })
}

/// Runs `f` with this thread's checkpoint writes and directory fsyncs batched (see the module
/// doc), then makes all of them durable. The second value is the outcome of that: on `Err`
/// some of `f`'s writes may not be durable, and the caller must not report them as done.
/// Nested calls join the outer batch.
pub fn batched_sync<T>(f: impl FnOnce() -> T) -> (T, Result<(), LogError>) {
    let opened = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_some() {
            return false;
        }
        *p = Some(PendingSync::default());
        true
    });
    let value = f();
    if !opened {
        return (value, Ok(()));
    }
    let pending = PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default();
    (value, complete(pending))
}

fn complete(pending: PendingSync) -> Result<(), LogError> {
    if pending.renames.is_empty() && pending.dirs.is_empty() {
        return Ok(());
    }
    let mut dirs = pending.dirs;
    dirs.extend(
        pending
            .renames
            .keys()
            .filter_map(|p| p.parent().map(Path::to_path_buf)),
    );
    let filesystems = one_dir_per_filesystem(&dirs);
    sync_filesystems(&filesystems)?;
    // Every rename is attempted, so one failure does not leave the others' files stale.
    let mut first_error = None;
    for (path, tmp) in &pending.renames {
        if let Err(e) = fs::rename(tmp, path).at(path) {
            first_error.get_or_insert(e);
        }
    }
    if !pending.renames.is_empty() {
        sync_filesystems(&filesystems)?;
    }
    first_error.map_or(Ok(()), Err)
}

/// One directory of each distinct filesystem (device) among `dirs`.
fn one_dir_per_filesystem(dirs: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = BTreeSet::new();
    dirs.iter()
        .filter(|d| match fs::metadata(d) {
            Ok(m) => seen.insert(m.dev()),
            // Gone meanwhile (deleted): nothing of it to sync.
            Err(_) => false,
        })
        .cloned()
        .collect()
}

fn sync_filesystems(dirs: &[PathBuf]) -> Result<(), LogError> {
    use std::os::fd::AsRawFd;
    for dir in dirs {
        let handle = File::open(dir).at(dir)?;
        // SAFETY: `handle` is an open descriptor for the whole call; syncfs only reads it.
        let rc = unsafe { libc::syncfs(handle.as_raw_fd()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).at(dir);
        }
    }
    Ok(())
}

/// Fsyncs a directory so a rename or create inside it survives a crash (at the end of the
/// thread's [`batched_sync`] scope, if one is open).
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    if defer(|p| {
        p.dirs.insert(dir.to_path_buf());
    }) {
        return Ok(());
    }
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Replaces `path` with `contents` atomically and durably (the rename and both syncs at the
/// end of the thread's [`batched_sync`] scope, if one is open).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), LogError> {
    // A batched write keeps its own temporary name, so an immediate write of the same file
    // meanwhile (another thread's) cannot rename the batch's contents away.
    let batched = PENDING.with(|p| p.borrow().is_some());
    let tmp = if batched {
        batch_tmp_path(path)
    } else {
        tmp_path(path)
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .at(&tmp)?;
    file.write_all(contents).at(&tmp)?;
    if defer(|p| {
        p.renames.insert(path.to_path_buf(), tmp.clone());
    }) {
        return Ok(());
    }
    file.sync_all().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn render<I: IntoIterator<Item = String>>(entries: I) -> String
where
    I::IntoIter: ExactSizeIterator,
{
    let entries = entries.into_iter();
    let mut out = format!("{VERSION}\n{}\n", entries.len());
    for line in entries {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Reads a checkpoint, parsing each entry line with `parse`. A missing or empty file is an
/// empty checkpoint (Kafka creates empty epoch files before the first write).
fn read_entries<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, LogError> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(path, e)),
    };
    let corrupt = |reason: String| LogError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8".into()))?;
    let mut lines = text.lines();
    let Some(version) = lines.next() else {
        return Ok(Vec::new());
    };
    if version.trim().parse::<u32>().ok() != Some(VERSION) {
        return Err(corrupt(format!("unrecognized version line {version:?}")));
    }
    let Some(count) = lines.next() else {
        return Ok(Vec::new());
    };
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| corrupt(format!("malformed entry count {count:?}")))?;
    // The count comes from disk; cap the preallocation so a garbage count cannot exhaust memory.
    let mut entries = Vec::with_capacity(count.min(4096));
    for line in lines.by_ref().take(count) {
        entries.push(parse(line).ok_or_else(|| corrupt(format!("malformed line {line:?}")))?);
    }
    if entries.len() != count {
        return Err(corrupt(format!(
            "expected {count} entries but found {}",
            entries.len()
        )));
    }
    if let Some(extra) = lines.find(|l| !l.trim().is_empty()) {
        return Err(corrupt(format!(
            "unexpected line after {count} entries: {extra:?}"
        )));
    }
    Ok(entries)
}

/// Reads a `topic partition offset` checkpoint.
pub(crate) fn read_offsets(path: &Path) -> Result<BTreeMap<TopicPartition, i64>, LogError> {
    let entries = read_entries(path, |line| {
        let mut parts = line.split(' ');
        let topic = parts.next().filter(|t| !t.is_empty())?;
        let partition: i32 = parts.next()?.parse().ok()?;
        let offset: i64 = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then(|| (TopicPartition::new(topic, partition), offset))
    })?;
    Ok(entries.into_iter().collect())
}

/// Writes a `topic partition offset` checkpoint.
pub(crate) fn write_offsets(
    path: &Path,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<(), LogError> {
    let text = render(
        offsets
            .iter()
            .map(|(tp, offset)| format!("{} {} {}", tp.topic, tp.partition, offset)),
    );
    write_atomic(path, text.as_bytes())
}

/// Reads an `epoch startOffset` checkpoint.
pub(crate) fn read_epochs(path: &Path) -> Result<Vec<(i32, i64)>, LogError> {
    read_entries(path, |line| {
        let mut parts = line.split(' ');
        let epoch: i32 = parts.next()?.parse().ok()?;
        let offset: i64 = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((epoch, offset))
    })
}

/// Writes an `epoch startOffset` checkpoint.
pub(crate) fn write_epochs(path: &Path, epochs: &[(i32, i64)]) -> Result<(), LogError> {
    let text = render(epochs.iter().map(|(e, o)| format!("{e} {o}")));
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        let mut m = BTreeMap::new();
        m.insert(TopicPartition::new("a-b", 3), 42);
        m.insert(TopicPartition::new("z", 0), 7);
        write_offsets(&path, &m).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "0\n2\na-b 3 42\nz 0 7\n"
        );
        assert_eq!(read_offsets(&path).unwrap(), m);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn epochs_round_trip_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        assert!(read_epochs(&path).unwrap().is_empty());
        write_epochs(&path, &[(0, 0), (3, 120)]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n3 120\n");
        assert_eq!(read_epochs(&path).unwrap(), vec![(0, 0), (3, 120)]);
        fs::write(&path, "").unwrap();
        assert!(read_epochs(&path).unwrap().is_empty());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        for text in [
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\nx\n",
            "0\n1\nt zero 1\n",
            "0\n1\nt 0 1\nt 1 1\n",
        ] {
            fs::write(&path, text).unwrap();
            assert!(
                matches!(read_offsets(&path), Err(LogError::CorruptCheckpoint { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn batched_writes_land_together_at_the_end_of_the_scope() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_atomic(&a, b"old").unwrap();
        let ((), synced) = batched_sync(|| {
            write_atomic(&a, b"new-a").unwrap();
            write_atomic(&b, b"new-b").unwrap();
            // Written twice in one batch: the last contents win.
            write_atomic(&b, b"newer-b").unwrap();
            // Nested scopes join the outer batch instead of completing it early.
            let ((), inner) = batched_sync(|| fsync_dir(dir.path()).unwrap());
            inner.unwrap();
            assert_eq!(
                fs::read(&a).unwrap(),
                b"old",
                "nothing is replaced before the sync"
            );
            assert!(!b.exists());
        });
        synced.unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new-a");
        assert_eq!(fs::read(&b).unwrap(), b"newer-b");
        assert!(!batch_tmp_path(&a).exists() && !batch_tmp_path(&b).exists());
        // Outside a scope writes are immediate again.
        write_atomic(&a, b"direct").unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"direct");
    }
}
