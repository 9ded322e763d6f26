//! Broker and topic configuration: Kafka's keys with their Kafka 2.8 defaults and validators.
//!
//! - [`keys`]: the one table of every broker and topic key (type, default, validator, synonym,
//!   sensitivity, dynamic-update mode); everything below reads it.
//! - `broker`: `server.properties` → [`KafkaConfig`]. A key that gregor does not know is logged
//!   and ignored, as Kafka does; a known key with a value that does not parse stops start-up
//!   with an error naming the key, so a typo never silently turns into a default.
//! - [`topic`]: topic overrides on top of the broker defaults ([`topic_log_config`]) and
//!   CreateTopics validation ([`validate_topic_configs`]).
//! - [`describe`]: what DescribeConfigs reports for a broker or a topic, as Kafka 2.8 does.
//! - `value`: parsing and rendering one value as Kafka's `ConfigDef` does.

mod broker;
pub mod describe;
pub mod keys;
pub mod topic;
mod value;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::log::{CompressionType, LogConfig, TimestampType};
pub use topic::{topic_log_config, unclean_leader_election_enable, validate_topic_configs};
use value::invalid;

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
    /// Kafka's `LogConfig.validateNames`: CreateTopics names a key no topic has.
    #[error("Unknown topic config name: {0}")]
    UnknownTopicKey(String),
}

impl ConfigError {
    /// The key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::UnknownTopicKey(key) => Some(key),
            ConfigError::Missing(key) => Some(key),
            ConfigError::Read { .. } | ConfigError::Malformed { .. } => None,
        }
    }
}

/// One `listeners` / `advertised.listeners` entry, e.g. `PLAINTEXT://127.0.0.1:9092`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// The security protocol of the listener: `listener.security.protocol.map` must map every
    /// listener to PLAINTEXT, the only one gregor speaks today.
    pub fn security_protocol(&self) -> &str {
        "PLAINTEXT"
    }
}

/// The broker configuration, fully parsed and validated.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub broker_id: i32,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    /// The listener other brokers reach this one on (followers fetch, the controller's
    /// LeaderAndIsr names leaders by it): `inter.broker.listener.name`, else PLAINTEXT.
    pub inter_broker_listener_name: String,
    /// `control.plane.listener.name` (KIP-291): the listener the controller's requests come
    /// on; when set, they are refused on every other listener.
    pub control_plane_listener_name: Option<String>,
    pub log_dirs: Vec<PathBuf>,
    pub zookeeper_connect: String,
    pub zookeeper_session_timeout_ms: u64,
    pub zookeeper_connection_timeout_ms: u64,
    pub rack: Option<String>,

    pub socket_request_max_bytes: usize,
    /// `SO_SNDBUF` / `SO_RCVBUF` of accepted connections; `None` (-1) keeps the OS default.
    pub socket_send_buffer_bytes: Option<usize>,
    pub socket_receive_buffer_bytes: Option<usize>,
    /// Requests being handled at once in the whole broker (`queued.max.requests`).
    pub queued_max_requests: usize,
    /// Bytes of requests being handled at once (`queued.max.request.bytes`); `None` (-1) is
    /// no limit but `queued.max.requests` × `socket.request.max.bytes`.
    pub queued_max_request_bytes: Option<usize>,
    /// The async runtime's workers: Kafka's network and request-handler threads in one pool
    /// (capped at the cores, see [`KafkaConfig::runtime_workers`]).
    pub num_network_threads: usize,
    pub num_io_threads: usize,
    /// Threads per log directory that load (and recover) its partitions at start-up.
    pub num_recovery_threads_per_data_dir: usize,
    /// ZooKeeper requests a pipelined batch keeps in flight.
    pub zookeeper_max_in_flight_requests: usize,
    pub connections_max_idle_ms: u64,
    /// Connections the broker accepts in all (`max.connections`).
    pub max_connections: usize,
    /// Connections from one address (`max.connections.per.ip`), and per-address exceptions.
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: Vec<(std::net::IpAddr, usize)>,
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
    pub log_message_timestamp_difference_max_ms: i64,
    /// Broker `compression.type`, the default of every topic's.
    pub compression_type: CompressionType,
    pub log_cleanup_policy_delete: bool,
    pub log_cleanup_policy_compact: bool,
    pub log_segment_delete_delay_ms: u64,

    /// `transactional.id.expiration.ms`: how long a producer's state outlives its last write.
    pub transactional_id_expiration_ms: i64,
    /// `__transaction_state`: partitions, replication factor, min ISR, segment size.
    pub transaction_state_log_num_partitions: i32,
    pub transaction_state_log_replication_factor: i16,
    pub transaction_state_log_min_isr: i32,
    pub transaction_state_log_segment_bytes: u64,
    pub transaction_state_log_load_buffer_size: usize,
    /// The longest transaction timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// How often open transactions past their timeout are aborted.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// How often ids idle past `transactional.id.expiration.ms` are removed.
    pub transaction_remove_expired_transaction_cleanup_interval_ms: u64,
    /// `request.timeout.ms`: bounds the coordinator's writes of markers.
    pub request_timeout_ms: u64,

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

    /// The most a fetch response carries, whatever the request asks (Kafka's `fetch.max.bytes`).
    pub fetch_max_bytes: i32,
    /// Incremental fetch sessions the broker keeps (0: none).
    pub max_incremental_fetch_session_cache_slots: usize,
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
            .ok_or_else(|| invalid(key, part, "expected NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, part, "missing :port"))?;
        let port: u16 = port
            .parse()
            .map_err(|e| invalid(key, part, format!("bad port: {e}")))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid(
                key,
                part,
                "a listener name is letters, digits and underscores",
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
        return Err(invalid(key, value, "no listener given"));
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
            message_timestamp_difference_max_ms: self.log_message_timestamp_difference_max_ms,
            compression_type: self.compression_type,
            flush_interval_messages: self.log_flush_interval_messages,
            flush_interval_ms: self.log_flush_interval_ms,
            file_delete_delay_ms: self.log_segment_delete_delay_ms,
            cleanup_policy_delete: self.log_cleanup_policy_delete,
            cleanup_policy_compact: self.log_cleanup_policy_compact,
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election_enable: self.unclean_leader_election_enable,
            producer_expiration_ms: self.transactional_id_expiration_ms,
        }
    }

    /// Workers of the async runtime on a machine of `cores` cores: Kafka's network and
    /// request-handler threads together (`num.network.threads` + `num.io.threads`), but no more
    /// than the cores. Kafka's threads block in I/O, so it wants more of them than cores; here a
    /// worker never blocks (slow file work leaves it through `block_in_place` or
    /// `spawn_blocking`), and workers beyond the cores only hand requests from thread to thread:
    /// at 1,000 replicated msg/s on 2 cores, 11 workers per broker switched threads about a
    /// fifth more often than 2.
    pub fn runtime_workers(&self, cores: usize) -> usize {
        (self.num_network_threads + self.num_io_threads)
            .min(cores)
            .max(1)
    }

    /// The listener this broker serves clients and other brokers on (the first one).
    pub fn advertised(&self) -> &Listener {
        // from_map guarantees at least one listener, and every advertised name is a listener.
        &self.advertised_listeners[0]
    }

    /// The listener the controller reaches brokers on: the control plane's, else the
    /// inter-broker one (Kafka's `controlPlaneListenerName.getOrElse(interBrokerListenerName)`).
    pub fn controller_listener_name(&self) -> &str {
        self.control_plane_listener_name
            .as_deref()
            .unwrap_or(&self.inter_broker_listener_name)
    }

    /// Whether control requests (LeaderAndIsr, UpdateMetadata, StopReplica,
    /// ControlledShutdown) are accepted on `listener`: on every listener unless a control
    /// plane is configured, then only on it.
    pub fn accepts_control_requests(&self, listener: &str) -> bool {
        self.control_plane_listener_name
            .as_deref()
            .is_none_or(|cp| cp == listener)
    }
}
