//! `__transaction_state` records in Kafka's schemas (`TransactionLogKey` and
//! `TransactionLogValue`, version 0 only):
//!
//! - key: `version i16 = 0`, `transactional_id STRING`;
//! - value: `version i16 = 0`, `producer_id i64`, `producer_epoch i16`,
//!   `transaction_timeout_ms i32`, `transaction_status i8`, `transaction_partitions` (a nullable
//!   array, null for Empty, of `{topic STRING, partition_ids [i32]}`),
//!   `transaction_last_update_timestamp_ms i64`, `transaction_start_timestamp_ms i64`;
//! - a null value (tombstone) is an expired id.
//!
//! As in Kafka 2.8, the last producer id and epoch are not stored.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::metadata::{TxnState, TxnTransit};
use crate::coordinator::records::{put_string, Reader, RecordError};
use crate::log::TopicPartition;

/// `__transaction_state`.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

pub fn key(transactional_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(0);
    put_string(&mut out, transactional_id);
    out.freeze()
}

pub fn value(t: &TxnTransit) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(0);
    out.put_i64(t.producer_id);
    out.put_i16(t.producer_epoch);
    out.put_i32(t.timeout_ms);
    out.put_i8(t.state.id());
    if t.state == TxnState::Empty {
        out.put_i32(-1);
    } else {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &t.partitions {
            by_topic
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        out.put_i32(i32::try_from(by_topic.len()).unwrap_or(i32::MAX));
        for (topic, parts) in by_topic {
            put_string(&mut out, topic);
            out.put_i32(i32::try_from(parts.len()).unwrap_or(i32::MAX));
            for p in parts {
                out.put_i32(p);
            }
        }
    }
    out.put_i64(t.last_update_ms);
    out.put_i64(t.start_ms);
    out.freeze()
}

pub fn decode_key(buf: &[u8]) -> Result<String, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    if version != 0 {
        return Err(RecordError::UnknownVersion {
            what: "transaction log key",
            version,
        });
    }
    let id = r.string()?;
    r.finish("transaction log key")?;
    Ok(id)
}

pub fn decode_value(buf: &[u8]) -> Result<TxnTransit, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    if version != 0 {
        return Err(RecordError::UnknownVersion {
            what: "transaction log value",
            version,
        });
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = r.take(1)?[0] as i8;
    let state = TxnState::from_id(status).ok_or(RecordError::UnknownVersion {
        what: "transaction status",
        version: i16::from(status),
    })?;
    let mut partitions = BTreeSet::new();
    let topics = r.i32()?;
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let n = r.i32()?;
        if n < 0 {
            return Err(RecordError::NegativeLength { at: 0, len: n });
        }
        for _ in 0..n {
            partitions.insert(TopicPartition::new(topic.as_str(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    r.finish("transaction log value")?;
    Ok(TxnTransit {
        producer_id,
        last_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnTransit {
        TxnTransit {
            producer_id: 0x0102,
            last_producer_id: -1,
            producer_epoch: 3,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                TopicPartition::new("b", 1),
                TopicPartition::new("a", 2),
                TopicPartition::new("a", 0),
            ]
            .into_iter()
            .collect(),
            start_ms: 7,
            last_update_ms: 9,
        }
    }

    /// Written from the schema in Kafka's `TransactionLogValue.json` (version 0).
    #[test]
    fn value_bytes_match_kafka_schema() {
        let b = value(&ongoing());
        let mut expected = vec![0, 0]; // version
        expected.extend(0x0102i64.to_be_bytes());
        expected.extend(3i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend(2i32.to_be_bytes()); // two topics
        expected.extend([0, 1, b'a']);
        expected.extend(2i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(2i32.to_be_bytes());
        expected.extend([0, 1, b'b']);
        expected.extend(1i32.to_be_bytes());
        expected.extend(1i32.to_be_bytes());
        expected.extend(9i64.to_be_bytes()); // last update
        expected.extend(7i64.to_be_bytes()); // start
        assert_eq!(b.as_ref(), expected.as_slice());
        assert_eq!(decode_value(&b), Ok(ongoing()));
    }

    #[test]
    fn key_bytes_and_empty_value_match_kafka_schema() {
        assert_eq!(key("tx").as_ref(), &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&key("tx")), Ok("tx".to_string()));
        let empty = TxnTransit {
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            ..ongoing()
        };
        let b = value(&empty);
        assert_eq!(
            &b[17..21],
            &(-1i32).to_be_bytes(),
            "Empty writes a null partition array"
        );
        assert_eq!(b.len(), 2 + 8 + 2 + 4 + 1 + 4 + 8 + 8);
        assert_eq!(decode_value(&b), Ok(empty));
    }

    #[test]
    fn bad_records_are_errors() {
        assert!(decode_key(&[0, 1, 0, 0]).is_err(), "key version 1");
        let mut b = value(&ongoing()).to_vec();
        b[16] = 9;
        assert!(decode_value(&b).is_err(), "unknown status");
        assert!(decode_value(&b[..20]).is_err(), "truncated");
        let mut extra = value(&ongoing()).to_vec();
        extra.push(0);
        assert!(decode_value(&extra).is_err(), "trailing byte");
    }
}
