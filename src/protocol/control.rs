//! Control batches: the transaction markers (Kafka's `EndTransactionMarker` and
//! `ControlRecordType`) that a transaction coordinator has partition leaders write to end a
//! producer's transaction.
//!
//! A marker is a RecordBatch v2 with the transactional and control attribute bits set, the
//! producer's id and epoch, base sequence -1, and one uncompressed record whose key is
//! `version i16 = 0, type i16` (ABORT 0, COMMIT 1) and whose value is
//! `version i16 = 0, coordinator_epoch i32`. Readers accept higher versions and read them as
//! version 0, as Kafka does, but need the 4 key bytes and 6 value bytes.

use bytes::BytesMut;

use super::batch::{get_varlong, BatchHeader, HEADER_LEN};
use super::batch_builder::{encode_batch, put_record, put_varint, BatchFields};

/// Attributes of a marker batch: transactional (bit 4) and control (bit 5), no codec,
/// CreateTime.
pub const MARKER_ATTRIBUTES: i16 = 0x30;
const CONTROL_KEY_SIZE: usize = 4;
const END_TXN_VALUE_SIZE: usize = 6;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// The content of one transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// Why a control batch does not hold a readable marker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control batch is compressed (attributes {0:#x})")]
    Compressed(i16),
    #[error("control record is malformed: {0}")]
    Malformed(&'static str),
    #[error("control record key has negative version {0}")]
    NegativeVersion(i16),
    #[error("control record type {0} is not an end-transaction marker")]
    NotAMarker(i16),
}

/// Encodes a marker batch at offset 0 (the leader assigns its offset), stamped `timestamp`.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp: i64,
) -> BytesMut {
    let mut tail = Vec::with_capacity(16);
    put_varint(&mut tail, CONTROL_KEY_SIZE as i32);
    tail.extend_from_slice(&0i16.to_be_bytes());
    tail.extend_from_slice(&marker.control.id().to_be_bytes());
    put_varint(&mut tail, END_TXN_VALUE_SIZE as i32);
    tail.extend_from_slice(&0i16.to_be_bytes());
    tail.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    put_varint(&mut tail, 0); // no headers
    let mut body = Vec::with_capacity(24);
    put_record(&mut body, 0, 0, &tail);
    encode_batch(
        &BatchFields {
            base_offset: 0,
            attributes: MARKER_ATTRIBUTES,
            last_offset_delta: 0,
            base_timestamp: timestamp,
            max_timestamp: timestamp,
            producer_id,
            producer_epoch,
            base_sequence: -1,
            record_count: 1,
        },
        &body,
    )
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: i64) -> Result<&'a [u8], ControlError> {
    let len = usize::try_from(len).map_err(|_| ControlError::Malformed("null key or value"))?;
    let end = pos
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or(ControlError::Malformed("field runs past the batch"))?;
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the marker of a control batch from its first bytes (`prefix` holds at least the
/// header and the first record; the rest may be cut). `Ok(None)` for a control batch without
/// records, which compaction leaves behind once a transaction is cleaned away.
///
/// # Errors
/// A compressed, malformed or non-marker control record.
pub fn parse_marker(
    header: &BatchHeader,
    prefix: &[u8],
) -> Result<Option<EndTxnMarker>, ControlError> {
    if header.record_count <= 0 {
        return Ok(None);
    }
    if header.attributes & 0x07 != 0 {
        return Err(ControlError::Compressed(header.attributes));
    }
    let bad = |what| ControlError::Malformed(what);
    let mut pos = HEADER_LEN;
    let _record_len = get_varlong(prefix, &mut pos).ok_or(bad("record length"))?;
    pos += 1; // record attributes
    get_varlong(prefix, &mut pos).ok_or(bad("timestamp delta"))?;
    get_varlong(prefix, &mut pos).ok_or(bad("offset delta"))?;
    let key_len = get_varlong(prefix, &mut pos).ok_or(bad("key length"))?;
    let key = take(prefix, &mut pos, key_len)?;
    if key.len() < CONTROL_KEY_SIZE {
        return Err(bad("key shorter than 4 bytes"));
    }
    let version = i16_at(key, 0);
    if version < 0 {
        return Err(ControlError::NegativeVersion(version));
    }
    let control = match i16_at(key, 2) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        other => return Err(ControlError::NotAMarker(other)),
    };
    let value_len = get_varlong(prefix, &mut pos).ok_or(bad("value length"))?;
    let value = take(prefix, &mut pos, value_len)?;
    if value.len() < END_TXN_VALUE_SIZE {
        return Err(bad("end-transaction value shorter than 6 bytes"));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(Some(EndTxnMarker {
        control,
        coordinator_epoch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::validate_single_batch;

    /// The bytes Kafka's `MemoryRecords.withEndTransactionMarker` writes for producer 7,
    /// epoch 3, COMMIT from coordinator epoch 5 at timestamp 1000, as laid out in the
    /// protocol reference (header fields big-endian, the record in zig-zag varints).
    #[test]
    fn commit_marker_bytes_match_kafka() {
        let b = encode_marker(
            7,
            3,
            EndTxnMarker {
                control: ControlType::Commit,
                coordinator_epoch: 5,
            },
            1000,
        );
        let record: [u8; 17] = [
            32, // record length 16, zig-zag
            0,  // attributes
            0,  // timestamp delta
            0,  // offset delta
            8,  // key length 4
            0, 0, 0, 1,  // key: version 0, type COMMIT
            12, // value length 6
            0, 0, 0, 0, 0, 5, // value: version 0, coordinator epoch 5
            0, // header count
        ];
        assert_eq!(&b[HEADER_LEN..], &record);
        assert_eq!(b.len(), HEADER_LEN + 17);
        assert_eq!(&b[8..12], &((HEADER_LEN + 17 - 12) as i32).to_be_bytes());
        assert_eq!(&b[21..23], &[0x00, 0x30], "transactional + control");
        assert_eq!(&b[43..51], &7i64.to_be_bytes());
        assert_eq!(&b[51..53], &3i16.to_be_bytes());
        assert_eq!(&b[53..57], &(-1i32).to_be_bytes(), "no sequence");
        assert_eq!(&b[57..61], &1i32.to_be_bytes());
        let h = validate_single_batch(&b).expect("valid CRC");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            parse_marker(&h, &b),
            Ok(Some(EndTxnMarker {
                control: ControlType::Commit,
                coordinator_epoch: 5
            }))
        );
    }

    #[test]
    fn abort_marker_round_trips_and_bad_ones_are_refused() {
        let marker = EndTxnMarker {
            control: ControlType::Abort,
            coordinator_epoch: i32::MAX,
        };
        let b = encode_marker(1, 0, marker, 0);
        let h = validate_single_batch(&b).expect("valid");
        assert_eq!(parse_marker(&h, &b), Ok(Some(marker)));
        // Unknown control type.
        let mut other = b.clone();
        other[HEADER_LEN + 8] = 9;
        assert_eq!(parse_marker(&h, &other), Err(ControlError::NotAMarker(9)));
        // Negative key version.
        let mut neg = b.clone();
        neg[HEADER_LEN + 5] = 0xff;
        assert!(matches!(
            parse_marker(&h, &neg),
            Err(ControlError::NegativeVersion(_))
        ));
        // Cut inside the value.
        assert!(matches!(
            parse_marker(&h, &b[..HEADER_LEN + 12]),
            Err(ControlError::Malformed(_))
        ));
        // No records: nothing to read, not an error.
        let empty = BatchHeader {
            record_count: 0,
            ..h
        };
        assert_eq!(parse_marker(&empty, &b[..HEADER_LEN]), Ok(None));
        // A higher version is read as version 0.
        let mut v1 = b.clone();
        v1[HEADER_LEN + 6] = 1;
        assert_eq!(parse_marker(&h, &v1), Ok(Some(marker)));
    }
}
