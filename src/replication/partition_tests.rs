//! `Partition` on a real log in a temporary directory: the leader's high watermark rule over
//! follower fetches, consumer reads capped at it, follower appends, and acks=all waiters parked in
//! the purgatory completing (or failing) when the partition changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::log::{LogConfig, LogManager};
use crate::protocol::batch::build_batch;
use crate::replication::purgatory::{Event, Interest, Purgatory};

const LOCAL: i32 = 1;
const LAG_MAX_MS: i64 = 30_000;

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn open(dir: &Path) -> (LogManager, Arc<Partition>) {
    let config = LogConfig::default();
    let per_topic = config.clone();
    let logs = LogManager::startup(
        &[dir.to_path_buf()],
        LOCAL,
        "cluster-a",
        config.clone(),
        &move |_| per_topic.clone(),
    )
    .expect("log manager on a fresh directory");
    let log = logs
        .get_or_create_log(&tp(), config)
        .expect("log in a fresh directory");
    let partition = Arc::new(Partition::new(tp(), LOCAL, log, LAG_MAX_MS));
    (logs, partition)
}

fn state(leader: i32, epoch: i32, isr: &[i32]) -> LeaderAndIsrState {
    LeaderAndIsrState {
        controller_epoch: 1,
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        zk_version: 0,
        replicas: vec![1, 2, 3],
        is_new: true,
    }
}

/// One record's key and value, as `build_batch` takes them.
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// A batch of `n` records.
fn records(n: usize) -> Bytes {
    let kvs: Vec<KeyValue<'_>> = (0..n).map(|_| (None, Some(b"value".as_slice()))).collect();
    build_batch(0, 1_000, &kvs).freeze()
}

/// A follower's fetch at `offset`; returns whether it moved the HW.
fn follower_fetch(p: &Partition, follower: i32, offset: i64) -> bool {
    let (_, moved, _) = p
        .read(
            offset,
            1 << 20,
            FetchIsolation::LogEnd,
            true,
            Some(follower),
        )
        .expect("follower read");
    moved
}

fn consumer_visible_bytes(p: &Partition, offset: i64) -> usize {
    let (read, _, _) = p
        .read(offset, 1 << 20, FetchIsolation::HighWatermark, true, None)
        .expect("consumer read");
    read.info.records.len()
}

#[test]
fn the_high_watermark_waits_for_every_isr_follower() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_logs, p) = open(dir.path());
    assert!(p
        .make_leader(&state(LOCAL, 1, &[1, 2, 3]))
        .expect("make leader"));
    let (info, moved) = p.append_as_leader(records(2), -1).expect("append");
    assert_eq!((info.first_offset, info.last_offset), (0, 1));
    assert!(!moved, "followers have not fetched yet");
    assert_eq!(p.high_watermark(), 0);
    assert_eq!(
        consumer_visible_bytes(&p, 0),
        0,
        "consumers see nothing above the HW"
    );
    assert_eq!(p.check_enough_replicas_reach_offset(2), None);

    assert!(!follower_fetch(&p, 2, 2), "follower 3 still holds the HW");
    assert_eq!(p.high_watermark(), 0);
    assert!(follower_fetch(&p, 3, 2));
    assert_eq!(p.high_watermark(), 2);
    assert!(consumer_visible_bytes(&p, 0) > 0);
    assert_eq!(p.check_enough_replicas_reach_offset(2), Some(Ok(())));
    // A repeated fetch at the same offset changes nothing.
    assert!(!follower_fetch(&p, 3, 2));
}

#[test]
fn a_single_replica_isr_moves_the_high_watermark_on_append() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_logs, p) = open(dir.path());
    assert!(p.make_leader(&state(LOCAL, 1, &[1])).expect("make leader"));
    let (_, moved) = p.append_as_leader(records(3), -1).expect("append");
    assert!(moved);
    assert_eq!(p.high_watermark(), 3);
}

#[test]
fn a_follower_takes_the_leader_high_watermark_capped_at_its_log_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_logs, p) = open(dir.path());
    assert!(p.make_follower(&state(2, 4, &[1, 2, 3])));
    let leo = p
        .append_as_follower(4, 0, records(2), 10, 0)
        .expect("follower append");
    assert_eq!(leo, 2);
    assert_eq!(p.high_watermark(), 2);
    // A response from an older epoch's fetch is refused.
    assert_eq!(
        p.append_as_follower(3, 2, records(1), 10, 0),
        Err(ReplicaError::FencedLeaderEpoch)
    );
    assert!(matches!(
        p.read(0, 1024, FetchIsolation::HighWatermark, true, None),
        Err(ReplicaError::NotLeader)
    ));
}

/// Parks an acks=all waiter on the partition, as the replica manager does.
fn park_produce(
    purgatory: &Arc<Purgatory>,
    p: &Arc<Partition>,
    required: i64,
) -> tokio::task::JoinHandle<Option<Result<(), ReplicaError>>> {
    let watch = purgatory.watch([tp()], Interest::Produce);
    let p = p.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        watch
            .wait_until(deadline, || p.check_enough_replicas_reach_offset(required))
            .await
    })
}

#[tokio::test]
async fn the_follower_fetch_that_moves_the_high_watermark_completes_produce_waiters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_logs, p) = open(dir.path());
    let purgatory = Arc::new(Purgatory::default());
    assert!(p
        .make_leader(&state(LOCAL, 1, &[1, 2, 3]))
        .expect("make leader"));
    let (first, _) = p.append_as_leader(records(2), -1).expect("append");
    let (second, _) = p.append_as_leader(records(1), -1).expect("append");
    let waiters = [
        park_produce(&purgatory, &p, first.last_offset + 1),
        park_produce(&purgatory, &p, second.last_offset + 1),
    ];
    let leo = p.log().log_end_offset();
    for follower in [2, 3] {
        if follower_fetch(&p, follower, leo) {
            assert_eq!(purgatory.wake(&tp(), Event::HighWatermark), 2);
        }
    }
    assert_eq!(p.high_watermark(), leo);
    for w in waiters {
        let done = tokio::time::timeout(Duration::from_secs(10), w).await;
        assert!(matches!(done, Ok(Ok(Some(Ok(()))))), "{done:?}");
    }
    assert_eq!(purgatory.watchers(&tp()), 0);
}

#[tokio::test]
async fn losing_leadership_fails_the_parked_produce() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_logs, p) = open(dir.path());
    let purgatory = Arc::new(Purgatory::default());
    assert!(p
        .make_leader(&state(LOCAL, 1, &[1, 2, 3]))
        .expect("make leader"));
    let (info, _) = p.append_as_leader(records(1), -1).expect("append");
    let waiter = park_produce(&purgatory, &p, info.last_offset + 1);
    // An append without an HW move does not wake it.
    assert_eq!(purgatory.wake(&tp(), Event::Appended), 0);
    assert!(p.make_follower(&state(2, 2, &[2, 3])));
    assert_eq!(purgatory.wake(&tp(), Event::StateChanged), 1);
    let done = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert!(
        matches!(done, Ok(Ok(Some(Err(ReplicaError::NotLeader))))),
        "{done:?}"
    );
}
