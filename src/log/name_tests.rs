//! The log layer's own guard on partition names: a name outside Kafka's rule never becomes a
//! directory (or a checkpoint line), whoever asks for it.

use super::tests::{small_config, start};
use super::*;

#[test]
fn a_partition_with_an_illegal_name_gets_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = start(dir.path());
    for (topic, partition) in [
        ("fuzz space", 0),
        ("../escape", 0),
        ("a/b", 0),
        ("", 0),
        ("ok", -1),
    ] {
        let r = mgr.get_or_create_log(&TopicPartition::new(topic, partition), small_config());
        assert!(
            matches!(r, Err(LogError::InvalidArgument { .. })),
            "{topic:?}-{partition} was accepted"
        );
    }
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("fuzz") || n.contains("escape") || n == "a" || n.starts_with("ok"))
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
    assert!(!dir.path().parent().unwrap().join("escape-0").exists());
    assert!(mgr
        .get_or_create_log(&TopicPartition::new("ok", 0), small_config())
        .is_ok());
}
