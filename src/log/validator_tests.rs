//! Kafka 2.8 `LogValidator` cases (its `LogValidatorTest` and the audit's five corrupt
//! batches) against [`validate_client_batch`].

use super::config::{CompressionType, LogConfig, TimestampType};
use super::validator::{validate_client_batch, Validated, ValidationError};
use crate::protocol::batch::{self, BatchHeader, CompressionCodec, HEADER_LEN};
use crate::protocol::batch_builder::{build_batch, encode_batch, BatchFields};
use crate::protocol::compression;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;
const CODECS: [CompressionCodec; 5] = [
    CompressionCodec::None,
    CompressionCodec::Gzip,
    CompressionCodec::Snappy,
    CompressionCodec::Lz4,
    CompressionCodec::Zstd,
];

fn codec_id(c: CompressionCodec) -> i16 {
    i16::from(c.id())
}

/// The header fields of a batch.
fn fields_of(b: &[u8]) -> BatchFields {
    BatchFields::of(&BatchHeader::parse(b).unwrap())
}

/// `n` keyed records at NOW, compressed with `codec`, header fields adjusted by `tweak`, CRC
/// valid.
fn batch_with(codec: CompressionCodec, n: usize, tweak: impl FnOnce(&mut BatchFields)) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let vals: Vec<String> = (0..n)
        .map(|i| format!("value number {i} {}", "x".repeat(i % 40)))
        .collect();
    let kvs: Vec<_> = keys
        .iter()
        .zip(&vals)
        .map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes())))
        .collect();
    let plain = build_batch(0, NOW, &kvs);
    let mut fields = fields_of(&plain);
    fields.attributes = codec_id(codec);
    tweak(&mut fields);
    let payload = compression::compress(codec, &plain[HEADER_LEN..]).unwrap();
    encode_batch(&fields, &payload).to_vec()
}

/// The produce path: framing and CRC first (their failures are CORRUPT_MESSAGE), then the
/// validator.
fn run(b: &[u8], config: &LogConfig) -> Result<Validated, ValidationError> {
    let h = batch::validate_single_batch(b)
        .map_err(|e| ValidationError::Corrupt(format!("framing: {e}")))?;
    validate_client_batch(b, &h, config, NOW, &"t-0")
}

fn invalid_record(r: Result<Validated, ValidationError>) -> String {
    match r {
        Err(ValidationError::InvalidRecord(m)) => m,
        other => panic!("expected INVALID_RECORD, got {other:?}"),
    }
}

/// A stored record: offset, key, value.
type Stored = (i64, Option<Vec<u8>>, Option<Vec<u8>>);
/// A header rule: the message expected and the change that breaks the rule.
type HeaderCase = (&'static str, fn(&mut BatchFields));

/// Every record of a stored batch, decoded independently of the validator.
fn stored_records(b: &[u8]) -> Vec<Stored> {
    let h = BatchHeader::parse(b).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut compression::decoder(h.compression_codec(), &b[HEADER_LEN..]).unwrap(),
        &mut plain,
    )
    .unwrap();
    let fields = BatchFields {
        attributes: 0,
        ..fields_of(b)
    };
    let as_plain = encode_batch(&fields, &plain);
    batch::uncompressed_records(&as_plain)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.offset,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            )
        })
        .collect()
}

#[test]
fn valid_batches_of_every_codec_are_stored_as_sent() {
    for codec in CODECS {
        let b = batch_with(codec, 50, |_| {});
        let v = run(&b, &LogConfig::default()).unwrap();
        assert!(v.rebuilt.is_none(), "{codec:?} must be stored in place");
        assert_eq!(v.max_timestamp, NOW);
    }
}

#[test]
fn a_record_count_that_lies_is_refused() {
    // The audit's batch: 10 records claimed, 1 present, CRC valid.
    let b = batch_with(CompressionCodec::None, 1, |f| {
        f.record_count = 10;
        f.last_offset_delta = 9;
    });
    let m = invalid_record(run(&b, &LogConfig::default()));
    assert!(m.contains("invalid record structure"), "{m}");
    // The same lie inside a compressed payload ends the stream early.
    let b = batch_with(CompressionCodec::Gzip, 1, |f| {
        f.record_count = 10;
        f.last_offset_delta = 9;
    });
    let m = invalid_record(run(&b, &LogConfig::default()));
    assert!(m.contains("premature EOF"), "{m}");
    // Fewer claimed than present: bytes remain after the last record.
    let b = batch_with(CompressionCodec::None, 3, |f| {
        f.record_count = 2;
        f.last_offset_delta = 1;
    });
    let m = invalid_record(run(&b, &LogConfig::default()));
    assert!(m.contains("records still remaining"), "{m}");
}

#[test]
fn garbage_record_bodies_are_refused() {
    let good = batch_with(CompressionCodec::None, 3, |_| {});
    let fields = fields_of(&good);
    let garbage: Vec<u8> = (0..(good.len() - HEADER_LEN) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    let b = encode_batch(&fields, &garbage);
    invalid_record(run(&b, &LogConfig::default()));
}

#[test]
fn the_gzip_flag_over_garbage_is_corrupt() {
    let plain = batch_with(CompressionCodec::None, 3, |_| {});
    let mut fields = fields_of(&plain);
    fields.attributes = codec_id(CompressionCodec::Gzip);
    let b = encode_batch(&fields, &plain[HEADER_LEN..]);
    match run(&b, &LogConfig::default()) {
        Err(ValidationError::Corrupt(m)) => assert!(m.contains("decompress"), "{m}"),
        other => panic!("expected CORRUPT_MESSAGE, got {other:?}"),
    }
    // Every other codec over the same bytes fails too, as corrupt or invalid.
    for codec in &CODECS[2..] {
        fields.attributes = codec_id(*codec);
        let b = encode_batch(&fields, &plain[HEADER_LEN..]);
        assert!(run(&b, &LogConfig::default()).is_err(), "{codec:?}");
    }
}

#[test]
fn a_huge_last_offset_delta_is_refused() {
    // lastOffsetDelta 2^31-2 with a matching count: the records are not there.
    let b = batch_with(CompressionCodec::None, 1, |f| {
        f.last_offset_delta = i32::MAX - 1;
        f.record_count = i32::MAX;
    });
    invalid_record(run(&b, &LogConfig::default()));
    // A count that does not match the offsets is refused from the header alone.
    let b = batch_with(CompressionCodec::None, 1, |f| {
        f.last_offset_delta = i32::MAX - 1
    });
    let m = invalid_record(run(&b, &LogConfig::default()));
    assert!(m.contains("Inconsistent batch offset range"), "{m}");
    // A negative lastOffsetDelta is refused by the framing check already.
    let b = batch_with(CompressionCodec::None, 1, |f| f.last_offset_delta = -1);
    assert!(matches!(
        run(&b, &LogConfig::default()),
        Err(ValidationError::Corrupt(_))
    ));
}

#[test]
fn header_rules_for_clients() {
    let cases: [HeaderCase; 5] = [
        ("Transactional record batch without a producer id", |f| {
            f.attributes |= 0x10
        }),
        ("Clients are not allowed to write control records", |f| {
            f.attributes |= 0x20
        }),
        ("Invalid sequence number -1", |f| f.producer_id = 7),
        ("should be 0, but it is 5", |f| f.base_offset = 5),
        ("Invalid reported count", |f| {
            f.record_count = 0;
            f.last_offset_delta = 0
        }),
    ];
    for (want, tweak) in cases {
        let b = batch_with(CompressionCodec::None, 1, tweak);
        let m = invalid_record(run(&b, &LogConfig::default()));
        assert!(m.contains(want), "{want}: {m}");
    }
    // A producer id with a sequence, transactional or not, is well formed.
    let b = batch_with(CompressionCodec::None, 1, |f| {
        f.producer_id = 7;
        f.producer_epoch = 0;
        f.base_sequence = 0;
        f.attributes |= 0x10;
    });
    run(&b, &LogConfig::default()).unwrap();
}

#[test]
fn record_level_errors_name_each_record() {
    let compact = LogConfig {
        cleanup_policy_compact: true,
        ..LogConfig::default()
    };
    let plain = build_batch(
        0,
        NOW,
        &[(Some(b"k"), Some(b"v")), (None, Some(b"v")), (None, None)],
    );
    match run(&plain, &compact) {
        Err(ValidationError::Records {
            invalid_timestamp: false,
            errors,
            message,
        }) => {
            assert_eq!(message, "One or more records have been rejected");
            let idx: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(idx, [1, 2]);
            assert!(errors[0]
                .message
                .contains("Compacted topic cannot accept message without key"));
        }
        other => panic!("{other:?}"),
    }
    let strict = LogConfig {
        message_timestamp_difference_max_ms: 1_000,
        ..LogConfig::default()
    };
    let old = build_batch(0, NOW - 5_000, &[(None, Some(b"v"))]);
    match run(&old, &strict) {
        Err(ValidationError::Records {
            invalid_timestamp: true,
            errors,
            ..
        }) => assert!(errors[0].message.contains("out of range"), "{errors:?}"),
        other => panic!("{other:?}"),
    }
    // A record without a timestamp (-1) is never out of range.
    let none = build_batch(0, -1, &[(None, Some(b"v"))]);
    assert_eq!(run(&none, &strict).unwrap().max_timestamp, -1);
    // A producer may not claim LogAppendTime.
    let lat = batch_with(CompressionCodec::None, 2, |f| f.attributes |= 0x08);
    match run(&lat, &LogConfig::default()) {
        Err(ValidationError::Records {
            invalid_timestamp: true,
            errors,
            ..
        }) => assert_eq!(errors.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn record_size_must_match_what_the_record_holds() {
    let mut b = build_batch(0, NOW, &[(Some(b"k"), Some(b"v"))]).to_vec();
    // Declared body length one byte longer than the body, with one spare byte at the end.
    b[HEADER_LEN] += 2;
    b.push(0);
    let mut fields = fields_of(&b);
    fields.attributes = 0;
    let b = encode_batch(&fields, &b[HEADER_LEN..]);
    let m = invalid_record(run(&b, &LogConfig::default()));
    assert!(m.contains("Invalid record size"), "{m}");
}

#[test]
fn max_timestamp_is_taken_from_the_records() {
    let mut b = batch_with(CompressionCodec::Lz4, 5, |f| f.max_timestamp = 3);
    let v = run(&b, &LogConfig::default()).unwrap();
    assert_eq!(v.max_timestamp, NOW);
    b = batch_with(CompressionCodec::None, 5, |f| f.max_timestamp = NOW + 99);
    assert_eq!(run(&b, &LogConfig::default()).unwrap().max_timestamp, NOW);
}

#[test]
fn topic_compression_type_rebuilds_in_the_target_codec() {
    let targets = [
        (CompressionType::Uncompressed, CompressionCodec::None),
        (CompressionType::Gzip, CompressionCodec::Gzip),
        (CompressionType::Snappy, CompressionCodec::Snappy),
        (CompressionType::Lz4, CompressionCodec::Lz4),
        (CompressionType::Zstd, CompressionCodec::Zstd),
    ];
    for source in CODECS {
        let b = batch_with(source, 30, |f| {
            f.producer_id = 9;
            f.producer_epoch = 1;
            f.base_sequence = 4;
        });
        let want = stored_records(&b);
        for (ty, codec) in targets {
            let config = LogConfig {
                compression_type: ty,
                ..LogConfig::default()
            };
            let v = run(&b, &config).unwrap();
            if source == codec {
                assert!(v.rebuilt.is_none(), "{source:?} → {codec:?}");
                continue;
            }
            let rebuilt = v.rebuilt.expect("a rebuild");
            let h = batch::validate_single_batch(&rebuilt).unwrap();
            assert_eq!(h.compression_codec(), codec);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (9, 1, 4)
            );
            assert_eq!((h.record_count, h.last_offset_delta), (30, 29));
            assert_eq!(stored_records(&rebuilt), want, "{source:?} → {codec:?}");
            // What the leader stores passes its own validation unchanged.
            assert!(run(&rebuilt, &config).unwrap().rebuilt.is_none());
        }
    }
}

#[test]
fn compressed_inner_offsets_out_of_order_are_renumbered() {
    // Inner offset deltas 0, 2, 4 (an old client's numbering) in a snappy batch.
    let plain = build_batch(
        0,
        NOW,
        &[(None, Some(b"a")), (None, Some(b"b")), (None, Some(b"c"))],
    );
    let mut body = plain[HEADER_LEN..].to_vec();
    // Each record: len, attrs, tsDelta, offsetDelta...; rewrite the offset deltas in place
    // (single-byte varints: 0 → 0, 1 → 4 (zigzag 2), 2 → 8 (zigzag 4)).
    let mut pos = 0;
    for i in 0..3u8 {
        let len = (body[pos] >> 1) as usize;
        body[pos + 3] = i * 4;
        pos += 1 + len;
    }
    let mut fields = fields_of(&plain);
    fields.attributes = codec_id(CompressionCodec::Snappy);
    let b = encode_batch(
        &fields,
        &compression::compress(CompressionCodec::Snappy, &body).unwrap(),
    );
    let v = run(&b, &LogConfig::default()).unwrap();
    let rebuilt = v.rebuilt.expect("renumbered");
    let offsets: Vec<i64> = stored_records(&rebuilt).iter().map(|r| r.0).collect();
    assert_eq!(offsets, [0, 1, 2]);
    assert_eq!(
        BatchHeader::parse(&rebuilt).unwrap().compression_codec(),
        CompressionCodec::Snappy
    );
}

#[test]
fn a_rebuild_is_bounded_by_max_message_bytes() {
    let config = LogConfig {
        compression_type: CompressionType::Uncompressed,
        max_message_bytes: 4_000,
        ..LogConfig::default()
    };
    // 500 records of repetitive values: small compressed, far larger than 4,000 bytes plain.
    let b = batch_with(CompressionCodec::Zstd, 500, |_| {});
    assert!(
        b.len() < 4_000,
        "the compressed batch itself fits ({} bytes)",
        b.len()
    );
    match run(&b, &config) {
        Err(ValidationError::TooLarge(m)) => assert!(m.contains("4000"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn log_append_time_topics_accept_create_time_batches() {
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        message_timestamp_difference_max_ms: 0,
        ..LogConfig::default()
    };
    // The difference bound applies to CreateTime topics only.
    let b = build_batch(0, 5, &[(None, Some(b"v"))]);
    run(&b, &config).unwrap();
}

proptest! {
    /// Any byte of any codec's batch mutated (CRC recomputed, as a hostile client would):
    /// never a panic, and an in-place acceptance only when a record walk succeeds.
    #[test]
    fn mutated_batches_never_panic(codec_idx in 0usize..5, pos in 0usize..4096, byte in any::<u8>(),
                                   compact in any::<bool>(), target in 0usize..6) {
        let codec = CODECS[codec_idx];
        let b = batch_with(codec, 20, |_| {});
        let mut fields = fields_of(&b);
        let mut payload = b[HEADER_LEN..].to_vec();
        let at = pos % (payload.len() + 8);
        if at < payload.len() {
            payload[at] = byte;
        } else {
            fields.record_count = i32::from(byte) - 100;
            fields.last_offset_delta = fields.record_count - 1;
        }
        let b = encode_batch(&fields, &payload);
        let types = [CompressionType::Producer, CompressionType::Uncompressed, CompressionType::Gzip,
                     CompressionType::Snappy, CompressionType::Lz4, CompressionType::Zstd];
        let config = LogConfig {
            cleanup_policy_compact: compact,
            compression_type: types[target],
            ..LogConfig::default()
        };
        if let Ok(v) = run(&b, &config) {
            let stored = v.rebuilt.map(|r| r.to_vec()).unwrap_or_else(|| b.to_vec());
            // Whatever is accepted decodes to exactly the records its header counts.
            let h = BatchHeader::parse(&stored).unwrap();
            prop_assert_eq!(stored_records(&stored).len() as i32, h.record_count);
        }
    }
}
