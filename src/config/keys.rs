//! The one table of configuration keys gregor understands: every broker key (`server.properties`)
//! and every topic key (`/config/topics/<t>`, CreateTopics), each with Kafka 2.8's type, default,
//! validator, topic/broker synonym, sensitivity and dynamic-update mode.
//!
//! Broker parsing, the unknown-key warning, topic overrides, CreateTopics validation and
//! DescribeConfigs all read this table, so a key's default or range is written down once.
//! Defaults are Kafka's strings as `ConfigDef.convertToString` renders them; `None` is Kafka's
//! `null` default (the key is unset unless given, e.g. `log.retention.ms`, whose value then comes
//! from its synonyms).

/// Kafka's `ConfigDef.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Bool,
    Str,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

/// Kafka's validators (`Range.atLeast`, `Range.between`, `ValidString.in`, `ValidList.in`, and the
/// few bespoke ones).
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    Any,
    AtLeast(i64),
    Between(f64, f64),
    OneOf(&'static [&'static str]),
    EachOneOf(&'static [&'static str]),
    Check(fn(&str) -> Result<(), String>),
}

/// How Kafka 2.8 can change a broker key without a restart (`DynamicBrokerConfig`): not at all,
/// per broker (`/config/brokers/<id>`), or also cluster-wide (`/config/brokers/<default>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    ReadOnly,
    PerBroker,
    ClusterWide,
}

/// A broker key.
#[derive(Debug, Clone, Copy)]
pub struct BrokerKey {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: Option<&'static str>,
    pub validator: Validator,
    pub dynamic: Dynamic,
    /// Whether gregor acts on the key, and if not, which values it can still honour; no key
    /// is accepted and then ignored.
    pub support: Support,
    /// Kafka's `brokerConfigSynonyms`: the names that set the same value, in precedence order
    /// (`log.retention.ms`, `.minutes`, `.hours`). Empty means the key alone.
    pub synonyms: &'static [&'static str],
}

/// A topic key.
#[derive(Debug, Clone, Copy)]
pub struct TopicKey {
    pub name: &'static str,
    pub ty: ConfigType,
    /// Kafka's `LogConfig` default, used when there is no broker synonym to inherit from.
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// Kafka's `TopicConfigSynonyms`: the broker key whose value a topic without an override gets.
    pub broker_synonym: Option<&'static str>,
    /// False for keys stored and reported but not acted on (compaction, compression, throttles).
    pub applied: bool,
}

/// What gregor does with a broker key's value.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// Acted on as in Kafka.
    Applied,
    /// gregor can do only what the values `allows` accepts (often just the default, which is
    /// what it does); any other value given stops start-up, naming the key and `why`.
    Limited {
        allows: fn(&super::value::Value) -> bool,
        why: &'static str,
    },
    /// Only the key's default (what gregor does) is accepted; another value stops start-up.
    DefaultOnly(&'static str),
    /// Every value is honoured because what the key governs never happens in gregor (`why`
    /// says what): no old-format fetch to down-convert, no transaction state topic yet.
    Vacuous(&'static str),
}

impl ConfigType {
    /// Kafka's `maybeSensitive`: passwords are never shown.
    pub fn is_sensitive(self) -> bool {
        self == ConfigType::Password
    }
}

impl BrokerKey {
    /// The names setting this key's value, in precedence order (this key alone if it has none).
    pub fn synonym_names(&self) -> Vec<&'static str> {
        if self.synonyms.is_empty() {
            vec![self.name]
        } else {
            self.synonyms.to_vec()
        }
    }
}

/// The broker key called `name`.
pub fn broker_key(name: &str) -> Option<&'static BrokerKey> {
    BROKER_KEYS.iter().find(|k| k.name == name)
}

/// The topic key called `name`.
pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Milliseconds per unit of a time key, from its suffix (`log.retention.hours` → 3,600,000).
pub fn ms_per_unit(name: &str) -> i64 {
    if name.ends_with(".hours") {
        3_600_000
    } else if name.ends_with(".minutes") {
        60_000
    } else {
        1
    }
}

const I64_MAX: &str = "9223372036854775807";
const I32_MAX: &str = "2147483647";
/// `EndPoint.DefaultSecurityProtocolMap`.
const PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";
/// `BrokerCompressionCodec.brokerCompressionOptions`.
const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
/// Kafka 2.8's inter-broker protocol versions and the highest `-IVn` of each (`ApiVersion`);
/// `None` for the legacy versions that have no `-IV` suffix.
const API_VERSIONS: &[(&str, Option<u8>)] = &[
    ("0.8.0", None),
    ("0.8.1", None),
    ("0.8.2", None),
    ("0.9.0", None),
    ("0.10.0", Some(1)),
    ("0.10.1", Some(2)),
    ("0.10.2", Some(0)),
    ("0.11.0", Some(2)),
    ("1.0", Some(0)),
    ("1.1", Some(0)),
    ("2.0", Some(1)),
    ("2.1", Some(2)),
    ("2.2", Some(1)),
    ("2.3", Some(1)),
    ("2.4", Some(1)),
    ("2.5", Some(0)),
    ("2.6", Some(0)),
    ("2.7", Some(2)),
    ("2.8", Some(1)),
];

/// Kafka's `ApiVersionValidator` (`ApiVersion.apply`): the first three dot-separated parts of a
/// `0.x` version, or the first two otherwise, must name a known version, with or without `-IVn`.
fn api_version(value: &str) -> Result<(), String> {
    let parts = if value.starts_with("0.") { 3 } else { 2 };
    let key = value.split('.').take(parts).collect::<Vec<_>>().join(".");
    let (short, iv) = match key.split_once("-IV") {
        Some((s, n)) => (s, Some(n)),
        None => (key.as_str(), None),
    };
    let known = API_VERSIONS.iter().find(|(v, _)| *v == short);
    let ok = match (known, iv) {
        (Some(_), None) => true,
        (Some((_, Some(max))), Some(n)) => n.parse::<u8>().is_ok_and(|n| n <= *max),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Version `{value}` is not a valid version"))
    }
}

/// Kafka checks the broker `compression.type` ignoring case (`BrokerCompressionCodec.isValid`).
fn broker_compression(value: &str) -> Result<(), String> {
    if COMPRESSION.iter().any(|c| c.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(format!("Valid options are {}", COMPRESSION.join(",")))
    }
}

/// `max.connections.per.ip.overrides`: comma-separated `host:count` pairs.
fn connection_overrides(value: &str) -> Result<(), String> {
    parse_connection_overrides(value).map(|_| ())
}

/// The `host:count` pairs of `max.connections.per.ip.overrides`, in order.
///
/// # Errors
/// The entry that is not `host:count` with a non-negative count.
pub fn parse_connection_overrides(value: &str) -> Result<Vec<(String, usize)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (host, count) = e
                .rsplit_once(':')
                .ok_or_else(|| format!("entry {e:?} is not host:count"))?;
            let count = count
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("entry {e:?} has no non-negative count"))?;
            let host = host.trim();
            if host.is_empty() {
                return Err(format!("entry {e:?} names no host"));
            }
            Ok((host.to_string(), count))
        })
        .collect()
}

/// Kafka's `ThrottledReplicaListValidator`: `*` or `partition:broker` entries.
fn throttled_replicas(value: &str) -> Result<(), String> {
    let entry_ok = |e: &str| {
        let e = e.trim();
        e.is_empty()
            || e.split_once(':').is_some_and(|(p, b)| {
                !p.is_empty()
                    && !b.is_empty()
                    && p.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
    };
    if value.trim() == "*" || value.split(',').all(entry_ok) {
        Ok(())
    } else {
        Err(
            "must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .into(),
        )
    }
}

use super::value::Value;

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false))
}

fn is_plaintext(v: &Value) -> bool {
    matches!(v, Value::Text(t) if t.eq_ignore_ascii_case("PLAINTEXT"))
}

const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

fn is_one(v: &Value) -> bool {
    matches!(v, Value::Long(1))
}

fn is_minus_one(v: &Value) -> bool {
    matches!(v, Value::Long(-1))
}

/// `major.minor` of a Kafka version string ("0.11.0" counts as 0.11).
fn major_minor(v: &Value) -> Option<(u32, u32)> {
    let Value::Text(t) = v else { return None };
    let mut parts = t.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The inter-broker requests gregor sends are those of 2.4-IV1 (LeaderAndIsr v4, UpdateMetadata
/// v6, StopReplica v3), which every version from 2.4 to 2.8 speaks.
fn ibp_supported(v: &Value) -> bool {
    major_minor(v).is_some_and(|mm| ((2, 4)..=(2, 8)).contains(&mm))
}

/// Only RecordBatch v2 (0.11 and later) is written.
fn message_format_supported(v: &Value) -> bool {
    major_minor(v).is_some_and(|mm| mm >= (0, 11))
}

const NO_CLEANER: &str = "log compaction is not implemented yet: only the default is accepted";

use ConfigType::{Bool, Double, Int, List, Long, Short, Str};
use Dynamic::{ClusterWide, PerBroker, ReadOnly};
use Validator::{Any, AtLeast, Between, Check, EachOneOf, OneOf};

const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
const ROLL_JITTER: &[&str] = &["log.roll.jitter.ms", "log.roll.jitter.hours"];
const RETENTION: &[&str] = &[
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
];
/// `log.flush.scheduler.interval.ms` is the default of `log.flush.interval.ms`, not the reverse.
const FLUSH_MS: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];

/// A broker key gregor acts on.
const fn b(
    name: &'static str,
    ty: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    dynamic: Dynamic,
) -> BrokerKey {
    BrokerKey {
        name,
        ty,
        default,
        validator,
        dynamic,
        support: Support::Applied,
        synonyms: &[],
    }
}

impl BrokerKey {
    const fn limited(
        mut self,
        allows: fn(&super::value::Value) -> bool,
        why: &'static str,
    ) -> Self {
        self.support = Support::Limited { allows, why };
        self
    }

    const fn default_only(mut self, why: &'static str) -> Self {
        self.support = Support::DefaultOnly(why);
        self
    }

    const fn vacuous(mut self, why: &'static str) -> Self {
        self.support = Support::Vacuous(why);
        self
    }

    const fn synonyms(mut self, synonyms: &'static [&'static str]) -> Self {
        self.synonyms = synonyms;
        self
    }
}

/// A topic key gregor acts on.
const fn t(
    name: &'static str,
    ty: ConfigType,
    default: &'static str,
    validator: Validator,
    broker_synonym: Option<&'static str>,
) -> TopicKey {
    TopicKey {
        name,
        ty,
        default: Some(default),
        validator,
        broker_synonym,
        applied: true,
    }
}

impl TopicKey {
    const fn ignored(mut self) -> Self {
        self.applied = false;
        self
    }
}

/// Every broker key, grouped as Kafka's documentation groups them.
#[rustfmt::skip]
pub static BROKER_KEYS: &[BrokerKey] = &[
    // Identity, listeners and ZooKeeper.
    b("broker.id", Int, Some("-1"), Any, ReadOnly),
    b("broker.rack", Str, None, Any, ReadOnly),
    b("broker.id.generation.enable", Bool, Some("true"), Any, ReadOnly),
    b("reserved.broker.max.id", Int, Some("1000"), AtLeast(0), ReadOnly),
    b("listeners", Str, None, Any, PerBroker),
    b("advertised.listeners", Str, None, Any, PerBroker),
    b("listener.security.protocol.map", Str, Some(PROTOCOL_MAP), Any, PerBroker),
    b("inter.broker.listener.name", Str, None, Any, ReadOnly),
    b("security.inter.broker.protocol", Str, Some("PLAINTEXT"), OneOf(PROTOCOLS), ReadOnly)
        .limited(is_plaintext, "only PLAINTEXT is supported until TLS and SASL exist"),
    b("control.plane.listener.name", Str, None, Any, ReadOnly),
    b("inter.broker.protocol.version", Str, Some("2.8-IV1"), Check(api_version), ReadOnly)
        .limited(ibp_supported, "gregor sends the inter-broker requests of 2.4-IV1, so 2.4 to 2.8 are accepted"),
    b("zookeeper.connect", Str, None, Any, ReadOnly),
    b("zookeeper.session.timeout.ms", Int, Some("18000"), Any, ReadOnly),
    b("zookeeper.connection.timeout.ms", Int, None, Any, ReadOnly),
    // gregor's controller pipelines whole batches, so its default window is wider than Kafka's 10.
    b("zookeeper.max.in.flight.requests", Int, Some("2000"), AtLeast(1), ReadOnly),
    b("zookeeper.set.acl", Bool, Some("false"), Any, ReadOnly)
        .limited(is_false, "ZooKeeper authentication is not implemented: znodes are created with open ACLs"),
    // Network and threads.
    b("socket.request.max.bytes", Int, Some("104857600"), AtLeast(1), ReadOnly),
    b("socket.send.buffer.bytes", Int, Some("102400"), Any, ReadOnly),
    b("socket.receive.buffer.bytes", Int, Some("102400"), Any, ReadOnly),
    b("connections.max.idle.ms", Long, Some("600000"), Any, ReadOnly),
    b("max.incremental.fetch.session.cache.slots", Int, Some("1000"), AtLeast(0), ReadOnly),
    b("max.connections", Int, Some(I32_MAX), AtLeast(0), ClusterWide),
    b("max.connections.per.ip", Int, Some(I32_MAX), AtLeast(0), ClusterWide),
    b("max.connections.per.ip.overrides", Str, Some(""), Check(connection_overrides), ClusterWide),
    b("queued.max.requests", Int, Some("500"), AtLeast(1), ReadOnly),
    b("queued.max.request.bytes", Long, Some("-1"), Any, ReadOnly),
    b("num.network.threads", Int, Some("3"), AtLeast(1), ClusterWide),
    b("num.io.threads", Int, Some("8"), AtLeast(1), ClusterWide),
    b("num.replica.fetchers", Int, Some("1"), Any, ClusterWide)
        .limited(is_one, "gregor runs one fetcher per source broker"),
    b("num.recovery.threads.per.data.dir", Int, Some("1"), AtLeast(1), ClusterWide),
    // Topics.
    b("message.max.bytes", Int, Some("1048588"), AtLeast(0), ClusterWide),
    b("num.partitions", Int, Some("1"), AtLeast(1), ReadOnly),
    b("default.replication.factor", Int, Some("1"), Any, ReadOnly),
    b("auto.create.topics.enable", Bool, Some("true"), Any, ReadOnly),
    b("delete.topic.enable", Bool, Some("true"), Any, ReadOnly),
    b("min.insync.replicas", Int, Some("1"), AtLeast(1), ClusterWide),
    b("unclean.leader.election.enable", Bool, Some("false"), Any, ClusterWide),
    b("compression.type", Str, Some("producer"), Check(broker_compression), ClusterWide),
    // Logs.
    b("log.dirs", Str, None, Any, ReadOnly),
    b("log.dir", Str, Some("/tmp/kafka-logs"), Any, ReadOnly),
    b("log.segment.bytes", Int, Some("1073741824"), AtLeast(14), ClusterWide),
    b("log.roll.ms", Long, None, Any, ClusterWide).synonyms(ROLL),
    b("log.roll.hours", Int, Some("168"), AtLeast(1), ReadOnly).synonyms(ROLL),
    b("log.roll.jitter.ms", Long, None, Any, ClusterWide).synonyms(ROLL_JITTER),
    b("log.roll.jitter.hours", Int, Some("0"), AtLeast(0), ReadOnly).synonyms(ROLL_JITTER),
    b("log.retention.ms", Long, None, Any, ClusterWide).synonyms(RETENTION),
    b("log.retention.minutes", Int, None, Any, ReadOnly).synonyms(RETENTION),
    b("log.retention.hours", Int, Some("168"), Any, ReadOnly).synonyms(RETENTION),
    b("log.retention.bytes", Long, Some("-1"), Any, ClusterWide),
    b("log.retention.check.interval.ms", Long, Some("300000"), AtLeast(1), ReadOnly),
    b("log.index.interval.bytes", Int, Some("4096"), AtLeast(0), ClusterWide),
    b("log.index.size.max.bytes", Int, Some("10485760"), AtLeast(4), ClusterWide),
    b("log.flush.interval.messages", Long, Some(I64_MAX), AtLeast(1), ClusterWide),
    b("log.flush.interval.ms", Long, None, Any, ClusterWide).synonyms(FLUSH_MS),
    b("log.flush.scheduler.interval.ms", Long, Some(I64_MAX), Any, ReadOnly),
    b("log.flush.offset.checkpoint.interval.ms", Int, Some("60000"), AtLeast(0), ReadOnly),
    b("log.flush.start.offset.checkpoint.interval.ms", Int, Some("60000"), AtLeast(0), ReadOnly),
    b("log.message.timestamp.type", Str, Some("CreateTime"), OneOf(TIMESTAMP_TYPES), ClusterWide),
    b("log.message.timestamp.difference.max.ms", Long, Some(I64_MAX), Any, ClusterWide),
    b("log.message.format.version", Str, Some("2.8-IV1"), Check(api_version), ReadOnly)
        .limited(message_format_supported, "gregor writes only record batch v2, the format of 0.11 and later"),
    b("log.message.downconversion.enable", Bool, Some("true"), Any, ClusterWide)
        .vacuous("no supported Fetch version needs records older than v2, so nothing is ever down-converted"),
    b("log.cleanup.policy", List, Some("delete"), EachOneOf(CLEANUP_POLICIES), ClusterWide),
    b("log.segment.delete.delay.ms", Long, Some("60000"), AtLeast(0), ClusterWide),
    b("log.preallocate", Bool, Some("false"), Any, ClusterWide)
        .limited(is_false, "segment files are not preallocated"),
    b("log.cleaner.enable", Bool, Some("true"), Any, ReadOnly)
        .limited(is_false, "log compaction is not implemented yet (compacted topics keep every record); only false is accepted"),
    b("log.cleaner.threads", Int, Some("1"), AtLeast(0), ClusterWide).default_only(NO_CLEANER),
    b("log.cleaner.min.cleanable.ratio", Double, Some("0.5"), Any, ClusterWide).default_only(NO_CLEANER),
    b("log.cleaner.delete.retention.ms", Long, Some("86400000"), Any, ClusterWide).default_only(NO_CLEANER),
    b("log.cleaner.min.compaction.lag.ms", Long, Some("0"), Any, ClusterWide).default_only(NO_CLEANER),
    b("log.cleaner.max.compaction.lag.ms", Long, Some(I64_MAX), Any, ClusterWide).default_only(NO_CLEANER),
    // Group coordinator and offsets.
    b("offsets.topic.num.partitions", Int, Some("50"), AtLeast(1), ReadOnly),
    b("offsets.topic.replication.factor", Short, Some("3"), AtLeast(1), ReadOnly),
    b("offsets.topic.segment.bytes", Int, Some("104857600"), AtLeast(1), ReadOnly),
    b("offsets.retention.minutes", Int, Some("10080"), AtLeast(1), ReadOnly),
    b("offsets.retention.check.interval.ms", Long, Some("600000"), AtLeast(1), ReadOnly),
    b("offsets.commit.timeout.ms", Int, Some("5000"), AtLeast(1), ReadOnly),
    b("offsets.commit.required.acks", Short, Some("-1"), Any, ReadOnly)
        .limited(is_minus_one, "offsets are written with acks=all"),
    b("offsets.load.buffer.size", Int, Some("5242880"), AtLeast(1), ReadOnly),
    b("offset.metadata.max.bytes", Int, Some("4096"), Any, ReadOnly),
    b("group.min.session.timeout.ms", Int, Some("6000"), Any, ReadOnly),
    b("group.max.session.timeout.ms", Int, Some("1800000"), Any, ReadOnly),
    b("group.initial.rebalance.delay.ms", Int, Some("3000"), Any, ReadOnly),
    b("group.max.size", Int, Some(I32_MAX), AtLeast(1), ReadOnly),
    b("transactional.id.expiration.ms", Int, Some("604800000"), AtLeast(1), ReadOnly),
    b("transaction.state.log.replication.factor", Short, Some("3"), AtLeast(1), ReadOnly),
    b("transaction.state.log.min.isr", Int, Some("2"), AtLeast(1), ReadOnly),
    b("transaction.state.log.num.partitions", Int, Some("50"), AtLeast(1), ReadOnly),
    b("transaction.state.log.segment.bytes", Int, Some("104857600"), AtLeast(1), ReadOnly),
    b("transaction.state.log.load.buffer.size", Int, Some("5242880"), AtLeast(1), ReadOnly),
    b("transaction.max.timeout.ms", Int, Some("900000"), AtLeast(1), ReadOnly),
    b("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, Some("10000"), AtLeast(1), ReadOnly),
    b("transaction.remove.expired.transaction.cleanup.interval.ms", Int, Some("3600000"), AtLeast(1), ReadOnly),
    b("request.timeout.ms", Int, Some("30000"), AtLeast(0), ReadOnly),
    // Replication and the controller.
    b("replica.lag.time.max.ms", Long, Some("30000"), Any, ReadOnly),
    b("fetch.max.bytes", Int, Some("57671680"), AtLeast(1024), ReadOnly),
    b("replica.fetch.max.bytes", Int, Some("1048576"), AtLeast(0), ReadOnly),
    b("replica.fetch.response.max.bytes", Int, Some("10485760"), AtLeast(0), ReadOnly),
    b("replica.fetch.wait.max.ms", Int, Some("500"), Any, ReadOnly),
    b("replica.fetch.min.bytes", Int, Some("1"), Any, ReadOnly),
    b("replica.fetch.backoff.ms", Int, Some("1000"), AtLeast(0), ReadOnly),
    b("replica.socket.timeout.ms", Int, Some("30000"), Any, ReadOnly),
    b("replica.high.watermark.checkpoint.interval.ms", Long, Some("5000"), Any, ReadOnly),
    b("controller.socket.timeout.ms", Int, Some("30000"), Any, ReadOnly),
    b("controlled.shutdown.enable", Bool, Some("true"), Any, ReadOnly),
    b("controlled.shutdown.max.retries", Int, Some("3"), Any, ReadOnly),
    b("controlled.shutdown.retry.backoff.ms", Long, Some("5000"), Any, ReadOnly),
    b("auto.leader.rebalance.enable", Bool, Some("true"), Any, ReadOnly),
    b("leader.imbalance.check.interval.seconds", Long, Some("300"), Any, ReadOnly),
    b("leader.imbalance.per.broker.percentage", Int, Some("10"), Any, ReadOnly),
];

/// Every topic key (Kafka 2.8's `LogConfig`) with its broker synonym.
#[rustfmt::skip]
pub static TOPIC_KEYS: &[TopicKey] = &[
    t("segment.bytes", Int, "1073741824", AtLeast(14), Some("log.segment.bytes")),
    t("segment.ms", Long, "604800000", AtLeast(1), Some("log.roll.ms")),
    t("segment.jitter.ms", Long, "0", AtLeast(0), Some("log.roll.jitter.ms")),
    t("segment.index.bytes", Int, "10485760", AtLeast(0), Some("log.index.size.max.bytes")),
    t("flush.messages", Long, I64_MAX, AtLeast(0), Some("log.flush.interval.messages")),
    t("flush.ms", Long, I64_MAX, AtLeast(0), Some("log.flush.interval.ms")),
    t("retention.bytes", Long, "-1", Any, Some("log.retention.bytes")),
    t("retention.ms", Long, "604800000", AtLeast(-1), Some("log.retention.ms")),
    t("max.message.bytes", Int, "1048588", AtLeast(0), Some("message.max.bytes")),
    t("index.interval.bytes", Int, "4096", AtLeast(0), Some("log.index.interval.bytes")),
    t("file.delete.delay.ms", Long, "60000", AtLeast(0), Some("log.segment.delete.delay.ms")),
    t("cleanup.policy", List, "delete", EachOneOf(CLEANUP_POLICIES), Some("log.cleanup.policy")),
    t("unclean.leader.election.enable", Bool, "false", Any, Some("unclean.leader.election.enable")),
    t("min.insync.replicas", Int, "1", AtLeast(1), Some("min.insync.replicas")),
    t("message.timestamp.type", Str, "CreateTime", OneOf(TIMESTAMP_TYPES), Some("log.message.timestamp.type")),
    t("delete.retention.ms", Long, "86400000", AtLeast(0), Some("log.cleaner.delete.retention.ms")).ignored(),
    t("min.compaction.lag.ms", Long, "0", AtLeast(0), Some("log.cleaner.min.compaction.lag.ms")).ignored(),
    t("max.compaction.lag.ms", Long, I64_MAX, AtLeast(1), Some("log.cleaner.max.compaction.lag.ms")).ignored(),
    t("min.cleanable.dirty.ratio", Double, "0.5", Between(0.0, 1.0), Some("log.cleaner.min.cleanable.ratio")).ignored(),
    t("compression.type", Str, "producer", OneOf(COMPRESSION), Some("compression.type")),
    t("preallocate", Bool, "false", Any, Some("log.preallocate")).ignored(),
    t("message.format.version", Str, "2.8-IV1", Check(api_version), Some("log.message.format.version")).ignored(),
    t("message.timestamp.difference.max.ms", Long, I64_MAX, AtLeast(0), Some("log.message.timestamp.difference.max.ms")),
    t("message.downconversion.enable", Bool, "true", Any, Some("log.message.downconversion.enable")).ignored(),
    t("leader.replication.throttled.replicas", List, "", Check(throttled_replicas), None).ignored(),
    t("follower.replication.throttled.replicas", List, "", Check(throttled_replicas), None).ignored(),
];
