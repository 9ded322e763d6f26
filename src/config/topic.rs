//! Topic-level configuration: the overrides of `/config/topics/<t>` on top of the broker
//! defaults (Kafka's `LogConfig.fromProps`), and the stricter check CreateTopics applies before
//! anything is written (Kafka's `LogConfig.validate`), so an invalid value is refused when it is
//! set instead of being read as a default later.

use std::collections::BTreeMap;

use super::keys::{topic_key, TopicKey};
use super::value::{invalid, parse, Value};
use super::{ConfigError, KafkaConfig};
use crate::log::{CompressionType, LogConfig, TimestampType};

fn parse_key(key: &TopicKey, raw: &str) -> Result<Value, ConfigError> {
    parse(key.name, key.ty, key.validator, raw)
}

/// `base` (the broker defaults, [`KafkaConfig::default_log_config`]) with a topic's overrides
/// applied. Keys no topic has are ignored, as Kafka's `fromProps` does: a topic config written
/// by a newer tool must not stop this broker.
///
/// # Errors
/// A value that does not parse or validate for its key; the error names the key.
pub fn topic_log_config(
    base: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, ConfigError> {
    let mut c = base.clone();
    for (name, raw) in overrides {
        if let Some(key) = topic_key(name) {
            let v = parse_key(key, raw)?;
            apply(&mut c, key.name, &v)?;
        }
    }
    Ok(c)
}

/// Sets the `LogConfig` field behind `name`; keys gregor stores without acting on are skipped.
fn apply(c: &mut LogConfig, name: &'static str, v: &Value) -> Result<(), ConfigError> {
    match name {
        "segment.bytes" => c.segment_bytes = v.num(name)?,
        "segment.ms" => c.segment_ms = v.num(name)?,
        "segment.jitter.ms" => c.segment_jitter_ms = v.num(name)?,
        "segment.index.bytes" => c.max_index_size = v.num(name)?,
        "index.interval.bytes" => c.index_interval_bytes = v.num(name)?,
        "retention.ms" => c.retention_ms = v.num(name)?,
        "retention.bytes" => c.retention_bytes = v.num(name)?,
        "max.message.bytes" => c.max_message_bytes = v.num(name)?,
        "flush.messages" => c.flush_interval_messages = v.num(name)?,
        "flush.ms" => c.flush_interval_ms = v.num(name)?,
        "file.delete.delay.ms" => c.file_delete_delay_ms = v.num(name)?,
        "min.insync.replicas" => c.min_insync_replicas = v.num(name)?,
        "unclean.leader.election.enable" => c.unclean_leader_election_enable = v.boolean(name)?,
        "message.timestamp.type" => {
            c.message_timestamp_type = match v.render().as_str() {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            }
        }
        "message.timestamp.difference.max.ms" => {
            c.message_timestamp_difference_max_ms = v.num(name)?
        }
        "compression.type" => {
            c.compression_type = CompressionType::parse(&v.render()).unwrap_or_default()
        }
        "cleanup.policy" => {
            let items = v.items();
            c.cleanup_policy_delete = items.iter().any(|p| p == "delete");
            c.cleanup_policy_compact = items.iter().any(|p| p == "compact");
        }
        _ => {}
    }
    Ok(())
}

/// Kafka's `LogConfig.validate`, as CreateTopics applies it: every name must be a topic key,
/// every value must parse and validate, and `min.compaction.lag.ms` may not exceed
/// `max.compaction.lag.ms`.
///
/// # Errors
/// [`ConfigError::UnknownTopicKey`] or [`ConfigError::Invalid`], naming the key.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let lag = |name: &str| -> Result<i64, ConfigError> {
        let key = topic_key(name).ok_or_else(|| ConfigError::UnknownTopicKey(name.into()))?;
        let raw = configs.get(name).map(String::as_str).or(key.default);
        raw.map_or(Ok(0), |r| parse_key(key, r)?.num(name))
    };
    let (min_lag, max_lag) = (lag("min.compaction.lag.ms")?, lag("max.compaction.lag.ms")?);
    for (name, raw) in configs {
        let key = topic_key(name).ok_or_else(|| ConfigError::UnknownTopicKey(name.clone()))?;
        parse_key(key, raw)?;
    }
    if min_lag > max_lag {
        return Err(invalid(
            "min.compaction.lag.ms",
            &min_lag.to_string(),
            format!(
                "conflicts with max.compaction.lag.ms ({max_lag}): the minimum exceeds the maximum"
            ),
        ));
    }
    Ok(())
}

/// Whether unclean leader election is enabled for a topic whose `/config/topics/<t>` holds
/// `overrides`, falling back to the broker's `unclean.leader.election.enable`.
///
/// The whole topic config is parsed, as Kafka's controller does with `LogConfig.fromProps`: a
/// stored value that does not parse is an error, never read as `false` (or as the default).
///
/// # Errors
/// The invalid key and value. The controller should then log a failed state change for the
/// topic's partitions and leave them without a leader, as Kafka does for a topic whose config
/// it cannot read: an out-of-sync replica (possible data loss) is only made leader on an
/// explicit, valid `true`.
pub fn unclean_leader_election_enable(
    broker: &KafkaConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<bool, ConfigError> {
    topic_log_config(&broker.default_log_config(), overrides)
        .map(|c| c.unclean_leader_election_enable)
}
