//! End-to-end latency (a record produced → a consumer sees it) at a paced rate, for
//! `gregor-bench --latency`: one topic per case (deleted at the end), a producer sending on an
//! open-loop schedule (record `i` at `start + i / rate`, never waiting for earlier deliveries)
//! and a consumer thread on every partition of it. The cases send in turns of a few seconds, so
//! they share the machine's background load. Each payload carries its send time, so the consumer
//! measures the whole path: produce request, replication (acks=all), the high watermark reaching
//! the consumer's parked fetch, and the fetch response. A benchmark: it reports figures (and the
//! hypervisor's CPU steal over the run) and asserts none.
//!
//! Both clients disable Nagle's algorithm, as the Java clients do (`TCP_NODELAY`), and the
//! producer sends without lingering (`linger.ms=0`, Kafka 2.8's default), so the figures are the
//! broker's, not the client's batching.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

/// What every case shares.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    pub bootstrap: String,
    /// Records per second.
    pub rate: u32,
    /// Measured seconds per case, after the warm-up.
    pub seconds: u64,
    /// Seconds at the start of each case whose records are not counted (connections, metadata).
    pub warmup_seconds: u64,
    pub partitions: i32,
    /// Payload bytes (at least the 16-byte header of sequence number and send time).
    pub size: usize,
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct LatencyCase {
    pub replication_factor: i32,
    pub acks: String,
}

const HEADER: usize = 16;

/// Runs every case and returns one JSON object with a result per case and, when both an RF 1
/// and a larger RF were measured, the ratio of their p99s.
///
/// The cases take turns in slices of [`SLICE`] (after each one's warm-up), so a machine whose
/// background load changes over the run weighs on every case alike, instead of on whichever
/// case happened to run during a busy minute.
///
/// # Errors
/// Topic creation, client creation, a failed delivery, or records that never reached the consumer.
pub async fn run(opts: &LatencyOptions, cases: &[LatencyCase]) -> anyhow::Result<Value> {
    let topics: Vec<String> = cases
        .iter()
        .map(|case| {
            format!(
                "e2e-rf{}-acks{}-{}",
                case.replication_factor,
                case.acks,
                std::process::id()
            )
        })
        .collect();
    let measured = measure(opts, cases, &topics).await;
    // A topic left behind would be replicated through every later run: each follower fetch
    // would carry its idle partitions, and the figures would drift run by run.
    for topic in &topics {
        let deleted = delete_topic(opts, topic).await;
        if measured.is_ok() {
            deleted?;
        }
    }
    let (results, steal) = measured?;
    let p99s: Vec<(i32, Option<f64>)> = cases
        .iter()
        .zip(&results)
        .map(|(c, r)| (c.replication_factor, r["e2e_ms"]["p99"].as_f64()))
        .collect();
    let rf1 = p99s.iter().find(|(rf, _)| *rf == 1).and_then(|(_, p)| *p);
    let ratios: Vec<Value> = p99s
        .iter()
        .filter(|(rf, _)| *rf > 1)
        .filter_map(|(rf, p)| Some((rf, (*p)?, rf1?)))
        .map(|(rf, p, base)| json!({"replication_factor": rf, "p99_over_rf1": round(p / base)}))
        .collect();
    Ok(json!({
        "mode": "latency",
        "rate": opts.rate,
        "seconds": opts.seconds,
        "warmup_seconds": opts.warmup_seconds,
        "slice_seconds": SLICE.as_secs(),
        "partitions": opts.partitions,
        "size": opts.size,
        "cpu_steal_percent": steal,
        "cases": results,
        "ratios": ratios,
    }))
}

/// How long one case sends before the next one takes its turn.
const SLICE: Duration = Duration::from_secs(5);

/// One case while it runs: its producer, its consumer thread, and what it has sent.
struct Running {
    case: LatencyCase,
    topic: String,
    producer: FutureProducer,
    reader: std::thread::JoinHandle<anyhow::Result<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    next_seq: u64,
    warmup: u64,
    acks: Vec<tokio::task::JoinHandle<anyhow::Result<(u64, u64)>>>,
}

/// Creates every case's topic, producer and consumer, then sends in turns; returns each case's
/// result and the share of CPU time the hypervisor took meanwhile (null off Linux).
async fn measure(
    opts: &LatencyOptions,
    cases: &[LatencyCase],
    topics: &[String],
) -> anyhow::Result<(Vec<Value>, Value)> {
    let rate = u64::from(opts.rate.max(1));
    let origin = Instant::now();
    let mut running = Vec::new();
    for (case, topic) in cases.iter().zip(topics) {
        create_topic(opts, topic, case.replication_factor).await?;
        running.push(start_case(opts, case, topic, origin, rate)?);
    }
    let cpu_before = cpu_times();
    let load_before = load_average();
    for r in &mut running {
        send_paced(r, opts.size, origin, rate, r.warmup).await?;
    }
    let per_slice = rate * SLICE.as_secs();
    let mut left = rate * opts.seconds;
    while left > 0 {
        let n = left.min(per_slice);
        for r in &mut running {
            send_paced(r, opts.size, origin, rate, n).await?;
        }
        left -= n;
    }
    let mut results = Vec::new();
    for r in running {
        results.push(finish_case(r, load_before.clone()).await?);
    }
    Ok((results, steal_percent(cpu_before, cpu_times())))
}

fn start_case(
    opts: &LatencyOptions,
    case: &LatencyCase,
    topic: &str,
    origin: Instant,
    rate: u64,
) -> anyhow::Result<Running> {
    let warmup = rate * opts.warmup_seconds;
    let total = warmup + rate * opts.seconds;
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = consumer_for(opts, topic)?;
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || consume(consumer, origin, warmup, total, stop))
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap)
        .set("acks", &case.acks)
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .set("socket.nagle.disable", "true")
        .create()?;
    Ok(Running {
        case: case.clone(),
        topic: topic.to_string(),
        producer,
        reader,
        stop,
        next_seq: 0,
        warmup,
        acks: Vec::with_capacity(total as usize),
    })
}

/// Sends `n` records at `rate` from now on, on an open-loop schedule.
async fn send_paced(
    r: &mut Running,
    size: usize,
    origin: Instant,
    rate: u64,
    n: u64,
) -> anyhow::Result<()> {
    let mut payload = vec![b'x'; size.max(HEADER)];
    let start = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
        let seq = r.next_seq;
        r.next_seq += 1;
        let sent = Instant::now();
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..HEADER].copy_from_slice(&(origin.elapsed().as_micros() as u64).to_be_bytes());
        let key = seq.to_be_bytes();
        let delivery = r
            .producer
            .send_result(FutureRecord::to(&r.topic).key(&key).payload(&payload))
            .map_err(|(e, _)| anyhow::anyhow!("enqueue record {seq}: {e}"))?;
        r.acks.push(tokio::spawn(async move {
            match delivery.await {
                Ok(Ok(_)) => Ok((seq, sent.elapsed().as_micros() as u64)),
                Ok(Err((e, _))) => Err(anyhow::anyhow!("delivery of record {seq} failed: {e}")),
                Err(_) => Err(anyhow::anyhow!("delivery of record {seq} cancelled")),
            }
        }));
    }
    Ok(())
}

async fn finish_case(r: Running, load_before: Value) -> anyhow::Result<Value> {
    let mut ack_us = Vec::with_capacity(r.acks.len());
    for a in r.acks {
        let (seq, us) = a.await.context("delivery task")??;
        if seq >= r.warmup {
            ack_us.push(us);
        }
    }
    r.stop.store(true, Ordering::Relaxed);
    let reader = r.reader;
    let mut e2e_us = tokio::task::spawn_blocking(move || reader.join())
        .await
        .context("consumer join")?
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    e2e_us.sort_unstable();
    ack_us.sort_unstable();
    Ok(json!({
        "replication_factor": r.case.replication_factor,
        "acks": r.case.acks,
        "topic": r.topic,
        "messages": e2e_us.len(),
        "load_average_1m": {"start": load_before, "end": load_average()},
        "e2e_ms": summary(&e2e_us),
        "produce_ack_ms": summary(&ack_us),
    }))
}

/// (steal, total) jiffies of all CPUs from `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are in user.
    let total: u64 = fields.iter().take(8).sum();
    Some((*fields.get(7)?, total))
}

fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Value {
    match (before, after) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            json!(round(
                100.0 * (s1.saturating_sub(s0)) as f64 / (t1 - t0) as f64
            ))
        }
        _ => Value::Null,
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn summary(sorted_us: &[u64]) -> Value {
    let at = |p: f64| {
        if sorted_us.is_empty() {
            return 0.0;
        }
        let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
        round(sorted_us[idx.min(sorted_us.len() - 1)] as f64 / 1000.0)
    };
    json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)})
}

/// The 1-minute load average (Linux), or null where it cannot be read.
fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Value::Null, |v| json!(v))
}

async fn create_topic(opts: &LatencyOptions, topic: &str, rf: i32) -> anyhow::Result<()> {
    let admin = admin_client(opts)?;
    let admin_opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, opts.partitions, TopicReplication::Fixed(rf));
    for r in admin.create_topics(&[new], &admin_opts).await? {
        if let Err((t, e)) = r {
            bail!("create topic {t}: {e}");
        }
    }
    // Leaders are elected asynchronously after CreateTopics answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let ready = md.topics().iter().any(|t| {
            t.name() == topic
                && t.partitions().len() == opts.partitions as usize
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.isr().len() == rf as usize)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("topic {topic}: not every partition has a leader and a full ISR after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn admin_client(opts: &LatencyOptions) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap)
        .create()?)
}

async fn delete_topic(opts: &LatencyOptions, topic: &str) -> anyhow::Result<()> {
    let admin = admin_client(opts)?;
    let admin_opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&[topic], &admin_opts).await? {
        if let Err((t, e)) = r {
            bail!("delete topic {t}: {e}");
        }
    }
    Ok(())
}

/// The consumer side: polls until `stop` and every expected record arrived (or the deadline),
/// returning the end-to-end latencies of the counted records in microseconds.
fn consume(
    consumer: BaseConsumer,
    origin: Instant,
    skip_below: u64,
    expected: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut seen = 0u64;
    let mut stop_deadline = None;
    while seen < expected {
        if stop.load(Ordering::Relaxed) {
            let d = *stop_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if Instant::now() >= d {
                bail!("consumer saw {seen} of {expected} records within 30 s of the last send");
            }
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now_us = origin.elapsed().as_micros() as u64;
        let m = m?;
        let payload = m.payload().unwrap_or_default();
        if payload.len() < HEADER {
            bail!("record of {} bytes has no latency header", payload.len());
        }
        let mut seq = [0u8; 8];
        let mut sent = [0u8; 8];
        seq.copy_from_slice(&payload[..8]);
        sent.copy_from_slice(&payload[8..HEADER]);
        seen += 1;
        if u64::from_be_bytes(seq) >= skip_below {
            latencies.push(now_us.saturating_sub(u64::from_be_bytes(sent)));
        }
    }
    Ok(latencies)
}

fn consumer_for(opts: &LatencyOptions, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("socket.nagle.disable", "true")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..opts.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}
