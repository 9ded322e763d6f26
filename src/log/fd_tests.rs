//! Descriptor budget of the log layer: a segment keeps exactly one open descriptor (its
//! `.log`); the `.index` and `.timeindex` are mapped and their descriptors closed, as in Kafka,
//! so a broker with many partitions needs about one descriptor per segment.

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
