//! The fetch side of the [`ReplicaManager`] (Kafka's `ReplicaManager.fetchMessages` and
//! `DelayedFetch`): one read over a fetch's partitions, and the long poll that parks a fetch in
//! the purgatory until enough bytes, a new high watermark for a follower, or its deadline.
//! A follower's read also records its progress, which may move the high watermark.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::manager::ReplicaManager;
use super::partition::{FetchIsolation, Partition, PartitionRead};
use super::purgatory::{Event, Interest};
use super::ReplicaError;
use crate::log::TopicPartition;

/// How long a parked follower fetch whose only news is a new high watermark waits before it
/// answers with it, unless records arrive first: far below `replica.fetch.wait.max.ms` (500 ms),
/// which Kafka 2.8 followers wait out to learn it.
pub const HW_ONLY_ANSWER_DELAY: Duration = Duration::from_millis(10);

/// Request-level parameters of a Fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchParams {
    /// -1 for consumers; a broker id for followers.
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    /// 1 = read_committed (consumers only; followers always read to the LEO).
    pub isolation_level: i8,
}

/// One partition of a Fetch.
#[derive(Debug, Clone)]
pub struct FetchPartitionRequest {
    pub tp: TopicPartition,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// -1 = no check (Fetch < v9).
    pub current_leader_epoch: i32,
}

/// One partition's fetch outcome.
#[derive(Debug, Clone)]
pub struct FetchPartitionResult {
    pub tp: TopicPartition,
    pub result: Result<PartitionRead, FetchFailure>,
}

/// A failed partition read; carries the offsets a client still wants in the response.
#[derive(Debug, Clone)]
pub struct FetchFailure {
    pub error: ReplicaError,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One round of reads over a fetch's partitions.
struct ReadRound {
    results: Vec<FetchPartitionResult>,
    bytes: usize,
    any_error: bool,
    /// This round's own read moved a high watermark (the reader is a follower whose progress
    /// completed it): news the follower does not have yet.
    moved_hw: bool,
}

/// The high watermark a fetch result reports.
fn result_hw(r: &FetchPartitionResult) -> i64 {
    match &r.result {
        Ok(read) => read.high_watermark,
        Err(f) => f.high_watermark,
    }
}

impl ReplicaManager {
    /// Reads one partition; `reader` is the parked fetch doing the read, if any, which a high
    /// watermark its own offset moved does not wake. Sets `moved_hw` when this read moved it.
    fn read_one(
        &self,
        params: &FetchParams,
        req: &FetchPartitionRequest,
        max_bytes: usize,
        min_one_batch: bool,
        reader: Option<u64>,
        moved_hw: &mut bool,
    ) -> Result<PartitionRead, FetchFailure> {
        let fail = |error, p: Option<&Arc<Partition>>| FetchFailure {
            error,
            high_watermark: p.map(|p| p.high_watermark()).unwrap_or(-1),
            log_start_offset: p.map(|p| p.log().log_start_offset()).unwrap_or(-1),
        };
        let Some(p) = self.partition(&req.tp) else {
            return Err(fail(self.missing_partition_error(&req.tp), None));
        };
        if req.current_leader_epoch >= 0 {
            let local = p.leader_epoch();
            if req.current_leader_epoch < local {
                return Err(fail(ReplicaError::FencedLeaderEpoch, Some(&p)));
            }
            if req.current_leader_epoch > local {
                return Err(fail(ReplicaError::UnknownLeaderEpoch, Some(&p)));
            }
        }
        let (isolation, follower) = if params.replica_id >= 0 {
            (FetchIsolation::LogEnd, Some(params.replica_id))
        } else if params.isolation_level == 1 {
            (FetchIsolation::TxnCommitted, None)
        } else {
            (FetchIsolation::HighWatermark, None)
        };
        match p.read(
            req.fetch_offset,
            max_bytes,
            isolation,
            min_one_batch,
            follower,
        ) {
            Ok((read, moved, proposal)) => {
                if moved {
                    *moved_hw = true;
                    // This follower's progress moved the HW: acks=all waiters, consumers and
                    // the other followers' parked fetches of the partition complete now.
                    self.inner
                        .purgatory
                        .wake_except(&req.tp, Event::HighWatermark, reader);
                }
                if let Some(proposal) = proposal {
                    self.submit_isr(p.clone(), proposal);
                }
                Ok(read)
            }
            Err(e) => Err(fail(e, Some(&p))),
        }
    }

    /// Reads every partition once, sharing the response budget.
    fn read_all(
        &self,
        params: &FetchParams,
        partitions: &[FetchPartitionRequest],
        reader: Option<u64>,
    ) -> ReadRound {
        let mut budget = params.max_bytes.max(0) as usize;
        let mut round = ReadRound {
            results: Vec::with_capacity(partitions.len()),
            bytes: 0,
            any_error: false,
            moved_hw: false,
        };
        for req in partitions {
            let limit = (req.partition_max_bytes.max(0) as usize).min(budget);
            // Kafka returns the first batch of the first non-empty partition whole, even above
            // the limits, so a consumer can always make progress.
            let r = self.read_one(
                params,
                req,
                limit,
                round.bytes == 0,
                reader,
                &mut round.moved_hw,
            );
            match &r {
                Ok(read) => {
                    round.bytes += read.info.records.len();
                    budget = budget.saturating_sub(read.info.records.len());
                }
                Err(_) => round.any_error = true,
            }
            round.results.push(FetchPartitionResult {
                tp: req.tp.clone(),
                result: r,
            });
        }
        round
    }

    /// The fetch path: read every partition; answer at once if `max_wait_ms <= 0`, on an error, or
    /// once `min_bytes` are available; otherwise park (Kafka's `DelayedFetch`) on the partitions
    /// until `max_wait_ms`. A follower's fetch also completes when the high watermark of one of its
    /// partitions moves (after [`HW_ONLY_ANSWER_DELAY`]), so followers learn it without waiting
    /// out `replica.fetch.wait.max.ms`.
    pub async fn fetch(
        &self,
        params: FetchParams,
        partitions: Vec<FetchPartitionRequest>,
    ) -> Vec<FetchPartitionResult> {
        if params.max_wait_ms <= 0 || partitions.is_empty() {
            return self.read_all(&params, &partitions, None).results;
        }
        let follower = params.replica_id >= 0;
        let interest = if follower {
            Interest::FollowerFetch
        } else {
            Interest::ConsumerFetch
        };
        // Watch before the first read so that a change racing it still wakes this fetch.
        let watch = self
            .inner
            .purgatory
            .watch(partitions.iter().map(|p| p.tp.clone()), interest);
        let deadline = Instant::now() + Duration::from_millis(params.max_wait_ms as u64);
        let min_bytes = params.min_bytes.max(0) as usize;
        let mut first_hws: Option<Vec<i64>> = None;
        let completed = watch
            .wait_until(deadline, || {
                let round = self.read_all(&params, &partitions, Some(watch.id()));
                let hws: Vec<i64> = round.results.iter().map(result_hw).collect();
                // News for a follower: a high watermark its own progress moved (it fetched
                // last), or one that moved while it was parked (another follower's progress).
                let hw_news = follower
                    && (round.moved_hw
                        || first_hws.as_ref().is_some_and(|first| {
                            hws.iter().zip(first).any(|(now, was)| now > was)
                        }));
                first_hws.get_or_insert(hws);
                let done = round.any_error || round.bytes >= min_bytes;
                (done || hw_news).then_some((round.results, !done))
            })
            .await;
        match completed {
            Some((results, false)) => results,
            Some((_, true)) => {
                // A new high watermark also completes the consumers and the acks=all producers
                // waiting for it, and their answers end produce-to-consume paths. Answering this
                // one at once would add a follower's wake-up and its next fetch beside them on
                // the same cores, once per append. A moment later the follower either still
                // needs the number (it gets it then) or new records arrived meanwhile (they
                // carry it, and the extra round trip is saved).
                let until = deadline.min(Instant::now() + HW_ONLY_ANSWER_DELAY);
                // The read that found only the new high watermark has just run: the first check
                // waits for a wake-up (a change since then left a permit) instead of reading
                // every partition of the session again in the middle of that wake-up.
                let mut just_read = true;
                let with_records = watch
                    .wait_until(until, || {
                        if std::mem::take(&mut just_read) {
                            return None;
                        }
                        let round = self.read_all(&params, &partitions, Some(watch.id()));
                        (round.any_error || round.bytes >= min_bytes).then_some(round.results)
                    })
                    .await;
                with_records.unwrap_or_else(|| {
                    self.read_all(&params, &partitions, Some(watch.id()))
                        .results
                })
            }
            // Expired: one last read answers the request.
            None => {
                self.read_all(&params, &partitions, Some(watch.id()))
                    .results
            }
        }
    }
}
