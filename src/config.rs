//! Broker configuration: Kafka's `server.properties` keys, defaults (Kafka 2.8) and validation.
//!
//! A key that gregor does not know is logged and ignored, as Kafka does; a known key with a value
//! that does not parse stops start-up with an error naming the key, so a typo never silently turns
//! into a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::log::{LogConfig, TimestampType};

/// A configuration error; the message names the key and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid value {value:?} for config key '{key}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("missing required config key '{0}'")]
    Missing(&'static str),
    #[error("malformed line {line} in {path}: {text:?} (expected key=value)")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// One `listeners` / `advertised.listeners` entry, e.g. `PLAINTEXT://127.0.0.1:9092`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// The security protocol of the listener; only PLAINTEXT exists today.
    pub fn security_protocol(&self) -> &str {
        &self.name
    }
}

/// The broker configuration, fully parsed and validated.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub broker_id: i32,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dirs: Vec<PathBuf>,
    pub zookeeper_connect: String,
    pub zookeeper_session_timeout_ms: u64,
    pub zookeeper_connection_timeout_ms: u64,
    pub rack: Option<String>,

    pub socket_request_max_bytes: usize,
    pub connections_max_idle_ms: u64,
    pub message_max_bytes: i32,

    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,

    pub log_segment_bytes: u64,
    pub log_roll_ms: i64,
    pub log_roll_jitter_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: u64,
    pub log_index_interval_bytes: u32,
    pub log_index_size_max_bytes: u32,
    pub log_flush_interval_messages: u64,
    pub log_flush_interval_ms: i64,
    pub log_flush_scheduler_interval_ms: u64,
    pub log_flush_offset_checkpoint_interval_ms: u64,
    pub log_flush_start_offset_checkpoint_interval_ms: u64,
    pub log_message_timestamp_type: TimestampType,
    pub log_cleanup_policy_delete: bool,
    pub log_cleanup_policy_compact: bool,
    pub log_segment_delete_delay_ms: u64,

    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: u64,
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offsets_commit_timeout_ms: u64,
    pub offsets_load_buffer_size: usize,
    pub offset_metadata_max_bytes: usize,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_initial_rebalance_delay_ms: i32,
    pub group_max_size: i32,

    pub replica_lag_time_max_ms: u64,
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    pub replica_fetch_wait_max_ms: i32,
    pub replica_fetch_min_bytes: i32,
    pub replica_fetch_backoff_ms: u64,
    pub replica_socket_timeout_ms: u64,
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    pub controller_socket_timeout_ms: u64,
    pub controlled_shutdown_enable: bool,
    pub controlled_shutdown_max_retries: u32,
    pub controlled_shutdown_retry_backoff_ms: u64,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    pub leader_imbalance_per_broker_percentage: u32,

    /// Every key/value as given, so DescribeConfigs can report what the operator set.
    pub raw: BTreeMap<String, String>,
}

/// Keys Kafka defines that gregor accepts without acting on them (thread counts and buffer sizes
/// belong to the JVM's threading model; tokio sizes itself). Listing them keeps the warning for
/// unknown keys meaningful.
const ACCEPTED_WITHOUT_EFFECT: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    "queued.max.requests",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.preallocate",
    "compression.type",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "offsets.commit.required.acks",
    "zookeeper.max.in.flight.requests",
    "zookeeper.set.acl",
    "inter.broker.protocol.version",
    "log.message.format.version",
    "broker.id.generation.enable",
    "reserved.broker.max.id",
    "max.connections.per.ip",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
];

struct Props {
    map: BTreeMap<String, String>,
}

impl Props {
    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|s| s.trim())
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|e| invalid(key, v, e.to_string())),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid(key, v, "expected true or false".into())),
        }
    }

    /// Parses a number and checks it is at least `min`.
    fn at_least<T>(&self, key: &str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(key, default)?;
        if v < min {
            return Err(invalid(
                key,
                &v.to_string(),
                format!("must be at least {min}"),
            ));
        }
        Ok(v)
    }

    /// Kafka's `x.ms` / `x.minutes` / `x.hours` triples: the most precise key that is set wins.
    fn ms_minutes_hours(
        &self,
        ms: &str,
        minutes: Option<&str>,
        hours: &str,
        default_hours: i64,
    ) -> Result<i64, ConfigError> {
        if self.get(ms).is_some() {
            return self.parse(ms, 0i64);
        }
        if let Some(minutes) = minutes {
            if self.get(minutes).is_some() {
                return Ok(self.parse(minutes, 0i64)?.saturating_mul(60_000));
            }
        }
        Ok(self.parse(hours, default_hours)?.saturating_mul(3_600_000))
    }
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// Parses Java-properties text: `key=value` or `key: value`, `#`/`!` comments, blank lines.
pub fn parse_properties(text: &str, path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line
            .find(['=', ':'])
            .ok_or_else(|| ConfigError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                text: raw.to_string(),
            })?;
        let (k, v) = line.split_at(split);
        map.insert(k.trim().to_string(), v[1..].trim().to_string());
    }
    Ok(map)
}

/// Parses a listener list such as `PLAINTEXT://:9092,PLAINTEXT://host:9093`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = part
            .split_once("://")
            .ok_or_else(|| invalid(key, part, "expected NAME://host:port".into()))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, part, "missing :port".into()))?;
        let port: u16 = port
            .parse()
            .map_err(|e| invalid(key, part, format!("bad port: {e}")))?;
        let name = name.to_ascii_uppercase();
        if name != "PLAINTEXT" {
            return Err(invalid(
                key,
                part,
                "only the PLAINTEXT security protocol is supported".into(),
            ));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if out.iter().any(|l: &Listener| l.name == name) {
            return Err(invalid(key, value, format!("listener {name} listed twice")));
        }
        out.push(Listener { name, host, port });
    }
    if out.is_empty() {
        return Err(invalid(key, value, "no listener given".into()));
    }
    Ok(out)
}

/// The host a listener with an empty host is advertised as (Kafka uses the canonical host name).
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl KafkaConfig {
    /// Reads `path` and applies `overrides` (`key=value`, later ones win).
    ///
    /// # Errors
    /// An unreadable file, a malformed line or override, a missing `zookeeper.connect`, or a value that
    /// does not parse for its key.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut map = parse_properties(&text, path)?;
        for (i, o) in overrides.iter().enumerate() {
            let (k, v) = o.split_once('=').ok_or_else(|| ConfigError::Malformed {
                path: PathBuf::from("--override"),
                line: i + 1,
                text: o.clone(),
            })?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        Self::from_map(map)
    }

    /// Builds the configuration from a key/value map (the parsed file plus overrides).
    ///
    /// # Errors
    /// See [`KafkaConfig::load`].
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let p = Props { map };
        let broker_id: i32 = p.parse("broker.id", -1)?;
        if broker_id < 0 {
            // Kafka would generate an id from /brokers/seqid; gregor asks for an explicit one
            // so that an operator always knows which data dir belongs to which broker.
            return Err(invalid(
                "broker.id",
                &broker_id.to_string(),
                "set an explicit non-negative broker.id (automatic id generation is not supported)"
                    .into(),
            ));
        }
        let listeners = parse_listeners(
            "listeners",
            p.get("listeners").unwrap_or("PLAINTEXT://:9092"),
        )?;
        let advertised_listeners = match p.get("advertised.listeners") {
            Some(v) => parse_listeners("advertised.listeners", v)?,
            None => listeners.clone(),
        }
        .into_iter()
        .map(|mut l| {
            if l.host.is_empty() || l.host == "0.0.0.0" {
                l.host = local_hostname();
            }
            l
        })
        .collect::<Vec<_>>();
        for adv in &advertised_listeners {
            if !listeners.iter().any(|l| l.name == adv.name) {
                return Err(invalid(
                    "advertised.listeners",
                    &adv.name,
                    "advertises a listener that is not in listeners".into(),
                ));
            }
        }
        let log_dirs: Vec<PathBuf> = p
            .get("log.dirs")
            .or_else(|| p.get("log.dir"))
            .unwrap_or("/tmp/kafka-logs")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(invalid("log.dirs", "", "no directory given".into()));
        }
        let zookeeper_connect = p
            .get("zookeeper.connect")
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("zookeeper.connect"))?
            .to_string();
        let zookeeper_session_timeout_ms = p.at_least("zookeeper.session.timeout.ms", 18000, 1)?;
        let zookeeper_connection_timeout_ms = p.at_least(
            "zookeeper.connection.timeout.ms",
            zookeeper_session_timeout_ms,
            1,
        )?;
        let message_max_bytes = p.at_least("message.max.bytes", 1_048_588, 0)?;
        let log_roll_ms = p.ms_minutes_hours("log.roll.ms", None, "log.roll.hours", 168)?;
        let log_roll_jitter_ms =
            p.ms_minutes_hours("log.roll.jitter.ms", None, "log.roll.jitter.hours", 0)?;
        let log_retention_ms = p.ms_minutes_hours(
            "log.retention.ms",
            Some("log.retention.minutes"),
            "log.retention.hours",
            168,
        )?;
        let log_message_timestamp_type = match p.get("log.message.timestamp.type") {
            None | Some("CreateTime") => TimestampType::CreateTime,
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            Some(v) => {
                return Err(invalid(
                    "log.message.timestamp.type",
                    v,
                    "expected CreateTime or LogAppendTime".into(),
                ))
            }
        };
        let (log_cleanup_policy_delete, log_cleanup_policy_compact) =
            match p.get("log.cleanup.policy") {
                None => (true, false),
                Some(v) => {
                    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                    if parts.iter().any(|x| *x != "delete" && *x != "compact") {
                        return Err(invalid(
                            "log.cleanup.policy",
                            v,
                            "expected delete, compact or both".into(),
                        ));
                    }
                    (parts.contains(&"delete"), parts.contains(&"compact"))
                }
            };
        let cfg = KafkaConfig {
            broker_id,
            listeners,
            advertised_listeners,
            log_dirs,
            zookeeper_connect,
            zookeeper_session_timeout_ms,
            zookeeper_connection_timeout_ms,
            rack: p.get("broker.rack").map(str::to_string),
            socket_request_max_bytes: p.at_least("socket.request.max.bytes", 104_857_600, 1)?,
            connections_max_idle_ms: p.at_least("connections.max.idle.ms", 600_000, 1)?,
            message_max_bytes,
            num_partitions: p.at_least("num.partitions", 1, 1)?,
            default_replication_factor: p.at_least("default.replication.factor", 1, 1)?,
            auto_create_topics_enable: p.bool("auto.create.topics.enable", true)?,
            delete_topic_enable: p.bool("delete.topic.enable", true)?,
            min_insync_replicas: p.at_least("min.insync.replicas", 1, 1)?,
            unclean_leader_election_enable: p.bool("unclean.leader.election.enable", false)?,
            log_segment_bytes: p.at_least("log.segment.bytes", 1_073_741_824, 14)?,
            log_roll_ms,
            log_roll_jitter_ms,
            log_retention_ms,
            log_retention_bytes: p.parse("log.retention.bytes", -1)?,
            log_retention_check_interval_ms: p.at_least(
                "log.retention.check.interval.ms",
                300_000,
                1,
            )?,
            log_index_interval_bytes: p.parse("log.index.interval.bytes", 4096)?,
            log_index_size_max_bytes: p.at_least("log.index.size.max.bytes", 10_485_760, 8)?,
            log_flush_interval_messages: p.at_least(
                "log.flush.interval.messages",
                u64::MAX / 2,
                1,
            )?,
            log_flush_interval_ms: p.parse("log.flush.interval.ms", i64::MAX)?,
            log_flush_scheduler_interval_ms: p
                .parse("log.flush.scheduler.interval.ms", u64::MAX / 2)?,
            log_flush_offset_checkpoint_interval_ms: p.at_least(
                "log.flush.offset.checkpoint.interval.ms",
                60_000,
                1,
            )?,
            log_flush_start_offset_checkpoint_interval_ms: p.at_least(
                "log.flush.start.offset.checkpoint.interval.ms",
                60_000,
                1,
            )?,
            log_message_timestamp_type,
            log_cleanup_policy_delete,
            log_cleanup_policy_compact,
            log_segment_delete_delay_ms: p.parse("log.segment.delete.delay.ms", 60_000)?,
            offsets_topic_num_partitions: p.at_least("offsets.topic.num.partitions", 50, 1)?,
            offsets_topic_replication_factor: p.at_least(
                "offsets.topic.replication.factor",
                3,
                1,
            )?,
            offsets_topic_segment_bytes: p.at_least(
                "offsets.topic.segment.bytes",
                104_857_600,
                1,
            )?,
            offsets_retention_minutes: p.at_least("offsets.retention.minutes", 10_080, 1)?,
            offsets_retention_check_interval_ms: p.at_least(
                "offsets.retention.check.interval.ms",
                600_000,
                1,
            )?,
            offsets_commit_timeout_ms: p.at_least("offsets.commit.timeout.ms", 5000, 1)?,
            offsets_load_buffer_size: p.at_least("offsets.load.buffer.size", 5 * 1024 * 1024, 1)?,
            offset_metadata_max_bytes: p.parse("offset.metadata.max.bytes", 4096)?,
            group_min_session_timeout_ms: p.parse("group.min.session.timeout.ms", 6000)?,
            group_max_session_timeout_ms: p.parse("group.max.session.timeout.ms", 1_800_000)?,
            group_initial_rebalance_delay_ms: p.at_least(
                "group.initial.rebalance.delay.ms",
                3000,
                0,
            )?,
            group_max_size: p.at_least("group.max.size", i32::MAX, 1)?,
            replica_lag_time_max_ms: p.at_least("replica.lag.time.max.ms", 30_000, 1)?,
            replica_fetch_max_bytes: p.at_least("replica.fetch.max.bytes", 1_048_576, 0)?,
            replica_fetch_response_max_bytes: p.at_least(
                "replica.fetch.response.max.bytes",
                10_485_760,
                0,
            )?,
            replica_fetch_wait_max_ms: p.at_least("replica.fetch.wait.max.ms", 500, 0)?,
            replica_fetch_min_bytes: p.at_least("replica.fetch.min.bytes", 1, 0)?,
            replica_fetch_backoff_ms: p.parse("replica.fetch.backoff.ms", 1000)?,
            replica_socket_timeout_ms: p.at_least("replica.socket.timeout.ms", 30_000, 1)?,
            replica_high_watermark_checkpoint_interval_ms: p.at_least(
                "replica.high.watermark.checkpoint.interval.ms",
                5000,
                1,
            )?,
            controller_socket_timeout_ms: p.at_least("controller.socket.timeout.ms", 30_000, 1)?,
            controlled_shutdown_enable: p.bool("controlled.shutdown.enable", true)?,
            controlled_shutdown_max_retries: p.parse("controlled.shutdown.max.retries", 3)?,
            controlled_shutdown_retry_backoff_ms: p
                .parse("controlled.shutdown.retry.backoff.ms", 5000)?,
            auto_leader_rebalance_enable: p.bool("auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_seconds: p.at_least(
                "leader.imbalance.check.interval.seconds",
                300,
                1,
            )?,
            leader_imbalance_per_broker_percentage: p
                .parse("leader.imbalance.per.broker.percentage", 10)?,
            raw: p.map.clone(),
        };
        for key in p.map.keys() {
            if !KNOWN_KEYS.contains(&key.as_str())
                && !ACCEPTED_WITHOUT_EFFECT.contains(&key.as_str())
            {
                tracing::warn!(key = %key, "unknown config key ignored");
            }
        }
        Ok(cfg)
    }

    /// The log settings every topic starts from before its `/config/topics/<t>` overrides.
    pub fn default_log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            segment_jitter_ms: self.log_roll_jitter_ms,
            index_interval_bytes: self.log_index_interval_bytes,
            max_index_size: self.log_index_size_max_bytes,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            max_message_bytes: self.message_max_bytes,
            message_timestamp_type: self.log_message_timestamp_type,
            flush_interval_messages: self.log_flush_interval_messages,
            flush_interval_ms: self.log_flush_interval_ms,
            file_delete_delay_ms: self.log_segment_delete_delay_ms,
            cleanup_policy_delete: self.log_cleanup_policy_delete,
            cleanup_policy_compact: self.log_cleanup_policy_compact,
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election_enable: self.unclean_leader_election_enable,
        }
    }

    /// The listener this broker serves clients and other brokers on (the first one).
    pub fn advertised(&self) -> &Listener {
        // from_map guarantees at least one listener, and every advertised name is a listener.
        &self.advertised_listeners[0]
    }
}

const KNOWN_KEYS: &[&str] = &[
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "zookeeper.connect",
    "zookeeper.session.timeout.ms",
    "zookeeper.connection.timeout.ms",
    "broker.rack",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "message.max.bytes",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.roll.jitter.ms",
    "log.roll.jitter.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "log.flush.start.offset.checkpoint.interval.ms",
    "log.message.timestamp.type",
    "log.cleanup.policy",
    "log.segment.delete.delay.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offsets.commit.timeout.ms",
    "offsets.load.buffer.size",
    "offset.metadata.max.bytes",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "replica.lag.time.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    "replica.socket.timeout.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "controller.socket.timeout.ms",
    "controlled.shutdown.enable",
    "controlled.shutdown.max.retries",
    "controlled.shutdown.retry.backoff.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<KafkaConfig, ConfigError> {
        let mut m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("broker.id".into()).or_insert_with(|| "0".into());
        m.entry("zookeeper.connect".into())
            .or_insert_with(|| "127.0.0.1:2181".into());
        KafkaConfig::from_map(m)
    }

    #[test]
    fn defaults_match_kafka_2_8() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.zookeeper_session_timeout_ms, 18000);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.replica_lag_time_max_ms, 30_000);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kafka-logs")]);
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err = cfg(&[("num.partitions", "zero")]).unwrap_err().to_string();
        assert!(err.contains("num.partitions"), "{err}");
        let err = cfg(&[("auto.create.topics.enable", "yes")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto.create.topics.enable"), "{err}");
        let err = cfg(&[("listeners", "SSL://:9093")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners"), "{err}");
    }

    #[test]
    fn missing_zookeeper_connect_is_an_error() {
        let m: BTreeMap<String, String> = [("broker.id".to_string(), "1".to_string())].into();
        let err = KafkaConfig::from_map(m).unwrap_err().to_string();
        assert!(err.contains("zookeeper.connect"), "{err}");
    }

    #[test]
    fn retention_precedence_ms_over_minutes_over_hours() {
        let c = cfg(&[("log.retention.hours", "1"), ("log.retention.minutes", "2")]).unwrap();
        assert_eq!(c.log_retention_ms, 120_000);
        let c = cfg(&[("log.retention.ms", "5"), ("log.retention.minutes", "2")]).unwrap();
        assert_eq!(c.log_retention_ms, 5);
    }

    #[test]
    fn properties_and_listeners_parse() {
        let text = "# comment\nbroker.id = 3\nlisteners=PLAINTEXT://127.0.0.1:9099\n\nx: y\n";
        let m = parse_properties(text, Path::new("f")).unwrap();
        assert_eq!(m["broker.id"], "3");
        assert_eq!(m["x"], "y");
        let l = parse_listeners("listeners", "PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!(l[0].host, "::1");
        assert!(parse_properties("novalue\n", Path::new("f")).is_err());
    }

    #[test]
    fn empty_listener_host_is_advertised_as_hostname() {
        let c = cfg(&[("listeners", "PLAINTEXT://:9092")]).unwrap();
        assert!(!c.advertised().host.is_empty());
        assert_eq!(c.listeners[0].host, "");
    }
}
