//! `gregor-bench`: produce/consume throughput and produce latency against a running cluster,
//! with the rdkafka client; prints one JSON object. A benchmark, not a test: it asserts nothing
//! about speed. `scripts/bench.sh` starts a local cluster and runs it.
//!
//! Usage: `gregor-bench --bootstrap HOST:PORT[,..] [--topic T] [--messages N] [--size BYTES]
//! [--acks all|1|0] [--partitions P] [--replication-factor R]`
//!
//! `gregor-bench controller --partitions N ...` runs the controller benchmark instead
//! (`integration_tests::controller_bench`; `scripts/bench-controller.sh` starts its cluster).
//! `gregor-bench --latency --bootstrap .. [--rate R] [--seconds S] [--partitions P]` instead
//! measures end-to-end latency (produce → consumer sees it) at a paced rate, for RF 1 and for
//! RF 3, both with acks=all (see `integration_tests::latency`).
//! `gregor-bench --idempotence --bootstrap .. [--rounds R]` instead measures produce
//! throughput with and without `enable.idempotence` (both acks=all), interleaved in one run.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use integration_tests::controller_bench::ControllerArgs;
use integration_tests::latency::{self, LatencyCase, LatencyOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Produce/consume throughput and produce latency against a running cluster (default), or the
/// controller benchmark (`controller`).
#[derive(Debug, Parser)]
#[command(
    name = "gregor-bench",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    produce: Args,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Controller figures (creation, SIGTERM, kill -9, deletion, restart) as JSON.
    Controller(ControllerArgs),
}

/// Produce/consume options.
#[derive(Debug, Clone, clap::Args)]
struct Args {
    /// Bootstrap servers, `host:port[,host:port...]`.
    #[arg(long, required = true)]
    bootstrap: Option<String>,
    /// Topic to create and use (default: `bench-<pid>`).
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value = "1", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Measure end-to-end latency at `--rate` for RF 1 and RF 3 (acks=all) instead.
    #[arg(long)]
    latency: bool,
    /// Latency mode: records per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Latency mode: measured seconds per case.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Latency mode: leading seconds of each case left out of the figures.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// A broker process whose CPU time (user + system, from /proc) is reported per message
    /// for the produce and the consume phase.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// A librdkafka property for the consumer, `key=value`; repeatable (e.g.
    /// `--consumer-set fetch.message.max.bytes=4194304`).
    #[arg(long = "consumer-set", value_parser = key_value)]
    consumer_set: Vec<(String, String)>,
    /// Skip topic creation and the produce phase: read `--messages` from the existing
    /// `--topic` (filled by an earlier run), to measure or profile the consumer alone.
    #[arg(long, requires = "topic")]
    consume_only: bool,
    /// Consume with a fetch client that counts records from batch headers and decodes none
    /// (`integration_tests::raw_consumer`) instead of librdkafka: the rate one consumer
    /// connection is served when the client costs nothing per message.
    #[arg(long)]
    raw_consumer: bool,
    /// Produce only, acks=all, with and without `enable.idempotence`, alternating for
    /// `--rounds` rounds; prints both rates and their ratio.
    #[arg(long)]
    idempotence: bool,
    /// Idempotence mode: rounds of (plain, idempotent, transactional) runs.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Idempotence mode: messages per transaction of the transactional runs (0: none).
    #[arg(long, default_value_t = 100)]
    transaction_size: usize,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// User + system CPU seconds of process `pid` so far (/proc/<pid>/stat), or `None` if it
/// cannot be read.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Broker CPU microseconds per message between two [`cpu_seconds`] readings, as JSON.
fn cpu_per_message(before: Option<f64>, after: Option<f64>, messages: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) if messages > 0 => {
            format!("{:.3}", (a - b) * 1e6 / messages as f64)
        }
        _ => "null".into(),
    }
}

/// Takes messages from the consumer's queue in batches of up to 10,000 with librdkafka's
/// `rd_kafka_consume_batch_queue`, as librdkafka's own performance tool does, so the figure
/// is what the broker serves a C-speed client rather than the cost of one Rust `poll` per
/// message (which caps a single consumer near 0.6 M msg/s on this VM). Returns the count read
/// and when the first message arrived.
fn consume_batched(
    consumer: &BaseConsumer,
    want: usize,
    deadline: Instant,
) -> anyhow::Result<(usize, Option<Instant>)> {
    use rdkafka::bindings as rd;
    const BATCH: usize = 10_000;
    struct Queue(*mut rd::rd_kafka_queue_t);
    impl Drop for Queue {
        fn drop(&mut self) {
            // SAFETY: the queue handle came from rd_kafka_queue_get_consumer and is destroyed once.
            unsafe { rd::rd_kafka_queue_destroy(self.0) }
        }
    }
    // SAFETY: the native handle is valid for as long as `consumer` lives, which outlives `queue`.
    let queue = Queue(unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) });
    if queue.0.is_null() {
        bail!("librdkafka has no consumer queue");
    }
    let mut batch: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); BATCH];
    let mut consumed = 0usize;
    let mut first = None;
    while consumed < want && Instant::now() < deadline {
        // SAFETY: `batch` has room for BATCH pointers; librdkafka fills at most that many.
        let n =
            unsafe { rd::rd_kafka_consume_batch_queue(queue.0, 100, batch.as_mut_ptr(), BATCH) };
        if n < 0 {
            bail!("rd_kafka_consume_batch_queue failed");
        }
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        let mut failure = None;
        for &m in &batch[..n as usize] {
            // SAFETY: each of the first n entries is a message librdkafka handed over; it is
            // read once and destroyed once.
            unsafe {
                let err = (*m).err;
                if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    consumed += 1;
                } else if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    failure.get_or_insert(err);
                }
                rd::rd_kafka_message_destroy(m);
            }
        }
        if let Some(err) = failure {
            bail!("consume failed: {err:?}");
        }
    }
    Ok((consumed, first))
}

/// Creates `topic` and sends `--messages` to it; returns the seconds taken, the sorted
/// delivery latencies (µs) and the broker's CPU per message.
async fn produce(
    a: &Args,
    bootstrap: &str,
    topic: &str,
    idempotent: bool,
) -> anyhow::Result<(f64, Vec<u128>, String)> {
    create_topic(a, bootstrap, topic).await?;
    produce_to(a, bootstrap, topic, idempotent).await
}

/// Creates `topic` with the run's partitions and replication factor.
async fn create_topic(a: &Args, bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin
        .create_topics(
            &[NewTopic::new(
                topic,
                a.partitions,
                TopicReplication::Fixed(a.replication_factor),
            )],
            &opts,
        )
        .await?
    {
        if let Err((t, e)) = r {
            bail!("create topic {t}: {e}");
        }
    }
    Ok(())
}

/// Transactional produce (acks=all, idempotent): `--messages` in transactions of
/// `--transaction-size`, each committed before the next begins; the seconds taken.
fn produce_transactional(a: &Args, bootstrap: &str, topic: &str) -> anyhow::Result<f64> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{topic}-txn"))
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let timeout = Duration::from_secs(60);
    producer.init_transactions(timeout)?;
    let payload = vec![b'x'; a.size];
    let size = a.transaction_size.max(1);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < a.messages {
        producer.begin_transaction()?;
        let end = (sent + size).min(a.messages);
        for i in sent..end {
            let key = (i as u64).to_be_bytes();
            let mut rec = Some(BaseRecord::to(topic).key(&key).payload(&payload));
            while let Some(r) = rec.take() {
                if let Err((_, r)) = producer.send(r) {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = Some(r);
                }
            }
        }
        // The crate's commit_transaction first flushes by polling for up to 100 ms at a time,
        // and with the producer's own polling thread taking the delivery reports that poll
        // sleeps out its whole 100 ms on every transaction (librdkafka itself commits in about
        // a millisecond here). Waiting for the deliveries first makes that flush return at once.
        let flushing = Instant::now();
        while producer.in_flight_count() > 0 {
            anyhow::ensure!(
                flushing.elapsed() < timeout,
                "transaction not delivered in {timeout:?}"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        producer.commit_transaction(timeout)?;
        sent = end;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn produce_to(
    a: &Args,
    bootstrap: &str,
    topic: &str,
    idempotent: bool,
) -> anyhow::Result<(f64, Vec<u128>, String)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &a.acks)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let payload = vec![b'x'; a.size];
    let cpu = || a.broker_pid.and_then(cpu_seconds);
    let produce_cpu_before = cpu();
    let started = Instant::now();
    let mut inflight = Vec::with_capacity(a.messages);
    for i in 0..a.messages {
        let key = (i as u64).to_be_bytes();
        let sent_at = Instant::now();
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(f) => {
                    inflight.push((sent_at, f));
                    break;
                }
                Err((e, _)) => {
                    // Local queue full: let deliveries drain.
                    tracing::debug!(error = %e, "queue full");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    let mut latencies = Vec::with_capacity(a.messages);
    for (sent_at, f) in inflight {
        match f.await {
            Ok(Ok(_)) => latencies.push(sent_at.elapsed().as_micros()),
            Ok(Err((e, _))) => bail!("delivery failed: {e}"),
            Err(_) => bail!("delivery cancelled"),
        }
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let produce_cpu = cpu_per_message(produce_cpu_before, cpu(), a.messages);
    latencies.sort_unstable();

    Ok((produce_secs, latencies, produce_cpu))
}

/// Plain and idempotent produce throughput, acks=all both, alternating so that drift of the
/// machine affects both alike; the medians and their ratio.
async fn idempotence_compare(mut a: Args, bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    a.acks = "all".to_string();
    let mut plain = Vec::new();
    let mut idempotent = Vec::new();
    let mut transactional = Vec::new();
    for round in 0..a.rounds {
        for idem in [false, true] {
            let t = format!("{topic}-{}-{round}", if idem { "idem" } else { "plain" });
            let (secs, _, cpu) = produce(&a, bootstrap, &t, idem).await?;
            let rate = a.messages as f64 / secs;
            eprintln!("round {round} idempotent={idem}: {rate:.0} msg/s, broker cpu {cpu} µs/msg");
            if idem {
                idempotent.push(rate);
            } else {
                plain.push(rate);
            }
        }
        if a.transaction_size > 0 {
            let t = format!("{topic}-txn-{round}");
            create_topic(&a, bootstrap, &t).await?;
            let (args, boot) = (a.clone(), bootstrap.to_string());
            let secs = tokio::task::spawn_blocking(move || produce_transactional(&args, &boot, &t))
                .await??;
            let rate = a.messages as f64 / secs;
            eprintln!(
                "round {round} transactional ({} per transaction): {rate:.0} msg/s",
                a.transaction_size
            );
            transactional.push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (plain_runs, idem_runs, txn_runs) = (fmt(&plain), fmt(&idempotent), fmt(&transactional));
    let (p, i, t) = (
        median(&mut plain),
        median(&mut idempotent),
        median(&mut transactional),
    );
    println!(
        "{{\"messages\":{},\"size\":{},\"acks\":\"all\",\"partitions\":{},\"replication_factor\":{},\
\"plain_msgs_per_sec\":[{plain_runs}],\"idempotent_msgs_per_sec\":[{idem_runs}],\
\"transaction_size\":{},\"transactional_msgs_per_sec\":[{txn_runs}],\
\"plain_median\":{p:.0},\"idempotent_median\":{i:.0},\"transactional_median\":{t:.0},\
\"idempotent_over_plain\":{:.3},\"transactional_over_idempotent\":{:.3}}}",
        a.messages,
        a.size,
        a.partitions,
        a.replication_factor,
        a.transaction_size,
        i / p,
        t / i
    );
    Ok(())
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Controller(args)) => {
            let report = integration_tests::controller_bench::run(args).await?;
            println!("{report}");
            Ok(())
        }
        None => produce_consume(cli.produce).await,
    }
}

async fn produce_consume(mut a: Args) -> anyhow::Result<()> {
    let Some(bootstrap) = a.bootstrap.take() else {
        bail!("--bootstrap is required");
    };
    let topic = a
        .topic
        .take()
        .unwrap_or_else(|| format!("bench-{}", std::process::id()));
    if a.idempotence {
        return idempotence_compare(a, &bootstrap, &topic).await;
    }
    if a.latency {
        let opts = LatencyOptions {
            bootstrap: bootstrap.clone(),
            rate: a.rate,
            seconds: a.seconds,
            warmup_seconds: a.warmup_seconds,
            partitions: a.partitions,
            size: a.size,
        };
        let cases = [1, 3].map(|replication_factor| LatencyCase {
            replication_factor,
            acks: "all".to_string(),
        });
        println!("{}", latency::run(&opts, &cases).await?);
        return Ok(());
    }
    let cpu = || a.broker_pid.and_then(cpu_seconds);
    let (produce_secs, latencies, produce_cpu) = if a.consume_only {
        (f64::NAN, Vec::new(), "null".to_string())
    } else {
        produce(&a, &bootstrap, &topic, false).await?
    };
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "gregor-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800");
    for (k, v) in &a.consumer_set {
        consumer_config.set(k, v);
    }
    let consume_cpu_before = cpu();
    let started = Instant::now();
    let (consumed, consume_secs, first_ms, streaming_secs) = if a.raw_consumer {
        let (n, streaming) = integration_tests::raw_consumer::consume(
            &bootstrap,
            &topic,
            a.messages as u64,
            Duration::from_secs(600),
        )
        .await?;
        let total = started.elapsed().as_secs_f64();
        (n as usize, total, (total - streaming) * 1e3, streaming)
    } else {
        let consumer: BaseConsumer = consumer_config.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..a.partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let (consumed, first) =
            consume_batched(&consumer, a.messages, started + Duration::from_secs(600))?;
        let consume_secs = started.elapsed().as_secs_f64();
        // The rate once data flows: connecting, metadata and the first ListOffsets are not
        // reads.
        let first_ms = first.map_or(0.0, |f| (f - started).as_secs_f64() * 1e3);
        let streaming_secs = first.map_or(consume_secs, |f| f.elapsed().as_secs_f64());
        (consumed, consume_secs, first_ms, streaming_secs)
    };
    let consume_cpu = cpu_per_message(consume_cpu_before, cpu(), consumed);
    let mb = (a.messages * a.size) as f64 / 1e6;
    println!(
        "{{\"messages\":{},\"size\":{},\"acks\":\"{}\",\"partitions\":{},\
\"produce\":{{\"seconds\":{:.3},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.1},\
\"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"max\":{:.2}}},\"broker_cpu_us_per_msg\":{}}},\
\"consume\":{{\"consumer\":\"{}\",\"messages\":{},\"seconds\":{:.3},\"first_message_ms\":{:.1},\"msgs_per_sec\":{:.0},\
\"mb_per_sec\":{:.1},\"broker_cpu_us_per_msg\":{}}}}}",
        a.messages,
        a.size,
        a.acks,
        a.partitions,
        produce_secs,
        a.messages as f64 / produce_secs,
        mb / produce_secs,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        produce_cpu,
        if a.raw_consumer { "raw" } else { "librdkafka" },
        consumed,
        consume_secs,
        first_ms,
        consumed as f64 / streaming_secs,
        (consumed * a.size) as f64 / 1e6 / streaming_secs,
        consume_cpu,
    );
    if consumed < a.messages {
        bail!("consumed only {consumed} of {} messages", a.messages);
    }
    Ok(())
}
