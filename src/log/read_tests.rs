//! `Log::read` as Kafka's `LogSegment.read`: a file range that ends at the byte limit, at the
//! high watermark's batch or at the segment's end, with a partial trailing batch allowed, and
//! the out-of-range and min-one-batch rules.

use super::tests::{append_batches, batch_for, one_segment_log, small_config, start_with, tp};
use super::*;
use crate::protocol::batch::{self, build_batch};

#[test]
fn read_limits_out_of_range_and_min_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_mgr, log) = one_segment_log(dir.path());
    append_batches(&log, 0, 10, 0);

    // max_offset (a batch boundary, as the high watermark is) ends the range at its batch.
    let capped = log.read(0, 1 << 20, Some(6), false).unwrap();
    let bases: Vec<i64> = batch::batches(&capped.records.read().unwrap())
        .map(|r| r.unwrap().0.base_offset)
        .collect();
    assert_eq!(bases, vec![0, 2, 4]);
    // A cap inside a batch withholds that batch: nothing above the cap is ever handed out.
    let inside = log.read(0, 1 << 20, Some(5), false).unwrap();
    let bases: Vec<i64> = batch::batches(&inside.records.read().unwrap())
        .map(|r| r.unwrap().0.base_offset)
        .collect();
    assert_eq!(bases, vec![0, 2]);
    assert!(log
        .read(6, 1 << 20, Some(6), false)
        .unwrap()
        .records
        .is_empty());

    // max_bytes cuts the range where it falls, as Kafka's LogSegment.read: whole batches and
    // then a partial one, which readers drop.
    let one_size = batch_for(0, 0).len();
    let partial = log.read(0, one_size * 2 + 10, None, false).unwrap();
    assert_eq!(partial.records.len(), one_size * 2 + 10);
    let data = partial.records.read().unwrap();
    let items: Vec<_> = batch::batches(&data).collect();
    assert_eq!(items.len(), 3);
    assert!(items[..2].iter().all(Result::is_ok));
    assert!(
        matches!(
            items[2],
            Err(batch::BatchError::Truncated { .. } | batch::BatchError::TooShort { .. })
        ),
        "{:?}",
        items[2]
    );

    // Out of range on both sides; the LEO itself is an empty read.
    assert!(log.read(20, 100, None, false).unwrap().records.is_empty());
    match log.read(21, 100, None, false) {
        Err(LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
            ..
        }) => {
            assert_eq!((offset, log_start, log_end), (21, 0, 20))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        log.read(-1, 100, None, false),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    // A batch larger than max_bytes comes back whole only with min_one_batch.
    let big = vec![9u8; 5000];
    let info = log
        .append_as_leader(build_batch(0, 0, &[(None, Some(&big))]), 0)
        .unwrap();
    assert!(log
        .read(info.first_offset, 100, None, false)
        .unwrap()
        .records
        .is_empty());
    let whole = log.read(info.first_offset, 100, None, true).unwrap();
    assert_eq!(whole.records.len(), info.valid_bytes);
    batch::verify_crc(&whole.records.read().unwrap()).unwrap();
}

/// A range handed to the network layer stays sendable when retention or deletion removes its
/// segment file meanwhile: it holds the open descriptor, as Kafka's `FileRecords` does.
#[test]
fn a_range_outlives_the_removal_of_its_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let mgr = start_with(&[dir.path().to_path_buf()], config.clone());
    let log = mgr.get_or_create_log(&tp(), config).unwrap();
    append_batches(&log, 0, 4, 0);
    let info = log.read(0, 1 << 20, None, false).unwrap();
    let before = info.records.read().unwrap();
    assert!(!before.is_empty());
    for entry in std::fs::read_dir(log.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_eq!(info.records.read().unwrap(), before);
    batch::batches(&before).for_each(|b| {
        b.unwrap();
    });
}
