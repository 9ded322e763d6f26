//! Transactions on the wire, with hand-built requests so that producer ids and per-partition
//! codes are visible.
//!
//! Expiry of idle transactional ids (`transactional.id.expiration.ms`, Kafka's
//! `removeExpiredTransactionalIds`): an id with no open transaction is forgotten once idle past the expiration (the next
//! InitProducerId gets a new producer id at epoch 0, not an epoch bump), its tombstone keeps it
//! forgotten across a `kill -9` and reload, and an id with an open transaction is never expired
//! although it had the same chance (an idle id touched after it expired meanwhile).
//!
//! OffsetFetch v7 `require_stable` (KIP-447): while a transaction's offset commit awaits its
//! marker, a stable fetch gets UNSTABLE_OFFSET_COMMIT for that partition (an unstable one gets
//! the offset from before), and the committed offset once the COMMIT marker is written.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gregor::coordinator::hash::partition_for;
use integration_tests::{Cluster, ClusterOptions};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, OffsetFetchRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::clients;
use crate::idempotence_wire::{connect, list_latest_of};

/// Longer than a kill -9 and restart takes, so the reload check sees the id before it could
/// expire again.
const EXPIRATION_MS: u64 = 15_000;
const TXN_PARTITIONS: i32 = 50;
const TXN_TOPIC: &str = "__transaction_state";
const OUTPUT: &str = "expiry-out";
/// Codes the coordinator answers while it loads, moves, or completes a transaction.
const RETRIABLE: [i16; 4] = [14, 15, 16, 51];

/// FindCoordinator (key type 1, which creates `__transaction_state` on first use) and then
/// InitProducerId for `id` (timeout 60 s), retried through the retriable coordinator codes.
async fn init(cluster: &Cluster, id: &str) -> anyhow::Result<(i64, i16)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = connect(cluster.broker_addr(0)).await?;
        let find = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(id.to_string()))
            .with_key_type(1);
        let found = conn.send(&find, 2).await?.error_code;
        ensure!(
            found == 0 || RETRIABLE.contains(&found),
            "FindCoordinator({id}): error {found}"
        );
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(TransactionalId(StrBytes::from_string(id.to_string())));
        req.transaction_timeout_ms = 60_000;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let resp = conn.send(&req, 3).await?;
        match resp.error_code {
            0 => return Ok((resp.producer_id.0, resp.producer_epoch)),
            code if RETRIABLE.contains(&code) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            code => bail!("InitProducerId({id}): error {code}"),
        }
    }
}

/// The log end offset of `__transaction_state`'s partition for `id`.
async fn state_log_end(cluster: &Cluster, id: &str) -> anyhow::Result<i64> {
    let mut conn = connect(cluster.broker_addr(0)).await?;
    list_latest_of(&mut conn, TXN_TOPIC, partition_for(id, TXN_PARTITIONS), 0).await
}

/// Polls until a record beyond `from` lands in `id`'s `__transaction_state` partition.
async fn wait_state_write(cluster: &Cluster, id: &str, from: i64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    integration_tests::util::poll_until(
        &format!("a write for {id} in {TXN_TOPIC}"),
        Duration::from_secs(45),
        Duration::from_millis(100),
        || async { Ok((state_log_end(cluster, id).await? > from).then_some(())) },
    )
    .await?;
    Ok(t.elapsed())
}

/// `prefix-N` for the first N whose `__transaction_state` partition is none of `taken`.
fn id_on_own_partition(prefix: &str, taken: &[&str]) -> String {
    let used: Vec<i32> = taken
        .iter()
        .map(|t| partition_for(t, TXN_PARTITIONS))
        .collect();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| !used.contains(&partition_for(id, TXN_PARTITIONS)))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_transactional_ids_expire_and_open_transactions_do_not() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            .with_override("transactional.id.expiration.ms", EXPIRATION_MS)
            .with_override(
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                200,
            ),
    )
    .await?;
    clients::create_topic(&cluster.bootstrap(), OUTPUT, 1, 1).await?;
    let idle = "idle-id".to_string();
    let open = id_on_own_partition("open-id", &[&idle]);
    let late = id_on_own_partition("late-id", &[&idle, &open]);

    // Remembered while in use: a second InitProducerId bumps the epoch of the same id.
    let (pid, epoch) = init(&cluster, &idle).await?;
    let (again, bumped) = init(&cluster, &idle).await?;
    ensure!(
        again == pid && bumped == epoch + 1,
        "second InitProducerId of {idle}: ({again}, {bumped}) after ({pid}, {epoch})"
    );
    let idle_end = state_log_end(&cluster, &idle).await?;

    // `open` holds a transaction (timeout 60 s, far beyond the test) with one partition.
    let (open_pid, open_epoch) = init(&cluster, &open).await?;
    let mut conn = connect(cluster.broker_addr(0)).await?;
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = TransactionalId(StrBytes::from_string(open.clone()));
    req.v3_and_below_producer_id = ProducerId(open_pid);
    req.v3_and_below_producer_epoch = open_epoch;
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(OUTPUT));
    topic.partitions = vec![0];
    req.v3_and_below_topics = vec![topic];
    let resp = conn.send(&req, 1).await?;
    let code = resp
        .results_by_topic_v3_and_below
        .first()
        .and_then(|t| t.results_by_partition.first())
        .map(|p| p.partition_error_code)
        .context("AddPartitionsToTxn without a result")?;
    ensure!(code == 0, "AddPartitionsToTxn({open}): error {code}");
    let open_end = state_log_end(&cluster, &open).await?;
    // `late` becomes idle after `open`'s last write: once it has expired, `open` was past the
    // same horizon in an earlier or the same scan.
    init(&cluster, &late).await?;
    let late_end = state_log_end(&cluster, &late).await?;

    let idle_after = wait_state_write(&cluster, &idle, idle_end).await?;
    let late_after = wait_state_write(&cluster, &late, late_end).await?;
    eprintln!(
        "{idle} tombstoned {idle_after:?} after polling began, {late} {late_after:?} after that \
         (expiration {EXPIRATION_MS} ms)"
    );
    ensure!(
        state_log_end(&cluster, &open).await? == open_end,
        "{open} (open transaction) was written to although nothing touched it"
    );

    // Forgotten: a new producer id at epoch 0.
    let (fresh, fresh_epoch) = init(&cluster, &idle).await?;
    ensure!(
        fresh != pid && fresh_epoch == 0,
        "InitProducerId of the expired {idle}: ({fresh}, {fresh_epoch}), before ({pid}, {bumped})"
    );
    // Kept: the open transaction's id keeps its producer id (the init aborts and bumps).
    let (open_again, open_bumped) = init(&cluster, &open).await?;
    ensure!(
        open_again == open_pid && open_bumped > open_epoch,
        "{open} with an open transaction: ({open_again}, {open_bumped}) after ({open_pid}, {open_epoch})"
    );

    // The tombstone and the new registration reload in order after kill -9.
    cluster.kill(0).await?;
    cluster.restart(0).await?;
    let (reloaded, reloaded_epoch) = init(&cluster, &idle).await?;
    ensure!(
        reloaded == fresh && reloaded_epoch == 1,
        "{idle} after reload: ({reloaded}, {reloaded_epoch}), wanted ({fresh}, 1)"
    );
    Ok(())
}

/// One OffsetFetch v7 of `group`'s `topic` partitions 0 and 1: (offset, error code) of each.
async fn offset_fetch_v7(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    require_stable: bool,
) -> anyhow::Result<Vec<(i64, i16)>> {
    let mut conn = connect(cluster.broker_addr(0)).await?;
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_indexes = vec![0, 1];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = Some(vec![t]);
    req.require_stable = require_stable;
    let resp = conn.send(&req, 7).await?;
    ensure!(
        resp.error_code == 0,
        "OffsetFetch: error {}",
        resp.error_code
    );
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.committed_offset, p.error_code))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stable_offset_fetch_waits_for_the_transaction_marker() -> anyhow::Result<()> {
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    clients::create_topic(&cluster.bootstrap(), OUTPUT, 2, 1).await?;
    let group = "stable-group";
    crate::group_raw::find_coordinator(&cluster, 0, group, Duration::from_secs(30)).await?;
    let id = "stable-txn";
    let (pid, epoch) = init(&cluster, id).await?;
    let txn_id = || TransactionalId(StrBytes::from_static_str("stable-txn"));
    let mut conn = connect(cluster.broker_addr(0)).await?;

    let mut add = AddOffsetsToTxnRequest::default();
    add.transactional_id = txn_id();
    add.producer_id = ProducerId(pid);
    add.producer_epoch = epoch;
    add.group_id = GroupId(StrBytes::from_static_str(group));
    let code = conn.send(&add, 1).await?.error_code;
    ensure!(code == 0, "AddOffsetsToTxn: error {code}");

    let mut p = TxnOffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 5;
    p.committed_leader_epoch = -1;
    let mut t = TxnOffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str(OUTPUT));
    t.partitions = vec![p];
    let mut commit = TxnOffsetCommitRequest::default();
    commit.transactional_id = txn_id();
    commit.group_id = GroupId(StrBytes::from_static_str(group));
    commit.producer_id = ProducerId(pid);
    commit.producer_epoch = epoch;
    commit.generation_id = -1;
    commit.topics = vec![t];
    let resp = conn.send(&commit, 3).await?;
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    ensure!(codes == vec![0], "TxnOffsetCommit: {codes:?}");

    let stable = offset_fetch_v7(&cluster, group, OUTPUT, true).await?;
    ensure!(
        stable == vec![(-1, UNSTABLE_OFFSET_COMMIT), (-1, 0)],
        "stable fetch with partition 0 pending: {stable:?}"
    );
    let unstable = offset_fetch_v7(&cluster, group, OUTPUT, false).await?;
    ensure!(
        unstable == vec![(-1, 0), (-1, 0)],
        "plain fetch with partition 0 pending: {unstable:?}"
    );

    let mut end = EndTxnRequest::default();
    end.transactional_id = txn_id();
    end.producer_id = ProducerId(pid);
    end.producer_epoch = epoch;
    end.committed = true;
    let code = conn.send(&end, 1).await?.error_code;
    ensure!(code == 0, "EndTxn: error {code}");
    // EndTxn answers once PrepareCommit is durable; the marker follows.
    let t = Instant::now();
    let committed = integration_tests::util::poll_until(
        "the stable fetch to see the committed offset",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let got = offset_fetch_v7(&cluster, group, OUTPUT, true).await?;
            Ok((got.first().map(|g| g.1) != Some(UNSTABLE_OFFSET_COMMIT)).then_some(got))
        },
    )
    .await?;
    eprintln!(
        "stable after the commit: {committed:?} ({:?} after EndTxn)",
        t.elapsed()
    );
    ensure!(
        committed == vec![(5, 0), (-1, 0)],
        "stable fetch after the commit: {committed:?}"
    );
    Ok(())
}
