//! Offset commit validation, the cache, fetches, expiry and the load/unload round trip through
//! the records a real append would carry.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::coordinator::loader::Replayed;
use crate::coordinator::membership::{JoinRequest, MembershipConfig};
use crate::coordinator::store::MemoryGroupLog;
use crate::replication::ReplicaError;

fn membership() -> (Membership, MemoryGroupLog) {
    let log = MemoryGroupLog::default();
    let config = MembershipConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 1000,
        ..MembershipConfig::default()
    };
    (Membership::new(config, Arc::new(log.clone())), log)
}

fn commit(group: &str, generation: i32, member: &str, parts: &[(&str, i32, i64)]) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        retention_ms: None,
        partitions: parts
            .iter()
            .map(|(t, p, o)| PartitionCommit {
                topic: t.to_string(),
                partition: *p,
                offset: *o,
                leader_epoch: Some(3),
                metadata: Some(format!("meta-{t}-{p}")),
                commit_timestamp: -1,
            })
            .collect(),
    }
}

#[tokio::test]
async fn standalone_commits_round_trip_with_metadata() {
    let (m, log) = membership();
    let codes = m
        .commit_offsets(commit("simple", -1, "", &[("t", 0, 10), ("t", 1, 20)]), 100)
        .await;
    assert_eq!(codes, vec![Ok(()), Ok(())]);
    let fetched = m.fetch_offsets("simple", Some(vec![("t".into(), vec![0, 1, 2])]), false);
    assert_eq!(fetched[0].offset, 10);
    assert_eq!(fetched[0].metadata, "meta-t-0");
    assert_eq!(fetched[0].leader_epoch, Some(3));
    assert_eq!(fetched[1].offset, 20);
    assert_eq!(fetched[2].offset, -1, "nothing committed for partition 2");
    assert_eq!(
        m.fetch_offsets("simple", None, false).len(),
        2,
        "null topics = all"
    );
    // One batch of two offset records went to the group's partition.
    let appended = log.appended.lock().unwrap().clone();
    assert_eq!(appended.len(), 1);
    assert_eq!(appended[0].1.len(), 2);
    let v = records::decode_offset_value(appended[0].1[1].1.as_ref().unwrap()).unwrap();
    assert_eq!((v.offset, v.commit_timestamp), (20, 100));
}

#[tokio::test]
async fn unknown_groups_fetch_minus_one() {
    let (m, _) = membership();
    let fetched = m.fetch_offsets("nobody", Some(vec![("t".into(), vec![0, 1])]), false);
    assert!(fetched
        .iter()
        .all(|f| f.offset == -1 && f.metadata.is_empty()));
    assert!(m.fetch_offsets("nobody", None, false).is_empty());
}

#[tokio::test]
async fn commit_validation_follows_kafka() {
    let (m, log) = membership();
    // A generation this coordinator never saw.
    assert_eq!(
        m.commit_offsets(commit("g", 3, "m", &[("t", 0, 1)]), 0)
            .await,
        vec![Err(GroupError::IllegalGeneration)]
    );
    // Metadata over offset.metadata.max.bytes is refused per partition, the rest is stored.
    let mut req = commit("g", -1, "", &[("t", 0, 1), ("t", 1, 2)]);
    req.partitions[0].metadata = Some("x".repeat(4097));
    assert_eq!(
        m.commit_offsets(req, 0).await,
        vec![Err(GroupError::OffsetMetadataTooLarge), Ok(())]
    );
    // A failed append maps to the coordinator errors and leaves the cache alone.
    *log.fail_with.lock().unwrap() =
        Some(ReplicaError::NotEnoughReplicas { isr: 1, min_isr: 2 }.into());
    assert_eq!(
        m.commit_offsets(commit("g", -1, "", &[("t", 1, 99)]), 0)
            .await,
        vec![Err(GroupError::CoordinatorNotAvailable)]
    );
    *log.fail_with.lock().unwrap() = Some(
        ReplicaError::MessageTooLarge {
            size: 5000,
            max: 1000,
        }
        .into(),
    );
    assert_eq!(
        m.commit_offsets(commit("g", -1, "", &[("t", 1, 99)]), 0)
            .await,
        vec![Err(GroupError::InvalidCommitOffsetSize)]
    );
    assert_eq!(m.fetch_offsets("g", None, false)[0].offset, 2);
}

#[tokio::test]
async fn member_commits_need_the_current_generation() {
    let (m, _) = membership();
    let join = JoinRequest {
        group_id: "g".into(),
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![(
            "range".into(),
            Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't']),
        )],
        require_known_member_id: false,
    };
    let joined = m.join(join, 0).await;
    assert_eq!(joined.error, None);
    let id = joined.member_id.clone();
    // CompletingRebalance: commits wait for the assignment.
    assert_eq!(
        m.commit_offsets(commit("g", 1, &id, &[("t", 0, 5)]), 1)
            .await,
        vec![Err(GroupError::RebalanceInProgress)]
    );
    m.sync("g", 1, &id, vec![(id.clone(), Bytes::new())], 2)
        .await;
    assert_eq!(
        m.commit_offsets(commit("g", 1, &id, &[("t", 0, 5)]), 3)
            .await,
        vec![Ok(())]
    );
    assert_eq!(
        m.commit_offsets(commit("g", 0, &id, &[("t", 0, 6)]), 3)
            .await,
        vec![Err(GroupError::IllegalGeneration)]
    );
    assert_eq!(
        m.commit_offsets(commit("g", 1, "stranger", &[("t", 0, 6)]), 3)
            .await,
        vec![Err(GroupError::UnknownMemberId)]
    );
    // The subscribed topic "t" is kept while the member lives; an unsubscribed one expires.
    m.commit_offsets(commit("g", 1, &id, &[("old", 0, 1)]), 3)
        .await;
    assert_eq!(m.expire_offsets(10_000), (1, 0));
    let left: Vec<String> = m
        .fetch_offsets("g", None, false)
        .into_iter()
        .map(|f| f.topic)
        .collect();
    assert_eq!(left, vec!["t".to_string()]);
}

#[tokio::test]
async fn expiry_removes_old_offsets_then_the_empty_group() {
    let (m, _) = membership();
    m.commit_offsets(commit("s", -1, "", &[("t", 0, 1)]), 0)
        .await;
    m.commit_offsets(commit("s", -1, "", &[("t", 1, 1)]), 900)
        .await;
    // Retention is 1000 ms from each commit (no protocol type: a simple consumer).
    assert_eq!(m.expire_offsets(1000), (1, 0));
    assert_eq!(m.fetch_offsets("s", None, false).len(), 1);
    assert_eq!(
        m.expire_offsets(1900),
        (1, 1),
        "last offset gone, then the group"
    );
    assert!(m.describe("s").state == "Dead");
    let queued = m.writes.drain();
    let tombstones: Vec<&Record> = queued.iter().flat_map(|(_, r)| r).collect();
    assert_eq!(
        tombstones.len(),
        3,
        "two offset tombstones and a group tombstone"
    );
    assert!(tombstones.iter().all(|(_, v)| v.is_none()));
    // An explicit expiry (v2–4 retention) overrides the default.
    let mut req = commit("r", -1, "", &[("t", 0, 1)]);
    req.retention_ms = Some(50_000);
    m.commit_offsets(req, 0).await;
    assert_eq!(m.expire_offsets(40_000), (0, 0));
    assert_eq!(m.expire_offsets(50_000), (1, 1));
}

#[tokio::test]
async fn what_was_written_loads_back_after_unload() {
    let (m, log) = membership();
    m.commit_offsets(commit("a", -1, "", &[("t", 0, 7), ("u", 2, 9)]), 5)
        .await;
    m.commit_offsets(commit("a", -1, "", &[("t", 0, 8)]), 6)
        .await;
    let partition = m.partition_of("a");
    // Build the partition's log from what was appended, plus a tombstone for "u"-2.
    let mut data = Vec::new();
    let mut next = 0i64;
    let mut appends = log.appended.lock().unwrap().clone();
    appends.push((partition, vec![(records::offset_key("a", "u", 2), None)]));
    for (p, recs) in appends {
        assert_eq!(p, partition);
        let kvs: Vec<crate::protocol::batch::RecordKv<'_>> = recs
            .iter()
            .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
            .collect();
        let b = crate::protocol::batch::build_batch(next, 1, &kvs);
        next += recs.len() as i64;
        data.extend_from_slice(&b);
    }
    assert_eq!(m.unload(partition), 1);
    assert_eq!(m.fetch_offsets("a", None, false).len(), 0);
    let mut replayed = Replayed::default();
    replayed.apply_batches(&data);
    assert_eq!(replayed.skipped, 0);
    assert_eq!(m.install(partition, replayed), (1, 1));
    let fetched = m.fetch_offsets("a", None, false);
    assert_eq!(fetched.len(), 1, "the tombstone removed u-2");
    assert_eq!(
        (fetched[0].offset, fetched[0].metadata.as_str()),
        (8, "meta-t-0")
    );
}

fn txn_commit(
    group: &str,
    pid: i64,
    parts: &[(&str, i32, i64)],
) -> crate::coordinator::txn_offsets::TxnCommitRequest {
    let c = commit(group, -1, "", parts);
    crate::coordinator::txn_offsets::TxnCommitRequest {
        group_id: c.group_id,
        producer_id: pid,
        producer_epoch: 0,
        generation_id: -1,
        member_id: String::new(),
        partitions: c.partitions,
    }
}

#[tokio::test]
async fn transactional_offsets_wait_for_their_marker() {
    let (m, _log) = membership();
    let p = m.partition_of("txg");
    let codes = m
        .txn_commit_offsets(txn_commit("txg", 7, &[("t", 0, 5)]), 100)
        .await;
    assert_eq!(codes, vec![Ok(())]);
    let codes = m
        .txn_commit_offsets(txn_commit("txg", 8, &[("t", 1, 9)]), 100)
        .await;
    assert_eq!(codes, vec![Ok(())]);
    assert!(m.has_pending_txn_offsets("txg"));
    let fetched = m.fetch_offsets("txg", Some(vec![("t".into(), vec![0, 1])]), false);
    assert_eq!(
        (fetched[0].offset, fetched[1].offset),
        (-1, -1),
        "pending offsets are invisible"
    );
    assert!(fetched.iter().all(|f| !f.unstable));
    // A fetch that requires stable offsets (OffsetFetch v7) is told to come back.
    let stable = m.fetch_offsets("txg", Some(vec![("t".into(), vec![0, 1, 2])]), true);
    assert_eq!(
        stable
            .iter()
            .map(|f| (f.offset, f.unstable))
            .collect::<Vec<_>>(),
        vec![(-1, true), (-1, true), (-1, false)],
        "partitions 0 and 1 await a marker, 2 has nothing pending"
    );
    // Expiry does not take a group whose offsets await a marker.
    assert_eq!(m.expire_offsets(10_000).1, 0);
    // A marker on another offsets partition changes nothing.
    assert_eq!(m.complete_txn(7, &[p + 1], true), 0);
    assert_eq!(m.complete_txn(7, &[p], true), 1);
    assert_eq!(
        m.complete_txn(8, &[p], false),
        0,
        "an abort drops the offsets"
    );
    let fetched = m.fetch_offsets("txg", Some(vec![("t".into(), vec![0, 1])]), false);
    assert_eq!((fetched[0].offset, fetched[1].offset), (5, -1));
    assert!(!m.has_pending_txn_offsets("txg"));
    let stable = m.fetch_offsets("txg", None, true);
    assert_eq!(
        stable
            .iter()
            .map(|f| (f.offset, f.unstable))
            .collect::<Vec<_>>(),
        vec![(5, false)]
    );
}

#[test]
fn a_replayed_transactional_commit_counts_only_after_its_commit_marker() {
    use crate::protocol::batch_builder::{encode_batch, BatchFields};
    use crate::protocol::control::{encode_marker, ControlType, EndTxnMarker};
    let value = records::offset_value(&OffsetValue {
        offset: 42,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp: 1,
        expire_timestamp: None,
    });
    let txn_batch = |pid: i64, key: Bytes| {
        let plain = crate::protocol::batch::build_batch(
            0,
            1,
            &[(Some(key.as_ref()), Some(value.as_ref()))],
        );
        let h = crate::protocol::batch::BatchHeader::parse(&plain).unwrap();
        let fields = BatchFields {
            attributes: 0x10,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchFields::of(&h)
        };
        encode_batch(&fields, &plain[crate::protocol::batch::HEADER_LEN..]).to_vec()
    };
    let marker = |pid: i64, control| {
        encode_marker(
            pid,
            0,
            EndTxnMarker {
                control,
                coordinator_epoch: 0,
            },
            1,
        )
        .to_vec()
    };
    let mut data = txn_batch(1, records::offset_key("g", "t", 0));
    data.extend(txn_batch(2, records::offset_key("g", "t", 1)));
    data.extend(txn_batch(3, records::offset_key("g", "t", 2)));
    data.extend(marker(1, ControlType::Commit));
    data.extend(marker(2, ControlType::Abort));
    let mut r = Replayed::default();
    r.apply_batches(&data);
    assert_eq!(r.skipped, 0);
    assert!(
        r.offsets.contains_key(&("g".into(), "t".into(), 0)),
        "committed"
    );
    assert!(
        !r.offsets.contains_key(&("g".into(), "t".into(), 1)),
        "aborted"
    );
    assert!(
        r.pending_txn.contains_key(&3),
        "still open at the end of the replay"
    );
    let (m, _log) = membership();
    m.install(m.partition_of("g"), r);
    assert!(m.has_pending_txn_offsets("g"));
    let fetched = m.fetch_offsets("g", Some(vec![("t".into(), vec![0, 1, 2])]), false);
    assert_eq!(
        fetched.iter().map(|f| f.offset).collect::<Vec<_>>(),
        vec![42, -1, -1]
    );
}
