//! Followers learn a new high watermark from their parked fetch, not only with their next one:
//! with `replica.fetch.wait.max.ms` at 20 s, one acks=all record on an idle RF 3 partition
//! reaches every replica's high-watermark checkpoint within seconds.

use std::time::{Duration, Instant};

use integration_tests::util::poll_until;
use integration_tests::ClusterOptions;
use rdkafka::producer::{FutureRecord, Producer};

use crate::clients;

const FETCH_WAIT_MS: u64 = 20_000;

/// The high watermark of `topic`-0 in a replica's `replication-offset-checkpoint`, if listed.
fn checkpointed_hw(path: &std::path::Path, topic: &str) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.next() == Some(topic) && f.next() == Some("0"))
            .then(|| f.next()?.parse().ok())
            .flatten()
    })
}

/// Waits until broker `b` has checkpointed `hw` for `topic`-0.
async fn wait_checkpointed(
    cluster: &integration_tests::Cluster,
    b: i32,
    topic: &str,
    hw: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let path = cluster.data_dir(b).join("replication-offset-checkpoint");
    poll_until(
        &format!("broker {b} to checkpoint {topic}-0 at {hw}"),
        timeout,
        Duration::from_millis(20),
        || {
            let path = path.clone();
            async move { Ok((checkpointed_hw(&path, topic) == Some(hw)).then_some(())) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_learn_a_new_high_watermark_without_waiting_out_their_fetch() -> anyhow::Result<()>
{
    let cluster = clients::start_cluster(
        ClusterOptions::new(3)
            .with_override("replica.fetch.wait.max.ms", FETCH_WAIT_MS)
            .with_override("replica.high.watermark.checkpoint.interval.ms", 100),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    let topic = "hw-news";
    clients::create_topic(&bootstrap, topic, 1, 3).await?;
    // Every replica has checkpointed the empty partition: the followers have fetched, found
    // nothing, and are parked for up to 20 s.
    for b in 0..3 {
        wait_checkpointed(&cluster, b, topic, 0, Duration::from_secs(30)).await?;
    }
    // Not a wait for a condition: a second with nothing to fetch, so that every follower's
    // fetch is the parked kind when the record arrives (the case that used to wait 20 s).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let producer = clients::producer(&bootstrap, "all")?;
    // The producer's own metadata must know the leader first, so that the clock below starts
    // with the broker's work, not with a client's metadata retries (the bootstrap broker it
    // asks may learn of the new topic a little later than the one create_topic asked).
    poll_until(
        &format!("the producer's metadata to name a leader of {topic}-0"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let md = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(5));
            async move {
                Ok(md.ok().and_then(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
                        .and_then(|p| (p.leader() >= 0).then_some(()))
                }))
            }
        },
    )
    .await?;
    let sent = Instant::now();
    producer
        .send(
            FutureRecord::<(), str>::to(topic)
                .partition(0)
                .payload("one"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("acks=all send: {e}"))?;
    // The acknowledgement means the leader's high watermark is 1; the followers learn it after.
    let acked = sent.elapsed();
    let mut learned = Vec::new();
    for b in 0..3 {
        wait_checkpointed(&cluster, b, topic, 1, Duration::from_secs(5)).await?;
        learned.push((b, sent.elapsed()));
    }
    eprintln!("acked after {acked:?}; high watermark 1 checkpointed (broker, after): {learned:?}");
    // The followers learned it from answers to fetches parked before the record existed (the
    // leader appended it while they waited): the last of them otherwise waits the 20 s out.
    let slowest = learned.iter().map(|(_, d)| *d).max().unwrap_or_default();
    anyhow::ensure!(
        slowest.saturating_sub(acked) < Duration::from_millis(FETCH_WAIT_MS / 4),
        "a replica learned the high watermark {:?} after the acknowledgement",
        slowest.saturating_sub(acked)
    );
    Ok(())
}
