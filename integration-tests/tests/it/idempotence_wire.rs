//! Idempotence on the wire, with hand-built requests: InitProducerId ids are distinct across
//! brokers and restarts; a retry to a new leader after `kill -9` is answered with the original
//! offset and not written twice; producer state survives `kill -9` and a restart (snapshot
//! plus log) and the `.snapshot` files are Kafka's format; bad producer batches get Kafka
//! 2.8's answers with nothing appended.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use gregor::protocol::batch::{BatchHeader, HEADER_LEN};
use gregor::protocol::batch_builder::{build_batch, encode_batch, BatchFields};
use gregor::protocol::client::BrokerConnection;
use integration_tests::util::poll_until;
use integration_tests::{Cluster, ClusterOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::TopicReplication;
use tokio::io::AsyncWriteExt;

use crate::clients;
use crate::raw::frame;
use crate::replication::leader_of;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_RECORD: i16 = 87;
const INVALID_REQUEST: i16 = 42;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;

pub(crate) async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<BrokerConnection> {
    Ok(
        BrokerConnection::connect(&addr.to_string(), "it-idempotence", Duration::from_secs(15))
            .await?,
    )
}

/// A fresh producer id and epoch from `conn`'s broker.
pub(crate) async fn init_producer_id(
    conn: &mut BrokerConnection,
    version: i16,
) -> anyhow::Result<(i64, i16)> {
    let mut req = InitProducerIdRequest::default();
    // The codec's default is an empty string; clients send null.
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let resp = conn.send(&req, version).await?;
    ensure!(
        resp.error_code == 0,
        "InitProducerId v{version}: error {}",
        resp.error_code
    );
    ensure!(
        resp.producer_epoch == 0,
        "InitProducerId gave epoch {}",
        resp.producer_epoch
    );
    Ok((resp.producer_id.0, resp.producer_epoch))
}

/// `records` records of producer `pid`/`epoch` from sequence `seq`, values naming them.
fn batch(pid: i64, epoch: i16, seq: i32, records: usize) -> anyhow::Result<Bytes> {
    let values: Vec<String> = (0..records)
        .map(|i| format!("p{pid}-e{epoch}-s{}", i64::from(seq) + i as i64))
        .collect();
    let kvs: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let plain = build_batch(0, now, &kvs);
    let h = BatchHeader::parse(&plain)?;
    let fields = BatchFields {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchFields::of(&h)
    };
    Ok(encode_batch(&fields, &plain[HEADER_LEN..]).freeze())
}

/// A Produce request (v8-compatible) of `records` for partition 0 of `topic`.
pub fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    req.topic_data = vec![t];
    req
}

async fn produce(
    conn: &mut BrokerConnection,
    topic: &str,
    records: Bytes,
) -> anyhow::Result<PartitionProduceResponse> {
    let resp = conn.send(&produce_request(topic, records, -1), 8).await?;
    resp.responses
        .into_iter()
        .next()
        .and_then(|t| t.partition_responses.into_iter().next())
        .context("produce response without a partition")
}

/// The offset `produce` answered, failing on an error code.
async fn produce_ok(
    conn: &mut BrokerConnection,
    topic: &str,
    records: Bytes,
) -> anyhow::Result<i64> {
    let r = produce(conn, topic, records).await?;
    ensure!(
        r.error_code == 0,
        "produce failed with {} ({:?})",
        r.error_code,
        r.error_message
    );
    Ok(r.base_offset)
}

/// Partition 0's log end offset on `conn`'s broker (its leader).
async fn log_end(conn: &mut BrokerConnection, topic: &str) -> anyhow::Result<i64> {
    list_latest(conn, topic, 0).await
}

/// ListOffsets v5 "latest" for partition 0 at `isolation` (0: the high watermark, 1: the
/// last stable offset).
pub(crate) async fn list_latest(
    conn: &mut BrokerConnection,
    topic: &str,
    isolation: i8,
) -> anyhow::Result<i64> {
    list_latest_of(conn, topic, 0, isolation).await
}

/// ListOffsets latest of `topic`'s `partition` at `isolation` (0 = the high watermark, 1 = the LSO).
pub(crate) async fn list_latest_of(
    conn: &mut BrokerConnection,
    topic: &str,
    partition: i32,
    isolation: i8,
) -> anyhow::Result<i64> {
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.isolation_level = isolation;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    let mut p = ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = -1;
    p.current_leader_epoch = -1;
    t.partitions = vec![p];
    req.topics = vec![t];
    let resp = conn.send(&req, 5).await?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("ListOffsets without a partition")?;
    ensure!(p.error_code == 0, "ListOffsets error {}", p.error_code);
    Ok(p.offset)
}

/// Headers of every batch of partition 0, read with Fetch from `conn`'s broker.
async fn fetch_headers(
    conn: &mut BrokerConnection,
    topic: &str,
) -> anyhow::Result<Vec<BatchHeader>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut fp = FetchPartition::default();
        fp.partition = 0;
        fp.fetch_offset = offset;
        fp.current_leader_epoch = -1;
        fp.partition_max_bytes = 1 << 20;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 0;
        req.min_bytes = 1;
        req.max_bytes = 1 << 20;
        req.topics = vec![ft];
        let resp = conn.send(&req, 4).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("fetch without a partition")?;
        ensure!(p.error_code == 0, "fetch error {}", p.error_code);
        let records = p.records.clone().unwrap_or_default();
        let before = out.len();
        for item in gregor::protocol::batch::batches(&records) {
            let Ok((h, _)) = item else { break };
            offset = h.next_offset();
            out.push(h);
        }
        if out.len() == before {
            return Ok(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn init_producer_id_gives_distinct_ids_across_brokers_and_restarts() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let mut ids = HashSet::new();
    let mut calls = 0;
    for round in 0..2 {
        for id in cluster.broker_ids() {
            let mut conn = connect(cluster.broker_addr(id)).await?;
            for i in 0..1000 {
                let (pid, _) = init_producer_id(&mut conn, (i % 5) as i16).await?;
                ensure!(
                    ids.insert(pid),
                    "producer id {pid} handed out twice (broker {id}, round {round})"
                );
                calls += 1;
            }
        }
        if round == 0 {
            // One broker dies hard, one stops cleanly, one keeps running.
            cluster.kill(0).await?;
            cluster.restart(0).await?;
            cluster.terminate(1).await?;
            cluster.restart(1).await?;
            clients::wait_metadata_ready(&cluster).await?;
        }
    }
    eprintln!(
        "{calls} InitProducerId calls on 3 brokers (two restarted): {} distinct ids",
        ids.len()
    );
    ensure!(
        ids.len() == 6000,
        "{} distinct ids from 6000 calls",
        ids.len()
    );
    let block = cluster
        .zk_get_json("/latest_producer_id_block")
        .await?
        .context("no /latest_producer_id_block")?;
    eprintln!("/latest_producer_id_block = {block}");
    ensure!(block["version"] == 1, "{block}");
    let start: i64 = block["block_start"]
        .as_str()
        .context("block_start is not a string")?
        .parse()?;
    let end: i64 = block["block_end"]
        .as_str()
        .context("block_end is not a string")?
        .parse()?;
    ensure!(end - start == 999 && start % 1000 == 0, "{block}");
    ensure!(
        ids.iter().all(|id| *id <= end),
        "an id above the last block"
    );

    // An id without an epoch is malformed; so is an empty transactional id, and a
    // transaction timeout of 0 is outside (0, transaction.max.timeout.ms].
    let mut conn = connect(cluster.broker_addr(2)).await?;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.producer_id = ProducerId(5);
    req.producer_epoch = -1;
    ensure!(conn.send(&req, 4).await?.error_code == INVALID_REQUEST);
    let mut req = InitProducerIdRequest::default();
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    req.transaction_timeout_ms = 60_000;
    req.transactional_id = Some(kafka_protocol::messages::TransactionalId(
        StrBytes::from_static_str(""),
    ));
    ensure!(conn.send(&req, 4).await?.error_code == INVALID_REQUEST);
    req.transactional_id = Some(kafka_protocol::messages::TransactionalId(
        StrBytes::from_static_str("t"),
    ));
    req.transaction_timeout_ms = 0;
    ensure!(conn.send(&req, 4).await?.error_code == INVALID_TRANSACTION_TIMEOUT);
    Ok(())
}

async fn wait_new_leader(cluster: &Cluster, topic: &str, old: i32) -> anyhow::Result<i32> {
    poll_until(
        "a new leader of partition 0",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let l = leader_of(cluster, topic, 0).await?;
            Ok((l >= 0 && l != old).then_some(l))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_to_the_new_leader_gets_the_original_offset() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(6000)).await?;
    let topic = "idem-failover";
    clients::create_topic_with(
        &cluster.bootstrap(),
        topic,
        1,
        TopicReplication::Fixed(3),
        &[("min.insync.replicas", "2")],
    )
    .await?;
    let leader = leader_of(&cluster, topic, 0).await?;
    let mut conn = connect(cluster.broker_addr(leader)).await?;
    let (pid, epoch) = init_producer_id(&mut conn, 4).await?;
    ensure!(produce_ok(&mut conn, topic, batch(pid, epoch, 0, 3)?).await? == 0);

    // The second batch goes out on a connection whose answer is never read: the producer
    // does not learn that it was written.
    let second = batch(pid, epoch, 3, 2)?;
    let mut unread = tokio::net::TcpStream::connect(cluster.broker_addr(leader)).await?;
    unread
        .write_all(&frame(&produce_request(topic, second.clone(), -1), 8, 99)?)
        .await?;
    // Written and replicated to the ISR (the high watermark passed it) before the kill.
    poll_until(
        "the unacknowledged batch to be replicated",
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async {
            let mut c = connect(cluster.broker_addr(leader)).await?;
            Ok((log_end(&mut c, topic).await? >= 5).then_some(()))
        },
    )
    .await?;
    cluster.kill(leader).await?;
    drop(unread);
    let new_leader = wait_new_leader(&cluster, topic, leader).await?;
    eprintln!("killed leader {leader}; new leader {new_leader}");

    let mut conn = poll_until(
        "the new leader to take produce requests",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let mut c = connect(cluster.broker_addr(new_leader)).await?;
            let r = produce(&mut c, topic, second.clone()).await?;
            match r.error_code {
                0 => Ok(Some((c, r.base_offset))),
                // NOT_LEADER_OR_FOLLOWER until the LeaderAndIsr lands.
                6 => Ok(None),
                e => bail!("retry answered error {e} ({:?})", r.error_message),
            }
        },
    )
    .await
    .map(|(c, offset)| {
        eprintln!("retry of sequence 3..4 to broker {new_leader}: base offset {offset}");
        (c, offset)
    })?;
    ensure!(
        conn.1 == 3,
        "the retry was answered with offset {}, not the original 3",
        conn.1
    );
    let headers = fetch_headers(&mut conn.0, topic).await?;
    let summary: Vec<(i64, i32)> = headers
        .iter()
        .map(|h| (h.base_offset, h.base_sequence))
        .collect();
    eprintln!("batches on the new leader (offset, first sequence): {summary:?}");
    ensure!(summary == vec![(0, 0), (3, 3)], "log holds {summary:?}");
    ensure!(log_end(&mut conn.0, topic).await? == 5);
    ensure!(produce_ok(&mut conn.0, topic, batch(pid, epoch, 5, 1)?).await? == 5);
    cluster.restart(leader).await?;
    Ok(())
}

/// Kafka's snapshot layout, decoded independently of gregor: (producer id, epoch, last
/// sequence, last offset) per entry.
fn decode_snapshot(bytes: &[u8]) -> anyhow::Result<Vec<(i64, i16, i32, i64)>> {
    ensure!(bytes.len() >= 10, "snapshot of {} bytes", bytes.len());
    ensure!(bytes[0..2] == [0, 1], "version {:?}", &bytes[0..2]);
    let crc = u32::from_be_bytes(bytes[2..6].try_into()?);
    ensure!(crc == crc32c::crc32c(&bytes[6..]), "CRC-32C mismatch");
    let n = i32::from_be_bytes(bytes[6..10].try_into()?) as usize;
    ensure!(
        bytes.len() == 10 + 46 * n,
        "{n} entries in {} bytes",
        bytes.len()
    );
    Ok(bytes[10..]
        .chunks_exact(46)
        .map(|c| {
            let i64_at = |o: usize| i64::from_be_bytes(c[o..o + 8].try_into().unwrap_or_default());
            let i32_at = |o: usize| i32::from_be_bytes(c[o..o + 4].try_into().unwrap_or_default());
            (
                i64_at(0),
                i16::from_be_bytes([c[8], c[9]]),
                i32_at(10),
                i64_at(14),
            )
        })
        .collect())
}

fn snapshots(cluster: &Cluster, topic: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let dir = cluster.data_dir(0).join(format!("{topic}-0"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .map(|p| {
            Ok((
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
                std::fs::read(&p)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_state_survives_kill_and_restart_in_kafkas_snapshot_format() -> anyhow::Result<()>
{
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let topic = "idem-restart";
    clients::create_topic_with(
        &cluster.bootstrap(),
        topic,
        1,
        TopicReplication::Fixed(1),
        &[("segment.bytes", "4096")],
    )
    .await?;
    let mut conn = connect(cluster.broker_addr(0)).await?;
    let mut producers = Vec::new();
    for _ in 0..3 {
        producers.push(init_producer_id(&mut conn, 4).await?);
    }
    // (pid, epoch, last batch's first sequence, its offset)
    let mut last = Vec::new();
    for round in 0..12 {
        for (pid, epoch) in &producers {
            let offset = produce_ok(&mut conn, topic, batch(*pid, *epoch, round * 5, 5)?).await?;
            if round == 11 {
                last.push((*pid, *epoch, offset));
            }
        }
    }
    let snaps = snapshots(&cluster, topic)?;
    ensure!(!snaps.is_empty(), "no snapshot after several segment rolls");
    for (name, bytes) in &snaps {
        let entries = decode_snapshot(bytes).with_context(|| name.clone())?;
        ensure!(
            entries.iter().all(|e| producers.iter().any(|p| p.0 == e.0)),
            "{name}: {entries:?}"
        );
        eprintln!("{name}: {entries:?}");
    }

    for clean in [false, true] {
        if clean {
            cluster.terminate(0).await?;
        } else {
            cluster.kill(0).await?;
        }
        cluster.restart(0).await?;
        clients::wait_metadata_ready(&cluster).await?;
        let mut conn = poll_until(
            "the restarted broker to lead again",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let mut c = connect(cluster.broker_addr(0)).await?;
                Ok(log_end(&mut c, topic).await.ok().map(|_| c))
            },
        )
        .await?;
        let end = log_end(&mut conn, topic).await?;
        for (pid, epoch, offset) in &last {
            let got = produce_ok(&mut conn, topic, batch(*pid, *epoch, 55, 5)?).await?;
            ensure!(got == *offset, "after {} restart: retry of producer {pid}'s last batch got {got}, first written at {offset}",
                if clean { "a clean" } else { "a kill -9 and" });
        }
        ensure!(
            log_end(&mut conn, topic).await? == end,
            "a retry was written again"
        );
        eprintln!(
            "after the {} restart: every producer's last batch is still a duplicate",
            if clean { "clean" } else { "kill -9" }
        );
        if clean {
            let snaps = snapshots(&cluster, topic)?;
            let name = format!("{end:020}.snapshot");
            let (_, bytes) = snaps
                .iter()
                .find(|(n, _)| *n == name)
                .with_context(|| format!("no {name} after a clean shutdown"))?;
            let entries = decode_snapshot(bytes)?;
            ensure!(entries.len() == 3, "{entries:?}");
            for (pid, epoch, offset) in &last {
                ensure!(
                    entries.contains(&(*pid, *epoch, 59, offset + 4)),
                    "{name} lacks producer {pid}: {entries:?}"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_producer_batches_get_kafkas_answers_and_nothing_is_appended() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let topic = "idem-bad";
    clients::create_topic(&cluster.bootstrap(), topic, 1, 1).await?;
    let mut conn = connect(cluster.broker_addr(0)).await?;
    let (pid, epoch) = init_producer_id(&mut conn, 4).await?;
    ensure!(produce_ok(&mut conn, topic, batch(pid, epoch, 0, 3)?).await? == 0);

    let addr = cluster.broker_addr(0);
    let refused = |what: &'static str, records: Bytes, code: i16| {
        let topic = topic.to_string();
        async move {
            let mut c = connect(addr).await?;
            let before = log_end(&mut c, &topic).await?;
            let r = produce(&mut c, &topic, records).await?;
            eprintln!("{what}: error {} ({:?})", r.error_code, r.error_message);
            ensure!(
                r.error_code == code,
                "{what}: error {}, expected {code}",
                r.error_code
            );
            ensure!(
                log_end(&mut c, &topic).await? == before,
                "{what}: something was appended"
            );
            anyhow::Ok(())
        }
    };
    // LogValidator: a producer id with a negative sequence.
    refused(
        "negative sequence",
        batch(pid, epoch, -5, 1)?,
        INVALID_RECORD,
    )
    .await?;
    // A base sequence that jumps to the end of the sequence space and wraps past 0: a gap.
    refused(
        "sequence-wrapping batch",
        batch(pid, epoch, i32::MAX - 1, 4)?,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
    )
    .await?;
    refused(
        "gap",
        batch(pid, epoch, 4, 1)?,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
    )
    .await?;
    ensure!(produce_ok(&mut conn, topic, batch(pid, epoch + 1, 0, 1)?).await? == 3);
    refused(
        "fenced epoch",
        batch(pid, epoch, 3, 1)?,
        INVALID_PRODUCER_EPOCH,
    )
    .await?;
    refused(
        "new epoch not at sequence 0",
        batch(pid, epoch + 2, 7, 1)?,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
    )
    .await?;

    // A producer id this broker never issued: Kafka 2.8 keeps no record of issued ids and
    // accepts a producer it has no state for at any sequence (no UNKNOWN_PRODUCER_ID since
    // 2.5); from then on its sequence is checked like any other.
    let stranger = 4_000_000_000;
    let r = produce(&mut conn, topic, batch(stranger, 0, 7, 2)?).await?;
    eprintln!(
        "never-issued producer id: error {} at offset {}",
        r.error_code, r.base_offset
    );
    ensure!(r.error_code == 0 && r.base_offset == 4, "{r:?}");
    refused(
        "never-issued producer with a gap",
        batch(stranger, 0, 10, 1)?,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
    )
    .await?;
    ensure!(produce_ok(&mut conn, topic, batch(stranger, 0, 9, 1)?).await? == 6);
    Ok(())
}
