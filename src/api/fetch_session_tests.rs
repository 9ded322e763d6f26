//! Tests of the fetch-session rules: which requests open, use and close a session, which
//! partitions an incremental response carries, the epoch checks and the eviction order.

use std::time::Duration;

use super::*;

fn part(p: i32, offset: i64) -> FetchPartitionRequest {
    FetchPartitionRequest {
        tp: TopicPartition::new("t", p),
        fetch_offset: offset,
        partition_max_bytes: 1 << 20,
        current_leader_epoch: 0,
    }
}

fn quiet(hw: i64) -> Outcome {
    Outcome {
        has_records: false,
        error: false,
        high_watermark: hw,
        log_start_offset: 0,
    }
}

fn with_records(hw: i64) -> Outcome {
    Outcome {
        has_records: true,
        ..quiet(hw)
    }
}

fn failed() -> Outcome {
    Outcome {
        error: true,
        ..quiet(-1)
    }
}

fn request(
    session_id: i32,
    epoch: i32,
    partitions: Vec<FetchPartitionRequest>,
) -> SessionRequest<'static> {
    SessionRequest {
        session_id,
        epoch,
        partitions,
        forgotten: &[],
        follower: true,
    }
}

/// Opens a session over partitions 0..n (all at high watermark 10) and returns its id.
fn open(cache: &FetchSessionCache, n: i32, follower: bool) -> i32 {
    let mut req = request(0, INITIAL_EPOCH, (0..n).map(|p| part(p, 10)).collect());
    req.follower = follower;
    let (ctx, reads) = cache.new_context(req);
    assert_eq!(reads.len(), n as usize);
    let outcomes: Vec<Outcome> = reads.iter().map(|_| quiet(10)).collect();
    let answer = cache.respond(ctx, &outcomes);
    assert_eq!(answer.error, None);
    assert_eq!(
        answer.include.len(),
        n as usize,
        "a full fetch answers every partition"
    );
    answer.session_id
}

fn partitions_of(reads: &[FetchPartitionRequest]) -> Vec<i32> {
    reads.iter().map(|r| r.tp.partition).collect()
}

#[test]
fn a_full_fetch_opens_a_session_and_an_incremental_one_answers_only_changes() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 3, true);
    assert_ne!(id, NO_SESSION);

    // Epoch 1 lists nothing, yet reads every partition of the session.
    let (ctx, reads) = cache.new_context(request(id, 1, vec![]));
    assert_eq!(partitions_of(&reads), vec![0, 1, 2]);
    let answer = cache.respond(ctx, &[quiet(10), quiet(11), quiet(10)]);
    assert_eq!(answer.error, None);
    assert_eq!(answer.session_id, id);
    assert_eq!(
        answer.include,
        vec![1],
        "only the moved high watermark is news"
    );

    // Told once, the new high watermark is not news again.
    let (ctx, _) = cache.new_context(request(id, 2, vec![]));
    let answer = cache.respond(ctx, &[quiet(10), quiet(11), quiet(10)]);
    assert!(answer.include.is_empty());
}

#[test]
fn an_incremental_request_updates_the_offsets_it_lists() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 2, true);
    let (ctx, reads) = cache.new_context(request(id, 1, vec![part(1, 42)]));
    assert_eq!(
        reads.iter().map(|r| r.fetch_offset).collect::<Vec<_>>(),
        vec![10, 42]
    );
    cache.respond(ctx, &[quiet(10), quiet(10)]);
    // A partition the session did not hold is added at the end.
    let (_, reads) = cache.new_context(request(id, 2, vec![part(7, 0)]));
    assert_eq!(partitions_of(&reads), vec![0, 1, 7]);
}

#[test]
fn partitions_that_returned_records_move_to_the_end() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 3, true);
    let (ctx, _) = cache.new_context(request(id, 1, vec![]));
    let answer = cache.respond(ctx, &[with_records(10), quiet(10), quiet(10)]);
    assert_eq!(answer.include, vec![0]);
    let (_, reads) = cache.new_context(request(id, 2, vec![]));
    assert_eq!(partitions_of(&reads), vec![1, 2, 0]);
}

#[test]
fn an_error_is_always_sent_and_the_partition_is_sent_again_when_it_clears() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 2, true);
    for epoch in 1..=2 {
        let (ctx, _) = cache.new_context(request(id, epoch, vec![]));
        let answer = cache.respond(ctx, &[failed(), quiet(10)]);
        assert_eq!(answer.include, vec![0], "epoch {epoch}");
    }
    // The high watermark is the same as before the error, but the client last saw an error.
    let (ctx, _) = cache.new_context(request(id, 3, vec![]));
    assert_eq!(cache.respond(ctx, &[quiet(10), quiet(10)]).include, vec![0]);
}

#[test]
fn a_log_start_offset_move_is_news() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 1, true);
    let (ctx, _) = cache.new_context(request(id, 1, vec![]));
    let moved = Outcome {
        log_start_offset: 5,
        ..quiet(10)
    };
    assert_eq!(cache.respond(ctx, &[moved]).include, vec![0]);
}

#[test]
fn a_wrong_epoch_or_an_unknown_session_is_refused_before_any_read() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 2, true);
    let (ctx, reads) = cache.new_context(request(id, 5, vec![]));
    assert!(matches!(
        ctx,
        FetchContext::Error(SessionError::InvalidEpoch)
    ));
    assert!(reads.is_empty());
    let answer = cache.respond(ctx, &[]);
    assert_eq!(answer.error.map(SessionError::code), Some(71));
    assert!(answer.include.is_empty());

    let (ctx, reads) = cache.new_context(request(id.wrapping_add(1).max(1), 1, vec![]));
    assert!(matches!(ctx, FetchContext::Error(SessionError::NotFound)));
    assert!(reads.is_empty());
    assert_eq!(
        cache.respond(ctx, &[]).error.map(SessionError::code),
        Some(70)
    );
    // The refused requests did not move the session: epoch 1 still works.
    let (ctx, _) = cache.new_context(request(id, 1, vec![]));
    assert!(matches!(ctx, FetchContext::Incremental { .. }));
}

#[test]
fn a_duplicate_request_for_one_epoch_gets_the_epoch_error_when_answered() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 1, true);
    let (first, _) = cache.new_context(request(id, 1, vec![]));
    // A second request raced the first and already moved the session on.
    let (second, _) = cache.new_context(request(id, 2, vec![]));
    assert_eq!(
        cache.respond(first, &[quiet(10)]).error,
        Some(SessionError::InvalidEpoch)
    );
    assert_eq!(cache.respond(second, &[quiet(10)]).error, None);
}

#[test]
fn forgetting_every_partition_closes_the_session() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 2, true);
    let forgotten = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let (ctx, reads) = cache.new_context(SessionRequest {
        forgotten: &forgotten,
        ..request(id, 1, vec![])
    });
    assert!(matches!(ctx, FetchContext::Sessionless));
    assert!(reads.is_empty());
    assert!(cache.is_empty());
}

#[test]
fn forgotten_partitions_leave_the_session() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 3, true);
    let forgotten = [TopicPartition::new("t", 1)];
    let (ctx, reads) = cache.new_context(SessionRequest {
        forgotten: &forgotten,
        ..request(id, 1, vec![])
    });
    assert_eq!(partitions_of(&reads), vec![0, 2]);
    cache.respond(ctx, &[quiet(10), quiet(10)]);
    // A forgotten partition listed again comes back as new (sent in full on the next answer).
    let (ctx, reads) = cache.new_context(request(id, 2, vec![part(1, 10)]));
    assert_eq!(partitions_of(&reads), vec![0, 2, 1]);
    assert_eq!(
        cache
            .respond(ctx, &[quiet(10), quiet(10), quiet(10)])
            .include,
        vec![2]
    );
}

#[test]
fn a_full_fetch_closes_the_session_it_names_and_the_final_epoch_opens_none() {
    let cache = FetchSessionCache::new(10);
    let id = open(&cache, 1, true);
    let (ctx, _) = cache.new_context(request(id, FINAL_EPOCH, vec![part(0, 10)]));
    assert!(matches!(ctx, FetchContext::Sessionless));
    let answer = cache.respond(ctx, &[quiet(10)]);
    assert_eq!(answer.session_id, NO_SESSION);
    assert_eq!(answer.include, vec![0]);
    assert!(cache.is_empty());

    let id = open(&cache, 1, true);
    let (ctx, _) = cache.new_context(request(id, INITIAL_EPOCH, vec![part(0, 10)]));
    let replaced = cache.respond(ctx, &[quiet(10)]).session_id;
    assert_ne!(replaced, NO_SESSION);
    assert_ne!(replaced, id);
    assert_eq!(cache.len(), 1, "the named session was closed");
}

#[test]
fn no_session_without_slots_or_partitions() {
    let cache = FetchSessionCache::new(0);
    assert_eq!(open(&cache, 2, true), NO_SESSION);
    let cache = FetchSessionCache::new(10);
    assert_eq!(open(&cache, 0, true), NO_SESSION);
    assert!(cache.is_empty());
}

#[test]
fn a_full_cache_admits_a_follower_over_a_consumer_but_not_a_consumer_over_anyone_fresh() {
    let cache = FetchSessionCache::new(2);
    let consumer = open(&cache, 5, false);
    let follower = open(&cache, 1, true);
    assert_ne!(consumer, NO_SESSION);
    assert_ne!(follower, NO_SESSION);
    // Both sessions are fresh: a consumer cannot evict either.
    assert_eq!(open(&cache, 50, false), NO_SESSION);
    // A follower evicts the consumer's session, however large.
    let second_follower = open(&cache, 1, true);
    assert_ne!(second_follower, NO_SESSION);
    let (ctx, _) = cache.new_context(request(consumer, 1, vec![]));
    assert!(matches!(ctx, FetchContext::Error(SessionError::NotFound)));
    let (ctx, _) = cache.new_context(request(follower, 1, vec![]));
    assert!(matches!(ctx, FetchContext::Incremental { .. }));
    // Only fresh followers' sessions are left: a third follower finds none it may evict.
    assert_eq!(open(&cache, 1, true), NO_SESSION);
}

#[test]
fn a_stale_session_is_evicted_first() {
    let cache = FetchSessionCache::with_eviction_age(1, Duration::ZERO);
    let old = open(&cache, 10, true);
    std::thread::sleep(Duration::from_millis(2));
    // A small consumer session takes the place of the unused follower session.
    let new = open(&cache, 1, false);
    assert_ne!(new, NO_SESSION);
    let (ctx, _) = cache.new_context(request(old, 1, vec![]));
    assert!(matches!(ctx, FetchContext::Error(SessionError::NotFound)));
}

#[test]
fn epochs_wrap_to_one_and_stay_final_once_final() {
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(-1), -1);
}
