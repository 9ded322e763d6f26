//! The key and value formats of `__consumer_offsets` records (reference §7 "Record formats";
//! Kafka's `GroupMetadataManager` schemas). Kafka brokers and tools read these bytes, so the
//! encodings are Kafka's exactly: a big-endian `int16` version, then the struct; STRING is an
//! `int16` length and UTF-8, NULLABLE_STRING uses length -1 for null, BYTES is an `int32` length.
//!
//! gregor writes what a Kafka 2.3+ broker writes (offset key v1, offset value v3 or v1 when the
//! commit carried an explicit retention, group key v2, group value v3) and reads every version
//! Kafka ever wrote, because a partition may hold records from older brokers.

use bytes::{BufMut, Bytes, BytesMut};

/// A record key: which offset or group the record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// Key versions 0 and 1 (same schema).
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    /// Key version 2.
    Group { group: String },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset (value versions 0–3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// v3 only; -1 on the wire means none.
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// v1 only: an explicit expiry from a commit that carried a retention time.
    pub expire_timestamp: Option<i64>,
}

/// One member inside a group value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    /// v3 only.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// v1+; a v0 record uses the session timeout, as Kafka does.
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata (value versions 0–3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// "" when the group has none (Kafka writes `protocolType.getOrElse("")`).
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// v2+; -1 on the wire means unknown.
    pub current_state_timestamp: Option<i64>,
    pub members: Vec<MemberValue>,
}

/// Why a key or value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is truncated: needed {needed} more bytes at position {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unknown {what} schema version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("negative length {len} at position {at}")]
    NegativeLength { at: usize, len: i32 },
    #[error("string at position {at} is not UTF-8")]
    NotUtf8 { at: usize },
    #[error("{left} bytes left after the {what}")]
    TrailingBytes { what: &'static str, left: usize },
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const OFFSET_VALUE_WITH_EXPIRY_VERSION: i16 = 1;
const GROUP_VALUE_VERSION: i16 = 3;

pub(crate) fn put_string(out: &mut BytesMut, s: &str) {
    // Kafka's STRING is at most i16::MAX bytes; group ids, topics and member ids are far shorter,
    // and offset metadata is capped at offset.metadata.max.bytes (4096) before it gets here.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.put_i16(bytes.len() as i16);
    out.put_slice(bytes);
}

fn put_nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    out.put_slice(b);
}

/// Encodes an offset key (version 1).
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + group.len() + topic.len());
    out.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut out, group);
    put_string(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

/// Encodes a group key (version 2).
pub fn group_key(group: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + group.len());
    out.put_i16(GROUP_KEY_VERSION);
    put_string(&mut out, group);
    out.freeze()
}

/// Encodes an offset value: version 3, or version 1 when the commit set an expiry.
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + v.metadata.len());
    match v.expire_timestamp {
        Some(expire) => {
            out.put_i16(OFFSET_VALUE_WITH_EXPIRY_VERSION);
            out.put_i64(v.offset);
            put_string(&mut out, &v.metadata);
            out.put_i64(v.commit_timestamp);
            out.put_i64(expire);
        }
        None => {
            out.put_i16(OFFSET_VALUE_VERSION);
            out.put_i64(v.offset);
            out.put_i32(v.leader_epoch.unwrap_or(-1));
            put_string(&mut out, &v.metadata);
            out.put_i64(v.commit_timestamp);
        }
    }
    out.freeze()
}

/// Encodes a group value (version 3).
pub fn group_value(v: &GroupValue) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut out, &v.protocol_type);
    out.put_i32(v.generation);
    put_nullable_string(&mut out, v.protocol.as_deref());
    put_nullable_string(&mut out, v.leader.as_deref());
    out.put_i64(v.current_state_timestamp.unwrap_or(-1));
    out.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
    for m in &v.members {
        put_string(&mut out, &m.member_id);
        put_nullable_string(&mut out, m.group_instance_id.as_deref());
        put_string(&mut out, &m.client_id);
        put_string(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout);
        out.put_i32(m.session_timeout);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out.freeze()
}

/// A bounds-checked reader over untrusted record bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(RecordError::Truncated {
                at: self.pos,
                needed: n - left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let at = self.pos;
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize)?;
        std::str::from_utf8(b)
            .map(|s| Some(s.to_string()))
            .map_err(|_| RecordError::NotUtf8 { at })
    }

    pub(crate) fn string(&mut self) -> Result<String, RecordError> {
        let at = self.pos;
        self.nullable_string()?
            .ok_or(RecordError::NegativeLength { at, len: -1 })
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let at = self.pos;
        let len = self.i32()?;
        if len < 0 {
            return Err(RecordError::NegativeLength { at, len });
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<(), RecordError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            left => Err(RecordError::TrailingBytes { what, left }),
        }
    }
}

/// Decodes a record key of any version.
///
/// # Errors
/// Truncated or malformed bytes, or an unknown key version.
pub fn decode_key(buf: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader::new(buf);
    let key = match r.i16()? {
        0 | 1 => RecordKey::Offset {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        },
        2 => RecordKey::Group { group: r.string()? },
        version => {
            return Err(RecordError::UnknownVersion {
                what: "key",
                version,
            })
        }
    };
    r.finish("key")?;
    Ok(key)
}

/// Decodes an offset value of versions 0–3.
///
/// # Errors
/// Truncated or malformed bytes, or an unknown version.
pub fn decode_offset_value(buf: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    let v = match version {
        0..=2 => {
            let offset = r.i64()?;
            let metadata = r.string()?;
            let commit_timestamp = r.i64()?;
            let expire_timestamp = if version == 1 { Some(r.i64()?) } else { None };
            OffsetValue {
                offset,
                leader_epoch: None,
                metadata,
                commit_timestamp,
                expire_timestamp,
            }
        }
        3 => {
            let offset = r.i64()?;
            let epoch = r.i32()?;
            OffsetValue {
                offset,
                leader_epoch: (epoch >= 0).then_some(epoch),
                metadata: r.string()?,
                commit_timestamp: r.i64()?,
                expire_timestamp: None,
            }
        }
        version => {
            return Err(RecordError::UnknownVersion {
                what: "offset value",
                version,
            })
        }
    };
    r.finish("offset value")?;
    Ok(v)
}

/// Decodes a group value of versions 0–3.
///
/// # Errors
/// Truncated or malformed bytes, or an unknown version.
pub fn decode_group_value(buf: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp = if version >= 2 {
        Some(r.i64()?).filter(|t| *t >= 0)
    } else {
        None
    };
    let at = r.pos;
    let count = r.i32()?;
    if count < 0 {
        return Err(RecordError::NegativeLength { at, len: count });
    }
    // No pre-allocation from the count: it comes from disk and may be garbage.
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
        let session_timeout = r.i32()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout: rebalance_timeout.unwrap_or(session_timeout),
            session_timeout,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    r.finish("group value")?;
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
