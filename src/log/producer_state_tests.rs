//! Producer state through the real `Log`: Kafka 2.8's sequence and epoch rules on the
//! leader's append, de-duplication of retries, snapshots at roll and at close, the rebuild
//! after clean and unclean stops and after truncation, and a property test that no sequence
//! of appends, retries, truncations and restarts makes a replay of the log hold a producer's
//! batch twice or out of order.

use super::producer_snapshot;
use super::producer_state::{decrement_sequence, increment_sequence};
use super::tests::{small_config, start, start_with, tp};
use super::{Log, LogConfig, LogError, ProducerError};
use crate::protocol::batch::{self, BatchHeader, HEADER_LEN};
use crate::protocol::batch_builder::{build_batch, encode_batch, BatchFields};
use bytes::BytesMut;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A batch of `records` records from producer `pid` at `epoch`, starting at `seq`, stamped
/// now (producer state expires by the batches' timestamps).
pub(super) fn idem(
    pid: i64,
    epoch: i16,
    seq: i32,
    records: usize,
    transactional: bool,
) -> BytesMut {
    idem_at(
        crate::util::clock::now_ms(),
        pid,
        epoch,
        seq,
        records,
        transactional,
    )
}

fn idem_at(
    ts: i64,
    pid: i64,
    epoch: i16,
    seq: i32,
    records: usize,
    transactional: bool,
) -> BytesMut {
    let values: Vec<String> = (0..records)
        .map(|i| format!("p{pid}-e{epoch}-s{}", increment_sequence(seq, i as i32)))
        .collect();
    let kvs: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let plain = build_batch(0, ts, &kvs);
    let Ok(h) = BatchHeader::parse(&plain) else {
        panic!("built batch does not parse");
    };
    let fields = BatchFields {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        attributes: if transactional { 0x10 } else { 0 },
        ..BatchFields::of(&h)
    };
    encode_batch(&fields, &plain[HEADER_LEN..])
}

pub(super) fn append(log: &Log, b: BytesMut) -> Result<(i64, i64), LogError> {
    log.append_as_leader(b, 0)
        .map(|i| (i.first_offset, i.last_offset))
}

pub(super) fn producer_err(r: Result<(i64, i64), LogError>) -> ProducerError {
    match r {
        Err(LogError::Producer(p)) => p,
        other => panic!("expected a producer error, got {other:?}"),
    }
}

/// Every batch header from the log start to the end.
fn headers(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, 1 << 20, None, true).unwrap();
        let bytes = info.records.read().unwrap();
        for item in batch::batches(&bytes) {
            let (h, _) = item.unwrap();
            offset = h.next_offset();
            out.push(h);
        }
    }
    out
}

#[test]
fn sequence_arithmetic_wraps_like_kafka() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(increment_sequence(5, 4), 9);
    assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
    assert_eq!(decrement_sequence(9, 4), 5);
}

#[test]
fn kafka_sequence_rules_on_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    // Unknown producer: any first sequence (2.5+ brokers no longer send UNKNOWN_PRODUCER_ID).
    assert_eq!(append(&log, idem(7, 0, 10, 2, false)).unwrap(), (0, 1));
    assert_eq!(append(&log, idem(7, 0, 12, 3, false)).unwrap(), (2, 4));
    // A gap.
    let gap = producer_err(append(&log, idem(7, 0, 16, 1, false)));
    assert!(
        matches!(gap, ProducerError::OutOfOrderSequence(_)),
        "{gap:?}"
    );
    assert!(
        gap.to_string().contains("16 (incoming seq. number), 14"),
        "{gap}"
    );
    // A retry of a cached batch: its original offsets, nothing written.
    assert_eq!(append(&log, idem(7, 0, 10, 2, false)).unwrap(), (0, 1));
    assert_eq!(log.log_end_offset(), 5);
    // Same first sequence, different span: not the cached batch, and out of order.
    let span = producer_err(append(&log, idem(7, 0, 12, 2, false)));
    assert!(matches!(span, ProducerError::OutOfOrderSequence(_)));
    // A new epoch must start at 0 for a known producer; a lower epoch is fenced.
    let new_epoch = producer_err(append(&log, idem(7, 1, 15, 1, false)));
    assert!(
        matches!(new_epoch, ProducerError::OutOfOrderSequence(_)),
        "{new_epoch:?}"
    );
    assert_eq!(append(&log, idem(7, 1, 0, 1, false)).unwrap(), (5, 5));
    let fenced = producer_err(append(&log, idem(7, 0, 15, 1, false)));
    assert!(
        matches!(fenced, ProducerError::InvalidProducerEpoch(_)),
        "{fenced:?}"
    );
    // After the bump the old epoch's batches are forgotten: their retry is fenced too.
    let old = producer_err(append(&log, idem(7, 0, 10, 2, false)));
    assert!(matches!(old, ProducerError::InvalidProducerEpoch(_)));
    assert_eq!(log.log_end_offset(), 6);
    let entry = log.producer_entry(7).unwrap();
    assert_eq!((entry.epoch, entry.last_seq()), (1, 0));
    // Non-idempotent batches are untouched by all of this.
    let plain = build_batch(0, 1_000, &[(None, Some(b"x".as_slice()))]);
    assert_eq!(append(&log, plain).unwrap(), (6, 6));
}

#[test]
fn five_batches_are_remembered_and_older_retries_are_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    for i in 0..7 {
        assert_eq!(
            append(&log, idem(1, 0, i, 1, false)).unwrap(),
            (i64::from(i), i64::from(i))
        );
    }
    for i in 2..7 {
        assert_eq!(
            append(&log, idem(1, 0, i, 1, false)).unwrap(),
            (i64::from(i), i64::from(i))
        );
    }
    for i in 0..2 {
        let e = producer_err(append(&log, idem(1, 0, i, 1, false)));
        assert!(
            matches!(e, ProducerError::OutOfOrderSequence(_)),
            "seq {i}: {e:?}"
        );
    }
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn sequences_wrap_from_max_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    // A producer seen first near the end of the sequence space.
    append(&log, idem(3, 0, i32::MAX - 1, 1, false)).unwrap();
    // This batch spans MAX → 0 (its last sequence wraps to 1).
    assert_eq!(
        append(&log, idem(3, 0, i32::MAX, 3, false)).unwrap(),
        (1, 3)
    );
    assert_eq!(log.producer_entry(3).unwrap().last_seq(), 1);
    assert_eq!(
        append(&log, idem(3, 0, i32::MAX, 3, false)).unwrap(),
        (1, 3),
        "retry of the wrapping batch"
    );
    assert_eq!(append(&log, idem(3, 0, 2, 1, false)).unwrap(), (4, 4));
    // A batch whose base sequence jumps back to MAX is a gap, wrap or not.
    let e = producer_err(append(&log, idem(3, 0, i32::MAX, 1, false)));
    assert!(matches!(e, ProducerError::OutOfOrderSequence(_)), "{e:?}");
}

#[test]
fn an_open_transaction_refuses_non_transactional_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    append(&log, idem(9, 0, 0, 1, true)).unwrap();
    let e = producer_err(append(&log, idem(9, 0, 1, 1, false)));
    assert!(matches!(e, ProducerError::InvalidTxnState(_)), "{e:?}");
    assert_eq!(
        log.producer_entry(9).unwrap().current_txn_first_offset,
        Some(0)
    );
}

fn snapshot_files(dir: &Path) -> Vec<i64> {
    producer_snapshot::list(dir).unwrap()
}

#[test]
fn snapshots_at_roll_and_close_and_a_retry_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        // 1 KiB segments: these batches roll several times.
        for i in 0..20 {
            append(&log, idem(5, 0, i * 3, 3, false)).unwrap();
        }
        assert!(log.num_segments() > 2);
        let bases: Vec<i64> = {
            let segs = crate::util::sync::read(&log.segments);
            segs.keys().copied().skip(1).collect()
        };
        assert_eq!(
            snapshot_files(log.dir()),
            bases,
            "one snapshot per rolled-to base"
        );
        mgr.shutdown().unwrap();
        let leo = log.log_end_offset();
        assert_eq!(
            snapshot_files(log.dir()).last(),
            Some(&leo),
            "clean-shutdown snapshot"
        );
        // Kafka's bytes: version 1, one 46-byte entry for producer 5, last batch 57..59.
        let bytes = std::fs::read(producer_snapshot::snapshot_path(log.dir(), leo)).unwrap();
        assert_eq!(bytes.len(), 10 + 46);
        assert_eq!(&bytes[0..2], &[0, 1]);
        assert_eq!(&bytes[6..10], &1i32.to_be_bytes());
        assert_eq!(&bytes[10..18], &5i64.to_be_bytes());
        assert_eq!(&bytes[20..24], &59i32.to_be_bytes(), "last sequence");
        assert_eq!(&bytes[24..32], &59i64.to_be_bytes(), "last offset");
        assert_eq!(&bytes[32..36], &2i32.to_be_bytes(), "offset delta");
        log.dir().to_path_buf()
    };
    let mgr = start(dir.path());
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.dir(), log_dir);
    // The last batch is still a duplicate; the one before it is no longer cached.
    assert_eq!(append(&log, idem(5, 0, 57, 3, false)).unwrap(), (57, 59));
    let e = producer_err(append(&log, idem(5, 0, 54, 3, false)));
    assert!(matches!(e, ProducerError::OutOfOrderSequence(_)));
    assert_eq!(append(&log, idem(5, 0, 60, 1, false)).unwrap(), (60, 60));
}

#[test]
fn an_unclean_restart_rebuilds_state_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // One segment, so no roll wrote a snapshot: the state comes from replaying the log.
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    {
        let mgr = start_with(&[dir.path().to_path_buf()], config.clone());
        let log = mgr.get_or_create_log(&tp(), config.clone()).unwrap();
        for i in 0..12 {
            append(&log, idem(11, 2, i * 2, 2, false)).unwrap();
            append(&log, idem(12, 0, i, 1, false)).unwrap();
        }
        // Dropped without shutdown: no clean-shutdown snapshot.
    }
    let mgr = start_with(&[dir.path().to_path_buf()], config);
    assert!(snapshot_files(&dir.path().join("orders-0")).len() <= 1);
    let log = mgr.get_log(&tp()).unwrap();
    // Rebuilt by replay: all five cached batches, not just the last.
    for i in 7..12 {
        let dup = append(&log, idem(11, 2, i * 2, 2, false)).unwrap();
        assert_eq!(dup, (3 * i64::from(i), 3 * i64::from(i) + 1), "batch {i}");
    }
    assert_eq!(append(&log, idem(12, 0, 11, 1, false)).unwrap(), (35, 35));
    assert_eq!(log.log_end_offset(), 36);
    let e = producer_err(append(&log, idem(11, 1, 0, 1, false)));
    assert!(matches!(e, ProducerError::InvalidProducerEpoch(_)));
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        for i in 0..20 {
            append(&log, idem(5, 0, i, 1, false)).unwrap();
        }
        mgr.shutdown().unwrap();
        log.dir().to_path_buf()
    };
    let newest = *snapshot_files(&log_dir).last().unwrap();
    let path = producer_snapshot::snapshot_path(&log_dir, newest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_log(&tp()).unwrap();
    // The corrupt file was deleted and a good one written at the end again.
    let rewritten = std::fs::read(producer_snapshot::snapshot_path(&log_dir, newest)).unwrap();
    assert!(producer_snapshot::decode(&rewritten).is_ok());
    assert_eq!(log.producer_snapshot_offsets().last(), Some(&newest));
    // The older snapshot plus the replay after it know the last batch again.
    assert_eq!(append(&log, idem(5, 0, 19, 1, false)).unwrap(), (19, 19));
}

#[test]
fn truncation_and_retention_keep_state_and_snapshots_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        retention_bytes: 600,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    for i in 0..30 {
        append(&log, idem(4, 0, i, 1, false)).unwrap();
    }
    // A follower truncating to 20: batches 20.. are gone, so their retries are new writes
    // again, and the producer continues from sequence 20.
    log.truncate_to(20).unwrap();
    assert!(snapshot_files(log.dir()).iter().all(|o| *o <= 20));
    assert_eq!(log.producer_entry(4).unwrap().last_seq(), 19);
    let e = producer_err(append(&log, idem(4, 0, 25, 1, false)));
    assert!(matches!(e, ProducerError::OutOfOrderSequence(_)));
    assert_eq!(append(&log, idem(4, 0, 20, 1, false)).unwrap(), (20, 20));
    // Retention deletes old segments and their snapshots; the producer stays known.
    let before = log.num_segments();
    assert!(log.delete_old_segments(log.log_end_offset()).unwrap() > 0);
    assert!(log.num_segments() < before);
    let start_offset = log.log_start_offset();
    assert!(snapshot_files(log.dir()).iter().all(|o| *o >= start_offset));
    assert_eq!(append(&log, idem(4, 0, 21, 1, false)).unwrap(), (21, 21));
    // Full truncation forgets everything.
    log.truncate_fully_and_start_at(100).unwrap();
    assert!(snapshot_files(log.dir()).is_empty());
    assert!(log.producer_entry(4).is_none());
}

/// A rebuild after truncation that fails part-way (its snapshot write gets EMFILE, which
/// does not take the directory offline) leaves the state stale: appends and retried
/// truncations fail until a rebuild succeeds, and the first append after that sees the
/// producer as the truncated log has it.
#[test]
fn a_failed_rebuild_after_truncation_is_repaired_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    for i in 0..30 {
        append(&log, idem(4, 0, i, 1, false)).unwrap();
    }
    let target = 21;
    assert!(
        !snapshot_files(log.dir()).contains(&target),
        "the rebuild must have a snapshot to write at {target}"
    );
    let blocked = producer_snapshot::snapshot_path(log.dir(), target);
    producer_snapshot::FAIL_WRITE.with(|f| *f.borrow_mut() = Some(blocked.clone()));
    let e = log.truncate_to(target).unwrap_err();
    assert!(
        matches!(&e, LogError::OutOfDescriptors { path, .. } if *path == blocked),
        "{e}"
    );
    assert_eq!(log.log_end_offset(), target);
    // The batch at 21 was cut: its retry must not be answered from a half-built state.
    let e = append(&log, idem(4, 0, 21, 1, false)).unwrap_err();
    assert!(matches!(e, LogError::OutOfDescriptors { .. }), "{e}");
    assert!(
        log.truncate_to(target).is_err(),
        "a retried truncation rebuilds again"
    );
    let mut replicated = idem(4, 0, 21, 1, false);
    batch::set_base_offset(&mut replicated, target).unwrap();
    let e = log.append_as_follower(replicated.freeze()).unwrap_err();
    assert!(
        matches!(e, LogError::OutOfDescriptors { .. }),
        "follower append: {e}"
    );
    assert!(
        log.roll().is_err(),
        "a roll would snapshot the half-built state"
    );
    assert_eq!(log.log_end_offset(), target);
    producer_snapshot::FAIL_WRITE.with(|f| *f.borrow_mut() = None);
    assert_eq!(
        append(&log, idem(4, 0, 20, 1, false)).unwrap(),
        (20, 20),
        "a retry of a batch still in the log gets its original offset"
    );
    let e = producer_err(append(&log, idem(4, 0, 25, 1, false)));
    assert!(matches!(e, ProducerError::OutOfOrderSequence(_)));
    assert_eq!(append(&log, idem(4, 0, 21, 1, false)).unwrap(), (21, 21));
    assert!(snapshot_files(log.dir()).contains(&target));
}

#[test]
fn followers_build_the_same_state_from_replicated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let leader = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    let follower_tp = crate::log::TopicPartition::new("orders", 1);
    let follower = mgr.get_or_create_log(&follower_tp, small_config()).unwrap();
    for i in 0..8 {
        append(&leader, idem(21, 0, i * 2, 2, false)).unwrap();
    }
    let info = leader.read(0, 1 << 20, None, true).unwrap();
    follower
        .append_as_follower(info.records.read().unwrap())
        .unwrap();
    assert_eq!(follower.producer_entry(21), leader.producer_entry(21));
    // The follower, as the new leader, answers the old leader's last batches as duplicates.
    assert_eq!(
        append(&follower, idem(21, 0, 14, 2, false)).unwrap(),
        (14, 15)
    );
    assert_eq!(follower.log_end_offset(), 16);
}

#[test]
fn expired_producers_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        producer_expiration_ms: 1_000,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append(&log, idem_at(1_000, 8, 0, 0, 1, false)).unwrap();
    // The batch carries timestamp 1000 (CreateTime): expiry compares it with the clock.
    assert_eq!(log.remove_expired_producers(1_999), 0);
    assert_eq!(log.remove_expired_producers(2_000), 1);
    assert!(log.producer_entry(8).is_none());
    // Unknown again: any sequence is accepted.
    assert_eq!(append(&log, idem(8, 0, 40, 1, false)).unwrap(), (1, 1));
}

#[derive(Debug, Clone)]
enum Op {
    /// The producer's next batch of this many records.
    Send {
        producer: usize,
        records: usize,
    },
    /// A retry of the producer's k-th most recent acknowledged batch.
    Retry {
        producer: usize,
        back: usize,
    },
    /// A follower-style truncation to this fraction of the log end.
    Truncate {
        per_mille: u16,
    },
    Restart {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, 1..4usize).prop_map(|(producer, records)| Op::Send { producer, records }),
        3 => (0..3usize, 0..8usize).prop_map(|(producer, back)| Op::Retry { producer, back }),
        1 => (0..1000u16).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// An acknowledged batch: first sequence, record count, (first, last) offset.
type Acked = (i32, usize, (i64, i64));

/// Per producer, the sequences a replay of the log holds, in log order.
fn replay(log: &Log) -> BTreeMap<i64, Vec<i32>> {
    let mut out: BTreeMap<i64, Vec<i32>> = BTreeMap::new();
    for h in headers(log) {
        if h.producer_id >= 0 {
            let seqs = out.entry(h.producer_id).or_default();
            for i in 0..=h.last_offset_delta {
                seqs.push(increment_sequence(h.base_sequence, i));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replay_never_holds_a_batch_twice_or_out_of_order(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut mgr = Some(start(dir.path()));
        let mut log = mgr.as_ref().unwrap().get_or_create_log(&tp(), small_config()).unwrap();
        // Per producer: the next sequence to send and the acknowledged batches.
        let mut sent: Vec<(i32, Vec<Acked>)> = vec![(0, Vec::new()); 3];
        for op in ops {
            match op {
                Op::Send { producer, records } => {
                    let (next, acked) = &mut sent[producer];
                    let r = append(&log, idem(100 + producer as i64, 0, *next, records, false));
                    if let Ok(offsets) = r {
                        acked.push((*next, records, offsets));
                        *next = increment_sequence(*next, records as i32);
                    }
                }
                Op::Retry { producer, back } => {
                    let (_, acked) = &sent[producer];
                    if let Some(&(seq, records, offsets)) = acked.iter().rev().nth(back) {
                        let r = append(&log, idem(100 + producer as i64, 0, seq, records, false));
                        // Written before and still in the log: only ever a duplicate with
                        // the original offsets, or refused; never appended again.
                        if let Ok(got) = r {
                            prop_assert_eq!(got, offsets, "retry of seq {} answered elsewhere", seq);
                        }
                    }
                }
                Op::Truncate { per_mille } => {
                    let to = log.log_end_offset() * i64::from(per_mille) / 1000;
                    log.truncate_to(to).unwrap();
                    let end = log.log_end_offset();
                    for (next, acked) in &mut sent {
                        // The lost batches are the producer's to send again, from the first.
                        if let Some(first_lost) = acked.iter().position(|(_, _, o)| o.1 >= end) {
                            *next = acked[first_lost].0;
                            acked.truncate(first_lost);
                        }
                    }
                }
                Op::Restart { clean } => {
                    let m = mgr.take().unwrap();
                    if clean {
                        m.shutdown().unwrap();
                    }
                    drop(m);
                    let m = start(dir.path());
                    log = m.get_log(&tp()).unwrap();
                    mgr = Some(m);
                }
            }
            for (pid, seqs) in replay(&log) {
                let expected: Vec<i32> = (0..seqs.len() as i32).collect();
                prop_assert_eq!(&seqs, &expected, "producer {} replays out of order or twice", pid);
            }
        }
    }
}
