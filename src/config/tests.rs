//! Tests of the key table against Kafka 2.8's documentation (the expected values are written
//! out here from the docs, not read from the table), of broker parsing, topic overrides and
//! CreateTopics validation, and of what DescribeConfigs reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::describe::{describe_broker, describe_topic, ConfigSource, Described};
use super::keys::{broker_key, topic_key, Dynamic, BROKER_KEYS, TOPIC_KEYS};
use super::value::{java_double, parse};
use super::*;
use crate::log::{LogConfig, TimestampType};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn cfg(pairs: &[(&str, &str)]) -> Result<KafkaConfig, ConfigError> {
    let mut m = map(pairs);
    m.entry("broker.id".into()).or_insert_with(|| "0".into());
    m.entry("zookeeper.connect".into())
        .or_insert_with(|| "127.0.0.1:2181".into());
    KafkaConfig::from_map(m)
}

const MAX_LONG: &str = "9223372036854775807";
const MAX_INT: &str = "2147483647";

/// Kafka 2.8's documented broker defaults ("null" written as `None`).
const BROKER_DOC_DEFAULTS: &[(&str, Option<&str>)] = &[
    ("advertised.listeners", None),
    ("auto.create.topics.enable", Some("true")),
    ("auto.leader.rebalance.enable", Some("true")),
    ("broker.id", Some("-1")),
    ("broker.id.generation.enable", Some("true")),
    ("broker.rack", None),
    ("compression.type", Some("producer")),
    ("connections.max.idle.ms", Some("600000")),
    ("control.plane.listener.name", None),
    ("controlled.shutdown.enable", Some("true")),
    ("controlled.shutdown.max.retries", Some("3")),
    ("controlled.shutdown.retry.backoff.ms", Some("5000")),
    ("controller.socket.timeout.ms", Some("30000")),
    ("default.replication.factor", Some("1")),
    ("delete.topic.enable", Some("true")),
    ("fetch.max.bytes", Some("57671680")),
    ("group.initial.rebalance.delay.ms", Some("3000")),
    ("group.max.session.timeout.ms", Some("1800000")),
    ("group.max.size", Some(MAX_INT)),
    ("group.min.session.timeout.ms", Some("6000")),
    ("inter.broker.listener.name", None),
    ("inter.broker.protocol.version", Some("2.8-IV1")),
    ("leader.imbalance.check.interval.seconds", Some("300")),
    ("leader.imbalance.per.broker.percentage", Some("10")),
    (
        "listener.security.protocol.map",
        Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
    ),
    ("listeners", None),
    ("log.cleaner.delete.retention.ms", Some("86400000")),
    ("log.cleaner.enable", Some("true")),
    ("log.cleaner.max.compaction.lag.ms", Some(MAX_LONG)),
    ("log.cleaner.min.cleanable.ratio", Some("0.5")),
    ("log.cleaner.min.compaction.lag.ms", Some("0")),
    ("log.cleaner.threads", Some("1")),
    ("log.cleanup.policy", Some("delete")),
    ("log.dir", Some("/tmp/kafka-logs")),
    ("log.dirs", None),
    ("log.flush.interval.messages", Some(MAX_LONG)),
    ("log.flush.interval.ms", None),
    ("log.flush.offset.checkpoint.interval.ms", Some("60000")),
    ("log.flush.scheduler.interval.ms", Some(MAX_LONG)),
    (
        "log.flush.start.offset.checkpoint.interval.ms",
        Some("60000"),
    ),
    ("log.index.interval.bytes", Some("4096")),
    ("log.index.size.max.bytes", Some("10485760")),
    ("log.message.downconversion.enable", Some("true")),
    ("log.message.format.version", Some("2.8-IV1")),
    ("log.message.timestamp.difference.max.ms", Some(MAX_LONG)),
    ("log.message.timestamp.type", Some("CreateTime")),
    ("log.preallocate", Some("false")),
    ("log.retention.bytes", Some("-1")),
    ("log.retention.check.interval.ms", Some("300000")),
    ("log.retention.hours", Some("168")),
    ("log.retention.minutes", None),
    ("log.retention.ms", None),
    ("log.roll.hours", Some("168")),
    ("log.roll.jitter.hours", Some("0")),
    ("log.roll.jitter.ms", None),
    ("log.roll.ms", None),
    ("log.segment.bytes", Some("1073741824")),
    ("log.segment.delete.delay.ms", Some("60000")),
    ("max.connections", Some(MAX_INT)),
    ("max.connections.per.ip", Some(MAX_INT)),
    ("max.connections.per.ip.overrides", Some("")),
    ("max.incremental.fetch.session.cache.slots", Some("1000")),
    ("message.max.bytes", Some("1048588")),
    ("min.insync.replicas", Some("1")),
    ("num.io.threads", Some("8")),
    ("num.network.threads", Some("3")),
    ("num.partitions", Some("1")),
    ("num.recovery.threads.per.data.dir", Some("1")),
    ("num.replica.fetchers", Some("1")),
    ("offset.metadata.max.bytes", Some("4096")),
    ("offsets.commit.required.acks", Some("-1")),
    ("offsets.commit.timeout.ms", Some("5000")),
    ("offsets.load.buffer.size", Some("5242880")),
    ("offsets.retention.check.interval.ms", Some("600000")),
    ("offsets.retention.minutes", Some("10080")),
    ("offsets.topic.num.partitions", Some("50")),
    ("offsets.topic.replication.factor", Some("3")),
    ("offsets.topic.segment.bytes", Some("104857600")),
    ("queued.max.request.bytes", Some("-1")),
    ("queued.max.requests", Some("500")),
    ("replica.fetch.backoff.ms", Some("1000")),
    ("replica.fetch.max.bytes", Some("1048576")),
    ("replica.fetch.min.bytes", Some("1")),
    ("replica.fetch.response.max.bytes", Some("10485760")),
    ("replica.fetch.wait.max.ms", Some("500")),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        Some("5000"),
    ),
    ("replica.lag.time.max.ms", Some("30000")),
    ("replica.socket.timeout.ms", Some("30000")),
    ("request.timeout.ms", Some("30000")),
    ("reserved.broker.max.id", Some("1000")),
    ("security.inter.broker.protocol", Some("PLAINTEXT")),
    ("socket.receive.buffer.bytes", Some("102400")),
    ("socket.request.max.bytes", Some("104857600")),
    ("socket.send.buffer.bytes", Some("102400")),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Some("10000"),
    ),
    ("transaction.max.timeout.ms", Some("900000")),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        Some("3600000"),
    ),
    ("transaction.state.log.load.buffer.size", Some("5242880")),
    ("transaction.state.log.min.isr", Some("2")),
    ("transaction.state.log.num.partitions", Some("50")),
    ("transaction.state.log.replication.factor", Some("3")),
    ("transaction.state.log.segment.bytes", Some("104857600")),
    ("transactional.id.expiration.ms", Some("604800000")),
    ("unclean.leader.election.enable", Some("false")),
    ("zookeeper.connect", None),
    ("zookeeper.connection.timeout.ms", None),
    ("zookeeper.max.in.flight.requests", Some("10")),
    ("zookeeper.session.timeout.ms", Some("18000")),
    ("zookeeper.set.acl", Some("false")),
];

/// Kafka 2.8's documented topic defaults and each key's "Server Default Property".
const TOPIC_DOCS: &[(&str, &str, Option<&str>)] = &[
    ("cleanup.policy", "delete", Some("log.cleanup.policy")),
    ("compression.type", "producer", Some("compression.type")),
    (
        "delete.retention.ms",
        "86400000",
        Some("log.cleaner.delete.retention.ms"),
    ),
    (
        "file.delete.delay.ms",
        "60000",
        Some("log.segment.delete.delay.ms"),
    ),
    (
        "flush.messages",
        MAX_LONG,
        Some("log.flush.interval.messages"),
    ),
    ("flush.ms", MAX_LONG, Some("log.flush.interval.ms")),
    ("follower.replication.throttled.replicas", "", None),
    (
        "index.interval.bytes",
        "4096",
        Some("log.index.interval.bytes"),
    ),
    ("leader.replication.throttled.replicas", "", None),
    (
        "max.compaction.lag.ms",
        MAX_LONG,
        Some("log.cleaner.max.compaction.lag.ms"),
    ),
    ("max.message.bytes", "1048588", Some("message.max.bytes")),
    (
        "message.downconversion.enable",
        "true",
        Some("log.message.downconversion.enable"),
    ),
    (
        "message.format.version",
        "2.8-IV1",
        Some("log.message.format.version"),
    ),
    (
        "message.timestamp.difference.max.ms",
        MAX_LONG,
        Some("log.message.timestamp.difference.max.ms"),
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        Some("log.message.timestamp.type"),
    ),
    (
        "min.cleanable.dirty.ratio",
        "0.5",
        Some("log.cleaner.min.cleanable.ratio"),
    ),
    (
        "min.compaction.lag.ms",
        "0",
        Some("log.cleaner.min.compaction.lag.ms"),
    ),
    ("min.insync.replicas", "1", Some("min.insync.replicas")),
    ("preallocate", "false", Some("log.preallocate")),
    ("retention.bytes", "-1", Some("log.retention.bytes")),
    ("retention.ms", "604800000", Some("log.retention.ms")),
    ("segment.bytes", "1073741824", Some("log.segment.bytes")),
    (
        "segment.index.bytes",
        "10485760",
        Some("log.index.size.max.bytes"),
    ),
    ("segment.jitter.ms", "0", Some("log.roll.jitter.ms")),
    ("segment.ms", "604800000", Some("log.roll.ms")),
    (
        "unclean.leader.election.enable",
        "false",
        Some("unclean.leader.election.enable"),
    ),
];

#[test]
fn broker_defaults_match_kafka_2_8_docs() {
    let mut names: Vec<&str> = BROKER_KEYS.iter().map(|k| k.name).collect();
    names.sort_unstable();
    let documented: Vec<&str> = BROKER_DOC_DEFAULTS.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, documented, "table and documented key lists differ");
    for (name, default) in BROKER_DOC_DEFAULTS {
        let key = broker_key(name).unwrap();
        let expected = GREGOR_DEFAULTS
            .iter()
            .find(|(k, _)| k == name)
            .map_or(*default, |(_, d)| Some(*d));
        assert_eq!(key.default, expected, "{name}");
    }
}

/// Defaults gregor chooses on purpose, each with its reason in the key table.
const GREGOR_DEFAULTS: &[(&str, &str)] = &[
    // The controller pipelines whole batches of ZooKeeper requests.
    ("zookeeper.max.in.flight.requests", "2000"),
];

#[test]
fn topic_defaults_and_synonyms_match_kafka_2_8_docs() {
    let mut names: Vec<&str> = TOPIC_KEYS.iter().map(|k| k.name).collect();
    names.sort_unstable();
    let documented: Vec<&str> = TOPIC_DOCS.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(names, documented);
    for (name, default, synonym) in TOPIC_DOCS {
        let key = topic_key(name).unwrap();
        assert_eq!(key.default, Some(*default), "{name}");
        assert_eq!(key.broker_synonym, *synonym, "{name}");
        if let Some(s) = synonym {
            assert!(
                broker_key(s).is_some(),
                "{name}'s synonym {s} is not a broker key"
            );
        }
    }
}

#[test]
fn a_topic_without_overrides_takes_the_documented_default_from_its_broker_synonym() {
    let described = describe_topic(&BTreeMap::new(), &BTreeMap::new()).unwrap();
    for (name, default, _) in TOPIC_DOCS {
        let d = described.iter().find(|d| d.name == *name).unwrap();
        assert_eq!(d.value.as_deref(), Some(*default), "{name}");
    }
}

#[test]
fn every_default_reads_back_as_itself() {
    for k in BROKER_KEYS {
        if let Some(d) = k.default {
            let v = parse(k.name, k.ty, k.validator, d).unwrap();
            assert_eq!(v.render(), d, "{}", k.name);
        }
    }
    for k in TOPIC_KEYS {
        let d = k.default.unwrap();
        assert_eq!(parse(k.name, k.ty, k.validator, d).unwrap().render(), d);
    }
}

#[test]
fn dynamic_update_modes_match_kafka_2_8() {
    let per_broker = [
        "advertised.listeners",
        "listener.security.protocol.map",
        "listeners",
    ];
    let cluster_wide = [
        "compression.type",
        "log.cleaner.delete.retention.ms",
        "log.cleaner.max.compaction.lag.ms",
        "log.cleaner.min.cleanable.ratio",
        "log.cleaner.min.compaction.lag.ms",
        "log.cleaner.threads",
        "log.cleanup.policy",
        "log.flush.interval.messages",
        "log.flush.interval.ms",
        "log.index.interval.bytes",
        "log.index.size.max.bytes",
        "log.message.downconversion.enable",
        "log.message.timestamp.difference.max.ms",
        "log.message.timestamp.type",
        "log.preallocate",
        "log.retention.bytes",
        "log.retention.ms",
        "log.roll.jitter.ms",
        "log.roll.ms",
        "log.segment.bytes",
        "log.segment.delete.delay.ms",
        "max.connections",
        "max.connections.per.ip",
        "max.connections.per.ip.overrides",
        "message.max.bytes",
        "min.insync.replicas",
        "num.io.threads",
        "num.network.threads",
        "num.recovery.threads.per.data.dir",
        "num.replica.fetchers",
        "unclean.leader.election.enable",
    ];
    for k in BROKER_KEYS {
        let expected = if per_broker.contains(&k.name) {
            Dynamic::PerBroker
        } else if cluster_wide.contains(&k.name) {
            Dynamic::ClusterWide
        } else {
            Dynamic::ReadOnly
        };
        assert_eq!(k.dynamic, expected, "{}", k.name);
    }
}

#[test]
fn broker_synonyms_follow_kafkas_order() {
    let retention = [
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    for name in retention {
        assert_eq!(broker_key(name).unwrap().synonym_names(), retention);
    }
    assert_eq!(
        broker_key("log.flush.interval.ms").unwrap().synonym_names(),
        ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]
    );
    assert_eq!(
        broker_key("log.flush.scheduler.interval.ms")
            .unwrap()
            .synonym_names(),
        ["log.flush.scheduler.interval.ms"]
    );
    assert_eq!(
        broker_key("log.roll.hours").unwrap().synonym_names(),
        ["log.roll.ms", "log.roll.hours"]
    );
}

#[test]
fn no_key_is_sensitive_yet() {
    // gregor has no password keys; DescribeConfigs hides them when one is added (see
    // describe::tests for a table with one).
    assert!(BROKER_KEYS.iter().all(|k| !k.ty.is_sensitive()));
    assert!(TOPIC_KEYS.iter().all(|k| !k.ty.is_sensitive()));
}

#[test]
fn kafka_config_defaults_match_kafka_2_8() {
    let c = cfg(&[]).unwrap();
    assert_eq!(c.zookeeper_session_timeout_ms, 18000);
    assert_eq!(c.zookeeper_connection_timeout_ms, 18000);
    assert_eq!(c.message_max_bytes, 1_048_588);
    assert_eq!(c.socket_request_max_bytes, 104_857_600);
    assert_eq!(c.log_segment_bytes, 1 << 30);
    assert_eq!(c.log_retention_ms, 168 * 3_600_000);
    assert_eq!(c.log_roll_ms, 168 * 3_600_000);
    assert_eq!(c.log_roll_jitter_ms, 0);
    assert_eq!(c.log_flush_interval_ms, i64::MAX);
    assert_eq!(c.listeners[0].port, 9092);
    assert_eq!(c.replica_lag_time_max_ms, 30_000);
    assert_eq!(c.offsets_topic_replication_factor, 3);
    assert_eq!(c.offsets_retention_minutes, 10_080);
    assert_eq!(c.group_max_size, i32::MAX);
    assert!(c.auto_create_topics_enable && c.log_cleanup_policy_delete);
    assert!(!c.log_cleanup_policy_compact && !c.unclean_leader_election_enable);
    assert_eq!(c.log_message_timestamp_type, TimestampType::CreateTime);
    assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kafka-logs")]);
}

#[test]
fn log_config_default_is_the_broker_default() {
    // Pins the storage layer's `LogConfig::default()` to the table.
    assert_eq!(cfg(&[]).unwrap().default_log_config(), LogConfig::default());
}

#[test]
fn invalid_value_names_the_key() {
    for (k, v) in [
        ("num.partitions", "zero"),
        ("num.partitions", "0"),
        ("auto.create.topics.enable", "yes"),
        ("listeners", "BAD-NAME://:9093"),
        ("log.cleanup.policy", "shred"),
        ("compression.type", "brotli"),
        ("inter.broker.protocol.version", "9.9"),
        ("num.network.threads", "0"),
        ("offsets.topic.replication.factor", "70000"),
        ("log.retention.ms", "0"),
        ("log.roll.hours", "0"),
    ] {
        let err = cfg(&[(k, v)]).unwrap_err();
        assert_eq!(err.key(), Some(k), "{k}={v}: {err}");
        assert!(err.to_string().contains(k), "{err}");
    }
    let err = cfg(&[("replica.fetch.wait.max.ms", "40000")]).unwrap_err();
    assert_eq!(err.key(), Some("replica.fetch.wait.max.ms"), "{err}");
    // An SSL listener is refused through the protocol it maps to, named with the listener.
    let err = cfg(&[("listeners", "SSL://:9093")]).unwrap_err();
    assert_eq!(err.key(), Some("listener.security.protocol.map"), "{err}");
    assert!(err.to_string().contains("listener SSL uses SSL"), "{err}");
}

#[test]
fn values_are_parsed_as_kafka_does() {
    let c = cfg(&[
        ("auto.create.topics.enable", "FALSE"),
        ("compression.type", "LZ4"),
        ("log.cleanup.policy", " compact , delete "),
        ("inter.broker.protocol.version", "2.7"),
        ("log.message.format.version", "0.11.0-IV2"),
    ])
    .unwrap();
    assert!(!c.auto_create_topics_enable);
    assert!(c.log_cleanup_policy_compact && c.log_cleanup_policy_delete);
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
    let c = cfg(&[("log.retention.hours", "-7")]).unwrap();
    assert_eq!(c.log_retention_ms, -1);
    let c = cfg(&[
        ("log.roll.hours", "2"),
        ("log.flush.scheduler.interval.ms", "3000"),
    ])
    .unwrap();
    assert_eq!(c.log_roll_ms, 7_200_000);
    assert_eq!(c.log_flush_interval_ms, 3000);
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

#[test]
fn topic_overrides_apply_on_broker_defaults() {
    let broker = cfg(&[("log.retention.hours", "1")]).unwrap();
    let c = topic_log_config(
        &broker.default_log_config(),
        &map(&[
            ("segment.bytes", "1024"),
            ("message.timestamp.type", "LogAppendTime"),
            ("cleanup.policy", "compact,delete"),
            ("compression.type", "lz4"),
            ("unclean.leader.election.enable", "TRUE"),
            ("some.future.key", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.segment_bytes, 1024);
    assert_eq!(c.retention_ms, 3_600_000);
    assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
    assert!(c.cleanup_policy_delete && c.cleanup_policy_compact);
    assert!(c.unclean_leader_election_enable);
    let c = topic_log_config(&LogConfig::default(), &map(&[("retention.ms", "-1")])).unwrap();
    assert_eq!(c.retention_ms, -1);
}

#[test]
fn invalid_topic_values_name_the_key() {
    for (k, v) in [
        ("segment.bytes", "abc"),
        ("segment.bytes", "3"),
        ("min.insync.replicas", "0"),
        ("cleanup.policy", "shred"),
        ("message.timestamp.type", "Now"),
        ("retention.ms", "-2"),
        ("compression.type", "LZ4"),
        ("min.cleanable.dirty.ratio", "1.5"),
        ("unclean.leader.election.enable", "yes"),
        ("leader.replication.throttled.replicas", "0:a"),
    ] {
        let overrides = map(&[(k, v)]);
        let err = topic_log_config(&LogConfig::default(), &overrides).unwrap_err();
        assert_eq!(err.key(), Some(k), "{k}={v}: {err}");
        let err = validate_topic_configs(&overrides).unwrap_err();
        assert_eq!(err.key(), Some(k), "{k}={v}: {err}");
    }
}

#[test]
fn create_topics_validation_is_kafkas() {
    validate_topic_configs(&map(&[
        ("retention.ms", "3600000"),
        ("compression.type", "producer"),
        ("leader.replication.throttled.replicas", "0:1,1:2"),
        ("follower.replication.throttled.replicas", "*"),
        ("message.format.version", "2.8"),
    ]))
    .unwrap();
    let err = validate_topic_configs(&map(&[("retention.hours", "1")])).unwrap_err();
    assert!(matches!(&err, ConfigError::UnknownTopicKey(k) if k == "retention.hours"));
    assert_eq!(
        err.to_string(),
        "Unknown topic config name: retention.hours"
    );
    let err = validate_topic_configs(&map(&[
        ("min.compaction.lag.ms", "10"),
        ("max.compaction.lag.ms", "5"),
    ]))
    .unwrap_err();
    assert_eq!(err.key(), Some("min.compaction.lag.ms"), "{err}");
}

#[test]
fn unclean_election_flag_reports_an_invalid_stored_value() {
    let broker = cfg(&[]).unwrap();
    let on = map(&[("unclean.leader.election.enable", "true")]);
    assert!(unclean_leader_election_enable(&broker, &on).unwrap());
    assert!(!unclean_leader_election_enable(&broker, &BTreeMap::new()).unwrap());
    let broker_on = cfg(&[("unclean.leader.election.enable", "true")]).unwrap();
    assert!(unclean_leader_election_enable(&broker_on, &BTreeMap::new()).unwrap());
    let bad = map(&[("unclean.leader.election.enable", "ture")]);
    let err = unclean_leader_election_enable(&broker_on, &bad).unwrap_err();
    assert_eq!(err.key(), Some("unclean.leader.election.enable"), "{err}");
    // As Kafka's LogConfig.fromProps, any invalid value makes the topic config unusable.
    let bad = map(&[("segment.bytes", "huge")]);
    assert!(unclean_leader_election_enable(&broker_on, &bad).is_err());
}

fn find<'a>(list: &'a [Described], name: &str) -> &'a Described {
    list.iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not described"))
}

fn synonyms(d: &Described) -> Vec<(&str, Option<&str>, ConfigSource)> {
    d.synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_deref(), s.source))
        .collect()
}

#[test]
fn broker_description_lists_every_key_with_value_and_source() {
    let statics = map(&[
        ("broker.id", "7"),
        ("zookeeper.connect", "zk:2181"),
        ("auto.create.topics.enable", "FALSE"),
        ("log.retention.minutes", "30"),
        ("custom.thing", "x"),
    ]);
    let out = describe_broker(&statics);
    assert_eq!(out.len(), BROKER_KEYS.len() + 1);
    let id = find(&out, "broker.id");
    assert_eq!(id.value.as_deref(), Some("7"));
    assert_eq!(id.source, ConfigSource::StaticBrokerConfig);
    assert!(id.read_only);
    let auto = find(&out, "auto.create.topics.enable");
    assert_eq!(auto.value.as_deref(), Some("false"));
    assert_eq!(
        synonyms(auto),
        [
            (
                "auto.create.topics.enable",
                Some("FALSE"),
                ConfigSource::StaticBrokerConfig
            ),
            (
                "auto.create.topics.enable",
                Some("true"),
                ConfigSource::DefaultConfig
            ),
        ]
    );
    let np = find(&out, "num.partitions");
    assert_eq!(np.value.as_deref(), Some("1"));
    assert_eq!(np.source, ConfigSource::DefaultConfig);
    let ms = find(&out, "log.retention.ms");
    assert_eq!(
        (ms.value.as_deref(), ms.source),
        (None, ConfigSource::DefaultConfig)
    );
    assert!(!ms.read_only && ms.synonyms.is_empty());
    let minutes = find(&out, "log.retention.minutes");
    assert_eq!(minutes.source, ConfigSource::StaticBrokerConfig);
    assert_eq!(
        synonyms(minutes),
        [
            (
                "log.retention.minutes",
                Some("30"),
                ConfigSource::StaticBrokerConfig
            ),
            (
                "log.retention.hours",
                Some("168"),
                ConfigSource::DefaultConfig
            ),
        ]
    );
    assert!(minutes.read_only);
    assert!(!find(&out, "listeners").read_only);
    let custom = find(&out, "custom.thing");
    assert!(custom.sensitive && custom.value.is_none());
}

#[test]
fn topic_description_reports_overrides_and_broker_synonyms() {
    let statics = map(&[
        ("log.retention.ms", "7200000"),
        ("log.segment.bytes", "2048"),
    ]);
    let overrides = map(&[("segment.bytes", "1024"), ("old.tool.key", "v")]);
    let out = describe_topic(&statics, &overrides).unwrap();
    assert_eq!(out.len(), TOPIC_KEYS.len() + 1);
    let seg = find(&out, "segment.bytes");
    assert_eq!(seg.value.as_deref(), Some("1024"));
    assert_eq!(seg.source, ConfigSource::TopicConfig);
    assert_eq!(
        synonyms(seg),
        [
            ("segment.bytes", Some("1024"), ConfigSource::TopicConfig),
            (
                "log.segment.bytes",
                Some("2048"),
                ConfigSource::StaticBrokerConfig
            ),
            (
                "log.segment.bytes",
                Some("1073741824"),
                ConfigSource::DefaultConfig
            ),
        ]
    );
    let ret = find(&out, "retention.ms");
    assert_eq!(ret.value.as_deref(), Some("7200000"));
    assert_eq!(ret.source, ConfigSource::StaticBrokerConfig);
    assert_eq!(
        synonyms(ret),
        [
            (
                "log.retention.ms",
                Some("7200000"),
                ConfigSource::StaticBrokerConfig
            ),
            (
                "log.retention.hours",
                Some("168"),
                ConfigSource::DefaultConfig
            ),
        ]
    );
    let unclean = find(&out, "unclean.leader.election.enable");
    assert_eq!(unclean.source, ConfigSource::DefaultConfig);
    assert!(!unclean.read_only);
    let throttled = find(&out, "leader.replication.throttled.replicas");
    assert_eq!(throttled.value.as_deref(), Some(""));
    assert!(throttled.synonyms.is_empty());
    assert!(find(&out, "old.tool.key").sensitive);
}

#[test]
fn topic_retention_inherited_from_hours_reports_default_without_synonyms() {
    // Kafka's synonym list starts at log.retention.ms itself, so a value that only
    // log.retention.hours sets leaves retention.ms with source DEFAULT_CONFIG and no synonyms.
    let out = describe_topic(&map(&[("log.retention.hours", "2")]), &BTreeMap::new()).unwrap();
    let ret = find(&out, "retention.ms");
    assert_eq!(ret.value.as_deref(), Some("7200000"));
    assert_eq!(ret.source, ConfigSource::DefaultConfig);
    assert!(ret.synonyms.is_empty());
}

#[test]
fn topic_description_refuses_an_invalid_stored_value() {
    let err = describe_topic(&BTreeMap::new(), &map(&[("retention.ms", "soon")])).unwrap_err();
    assert_eq!(err.key(), Some("retention.ms"));
}

#[test]
fn doubles_render_as_java_does() {
    assert_eq!(java_double(0.5), "0.5");
    assert_eq!(java_double(1.0), "1.0");
    assert_eq!(java_double(f64::MAX), "1.7976931348623157E308");
    assert_eq!(java_double(1e7), "1.0E7");
    assert_eq!(java_double(1.5e-4), "1.5E-4");
    assert_eq!(java_double(0.0), "0.0");
}
