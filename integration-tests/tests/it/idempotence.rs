//! Idempotent producers from real clients: librdkafka with `enable.idempotence=true`,
//! kafka-python 3.x with its defaults (idempotent) and aiokafka with `enable_idempotence=True`
//! each write 100,000 messages to a 3-broker RF-3 topic; every one is read back exactly once,
//! in send order per partition, and every stored batch carries a producer id (so the clients
//! really took the idempotent path).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{ensure, Context};
use integration_tests::ClusterOptions;
use rdkafka::admin::TopicReplication;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::clients;
use crate::group_clients::run_python_with;

pub const MESSAGES: usize = 100_000;
const PARTITIONS: i32 = 3;

/// Produces `key-<i>` / `value-<i>` for i in 0..n with a Python client at its idempotent
/// settings: `client bootstrap topic n`.
const PY_IDEMPOTENT_PRODUCE: &str = r#"
import sys, asyncio
client, boot, topic, n = sys.argv[1:5]
n = int(n)
def kv(i):
    return f"key-{i}".encode(), f"value-{i}".encode()
if client == "kafka-python":
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=boot, linger_ms=5, client_id="it-idempotence")
    if not p.config.get("enable_idempotence"):
        sys.exit("kafka-python's default producer is not idempotent")
    futs = []
    for i in range(n):
        k, v = kv(i)
        futs.append(p.send(topic, key=k, value=v))
    p.flush(120)
    for f in futs:
        f.get(timeout=60)
    p.close()
else:
    from aiokafka import AIOKafkaProducer
    async def main():
        p = AIOKafkaProducer(bootstrap_servers=boot, enable_idempotence=True, linger_ms=5,
                             client_id="it-idempotence")
        await p.start()
        try:
            futs = []
            for i in range(n):
                k, v = kv(i)
                futs.append(await p.send(topic, key=k, value=v))
            for f in futs:
                await f
        finally:
            await p.stop()
    asyncio.run(main())
print("acked", n)
"#;

/// librdkafka's idempotent producer (acks=all, up to five requests in flight).
pub fn idempotent_producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .context("idempotent producer")
}

/// Every id of 0..n read exactly once, ids rising within each partition; prints the
/// duplicate, reorder and missing counts and fails unless all three are 0.
pub fn exactly_once_in_order(consumed: &clients::Consumed, n: usize) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    let mut duplicates = 0usize;
    let mut reordered = 0usize;
    for (p, msgs) in consumed {
        let mut last: Option<usize> = None;
        for (off, key, value) in msgs {
            let i: usize = key
                .strip_prefix("key-")
                .and_then(|k| k.parse().ok())
                .with_context(|| format!("foreign key {key:?} at {p}/{off}"))?;
            ensure!(
                *value == format!("value-{i}"),
                "{p}/{off}: key {i} holds {value:?}"
            );
            if !seen.insert(i) {
                duplicates += 1;
            }
            if last.is_some_and(|l| i < l) {
                reordered += 1;
            }
            last = Some(i);
        }
    }
    let missing = (0..n).filter(|i| !seen.contains(i)).count();
    eprintln!("read {} distinct of {n}: {duplicates} duplicates, {reordered} reordered, {missing} missing",
        seen.len());
    ensure!(
        duplicates == 0 && reordered == 0 && missing == 0 && seen.len() == n,
        "{duplicates} duplicates, {reordered} reordered, {missing} missing"
    );
    Ok(())
}

/// (producer id, batch count) of every batch of `topic` stored on broker `id`.
pub fn stored_producers(
    cluster: &integration_tests::Cluster,
    id: i32,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i64, usize>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        for h in clients::stored_headers(cluster, id, topic, p)? {
            *out.entry(h.producer_id).or_insert(0) += 1;
        }
    }
    Ok(out)
}

async fn check_topic(
    cluster: &integration_tests::Cluster,
    topic: &str,
    client: &str,
) -> anyhow::Result<()> {
    let consumed = clients::consume_all(
        &cluster.bootstrap(),
        topic,
        PARTITIONS,
        Duration::from_secs(120),
    )?;
    exactly_once_in_order(&consumed, MESSAGES).with_context(|| client.to_string())?;
    let producers = stored_producers(cluster, 0, topic, PARTITIONS)?;
    eprintln!("{client}: stored batches by producer id {producers:?}");
    ensure!(
        !producers.contains_key(&-1) && !producers.is_empty(),
        "{client}: batches without a producer id were stored: {producers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_clients_write_every_message_once_in_order() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let boot = cluster.bootstrap();
    for topic in ["idem-rdkafka", "idem-kafka-python", "idem-aiokafka"] {
        clients::create_topic_with(
            &boot,
            topic,
            PARTITIONS,
            TopicReplication::Fixed(3),
            &[("min.insync.replicas", "2")],
        )
        .await?;
    }

    let producer = idempotent_producer(&boot)?;
    let acked = clients::produce_keyed(&producer, "idem-rdkafka", MESSAGES).await?;
    ensure!(acked.len() == MESSAGES, "librdkafka acked {}", acked.len());
    check_topic(&cluster, "idem-rdkafka", "librdkafka").await?;

    let venv = tokio::task::spawn_blocking(integration_tests::python::venv_python)
        .await
        .context("venv task")??;
    let n = MESSAGES.to_string();
    for (client, topic) in [
        ("kafka-python", "idem-kafka-python"),
        ("aiokafka", "idem-aiokafka"),
    ] {
        let out = run_python_with(
            &venv,
            PY_IDEMPOTENT_PRODUCE,
            &[client, &boot, topic, &n],
            Duration::from_secs(300),
        )
        .await
        .with_context(|| format!("{client} producer"))?;
        ensure!(
            out.contains(&format!("acked {MESSAGES}")),
            "{client}: {out}"
        );
        check_topic(&cluster, topic, client).await?;
    }
    Ok(())
}
