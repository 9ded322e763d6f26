//! The replication rules as pure functions over plain values, so they can be unit-tested without a
//! log, a socket or a clock: the high-watermark rule, ISR expansion and time-based shrink,
//! `lastCaughtUpTime` bookkeeping, and the follower truncation rules of KIP-101/279
//! (reference §5). `Partition` and the fetcher call these with values read under their locks.

/// What a leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    pub id: i32,
    /// -1 until the follower has fetched in this leader epoch.
    pub log_end_offset: i64,
    pub last_caught_up_time_ms: i64,
}

/// Kafka's `maybeIncrementLeaderHW`: HW = min(leader LEO, LEO of each follower that is in the ISR
/// or caught up within `lag_max_ms`). A follower whose position is unknown (-1) counts as being
/// at the current HW, so it holds the HW where it is. The HW never decreases.
pub fn next_high_watermark(
    current_hw: i64,
    leader_leo: i64,
    isr: &[i32],
    followers: &[FollowerView],
    now_ms: i64,
    lag_max_ms: i64,
) -> i64 {
    let mut hw = leader_leo;
    for f in followers {
        let counts = isr.contains(&f.id) || now_ms - f.last_caught_up_time_ms <= lag_max_ms;
        if !counts {
            continue;
        }
        let leo = if f.log_end_offset < 0 {
            current_hw
        } else {
            f.log_end_offset
        };
        hw = hw.min(leo);
    }
    hw.max(current_hw)
}

/// Kafka's `Replica.updateFetchState` for `lastCaughtUpTimeMs`: a fetch at or past the leader's
/// current LEO means caught up now; a fetch at or past the LEO the leader had at the follower's
/// previous fetch means caught up as of that previous fetch.
pub fn last_caught_up_after_fetch(
    fetch_offset: i64,
    leader_leo: i64,
    now_ms: i64,
    previous: CaughtUpHistory,
) -> i64 {
    if fetch_offset >= leader_leo {
        now_ms.max(previous.last_caught_up_time_ms)
    } else if previous.last_fetch_leader_leo >= 0 && fetch_offset >= previous.last_fetch_leader_leo
    {
        previous
            .last_fetch_time_ms
            .max(previous.last_caught_up_time_ms)
    } else {
        previous.last_caught_up_time_ms
    }
}

/// The follower fetch history `last_caught_up_after_fetch` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUpHistory {
    pub last_caught_up_time_ms: i64,
    /// The leader's LEO at the follower's previous fetch; -1 if none.
    pub last_fetch_leader_leo: i64,
    pub last_fetch_time_ms: i64,
}

/// ISR expansion (Kafka's `isFollowerInSync` in `maybeExpandIsr`): a follower outside the ISR
/// joins once its LEO has reached the high watermark and the start offset of the current leader
/// epoch, so that it holds everything committed and everything this leader wrote.
pub fn can_join_isr(
    follower_leo: i64,
    high_watermark: i64,
    leader_epoch_start_offset: i64,
) -> bool {
    follower_leo >= 0 && follower_leo >= high_watermark && follower_leo >= leader_epoch_start_offset
}

/// ISR shrink (Kafka's `getOutOfSyncReplicas`): followers in the ISR whose LEO differs from the
/// leader's and that have not been caught up for more than `lag_max_ms`. Purely time-based.
pub fn out_of_sync_replicas(
    leader: i32,
    isr: &[i32],
    followers: &[FollowerView],
    leader_leo: i64,
    now_ms: i64,
    lag_max_ms: i64,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|id| *id != leader)
        .filter(|id| {
            followers.iter().find(|f| f.id == *id).is_some_and(|f| {
                f.log_end_offset != leader_leo && now_ms - f.last_caught_up_time_ms > lag_max_ms
            })
        })
        .collect()
}

/// The leader's answer to OffsetForLeaderEpoch for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// -1 when the leader knows no epoch ≤ the requested one above its cache.
    pub leader_epoch: i32,
    /// -1 (UNDEFINED) when the requested epoch is above every epoch the leader knows.
    pub end_offset: i64,
}

/// Where a follower truncates to, and whether it is done (`false`: truncate, then ask again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncationTarget {
    pub offset: i64,
    pub done: bool,
}

/// Kafka's `AbstractFetcherThread.getOffsetTruncationState` (KIP-101/279).
///
/// * `leader` — the leader's answer for the follower's latest epoch;
/// * `follower_end_for_leader_epoch` — the follower's own `endOffsetFor(leader.leader_epoch)`,
///   `None` when its cache has no epoch ≤ that one (Kafka's `endOffsetForEpoch` = None);
/// * `follower_leo`, `high_watermark` — the follower's log end and high watermark.
pub fn truncation_target(
    leader: EpochEndOffset,
    follower_end_for_leader_epoch: Option<(i32, i64)>,
    follower_leo: i64,
    high_watermark: i64,
) -> TruncationTarget {
    if leader.end_offset < 0 {
        // The leader does not know our epoch: fall back to the high watermark (pre-KIP-101).
        return TruncationTarget {
            offset: high_watermark.min(follower_leo),
            done: true,
        };
    }
    if leader.leader_epoch < 0 {
        // OffsetForLeaderEpoch v0 answers carry no epoch.
        return TruncationTarget {
            offset: leader.end_offset.min(follower_leo),
            done: true,
        };
    }
    match follower_end_for_leader_epoch {
        Some((epoch, end)) if epoch != leader.leader_epoch => TruncationTarget {
            // We never saw the leader's epoch: cut to the end of our largest earlier epoch and
            // ask again with that one (KIP-279).
            offset: end.min(follower_leo),
            done: false,
        },
        Some((_, end)) => TruncationTarget {
            offset: end.min(leader.end_offset).min(follower_leo),
            done: true,
        },
        None => TruncationTarget {
            offset: leader.end_offset.min(follower_leo),
            done: true,
        },
    }
}

/// What a follower does after OFFSET_OUT_OF_RANGE, given the leader's LEO and log start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRangeAction {
    /// The leader's log ends below ours (an unclean election): truncate to the leader's LEO.
    TruncateTo(i64),
    /// The leader's log starts above our LEO: drop everything and restart at its log start.
    StartAt(i64),
    /// Our LEO is within the leader's log after all (a race): fetch from it again.
    Resume(i64),
}

/// Kafka's `handleOutOfRangeError` / `fetchOffsetAndTruncate`.
pub fn out_of_range_action(
    leader_leo: i64,
    leader_log_start: i64,
    own_leo: i64,
) -> OutOfRangeAction {
    if leader_leo < own_leo {
        OutOfRangeAction::TruncateTo(leader_leo)
    } else if leader_log_start > own_leo {
        OutOfRangeAction::StartAt(leader_log_start)
    } else {
        OutOfRangeAction::Resume(own_leo)
    }
}

/// The current-leader-epoch check of Fetch v9+, ListOffsets v4+ and OffsetForLeaderEpoch v2+:
/// `Some(true)` fenced (request older), `Some(false)` unknown (request newer), `None` accepted
/// (equal, or -1 meaning "no check").
pub fn leader_epoch_mismatch(request_epoch: i32, local_epoch: i32) -> Option<bool> {
    if request_epoch < 0 || request_epoch == local_epoch {
        None
    } else {
        Some(request_epoch < local_epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i32, leo: i64, caught_up: i64) -> FollowerView {
        FollowerView {
            id,
            log_end_offset: leo,
            last_caught_up_time_ms: caught_up,
        }
    }

    #[test]
    fn hw_is_min_over_isr_and_never_decreases() {
        let fs = [f(2, 50, 0), f(3, 80, 0)];
        assert_eq!(
            next_high_watermark(10, 100, &[1, 2, 3], &fs, 100_000, 30_000),
            50
        );
        // A lagging ISR member cannot pull the HW back down.
        assert_eq!(
            next_high_watermark(60, 100, &[1, 2, 3], &fs, 100_000, 30_000),
            60
        );
        // Leader alone in the ISR, followers long out of touch: HW = leader LEO.
        assert_eq!(
            next_high_watermark(10, 100, &[1], &fs, 100_000, 30_000),
            100
        );
    }

    #[test]
    fn hw_waits_for_recently_caught_up_followers_outside_the_isr() {
        // Follower 2 left the ISR's view but caught up 1 s ago: it still holds the HW
        // (Kafka counts replicas caught up within the lag time so that one rejoining does not
        // miss committed data).
        let fs = [f(2, 40, 99_000)];
        assert_eq!(next_high_watermark(10, 100, &[1], &fs, 100_000, 30_000), 40);
    }

    #[test]
    fn unknown_follower_position_holds_the_hw() {
        let fs = [f(2, -1, 0)];
        assert_eq!(next_high_watermark(7, 100, &[1, 2], &fs, 1_000, 30_000), 7);
    }

    #[test]
    fn caught_up_time_rules() {
        let prev = CaughtUpHistory {
            last_caught_up_time_ms: 10,
            last_fetch_leader_leo: 50,
            last_fetch_time_ms: 20,
        };
        // At the leader's LEO: caught up now.
        assert_eq!(last_caught_up_after_fetch(100, 100, 30, prev), 30);
        // Past the LEO the leader had at the previous fetch: caught up as of that fetch.
        assert_eq!(last_caught_up_after_fetch(60, 100, 30, prev), 20);
        // Behind both: unchanged.
        assert_eq!(last_caught_up_after_fetch(40, 100, 30, prev), 10);
        // No previous fetch known: unchanged unless at the LEO.
        let first = CaughtUpHistory {
            last_caught_up_time_ms: 0,
            last_fetch_leader_leo: -1,
            last_fetch_time_ms: 0,
        };
        assert_eq!(last_caught_up_after_fetch(0, 100, 30, first), 0);
    }

    #[test]
    fn isr_expansion_needs_hw_and_epoch_start() {
        assert!(can_join_isr(100, 100, 90));
        assert!(!can_join_isr(99, 100, 90));
        // Caught up to the HW but not to where this leader's epoch began.
        assert!(!can_join_isr(100, 100, 120));
        assert!(!can_join_isr(-1, 0, 0));
    }

    #[test]
    fn isr_shrink_is_time_based() {
        let fs = [f(2, 100, 0), f(3, 90, 0), f(4, 90, 95_000)];
        // 2 is at the leader LEO (never out of sync), 3 lagged for 100 s, 4 caught up 5 s ago.
        assert_eq!(
            out_of_sync_replicas(1, &[1, 2, 3, 4], &fs, 100, 100_000, 30_000),
            vec![3]
        );
        // Replicas outside the ISR are not "shrunk" again.
        assert_eq!(
            out_of_sync_replicas(1, &[1, 2], &fs, 100, 100_000, 30_000),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn truncation_kip_101_cases() {
        let leader = |leader_epoch, end_offset| EpochEndOffset {
            leader_epoch,
            end_offset,
        };
        // Leader does not know the epoch: truncate to the HW.
        assert_eq!(
            truncation_target(leader(-1, -1), Some((3, 80)), 100, 70),
            TruncationTarget {
                offset: 70,
                done: true
            }
        );
        // Same epoch: the smaller of both ends and our LEO.
        assert_eq!(
            truncation_target(leader(3, 90), Some((3, 100)), 100, 70),
            TruncationTarget {
                offset: 90,
                done: true
            }
        );
        // KIP-101 divergence: leader's epoch 3 ended at 90 where ours went on to 100.
        assert_eq!(
            truncation_target(leader(3, 90), Some((3, 100)), 100, 0),
            TruncationTarget {
                offset: 90,
                done: true
            }
        );
        // We lack the leader's epoch 4 (our floor is 2, ending at 60): cut there and ask again.
        assert_eq!(
            truncation_target(leader(4, 90), Some((2, 60)), 100, 0),
            TruncationTarget {
                offset: 60,
                done: false
            }
        );
        // No epoch of ours at or below the leader's: take the leader's end.
        assert_eq!(
            truncation_target(leader(1, 40), None, 100, 0),
            TruncationTarget {
                offset: 40,
                done: true
            }
        );
        // Never above our own LEO.
        assert_eq!(
            truncation_target(leader(5, 500), Some((5, 500)), 100, 0),
            TruncationTarget {
                offset: 100,
                done: true
            }
        );
        // v0 answer (no epoch).
        assert_eq!(
            truncation_target(leader(-1, 55), Some((5, 500)), 100, 0),
            TruncationTarget {
                offset: 55,
                done: true
            }
        );
    }

    #[test]
    fn out_of_range_handling() {
        assert_eq!(
            out_of_range_action(50, 0, 80),
            OutOfRangeAction::TruncateTo(50)
        );
        assert_eq!(
            out_of_range_action(500, 300, 80),
            OutOfRangeAction::StartAt(300)
        );
        assert_eq!(
            out_of_range_action(500, 10, 80),
            OutOfRangeAction::Resume(80)
        );
    }

    #[test]
    fn leader_epoch_checks() {
        assert_eq!(leader_epoch_mismatch(-1, 5), None);
        assert_eq!(leader_epoch_mismatch(5, 5), None);
        assert_eq!(leader_epoch_mismatch(4, 5), Some(true));
        assert_eq!(leader_epoch_mismatch(6, 5), Some(false));
    }
}
