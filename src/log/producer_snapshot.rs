//! Kafka's producer-state snapshot files, `<20-digit offset>.snapshot` in a partition directory
//! (`ProducerStateManager.writeSnapshot` / `readSnapshot`, format version 1).
//!
//! Layout, big-endian: version i16 (= 1), crc u32 (CRC-32C of every byte after it, from the
//! entry count to the end), entry count i32, then 46 bytes per producer: producer_id i64,
//! epoch i16, last_sequence i32, last_offset i64, offset_delta i32, timestamp i64,
//! coordinator_epoch i32, current_txn_first_offset i64. The offset in the name is where the
//! state ends (exclusive). Kafka writes the file in place and forces it, without a rename: a
//! torn file fails its CRC and is deleted at load, which falls back to the next older one.

use super::error::{IoContext, LogError};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const VERSION: i16 = 1;
const CRC_OFFSET: usize = 2;
const ENTRIES_OFFSET: usize = 6;
const ENTRY_LEN: usize = 46;

/// One producer's line in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// −1 when no batch is cached.
    pub last_sequence: i32,
    /// −1 when no batch is cached.
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
    pub coordinator_epoch: i32,
    /// −1 when no transaction is open.
    pub current_txn_first_offset: i64,
}

/// Why a snapshot file cannot be used (Kafka's `CorruptSnapshotException`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct CorruptSnapshot(pub String);

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// The offset a snapshot file name carries, if `name` is one.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

pub(crate) fn encode(entries: &[SnapshotEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRIES_OFFSET + 4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_sequence.to_be_bytes());
        out.extend_from_slice(&e.last_offset.to_be_bytes());
        out.extend_from_slice(&e.offset_delta.to_be_bytes());
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[ENTRIES_OFFSET..]);
    out[CRC_OFFSET..ENTRIES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    out
}

fn be<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

pub(crate) fn decode(buf: &[u8]) -> Result<Vec<SnapshotEntry>, CorruptSnapshot> {
    if buf.len() < ENTRIES_OFFSET + 4 {
        return Err(CorruptSnapshot(format!(
            "snapshot of {} bytes is shorter than its 10-byte header",
            buf.len()
        )));
    }
    let version = i16::from_be_bytes(be(buf, 0));
    if version != VERSION {
        return Err(CorruptSnapshot(format!(
            "Snapshot contained an unknown file version {version}"
        )));
    }
    let stored = u32::from_be_bytes(be(buf, CRC_OFFSET));
    let computed = crc32c::crc32c(&buf[ENTRIES_OFFSET..]);
    if stored != computed {
        return Err(CorruptSnapshot(format!(
            "Snapshot is corrupt (CRC is no longer valid). Stored crc: {stored}. Computed crc: {computed}"
        )));
    }
    let count = i32::from_be_bytes(be(buf, ENTRIES_OFFSET));
    let body = &buf[ENTRIES_OFFSET + 4..];
    let expected = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(ENTRY_LEN));
    if expected != Some(body.len()) {
        return Err(CorruptSnapshot(format!(
            "Snapshot failed schema validation: {count} entries need {} bytes, {} present",
            expected.map_or_else(|| "a valid number of".to_string(), |n| n.to_string()),
            body.len()
        )));
    }
    Ok(body
        .chunks_exact(ENTRY_LEN)
        .map(|c| SnapshotEntry {
            producer_id: i64::from_be_bytes(be(c, 0)),
            epoch: i16::from_be_bytes(be(c, 8)),
            last_sequence: i32::from_be_bytes(be(c, 10)),
            last_offset: i64::from_be_bytes(be(c, 14)),
            offset_delta: i32::from_be_bytes(be(c, 22)),
            timestamp: i64::from_be_bytes(be(c, 26)),
            coordinator_epoch: i32::from_be_bytes(be(c, 34)),
            current_txn_first_offset: i64::from_be_bytes(be(c, 38)),
        })
        .collect())
}

#[cfg(test)]
thread_local! {
    /// A snapshot path whose write fails on this thread as if the process had no descriptor
    /// left (tests of the recovery from a failed rebuild; EMFILE leaves the directory online).
    pub(crate) static FAIL_WRITE: std::cell::RefCell<Option<std::path::PathBuf>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes the snapshot for `offset` and forces it to disk.
pub(crate) fn write(dir: &Path, offset: i64, entries: &[SnapshotEntry]) -> Result<(), LogError> {
    let path = snapshot_path(dir, offset);
    #[cfg(test)]
    if FAIL_WRITE.with(|f| f.borrow().as_deref() == Some(path.as_path())) {
        return Err(LogError::io(
            &path,
            std::io::Error::from_raw_os_error(libc::EMFILE),
        ));
    }
    let bytes = encode(entries);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .at(&path)?;
    file.write_all(&bytes).at(&path)?;
    file.sync_all().at(&path)
}

/// Reads one snapshot file: `Ok(Err)` when it is corrupt (the caller deletes it), `Err` when
/// it could not be read at all.
pub(crate) fn read(
    dir: &Path,
    offset: i64,
) -> Result<Result<Vec<SnapshotEntry>, CorruptSnapshot>, LogError> {
    let path = snapshot_path(dir, offset);
    let bytes = std::fs::read(&path).at(&path)?;
    Ok(decode(&bytes))
}

/// The offsets of the snapshot files in `dir`.
pub(crate) fn list(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_snapshot_name) {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Deletes the snapshot for `offset`; a file already gone is fine.
pub(crate) fn delete(dir: &Path, offset: i64) -> Result<(), LogError> {
    let path = snapshot_path(dir, offset);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(&path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> SnapshotEntry {
        SnapshotEntry {
            producer_id: 1000,
            epoch: 3,
            last_sequence: 41,
            last_offset: 77,
            offset_delta: 9,
            timestamp: 1_600_000_000_000,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }

    /// The bytes Kafka 2.8's `writeSnapshot` produces for one producer, written out from its
    /// schema by hand: version, CRC-32C over the rest, count, then the 46-byte entry.
    #[test]
    fn one_entry_matches_kafkas_bytes() {
        let mut want: Vec<u8> = vec![0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x01];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x03, 0xE8]); // producer_id 1000
        want.extend_from_slice(&[0x00, 0x03]); // epoch 3
        want.extend_from_slice(&[0x00, 0x00, 0x00, 0x29]); // last_sequence 41
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x00, 0x4D]); // last_offset 77
        want.extend_from_slice(&[0x00, 0x00, 0x00, 0x09]); // offset_delta 9
        want.extend_from_slice(&1_600_000_000_000i64.to_be_bytes()); // timestamp
        want.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // coordinator_epoch -1
        want.extend_from_slice(&[0xFF; 8]); // current_txn_first_offset -1
        let crc = crc32c::crc32c(&want[6..]);
        want[2..6].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(encode(&[entry()]), want);
        assert_eq!(want.len(), 10 + 46);
        assert_eq!(decode(&want), Ok(vec![entry()]));
    }

    #[test]
    fn empty_snapshot_is_ten_bytes() {
        let bytes = encode(&[]);
        let crc = crc32c::crc32c(&[0, 0, 0, 0]);
        let mut want = vec![0, 1];
        want.extend_from_slice(&crc.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes), Ok(vec![]));
    }

    #[test]
    fn corrupt_files_are_named_as_such() {
        let good = encode(&[entry(), entry()]);
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).unwrap_err().0.contains("CRC"));
        let mut version = good.clone();
        version[1] = 2;
        assert!(decode(&version).unwrap_err().0.contains("version 2"));
        // A torn write: the CRC covers the shorter body only if it was recomputed, so the
        // count check is what catches a body whose CRC happens to hold.
        let mut short = good[..good.len() - 46].to_vec();
        let crc = crc32c::crc32c(&short[6..]);
        short[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&short).unwrap_err().0.contains("2 entries"));
        assert!(decode(&good[..5]).is_err());
        let mut negative = encode(&[]);
        negative[6..10].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&negative[6..]);
        negative[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&negative).is_err());
    }

    #[test]
    fn names_are_twenty_digits() {
        assert_eq!(
            snapshot_path(Path::new("/d"), 42),
            Path::new("/d/00000000000000000042.snapshot")
        );
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot"),
            Some(42)
        );
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
        assert_eq!(parse_snapshot_name("00000000000000000042.log"), None);
    }
}
