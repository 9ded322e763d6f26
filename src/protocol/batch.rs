//! Zero-copy view of Kafka's RecordBatch v2 (magic 2) framing.
//!
//! The broker never decodes individual records on the hot path: produce, fetch, replication
//! and recovery only need the fixed 61-byte header, the CRC and the batch boundaries. Every
//! function here treats its input as untrusted (it may come from a socket or a damaged disk)
//! and reports problems as [`BatchError`] instead of panicking.

use std::ops::Range;

pub use super::batch_builder::{build_batch, RecordKv};

/// Size of the fixed RecordBatch v2 header; records start right after it.
pub const HEADER_LEN: usize = 61;
/// BaseOffset (8) + BatchLength (4): the part of a batch not counted by BatchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal BatchLength: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only message format this broker stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_OFFSET: usize = 0;
const LENGTH_OFFSET: usize = 8;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
/// The CRC covers everything from the attributes to the end, so offsets and epochs can be
/// rewritten by the leader without recomputing it.
pub(crate) const CRC_START: usize = 21;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORD_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_MASK: i16 = 0x10;
const CONTROL_MASK: i16 = 0x20;

/// Why a buffer is not a valid RecordBatch v2 (or sequence of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("buffer of {len} bytes is shorter than the {HEADER_LEN}-byte RecordBatch v2 header")]
    TooShort { len: usize },
    #[error("truncated batch: needs {needed} bytes but only {available} are present")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported magic byte {0} (only RecordBatch v2 is accepted)")]
    BadMagic(i8),
    #[error("batch length {0} is negative or below the {MIN_BATCH_LENGTH}-byte minimum")]
    BadLength(i32),
    #[error("batch declares {batch_size} bytes but the buffer holds {buffer_len} (exactly one batch expected)")]
    LengthMismatch {
        batch_size: usize,
        buffer_len: usize,
    },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {0} is negative")]
    NegativeRecordCount(i32),
    #[error("last offset delta {0} is negative")]
    NegativeLastOffsetDelta(i32),
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
}

/// Compression codec named by attribute bits 0–2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionCodec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Ids 5–7 are reserved; kept distinct so a caller can reject them with the value.
    Unknown(u8),
}

impl CompressionCodec {
    /// The id in attribute bits 0–2.
    pub fn id(self) -> u8 {
        match self {
            CompressionCodec::None => 0,
            CompressionCodec::Gzip => 1,
            CompressionCodec::Snappy => 2,
            CompressionCodec::Lz4 => 3,
            CompressionCodec::Zstd => 4,
            CompressionCodec::Unknown(id) => id,
        }
    }
}

/// The decoded fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

// The callers below check `buf.len() >= HEADER_LEN` first, so these fixed-offset reads are
// in bounds; `get` keeps them panic-free even if that invariant is ever broken.
fn read_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}
fn get_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(read_array(buf, at))
}
fn get_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(read_array(buf, at))
}
fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(read_array(buf, at))
}
fn get_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(read_array(buf, at))
}
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Only the header is examined, so `buf` may be
    /// exactly [`HEADER_LEN`] bytes (recovery reads headers on their own); whether the whole
    /// batch is present is the caller's concern (see [`batches`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::TooShort { len: buf.len() });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = get_i32(buf, LENGTH_OFFSET);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(batch_length));
        }
        let header = BatchHeader {
            base_offset: get_i64(buf, BASE_OFFSET_OFFSET),
            batch_length,
            partition_leader_epoch: get_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic,
            crc: get_u32(buf, CRC_OFFSET),
            attributes: get_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: get_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: get_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: get_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: get_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: get_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: get_i32(buf, BASE_SEQUENCE_OFFSET),
            record_count: get_i32(buf, RECORD_COUNT_OFFSET),
        };
        if header.record_count < 0 {
            return Err(BatchError::NegativeRecordCount(header.record_count));
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::NegativeLastOffsetDelta(
                header.last_offset_delta,
            ));
        }
        Ok(header)
    }

    /// Bytes the whole batch occupies on disk and on the wire.
    pub fn total_size(&self) -> usize {
        // parse() guarantees batch_length >= MIN_BATCH_LENGTH > 0.
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// Offset of the last record. Saturates because base offsets read from disk are untrusted.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset following this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression_codec(&self) -> CompressionCodec {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => CompressionCodec::None,
            1 => CompressionCodec::Gzip,
            2 => CompressionCodec::Snappy,
            3 => CompressionCodec::Lz4,
            4 => CompressionCodec::Zstd,
            other => CompressionCodec::Unknown(other),
        }
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }
}

/// CRC-32C of the covered part of a batch whose total size is already known.
fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or(&[]))
}

/// Parses the header and returns it together with the batch's byte length, checking that the
/// whole batch is inside `buf`.
fn parse_complete(buf: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size = header.total_size();
    if size > buf.len() {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    Ok((header, size))
}

/// Verifies the CRC-32C of the batch at the start of `buf` over bytes `[21, end_of_batch)`.
pub fn verify_crc(buf: &[u8]) -> Result<(), BatchError> {
    let (header, size) = parse_complete(buf)?;
    let computed = compute_crc(&buf[..size]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Produce-path framing: `buf` must be exactly one well-formed v2 batch with a valid CRC and a
/// known codec. What the records hold, and the client rules on the header (record count,
/// control bit, producer fields), are the log validator's.
pub fn validate_single_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size = header.total_size();
    if size != buf.len() {
        return Err(BatchError::LengthMismatch {
            batch_size: size,
            buffer_len: buf.len(),
        });
    }
    verify_crc(buf)?;
    if let CompressionCodec::Unknown(id) = header.compression_codec() {
        return Err(BatchError::UnknownCompression(id));
    }
    Ok(header)
}

/// Iterator over consecutive batches in one buffer. Yields each header with its byte range
/// and stops after the first error; a trailing partial batch is reported as
/// [`BatchError::Truncated`] / [`BatchError::TooShort`] so the caller can decide whether that
/// is corruption (recovery) or a normal fetch cut-off (follower).
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    verify_crc: bool,
    done: bool,
}

/// Iterates over the batches in `buf`, verifying each CRC.
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        verify_crc: true,
        done: false,
    }
}

/// Like [`batches`] but only checks framing, not CRCs: for data already validated once (the
/// read path trimming a file slice to whole batches).
pub fn batch_headers(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        verify_crc: false,
        done: false,
    }
}

impl BatchIter<'_> {
    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = parse_complete(rest).and_then(|(header, size)| {
            if self.verify_crc {
                let computed = compute_crc(&rest[..size]);
                if computed != header.crc {
                    return Err(BatchError::CrcMismatch {
                        stored: header.crc,
                        computed,
                    });
                }
            }
            Ok((header, size))
        });
        match result {
            Ok((header, size)) => {
                let range = self.pos..self.pos + size;
                self.pos += size;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn require_header(buf: &[u8]) -> Result<(), BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::TooShort { len: buf.len() });
    }
    Ok(())
}

/// Rewrites BaseOffset in place; not covered by the CRC.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    require_header(buf)?;
    put(buf, BASE_OFFSET_OFFSET, &base_offset.to_be_bytes());
    Ok(())
}

/// Rewrites PartitionLeaderEpoch in place; not covered by the CRC.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    require_header(buf)?;
    put(buf, PARTITION_LEADER_EPOCH_OFFSET, &epoch.to_be_bytes());
    Ok(())
}

/// Marks the batch as LogAppendTime with `ts_ms` as MaxTimestamp, then recomputes the CRC
/// because both fields are covered by it. The batch must be complete in `buf`.
pub fn set_log_append_time(buf: &mut [u8], ts_ms: i64) -> Result<(), BatchError> {
    let (header, size) = parse_complete(buf)?;
    if header.is_log_append_time() && header.max_timestamp == ts_ms {
        return Ok(());
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_MASK;
    put(buf, ATTRIBUTES_OFFSET, &attributes.to_be_bytes());
    put(buf, MAX_TIMESTAMP_OFFSET, &ts_ms.to_be_bytes());
    let crc = compute_crc(&buf[..size]);
    put(buf, CRC_OFFSET, &crc.to_be_bytes());
    Ok(())
}

/// [`set_log_append_time`] for a batch held as its 61-byte header plus the rest elsewhere, so the
/// leader can stamp a batch without copying its records: the CRC is computed over both parts.
pub fn set_log_append_time_split(
    head: &mut [u8],
    rest: &[u8],
    ts_ms: i64,
) -> Result<(), BatchError> {
    set_max_timestamp_split(head, rest, true, ts_ms)
}

/// Sets MaxTimestamp (and the LogAppendTime bit when `log_append_time`) in a header held apart
/// from the rest of its batch, recomputing the CRC over both parts; nothing changes, and no
/// CRC is computed, when both already hold those values (Kafka's `setMaxTimestamp`).
pub fn set_max_timestamp_split(
    head: &mut [u8],
    rest: &[u8],
    log_append_time: bool,
    ts_ms: i64,
) -> Result<(), BatchError> {
    require_header(head)?;
    let old = get_i16(head, ATTRIBUTES_OFFSET);
    let attributes = if log_append_time {
        old | TIMESTAMP_TYPE_MASK
    } else {
        old & !TIMESTAMP_TYPE_MASK
    };
    if attributes == old && get_i64(head, MAX_TIMESTAMP_OFFSET) == ts_ms {
        return Ok(());
    }
    put(head, ATTRIBUTES_OFFSET, &attributes.to_be_bytes());
    put(head, MAX_TIMESTAMP_OFFSET, &ts_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..HEADER_LEN]), rest);
    put(head, CRC_OFFSET, &crc.to_be_bytes());
    Ok(())
}

/// Reads a zig-zag varint (protobuf `sint64`) at `*pos`, advancing it; `None` if malformed.
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Reads a varint-length-prefixed nullable byte field (-1 = null) inside `end`.
fn get_nullable_bytes<'a>(buf: &'a [u8], pos: &mut usize, end: usize) -> Option<Option<&'a [u8]>> {
    let len = get_varlong(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let start = *pos;
    let stop = start
        .checked_add(usize::try_from(len).ok()?)
        .filter(|s| *s <= end)?;
    *pos = stop;
    Some(Some(&buf[start..stop]))
}

/// Every record of an uncompressed batch: offset, timestamp, key and value. Used off the hot
/// path only (ListOffsets by time, loading `__consumer_offsets`). `None` if the batch is
/// compressed or malformed.
pub fn uncompressed_records(batch: &[u8]) -> Option<Vec<RecordView<'_>>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression_codec() != CompressionCodec::None {
        return None;
    }
    let end = header.total_size().min(batch.len());
    let mut pos = HEADER_LEN;
    let mut out = Vec::with_capacity(header.record_count.clamp(0, 4096) as usize);
    for _ in 0..header.record_count {
        let len = usize::try_from(get_varlong(batch, &mut pos)?).ok()?;
        let start = pos;
        let next = start.checked_add(len).filter(|n| *n <= end)?;
        pos += 1; // attributes
        let ts_delta = get_varlong(batch, &mut pos)?;
        let offset_delta = get_varlong(batch, &mut pos)?;
        let key = get_nullable_bytes(batch, &mut pos, next)?;
        let value = get_nullable_bytes(batch, &mut pos, next)?;
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.checked_add(ts_delta)?
        };
        out.push(RecordView {
            offset: header.base_offset.checked_add(offset_delta)?,
            timestamp,
            key,
            value,
        });
        pos = next;
    }
    Some(out)
}

/// `(offset, timestamp)` of every record of an uncompressed batch, for ListOffsets by time
/// (never used on the produce or fetch path). `None` if the batch is compressed or malformed.
pub fn record_offsets_and_timestamps(batch: &[u8]) -> Option<Vec<(i64, i64)>> {
    uncompressed_records(batch).map(|rs| rs.iter().map(|r| (r.offset, r.timestamp)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn sample() -> BytesMut {
        build_batch(
            100,
            1_000,
            &[
                (Some(b"k1".as_slice()), Some(b"v1".as_slice())),
                (None, Some(b"value-2".as_slice())),
                (Some(b"k3".as_slice()), None),
            ],
        )
    }

    #[test]
    fn uncompressed_records_reads_keys_and_values() {
        let b = sample();
        let rs = uncompressed_records(&b).unwrap();
        assert_eq!(rs.len(), 3);
        assert_eq!(rs[0].offset, 100);
        assert_eq!(rs[0].key, Some(b"k1".as_slice()));
        assert_eq!(rs[0].value, Some(b"v1".as_slice()));
        assert_eq!(rs[1].key, None);
        assert_eq!(rs[1].value, Some(b"value-2".as_slice()));
        assert_eq!(rs[2].offset, 102);
        assert_eq!(rs[2].value, None, "a null value (tombstone) stays null");
        assert!(rs.iter().all(|r| r.timestamp == 1_000));
        // A record whose key length runs past the batch is malformed, not a panic.
        let mut bad = sample();
        bad[HEADER_LEN + 4] = 0x7e;
        assert!(uncompressed_records(&bad).is_none());
    }

    #[test]
    fn build_and_parse_round_trip() {
        let b = sample();
        let h = validate_single_batch(&b).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.max_timestamp, 1_000);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.compression_codec(), CompressionCodec::None);
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
    }

    #[test]
    fn offsets_and_epoch_do_not_touch_crc() {
        let mut b = sample();
        set_base_offset(&mut b, 42).unwrap();
        set_partition_leader_epoch(&mut b, 7).unwrap();
        let h = validate_single_batch(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = sample();
        set_log_append_time(&mut b, 99_999).unwrap();
        let h = validate_single_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
    }

    #[test]
    fn detects_corruption() {
        let mut b = sample();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            verify_crc(&b),
            Err(BatchError::CrcMismatch { .. })
        ));

        let mut b = sample();
        b[MAGIC_OFFSET] = 1;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::BadMagic(1)));

        let mut b = sample();
        put(&mut b, LENGTH_OFFSET, &10i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::BadLength(10)));

        assert_eq!(
            BatchHeader::parse(&[0u8; 10]),
            Err(BatchError::TooShort { len: 10 })
        );
    }

    #[test]
    fn single_batch_rejects_trailing_bytes_and_second_batch() {
        let mut two = sample();
        two.extend_from_slice(&sample());
        assert!(matches!(
            validate_single_batch(&two),
            Err(BatchError::LengthMismatch { .. })
        ));
        let b = sample();
        assert!(matches!(
            validate_single_batch(&b[..b.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn iterates_many_and_reports_trailing_partial() {
        let mut buf = sample();
        buf.extend_from_slice(&build_batch(103, 2_000, &[(None, Some(b"x".as_slice()))]));
        let partial = sample();
        buf.extend_from_slice(&partial[..30]);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().0.base_offset, 100);
        assert_eq!(items[1].as_ref().unwrap().0.base_offset, 103);
        assert!(matches!(items[2], Err(BatchError::TooShort { len: 30 })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BatchHeader::parse(&data);
            let _ = verify_crc(&data);
            let _ = validate_single_batch(&data);
            for item in batches(&data) { let _ = item; }
            for item in batch_headers(&data) { let _ = item; }
            let mut copy = data.clone();
            let _ = set_base_offset(&mut copy, i64::MAX);
            let _ = set_log_append_time(&mut copy, 1);
        }

        #[test]
        fn mutated_header_never_panics(idx in 0usize..HEADER_LEN, byte in any::<u8>()) {
            let mut b = sample().to_vec();
            b[idx] = byte;
            let _ = validate_single_batch(&b);
            for item in batches(&b) { let _ = item; }
        }
    }
}

#[cfg(test)]
mod record_scan_tests {
    use super::*;

    #[test]
    fn record_offsets_and_timestamps_of_a_built_batch() {
        let b = build_batch(
            100,
            1_000,
            &[(None, Some(b"a")), (Some(b"k"), None), (None, None)],
        );
        let recs = record_offsets_and_timestamps(&b).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].0, 100);
        assert_eq!(recs[2].0, 102);
        assert!(recs.iter().all(|(_, ts)| *ts >= 1_000));
        // Truncated input is malformed, never a panic.
        for cut in 0..b.len() {
            let _ = record_offsets_and_timestamps(&b[..cut]);
        }
    }
}
