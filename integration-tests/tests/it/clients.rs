//! Real-client helpers for the cluster tests: an rdkafka producer and consumer, topic creation
//! through rdkafka's admin client, and a raw Kafka-protocol connection for requests no client
//! library would send (malformed frames, stale controller epochs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Creates a topic and waits until every partition has a leader in the cluster's metadata.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rf: i32,
) -> anyhow::Result<()> {
    create_topic_with(
        bootstrap,
        topic,
        partitions,
        TopicReplication::Fixed(rf),
        &[],
    )
    .await
}

/// Creates a topic with a replication factor or explicit assignment and topic configs, and
/// waits until every partition has a leader.
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: TopicReplication<'_>,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<Printing> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create_with_context(Printing)
        .context("admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new_topic = NewTopic::new(topic, partitions, replication);
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    // NOT_CONTROLLER is retriable, as for Kafka's clients: right after a controller move the
    // client may still ask the old controller, or the new one before its failover completes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut retried = false;
    loop {
        let res = admin
            .create_topics(std::slice::from_ref(&new_topic), &opts)
            .await
            .context("create_topics")?;
        match res.into_iter().next() {
            Some(Err((_, rdkafka::types::RDKafkaErrorCode::NotController)))
                if std::time::Instant::now() < deadline =>
            {
                retried = true;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // An earlier attempt may have been written after all.
            Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) if retried => {
                break
            }
            Some(Err((t, e))) => bail!("creating topic {t}: {e}"),
            _ => break,
        }
    }
    wait_for_leaders(
        bootstrap,
        topic,
        partitions as usize,
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// Waits until `topic` has `partitions` partitions, each with a leader.
pub fn wait_for_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let consumer = consumer(bootstrap)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                if t.partitions().len() == partitions
                    && t.partitions().iter().all(|p| p.leader() >= 0)
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leaders for all {partitions} partitions after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A producer with the given acks and no idempotence, so `acks` can be other than all
/// (the idempotent producer is in `idempotence.rs`).
pub fn producer(bootstrap: &str, acks: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "5")
        .create()
        .context("producer")
}

/// A consumer for manual assignment (no consumer group).
pub fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "gregor-it-unused")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("consumer")
}

/// Produces `n` keyed messages `key-i` / `value-i` and returns (partition, offset, i) per ack.
pub async fn produce_keyed(
    producer: &FutureProducer,
    topic: &str,
    n: usize,
) -> anyhow::Result<Vec<(i32, i64, usize)>> {
    produce_range(producer, topic, 0..n).await
}

/// Produces messages `key-i` / `value-i` for every i in `range`.
pub async fn produce_range(
    producer: &FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<(i32, i64, usize)>> {
    let n = range.len();
    let mut futures = Vec::with_capacity(n);
    for i in range {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let f = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| anyhow::anyhow!("enqueue {i}: {e}"))?;
        futures.push((i, f));
    }
    let mut acked = Vec::with_capacity(n);
    for (i, f) in futures {
        match f.await {
            Ok(Ok(d)) => acked.push((d.partition, d.offset, i)),
            Ok(Err((e, _))) => bail!("message {i} not acknowledged: {e}"),
            Err(_) => bail!("message {i}: delivery future cancelled"),
        }
    }
    Ok(acked)
}

/// Creates `topic` and fills it with `records` payloads of `size` bytes, spread over its
/// `partitions` in turn, every one acknowledged (acks=1): bulk data for fetch tests.
pub async fn fill_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: i32,
    size: usize,
) -> anyhow::Result<()> {
    create_topic(bootstrap, topic, partitions, 1).await?;
    let producer = producer(bootstrap, "1")?;
    let payload = vec![b'f'; size];
    let mut deliveries = Vec::new();
    for i in 0..records {
        let record = FutureRecord::<(), _>::to(topic)
            .partition(i % partitions)
            .payload(&payload);
        match producer.send_result(record) {
            Ok(d) => deliveries.push(d),
            Err((e, _)) => bail!("enqueue {i}: {e}"),
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("produce to {topic} failed: {e}"),
            Err(_) => bail!("delivery cancelled"),
        }
    }
    Ok(())
}

/// Messages read back: partition → [(offset, key, value)] in log order.
pub type Consumed = BTreeMap<i32, Vec<(i64, String, String)>>;

/// Reads every partition of `topic` from the beginning up to the high watermark, returning
/// partition → [(offset, key, value)] in log order.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<Consumed> {
    let consumer = consumer(bootstrap)?;
    let mut end = BTreeMap::new();
    for p in 0..partitions {
        // A broker that has just restarted may not know the topic until the controller's
        // UpdateMetadata reaches it (Kafka has the same window): retry for a while.
        let asked = Instant::now();
        let high = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) => break high,
                Err(e) if asked.elapsed() < Duration::from_secs(30) => {
                    eprintln!("watermarks of {topic}-{p}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e).with_context(|| format!("watermarks of {topic}-{p}")),
            }
        };
        end.insert(p, high);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Consumed::new();
    let deadline = Instant::now() + timeout;
    // A partition is read once its last message or the consumer's position (which moves past
    // transaction markers, never handed to the application) reaches the high watermark.
    // Positions cost librdkafka a lock and a list per call, so they are asked for only when a
    // poll comes back empty or every POSITION_EVERY messages, never per message.
    const POSITION_EVERY: usize = 10_000;
    let read_to = |out: &Consumed, p: &i32, high: i64| {
        high == 0
            || out
                .get(p)
                .and_then(|v| v.last())
                .is_some_and(|l| l.0 + 1 >= high)
    };
    let done = |out: &Consumed, ask_positions: bool| {
        if end.iter().all(|(p, high)| read_to(out, p, *high)) {
            return true;
        }
        if !ask_positions {
            return false;
        }
        let Ok(positions) = consumer.position() else {
            return false;
        };
        end.iter().all(|(p, high)| {
            read_to(out, p, *high)
                || positions
                    .find_partition(topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|o| o >= *high)
        })
    };
    let mut ask_positions = true;
    let mut since_positions = 0usize;
    while !done(&out, ask_positions) {
        if Instant::now() > deadline {
            bail!(
                "consumed {} messages before the timeout; ends {:?}",
                out.values().map(Vec::len).sum::<usize>(),
                end
            );
        }
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            ask_positions = true;
            continue;
        };
        let m = match m {
            Ok(m) => m,
            // librdkafka reports a lost connection (a broker of the bootstrap list that the
            // test stopped) as a consumer error, yet goes on fetching from the others.
            Err(e) if is_transient(&e) => {
                eprintln!("consume {topic}: {e}; going on");
                continue;
            }
            Err(e) => return Err(e).context("consume"),
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
        out.entry(m.partition())
            .or_default()
            .push((m.offset(), key, value));
        since_positions += 1;
        ask_positions = since_positions >= POSITION_EVERY;
        if ask_positions {
            since_positions = 0;
        }
    }
    Ok(out)
}

/// Whether a consumer error is one librdkafka recovers from by itself (a connection lost or
/// refused, a leader moving), as opposed to data it could not read.
fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
        )
    )
}

/// Prints librdkafka's own log lines (warnings and worse) to the test's stderr, so a failing
/// test shows what the client saw.
pub struct Printing;

impl rdkafka::ClientContext for Printing {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (rdkafka::config::RDKafkaLogLevel::Warning as i32) {
            eprintln!("librdkafka {fac}: {log_message}");
        }
    }
}

/// Starts a cluster and waits until every broker's metadata names all brokers and the
/// controller: a client that asks earlier may be told "no controller" and (librdkafka's admin
/// client) wait for a refresh that comes minutes later.
pub async fn start_cluster(
    opts: integration_tests::ClusterOptions,
) -> anyhow::Result<integration_tests::Cluster> {
    let cluster = integration_tests::Cluster::start(opts).await?;
    wait_metadata_ready(&cluster).await?;
    Ok(cluster)
}

/// Waits until every running broker's Metadata lists every running broker and a controller.
pub async fn wait_metadata_ready(cluster: &integration_tests::Cluster) -> anyhow::Result<()> {
    let running: Vec<i32> = cluster
        .broker_ids()
        .into_iter()
        .filter(|id| cluster.is_running(*id))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &running {
        let addr = cluster.broker_addr(*id).to_string();
        loop {
            let ok = match gregor::protocol::client::BrokerConnection::connect(
                &addr,
                "it-ready",
                Duration::from_secs(5),
            )
            .await
            {
                Ok(mut c) => match c
                    .send(&kafka_protocol::messages::MetadataRequest::default(), 1)
                    .await
                {
                    Ok(md) => md.controller_id.0 >= 0 && md.brokers.len() == running.len(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "broker {id} never reported all {} brokers and a controller",
                    running.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The header of every batch of `topic`'s partition `p` on broker `id`, read from its segment
/// files in offset order.
pub fn stored_headers(
    cluster: &integration_tests::Cluster,
    id: i32,
    topic: &str,
    p: i32,
) -> anyhow::Result<Vec<gregor::protocol::batch::BatchHeader>> {
    let dir = cluster.data_dir(id).join(format!("{topic}-{p}"));
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut out = Vec::new();
    for log in logs {
        let data = std::fs::read(&log)?;
        for item in gregor::protocol::batch::batches(&data) {
            out.push(item?.0);
        }
    }
    Ok(out)
}
