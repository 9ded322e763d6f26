//! Kafka 2.8's `LogValidator` for a batch a client appends to the leader.
//!
//! Before a byte is written, every record of the batch is walked: its length, varints, key,
//! value and headers must parse exactly, the batch must hold exactly the records its header
//! counts, and each record must pass the topic's rules (a key on a compacted topic, a timestamp
//! within `message.timestamp.difference.max.ms`, no LogAppendTime from a producer). Compressed
//! batches are walked through a streaming decompressor, so this costs a small buffer however
//! far the payload expands. Followers never come here: they store what the leader validated.
//!
//! The outcome is Kafka's as well:
//! - stored as sent when Kafka would store it in place (the usual case); only the header's
//!   max timestamp may be corrected, which the caller patches in its own header copy;
//! - rebuilt when the topic's `compression.type` names another codec, or a compressed batch's
//!   inner offsets are not 0, 1, 2, … (old clients): records re-encoded with offsets 0..n-1
//!   and compressed with the target codec;
//! - refused with nothing written: INVALID_RECORD for a broken structure, CORRUPT_MESSAGE for a
//!   payload that does not decompress, and per-record errors (Produce v8 `record_errors`)
//!   under INVALID_RECORD or INVALID_TIMESTAMP.

use std::fmt;
use std::io::{self, BufRead};

use bytes::BytesMut;

use super::config::{LogConfig, TimestampType};
use super::producer_state::Origin;
use crate::protocol::batch::{BatchHeader, CompressionCodec, HEADER_LEN};
use crate::protocol::batch_builder::{encode_batch, put_record, put_varint, BatchFields};
use crate::protocol::compression;

/// Attribute bits a rebuilt batch keeps from the original (transactional); the codec is the
/// target's and the timestamp type is set by the append.
const KEPT_ATTRIBUTES: i16 = 0x10;
/// A rebuild holds the decoded records in memory; for a compressed target they may exceed
/// `max.message.bytes` by this factor before the batch is refused (the result must still fit
/// `max.message.bytes` once compressed).
const REBUILD_EXPANSION_LIMIT: usize = 16;
/// Bookkeeping per held record, counted against the rebuild limit with the record bytes.
const HELD_RECORD_OVERHEAD: usize = 32;

/// One refused record: its index in the batch and why (Produce v8 `BatchIndexAndErrorMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// Why a client batch is not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// INVALID_RECORD (87): the batch breaks the record format or the client rules.
    #[error("{0}")]
    InvalidRecord(String),
    /// CORRUPT_MESSAGE (2): the compressed payload does not decompress.
    #[error("{0}")]
    Corrupt(String),
    /// Individual records refused: INVALID_TIMESTAMP (32) if any was for its timestamp, else
    /// INVALID_RECORD, with each record's error.
    #[error("{message}")]
    Records {
        invalid_timestamp: bool,
        message: String,
        errors: Vec<RecordError>,
    },
    /// MESSAGE_TOO_LARGE (10): the batch as it would be stored is too large.
    #[error("{0}")]
    TooLarge(String),
}

/// What the leader stores.
#[derive(Debug)]
pub struct Validated {
    /// `None`: the batch as sent. `Some`: the rebuilt batch (base offset 0, leader epoch -1).
    pub rebuilt: Option<BytesMut>,
    /// The largest record timestamp (-1 if no record has one); for CreateTime topics this is
    /// the header's max timestamp as stored.
    pub max_timestamp: i64,
}

/// [`validate_batch`] for a client's batch (the validator's unit tests).
#[cfg(test)]
pub(crate) fn validate_client_batch(
    batch: &[u8],
    header: &BatchHeader,
    config: &LogConfig,
    now: i64,
    tp: &dyn fmt::Display,
) -> Result<Validated, ValidationError> {
    validate_batch(batch, header, config, now, tp, Origin::Client)
}

/// Validates `batch` (exactly one batch whose header is `header`, framing and CRC already
/// checked) as the leader's append from `origin` on the partition `tp`, at broker time `now`.
/// Only a client may not write control batches (a coordinator has the leader write
/// transaction markers).
///
/// # Errors
/// See [`ValidationError`]; its message names the partition and what was wrong.
pub(crate) fn validate_batch(
    batch: &[u8],
    header: &BatchHeader,
    config: &LogConfig,
    now: i64,
    tp: &dyn fmt::Display,
    origin: Origin,
) -> Result<Validated, ValidationError> {
    check_header(header, tp, origin)?;
    let source = header.compression_codec();
    if let CompressionCodec::Unknown(id) = source {
        return Err(ValidationError::Corrupt(format!(
            "unknown compression codec id {id} in topic partition {tp}"
        )));
    }
    let target = config.compression_type.target(source);
    let rules = Rules {
        header,
        config,
        now,
        tp,
    };
    let payload = batch.get(HEADER_LEN..).unwrap_or_default();
    let limit = if target == CompressionCodec::None {
        config.max_message_bytes.max(0) as usize
    } else {
        (config.max_message_bytes.max(0) as usize).saturating_mul(REBUILD_EXPANSION_LIMIT)
    };
    if target != source {
        let mut held = Held::new(limit);
        let walk = walk(&rules, payload, Some(&mut held))?;
        return rebuild(&rules, target, &held, walk.max_timestamp);
    }
    let walk = walk(&rules, payload, None)?;
    if walk.offsets_in_order || source == CompressionCodec::None {
        return Ok(Validated {
            rebuilt: None,
            max_timestamp: walk.max_timestamp,
        });
    }
    // Kafka renumbers the inner offsets of compressed batches from old clients rather than
    // refusing them; only then are the records held, on a second pass.
    let mut held = Held::new(limit);
    let walk = self::walk(&rules, payload, Some(&mut held))?;
    rebuild(&rules, target, &held, walk.max_timestamp)
}

/// Kafka's `analyzeAndValidateRecords` and `validateBatch` rules for a client batch.
fn check_header(
    h: &BatchHeader,
    tp: &dyn fmt::Display,
    origin: Origin,
) -> Result<(), ValidationError> {
    let invalid = |m: String| Err(ValidationError::InvalidRecord(m));
    if h.base_offset != 0 {
        return invalid(format!(
            "The baseOffset of the record batch in the append to {tp} should be 0, but it is {}",
            h.base_offset
        ));
    }
    let last_offset = h.base_offset.wrapping_add(i64::from(h.last_offset_delta));
    let count_from_offsets = i64::from(h.last_offset_delta) + 1;
    if count_from_offsets <= 0 {
        return invalid(format!(
            "Batch has an invalid offset range: [{}, {last_offset}] in topic partition {tp}.",
            h.base_offset
        ));
    }
    if h.record_count <= 0 {
        return invalid(format!(
            "Invalid reported count for record batch: {} in topic partition {tp}.",
            h.record_count
        ));
    }
    if count_from_offsets != i64::from(h.record_count) {
        return invalid(format!(
            "Inconsistent batch offset range [{}, {last_offset}] and count of records {} in topic partition {tp}.",
            h.base_offset, h.record_count
        ));
    }
    if h.is_control() && origin == Origin::Client {
        return invalid(format!(
            "Clients are not allowed to write control records in topic partition {tp}."
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 && origin == Origin::Client {
        return invalid(format!(
            "Invalid sequence number {} in record batch with producerId {} in topic partition {tp}.",
            h.base_sequence, h.producer_id
        ));
    }
    if h.is_transactional() && h.producer_id < 0 {
        return invalid(format!(
            "Transactional record batch without a producer id in topic partition {tp}."
        ));
    }
    Ok(())
}

struct Rules<'a> {
    header: &'a BatchHeader,
    config: &'a LogConfig,
    now: i64,
    tp: &'a dyn fmt::Display,
}

impl Rules<'_> {
    /// Kafka's `validateKey` then `validateTimestamp`: at most one error per record.
    fn check_record(&self, index: i32, rec: &RecordFields) -> Option<(bool, String)> {
        if self.config.cleanup_policy_compact && !rec.has_key {
            return Some((
                false,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {}.",
                    self.tp
                ),
            ));
        }
        let diff = self.config.message_timestamp_difference_max_ms;
        if self.config.message_timestamp_type == TimestampType::CreateTime
            && rec.timestamp != -1
            && (i128::from(rec.timestamp) - i128::from(self.now)).abs() > i128::from(diff)
        {
            return Some((
                true,
                format!(
                    "Timestamp {} of message with offset {index} is out of range. The timestamp should be within [{}, {}]",
                    rec.timestamp,
                    self.now.saturating_sub(diff),
                    self.now.saturating_add(diff)
                ),
            ));
        }
        if self.header.is_log_append_time() {
            return Some((
                true,
                "Invalid timestamp type in message. Producer should not set timestamp type to LogAppendTime."
                    .into(),
            ));
        }
        None
    }
}

/// What one record contributes to validation.
struct RecordFields {
    timestamp: i64,
    offset_delta: i32,
    has_key: bool,
}

/// The records of a batch being rebuilt: each one's timestamp and its encoded key, value and
/// headers in one buffer, bounded by `limit` bytes.
struct Held {
    tails: Vec<u8>,
    records: Vec<(i64, usize, usize)>,
    limit: usize,
}

impl Held {
    fn new(limit: usize) -> Held {
        Held {
            tails: Vec::new(),
            records: Vec::new(),
            limit,
        }
    }

    fn held_bytes(&self) -> usize {
        self.tails.len() + self.records.len() * HELD_RECORD_OVERHEAD
    }
}

struct Walk {
    max_timestamp: i64,
    offsets_in_order: bool,
}

/// Walks every record of the payload, uncompressed or through its codec's decompressor.
fn walk(rules: &Rules, payload: &[u8], held: Option<&mut Held>) -> Result<Walk, ValidationError> {
    match rules.header.compression_codec() {
        CompressionCodec::None => walk_records(rules, &mut SliceSource::new(payload), held),
        codec => {
            let reader = compression::decoder(codec, payload).map_err(|e| {
                ValidationError::Corrupt(format!(
                    "Failed to decompress record stream in topic partition {}: {e}",
                    rules.tp
                ))
            })?;
            walk_records(rules, &mut StreamSource::new(reader), held)
        }
    }
}

fn walk_records<S: Source>(
    rules: &Rules,
    src: &mut S,
    mut held: Option<&mut Held>,
) -> Result<Walk, ValidationError> {
    let count = rules.header.record_count;
    let mut out = Walk {
        max_timestamp: -1,
        offsets_in_order: true,
    };
    let mut errors = Vec::new();
    let mut invalid_timestamp = false;
    let mut tail = Vec::new();
    for index in 0..count {
        let len = read_varint(src).map_err(|s| src.stop_error(s, rules.tp))?;
        let len = usize::try_from(len).map_err(|_| {
            ValidationError::InvalidRecord(format!(
                "Found invalid record structure in topic partition {}: negative record size {len}",
                rules.tp
            ))
        })?;
        src.begin(len, rules.tp)?;
        tail.clear();
        let keep = held.as_ref().map(|_| &mut tail);
        let rec = read_record(rules.header, src, keep).map_err(|s| src.stop_error(s, rules.tp))?;
        let left = src.left();
        if left != 0 {
            return Err(ValidationError::InvalidRecord(format!(
                "Invalid record size: expected to read {len} bytes in record payload, but instead read {} in topic partition {}",
                len - left,
                rules.tp
            )));
        }
        src.end();
        if index == count - 1 && !src.exhausted(rules.tp)? {
            return Err(ValidationError::InvalidRecord(format!(
                "Incorrect declared batch size, records still remaining in file in topic partition {}",
                rules.tp
            )));
        }
        match rules.check_record(index, &rec) {
            Some((timestamp, message)) => {
                invalid_timestamp |= timestamp;
                errors.push(RecordError {
                    batch_index: index,
                    message,
                });
            }
            None => {
                out.max_timestamp = out.max_timestamp.max(rec.timestamp);
                let offset = rules
                    .header
                    .base_offset
                    .wrapping_add(i64::from(rec.offset_delta));
                out.offsets_in_order &= offset == i64::from(index);
            }
        }
        if let Some(h) = held.as_deref_mut() {
            let start = h.tails.len();
            h.tails.extend_from_slice(&tail);
            h.records.push((rec.timestamp, start, h.tails.len()));
            if h.held_bytes() > h.limit {
                return Err(ValidationError::TooLarge(format!(
                    "The records of the batch in topic partition {} exceed {} bytes uncompressed, more than the broker holds to rebuild a batch",
                    rules.tp, h.limit
                )));
            }
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    let message = if invalid_timestamp {
        "One or more records have been rejected due to invalid timestamp"
    } else {
        "One or more records have been rejected"
    };
    Err(ValidationError::Records {
        invalid_timestamp,
        message: message.into(),
        errors,
    })
}

/// Kafka's `DefaultRecord.readFrom` body: attributes, timestamp and offset deltas, key,
/// value and headers. With `keep`, the key, value and headers are re-encoded into it.
fn read_record<S: Source>(
    header: &BatchHeader,
    src: &mut S,
    mut keep: Option<&mut Vec<u8>>,
) -> Result<RecordFields, Stop> {
    let _attributes = src.byte()?;
    let timestamp_delta = read_varlong(src)?;
    let offset_delta = read_varint(src)?;
    let key_len = read_varint(src)?;
    let has_key = key_len >= 0;
    copy_field(src, key_len, keep.as_deref_mut())?;
    let value_len = read_varint(src)?;
    copy_field(src, value_len, keep.as_deref_mut())?;
    let headers = read_varint(src)?;
    if headers < 0 {
        return Err(Stop::Malformed(format!(
            "Found invalid number of record headers {headers}"
        )));
    }
    if let Some(k) = keep.as_deref_mut() {
        put_varint(k, headers);
    }
    for _ in 0..headers {
        let key_len = read_varint(src)?;
        if key_len < 0 {
            return Err(Stop::Malformed(format!(
                "Invalid negative header key size {key_len}"
            )));
        }
        copy_field(src, key_len, keep.as_deref_mut())?;
        let value_len = read_varint(src)?;
        copy_field(src, value_len, keep.as_deref_mut())?;
    }
    let timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.wrapping_add(timestamp_delta)
    };
    Ok(RecordFields {
        timestamp,
        offset_delta,
        has_key,
    })
}

/// A nullable byte field of `len` bytes (negative = null), skipped or re-encoded into `keep`.
fn copy_field<S: Source>(src: &mut S, len: i32, keep: Option<&mut Vec<u8>>) -> Result<(), Stop> {
    match keep {
        Some(k) => {
            put_varint(k, len.max(-1));
            if len > 0 {
                src.skip(len as usize, Some(k))?;
            }
        }
        None if len > 0 => src.skip(len as usize, None)?,
        None => {}
    }
    Ok(())
}

/// Kafka's `ByteUtils.readVarint`: at most 5 bytes, zig-zag decoded.
fn read_varint<S: Source>(src: &mut S) -> Result<i32, Stop> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let b = src.byte()?;
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i32) ^ -((value & 1) as i32));
        }
    }
    Err(Stop::Malformed("Varint is too long".into()))
}

/// Kafka's `ByteUtils.readVarlong`: at most 10 bytes, zig-zag decoded.
fn read_varlong<S: Source>(src: &mut S) -> Result<i64, Stop> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = src.byte()?;
        value |= u64::from(b & 0x7f).wrapping_shl(7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(Stop::Malformed("Varlong is too long".into()))
}

/// Why reading a record stopped early.
enum Stop {
    /// The record's own length, or the data, ended inside a field.
    Underflow,
    /// The decompressed stream ended before the batch's records did.
    Eof,
    /// A field holds a value the format does not allow.
    Malformed(String),
    /// The decompressor failed.
    Io(io::Error),
}

/// Where record bytes come from: the batch itself, or a decompressing stream. Between
/// [`Source::begin`] and [`Source::end`] reads are confined to one record's declared length.
trait Source {
    fn byte(&mut self) -> Result<u8, Stop>;
    fn skip(&mut self, n: usize, keep: Option<&mut Vec<u8>>) -> Result<(), Stop>;
    fn begin(&mut self, len: usize, tp: &dyn fmt::Display) -> Result<(), ValidationError>;
    /// Bytes of the current record not read yet.
    fn left(&self) -> usize;
    fn end(&mut self);
    /// Whether nothing follows the last record.
    fn exhausted(&mut self, tp: &dyn fmt::Display) -> Result<bool, ValidationError>;

    fn stop_error(&self, stop: Stop, tp: &dyn fmt::Display) -> ValidationError {
        match stop {
            Stop::Underflow => ValidationError::InvalidRecord(format!(
                "Found invalid record structure in topic partition {tp}"
            )),
            Stop::Malformed(why) => ValidationError::InvalidRecord(format!(
                "Found invalid record structure in topic partition {tp}: {why}"
            )),
            Stop::Eof => premature_eof(tp),
            Stop::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => premature_eof(tp),
            Stop::Io(e) => ValidationError::Corrupt(format!(
                "Failed to decompress record stream in topic partition {tp}: {e}"
            )),
        }
    }
}

fn premature_eof(tp: &dyn fmt::Display) -> ValidationError {
    ValidationError::InvalidRecord(format!(
        "Incorrect declared batch size, premature EOF reached in topic partition {tp}"
    ))
}

/// The records of an uncompressed batch, read in place.
struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
}

impl<'a> SliceSource<'a> {
    fn new(buf: &'a [u8]) -> Self {
        SliceSource {
            buf,
            pos: 0,
            limit: buf.len(),
        }
    }
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Stop> {
        if self.pos >= self.limit {
            return Err(Stop::Underflow);
        }
        let b = self.buf.get(self.pos).copied().ok_or(Stop::Underflow)?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize, keep: Option<&mut Vec<u8>>) -> Result<(), Stop> {
        if self.limit - self.pos < n {
            return Err(Stop::Underflow);
        }
        if let Some(k) = keep {
            k.extend_from_slice(
                self.buf
                    .get(self.pos..self.pos + n)
                    .ok_or(Stop::Underflow)?,
            );
        }
        self.pos += n;
        Ok(())
    }

    fn begin(&mut self, len: usize, tp: &dyn fmt::Display) -> Result<(), ValidationError> {
        let remaining = self.buf.len() - self.pos;
        if len > remaining {
            return Err(ValidationError::InvalidRecord(format!(
                "Invalid record size: expected {len} bytes in record payload, but instead the buffer has only {remaining} remaining bytes in topic partition {tp}"
            )));
        }
        self.limit = self.pos + len;
        Ok(())
    }

    fn left(&self) -> usize {
        self.limit - self.pos
    }

    fn end(&mut self) {
        self.limit = self.buf.len();
    }

    fn exhausted(&mut self, _tp: &dyn fmt::Display) -> Result<bool, ValidationError> {
        Ok(self.pos == self.buf.len())
    }
}

/// The records of a compressed batch, read from its decompressor.
struct StreamSource<'a> {
    reader: Box<dyn BufRead + 'a>,
    /// Bytes left in the current record; `usize::MAX` between records.
    limit: usize,
}

impl<'a> StreamSource<'a> {
    fn new(reader: Box<dyn BufRead + 'a>) -> Self {
        StreamSource {
            reader,
            limit: usize::MAX,
        }
    }
}

impl Source for StreamSource<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        if self.limit == 0 {
            return Err(Stop::Underflow);
        }
        let buf = self.reader.fill_buf().map_err(Stop::Io)?;
        let b = *buf.first().ok_or(Stop::Eof)?;
        self.reader.consume(1);
        self.limit -= 1;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize, mut keep: Option<&mut Vec<u8>>) -> Result<(), Stop> {
        if n > self.limit {
            return Err(Stop::Underflow);
        }
        while n > 0 {
            let buf = self.reader.fill_buf().map_err(Stop::Io)?;
            if buf.is_empty() {
                return Err(Stop::Eof);
            }
            let m = n.min(buf.len());
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&buf[..m]);
            }
            self.reader.consume(m);
            n -= m;
            self.limit -= m;
        }
        Ok(())
    }

    fn begin(&mut self, len: usize, _tp: &dyn fmt::Display) -> Result<(), ValidationError> {
        self.limit = len;
        Ok(())
    }

    fn left(&self) -> usize {
        self.limit
    }

    fn end(&mut self) {
        self.limit = usize::MAX;
    }

    fn exhausted(&mut self, tp: &dyn fmt::Display) -> Result<bool, ValidationError> {
        match self.reader.fill_buf() {
            Ok(buf) => Ok(buf.is_empty()),
            Err(e) => Err(self.stop_error(Stop::Io(e), tp)),
        }
    }
}

/// Re-encodes the held records with offsets 0..n-1 and timestamps relative to the first, in
/// the `target` codec, as Kafka's `buildRecordsAndAssignOffsets` does.
fn rebuild(
    rules: &Rules,
    target: CompressionCodec,
    held: &Held,
    max_timestamp: i64,
) -> Result<Validated, ValidationError> {
    let base_timestamp = held.records.first().map(|r| r.0).unwrap_or(-1);
    let mut body = Vec::with_capacity(held.tails.len() + held.records.len() * 8);
    for (i, &(ts, start, end)) in held.records.iter().enumerate() {
        let delta = ts.wrapping_sub(base_timestamp);
        let offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
        put_record(&mut body, delta, offset_delta, &held.tails[start..end]);
    }
    let payload = compression::compress(target, &body).map_err(|e| {
        ValidationError::Corrupt(format!(
            "Failed to compress records for topic partition {}: {e}",
            rules.tp
        ))
    })?;
    let h = rules.header;
    let codec_id = i16::from(target.id());
    let count = i32::try_from(held.records.len()).unwrap_or(i32::MAX);
    let batch = encode_batch(
        &BatchFields {
            base_offset: 0,
            attributes: (h.attributes & KEPT_ATTRIBUTES) | codec_id,
            last_offset_delta: count - 1,
            base_timestamp,
            max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            record_count: count,
        },
        &payload,
    );
    let max = rules.config.max_message_bytes;
    if batch.len() > max.max(0) as usize {
        return Err(ValidationError::TooLarge(format!(
            "Message batch size is {} bytes in append to partition {} which exceeds the maximum configured size of {max}.",
            batch.len(),
            rules.tp
        )));
    }
    Ok(Validated {
        rebuilt: Some(batch),
        max_timestamp,
    })
}
