//! Replication under fire: an acks=all producer (rdkafka) keeps writing to an RF-3 topic with
//! `min.insync.replicas=2` while the test `kill -9`s a broker about every 10 s and restarts it.
//! Afterwards every acknowledged message must be in the log at its acknowledged offset, and
//! within each partition acknowledged messages keep the producer's order. With an idempotent
//! producer (five requests in flight, unpaced) there must also be no duplicate at all.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use integration_tests::{Cluster, ClusterOptions};
use rdkafka::admin::TopicReplication;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::clients;

const SESSION_MS: u64 = 6000;
const TOPIC_PARTITIONS: i32 = 6;
const MESSAGES: usize = 500_000;
const KILLS: usize = 5;
const KILL_EVERY: Duration = Duration::from_secs(10);
const CHUNK: usize = 5000;
/// Paces the producer so that the kills spread over the whole run (≈ 660k messages in 55 s)
/// rather than over the first few percent of an unthrottled producer's output.
const RATE_PER_SEC: f64 = 12_000.0;
/// At least this many for the unpaced idempotent run (it writes far more in its ten rounds).
const IDEMPOTENT_MESSAGES: usize = 200_000;

/// Which broker each round kills.
#[derive(Debug, Clone, Copy)]
enum Victim {
    LeaderOfPartition0,
    Controller,
}

/// An acks=all producer that never gives up on a message within the test and keeps order
/// without idempotence (one request in flight per connection).
pub fn durable_producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.timeout.ms", "300000")
        .set("retry.backoff.ms", "100")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .context("producer")
}

/// The current leader of `topic`'s partition `p` from its state znode (-1 = none).
pub async fn leader_of(cluster: &Cluster, topic: &str, p: i32) -> anyhow::Result<i32> {
    let state = cluster
        .zk_get_json(&format!("/brokers/topics/{topic}/partitions/{p}/state"))
        .await?
        .context("state znode missing")?;
    state["leader"]
        .as_i64()
        .map(|l| l as i32)
        .context("state without leader")
}

/// Produces ids from 0 until `stop` is set and at least `min` are acknowledged; returns
/// (partition, offset, id) per acknowledgement and the number of failed deliveries.
async fn produce_until(
    producer: FutureProducer,
    topic: String,
    min: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    progress: Arc<Mutex<usize>>,
    rate_per_sec: Option<f64>,
) -> anyhow::Result<(Vec<(i32, i64, usize)>, usize)> {
    let mut acked = Vec::new();
    let mut failed = 0usize;
    let mut next = 0usize;
    let started = Instant::now();
    while acked.len() < min || !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if let Some(rate) = rate_per_sec {
            let due = started + Duration::from_secs_f64(next as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut futures = Vec::with_capacity(CHUNK);
        for i in next..next + CHUNK {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            let f = producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&value))
                .map_err(|(e, _)| anyhow::anyhow!("enqueue {i}: {e}"))?;
            futures.push((i, f));
        }
        next += CHUNK;
        for (i, f) in futures {
            match f.await {
                Ok(Ok(d)) => acked.push((d.partition, d.offset, i)),
                Ok(Err((e, _))) => {
                    failed += 1;
                    if failed <= 5 {
                        eprintln!("message {i} not acknowledged: {e}");
                    }
                }
                Err(_) => bail!("message {i}: delivery future cancelled"),
            }
        }
        *progress.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = acked.len();
    }
    Ok((acked, failed))
}

/// Checks the acknowledged messages against what a consumer read; returns the duplicate count.
///
/// * every acknowledged id is at its acknowledged (partition, offset);
/// * per partition, the first occurrences of acknowledged ids are in id (= send) order;
/// * nothing consumed is foreign to the producer.
pub fn check_acked_with_duplicates(
    acked: &[(i32, i64, usize)],
    consumed: &clients::Consumed,
) -> anyhow::Result<usize> {
    crate::basic::check_acked_at_offsets(acked, consumed)?;
    let acked_ids: HashSet<usize> = acked.iter().map(|a| a.2).collect();
    let mut duplicates = 0;
    for (p, msgs) in consumed {
        let mut seen = HashSet::new();
        let mut last_acked: Option<usize> = None;
        let mut last_off = -1;
        for (off, key, value) in msgs {
            ensure!(
                *off > last_off,
                "partition {p}: offsets not increasing at {off}"
            );
            last_off = *off;
            let i: usize = key
                .strip_prefix("key-")
                .and_then(|k| k.parse().ok())
                .with_context(|| format!("foreign key {key:?} at {p}/{off}"))?;
            ensure!(
                *value == format!("value-{i}"),
                "{p}/{off}: key {i} with value {value:?}"
            );
            if !seen.insert(i) {
                duplicates += 1;
                continue;
            }
            if acked_ids.contains(&i) {
                if let Some(prev) = last_acked {
                    ensure!(
                        i > prev,
                        "partition {p}: acked message {i} first appears after {prev} (order broken)"
                    );
                }
                last_acked = Some(i);
            }
        }
    }
    Ok(duplicates)
}

/// `rounds` kills in turn, each followed by a restart; the idempotent run is unpaced and
/// must read back no duplicate.
async fn chaos(rounds: &[Victim], idempotent: bool) -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(SESSION_MS)).await?;
    let bootstrap = cluster.bootstrap();
    let topic = "chaos";
    clients::create_topic_with(
        &bootstrap,
        topic,
        TOPIC_PARTITIONS,
        TopicReplication::Fixed(3),
        &[("min.insync.replicas", "2")],
    )
    .await?;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = Arc::new(Mutex::new(0usize));
    let (producer, min, rate) = if idempotent {
        (
            crate::idempotence::idempotent_producer(&bootstrap)?,
            IDEMPOTENT_MESSAGES,
            None,
        )
    } else {
        (durable_producer(&bootstrap)?, MESSAGES, Some(RATE_PER_SEC))
    };
    let started = Instant::now();
    let producing = tokio::spawn(produce_until(
        producer,
        topic.to_string(),
        min,
        stop.clone(),
        progress.clone(),
        rate,
    ));

    let mut victims = Vec::new();
    for (round, victim) in rounds.iter().enumerate() {
        let due = started + KILL_EVERY * (round as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
        ensure!(!producing.is_finished(), "producer stopped early");
        let id = match *victim {
            Victim::LeaderOfPartition0 => {
                integration_tests::util::poll_until(
                    "partition 0 to have a leader",
                    Duration::from_secs(30),
                    Duration::from_millis(100),
                    || async { Ok(Some(leader_of(&cluster, topic, 0).await?).filter(|l| *l >= 0)) },
                )
                .await?
            }
            Victim::Controller => cluster
                .wait_for_controller(|c| c.is_some(), Duration::from_secs(30))
                .await?
                .context("no controller")?,
        };
        let acked_so_far = *progress.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        eprintln!(
            "round {round}: kill -9 broker {id} at {:?}, {acked_so_far} acked so far",
            started.elapsed()
        );
        cluster.kill(id).await?;
        victims.push(id);
        let t = Instant::now();
        cluster.restart(id).await?;
        eprintln!("round {round}: broker {id} back after {:?}", t.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failed) = producing.await.context("producer task")??;
    let elapsed = started.elapsed();
    ensure!(failed == 0, "{failed} messages were not acknowledged");
    ensure!(acked.len() >= min, "only {} acked", acked.len());

    // The unpaced run acknowledges up to ~10 M messages; reading them back takes a loaded CI
    // machine well over a minute, so the allowance grows with the count (25k messages a second).
    let read_allowance =
        Duration::from_secs(180).max(Duration::from_secs(acked.len() as u64 / 25_000));
    let consumed = clients::consume_all(&bootstrap, topic, TOPIC_PARTITIONS, read_allowance)?;
    let total: usize = consumed.values().map(Vec::len).sum();
    let duplicates = check_acked_with_duplicates(&acked, &consumed)?;
    let per_partition: BTreeMap<i32, usize> = consumed.iter().map(|(p, v)| (*p, v.len())).collect();
    // check_acked_with_duplicates fails on the first acknowledged message out of send order.
    eprintln!(
        "{rounds:?} (idempotent: {idempotent}): victims {victims:?}; acked {}, consumed {total}, \
         duplicates {duplicates}, reordered 0, produced in {elapsed:?}; per partition {per_partition:?}",
        acked.len()
    );
    ensure!(
        !idempotent || duplicates == 0,
        "the idempotent producer's messages were written {duplicates} extra times"
    );
    ensure!(
        total == acked.len() + duplicates,
        "consumed {total} = acked {} + duplicates {duplicates} does not hold: unacknowledged \
         messages appeared",
        acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_all_survives_repeated_leader_kills() -> anyhow::Result<()> {
    chaos(&[Victim::LeaderOfPartition0; KILLS], false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_all_survives_repeated_controller_kills() -> anyhow::Result<()> {
    chaos(&[Victim::Controller; KILLS], false).await
}

/// Kafka's replication test with idempotence: five kills of partition 0's leader, then five
/// of the controller, under an unpaced idempotent producer; nothing is lost or duplicated.
#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_producer_writes_exactly_once_through_leader_and_controller_kills(
) -> anyhow::Result<()> {
    let mut rounds = vec![Victim::LeaderOfPartition0; KILLS];
    rounds.extend([Victim::Controller; KILLS]);
    chaos(&rounds, true).await
}

/// Polls every partition's state znode until `stop`; returns the longest time any partition
/// had no leader (leader -1).
async fn longest_leaderless(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Duration> {
    let mut since: Vec<Option<Instant>> = vec![None; partitions as usize];
    let mut longest = Duration::ZERO;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for p in 0..partitions {
            let leader = leader_of(cluster, topic, p).await?;
            let slot = &mut since[p as usize];
            match (leader, *slot) {
                (-1, None) => *slot = Some(Instant::now()),
                (-1, Some(t)) => longest = longest.max(t.elapsed()),
                (_, Some(t)) => {
                    longest = longest.max(t.elapsed());
                    *slot = None;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(longest)
}

/// SIGTERM under load: the broker hands its leaderships over through ControlledShutdown before
/// it exits, so an acks=all producer sees nothing but retriable errors (every message is
/// acknowledged) and no partition goes leaderless; after the restart the auto rebalance gives
/// the broker its preferred partitions back.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_leadership_over_under_load_and_preferred_leaders_return(
) -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(3)
            .with_session_timeout_ms(10_000)
            .with_override("leader.imbalance.check.interval.seconds", 5),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    let topic = "handover";
    clients::create_topic_with(
        &bootstrap,
        topic,
        TOPIC_PARTITIONS,
        TopicReplication::Fixed(3),
        &[("min.insync.replicas", "2")],
    )
    .await?;
    let assignment = cluster
        .zk_get_json(&format!("/brokers/topics/{topic}"))
        .await?
        .context("topic znode")?;
    let preferred: Vec<i32> = (0..TOPIC_PARTITIONS)
        .map(|p| {
            assignment["partitions"][p.to_string()][0]
                .as_i64()
                .map(|b| b as i32)
                .context("assignment")
        })
        .collect::<anyhow::Result<_>>()?;

    let stop_producing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(
        durable_producer(&bootstrap)?,
        topic.to_string(),
        0,
        stop_producing.clone(),
        Arc::new(Mutex::new(0)),
        Some(RATE_PER_SEC),
    ));
    let watching = {
        let stop = stop_watching.clone();
        let zk_cluster = &cluster;
        // The watcher borrows the cluster, so it runs on this task, joined below.
        longest_leaderless(zk_cluster, topic, TOPIC_PARTITIONS, stop)
    };
    let scenario = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = leader_of(&cluster, topic, 0).await?;
        let t = Instant::now();
        let status = cluster.terminate(victim).await?;
        let shutdown = t.elapsed();
        ensure!(status.success(), "broker {victim} exited with {status}");
        eprintln!("broker {victim} shut down in {shutdown:?} after SIGTERM");
        for p in 0..TOPIC_PARTITIONS {
            let l = leader_of(&cluster, topic, p).await?;
            ensure!(
                l != victim && l >= 0,
                "partition {p} led by {l} once broker {victim} exited"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.restart(victim).await?;
        let t = Instant::now();
        integration_tests::util::poll_until(
            "preferred leaders back on every partition",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                for (p, want) in preferred.iter().enumerate() {
                    if leader_of(&cluster, topic, p as i32).await? != *want {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
        .await?;
        eprintln!(
            "preferred leaders {preferred:?} restored {:?} after the restart",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop_producing.store(true, std::sync::atomic::Ordering::SeqCst);
        let (acked, failed) = producing.await.context("producer task")??;
        stop_watching.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok((acked, failed))
    };
    let (scenario, leaderless) = tokio::join!(scenario, watching);
    let (acked, failed) = scenario?;
    let leaderless = leaderless?;
    ensure!(
        failed == 0,
        "{failed} messages failed: the producer saw a non-retriable error"
    );
    ensure!(
        leaderless < Duration::from_secs(1),
        "a partition was leaderless for {leaderless:?}"
    );
    let consumed = clients::consume_all(
        &bootstrap,
        topic,
        TOPIC_PARTITIONS,
        Duration::from_secs(120),
    )?;
    let duplicates = check_acked_with_duplicates(&acked, &consumed)?;
    eprintln!(
        "acked {}, duplicates {duplicates}, longest leaderless {leaderless:?}",
        acked.len()
    );
    Ok(())
}
