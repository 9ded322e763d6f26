//! Transactions on the partition leader, driven by hand-built requests in the roles a
//! transactional producer and its coordinator play: transactional batches, WriteTxnMarkers
//! with COMMIT and ABORT, the last stable offset in Fetch and ListOffsets, the aborted list a
//! read_committed fetch carries, librdkafka's read_committed and read_uncommitted consumers
//! reading the result, the marker epoch checks, and the LSO and `.txnindex` after `kill -9`
//! and a restart (the index read back in Kafka's byte layout, decoded here independently).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gregor::protocol::batch::{BatchHeader, HEADER_LEN};
use gregor::protocol::batch_builder::{build_batch, encode_batch, BatchFields};
use gregor::protocol::client::BrokerConnection;
use integration_tests::util::poll_until;
use integration_tests::{Cluster, ClusterOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::clients;
use crate::idempotence_wire::{connect, init_producer_id, list_latest, produce_request};

const TOPIC: &str = "txn-log";
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A transactional batch of `values` from `pid`/`epoch` at sequence `seq`, produced with
/// acks=all under a transactional id; returns its base offset.
async fn txn_produce(
    conn: &mut BrokerConnection,
    pid: i64,
    epoch: i16,
    seq: i32,
    values: &[String],
) -> anyhow::Result<i64> {
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
        attributes: 0x10,
        ..BatchFields::of(&h)
    };
    let batch = encode_batch(&fields, &plain[HEADER_LEN..]).freeze();
    let mut req = produce_request(TOPIC, batch, -1);
    req.transactional_id = Some(TransactionalId(StrBytes::from_static_str("it-txn")));
    let resp = conn.send(&req, 8).await?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .context("produce response without a partition")?;
    ensure!(
        p.error_code == 0,
        "transactional produce: {} {:?}",
        p.error_code,
        p.error_message
    );
    Ok(p.base_offset)
}

/// WriteTxnMarkers v1 for partition `partition` of `topic`; the partition's error code.
async fn marker(
    conn: &mut BrokerConnection,
    topic: &str,
    partition: i32,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> anyhow::Result<i16> {
    let mut t = WritableTxnMarkerTopic::default();
    t.name = name(topic);
    t.partition_indexes = vec![partition];
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(pid);
    m.producer_epoch = epoch;
    m.transaction_result = commit;
    m.coordinator_epoch = coordinator_epoch;
    m.topics = vec![t];
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![m];
    let resp = conn.send(&req, 1).await?;
    let r = resp.markers.first().context("no marker result")?;
    ensure!(
        r.producer_id.0 == pid,
        "result for producer {}",
        r.producer_id.0
    );
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("marker result without a partition")?;
    Ok(p.error_code)
}

async fn marker_ok(
    conn: &mut BrokerConnection,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> anyhow::Result<()> {
    let code = marker(conn, TOPIC, 0, pid, epoch, commit, 5).await?;
    ensure!(code == 0, "marker for producer {pid}: error {code}");
    Ok(())
}

/// ListOffsets "latest" of the test's partition at `isolation` (0 uncommitted, 1 committed).
async fn latest(conn: &mut BrokerConnection, isolation: i8) -> anyhow::Result<i64> {
    list_latest(conn, TOPIC, isolation).await
}

/// What a read_committed Fetch v11 from offset 0 answers: (HW, LSO, aborted list).
async fn fetch_committed(
    conn: &mut BrokerConnection,
) -> anyhow::Result<(i64, i64, BTreeSet<(i64, i64)>)> {
    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = 0;
    fp.current_leader_epoch = -1;
    fp.partition_max_bytes = 1 << 20;
    let mut ft = FetchTopic::default();
    ft.topic = name(TOPIC);
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.isolation_level = 1;
    req.session_epoch = -1;
    req.topics = vec![ft];
    let resp = conn.send(&req, 11).await?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .context("fetch without a partition")?;
    ensure!(p.error_code == 0, "fetch error {}", p.error_code);
    let aborted = p
        .aborted_transactions
        .as_ref()
        .context("read_committed fetch without an aborted list (null)")?
        .iter()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    Ok((p.high_watermark, p.last_stable_offset, aborted))
}

/// Values librdkafka hands the application when it reads partition 0 from the start at
/// `isolation` until its position reaches `until` (an offset the broker lets it read to).
fn consume(
    bootstrap: &str,
    isolation: &str,
    until: i64,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "txn-log-unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .context("consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let position = consumer
            .position()?
            .find_partition(TOPIC, 0)
            .and_then(|p| p.offset().to_raw())
            .unwrap_or(-1);
        if position >= until {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!(
                "{isolation}: position {position} after {} messages, wanted {until}",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(e)) => eprintln!("{isolation} consumer: {e}; going on"),
            None => {}
        }
    }
}

/// Kafka's `.txnindex` entries, decoded here: (producer id, first, last, LSO).
fn txn_index_entries(cluster: &Cluster) -> anyhow::Result<Vec<(i64, i64, i64, i64)>> {
    let dir = cluster.data_dir(0).join(format!("{TOPIC}-0"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f)?;
        ensure!(
            bytes.len() % 34 == 0,
            "{}: {} bytes",
            f.display(),
            bytes.len()
        );
        for c in bytes.chunks_exact(34) {
            ensure!(c[0..2] == [0, 0], "{}: version {:?}", f.display(), &c[0..2]);
            let at = |o: usize| i64::from_be_bytes(c[o..o + 8].try_into().unwrap_or_default());
            out.push((at(2), at(10), at(18), at(26)));
        }
    }
    Ok(out)
}

/// What the test wrote, to compare against what the broker answers.
#[derive(Default)]
struct Written {
    committed: Vec<String>,
    aborted_values: Vec<String>,
    /// (producer id, first offset, marker offset, LSO the abort left)
    aborted: Vec<(i64, i64, i64, i64)>,
}

#[tokio::test(flavor = "multi_thread")]
async fn markers_end_transactions_and_read_committed_sees_only_committed_data() -> anyhow::Result<()>
{
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    clients::create_topic(&cluster.bootstrap(), TOPIC, 1, 1).await?;
    let mut conn = connect(cluster.broker_addr(0)).await?;
    let (a, a_epoch) = init_producer_id(&mut conn, 4).await?;
    let (b, b_epoch) = init_producer_id(&mut conn, 4).await?;
    let mut w = Written::default();
    let mut b_first = None;
    // A runs ten three-record transactions, aborting every second one; B opens one at the
    // fourth and leaves it open, so everything after it is unstable.
    for round in 0..10 {
        if round == 4 {
            let values: Vec<String> = (0..2).map(|i| format!("B-open-{i}")).collect();
            b_first = Some(txn_produce(&mut conn, b, b_epoch, 0, &values).await?);
            w.committed.extend(values);
        }
        let values: Vec<String> = (0..3).map(|i| format!("A{round}-{i}")).collect();
        let first = txn_produce(&mut conn, a, a_epoch, round * 3, &values).await?;
        let commit = round % 2 == 0;
        marker_ok(&mut conn, a, a_epoch, commit).await?;
        if commit {
            w.committed.extend(values);
        } else {
            let marker_at = first + 3;
            let lso = b_first.unwrap_or(marker_at + 1);
            w.aborted.push((a, first, marker_at, lso));
            w.aborted_values.extend(values);
        }
    }
    let b_first = b_first.context("B never opened")?;
    let end = latest(&mut conn, 0).await?;
    let lso = latest(&mut conn, 1).await?;
    eprintln!("log end {end}, last stable offset {lso}, B's transaction at {b_first}");
    ensure!(
        lso == b_first,
        "read_committed latest is {lso}, B's open transaction starts at {b_first}"
    );
    let (hw, fetched_lso, aborted) = fetch_committed(&mut conn).await?;
    ensure!(
        (hw, fetched_lso) == (end, b_first),
        "fetch: HW {hw}, LSO {fetched_lso}"
    );
    let expected: BTreeSet<(i64, i64)> = w.aborted.iter().map(|t| (t.0, t.1)).collect();
    ensure!(
        aborted == expected,
        "aborted list {aborted:?}, expected {expected:?}"
    );
    ensure!(
        txn_index_entries(&cluster)? == w.aborted,
        "txnindex {:?}",
        txn_index_entries(&cluster)?
    );

    // librdkafka: read_committed stops at B's open transaction and drops the aborts;
    // read_uncommitted reads everything, the aborted copies included.
    let bootstrap = cluster.bootstrap();
    let committed = consume(
        &bootstrap,
        "read_committed",
        b_first,
        Duration::from_secs(30),
    )?;
    let before_b: Vec<String> = w
        .committed
        .iter()
        .take_while(|v| !v.starts_with("B-"))
        .cloned()
        .collect();
    ensure!(
        committed == before_b,
        "read_committed before B ends: {committed:?}"
    );
    let all = consume(&bootstrap, "read_uncommitted", end, Duration::from_secs(30))?;
    ensure!(
        w.aborted_values.iter().all(|v| all.contains(v)),
        "read_uncommitted lacks aborted data: {all:?}"
    );
    ensure!(
        all.len() == w.committed.len() + w.aborted_values.len(),
        "{all:?}"
    );

    // B commits: everything committed is readable, no aborted record is.
    marker_ok(&mut conn, b, b_epoch, true).await?;
    let end = latest(&mut conn, 0).await?;
    ensure!(
        latest(&mut conn, 1).await? == end,
        "LSO did not reach the end after B's commit"
    );
    let committed = consume(&bootstrap, "read_committed", end, Duration::from_secs(30))?;
    let got: BTreeSet<&String> = committed.iter().collect();
    let want: BTreeSet<&String> = w.committed.iter().collect();
    ensure!(
        committed.len() == w.committed.len() && got == want,
        "read_committed: {committed:?}"
    );
    eprintln!(
        "read_committed saw {} of {} records ({} aborted), read_uncommitted {}",
        committed.len(),
        w.committed.len() + w.aborted_values.len(),
        w.aborted_values.len(),
        all.len()
    );

    // The coordinator's epochs: a marker with a bumped producer epoch fences the old one;
    // an older producer or coordinator epoch is refused, as is an unknown partition.
    let a_next = a_epoch + 1;
    marker_ok(&mut conn, a, a_next, false).await?;
    let code = marker(&mut conn, TOPIC, 0, a, a_epoch, false, 5).await?;
    ensure!(
        code == INVALID_PRODUCER_EPOCH,
        "stale producer epoch: {code}"
    );
    let code = marker(&mut conn, TOPIC, 0, a, a_next, true, 4).await?;
    ensure!(
        code == TRANSACTION_COORDINATOR_FENCED,
        "stale coordinator epoch: {code}"
    );
    let code = marker(&mut conn, "no-such-topic", 0, a, a_next, true, 5).await?;
    ensure!(
        code == UNKNOWN_TOPIC_OR_PARTITION,
        "unknown partition: {code}"
    );
    let fenced = txn_produce(&mut conn, a, a_epoch, 30, &["zombie".to_string()]).await;
    ensure!(
        fenced.as_ref().is_err_and(|e| e.to_string().contains("47")),
        "the fenced epoch could still produce: {fenced:?}"
    );

    // An abort and an open transaction, then kill -9: the restarted leader rebuilds both.
    let b_values: Vec<String> = (0..2).map(|i| format!("B-late-{i}")).collect();
    let b_late = txn_produce(&mut conn, b, b_epoch, 2, &b_values).await?;
    marker_ok(&mut conn, b, b_epoch, false).await?;
    w.aborted.push((b, b_late, b_late + 2, b_late + 3));
    let a_open = txn_produce(&mut conn, a, a_next, 0, &["A-open".to_string()]).await?;
    let before = txn_index_entries(&cluster)?;
    ensure!(before == w.aborted, "txnindex before the kill: {before:?}");
    let (_, _, aborted_before) = fetch_committed(&mut conn).await?;
    cluster.kill(0).await?;
    cluster.restart(0).await?;
    clients::wait_metadata_ready(&cluster).await?;
    let mut conn = poll_until(
        "the restarted broker to lead again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let mut c = connect(cluster.broker_addr(0)).await?;
            Ok(latest(&mut c, 1).await.ok().map(|_| c))
        },
    )
    .await?;
    let lso = latest(&mut conn, 1).await?;
    ensure!(
        lso == a_open,
        "LSO after the restart {lso}, A's open transaction at {a_open}"
    );
    let after = txn_index_entries(&cluster)?;
    ensure!(
        after == before,
        "txnindex after kill -9 {after:?}, before {before:?}"
    );
    let (_, fetched_lso, aborted_after) = fetch_committed(&mut conn).await?;
    ensure!(
        fetched_lso == a_open && aborted_after == aborted_before,
        "fetch after restart: LSO {fetched_lso}, {aborted_after:?}"
    );
    marker_ok(&mut conn, a, a_next, true).await?;
    let end = latest(&mut conn, 0).await?;
    ensure!(
        latest(&mut conn, 1).await? == end,
        "A's commit after the restart did not free the LSO"
    );
    eprintln!(
        "after kill -9: LSO {lso} rebuilt, {} aborted transactions indexed",
        after.len()
    );
    Ok(())
}
