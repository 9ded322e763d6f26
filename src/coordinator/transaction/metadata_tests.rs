//! The transaction state machine against Kafka 2.8's rules (`TransactionMetadataTest`):
//! the valid-previous-state table, epoch bumps and their retries, fencing, the pending state
//! that blocks a second transition, and that an illegal transition is refused and changes
//! nothing.

use std::collections::BTreeSet;

use super::metadata::{TransitionError, TxnMetadata, TxnState};
use crate::log::TopicPartition;

fn fresh() -> TxnMetadata {
    TxnMetadata::new("tx", 7, 60_000, 1)
}

fn tps(n: i32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| TopicPartition::new("t", p)).collect()
}

/// Prepares and completes, as a successful write does.
fn commit(t: &mut TxnMetadata, transit: super::metadata::TxnTransit) {
    t.complete(&transit).expect("complete");
}

#[test]
fn the_first_init_gives_epoch_zero_and_a_retry_keeps_it() {
    let mut t = fresh();
    let tr = t.prepare_increment_epoch(60_000, None, 2).unwrap().unwrap();
    assert_eq!(
        (tr.producer_epoch, tr.last_producer_epoch, tr.state),
        (0, -1, TxnState::Empty)
    );
    commit(&mut t, tr);
    // KIP-360: the producer asks again with its current (pid, epoch): bump, remembering it.
    let tr = t
        .prepare_increment_epoch(60_000, Some(0), 3)
        .unwrap()
        .unwrap();
    assert_eq!((tr.producer_epoch, tr.last_producer_epoch), (1, 0));
    commit(&mut t, tr);
    // Its retry (the answer was lost) names the previous epoch: same epoch, no bump.
    let tr = t
        .prepare_increment_epoch(60_000, Some(0), 4)
        .unwrap()
        .unwrap();
    assert_eq!((tr.producer_epoch, tr.last_producer_epoch), (1, 0));
    t.abort_pending();
    // Any other expected epoch is fenced.
    assert_eq!(t.prepare_increment_epoch(60_000, Some(5), 4), Ok(None));
    assert_eq!(t.pending, None, "a refusal leaves nothing pending");
}

#[test]
fn a_transaction_goes_ongoing_prepare_complete() {
    let mut t = fresh();
    let tr = t.prepare_increment_epoch(60_000, None, 2).unwrap().unwrap();
    commit(&mut t, tr);
    let tr = t.prepare_add_partitions(&tps(2), 10).unwrap();
    assert_eq!(
        (tr.state, tr.start_ms, tr.partitions.len()),
        (TxnState::Ongoing, 10, 2)
    );
    commit(&mut t, tr);
    // More partitions keep the start time and take the union.
    let tr = t.prepare_add_partitions(&tps(3), 20).unwrap();
    assert_eq!((tr.start_ms, tr.partitions.len()), (10, 3));
    commit(&mut t, tr);
    let tr = t.prepare_end(true, 30, None).unwrap();
    assert_eq!(tr.state, TxnState::PrepareCommit);
    assert_eq!(
        tr.partitions.len(),
        3,
        "the prepare keeps the partitions for the markers"
    );
    commit(&mut t, tr);
    let tr = t.prepare_complete(40).unwrap();
    assert_eq!(
        (tr.state, tr.partitions.len()),
        (TxnState::CompleteCommit, 0)
    );
    commit(&mut t, tr);
    // The next transaction starts afresh.
    let tr = t.prepare_add_partitions(&tps(1), 50).unwrap();
    assert_eq!((tr.state, tr.start_ms), (TxnState::Ongoing, 50));
}

#[test]
fn a_pending_transition_blocks_the_next_and_illegal_ones_change_nothing() {
    let mut t = fresh();
    let tr = t.prepare_increment_epoch(60_000, None, 2).unwrap().unwrap();
    assert!(matches!(
        t.prepare_add_partitions(&tps(1), 3),
        Err(TransitionError::Pending { .. })
    ));
    commit(&mut t, tr);
    let before = t.clone();
    // Empty cannot go to PrepareCommit or CompleteAbort.
    assert!(matches!(
        t.prepare_end(true, 3, None),
        Err(TransitionError::Illegal { .. })
    ));
    assert!(matches!(
        t.prepare_complete(3),
        Err(TransitionError::Illegal { .. })
    ));
    assert_eq!(
        t, before,
        "a refused transition leaves the metadata as it was"
    );
    // Completing what was never prepared is refused too.
    let bogus = super::metadata::TxnTransit {
        state: TxnState::Ongoing,
        ..t.current()
    };
    assert!(matches!(
        t.complete(&bogus),
        Err(TransitionError::NotPending { .. })
    ));
}

#[test]
fn fencing_bumps_the_epoch_once_and_the_abort_carries_it() {
    let mut t = fresh();
    let tr = t.prepare_increment_epoch(60_000, None, 2).unwrap().unwrap();
    commit(&mut t, tr);
    let tr = t.prepare_add_partitions(&tps(2), 3).unwrap();
    commit(&mut t, tr);
    let fence = t.prepare_fence().unwrap();
    assert_eq!(
        (fence.state, fence.producer_epoch),
        (TxnState::PrepareEpochFence, 1)
    );
    assert_eq!(
        t.producer_epoch, 0,
        "the fence is not applied before the abort is written"
    );
    let abort = t.prepare_end(false, 4, Some(fence.producer_epoch)).unwrap();
    assert_eq!(
        (abort.state, abort.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
    // The abort's write fails: the next fence must not bump again.
    t.abort_pending();
    t.failed_epoch_fence = true;
    assert_eq!(t.prepare_fence().unwrap().producer_epoch, 1);
}

#[test]
fn the_valid_previous_states_are_kafkas() {
    use TxnState::*;
    let all = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];
    let allowed = |to: TxnState| -> Vec<TxnState> {
        all.iter()
            .copied()
            .filter(|f| to.valid_previous().contains(f))
            .collect()
    };
    assert_eq!(allowed(Empty), vec![Empty, CompleteCommit, CompleteAbort]);
    assert_eq!(
        allowed(Ongoing),
        vec![Empty, Ongoing, CompleteCommit, CompleteAbort]
    );
    assert_eq!(allowed(PrepareCommit), vec![Ongoing]);
    assert_eq!(allowed(PrepareAbort), vec![Ongoing, PrepareEpochFence]);
    assert_eq!(allowed(CompleteCommit), vec![PrepareCommit]);
    assert_eq!(allowed(CompleteAbort), vec![PrepareAbort]);
    assert_eq!(allowed(Dead), vec![Empty, CompleteCommit, CompleteAbort]);
    assert_eq!(allowed(PrepareEpochFence), vec![Ongoing]);
    for s in all {
        assert_eq!(TxnState::from_id(s.id()), Some(s));
    }
    assert_eq!(TxnState::from_id(8), None);
}

#[test]
fn an_exhausted_epoch_rotates_to_a_new_producer_id() {
    let mut t = fresh();
    t.producer_epoch = super::metadata::EPOCH_EXHAUSTED;
    assert!(t.is_epoch_exhausted());
    let tr = t.prepare_producer_id_rotation(99, 60_000, 5, true).unwrap();
    assert_eq!(
        (
            tr.producer_id,
            tr.producer_epoch,
            tr.last_producer_id,
            tr.last_producer_epoch
        ),
        (99, 0, 7, super::metadata::EPOCH_EXHAUSTED)
    );
}
