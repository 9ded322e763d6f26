//! The aborted-transaction index, `<base>.txnindex` (Kafka's `TransactionIndex`): one 34-byte
//! entry per transaction whose ABORT marker lies in the segment, so a read_committed fetch can
//! tell the consumer which producers' records to drop without reading the log.
//!
//! Entry layout, big-endian: `version i16 = 0`, `producer_id i64`, `first_offset i64`,
//! `last_offset i64` (the ABORT marker), `last_stable_offset i64` (the partition's LSO once
//! the abort completed). Entries are in increasing `last_offset`. The file is created with the
//! first entry, never preallocated, and holds no descriptor: aborts and read_committed fetches
//! open it when they need it, so a log of many segments costs no descriptor per index.

use super::error::{IoContext, LogError};
use super::scan::read_fully_at;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
pub(crate) const ENTRY_SIZE: usize = 34;
/// Entries read per `pread` when walking the file.
const CHUNK_ENTRIES: usize = 1024;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub(crate) fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// Kafka 2.8 reads only the first byte of the version and refuses anything but 0.
    fn decode(b: &[u8]) -> Result<AbortedTxn, String> {
        if b.len() < ENTRY_SIZE {
            return Err(format!("entry of {} bytes, expected {ENTRY_SIZE}", b.len()));
        }
        if b[0] != 0 {
            return Err(format!("unexpected aborted transaction version {}", b[0]));
        }
        let at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok(AbortedTxn {
            producer_id: at(2),
            first_offset: at(10),
            last_offset: at(18),
            last_stable_offset: at(26),
        })
    }
}

/// What [`TxnIndex::collect`] found in one segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Collected {
    pub aborted: Vec<AbortedTxn>,
    /// An entry's LSO reached the upper bound: no later segment can add to the list.
    pub complete: bool,
}

#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    /// Bytes of whole entries in the file.
    len: u64,
    last_offset: Option<i64>,
}

fn open_read(path: &Path) -> Result<Option<File>, LogError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io(path, e)),
    }
}

impl TxnIndex {
    /// The index at `path` as found on disk (none yet is an empty index). A torn last entry is
    /// left out of the length; [`TxnIndex::sanity_check`] reports it.
    pub(crate) fn open(path: PathBuf) -> Result<TxnIndex, LogError> {
        let file_len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(LogError::io(&path, e)),
        };
        let mut index = TxnIndex {
            path,
            len: file_len - file_len % ENTRY_SIZE as u64,
            last_offset: None,
        };
        // An unreadable entry is left for `sanity_check` to report, and recovery rebuilds it.
        index.last_offset = match index.last_entry() {
            Ok(e) => e.map(|e| e.last_offset),
            Err(LogError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(index)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn corrupt(&self, position: u64, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    fn last_entry(&self) -> Result<Option<AbortedTxn>, LogError> {
        if self.len == 0 {
            return Ok(None);
        }
        let Some(file) = open_read(&self.path)? else {
            return Ok(None);
        };
        let pos = self.len - ENTRY_SIZE as u64;
        let mut b = [0u8; ENTRY_SIZE];
        let n = read_fully_at(&file, &mut b, pos).at(&self.path)?;
        AbortedTxn::decode(&b[..n])
            .map(Some)
            .map_err(|r| self.corrupt(pos, r))
    }

    /// Kafka's `sanityCheck` on a trusted segment starting at `base`: whole entries only, each
    /// readable and not ending before the segment.
    pub(crate) fn sanity_check(&self, base: i64) -> Result<(), String> {
        let file_len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if !file_len.is_multiple_of(ENTRY_SIZE as u64) {
            return Err(format!(
                "{}: {file_len} bytes is not a whole number of {ENTRY_SIZE}-byte entries",
                self.path.display()
            ));
        }
        let mut problem = None;
        self.walk(|pos, e| {
            if e.last_offset < base {
                problem = Some(format!(
                    "{}: entry at byte {pos} ends at offset {} before the segment base {base}",
                    self.path.display(),
                    e.last_offset
                ));
                return false;
            }
            true
        })
        .map_err(|e| e.to_string())?;
        problem.map_or(Ok(()), Err)
    }

    /// Calls `f(position, entry)` for each entry in order until it returns false.
    fn walk(&self, mut f: impl FnMut(u64, AbortedTxn) -> bool) -> Result<(), LogError> {
        if self.len == 0 {
            return Ok(());
        }
        let Some(file) = open_read(&self.path)? else {
            return Ok(());
        };
        let mut buf = vec![0u8; ENTRY_SIZE * CHUNK_ENTRIES];
        let mut pos = 0u64;
        while pos < self.len {
            let want = usize::try_from(self.len - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = read_fully_at(&file, &mut buf[..want], pos).at(&self.path)?;
            if n < want {
                return Err(self.corrupt(pos + n as u64, "file shorter than recorded".into()));
            }
            for (i, chunk) in buf[..n].chunks_exact(ENTRY_SIZE).enumerate() {
                let at = pos + (i * ENTRY_SIZE) as u64;
                let entry = AbortedTxn::decode(chunk).map_err(|r| self.corrupt(at, r))?;
                if !f(at, entry) {
                    return Ok(());
                }
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Every entry (tests and recovery checks).
    pub(crate) fn all(&self) -> Result<Vec<AbortedTxn>, LogError> {
        let mut out = Vec::new();
        self.walk(|_, e| {
            out.push(e);
            true
        })?;
        Ok(out)
    }

    /// Appends an entry; its last offset must be above the previous one's.
    pub(crate) fn append(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        if self
            .last_offset
            .is_some_and(|last| entry.last_offset <= last)
        {
            return Err(self.corrupt(
                self.len,
                format!(
                    "aborted transaction ending at {} is not after the last one ({})",
                    entry.last_offset,
                    self.last_offset.unwrap_or(-1)
                ),
            ));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .at(&self.path)?;
        // A torn entry from a crash is overwritten, not appended after.
        file.set_len(self.len).at(&self.path)?;
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(self.len)).at(&self.path)?;
        file.write_all(&entry.encode()).at(&self.path)?;
        self.len += ENTRY_SIZE as u64;
        self.last_offset = Some(entry.last_offset);
        Ok(())
    }

    /// Kafka's `collectAbortedTxns`: entries whose transaction overlaps
    /// `[fetch_offset, upper_bound)`, stopping at the first whose LSO reaches `upper_bound`.
    pub(crate) fn collect(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Result<Collected, LogError> {
        let mut out = Collected::default();
        self.walk(|_, e| {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.aborted.push(e);
            }
            if e.last_stable_offset >= upper_bound {
                out.complete = true;
                return false;
            }
            true
        })?;
        Ok(out)
    }

    /// Drops every entry whose ABORT marker is at or after `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let mut keep = self.len;
        let mut last = None;
        self.walk(|pos, e| {
            if e.last_offset >= offset {
                keep = pos;
                return false;
            }
            last = Some(e.last_offset);
            true
        })?;
        if keep == self.len {
            return Ok(());
        }
        self.set_len(keep)?;
        self.last_offset = last;
        Ok(())
    }

    /// Empties the index (its segment is being rebuilt from the log).
    pub(crate) fn reset(&mut self) -> Result<(), LogError> {
        self.set_len(0)?;
        self.last_offset = None;
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), LogError> {
        match OpenOptions::new().write(true).open(&self.path) {
            Ok(f) => f.set_len(len).at(&self.path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(&self.path, e)),
        }
        self.len = len;
        Ok(())
    }

    /// Renames the file if it exists; returns the new path when it did.
    pub(crate) fn rename(&mut self, new_path: &Path) -> Result<Option<PathBuf>, LogError> {
        let moved = match std::fs::rename(&self.path, new_path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(LogError::io(&self.path, e)),
        };
        self.path = new_path.to_path_buf();
        Ok(moved.then(|| new_path.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    /// The layout of `kafka.log.AbortedTxn`: version 0 in two bytes, then four longs.
    #[test]
    fn entry_bytes_match_kafka() {
        let b = txn(0x0102, 5, 9, 10).encode();
        let expected: [u8; ENTRY_SIZE] = [
            0, 0, // version
            0, 0, 0, 0, 0, 0, 1, 2, // producer id
            0, 0, 0, 0, 0, 0, 0, 5, // first offset
            0, 0, 0, 0, 0, 0, 0, 9, // last offset
            0, 0, 0, 0, 0, 0, 0, 10, // last stable offset
        ];
        assert_eq!(b, expected);
        assert_eq!(AbortedTxn::decode(&b), Ok(txn(0x0102, 5, 9, 10)));
        let mut v1 = b;
        v1[0] = 1;
        assert!(
            AbortedTxn::decode(&v1).is_err(),
            "2.8 refuses a version byte other than 0"
        );
    }

    #[test]
    fn append_collect_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::open(path.clone()).unwrap();
        assert!(idx.is_empty() && !path.exists(), "created lazily");
        assert!(idx.collect(0, 100).unwrap().aborted.is_empty());
        idx.append(txn(1, 0, 10, 11)).unwrap();
        idx.append(txn(2, 5, 20, 30)).unwrap();
        idx.append(txn(3, 30, 40, 41)).unwrap();
        assert!(
            idx.append(txn(4, 1, 40, 41)).is_err(),
            "last offsets increase"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            3 * ENTRY_SIZE as u64
        );

        // Overlap with [12, 25): the second only; its LSO (30) ≥ 25 ends the walk.
        let c = idx.collect(12, 25).unwrap();
        assert_eq!(c.aborted, vec![txn(2, 5, 20, 30)]);
        assert!(c.complete);
        // [0, 100): all three, and no LSO reaches 100: later segments may add more.
        let c = idx.collect(0, 100).unwrap();
        assert_eq!(c.aborted.len(), 3);
        assert!(!c.complete);

        let reopened = TxnIndex::open(path.clone()).unwrap();
        assert_eq!(reopened.all().unwrap(), idx.all().unwrap());
        assert!(reopened.sanity_check(0).is_ok());
        assert!(
            reopened.sanity_check(15).is_err(),
            "an entry ends before the base"
        );

        idx.truncate_to(20).unwrap();
        assert_eq!(idx.all().unwrap(), vec![txn(1, 0, 10, 11)]);
        idx.append(txn(5, 12, 15, 16)).unwrap();
        assert_eq!(idx.all().unwrap().len(), 2);
        idx.reset().unwrap();
        assert!(idx.all().unwrap().is_empty());
    }

    #[test]
    fn a_torn_entry_is_reported_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::open(path.clone()).unwrap();
        idx.append(txn(1, 0, 10, 11)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 7]).unwrap();
        let mut reopened = TxnIndex::open(path.clone()).unwrap();
        assert!(reopened.sanity_check(0).is_err());
        assert_eq!(reopened.all().unwrap().len(), 1);
        reopened.append(txn(2, 11, 12, 13)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * ENTRY_SIZE as u64
        );
        assert!(TxnIndex::open(path).unwrap().sanity_check(0).is_ok());
    }
}
