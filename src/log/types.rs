//! Small value types shared by the log modules and their callers.

use crate::protocol::file_region::FileRegion;

pub use crate::common::TopicPartition;

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

/// Outcome of a read: a range of a segment file (the last batch in it may be partial) plus the
/// log bounds at the time of the read, which the fetch response reports.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    pub records: FileRegion,
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
