//! Transactions with real clients. librdkafka's transactional producer runs a
//! consume-transform-produce loop (read an input topic in a consumer group, write each record
//! to an output topic, commit the consumed offsets in the same transaction with
//! `send_offsets_to_transaction`), aborting every fifth transaction and redoing it; a
//! read_committed consumer of the output must see every input record exactly once, a
//! read_uncommitted one also the aborted copies, and the group's committed offsets must be the
//! input's end. Also: zombie fencing, the coordinator's abort of a transaction past its
//! timeout, and aiokafka's transactional producer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use integration_tests::{Cluster, ClusterOptions};
use rdkafka::admin::TopicReplication;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::clients;

const PARTITIONS: i32 = 3;
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A transactional librdkafka producer whose delivery reports a background thread polls (a
/// commit or abort waits for them).
pub type TxnProducer = ThreadedProducer<DefaultProducerContext>;

pub fn transactional_producer(bootstrap: &str, id: &str) -> anyhow::Result<TxnProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "5")
        .create()
        .context("transactional producer")
}

fn group_consumer(bootstrap: &str, group: &str, isolation: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .context("consumer")
}

/// Every value of `topic` a consumer at `isolation` reads from the start until its position
/// reaches each partition's high watermark as it was when the read began.
pub fn read_values(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    // The ends are high watermarks (a read_committed client would be told the LSO): a
    // read_committed reader gets there only once no open transaction holds it back.
    let watermarks = group_consumer(bootstrap, "txn-reader-unused", "read_uncommitted")?;
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = watermarks.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    let consumer = group_consumer(bootstrap, "txn-reader-unused", isolation)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let positions = consumer.position()?;
        let done = ends.iter().all(|(p, end)| {
            *end == 0
                || positions
                    .find_partition(topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|o| o >= *end)
        });
        if done {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!(
                "{isolation} reader of {topic}: {} values, positions {positions:?}, ends {ends:?}",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(e)) => eprintln!("{isolation} reader: {e}; going on"),
            None => {}
        }
    }
}

/// What the copy loop did. Each output record's value is `<input value>|<transaction
/// number>`, so the checks can tell which attempt wrote it.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub committed: usize,
    pub aborted: usize,
    pub aborted_records: usize,
    pub retried_errors: usize,
    /// Committed transaction number → its record count.
    pub committed_sizes: HashMap<usize, usize>,
}

type Polled = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// Queues `records` to `output` tagged with `txn_no`, waiting while librdkafka's queue is full.
fn send_tagged(
    producer: &TxnProducer,
    output: &str,
    records: &Polled,
    txn_no: usize,
) -> Result<(), KafkaError> {
    for (key, value) in records {
        let mut tagged = value.clone();
        tagged.extend_from_slice(format!("|{txn_no}").as_bytes());
        let mut r = BaseRecord::to(output).payload(&tagged);
        if let Some(k) = key {
            r = r.key(k);
        }
        let mut r = Some(r);
        let full_since = Instant::now();
        while let Some(rec) = r.take() {
            if let Err((e, rec)) = producer.send(rec) {
                let full = matches!(
                    e,
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
                );
                // A queue that stays full means nothing is delivered: fail loudly, not spin.
                if !full || full_since.elapsed() > Duration::from_secs(60) {
                    eprintln!("send_tagged: transaction {txn_no}: {e}");
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(10));
                r = Some(rec);
            }
        }
    }
    Ok(())
}

/// Calls `f` again while librdkafka calls its error retriable, as the client's docs ask for
/// send_offsets_to_transaction, commit and abort (a retriable commit's outcome is unknown
/// until a retry learns it).
fn with_retries(
    what: &str,
    mut f: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 20 => {
                eprintln!("{what}: {e}; retrying");
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Whether a transactional call failed in a way the application retries (librdkafka marks
/// it retriable, or asks for an abort).
fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_retriable() || t.txn_requires_abort(),
        _ => false,
    }
}

/// One consume-transform-produce run.
pub struct CopyJob<'a> {
    pub bootstrap: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub group: &'a str,
    /// Records to copy (the input's size).
    pub total: usize,
    /// Most records per transaction.
    pub batch: usize,
    /// Every this many transactions one is aborted and redone (0: never).
    pub abort_every: usize,
    pub deadline: Duration,
}

/// Copies every record of the job's input to its output in transactions, aborting every
/// `abort_every`-th one and redoing it, until the group has consumed `total`. `between` runs
/// after each committed transaction (the chaos test kills brokers there).
pub fn copy_loop(
    job: &CopyJob<'_>,
    mut between: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<CopyReport> {
    let CopyJob {
        bootstrap,
        input,
        output,
        group,
        total,
        batch,
        abort_every,
        deadline,
    } = *job;
    let consumer = group_consumer(bootstrap, group, "read_committed")?;
    consumer.subscribe(&[input])?;
    let producer = transactional_producer(bootstrap, &format!("{group}-copier"))?;
    producer.init_transactions(TXN_TIMEOUT)?;
    let mut report = CopyReport::default();
    let mut consumed = 0usize;
    let mut txn_no = 0usize;
    let started = Instant::now();
    let mut idle_since = Instant::now();
    while consumed < total {
        if started.elapsed() > deadline {
            bail!("copied {consumed} of {total} before the deadline: {report:?}");
        }
        // Where this transaction starts, to rewind to if it aborts.
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut records: Polled = Vec::new();
        let poll_until = Instant::now() + Duration::from_millis(500);
        while records.len() < batch && Instant::now() < poll_until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    records.push((
                        m.key().map(<[u8]>::to_vec),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                }
                Some(Err(e)) => eprintln!("copy consumer: {e}; going on"),
                None => {}
            }
        }
        if records.is_empty() {
            // Say why the copy stands still, so a stall shows in the test's output.
            if idle_since.elapsed() > Duration::from_secs(20) {
                eprintln!(
                    "copy loop: nothing polled for {:?} after {consumed} records; assignment {:?}, positions {:?}",
                    idle_since.elapsed(),
                    consumer.assignment().map(|a| a.count()),
                    consumer.position().ok()
                );
                idle_since = Instant::now();
            }
            continue;
        }
        idle_since = Instant::now();
        txn_no += 1;
        let abort = abort_every > 0 && txn_no.is_multiple_of(abort_every);
        let txn_started = Instant::now();
        let outcome = (|| -> Result<(), KafkaError> {
            producer.begin_transaction()?;
            send_tagged(&producer, output, &records, txn_no)?;
            let mut offsets = TopicPartitionList::new();
            for (p, o) in &next {
                offsets.add_partition_offset(input, *p, Offset::Offset(*o))?;
            }
            let Some(meta) = consumer.group_metadata() else {
                return Err(KafkaError::Canceled);
            };
            with_retries("send offsets", || {
                producer.send_offsets_to_transaction(&offsets, &meta, TXN_TIMEOUT)
            })?;
            if abort {
                with_retries("abort", || producer.abort_transaction(TXN_TIMEOUT))
            } else {
                with_retries("commit", || producer.commit_transaction(TXN_TIMEOUT))
            }
        })();
        if txn_started.elapsed() > Duration::from_secs(20) {
            eprintln!(
                "transaction {txn_no} took {:?}: {outcome:?}",
                txn_started.elapsed()
            );
        }
        let failed = match outcome {
            Ok(()) if !abort => {
                report.committed += 1;
                report.committed_sizes.insert(txn_no, records.len());
                consumed += records.len();
                between(report.committed)?;
                false
            }
            Ok(()) => {
                report.aborted += 1;
                report.aborted_records += records.len();
                true
            }
            Err(e) if retriable(&e) => {
                eprintln!("transaction {txn_no}: {e}; aborting and redoing it");
                report.retried_errors += 1;
                with_retries("abort after a failure", || {
                    producer.abort_transaction(TXN_TIMEOUT)
                })
                .with_context(|| format!("aborting transaction {txn_no} after {e}"))?;
                true
            }
            Err(e) => return Err(e).with_context(|| format!("transaction {txn_no}")),
        };
        if failed {
            // Rewind to what the group has committed, which the aborted transaction did not
            // move: its records are consumed again by the next one.
            // The group coordinator may be moving (a killed broker): ask again for a while.
            let asked = Instant::now();
            let committed = loop {
                match consumer.committed(TXN_TIMEOUT) {
                    Ok(c) => break c,
                    Err(e) if asked.elapsed() < Duration::from_secs(60) => {
                        eprintln!("committed offsets: {e}; asking again");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e).context("committed offsets for the rewind"),
                }
            };
            for e in committed.elements() {
                let to = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                consumer.seek(e.topic(), e.partition(), to, TXN_TIMEOUT)?;
            }
        }
    }
    Ok(report)
}

/// Writes `key-i`/`value-i` for i in 0..n to `topic` (plain producer, acks=all).
async fn fill(bootstrap: &str, topic: &str, n: usize) -> anyhow::Result<()> {
    let producer = clients::producer(bootstrap, "all")?;
    clients::produce_keyed(&producer, topic, n)
        .await
        .map(|_| ())
}

/// The checks of a copy, printing every anomaly count: read_committed holds each input value
/// exactly once, only from committed transactions (none aborted or unknown), each committed
/// transaction whole; read_uncommitted also holds aborted copies. Returns (read_committed
/// records, read_uncommitted records).
pub fn check_copy(
    bootstrap: &str,
    output: &str,
    n: usize,
    report: &CopyReport,
) -> anyhow::Result<(usize, usize)> {
    let committed = read_values(
        bootstrap,
        output,
        "read_committed",
        Duration::from_secs(180),
    )?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut per_txn: HashMap<usize, usize> = HashMap::new();
    let mut untagged = 0usize;
    for v in &committed {
        let Some((value, txn)) = v.rsplit_once('|') else {
            untagged += 1;
            continue;
        };
        *counts.entry(value).or_default() += 1;
        match txn.parse::<usize>() {
            Ok(t) => *per_txn.entry(t).or_default() += 1,
            Err(_) => untagged += 1,
        }
    }
    let duplicates = counts.values().filter(|c| **c > 1).count();
    let missing = (0..n)
        .filter(|i| !counts.contains_key(format!("value-{i}").as_str()))
        .count();
    let not_committed: usize = per_txn
        .iter()
        .filter(|(t, _)| !report.committed_sizes.contains_key(t))
        .map(|(_, c)| *c)
        .sum();
    let torn = report
        .committed_sizes
        .iter()
        .filter(|(t, size)| per_txn.get(t).copied().unwrap_or(0) != **size)
        .count();
    eprintln!(
        "read_committed: {} records; anomalies: {duplicates} duplicated, {missing} missing, \
         {not_committed} from aborted or unknown transactions, {torn} torn transactions, {untagged} untagged",
        committed.len()
    );
    ensure!(
        duplicates == 0 && missing == 0 && not_committed == 0 && torn == 0 && untagged == 0,
        "read_committed output is not exactly once"
    );
    ensure!(
        committed.len() == n,
        "read_committed holds {} records, the input {n}",
        committed.len()
    );
    let uncommitted = read_values(
        bootstrap,
        output,
        "read_uncommitted",
        Duration::from_secs(180),
    )?;
    eprintln!(
        "read_uncommitted: {} records ({} were sent in aborted transactions)",
        uncommitted.len(),
        report.aborted_records
    );
    // librdkafka's abort purges what it had not sent yet, so only part of an aborted
    // transaction may have reached the log; some of it must have.
    ensure!(
        report.aborted == 0 || uncommitted.len() > n,
        "read_uncommitted saw {} records: no aborted copy reached the log",
        uncommitted.len()
    );
    Ok((committed.len(), uncommitted.len()))
}

/// The group's committed offsets of `input`, summed over partitions.
pub fn committed_total(bootstrap: &str, group: &str, input: &str) -> anyhow::Result<i64> {
    let consumer = group_consumer(bootstrap, group, "read_committed")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(input, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(30))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum())
}

async fn topics(cluster: &Cluster, names: &[&str], rf: i32) -> anyhow::Result<()> {
    for name in names {
        clients::create_topic_with(
            &cluster.bootstrap(),
            name,
            PARTITIONS,
            TopicReplication::Fixed(rf),
            &[],
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_transform_produce_copies_each_record_exactly_once() -> anyhow::Result<()> {
    let n = 100_000;
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    topics(&cluster, &["ctp-in", "ctp-out"], 3).await?;
    fill(&cluster.bootstrap(), "ctp-in", n).await?;
    let bootstrap = cluster.bootstrap();
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let job = CopyJob {
            bootstrap: &bootstrap,
            input: "ctp-in",
            output: "ctp-out",
            group: "ctp",
            total: n,
            batch: 1000,
            abort_every: 5,
            deadline: Duration::from_secs(600),
        };
        copy_loop(&job, |_| Ok(()))
    })
    .await??;
    eprintln!(
        "copied {n} records in {:.1} s: {} committed and {} aborted transactions ({} records aborted), {} retried errors",
        started.elapsed().as_secs_f64(),
        report.committed,
        report.aborted,
        report.aborted_records,
        report.retried_errors
    );
    ensure!(report.aborted > 0, "no transaction was aborted");
    let bootstrap = cluster.bootstrap();
    tokio::task::spawn_blocking(move || check_copy(&bootstrap, "ctp-out", n, &report)).await??;
    let bootstrap = cluster.bootstrap();
    let total =
        tokio::task::spawn_blocking(move || committed_total(&bootstrap, "ctp", "ctp-in")).await??;
    ensure!(
        total == n as i64,
        "the group committed {total} offsets, the input holds {n}"
    );
    Ok(())
}

fn send_all(producer: &TxnProducer, topic: &str, values: &[String]) -> Result<(), KafkaError> {
    for v in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(v))
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_fences_the_first_and_nothing_it_writes_later_is_visible(
) -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    topics(&cluster, &["fence-out"], 3).await?;
    let bootstrap = cluster.bootstrap();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let zombie = transactional_producer(&bootstrap, "fenced-id")?;
        zombie.init_transactions(TXN_TIMEOUT)?;
        zombie.begin_transaction()?;
        send_all(&zombie, "fence-out", &values("zombie-open", 10))?;
        // The new instance: its init fences the zombie and aborts its open transaction.
        let fresh = transactional_producer(&bootstrap, "fenced-id")?;
        fresh.init_transactions(TXN_TIMEOUT)?;
        fresh.begin_transaction()?;
        send_all(&fresh, "fence-out", &values("fresh", 10))?;
        fresh.commit_transaction(TXN_TIMEOUT)?;
        // The zombie goes on: its next send reaches the brokers and is refused, and its commit
        // fails with a fatal fencing error.
        let late = send_all(&zombie, "fence-out", &values("zombie-late", 10));
        let commit = zombie.commit_transaction(TXN_TIMEOUT);
        eprintln!("zombie: late send {late:?}, commit {commit:?}");
        let fatal = match &commit {
            Err(KafkaError::Transaction(e)) => e.is_fatal() || e.txn_requires_abort(),
            Err(_) => true,
            Ok(()) => false,
        };
        ensure!(fatal, "the fenced producer committed: {commit:?}");
        let committed = read_values(
            &bootstrap,
            "fence-out",
            "read_committed",
            Duration::from_secs(60),
        )?;
        let mut c = committed.clone();
        c.sort();
        let mut f = values("fresh", 10);
        f.sort();
        ensure!(c == f, "read_committed: {committed:?}");
        let all = read_values(
            &bootstrap,
            "fence-out",
            "read_uncommitted",
            Duration::from_secs(60),
        )?;
        ensure!(
            all.iter().any(|v| v.starts_with("zombie-open")),
            "the zombie's first writes never reached the log: {all:?}"
        );
        ensure!(
            !all.iter().any(|v| v.starts_with("zombie-late")),
            "a fenced write was stored: {all:?}"
        );
        eprintln!(
            "fencing: read_committed {} records (all from the new producer), read_uncommitted {}",
            committed.len(),
            all.len()
        );
        Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_aborts_a_transaction_past_its_timeout() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1).with_override(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        500,
    ))
    .await?;
    topics(&cluster, &["timeout-out"], 1).await?;
    let bootstrap = cluster.bootstrap();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stuck: TxnProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "stuck-id")
            .set("transaction.timeout.ms", "2000")
            .create()
            .context("stuck producer")?;
        stuck.init_transactions(TXN_TIMEOUT)?;
        stuck.begin_transaction()?;
        send_all(&stuck, "timeout-out", &values("stuck", 5))?;
        let opened = Instant::now();
        // Committed data after the open transaction: read_committed sees it only once the
        // coordinator has aborted the stuck one.
        let other = transactional_producer(&bootstrap, "after-id")?;
        other.init_transactions(TXN_TIMEOUT)?;
        other.begin_transaction()?;
        send_all(&other, "timeout-out", &values("after", 5))?;
        other.commit_transaction(TXN_TIMEOUT)?;
        let committed = read_values(&bootstrap, "timeout-out", "read_committed", Duration::from_secs(60))?;
        let waited = opened.elapsed();
        let mut got = committed.clone();
        got.sort();
        ensure!(got == values("after", 5), "read_committed: {committed:?}");
        ensure!(
            waited >= Duration::from_secs(2),
            "read_committed got past the open transaction after {waited:?}, before its 2 s timeout"
        );
        eprintln!("the stuck transaction was aborted and read_committed passed it {:.1} s after it opened", waited.as_secs_f64());
        let commit = stuck.commit_transaction(TXN_TIMEOUT);
        ensure!(commit.is_err(), "the timed-out producer could still commit");
        Ok(())
    })
    .await??;
    Ok(())
}

const PY_AIOKAFKA_TXN: &str = r#"
import sys, asyncio
from aiokafka import AIOKafkaProducer, AIOKafkaConsumer, TopicPartition
boot, topic = sys.argv[1:3]
async def main():
    p = AIOKafkaProducer(bootstrap_servers=boot, transactional_id="aiokafka-txn")
    await p.start()
    try:
        async with p.transaction():
            for i in range(10):
                await p.send(topic, f"committed-{i}".encode())
        await p.begin_transaction()
        for i in range(10):
            await p.send(topic, f"aborted-{i}".encode())
        await p.flush()
        await p.abort_transaction()
        async with p.transaction():
            await p.send(topic, b"last")
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=boot, isolation_level="read_committed",
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        seen = []
        while "last" not in seen:
            batch = await c.getmany(timeout_ms=1000)
            for msgs in batch.values():
                seen.extend(m.value.decode() for m in msgs)
        print("seen", " ".join(seen))
    finally:
        await c.stop()
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread")]
async fn aiokafka_commits_one_transaction_and_aborts_another() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    topics(&cluster, &["aio-txn"], 1).await?;
    let venv = tokio::task::spawn_blocking(integration_tests::python::venv_python).await??;
    let out = crate::group_clients::run_python_with(
        &venv,
        PY_AIOKAFKA_TXN,
        &[&cluster.bootstrap(), "aio-txn"],
        Duration::from_secs(120),
    )
    .await?;
    let seen: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("seen "))
        .context("no consumer output")?
        .split(' ')
        .collect();
    let mut expected: Vec<String> = values("committed", 10);
    expected.push("last".into());
    expected.sort();
    let mut got: Vec<String> = seen.iter().map(|s| s.to_string()).collect();
    got.sort();
    eprintln!("aiokafka read_committed saw {} records", seen.len());
    ensure!(got == expected, "aiokafka read_committed saw {seen:?}");
    let bootstrap = cluster.bootstrap();
    let all = tokio::task::spawn_blocking(move || {
        read_values(
            &bootstrap,
            "aio-txn",
            "read_uncommitted",
            Duration::from_secs(60),
        )
    })
    .await??;
    ensure!(
        all.iter().filter(|v| v.starts_with("aborted-")).count() == 10,
        "the aborted transaction's records are not in the log: {all:?}"
    );
    Ok(())
}

/// The broker leading `topic`'s partition `partition`, from its state znode.
async fn leader(cluster: &Cluster, topic: &str, partition: i32) -> anyhow::Result<i32> {
    crate::replication::leader_of(cluster, topic, partition).await
}

/// `kill -9` of `id`, a restart, and the wait until every broker's metadata is whole again.
async fn kill_and_restart(cluster: &Cluster, id: i32, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    cluster.kill(id).await?;
    cluster.restart(id).await?;
    clients::wait_metadata_ready(cluster).await?;
    eprintln!(
        "killed and restarted broker {id} ({what}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_through_coordinator_and_leader_kills() -> anyhow::Result<()> {
    let n = 100_000;
    let cluster = std::sync::Arc::new(clients::start_cluster(ClusterOptions::new(3)).await?);
    topics(&cluster, &["chaos-in", "chaos-out"], 3).await?;
    fill(&cluster.bootstrap(), "chaos-in", n).await?;
    let group = "chaos";
    let txn_partition = gregor::coordinator::hash::partition_for(&format!("{group}-copier"), 50);
    let bootstrap = cluster.bootstrap();
    let handle = tokio::runtime::Handle::current();
    let c = cluster.clone();
    let mut kills = 0usize;
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let job = CopyJob {
            bootstrap: &bootstrap,
            input: "chaos-in",
            output: "chaos-out",
            group,
            total: n,
            batch: 500,
            abort_every: 5,
            // Below nextest's 600-s kill, so a stalled copy fails with its own report.
            deadline: Duration::from_secs(540),
        };
        copy_loop(&job, |committed| {
            // Three kills of the coordinator's partition leader, then three of an output
            // partition's leader, spread over the run.
            if committed % 25 != 0 || kills >= 6 {
                return Ok(());
            }
            let (topic, partition, what) = if kills < 3 {
                (
                    "__transaction_state",
                    txn_partition,
                    "transaction coordinator",
                )
            } else {
                ("chaos-out", 0, "leader of chaos-out-0")
            };
            handle.block_on(async {
                let id = leader(&c, topic, partition).await?;
                kill_and_restart(&c, id, what).await
            })?;
            kills += 1;
            Ok(())
        })
        .map(|r| (r, kills))
    })
    .await??;
    let (report, kills) = report;
    eprintln!(
        "copied {n} records through {kills} kills in {:.1} s: {} committed and {} aborted transactions, {} errors retried",
        started.elapsed().as_secs_f64(),
        report.committed,
        report.aborted,
        report.retried_errors
    );
    ensure!(kills == 6, "only {kills} kills happened");
    let bootstrap = cluster.bootstrap();
    let checked = tokio::task::spawn_blocking(move || {
        check_copy(&bootstrap, "chaos-out", n, &report)?;
        committed_total(&bootstrap, group, "chaos-in")
    })
    .await??;
    ensure!(
        checked == n as i64,
        "the group committed {checked} offsets, the input holds {n}"
    );
    eprintln!("committed group offsets: {checked} (= the input's {n} records)");
    Ok(())
}
