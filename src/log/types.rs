//! Small value types shared by the log modules and their callers, plus lock and clock helpers.

use bytes::Bytes;
use std::fmt;

/// A topic partition; its `Display` form (`t-0`) is also its directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a partition directory name `<topic>-<partition>`. Topics may contain `-`, so
    /// the partition is whatever follows the last one.
    pub fn from_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() || partition.is_empty() || partition.starts_with('+') {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        (partition >= 0).then(|| TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into the batch, or -1 for CreateTime topics.
    pub log_append_time: i64,
    pub max_timestamp: i64,
    pub valid_bytes: usize,
}

/// Outcome of a read: whole batches plus the log bounds at the time of the read, which the
/// fetch response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadInfo {
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names() {
        assert_eq!(
            TopicPartition::from_dir_name("my-topic-12"),
            Some(TopicPartition::new("my-topic", 12))
        );
        assert_eq!(TopicPartition::new("t", 0).to_string(), "t-0");
        for bad in ["t", "-1", "t-", "t-x", "t-+1", "t-0.abc-delete"] {
            assert_eq!(TopicPartition::from_dir_name(bad), None, "{bad}");
        }
    }
}
