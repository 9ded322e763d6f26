//! Configuration through the admin API with kafka-python's `KafkaAdminClient`: DescribeConfigs
//! of a broker lists every key gregor understands with its value and source (and synonyms when
//! asked), a topic lists its overrides and defaults with their sources, and CreateTopics refuses
//! an invalid or unknown topic config with INVALID_CONFIG naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use integration_tests::ClusterOptions;
use serde_json::Value;

use crate::clients;
use crate::group_clients::run_python;

const DESCRIBE: &str = r#"
import json, sys
from kafka.admin import KafkaAdminClient, NewTopic, ConfigResource, ConfigResourceType
from kafka.errors import InvalidConfigurationError
a = KafkaAdminClient(bootstrap_servers=sys.argv[1], client_id="it-configs")
a.create_topics([NewTopic("cfg", 1, 1, topic_configs={"retention.ms": "3600000",
                                                       "cleanup.policy": "compact,delete"})])
refused = {}
for name, configs in [("bad1", {"segment.bytes": "tiny"}), ("bad2", {"retention.hours": "1"})]:
    try:
        a.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
        refused[name] = "created"
    except InvalidConfigurationError as e:
        refused[name] = str(e)
def entries(resources):
    out = {}
    for r in resources:
        assert r[0] == 0, r
        for name, value, read_only, source, sensitive, synonyms in r[4]:
            out[name] = {"value": value, "read_only": read_only, "source": source,
                         "sensitive": sensitive, "synonyms": [list(s) for s in synonyms]}
    return out
def describe(kind, name, synonyms):
    [resp] = a.describe_configs([ConfigResource(kind, name)], include_synonyms=synonyms)
    return entries(resp.resources)
print(json.dumps({
    "broker": describe(ConfigResourceType.BROKER, "0", True),
    "broker_plain": describe(ConfigResourceType.BROKER, "0", False),
    "topic": describe(ConfigResourceType.TOPIC, "cfg", True),
    "refused": refused,
}))
"#;

const SOURCE_TOPIC: i64 = 1;
const SOURCE_STATIC: i64 = 4;
const SOURCE_DEFAULT: i64 = 5;

fn entry<'a>(all: &'a Value, section: &str, name: &str) -> anyhow::Result<&'a Value> {
    all[section]
        .get(name)
        .with_context(|| format!("{section} has no {name}"))
}

/// `(value, source)` of one entry.
fn value_source(e: &Value) -> (Option<&str>, i64) {
    (e["value"].as_str(), e["source"].as_i64().unwrap_or(-1))
}

fn synonym_list(e: &Value) -> Vec<(String, Option<String>, i64)> {
    e["synonyms"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    (
                        s[0].as_str().unwrap_or_default().to_string(),
                        s[1].as_str().map(str::to_string),
                        s[2].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_describes_every_broker_key_and_topic_config() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            .with_override("log.retention.minutes", 30)
            .with_override("auto.create.topics.enable", "FALSE"),
    )
    .await?;
    let stdout = run_python(DESCRIBE, &[&cluster.bootstrap()], Duration::from_secs(120))
        .await
        .context("kafka-python")?;
    let all: Value = serde_json::from_str(&stdout).context("kafka-python output")?;

    // Every key of gregor's table, each with a source.
    let broker = all["broker"].as_object().context("broker entries")?;
    for key in gregor::config::keys::BROKER_KEYS {
        let e = broker
            .get(key.name)
            .with_context(|| format!("{} missing", key.name))?;
        let source = e["source"].as_i64().unwrap_or(-1);
        ensure!(
            source == SOURCE_STATIC || source == SOURCE_DEFAULT,
            "{}: {e}",
            key.name
        );
        ensure!(e["sensitive"] == false, "{}: {e}", key.name);
    }
    ensure!(broker.len() >= 90, "only {} broker keys", broker.len());
    let expect = |name: &str, value: Option<&str>, source: i64| -> anyhow::Result<()> {
        let e = entry(&all, "broker", name)?;
        ensure!(value_source(e) == (value, source), "{name}: {e}");
        Ok(())
    };
    expect("broker.id", Some("0"), SOURCE_STATIC)?;
    expect("num.partitions", Some("1"), SOURCE_STATIC)?;
    expect("auto.create.topics.enable", Some("false"), SOURCE_STATIC)?;
    expect("message.max.bytes", Some("1048588"), SOURCE_DEFAULT)?;
    expect("log.segment.bytes", Some("1073741824"), SOURCE_DEFAULT)?;
    expect("log.retention.hours", Some("168"), SOURCE_DEFAULT)?;
    expect("log.retention.minutes", Some("30"), SOURCE_STATIC)?;
    expect("log.retention.ms", None, SOURCE_DEFAULT)?;
    expect("zookeeper.connection.timeout.ms", None, SOURCE_DEFAULT)?;
    expect("num.io.threads", Some("8"), SOURCE_DEFAULT)?;
    let read_only = |name: &str| entry(&all, "broker", name).map(|e| e["read_only"].clone());
    ensure!(read_only("broker.id")? == true && read_only("log.retention.minutes")? == true);
    ensure!(read_only("log.retention.ms")? == false && read_only("listeners")? == false);
    let minutes = entry(&all, "broker", "log.retention.minutes")?;
    ensure!(
        synonym_list(minutes)
            == [
                (
                    "log.retention.minutes".into(),
                    Some("30".into()),
                    SOURCE_STATIC
                ),
                (
                    "log.retention.hours".into(),
                    Some("168".into()),
                    SOURCE_DEFAULT
                ),
            ],
        "{minutes}"
    );
    let plain = entry(&all, "broker_plain", "log.retention.minutes")?;
    ensure!(
        synonym_list(plain).is_empty(),
        "synonyms sent unasked: {plain}"
    );

    // The topic: overrides with TOPIC_CONFIG, the rest from its broker synonym.
    let topic = all["topic"].as_object().context("topic entries")?;
    ensure!(
        topic.len() == gregor::config::keys::TOPIC_KEYS.len(),
        "{topic:?}"
    );
    let t = |name: &str| entry(&all, "topic", name);
    ensure!(value_source(t("retention.ms")?) == (Some("3600000"), SOURCE_TOPIC));
    ensure!(value_source(t("cleanup.policy")?) == (Some("compact,delete"), SOURCE_TOPIC));
    ensure!(value_source(t("segment.bytes")?) == (Some("1073741824"), SOURCE_DEFAULT));
    // log.retention.minutes=30 applies, but retention.ms's synonyms start at log.retention.ms.
    ensure!(value_source(t("segment.ms")?) == (Some("604800000"), SOURCE_DEFAULT));
    let retention = t("retention.ms")?;
    ensure!(
        synonym_list(retention) == [("retention.ms".into(), Some("3600000".into()), SOURCE_TOPIC)],
        "{retention}"
    );
    let seg = t("segment.bytes")?;
    ensure!(
        synonym_list(seg)
            == [(
                "log.segment.bytes".into(),
                Some("1073741824".into()),
                SOURCE_DEFAULT
            )],
        "{seg}"
    );

    // CreateTopics refuses invalid and unknown configs, naming the key.
    let refused: BTreeMap<String, String> =
        serde_json::from_value(all["refused"].clone()).context("refused")?;
    ensure!(refused["bad1"].contains("segment.bytes"), "{refused:?}");
    ensure!(
        refused["bad2"].contains("Unknown topic config name: retention.hours"),
        "{refused:?}"
    );
    Ok(())
}
