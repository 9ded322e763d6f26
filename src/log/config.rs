//! Per-topic log configuration (Kafka's `LogConfig`) and the broker-wide background task
//! intervals. Defaults are Kafka 2.8's (`crate::config` pins them to its key table in a test);
//! `crate::config::topic_log_config` builds a topic's config from its overrides.

use crate::protocol::batch::CompressionCodec;

/// Which timestamp a topic stores in MaxTimestamp (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// A topic's `compression.type`: which codec the leader stores batches in. `producer` keeps
/// each batch's own codec; any other value makes the leader recompress batches that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// Kafka's spelling, ignoring case as `BrokerCompressionCodec` does; `None` for anything else.
    pub fn parse(value: &str) -> Option<CompressionType> {
        Some(match value.to_ascii_lowercase().as_str() {
            "producer" => CompressionType::Producer,
            "uncompressed" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => return None,
        })
    }

    /// The codec a batch written with `source` is stored in (Kafka's
    /// `BrokerCompressionCodec.getTargetCompressionCodec`).
    pub fn target(self, source: CompressionCodec) -> CompressionCodec {
        match self {
            CompressionType::Producer => source,
            CompressionType::Uncompressed => CompressionCodec::None,
            CompressionType::Gzip => CompressionCodec::Gzip,
            CompressionType::Snappy => CompressionCodec::Snappy,
            CompressionType::Lz4 => CompressionCodec::Lz4,
            CompressionType::Zstd => CompressionCodec::Zstd,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_jitter_ms: i64,
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: preallocated size of each index file of the active segment.
    pub max_index_size: u32,
    /// -1 = keep forever.
    pub retention_ms: i64,
    /// -1 = no size limit.
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.difference.max.ms`: how far a CreateTime record's timestamp may be
    /// from the broker's clock.
    pub message_timestamp_difference_max_ms: i64,
    pub compression_type: CompressionType,
    pub flush_interval_messages: u64,
    pub flush_interval_ms: i64,
    pub file_delete_delay_ms: u64,
    /// `cleanup.policy` contains `delete`: time/size retention applies.
    pub cleanup_policy_delete: bool,
    /// `cleanup.policy` contains `compact`: records must have keys (the log cleaner itself
    /// does not exist yet).
    pub cleanup_policy_compact: bool,
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
    /// The broker's `transactional.id.expiration.ms` (no topic overrides it): a producer's
    /// state in a partition is forgotten this long after its last write.
    pub producer_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_jitter_ms: 0,
            index_interval_bytes: 4096,
            max_index_size: 10 * 1024 * 1024,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_difference_max_ms: i64::MAX,
            compression_type: CompressionType::Producer,
            flush_interval_messages: i64::MAX as u64,
            flush_interval_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            cleanup_policy_delete: true,
            cleanup_policy_compact: false,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            producer_expiration_ms: 604_800_000,
        }
    }
}

impl LogConfig {
    /// A fresh random roll jitter for a new segment, as Kafka's `randomSegmentJitter`:
    /// uniform in `[0, min(segment.jitter.ms, segment.ms))` so segments of many partitions
    /// created together do not all roll at the same instant.
    pub(crate) fn random_segment_jitter(&self) -> i64 {
        let bound = self.segment_jitter_ms.min(self.segment_ms);
        if bound <= 0 {
            0
        } else {
            rand::Rng::gen_range(&mut rand::thread_rng(), 0..bound)
        }
    }
}

/// Periods of the LogManager's background tasks (broker-level `log.*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundIntervals {
    /// `log.retention.check.interval.ms`.
    pub retention_check_ms: u64,
    /// `log.flush.scheduler.interval.ms`: how often per-log `flush.ms` is checked. Kafka's
    /// default is Long.MAX, i.e. the check never runs; `u64::MAX` keeps that meaning.
    pub flush_check_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub recovery_point_checkpoint_ms: u64,
    /// `log.flush.start.offset.checkpoint.interval.ms`.
    pub log_start_offset_checkpoint_ms: u64,
    /// How often idle producers are expired; a constant (10 minutes) in Kafka 2.8.
    pub producer_expiration_check_ms: u64,
}

impl Default for BackgroundIntervals {
    fn default() -> Self {
        BackgroundIntervals {
            retention_check_ms: 300_000,
            flush_check_ms: u64::MAX,
            recovery_point_checkpoint_ms: 60_000,
            log_start_offset_checkpoint_ms: 60_000,
            producer_expiration_check_ms: 600_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded() {
        let c = LogConfig {
            segment_jitter_ms: 10,
            ..LogConfig::default()
        };
        for _ in 0..100 {
            let j = c.random_segment_jitter();
            assert!((0..10).contains(&j));
        }
        assert_eq!(LogConfig::default().random_segment_jitter(), 0);
    }
}
