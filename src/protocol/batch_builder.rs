//! Encoding RecordBatch v2: the records' varint layout and the 61-byte header with its CRC.
//!
//! The broker writes batches of its own in two places only: the group coordinator's
//! `__consumer_offsets` records, and the leader's rebuild of a client batch that Kafka's
//! `LogValidator` rules say cannot be stored as sent (another codec, renumbered offsets).
//! Both go through [`encode_batch`], so the header layout exists once.

use bytes::{BufMut, BytesMut};

use super::batch::{BatchHeader, CRC_OFFSET, CRC_START, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

pub(crate) fn put_unsigned_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zig-zag varint (protobuf `sint32`), as Kafka's `ByteUtils.writeVarint`.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned_varint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Zig-zag varlong (protobuf `sint64`), as Kafka's `ByteUtils.writeVarlong`.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_nullable_bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            put_varint(out, i32::try_from(bytes.len()).unwrap_or(i32::MAX));
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// The header fields of a batch to encode; the length, CRC, magic and leader epoch (-1, set
/// by the leader on append) are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFields {
    pub base_offset: i64,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchFields {
    /// The fields of a parsed header, to re-encode a batch with some of them changed.
    pub fn of(h: &BatchHeader) -> BatchFields {
        BatchFields {
            base_offset: h.base_offset,
            attributes: h.attributes,
            last_offset_delta: h.last_offset_delta,
            base_timestamp: h.base_timestamp,
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            record_count: h.record_count,
        }
    }
}

/// One batch: `fields` as the header, `payload` (the records, compressed or not as the
/// attributes say) after it, the CRC computed over both.
pub fn encode_batch(fields: &BatchFields, payload: &[u8]) -> BytesMut {
    let total = HEADER_LEN + payload.len();
    let mut buf = BytesMut::with_capacity(total);
    buf.put_i64(fields.base_offset);
    buf.put_i32(i32::try_from(total - LOG_OVERHEAD).unwrap_or(i32::MAX));
    buf.put_i32(-1);
    buf.put_i8(MAGIC_V2);
    buf.put_u32(0);
    buf.put_i16(fields.attributes);
    buf.put_i32(fields.last_offset_delta);
    buf.put_i64(fields.base_timestamp);
    buf.put_i64(fields.max_timestamp);
    buf.put_i64(fields.producer_id);
    buf.put_i16(fields.producer_epoch);
    buf.put_i32(fields.base_sequence);
    buf.put_i32(fields.record_count);
    buf.put_slice(payload);
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// Appends one record to `out`: its length varint, then attributes 0, the two deltas and
/// `tail` (key, value and headers, already encoded).
pub(crate) fn put_record(out: &mut Vec<u8>, timestamp_delta: i64, offset_delta: i32, tail: &[u8]) {
    let mut head = Vec::with_capacity(16);
    head.push(0); // record attributes, unused in v2
    put_varlong(&mut head, timestamp_delta);
    put_varint(&mut head, offset_delta);
    let len = head.len() + tail.len();
    put_varint(out, i32::try_from(len).unwrap_or(i32::MAX));
    out.extend_from_slice(&head);
    out.extend_from_slice(tail);
}

/// A record's optional key and value, as taken by [`build_batch`].
pub type RecordKv<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes an uncompressed v2 batch of `(key, value)` records, all stamped with
/// `base_timestamp` (CreateTime), no headers, no producer id: how the group coordinator writes
/// `__consumer_offsets`, and what tests use to produce.
pub fn build_batch(base_offset: i64, base_timestamp: i64, records: &[RecordKv<'_>]) -> BytesMut {
    let mut body = Vec::new();
    let mut tail = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        tail.clear();
        put_nullable_bytes(&mut tail, *key);
        put_nullable_bytes(&mut tail, *value);
        put_varint(&mut tail, 0); // header count
        put_record(&mut body, 0, i32::try_from(i).unwrap_or(i32::MAX), &tail);
    }
    let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
    encode_batch(
        &BatchFields {
            base_offset,
            attributes: 0,
            last_offset_delta: (count - 1).max(0),
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        },
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::validate_single_batch;

    #[test]
    fn record_encoding_matches_kafka_layout() {
        let b = build_batch(0, 5, &[(Some(b"a".as_slice()), Some(b"bc".as_slice()))]);
        // length=9 (zigzag 18), attrs 0, tsDelta 0, offDelta 0, keyLen 1 (2), 'a', valLen 2 (4), "bc", headers 0
        assert_eq!(&b[HEADER_LEN..], &[18, 0, 0, 0, 2, b'a', 4, b'b', b'c', 0]);
    }

    #[test]
    fn varints_match_kafka_byte_utils() {
        let enc = |v: i32| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(63), [126]);
        assert_eq!(enc(-64), [127]);
        assert_eq!(enc(64), [0x80, 1]);
        assert_eq!(enc(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut o = Vec::new();
        put_varlong(&mut o, i64::MIN);
        assert_eq!(
            o,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn encoded_fields_read_back() {
        let fields = BatchFields {
            base_offset: 0,
            attributes: 0x12,
            last_offset_delta: 0,
            base_timestamp: 10,
            max_timestamp: 20,
            producer_id: 5,
            producer_epoch: 2,
            base_sequence: 9,
            record_count: 1,
        };
        let mut body = Vec::new();
        put_record(&mut body, 10, 0, &[1, 1, 0]);
        let b = encode_batch(&fields, &body);
        let h = validate_single_batch(&b).unwrap();
        assert_eq!(h.attributes, 0x12);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (5, 2, 9)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (10, 20));
    }
}
