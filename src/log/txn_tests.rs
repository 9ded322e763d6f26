//! Transactions in the log layer, on real files: markers appended with the coordinator's
//! origin, the last stable offset (Kafka's ongoing and unreplicated transactions), the
//! `.txnindex` entries and the LSO each stores (cases from Kafka's `LogTest` and
//! `ProducerStateManagerTest`), the aborted list of a read_committed fetch, the epoch checks
//! on markers, and the state and index after truncation, clean and unclean restarts.

use super::producer_state_tests::{append, idem, producer_err};
use super::tests::{small_config, start_with, tp};
use super::{AbortedTxn, AppendOrigin, Log, LogConfig, LogError, LogManager, ProducerError};
use crate::protocol::control::{encode_marker, ControlType, EndTxnMarker};
use std::path::Path;
use std::sync::Arc;

fn marker(
    log: &Log,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<i64, LogError> {
    let m = EndTxnMarker {
        control: if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        },
        coordinator_epoch,
    };
    let b = encode_marker(pid, epoch, m, crate::util::clock::now_ms());
    log.append_from(b, 0, AppendOrigin::Coordinator)
        .map(|i| i.first_offset)
}

fn txn(log: &Log, pid: i64, seq: i32, records: usize) -> (i64, i64) {
    append(log, idem(pid, 0, seq, records, true)).unwrap()
}

fn one_segment(dir: &Path) -> (LogManager, Arc<Log>, LogConfig) {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mgr = start_with(&[dir.to_path_buf()], config.clone());
    let log = mgr.get_or_create_log(&tp(), config.clone()).unwrap();
    (mgr, log, config)
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

#[test]
fn the_lso_waits_for_the_marker_and_for_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (_mgr, log, _) = one_segment(dir.path());
    append(&log, idem(1, 0, 0, 2, false)).unwrap(); // 0-1, not transactional
    assert_eq!(log.last_stable_offset(2), 2, "no transaction: LSO = HW");
    assert_eq!(txn(&log, 7, 0, 3), (2, 4));
    assert_eq!(
        log.last_stable_offset(5),
        2,
        "held at the open transaction's first offset"
    );
    assert_eq!(log.last_stable_offset(1), 1, "never above the HW");
    assert_eq!(log.ongoing_transactions(), vec![(2, 7)]);
    let at = marker(&log, 7, 0, true, 0).unwrap();
    assert_eq!(at, 5);
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(log.last_stable_offset(5), 2, "marker not yet below the HW");
    assert_eq!(
        log.last_stable_offset(6),
        6,
        "replicated: the LSO moves to the HW"
    );
    assert!(
        log.aborted_index_entries().unwrap().is_empty(),
        "commits are not indexed"
    );
}

#[test]
fn aborts_are_indexed_with_the_lso_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (_mgr, log, _) = one_segment(dir.path());
    // Producer 1 opens at 0, producer 2 at 2; 1 aborts at 4: the LSO it leaves is 2, where
    // the other producer's transaction begins. Then 2 aborts at 6 with nothing else open.
    txn(&log, 1, 0, 2); // 0-1
    txn(&log, 2, 0, 2); // 2-3
    assert_eq!(marker(&log, 1, 0, false, 0).unwrap(), 4);
    txn(&log, 2, 2, 1); // 5, same transaction
    assert_eq!(marker(&log, 2, 0, false, 0).unwrap(), 6);
    assert_eq!(
        log.aborted_index_entries().unwrap(),
        vec![aborted(1, 0, 4, 2), aborted(2, 2, 6, 7)]
    );
    assert_eq!(log.last_stable_offset(7), 7);
    // A read_committed fetch from 3 must drop producer 1 (its abort is at 4 ≥ 3) and 2.
    let list = log.collect_aborted_transactions(3).unwrap();
    assert_eq!(list, vec![aborted(1, 0, 4, 2), aborted(2, 2, 6, 7)]);
    // From 5: producer 1's transaction ended before; 2's is still being read.
    let list = log.collect_aborted_transactions(5).unwrap();
    assert_eq!(list, vec![aborted(2, 2, 6, 7)]);
    // A new transaction of producer 1 after its abort.
    txn(&log, 1, 2, 1); // 7
    assert_eq!(log.last_stable_offset(8), 7);
}

#[test]
fn marker_epochs_are_checked_for_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let (_mgr, log, _) = one_segment(dir.path());
    append(&log, idem(3, 2, 0, 1, true)).unwrap();
    let e = marker(&log, 3, 1, true, 5);
    assert!(matches!(
        e.map_err(|e| producer_err(Err(e))),
        Err(ProducerError::InvalidProducerEpoch(_))
    ));
    assert_eq!(log.log_end_offset(), 1, "a refused marker writes nothing");
    marker(&log, 3, 2, true, 5).unwrap();
    let e = marker(&log, 3, 2, false, 4);
    assert!(matches!(
        e.map_err(|e| producer_err(Err(e))),
        Err(ProducerError::CoordinatorFenced(_))
    ));
    // A marker with a bumped epoch (the coordinator fenced the producer) is accepted and
    // moves the producer to it: its old epoch is now refused on produce.
    append(&log, idem(3, 2, 1, 1, true)).unwrap();
    marker(&log, 3, 3, false, 5).unwrap();
    let e = producer_err(append(&log, idem(3, 2, 2, 1, true)));
    assert!(matches!(e, ProducerError::InvalidProducerEpoch(_)));
    // A client may still not write a control batch.
    let m = EndTxnMarker {
        control: ControlType::Commit,
        coordinator_epoch: 5,
    };
    let client = log.append_as_leader(encode_marker(3, 3, m, 0), 0);
    assert!(matches!(client, Err(LogError::Rejected(_))), "{client:?}");
    // A non-transactional batch while a transaction is open is refused.
    append(&log, idem(9, 0, 0, 1, true)).unwrap();
    let e = producer_err(append(&log, idem(9, 0, 1, 1, false)));
    assert!(matches!(e, ProducerError::InvalidTxnState(_)));
}

#[test]
fn truncation_reopens_a_transaction_and_drops_its_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_mgr, log, _) = one_segment(dir.path());
    txn(&log, 1, 0, 2); // 0-1
    marker(&log, 1, 0, false, 0).unwrap(); // 2
    txn(&log, 4, 0, 1); // 3
    assert_eq!(log.aborted_index_entries().unwrap().len(), 1);
    log.truncate_to(2).unwrap();
    assert!(log.aborted_index_entries().unwrap().is_empty());
    assert_eq!(log.ongoing_transactions(), vec![(0, 1)]);
    assert_eq!(log.last_stable_offset(2), 0);
    // The coordinator writes the marker again (to the new leader) and it is indexed again.
    marker(&log, 1, 0, false, 0).unwrap();
    assert_eq!(
        log.aborted_index_entries().unwrap(),
        vec![aborted(1, 0, 2, 3)]
    );
}

#[test]
fn aborted_transactions_are_found_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(); // 1 KiB segments: a roll every few batches
    let mgr = start_with(&[dir.path().to_path_buf()], config.clone());
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    let mut expected = Vec::new();
    for round in 0..24i32 {
        let pid = 100 + i64::from(round % 3);
        let seq = round / 3 * 4;
        let (first, _) = txn(&log, pid, seq, 4);
        let commit = round % 2 == 0;
        let at = marker(&log, pid, 0, commit, 0).unwrap();
        if !commit {
            expected.push(aborted(pid, first, at, at + 1));
        }
    }
    assert!(log.num_segments() >= 3, "the test needs several segments");
    assert_eq!(log.aborted_index_entries().unwrap(), expected);
    // From the start, the list covers the first segment's range; from the last abort's
    // first offset it holds that abort.
    let last = expected.last().copied().unwrap();
    let list = log.collect_aborted_transactions(last.first_offset).unwrap();
    assert!(list.contains(&last), "{list:?}");
    let first = log.collect_aborted_transactions(0).unwrap();
    assert!(first.iter().all(|t| t.last_offset >= 0));
    assert!(
        first.len() < expected.len(),
        "the walk stops at the first segment's bound"
    );
}

#[test]
fn a_clean_restart_keeps_open_transactions_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = {
        let (mgr, log, config) = one_segment(dir.path());
        txn(&log, 1, 0, 2); // 0-1
        marker(&log, 1, 0, false, 3).unwrap(); // 2
        txn(&log, 2, 0, 2); // 3-4, left open
        mgr.shutdown().unwrap();
        config
    };
    let mgr = start_with(&[dir.path().to_path_buf()], config);
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.ongoing_transactions(), vec![(3, 2)]);
    assert_eq!(log.last_stable_offset(5), 3);
    assert_eq!(
        log.aborted_index_entries().unwrap(),
        vec![aborted(1, 0, 2, 3)]
    );
    // The coordinator's epoch survived in the snapshot.
    let e = marker(&log, 1, 0, true, 2);
    assert!(matches!(
        e.map_err(|e| producer_err(Err(e))),
        Err(ProducerError::CoordinatorFenced(_))
    ));
}

#[test]
fn an_unclean_restart_rebuilds_the_index_and_the_lso_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, config, before) = {
        let (_mgr, log, config) = one_segment(dir.path());
        txn(&log, 1, 0, 2); // 0-1
        txn(&log, 2, 0, 1); // 2
        marker(&log, 1, 0, false, 0).unwrap(); // 3: LSO left = 2
        marker(&log, 2, 0, false, 0).unwrap(); // 4
        txn(&log, 3, 0, 1); // 5, left open
        let before = log.aborted_index_entries().unwrap();
        (log.dir().to_path_buf(), config, before)
        // Dropped without shutdown: the whole log is recovered.
    };
    assert_eq!(before, vec![aborted(1, 0, 3, 2), aborted(2, 2, 4, 5)]);
    // Damage the index: recovery must not trust it.
    let index = log_dir.join("00000000000000000000.txnindex");
    std::fs::write(&index, [7u8; 40]).unwrap();
    {
        let mgr = start_with(&[dir.path().to_path_buf()], config.clone());
        let log = mgr.get_log(&tp()).unwrap();
        assert_eq!(log.aborted_index_entries().unwrap(), before);
        assert_eq!(std::fs::read(&index).unwrap().len(), 2 * 34);
        assert_eq!(log.ongoing_transactions(), vec![(5, 3)]);
        assert_eq!(log.last_stable_offset(6), 5);
        // Stopped uncleanly again.
    }
    // Without damage, the unclean stop alone makes recovery rebuild the index: an index
    // that lost its entries (never flushed) comes back whole.
    std::fs::remove_file(&index).unwrap();
    let mgr = start_with(&[dir.path().to_path_buf()], config);
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.aborted_index_entries().unwrap(), before);
    assert_eq!(log.last_stable_offset(6), 5);
}

#[test]
fn deleting_a_segment_takes_its_index_along() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let mgr = start_with(&[dir.path().to_path_buf()], config.clone());
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    for round in 0..6 {
        txn(&log, 40, round * 4, 4);
        marker(&log, 40, 0, false, 0).unwrap();
    }
    let files = |suffix: &str| {
        std::fs::read_dir(log.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(suffix))
            })
            .count()
    };
    let indexes = files(".txnindex");
    assert!(indexes >= 2, "several segments hold aborts");
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(files(".txnindex"), 0);
    assert!(log.aborted_index_entries().unwrap().is_empty());
    assert!(log.ongoing_transactions().is_empty());
}
