//! Per-topic log configuration (Kafka's `LogConfig`) and the broker-wide background task
//! intervals. Defaults are Kafka 2.8's; topic overrides use Kafka's topic-level key names and
//! validators so a value Kafka would reject is rejected here too.

use super::error::LogError;
use std::collections::BTreeMap;

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
    pub flush_interval_messages: u64,
    pub flush_interval_ms: i64,
    pub file_delete_delay_ms: u64,
    /// `cleanup.policy` contains `delete`: time/size retention applies.
    pub cleanup_policy_delete: bool,
    /// `cleanup.policy` contains `compact`. Recorded for DescribeConfigs; this storage layer
    /// does not compact.
    pub cleanup_policy_compact: bool,
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
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
            flush_interval_messages: i64::MAX as u64,
            flush_interval_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            cleanup_policy_delete: true,
            cleanup_policy_compact: false,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64, LogError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a 64-bit integer"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_i32(key: &str, value: &str, min: i32) -> Result<i32, LogError> {
    let v: i32 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a 32-bit integer"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, LogError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "must be true or false")),
    }
}

impl LogConfig {
    /// Applies topic-level overrides (the `configs` of `/config/topics/<t>`). Unknown keys are
    /// ignored because the topic config also carries keys other layers own.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, LogError> {
        let mut c = self.clone();
        for (key, value) in overrides {
            let k = key.as_str();
            let v = value.as_str();
            match k {
                // Kafka's minimum: one legacy v0 record overhead.
                "segment.bytes" => c.segment_bytes = parse_i32(k, v, 14)? as u64,
                "segment.ms" => c.segment_ms = parse_i64(k, v, 1)?,
                "segment.jitter.ms" => c.segment_jitter_ms = parse_i64(k, v, 0)?,
                "segment.index.bytes" => c.max_index_size = parse_i32(k, v, 0)? as u32,
                "index.interval.bytes" => c.index_interval_bytes = parse_i32(k, v, 0)? as u32,
                "retention.ms" => c.retention_ms = parse_i64(k, v, i64::MIN)?,
                "retention.bytes" => c.retention_bytes = parse_i64(k, v, i64::MIN)?,
                "max.message.bytes" => c.max_message_bytes = parse_i32(k, v, 0)?,
                "message.timestamp.type" => {
                    c.message_timestamp_type = match v.trim() {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => return Err(invalid(k, v, "must be CreateTime or LogAppendTime")),
                    }
                }
                "flush.messages" => c.flush_interval_messages = parse_i64(k, v, 0)? as u64,
                "flush.ms" => c.flush_interval_ms = parse_i64(k, v, 0)?,
                "file.delete.delay.ms" => c.file_delete_delay_ms = parse_i64(k, v, 0)? as u64,
                "cleanup.policy" => {
                    let (mut delete, mut compact) = (false, false);
                    for policy in v.split(',').map(str::trim) {
                        match policy {
                            "delete" => delete = true,
                            "compact" => compact = true,
                            _ => return Err(invalid(k, v, "entries must be delete or compact")),
                        }
                    }
                    c.cleanup_policy_delete = delete;
                    c.cleanup_policy_compact = compact;
                }
                "min.insync.replicas" => c.min_insync_replicas = parse_i32(k, v, 1)?,
                "unclean.leader.election.enable" => {
                    c.unclean_leader_election_enable = parse_bool(k, v)?
                }
                _ => {}
            }
        }
        Ok(c)
    }

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
}

impl Default for BackgroundIntervals {
    fn default() -> Self {
        BackgroundIntervals {
            retention_check_ms: 300_000,
            flush_check_ms: u64::MAX,
            recovery_point_checkpoint_ms: 60_000,
            log_start_offset_checkpoint_ms: 60_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_and_unknown_keys_are_ignored() {
        let c = LogConfig::default()
            .with_overrides(&map(&[
                ("segment.bytes", "1024"),
                ("retention.ms", "-1"),
                ("message.timestamp.type", "LogAppendTime"),
                ("cleanup.policy", "compact,delete"),
                ("compression.type", "lz4"),
                ("unclean.leader.election.enable", "TRUE"),
            ]))
            .unwrap();
        assert_eq!(c.segment_bytes, 1024);
        assert_eq!(c.retention_ms, -1);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        assert!(c.cleanup_policy_delete && c.cleanup_policy_compact);
        assert!(c.unclean_leader_election_enable);
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (k, v) in [
            ("segment.bytes", "abc"),
            ("segment.bytes", "3"),
            ("min.insync.replicas", "0"),
            ("cleanup.policy", "shred"),
            ("message.timestamp.type", "Now"),
        ] {
            match LogConfig::default().with_overrides(&map(&[(k, v)])) {
                Err(LogError::InvalidConfig { key, .. }) => assert_eq!(key, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }

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
