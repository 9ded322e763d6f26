//! `server.properties` → [`KafkaConfig`], driven by the key table: every key given is parsed and
//! validated with its entry (a bad value stops start-up naming the key), a key not in the table
//! is logged and ignored as Kafka does, and every value not given takes the table's default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::keys::{broker_key, ms_per_unit, BrokerKey, Support};
use super::value::{invalid, parse, Value};
use super::{local_hostname, parse_listeners, ConfigError, KafkaConfig, Listener};
use crate::log::{CompressionType, TimestampType};

/// The broker's static configuration seen through the key table.
pub(crate) struct Props<'a> {
    map: &'a BTreeMap<String, String>,
}

fn table_entry(name: &str) -> Result<&'static BrokerKey, ConfigError> {
    broker_key(name).ok_or_else(|| invalid(name, "", "not in gregor's key table"))
}

impl<'a> Props<'a> {
    pub(crate) fn new(map: &'a BTreeMap<String, String>) -> Self {
        Props { map }
    }

    /// Parses every key given; logs those the table does not know.
    fn check_all(&self) -> Result<(), ConfigError> {
        for (name, raw) in self.map {
            match broker_key(name) {
                Some(key) => {
                    let value = parse(key.name, key.ty, key.validator, raw)?;
                    check_support(key, raw, &value)?;
                }
                None => tracing::warn!(key = %name, "unknown config key ignored"),
            }
        }
        Ok(())
    }

    /// The key's own value: as given, else its default; `None` for an unset key without one.
    pub(crate) fn value(&self, name: &str) -> Result<Option<Value>, ConfigError> {
        let key = table_entry(name)?;
        match self.map.get(name).map(String::as_str).or(key.default) {
            Some(raw) => parse(key.name, key.ty, key.validator, raw).map(Some),
            None => Ok(None),
        }
    }

    /// The value the key takes effect with. A time key heading a synonym list
    /// (`log.retention.ms`, `log.roll.ms`, `log.flush.interval.ms`) takes the first of its
    /// synonyms that is set or has a default, in milliseconds, as Kafka's `logRetentionTimeMillis`
    /// and friends do; a negative retention means "forever" (-1).
    pub(crate) fn effective(&self, name: &str) -> Result<Option<Value>, ConfigError> {
        let key = table_entry(name)?;
        if key.synonyms.first() != Some(&key.name) {
            return self.value(name);
        }
        for synonym in key.synonyms {
            if let Some(v) = self.value(synonym)? {
                let units: i64 = v.num(synonym)?;
                let ms = units.saturating_mul(ms_per_unit(synonym));
                let forever = name == RETENTION_MS && ms < 0;
                return Ok(Some(Value::Long(if forever { -1 } else { ms })));
            }
        }
        Ok(None)
    }

    fn required(&self, name: &'static str) -> Result<Value, ConfigError> {
        self.effective(name)?.ok_or(ConfigError::Missing(name))
    }

    fn num<T: TryFrom<i64>>(&self, name: &'static str) -> Result<T, ConfigError> {
        self.required(name)?.num(name)
    }

    /// A number with a minimum gregor needs beyond Kafka's validator (a timer period of 0
    /// would spin; an index smaller than one entry cannot hold any).
    fn at_least<T>(&self, name: &'static str, min: T) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + std::fmt::Display + Copy,
    {
        let v: T = self.num(name)?;
        if v < min {
            return Err(invalid(
                name,
                &v.to_string(),
                format!("must be at least {min}"),
            ));
        }
        Ok(v)
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        self.required(name)?.boolean(name)
    }

    fn text(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self.value(name)?.map(|v| v.render()))
    }
}

const RETENTION_MS: &str = "log.retention.ms";

/// A key gregor cannot act on fully accepts only the values it can honour (see `Support`).
fn check_support(key: &BrokerKey, raw: &str, value: &Value) -> Result<(), ConfigError> {
    match key.support {
        Support::Applied | Support::Vacuous(_) => Ok(()),
        Support::Limited { allows, why } if !allows(value) => Err(invalid(key.name, raw, why)),
        Support::Limited { .. } => Ok(()),
        Support::DefaultOnly(why) => {
            let default = key
                .default
                .map(|d| parse(key.name, key.ty, key.validator, d))
                .transpose()?;
            if default.is_some_and(|d| d.render() == value.render()) {
                Ok(())
            } else {
                Err(invalid(key.name, raw, why))
            }
        }
    }
}

/// `max.connections.per.ip.overrides` with each host resolved to its address (as Kafka's
/// `InetAddress.getByName`); a per-IP limit of 0 needs overrides, or no client could connect.
fn connection_overrides(p: &Props) -> Result<Vec<(std::net::IpAddr, usize)>, ConfigError> {
    use std::net::ToSocketAddrs;
    const KEY: &str = "max.connections.per.ip.overrides";
    let raw = p.text(KEY)?.unwrap_or_default();
    let pairs = super::keys::parse_connection_overrides(&raw).map_err(|e| invalid(KEY, &raw, e))?;
    let mut out = Vec::with_capacity(pairs.len());
    for (host, count) in pairs {
        let ip = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (host.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| invalid(KEY, &raw, format!("cannot resolve host {host:?}")))?,
        };
        out.push((ip, count));
    }
    let per_ip: i64 = p.num("max.connections.per.ip")?;
    if per_ip == 0 && out.is_empty() {
        return Err(invalid(
            "max.connections.per.ip",
            "0",
            "can be 0 only if max.connections.per.ip.overrides is set".to_string(),
        ));
    }
    Ok(out)
}

/// `listeners` (Kafka's `PLAINTEXT://:9092` when unset) and `advertised.listeners` (the
/// listeners when unset), with unroutable hosts advertised as this machine's name.
fn listeners(p: &Props) -> Result<(Vec<Listener>, Vec<Listener>), ConfigError> {
    let listeners = parse_listeners(
        "listeners",
        &p.text("listeners")?
            .unwrap_or_else(|| "PLAINTEXT://:9092".into()),
    )?;
    let advertised = match p.text("advertised.listeners")? {
        Some(v) => parse_listeners("advertised.listeners", &v)?,
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
    for adv in &advertised {
        if !listeners.iter().any(|l| l.name == adv.name) {
            return Err(invalid(
                "advertised.listeners",
                &adv.name,
                "advertises a listener that is not in listeners",
            ));
        }
    }
    Ok((listeners, advertised))
}

/// Kafka's rule when ids may be generated: configured ids stay at or below
/// `reserved.broker.max.id`, so they never collide with generated ones.
fn check_broker_id(p: &Props, broker_id: i32) -> Result<(), ConfigError> {
    let max: i32 = p.num("reserved.broker.max.id")?;
    if p.boolean("broker.id.generation.enable")? && broker_id > max {
        return Err(invalid(
            "broker.id",
            &broker_id.to_string(),
            format!("must not be greater than reserved.broker.max.id ({max}) while broker.id.generation.enable is true"),
        ));
    }
    Ok(())
}

/// `listener.security.protocol.map` must map each listener to a protocol gregor speaks
/// (PLAINTEXT only, until TLS and SASL exist), and `inter.broker.listener.name` must name one.
fn check_listener_protocols(p: &Props, listeners: &[Listener]) -> Result<(), ConfigError> {
    const MAP: &str = "listener.security.protocol.map";
    let raw = p.text(MAP)?.unwrap_or_default();
    let mut map = BTreeMap::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(MAP, &raw, format!("entry {entry:?} is not NAME:PROTOCOL")))?;
        let protocol = protocol.trim().to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str()) {
            return Err(invalid(
                MAP,
                &raw,
                format!("unknown security protocol {protocol}"),
            ));
        }
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    for l in listeners {
        match map.get(&l.name).map(String::as_str) {
            Some("PLAINTEXT") => {}
            Some(other) => {
                return Err(invalid(
                    MAP,
                    &raw,
                    format!(
                        "listener {} uses {other}; only PLAINTEXT is supported",
                        l.name
                    ),
                ))
            }
            None => {
                return Err(invalid(
                    MAP,
                    &raw,
                    format!("no security protocol for listener {}", l.name),
                ))
            }
        }
    }
    Ok(())
}

/// Kafka's rules for `inter.broker.listener.name` (else the listener named after
/// `security.inter.broker.protocol`) and `control.plane.listener.name`: both must be advertised
/// (other brokers find them in ZooKeeper), and they must differ.
fn broker_listeners(
    p: &Props,
    advertised: &[Listener],
) -> Result<(String, Option<String>), ConfigError> {
    let advertised_names = || {
        advertised
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let is_advertised = |n: &str| advertised.iter().any(|l| l.name == n);
    let given = p.map.contains_key("inter.broker.listener.name");
    if given && p.map.contains_key("security.inter.broker.protocol") {
        return Err(invalid(
            "inter.broker.listener.name",
            "",
            "only one of inter.broker.listener.name and security.inter.broker.protocol may be set",
        ));
    }
    let inter = match p.text("inter.broker.listener.name")? {
        Some(n) => n.to_ascii_uppercase(),
        None => p
            .text("security.inter.broker.protocol")?
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase(),
    };
    if !is_advertised(&inter) {
        return Err(invalid(
            "inter.broker.listener.name",
            &inter,
            format!(
                "must be a listener name defined in advertised.listeners ({})",
                advertised_names()
            ),
        ));
    }
    let control = p
        .text("control.plane.listener.name")?
        .map(|n| n.to_ascii_uppercase());
    if let Some(cp) = &control {
        if !is_advertised(cp) {
            return Err(invalid(
                "control.plane.listener.name",
                cp,
                format!(
                    "must be a listener name defined in advertised.listeners ({})",
                    advertised_names()
                ),
            ));
        }
        if *cp == inter {
            return Err(invalid(
                "control.plane.listener.name",
                cp,
                "must differ from the inter-broker listener name",
            ));
        }
    }
    Ok((inter, control))
}

/// A socket buffer size; -1 (Kafka's "OS default") is `None`.
fn buffer_size(p: &Props, key: &'static str) -> Result<Option<usize>, ConfigError> {
    let v: i64 = p.num(key)?;
    match v {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    key,
                    &n.to_string(),
                    "must be -1 (the OS default) or positive",
                )
            }),
    }
}

/// Kafka's check: a byte budget smaller than one request could never admit the largest one.
fn queued_bytes(p: &Props) -> Result<Option<usize>, ConfigError> {
    const KEY: &str = "queued.max.request.bytes";
    let v: i64 = p.num(KEY)?;
    if v <= 0 {
        return Ok(None);
    }
    let max_request: i64 = p.num("socket.request.max.bytes")?;
    if v < max_request {
        return Err(invalid(
            KEY,
            &v.to_string(),
            "must be at least socket.request.max.bytes (or -1 for no limit)",
        ));
    }
    Ok(usize::try_from(v).ok())
}

fn log_dirs(p: &Props) -> Result<Vec<PathBuf>, ConfigError> {
    let dirs = match p.text("log.dirs")? {
        Some(d) => d,
        None => p.text("log.dir")?.unwrap_or_default(),
    };
    let dirs: Vec<PathBuf> = dirs
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        return Err(invalid("log.dirs", "", "no directory given"));
    }
    Ok(dirs)
}

/// Kafka's `validateValues` checks on the resolved log times.
fn check_log_times(roll: i64, jitter: i64, retention: i64) -> Result<(), ConfigError> {
    if roll < 1 {
        return Err(invalid(
            "log.roll.ms",
            &roll.to_string(),
            "must be at least 1",
        ));
    }
    if jitter < 0 {
        return Err(invalid(
            "log.roll.jitter.ms",
            &jitter.to_string(),
            "must be at least 0",
        ));
    }
    if retention < 1 && retention != -1 {
        return Err(invalid(
            RETENTION_MS,
            &retention.to_string(),
            "must be unlimited (-1) or at least 1",
        ));
    }
    Ok(())
}

/// Kafka's checks that a parked follower fetch neither times out its socket nor drops it out of
/// the ISR.
fn check_replica_timeouts(c: &KafkaConfig) -> Result<(), ConfigError> {
    let wait = i64::from(c.replica_fetch_wait_max_ms);
    let wait_str = wait.to_string();
    if u64::try_from(wait).is_ok_and(|w| w > c.replica_socket_timeout_ms) {
        return Err(invalid(
            "replica.fetch.wait.max.ms",
            &wait_str,
            "must not exceed replica.socket.timeout.ms",
        ));
    }
    if u64::try_from(wait).is_ok_and(|w| w > c.replica_lag_time_max_ms) {
        return Err(invalid(
            "replica.fetch.wait.max.ms",
            &wait_str,
            "must not exceed replica.lag.time.max.ms",
        ));
    }
    Ok(())
}

fn timestamp_type(p: &Props) -> Result<TimestampType, ConfigError> {
    Ok(match p.text("log.message.timestamp.type")?.as_deref() {
        Some("LogAppendTime") => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    })
}

/// A `compression.type` value; the key's validator already refused unknown codecs.
pub(super) fn compression_type(
    p: &Props,
    key: &'static str,
) -> Result<CompressionType, ConfigError> {
    Ok(p.text(key)?
        .as_deref()
        .and_then(CompressionType::parse)
        .unwrap_or_default())
}

impl KafkaConfig {
    /// Builds the configuration from a key/value map (the parsed file plus overrides).
    ///
    /// # Errors
    /// See [`KafkaConfig::load`].
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let p = Props::new(&map);
        p.check_all()?;
        let broker_id: i32 = p.num("broker.id")?;
        if broker_id < 0 {
            // Kafka would generate an id from /brokers/seqid; gregor asks for an explicit one
            // so that an operator always knows which data dir belongs to which broker.
            return Err(invalid(
                "broker.id",
                &broker_id.to_string(),
                "set an explicit non-negative broker.id (automatic id generation is not supported)",
            ));
        }
        check_broker_id(&p, broker_id)?;
        let (listeners, advertised_listeners) = listeners(&p)?;
        check_listener_protocols(&p, &listeners)?;
        let (inter_broker_listener_name, control_plane_listener_name) =
            broker_listeners(&p, &advertised_listeners)?;
        let zookeeper_connect = p
            .text("zookeeper.connect")?
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("zookeeper.connect"))?;
        let zookeeper_session_timeout_ms = p.at_least("zookeeper.session.timeout.ms", 1)?;
        let zookeeper_connection_timeout_ms = match p.value("zookeeper.connection.timeout.ms")? {
            None => zookeeper_session_timeout_ms,
            Some(_) => p.at_least("zookeeper.connection.timeout.ms", 1)?,
        };
        let log_roll_ms = p.num("log.roll.ms")?;
        let log_roll_jitter_ms = p.num("log.roll.jitter.ms")?;
        let log_retention_ms = p.num(RETENTION_MS)?;
        check_log_times(log_roll_ms, log_roll_jitter_ms, log_retention_ms)?;
        let cleanup = p.required("log.cleanup.policy")?.items();
        let cfg = KafkaConfig {
            broker_id,
            listeners,
            advertised_listeners,
            inter_broker_listener_name,
            control_plane_listener_name,
            log_dirs: log_dirs(&p)?,
            zookeeper_connect,
            zookeeper_session_timeout_ms,
            zookeeper_connection_timeout_ms,
            rack: p.text("broker.rack")?,
            socket_request_max_bytes: p.num("socket.request.max.bytes")?,
            socket_send_buffer_bytes: buffer_size(&p, "socket.send.buffer.bytes")?,
            socket_receive_buffer_bytes: buffer_size(&p, "socket.receive.buffer.bytes")?,
            queued_max_requests: p.at_least("queued.max.requests", 1)?,
            queued_max_request_bytes: queued_bytes(&p)?,
            num_network_threads: p.at_least("num.network.threads", 1)?,
            num_io_threads: p.at_least("num.io.threads", 1)?,
            num_recovery_threads_per_data_dir: p
                .at_least("num.recovery.threads.per.data.dir", 1)?,
            zookeeper_max_in_flight_requests: p.at_least("zookeeper.max.in.flight.requests", 1)?,
            connections_max_idle_ms: p.at_least("connections.max.idle.ms", 1)?,
            max_connections: p.num("max.connections")?,
            max_connections_per_ip: p.num("max.connections.per.ip")?,
            max_connections_per_ip_overrides: connection_overrides(&p)?,
            message_max_bytes: p.num("message.max.bytes")?,
            num_partitions: p.num("num.partitions")?,
            default_replication_factor: p.at_least("default.replication.factor", 1)?,
            auto_create_topics_enable: p.boolean("auto.create.topics.enable")?,
            delete_topic_enable: p.boolean("delete.topic.enable")?,
            min_insync_replicas: p.num("min.insync.replicas")?,
            unclean_leader_election_enable: p.boolean("unclean.leader.election.enable")?,
            log_segment_bytes: p.num("log.segment.bytes")?,
            log_roll_ms,
            log_roll_jitter_ms,
            log_retention_ms,
            log_retention_bytes: p.num("log.retention.bytes")?,
            log_retention_check_interval_ms: p.num("log.retention.check.interval.ms")?,
            log_index_interval_bytes: p.num("log.index.interval.bytes")?,
            log_index_size_max_bytes: p.at_least("log.index.size.max.bytes", 8)?,
            log_flush_interval_messages: p.num("log.flush.interval.messages")?,
            log_flush_interval_ms: p.num("log.flush.interval.ms")?,
            log_flush_scheduler_interval_ms: p.num("log.flush.scheduler.interval.ms")?,
            log_flush_offset_checkpoint_interval_ms: p
                .at_least("log.flush.offset.checkpoint.interval.ms", 1)?,
            log_flush_start_offset_checkpoint_interval_ms: p
                .at_least("log.flush.start.offset.checkpoint.interval.ms", 1)?,
            log_message_timestamp_type: timestamp_type(&p)?,
            log_message_timestamp_difference_max_ms: p
                .num("log.message.timestamp.difference.max.ms")?,
            compression_type: compression_type(&p, "compression.type")?,
            log_cleanup_policy_delete: cleanup.iter().any(|c| c == "delete"),
            log_cleanup_policy_compact: cleanup.iter().any(|c| c == "compact"),
            log_segment_delete_delay_ms: p.num("log.segment.delete.delay.ms")?,
            transactional_id_expiration_ms: p.num("transactional.id.expiration.ms")?,
            transaction_state_log_num_partitions: p.num("transaction.state.log.num.partitions")?,
            transaction_state_log_replication_factor: p
                .num("transaction.state.log.replication.factor")?,
            transaction_state_log_min_isr: p.num("transaction.state.log.min.isr")?,
            transaction_state_log_segment_bytes: p.num("transaction.state.log.segment.bytes")?,
            transaction_state_log_load_buffer_size: p
                .num("transaction.state.log.load.buffer.size")?,
            transaction_max_timeout_ms: p.num("transaction.max.timeout.ms")?,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: p
                .num("transaction.abort.timed.out.transaction.cleanup.interval.ms")?,
            transaction_remove_expired_transaction_cleanup_interval_ms: p
                .num("transaction.remove.expired.transaction.cleanup.interval.ms")?,
            request_timeout_ms: p.num("request.timeout.ms")?,
            offsets_topic_num_partitions: p.num("offsets.topic.num.partitions")?,
            offsets_topic_replication_factor: p.num("offsets.topic.replication.factor")?,
            offsets_topic_segment_bytes: p.num("offsets.topic.segment.bytes")?,
            offsets_retention_minutes: p.num("offsets.retention.minutes")?,
            offsets_retention_check_interval_ms: p.num("offsets.retention.check.interval.ms")?,
            offsets_commit_timeout_ms: p.num("offsets.commit.timeout.ms")?,
            offsets_load_buffer_size: p.num("offsets.load.buffer.size")?,
            offset_metadata_max_bytes: p.num("offset.metadata.max.bytes")?,
            group_min_session_timeout_ms: p.num("group.min.session.timeout.ms")?,
            group_max_session_timeout_ms: p.num("group.max.session.timeout.ms")?,
            group_initial_rebalance_delay_ms: p.at_least("group.initial.rebalance.delay.ms", 0)?,
            group_max_size: p.num("group.max.size")?,
            fetch_max_bytes: p.num("fetch.max.bytes")?,
            max_incremental_fetch_session_cache_slots: p
                .num("max.incremental.fetch.session.cache.slots")?,
            replica_lag_time_max_ms: p.at_least("replica.lag.time.max.ms", 1)?,
            replica_fetch_max_bytes: p.num("replica.fetch.max.bytes")?,
            replica_fetch_response_max_bytes: p.num("replica.fetch.response.max.bytes")?,
            replica_fetch_wait_max_ms: p.at_least("replica.fetch.wait.max.ms", 0)?,
            replica_fetch_min_bytes: p.at_least("replica.fetch.min.bytes", 0)?,
            replica_fetch_backoff_ms: p.num("replica.fetch.backoff.ms")?,
            replica_socket_timeout_ms: p.at_least("replica.socket.timeout.ms", 1)?,
            replica_high_watermark_checkpoint_interval_ms: p
                .at_least("replica.high.watermark.checkpoint.interval.ms", 1)?,
            controller_socket_timeout_ms: p.at_least("controller.socket.timeout.ms", 1)?,
            controlled_shutdown_enable: p.boolean("controlled.shutdown.enable")?,
            controlled_shutdown_max_retries: p.num("controlled.shutdown.max.retries")?,
            controlled_shutdown_retry_backoff_ms: p.num("controlled.shutdown.retry.backoff.ms")?,
            auto_leader_rebalance_enable: p.boolean("auto.leader.rebalance.enable")?,
            leader_imbalance_check_interval_seconds: p
                .at_least("leader.imbalance.check.interval.seconds", 1)?,
            leader_imbalance_per_broker_percentage: p
                .num("leader.imbalance.per.broker.percentage")?,
            raw: map.clone(),
        };
        check_replica_timeouts(&cfg)?;
        Ok(cfg)
    }
}
