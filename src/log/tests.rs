//! End-to-end tests of the log layer on real files: appends and reads across rolls, restart
//! after clean and unclean stops, retention, truncation, replication appends and the
//! background tasks.

use super::*;
use crate::protocol::batch::{self, build_batch, BatchHeader};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        max_index_size: 4096,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

/// A manager in `dir` and its log of `tp()`, with 1 MiB segments (tests that stay in one).
pub(super) fn one_segment_log(dir: &Path) -> (LogManager, Arc<Log>) {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mgr = start_with(&[dir.to_path_buf()], config.clone());
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    (mgr, log)
}

pub(super) fn start_with(dirs: &[PathBuf], config: LogConfig) -> LogManager {
    let per_topic = config.clone();
    LogManager::startup(dirs, 1, "cluster-a", config, &move |_| per_topic.clone()).unwrap()
}

pub(super) fn start(dir: &Path) -> LogManager {
    start_with(&[dir.to_path_buf()], small_config())
}

pub(super) fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

/// A two-record batch whose values identify it.
pub(super) fn batch_for(i: i64, ts: i64) -> BytesMut {
    let v1 = format!("value-{i}-a-{}", "x".repeat(60));
    let v2 = format!("value-{i}-b-{}", "y".repeat(60));
    build_batch(
        0,
        ts,
        &[
            (Some(b"k".as_slice()), Some(v1.as_bytes())),
            (None, Some(v2.as_bytes())),
        ],
    )
}

pub(super) fn append_batches(log: &Log, from: i64, n: i64, ts0: i64) {
    for i in from..from + n {
        let info = log.append_as_leader(batch_for(i, ts0 + 10 * i), 0).unwrap();
        assert_eq!(info.first_offset, 2 * i);
        assert_eq!(info.last_offset, 2 * i + 1);
    }
}

/// Every batch from the log start to the LEO, CRC-checked.
fn read_all(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, 1 << 20, None, false).unwrap();
        assert!(!info.records.is_empty(), "no data at {offset}");
        for item in batch::batches(&info.records.read().unwrap()) {
            let (h, _) = item.unwrap();
            offset = h.next_offset();
            out.push(h);
        }
    }
    out
}

fn segment_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn round_trip_across_rolls_and_index_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    append_batches(&log, 0, 60, 1_000);
    assert_eq!(log.log_end_offset(), 120);
    assert!(log.num_segments() > 10, "segments: {}", log.num_segments());
    let logs = segment_files(log.dir(), ".log");
    assert_eq!(logs.len(), log.num_segments());
    assert_eq!(logs[0].file_name().unwrap(), "00000000000000000000.log");

    // Every offset resolves (via the sparse index plus a scan) to the batch holding it.
    for offset in 0..120 {
        let info = log.read(offset, 1 << 20, None, false).unwrap();
        let first = BatchHeader::parse(&info.records.read().unwrap()).unwrap();
        assert!(
            first.base_offset <= offset && offset <= first.last_offset(),
            "offset {offset}"
        );
        assert_eq!(info.log_end_offset, 120);
        for item in batch::batches(&info.records.read().unwrap()) {
            item.unwrap();
        }
    }
    let headers = read_all(&log);
    assert_eq!(headers.len(), 60);
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.base_offset, 2 * i as i64);
        assert_eq!(h.partition_leader_epoch, 0);
    }
    // Payload survives byte for byte.
    let info = log.read(84, 1 << 20, None, false).unwrap();
    let expected = batch_for(42, 1_000 + 420);
    assert_eq!(
        &info.records.read().unwrap()[batch::HEADER_LEN..expected.len()],
        &expected[batch::HEADER_LEN..]
    );
}

#[test]
fn index_entries_point_at_batch_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (mgr, log) = one_segment_log(dir.path());
    append_batches(&log, 0, 40, 0);
    mgr.shutdown().unwrap();
    let index = std::fs::read(log.dir().join("00000000000000000000.index")).unwrap();
    let data = std::fs::read(log.dir().join("00000000000000000000.log")).unwrap();
    assert!(
        index.len() >= 8 * 10 && index.len().is_multiple_of(8),
        "index len {}",
        index.len()
    );
    for entry in index.chunks(8) {
        let rel = i32::from_be_bytes(entry[..4].try_into().unwrap());
        let pos = i32::from_be_bytes(entry[4..].try_into().unwrap()) as usize;
        let h = BatchHeader::parse(&data[pos..]).unwrap();
        assert_eq!(
            h.last_offset(),
            i64::from(rel),
            "entry maps the batch's last offset"
        );
    }
    let tindex = std::fs::read(log.dir().join("00000000000000000000.timeindex")).unwrap();
    assert_eq!(tindex.len() % 12, 0);
    assert!(!tindex.is_empty());
}

#[test]
fn list_offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    append_batches(&log, 0, 30, 10_000);
    for i in 0..30 {
        let ts = 10_000 + 10 * i;
        assert_eq!(
            log.fetch_offset_by_timestamp(ts).unwrap(),
            Some((2 * i, ts))
        );
        assert_eq!(
            log.fetch_offset_by_timestamp(ts - 5).unwrap(),
            Some((2 * i, ts))
        );
    }
    assert_eq!(log.fetch_offset_by_timestamp(0).unwrap(), Some((0, 10_000)));
    assert_eq!(log.fetch_offset_by_timestamp(99_999).unwrap(), None);
    assert_eq!(
        log.fetch_offset_by_timestamp(EARLIEST_TIMESTAMP).unwrap(),
        Some((0, -1))
    );
    assert_eq!(
        log.fetch_offset_by_timestamp(LATEST_TIMESTAMP).unwrap(),
        Some((60, -1))
    );
}

#[test]
fn restart_after_clean_shutdown_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, before, log_dir) = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        append_batches(&log, 0, 25, 0);
        log.assign_epoch_start_offset(0, 0).unwrap();
        mgr.shutdown().unwrap();
        assert!(
            log.append_as_leader(batch_for(0, 0), 0).is_err(),
            "closed after shutdown"
        );
        (
            log.log_end_offset(),
            read_all_after_reopen_check(&log),
            log.dir().to_path_buf(),
        )
    };
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("recovery-point-offset-checkpoint")).unwrap(),
        format!("0\n1\norders 0 {leo}\n")
    );
    // Trimmed indexes: exact entry multiples, far below the 4096-byte preallocation.
    for f in segment_files(&log_dir, ".index") {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len % 8 == 0 && len < 4096, "{f:?}: {len}");
    }
    for f in segment_files(&log_dir, ".timeindex") {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len % 12 == 0 && len < 4096, "{f:?}: {len}");
    }

    let mgr = start(dir.path());
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.recovery_point(), leo);
    assert_eq!(read_all(&log), before);
    assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(0));
    append_batches(&log, 25, 5, 0);
    assert_eq!(read_all(&log).len(), 30);
}

fn read_all_after_reopen_check(log: &Log) -> Vec<BatchHeader> {
    // Reads fail once closed, so capture through the segment files instead.
    let mut out = Vec::new();
    for f in segment_files(log.dir(), ".log") {
        let data = std::fs::read(f).unwrap();
        out.extend(batch::batches(&data).map(|r| r.unwrap().0));
    }
    out
}

#[test]
fn corrupt_index_is_rebuilt_after_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        append_batches(&log, 0, 20, 0);
        mgr.shutdown().unwrap();
        log.dir().to_path_buf()
    };
    let indexes = segment_files(&log_dir, ".index");
    std::fs::write(&indexes[0], [1u8, 2, 3, 4, 5, 6, 7]).unwrap();
    std::fs::remove_file(segment_files(&log_dir, ".timeindex")[1].clone()).unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    for offset in 0..40 {
        let h = BatchHeader::parse(
            &log.read(offset, 4096, None, false)
                .unwrap()
                .records
                .read()
                .unwrap(),
        )
        .unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}

/// Damages the active segment: cuts it `cut_into_last` bytes into its last batch and
/// appends `garbage`. Returns the base offset of the damaged batch.
fn damage_last_batch(segment: &Path, cut_into_last: usize, garbage: &[u8]) -> i64 {
    let data = std::fs::read(segment).unwrap();
    let batches: Vec<_> = batch::batches(&data).map(|r| r.unwrap()).collect();
    let (h, range) = batches.last().unwrap().clone();
    let mut damaged = data[..range.start + cut_into_last.min(range.len() - 1)].to_vec();
    damaged.extend_from_slice(garbage);
    std::fs::write(segment, damaged).unwrap();
    h.base_offset
}

#[test]
fn unclean_recovery_truncates_at_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        append_batches(&log, 0, 20, 0);
        log.dir().to_path_buf()
        // Dropped without shutdown: no marker, untrimmed indexes, as after a crash.
    };
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let active = segment_files(&log_dir, ".log").pop().unwrap();
    let damaged_base = damage_last_batch(&active, 30, &[0xAB; 100]);

    let mgr = start(dir.path());
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), damaged_base);
    let headers = read_all(&log);
    assert_eq!(headers.len() as i64, damaged_base / 2);
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.base_offset, 2 * i as i64);
    }
    assert!(log.read(damaged_base + 1, 4096, None, false).is_err());
    append_batches(&log, damaged_base / 2, 5, 0);
    assert_eq!(read_all(&log).len() as i64, damaged_base / 2 + 5);
}

#[test]
fn unclean_recovery_deletes_segments_after_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = {
        let mgr = start(dir.path());
        let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
        append_batches(&log, 0, 20, 0);
        log.dir().to_path_buf()
    };
    let logs = segment_files(&log_dir, ".log");
    assert!(logs.len() >= 4);
    let damaged_base = damage_last_batch(&logs[1], 10, b"garbage");

    let mgr = start(dir.path());
    let log = mgr.get_log(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), damaged_base);
    assert_eq!(log.num_segments(), 2);
    assert_eq!(segment_files(&log_dir, ".log").len(), 2);
    assert_eq!(read_all(&log).len() as i64, damaged_base / 2);
    append_batches(&log, damaged_base / 2, 3, 0);
    assert_eq!(log.log_end_offset(), damaged_base + 6);
}

#[test]
fn meta_properties_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().to_path_buf()];
    start(dir.path()).shutdown().unwrap();
    let err = LogManager::startup(&dirs, 2, "cluster-a", small_config(), &|_| small_config())
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::MetaMismatch {
                field: "broker.id",
                ..
            }
        ),
        "{err}"
    );
    let err = LogManager::startup(&dirs, 1, "cluster-b", small_config(), &|_| small_config())
        .unwrap_err();
    assert!(
        err.to_string().contains("cluster-a") && err.to_string().contains("cluster-b"),
        "{err}"
    );
    let mgr = start(dir.path());
    let second = LogManager::startup(&dirs, 1, "cluster-a", small_config(), &|_| small_config());
    assert!(matches!(second, Err(LogError::DirLocked { .. })));
    drop(mgr);
}

#[test]
fn retention_by_size_respects_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        retention_bytes: 2048,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append_batches(&log, 0, 40, crate::util::clock::now_ms());
    let segments = log.num_segments();
    assert!(log.size_in_bytes() > 4096);

    assert_eq!(
        log.delete_old_segments(0).unwrap(),
        0,
        "nothing is below HW 0"
    );
    let hw = log.log_end_offset();
    let deleted = log.delete_old_segments(hw).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.num_segments(), segments - deleted);
    assert!(log.size_in_bytes() >= 2048 - 1024 && log.size_in_bytes() <= 2048 + 1024);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        log.read(0, 100, None, false),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        BatchHeader::parse(
            &log.read(start, 4096, None, false)
                .unwrap()
                .records
                .read()
                .unwrap()
        )
        .unwrap()
        .base_offset,
        start
    );
    assert_eq!(
        segment_files(log.dir(), ".log").len(),
        log.num_segments(),
        "files removed"
    );
}

#[test]
fn retention_by_time_deletes_old_segments_and_rolls_if_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        retention_ms: 60_000,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append_batches(&log, 0, 20, 1_000); // timestamps from 1970: long expired
    let bases: Vec<i64> = segment_files(log.dir(), ".log")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    // HW at the start of the third segment: only the first two are eligible.
    assert_eq!(log.delete_old_segments(bases[2]).unwrap(), 2);
    assert_eq!(log.log_start_offset(), bases[2]);

    let leo = log.log_end_offset();
    let deleted = log.delete_old_segments(leo).unwrap();
    assert_eq!(deleted, bases.len() - 2);
    assert_eq!(log.num_segments(), 1, "rolled a fresh active segment");
    assert_eq!(log.log_start_offset(), leo);
    assert!(log.read(leo, 100, None, false).unwrap().records.is_empty());
    append_batches(&log, leo / 2, 1, crate::util::clock::now_ms());
    assert_eq!(
        log.delete_old_segments(log.log_end_offset()).unwrap(),
        0,
        "fresh data stays"
    );
}

#[test]
fn log_append_time_and_message_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        max_message_bytes: 400,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    let before = crate::util::clock::now_ms();
    let info = log.append_as_leader(batch_for(0, 5), 7).unwrap();
    assert!(info.log_append_time >= before);
    assert_eq!(info.max_timestamp, info.log_append_time);
    let records = log
        .read(0, 4096, None, false)
        .unwrap()
        .records
        .read()
        .unwrap();
    let h = batch::validate_single_batch(&records).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, info.log_append_time);
    assert_eq!(h.partition_leader_epoch, 7);
    assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(7));

    let big = vec![0u8; 500];
    match log.append_as_leader(build_batch(0, 0, &[(None, Some(&big))]), 7) {
        Err(LogError::MessageTooLarge { size, max: 400 }) => assert!(size > 500),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), 2);
}

fn follower_batches(base: i64, n: i64, epoch: i32) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..n {
        let mut b = batch_for(base / 2 + i, 100 + i);
        batch::set_base_offset(&mut b, base + 2 * i).unwrap();
        batch::set_partition_leader_epoch(&mut b, epoch).unwrap();
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn follower_append_truncation_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    let info = log
        .append_as_follower(follower_batches(0, 10, 2).freeze())
        .unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 19));
    let mut more = follower_batches(20, 5, 4);
    let partial = follower_batches(30, 1, 4);
    more.extend_from_slice(&partial[..40]);
    let info = log.append_as_follower(more.freeze()).unwrap();
    assert_eq!(info.last_offset, 29, "trailing partial batch ignored");
    assert!(log.num_segments() > 2, "{}", log.num_segments());
    assert_eq!(
        log.leader_epoch_cache().entries(),
        vec![
            EpochEntry {
                epoch: 2,
                start_offset: 0
            },
            EpochEntry {
                epoch: 4,
                start_offset: 20
            }
        ]
    );
    assert_eq!(log.end_offset_for_epoch(2), (2, 20));
    assert_eq!(log.end_offset_for_epoch(4), (4, 30));

    match log.append_as_follower(follower_batches(40, 1, 4).freeze()) {
        Err(LogError::OffsetMismatch {
            expected: 30,
            found: 40,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut bad = follower_batches(30, 1, 4);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        log.append_as_follower(bad.freeze()),
        Err(LogError::InvalidBatch(_))
    ));

    // Truncating into the middle of a batch drops it whole, and epochs from that point.
    log.truncate_to(21).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(2));
    assert_eq!(read_all(&log).len(), 10);
    log.append_as_follower(follower_batches(20, 2, 5).freeze())
        .unwrap();
    assert_eq!(log.log_end_offset(), 24);

    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert_eq!(log.leader_epoch_cache().latest_epoch(), None);
    let info = log.append_as_leader(batch_for(0, 0), 6).unwrap();
    assert_eq!(info.first_offset, 100);
    assert_eq!(segment_files(log.dir(), ".log").len(), 1);
}

#[test]
fn flush_messages_advances_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        flush_interval_messages: 4,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append_batches(&log, 0, 1, 0);
    assert_eq!(log.recovery_point(), 0);
    append_batches(&log, 1, 1, 0);
    assert_eq!(log.recovery_point(), 4);
    append_batches(&log, 2, 1, 0);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 6);
}

#[test]
fn delete_log_and_dir_placement() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    let mgr = start_with(&dirs, small_config());
    for p in 0..4 {
        mgr.get_or_create_log(&TopicPartition::new("t", p), small_config())
            .unwrap();
    }
    let in_a = mgr
        .all_logs()
        .iter()
        .filter(|(_, l)| l.dir().parent() == Some(a.path()))
        .count();
    assert_eq!(in_a, 2);

    let victim = TopicPartition::new("t", 1);
    let log = mgr.get_log(&victim).unwrap();
    append_batches(&log, 0, 3, 0);
    let old_dir = log.dir().to_path_buf();
    mgr.delete_log(&victim).unwrap();
    assert!(mgr.get_log(&victim).is_none());
    assert!(!old_dir.exists());
    assert!(log.append_as_leader(batch_for(0, 0), 0).is_err());
    mgr.delete_log(&victim).unwrap();

    let updated = LogConfig {
        retention_ms: 5,
        ..small_config()
    };
    mgr.update_config("t", updated.clone());
    assert_eq!(
        mgr.get_log(&TopicPartition::new("t", 0)).unwrap().config(),
        updated
    );

    mgr.shutdown().unwrap();
    drop(mgr);
    let mgr = start_with(&dirs, small_config());
    assert_eq!(mgr.all_logs().len(), 3);
}

#[tokio::test]
async fn background_tasks_apply_retention_and_stop_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let config = LogConfig {
        retention_bytes: 1024,
        ..small_config()
    };
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append_batches(&log, 0, 20, 0);
    let before = log.num_segments();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let intervals = BackgroundIntervals {
        retention_check_ms: 20,
        flush_check_ms: 20,
        recovery_point_checkpoint_ms: 20,
        log_start_offset_checkpoint_ms: 20,
        producer_expiration_check_ms: 20,
    };
    let hw_log = Arc::clone(&log);
    let hw: HighWatermarkFn = Arc::new(move |_| Some(hw_log.log_end_offset()));
    let task = tokio::spawn({
        let mgr = mgr.clone();
        async move { mgr.run_background(intervals, hw, rx).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(log.num_segments() < before);
    assert!(dir.path().join("recovery-point-offset-checkpoint").exists());
    let checkpoint =
        std::fs::read_to_string(dir.path().join("log-start-offset-checkpoint")).unwrap();
    assert_eq!(
        checkpoint,
        format!("0\n1\norders 0 {}\n", log.log_start_offset())
    );
    tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any tail damage to a real segment recovers without panicking: the log keeps a
    /// readable prefix and accepts appends afterwards.
    #[test]
    fn garbage_tail_recovers_without_panic(
        n in 1i64..12,
        cut in 0usize..400,
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = {
            let mgr = start(dir.path());
            let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
            append_batches(&log, 0, n, 0);
            log.dir().to_path_buf()
        };
        let active = segment_files(&log_dir, ".log").pop().unwrap();
        let data = std::fs::read(&active).unwrap();
        let mut damaged = data[..cut.min(data.len())].to_vec();
        damaged.extend_from_slice(&garbage);
        std::fs::write(&active, damaged).unwrap();

        let mgr = start(dir.path());
        let log = mgr.get_log(&tp()).unwrap();
        let leo = log.log_end_offset();
        prop_assert!(leo <= 2 * n);
        let headers = read_all(&log);
        prop_assert_eq!(headers.last().map(|h| h.next_offset()).unwrap_or(log.log_start_offset()), leo);
        let info = log.append_as_leader(batch_for(0, 0), 0).unwrap();
        prop_assert_eq!(info.first_offset, leo);
        prop_assert_eq!(read_all(&log).len(), headers.len() + 1);
    }
}

#[test]
fn follower_rejects_garbage_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    for garbage in [vec![], vec![0u8; 10], vec![0xFF; 200]] {
        let _ = log.append_as_follower(Bytes::from(garbage));
    }
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LogManager>();
    check::<Arc<Log>>();
    check::<LeaderEpochCache>();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Arbitrary bytes as a segment and its indexes, with or without the clean-shutdown
    /// marker, never panic the loader.
    #[test]
    fn arbitrary_segment_files_never_panic(
        log_bytes in proptest::collection::vec(any::<u8>(), 0..400),
        index_bytes in proptest::collection::vec(any::<u8>(), 0..64),
        time_bytes in proptest::collection::vec(any::<u8>(), 0..64),
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("orders-0");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("00000000000000000000.log"), &log_bytes).unwrap();
        std::fs::write(part.join("00000000000000000000.index"), &index_bytes).unwrap();
        std::fs::write(part.join("00000000000000000000.timeindex"), &time_bytes).unwrap();
        if clean {
            std::fs::write(dir.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
        }
        let dirs = [dir.path().to_path_buf()];
        if let Ok(mgr) = LogManager::startup(&dirs, 1, "cluster-a", small_config(), &|_| small_config()) {
            let log = mgr.get_log(&tp()).unwrap();
            let _ = log.read(log.log_start_offset(), 4096, None, true);
            let _ = log.append_as_leader(batch_for(0, 0), 0);
            let _ = log.fetch_offset_by_timestamp(0);
        }
    }
}
