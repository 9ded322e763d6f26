//! The `batch_validator` target: fuzzer bytes → one RecordBatch v2 → the produce path's framing
//! check (`validate_single_batch`) → `Log::append_as_leader` on a real log in a temporary
//! directory, which runs Kafka's `LogValidator` (`src/log/validator.rs`: every record walked,
//! each codec decompressed on the fly, a rebuild when the topic's `compression.type` asks for
//! another codec) and then writes, indexes and stamps the batch. The validator itself is private
//! to `gregor::log`; `append_as_leader` is its only caller, so that is the entry point.
//!
//! An input is one selector byte for the topic config, then one of two modes, so that both the
//! codecs' framing and what they decompress to get fuzzed:
//! - raw ([`RAW_MODE`]): the rest is the batch itself. Its length field and CRC are rewritten to
//!   match (unless [`KEEP_FRAMING`]), so mutations reach the validator instead of dying on the
//!   CRC check; corrupt compressed payloads land in the decoders.
//! - structured: header choices in the next bytes, then the *uncompressed* record bytes, which
//!   the harness compresses with the chosen codec exactly as a producer does; the validator then
//!   walks arbitrary record bytes through a valid gzip/snappy/lz4/zstd stream.
//!
//! Selector bits: 0–2 the topic's `compression.type` (producer, uncompressed, gzip, snappy, lz4,
//! zstd; 6 and 7 are producer), 3 LogAppendTime, 4 `cleanup.policy=compact` (keys required),
//! 5 raw mode, 6 raw: keep the framing as given / structured: a 1-hour
//! `message.timestamp.difference.max.ms`, 7 a 512-byte `max.message.bytes`.
//!
//! After an accepted append the stored batch is read back and checked: it has a valid CRC (the
//! leader rewrote its offsets, epoch and timestamps), the offsets the append reported, and the
//! codec the topic asks for. A batch with a producer id may instead be answered as a retry of
//! one already stored (the producer state's de-duplication): then the log must not have grown
//! and the offsets must name a stored batch of the same producer, epoch and sequence range.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gregor::log::{CompressionType, Log, LogConfig, LogManager, TimestampType, TopicPartition};
use gregor::protocol::batch::{self, BatchHeader, CompressionCodec, HEADER_LEN, LOG_OVERHEAD};
use gregor::protocol::batch_builder::{encode_batch, BatchFields};
use gregor::protocol::compression;

/// Selector bit: the rest of the input is the batch as is.
pub const RAW_MODE: u8 = 0x20;
/// Selector bit (raw mode): do not rewrite the length and CRC.
pub const KEEP_FRAMING: u8 = 0x40;
/// Producer ids for structured inputs.
static NEXT_PRODUCER: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
/// Byte offsets of Kafka's RecordBatch v2 header (`DefaultRecordBatch`).
const LENGTH_OFFSET: usize = 8;
const CRC_OFFSET: usize = 17;
const CRC_START: usize = 21;
/// Bytes of the structured mode's header choices (after the selector).
const STRUCTURED_HEADER: usize = 11;
/// The log is emptied when it grows past this, so a long run does not fill the disk.
const MAX_LOG_BYTES: u64 = 16 << 20;

struct Target {
    log: std::sync::Arc<Log>,
    base: LogConfig,
    stats: Mutex<Stats>,
    _logs: LogManager,
    _dir: tempfile::TempDir,
}

/// What became of the inputs, printed every [`STATS_EVERY`] so a run shows how deep it gets.
struct Stats {
    inputs: u64,
    not_a_batch: u64,
    framing: u64,
    refused: u64,
    duplicates: u64,
    appended: u64,
    rebuilt: u64,
    last: Instant,
}

/// How often the statistics line is printed.
const STATS_EVERY: Duration = Duration::from_secs(20);

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = crate::zookeeper::scratch_dir("batch-")
            .expect("batch_validator: cannot create a temporary log directory");
        let base = LogConfig {
            segment_bytes: 1 << 20,
            max_index_size: 64 << 10,
            ..LogConfig::default()
        };
        let logs = LogManager::startup(
            &[dir.path().to_path_buf()],
            0,
            "gregor-fuzz",
            base.clone(),
            &|_: &str| base.clone(),
        )
        .expect("batch_validator: LogManager::startup on a fresh temporary directory");
        let log = logs
            .get_or_create_log(&TopicPartition::new("fuzz", 0), base.clone())
            .expect("batch_validator: creating the partition log");
        Target {
            log,
            base,
            stats: Mutex::new(Stats {
                inputs: 0,
                not_a_batch: 0,
                framing: 0,
                refused: 0,
                duplicates: 0,
                appended: 0,
                rebuilt: 0,
                last: Instant::now(),
            }),
            _logs: logs,
            _dir: dir,
        }
    })
}

/// The topic config a selector byte names.
fn config(base: &LogConfig, sel: u8) -> LogConfig {
    let compression_type = match sel & 7 {
        1 => CompressionType::Uncompressed,
        2 => CompressionType::Gzip,
        3 => CompressionType::Snappy,
        4 => CompressionType::Lz4,
        5 => CompressionType::Zstd,
        _ => CompressionType::Producer,
    };
    let mut c = base.clone();
    c.compression_type = compression_type;
    if sel & 0x08 != 0 {
        c.message_timestamp_type = TimestampType::LogAppendTime;
    }
    c.cleanup_policy_compact = sel & 0x10 != 0;
    if sel & RAW_MODE == 0 && sel & 0x40 != 0 {
        c.message_timestamp_difference_max_ms = 3_600_000;
    }
    if sel & 0x80 != 0 {
        c.max_message_bytes = 512;
    }
    c
}

fn codec(id: u8) -> CompressionCodec {
    match id & 7 {
        0 => CompressionCodec::None,
        1 => CompressionCodec::Gzip,
        2 => CompressionCodec::Snappy,
        3 => CompressionCodec::Lz4,
        4 => CompressionCodec::Zstd,
        other => CompressionCodec::Unknown(other),
    }
}

/// Re-encodes an uncompressed batch with its records compressed by `codec` (seeds).
///
/// # Errors
/// If `plain` is not a batch, or the codec fails on its own output.
pub fn recompress(plain: &[u8], codec: CompressionCodec) -> Result<Bytes, String> {
    let header = BatchHeader::parse(plain).map_err(|e| format!("seed batch: {e}"))?;
    let payload = compression::compress(codec, &plain[HEADER_LEN..])
        .map_err(|e| format!("compressing a seed batch: {e}"))?;
    let mut fields = BatchFields::of(&header);
    fields.attributes = (fields.attributes & !7) | i16::from(codec.id());
    Ok(encode_batch(&fields, &payload).freeze())
}

/// A structured-mode input: `records` is an uncompressed batch whose records are taken.
pub fn structured_seed(sel: u8, codec: CompressionCodec, records: &[u8]) -> Bytes {
    let header = BatchHeader::parse(records).ok();
    let count = header.map_or(1, |h| h.record_count.clamp(0, 255) as u8);
    let ts = header.map_or(0, |h| h.base_timestamp);
    let mut out = vec![sel & !RAW_MODE, codec.id(), count, 0];
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(records.get(HEADER_LEN..).unwrap_or_default());
    debug_assert_eq!(
        out.len(),
        1 + STRUCTURED_HEADER + records.len() - HEADER_LEN
    );
    Bytes::from(out)
}

/// The batch a structured-mode input describes.
fn structured(data: &[u8]) -> Option<Bytes> {
    let (head, records) = data.split_at_checked(STRUCTURED_HEADER)?;
    let flags = head[0];
    let codec = codec(flags);
    let count = i32::from(head[1]);
    let adjust = i32::from(head[2] as i8);
    let base_timestamp = i64::from_be_bytes(head[3..11].try_into().ok()?);
    let mut attributes = i16::from(codec.id());
    if flags & 0x10 != 0 {
        attributes |= 0x10; // transactional
    }
    if flags & 0x20 != 0 {
        attributes |= 0x20; // control
    }
    if flags & 0x80 != 0 {
        attributes |= 0x08; // LogAppendTime, which producers must not set
    }
    let producer = flags & 0x40 != 0;
    let payload = match codec {
        CompressionCodec::Unknown(_) => records.to_vec(),
        known => compression::compress(known, records).ok()?,
    };
    let fields = BatchFields {
        base_offset: i64::from(flags & 0x08 != 0),
        attributes,
        last_offset_delta: (count - 1).wrapping_add(adjust),
        base_timestamp,
        max_timestamp: base_timestamp,
        // A new producer per input (unknown producers may start at any sequence), so these
        // batches reach the record checks; raw inputs exercise the sequence rules.
        producer_id: if producer {
            NEXT_PRODUCER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        } else {
            -1
        },
        producer_epoch: if producer { 0 } else { -1 },
        base_sequence: if producer { 0 } else { -1 },
        record_count: count,
    };
    Some(encode_batch(&fields, &payload).freeze())
}

/// The batch a raw-mode input holds, its framing fixed unless asked not to.
fn raw(sel: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::from(data);
    if sel & KEEP_FRAMING == 0 && b.len() >= HEADER_LEN {
        let len = i32::try_from(b.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
        b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
    b.freeze()
}

/// What one input came to.
enum Outcome {
    NotABatch,
    Framing,
    Refused,
    Duplicate,
    Appended { rebuilt: bool },
}

/// Runs one input; panics (a finding) only if an accepted batch is stored wrong.
pub fn run(data: &[u8]) {
    let t = target();
    let outcome = run_one(t, data);
    let mut st = t.stats.lock().unwrap_or_else(|e| e.into_inner());
    st.inputs += 1;
    match outcome {
        Outcome::NotABatch => st.not_a_batch += 1,
        Outcome::Framing => st.framing += 1,
        Outcome::Refused => st.refused += 1,
        Outcome::Duplicate => st.duplicates += 1,
        Outcome::Appended { rebuilt } => {
            st.appended += 1;
            st.rebuilt += u64::from(rebuilt);
        }
    }
    if st.last.elapsed() >= STATS_EVERY {
        st.last = Instant::now();
        eprintln!(
            "gregor-fuzz: {} inputs: {} no batch, {} refused by the framing check, {} refused by \
             the validator or the log, {} answered as duplicates, {} appended ({} of them \
             re-encoded)",
            st.inputs,
            st.not_a_batch,
            st.framing,
            st.refused,
            st.duplicates,
            st.appended,
            st.rebuilt
        );
    }
}

fn run_one(t: &Target, data: &[u8]) -> Outcome {
    let Some((&sel, rest)) = data.split_first() else {
        return Outcome::NotABatch;
    };
    let batch = if sel & RAW_MODE != 0 {
        raw(sel, rest)
    } else {
        match structured(rest) {
            Some(b) => b,
            None => return Outcome::NotABatch,
        }
    };
    // The produce path's request-level check comes first (`api/produce.rs`).
    let Ok(sent) = batch::validate_single_batch(&batch) else {
        return Outcome::Framing;
    };
    let cfg = config(&t.base, sel);
    t.log.set_config(cfg.clone());
    let sent_len = batch.len();
    let end_before = t.log.log_end_offset();
    let Ok(info) = t.log.append_as_leader(batch, 0) else {
        return Outcome::Refused;
    };
    if info.first_offset < end_before {
        // A producer's retry of a batch already in the log: answered with that batch's
        // offsets, nothing written.
        check_duplicate(&t.log, &sent, &info, end_before);
        return Outcome::Duplicate;
    }
    check_stored(&t.log, &cfg, &sent, &info);
    let rebuilt = info.valid_bytes != sent_len
        || cfg.compression_type.target(sent.compression_codec()) != sent.compression_codec();
    if t.log.size_in_bytes() > MAX_LOG_BYTES {
        t.log
            .truncate_fully_and_start_at(t.log.log_end_offset())
            .expect("batch_validator: emptying the log");
    }
    Outcome::Appended { rebuilt }
}

/// A duplicate's answer names a stored batch of the same producer, epoch and sequence range,
/// and the log did not grow.
fn check_duplicate(log: &Log, sent: &BatchHeader, info: &gregor::log::AppendInfo, end_before: i64) {
    assert!(
        sent.producer_id >= 0,
        "a batch without a producer id answered as a duplicate"
    );
    assert_eq!(log.log_end_offset(), end_before, "a duplicate grew the log");
    let read = log
        .read(info.first_offset, 1 << 24, None, true)
        .expect("reading back the original of a duplicate");
    let stored = read.records.read().expect("reading the stored bytes");
    let header = BatchHeader::parse(&stored).expect("the original has a valid header");
    assert_eq!(
        header.base_offset, info.first_offset,
        "duplicate's base offset"
    );
    assert_eq!(
        header.last_offset(),
        info.last_offset,
        "duplicate's last offset"
    );
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.last_offset_delta
        ),
        (
            sent.producer_id,
            sent.producer_epoch,
            sent.base_sequence,
            sent.last_offset_delta
        ),
        "a duplicate answered with another producer's or sequence's batch"
    );
}

/// The invariants of a stored batch (see the module docs). Failing to read back what the log
/// just accepted (on tmpfs) is a finding too, so those errors panic as well.
fn check_stored(log: &Log, cfg: &LogConfig, sent: &BatchHeader, info: &gregor::log::AppendInfo) {
    let read = log
        .read(info.first_offset, 1 << 24, None, true)
        .expect("reading back the batch just appended");
    let stored = read.records.read().expect("reading the stored bytes");
    let header = BatchHeader::parse(&stored).expect("the stored batch has a valid header");
    let stored = &stored[..header.total_size().min(stored.len())];
    if let Err(e) = batch::verify_crc(stored) {
        panic!(
            "stored batch at offset {} fails its CRC: {e}",
            info.first_offset
        );
    }
    assert_eq!(header.base_offset, info.first_offset, "stored base offset");
    assert_eq!(header.last_offset(), info.last_offset, "stored last offset");
    assert_eq!(header.partition_leader_epoch, 0, "stored leader epoch");
    assert_eq!(
        header.compression_codec(),
        cfg.compression_type.target(sent.compression_codec()),
        "stored codec"
    );
    assert_eq!(
        i64::from(header.record_count),
        info.last_offset - info.first_offset + 1,
        "stored record count"
    );
}
