//! The ISR and leader epochs with real clients: a cut-off follower leaves the ISR and rejoins
//! after healing (and acks=all is refused below `min.insync.replicas`), the KIP-101 divergence
//! ends with the returning old leader truncated to the new leader's history, and unclean leader
//! election happens only where the topic enables it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Buf;
use integration_tests::util::poll_until;
use integration_tests::{Cluster, ClusterOptions};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::admin::TopicReplication;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::clients;
use crate::replication::leader_of;

async fn state(cluster: &Cluster, topic: &str, p: i32) -> anyhow::Result<serde_json::Value> {
    cluster
        .zk_get_json(&format!("/brokers/topics/{topic}/partitions/{p}/state"))
        .await?
        .context("state znode missing")
}

async fn isr_in_zk(cluster: &Cluster, topic: &str, p: i32) -> anyhow::Result<Vec<i32>> {
    let s = state(cluster, topic, p).await?;
    let mut isr: Vec<i32> = s["isr"]
        .as_array()
        .context("isr")?
        .iter()
        .filter_map(|v| v.as_i64().map(|v| v as i32))
        .collect();
    isr.sort_unstable();
    Ok(isr)
}

/// The ISR of partition `p` as the cluster's Metadata reports it (through rdkafka).
fn isr_in_metadata(bootstrap: &str, topic: &str, p: i32) -> anyhow::Result<Vec<i32>> {
    let consumer = clients::consumer(bootstrap)?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .context("topic not in metadata")?;
    let part = t
        .partitions()
        .iter()
        .find(|x| x.id() == p)
        .context("partition not in metadata")?;
    let mut isr = part.isr().to_vec();
    isr.sort_unstable();
    Ok(isr)
}

async fn wait_isr(
    cluster: &Cluster,
    bootstrap: &str,
    topic: &str,
    want: &[i32],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut want = want.to_vec();
    want.sort_unstable();
    poll_until(
        &format!("ISR of {topic}-0 to be {want:?} in ZooKeeper and Metadata"),
        timeout,
        Duration::from_millis(200),
        || {
            let want = want.clone();
            async move {
                let zk = isr_in_zk(cluster, topic, 0).await?;
                if zk != want {
                    return Ok(None);
                }
                let md = isr_in_metadata(bootstrap, topic, 0)?;
                Ok((md == want).then_some(()))
            }
        },
    )
    .await?;
    Ok(start.elapsed())
}

fn producer(bootstrap: &str, acks: &str, retries: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("enable.idempotence", "false")
        .set("retries", retries)
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "10000")
        .set("linger.ms", "0")
        .create()
        .context("producer")
}

async fn send_one(p: &FutureProducer, topic: &str, key: &str) -> Result<(i32, i64), KafkaError> {
    p.send(
        FutureRecord::to(topic).partition(0).key(key).payload(key),
        Duration::from_secs(30),
    )
    .await
    .map(|d| (d.partition, d.offset))
    .map_err(|(e, _)| e)
}

/// Keeps producing acks=1 messages for `dur` (the ISR only shrinks while the leader's log grows).
async fn trickle(
    p: &FutureProducer,
    topic: &str,
    tag: &str,
    dur: Duration,
) -> anyhow::Result<usize> {
    let end = Instant::now() + dur;
    let mut n = 0;
    while Instant::now() < end {
        send_one(p, topic, &format!("{tag}-{n}"))
            .await
            .map_err(|e| anyhow::anyhow!("acks=1 produce failed: {e}"))?;
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(n)
}

const LAG_MS: u64 = 4000;

#[tokio::test(flavor = "multi_thread")]
async fn cut_off_followers_leave_and_rejoin_the_isr() -> anyhow::Result<()> {
    // The session outlives the pauses, so only the leader's lag rule can shrink the ISR.
    let cluster = clients::start_cluster(
        ClusterOptions::new(3)
            .with_session_timeout_ms(60_000)
            .with_override("replica.lag.time.max.ms", LAG_MS),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    let topic = "lag";
    // The controller leads: the followers paused below must not include the controller, which
    // turns the leader's ISR notifications into the Metadata the test checks.
    let leader = cluster
        .wait_for_controller(|c| c.is_some(), Duration::from_secs(30))
        .await?
        .context("no controller")?;
    let followers: Vec<i32> = (0..3).filter(|b| *b != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    clients::create_topic_with(
        &bootstrap,
        topic,
        1,
        TopicReplication::Variable(&[&[leader, f1, f2]]),
        &[("min.insync.replicas", "2")],
    )
    .await?;
    wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[0, 1, 2],
        Duration::from_secs(20),
    )
    .await?;
    let acks1 = producer(&bootstrap, "1", "0")?;
    let acks_all = producer(&bootstrap, "all", "0")?;
    send_one(&acks_all, topic, "warm-up").await?;
    // Both producers know the leader before a broker is paused: a client whose first metadata
    // request went to a paused broker would wait out its socket timeout.
    send_one(&acks1, topic, "warm-up-1").await?;

    // One follower stops: it leaves the ISR within the lag time plus the check period and the
    // ISR change propagation (5 s quiet + 2.5 s tick).
    cluster.pause(f1).await?;
    let paused = Instant::now();
    let trickling = trickle(&acks1, topic, "a", Duration::from_millis(LAG_MS + 1500));
    trickling.await?;
    let took = wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[leader, f2],
        Duration::from_secs(20),
    )
    .await?;
    eprintln!(
        "ISR [{leader},{f2}] visible {:?} after pausing follower {f1}",
        paused.elapsed()
    );
    ensure!(took < Duration::from_secs(20));
    // Two in-sync replicas still satisfy min.insync.replicas=2.
    send_one(&acks_all, topic, "isr-2")
        .await
        .map_err(|e| anyhow::anyhow!("acks=all with ISR 2: {e}"))?;

    // The other follower stops too: the leader is alone in the ISR.
    cluster.pause(f2).await?;
    let paused2 = Instant::now();
    trickle(&acks1, topic, "b", Duration::from_millis(LAG_MS + 1500)).await?;
    wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[leader],
        Duration::from_secs(20),
    )
    .await?;
    eprintln!(
        "ISR [{leader}] visible {:?} after pausing follower {f2}",
        paused2.elapsed()
    );

    match send_one(&acks_all, topic, "refused").await {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => {
            anyhow::bail!("acks=all with ISR [{leader}] gave {other:?}, not NOT_ENOUGH_REPLICAS")
        }
    }
    let (_, off) = send_one(&acks1, topic, "acks1-ok")
        .await
        .map_err(|e| anyhow::anyhow!("acks=1 with ISR [{leader}]: {e}"))?;
    eprintln!("acks=all refused with NOT_ENOUGH_REPLICAS; acks=1 written at {off}");

    // Healing: both followers catch up and rejoin.
    cluster.resume(f1).await?;
    cluster.resume(f2).await?;
    let healed = Instant::now();
    wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[0, 1, 2],
        Duration::from_secs(30),
    )
    .await?;
    eprintln!("ISR [0,1,2] again {:?} after healing", healed.elapsed());
    // The high watermarks are checkpointed (every 5 s) on every replica.
    for b in 0..3 {
        let path = cluster.data_dir(b).join("replication-offset-checkpoint");
        poll_until(
            &format!("broker {b}'s replication-offset-checkpoint to list {topic}-0"),
            Duration::from_secs(15),
            Duration::from_millis(500),
            || {
                let path = path.clone();
                async move {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    Ok(text
                        .lines()
                        .any(|l| l.starts_with(&format!("{topic} 0 ")))
                        .then_some(()))
                }
            },
        )
        .await?;
    }
    send_one(&acks_all, topic, "after-heal")
        .await
        .map_err(|e| anyhow::anyhow!("acks=all after healing: {e}"))?;
    Ok(())
}

/// One record as stored: (offset, key, value).
type StoredRecord = (i64, Vec<u8>, Vec<u8>);

/// Every record in a replica's on-disk log of `topic`-0, in offset order.
fn replica_records(data_dir: &Path, topic: &str) -> anyhow::Result<Vec<StoredRecord>> {
    let dir = data_dir.join(format!("{topic}-0"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let data = std::fs::read(&seg).with_context(|| format!("reading {}", seg.display()))?;
        let mut buf = bytes::Bytes::from(data);
        while buf.remaining() >= 12 {
            let len = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if len <= 0 || buf.remaining() < 12 + len as usize {
                break;
            }
            let mut batch = buf.split_to(12 + len as usize);
            let set = RecordBatchDecoder::decode(&mut batch)
                .map_err(|e| anyhow::anyhow!("decoding {}: {e}", seg.display()))?;
            for r in set.records {
                out.push((
                    r.offset,
                    r.key.map(|k| k.to_vec()).unwrap_or_default(),
                    r.value.map(|v| v.to_vec()).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn kip101_divergent_old_leader_is_truncated_to_the_new_history() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(6000)).await?;
    let bootstrap = cluster.bootstrap();
    let topic = "diverge";
    clients::create_topic_with(
        &bootstrap,
        topic,
        1,
        TopicReplication::Variable(&[&[0, 1, 2]]),
        &[],
    )
    .await?;
    wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[0, 1, 2],
        Duration::from_secs(20),
    )
    .await?;
    let acks_all = producer(&bootstrap, "all", "10")?;
    for i in 0..1000 {
        send_one(&acks_all, topic, &format!("committed-{i}")).await?;
    }
    let old_leader = leader_of(&cluster, topic, 0).await?;
    let followers: Vec<i32> = [0, 1, 2].into_iter().filter(|b| *b != old_leader).collect();

    // The followers stop fetching; the leader alone appends 500 acks=1 messages.
    for f in &followers {
        cluster.pause(*f).await?;
    }
    let acks1 = producer(&bootstrap, "1", "0")?;
    let mut orphan_offsets = Vec::new();
    for i in 0..500 {
        orphan_offsets.push(send_one(&acks1, topic, &format!("orphan-{i}")).await?.1);
    }
    cluster.kill(old_leader).await?;
    for f in &followers {
        cluster.resume(*f).await?;
    }
    eprintln!(
        "old leader {old_leader} appended orphans at {:?}..={:?} and was killed",
        orphan_offsets.first(),
        orphan_offsets.last()
    );

    // A follower takes over in a new epoch and writes its own history at the same offsets.
    let new_leader = poll_until(
        "a new leader",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let l = leader_of(&cluster, topic, 0).await?;
            Ok((l >= 0 && l != old_leader).then_some(l))
        },
    )
    .await?;
    let mut new_offsets = Vec::new();
    for i in 0..300 {
        new_offsets.push(send_one(&acks_all, topic, &format!("new-{i}")).await?.1);
    }
    // A follower may have taken a few orphans from a fetch answered just before it stopped;
    // the histories diverge from where the new leader's own writes begin.
    let diverge_at = *new_offsets.first().context("no new offsets")?;
    ensure!(
        (1000..1500).contains(&diverge_at),
        "new leader {new_leader} wrote from {diverge_at}: no divergence from the orphans at \
         1000..1500"
    );
    eprintln!("new leader {new_leader} writes its history from offset {diverge_at}");

    cluster.restart(old_leader).await?;
    wait_isr(
        &cluster,
        &bootstrap,
        topic,
        &[0, 1, 2],
        Duration::from_secs(60),
    )
    .await?;
    // Quiesced: every replica holds identical records at every offset.
    let logs: BTreeMap<i32, Vec<StoredRecord>> = poll_until(
        "all replicas to hold the same records",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let mut logs = BTreeMap::new();
            for b in 0..3 {
                logs.insert(b, replica_records(&cluster.data_dir(b), topic)?);
            }
            let same = logs.values().all(|l| l.len() as i64 == diverge_at + 300) && {
                let first = &logs[&0];
                logs.values().all(|l| l == first)
            };
            Ok(same.then_some(logs))
        },
    )
    .await?;
    let reference = &logs[&new_leader];
    for (off, key, _) in reference {
        let key = String::from_utf8_lossy(key);
        let expect = if *off < 1000 {
            format!("committed-{off}")
        } else if *off < diverge_at {
            format!("orphan-{}", off - 1000)
        } else {
            format!("new-{}", off - diverge_at)
        };
        ensure!(key == expect, "offset {off} holds {key}, expected {expect}");
    }
    // OffsetForLeaderEpoch on the wire: epoch 0 ended where the new leader's history began;
    // CurrentLeaderEpoch fences older and newer callers; a follower is not the one to ask.
    let epoch = state(&cluster, topic, 0).await?["leader_epoch"]
        .as_i64()
        .context("leader_epoch")? as i32;
    let ask = |broker: i32, current: i32| {
        let addr = cluster.broker_addr(broker).to_string();
        async move {
            let mut conn = gregor::protocol::client::BrokerConnection::connect(
                &addr,
                "it-epochs",
                Duration::from_secs(5),
            )
            .await?;
            let mut p = kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            p.partition = 0;
            p.current_leader_epoch = current;
            p.leader_epoch = 0;
            let mut t =
                kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
            t.topic = kafka_protocol::messages::TopicName(topic.to_string().into());
            t.partitions = vec![p];
            let mut req = kafka_protocol::messages::OffsetForLeaderEpochRequest::default();
            req.replica_id = kafka_protocol::messages::BrokerId(-1);
            req.topics = vec![t];
            let resp = conn.send(&req, 3).await?;
            let e = resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .context("empty OffsetForLeaderEpoch response")?;
            anyhow::Ok((e.error_code, e.leader_epoch, e.end_offset))
        }
    };
    ensure!(
        ask(new_leader, epoch).await? == (0, 0, diverge_at),
        "epoch 0 end"
    );
    ensure!(
        ask(new_leader, epoch - 1).await?.0 == 74,
        "older epoch not fenced"
    );
    ensure!(
        ask(new_leader, epoch + 1).await?.0 == 75,
        "newer epoch not unknown"
    );
    ensure!(ask(old_leader, epoch).await?.0 == 6, "a follower answered");
    eprintln!(
        "replicas 0,1,2 hold identical records at offsets 0..{} (old leader {old_leader} \
         truncated {} orphans, new leader {new_leader})",
        reference.len(),
        1500 - diverge_at
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_without_isr_unless_unclean_election_is_enabled() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(2)
            .with_session_timeout_ms(10_000)
            .with_override("replica.lag.time.max.ms", 2000),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    for (topic, unclean) in [("clean", "false"), ("unclean", "true")] {
        clients::create_topic_with(
            &bootstrap,
            topic,
            1,
            TopicReplication::Variable(&[&[0, 1]]),
            &[("unclean.leader.election.enable", unclean)],
        )
        .await?;
        wait_isr(
            &cluster,
            &bootstrap,
            topic,
            &[0, 1],
            Duration::from_secs(20),
        )
        .await?;
    }
    // Broker 1 falls out of both ISRs while broker 0 keeps taking writes.
    cluster.pause(1).await?;
    let acks1 = producer(&bootstrap, "1", "0")?;
    let end = Instant::now() + Duration::from_secs(6);
    let mut n = 0;
    while Instant::now() < end {
        for topic in ["clean", "unclean"] {
            send_one(&acks1, topic, &format!("m-{n}")).await?;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for topic in ["clean", "unclean"] {
        poll_until(
            "ISR [0] in ZooKeeper",
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async { Ok((isr_in_zk(&cluster, topic, 0).await? == [0]).then_some(())) },
        )
        .await?;
    }
    // The only ISR member dies; the out-of-sync replica comes back.
    cluster.kill(0).await?;
    cluster.resume(1).await?;

    let elected = poll_until(
        "broker 1 to be elected for the unclean topic",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let s = state(&cluster, "unclean", 0).await?;
            Ok((s["leader"] == 1).then_some(s))
        },
    )
    .await?;
    eprintln!("unclean topic: {elected}");
    ensure!(
        elected["isr"] == serde_json::json!([1]),
        "unclean ISR {elected}"
    );
    // The clean topic stays offline, and keeps its last ISR so the data's owner is known.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let clean = state(&cluster, "clean", 0).await?;
    eprintln!("clean topic: {clean}");
    ensure!(
        clean["leader"] == -1,
        "clean topic elected a leader: {clean}"
    );
    ensure!(clean["isr"] == serde_json::json!([0]), "clean ISR {clean}");
    // Clients see it too: a produce to the clean topic fails, the unclean one is writable.
    let p = producer(&bootstrap, "1", "0")?;
    let short = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "3000")
        .create::<FutureProducer>()?;
    ensure!(
        send_one(&short, "clean", "x").await.is_err(),
        "produce to the offline partition succeeded"
    );
    send_one(&p, "unclean", "y")
        .await
        .map_err(|e| anyhow::anyhow!("produce to the unclean-elected leader: {e}"))?;
    Ok(())
}
