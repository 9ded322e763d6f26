//! File and descriptor budget of the log layer: a segment keeps exactly one open descriptor
//! (its `.log`); the `.index` and `.timeindex` are mapped and their descriptors closed, as in
//! Kafka, so a broker with many partitions needs about one descriptor per segment; and a
//! segment without data has no index files yet, so a new partition costs one file.

use super::*;
use crate::protocol::batch::build_batch;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PARTITIONS: i32 = 120;
const BATCHES_PER_PARTITION: i64 = 12;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        max_index_size: 4096,
        ..LogConfig::default()
    }
}

fn start(dir: &Path) -> LogManager {
    let per_topic = config();
    LogManager::startup(
        &[dir.to_path_buf()],
        1,
        "cluster-fd",
        config(),
        &move |_| per_topic.clone(),
    )
    .unwrap()
}

/// The files under `dir` this process has open right now.
fn open_files_under(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}

fn files_with_suffix(dir: &Path, suffix: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for partition in std::fs::read_dir(dir).unwrap() {
        let partition = partition.unwrap().path();
        if !partition.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&partition).unwrap() {
            let file = file.unwrap().path();
            if file.to_string_lossy().ends_with(suffix) {
                out.insert(file);
            }
        }
    }
    out
}

#[test]
fn a_restarted_log_manager_holds_one_descriptor_per_segment() {
    let tmp = tempfile::tempdir().unwrap();
    // Canonical, because /proc/self/fd links name the resolved path.
    let dir = tmp.path().canonicalize().unwrap();
    let logs = start(&dir);
    let value = "v".repeat(200);
    for p in 0..PARTITIONS {
        let log = logs
            .get_or_create_log(&TopicPartition::new("fd", p), config())
            .unwrap();
        for i in 0..BATCHES_PER_PARTITION {
            let batch = build_batch(0, 1_000 + i, &[(None, Some(value.as_bytes()))]);
            log.append_as_leader(batch, 0).unwrap();
        }
    }
    logs.shutdown().unwrap();
    drop(logs);

    let logs = start(&dir);
    let segments = files_with_suffix(&dir, ".log");
    assert!(
        segments.len() >= 3 * PARTITIONS as usize,
        "expected several segments per partition, found {}",
        segments.len()
    );
    assert_eq!(files_with_suffix(&dir, ".index").len(), segments.len());
    let open = open_files_under(&dir);
    let mut expected = segments.clone();
    expected.insert(dir.join(".lock"));
    assert_eq!(
        open.difference(&expected).collect::<Vec<_>>(),
        Vec::<&PathBuf>::new(),
        "descriptors other than one per .log segment (and the dir lock)"
    );
    assert_eq!(open.len(), expected.len(), "every segment's .log is open");
    logs.shutdown().unwrap();
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn index_files_appear_with_the_first_data_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let empty = TopicPartition::new("empty", 0);
    let full = TopicPartition::new("full", 0);
    let (empty_dir, full_dir) = {
        let mgr = start(dir.path());
        let e = mgr.get_or_create_log(&empty, config()).unwrap();
        let f = mgr.get_or_create_log(&full, config()).unwrap();
        assert_eq!(
            names(e.dir()),
            BTreeSet::from(["00000000000000000000.log".to_string()]),
            "a new partition creates its .log only"
        );
        f.append_as_leader(build_batch(0, 5, &[(None, Some(b"v".as_slice()))]), 0)
            .unwrap();
        for suffix in [".index", ".timeindex"] {
            assert!(names(f.dir()).contains(&format!("00000000000000000000{suffix}")));
        }
        let dirs = (e.dir().to_path_buf(), f.dir().to_path_buf());
        mgr.shutdown().unwrap();
        dirs
    };
    // After a clean restart the empty log is still one file and the other is trusted as is.
    let mgr = start(dir.path());
    let e = mgr.get_log(&empty).unwrap();
    let f = mgr.get_log(&full).unwrap();
    assert_eq!((e.log_end_offset(), f.log_end_offset()), (0, 1));
    assert_eq!(names(&empty_dir).len(), 1, "{:?}", names(&empty_dir));
    assert!(!f.read(0, 1 << 20, None, false).unwrap().records.is_empty());
    // The empty log takes data after the restart, and its indexes appear then.
    e.append_as_leader(build_batch(0, 5, &[(None, Some(b"w".as_slice()))]), 0)
        .unwrap();
    assert!(names(&empty_dir).contains("00000000000000000000.timeindex"));
    assert!(full_dir.exists());
}
