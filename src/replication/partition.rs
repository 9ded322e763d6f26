//! One partition replica on this broker: its role (leader or follower), leader epoch, ISR and high
//! watermark, over its [`Log`]. Mirrors Kafka's `cluster/Partition.scala`.
//!
//! All state sits behind one std `Mutex` that is never held across an `.await`; the log has its own
//! lock, so a long read never blocks a role change for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::rules::{self, CaughtUpHistory, FollowerView};
use super::ReplicaError;
use crate::log::{AbortedTxn, AppendInfo, AppendOrigin, Log, ReadInfo, TopicPartition};

/// What the controller said about this partition in LeaderAndIsr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsrState {
    pub controller_epoch: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub zk_version: i32,
    pub replicas: Vec<i32>,
    pub is_new: bool,
}

/// What the leader knows about one follower (reference §5).
#[derive(Debug, Clone, Copy)]
struct FollowerState {
    /// The follower's LEO, learned from its last fetch offset; -1 until it fetches.
    log_end_offset: i64,
    last_caught_up_time_ms: i64,
    last_fetch_leader_log_end_offset: i64,
    last_fetch_time_ms: i64,
}

impl FollowerState {
    fn fresh(caught_up: i64) -> Self {
        Self {
            log_end_offset: -1,
            last_caught_up_time_ms: caught_up,
            last_fetch_leader_log_end_offset: -1,
            last_fetch_time_ms: 0,
        }
    }
}

#[derive(Debug)]
struct State {
    leader: i32,
    leader_epoch: i32,
    isr: Vec<i32>,
    replicas: Vec<i32>,
    zk_version: i32,
    controller_epoch: i32,
    high_watermark: i64,
    /// The LEO when this broker became leader for the current epoch (KIP-101).
    leader_epoch_start_offset: i64,
    followers: HashMap<i32, FollowerState>,
    /// A leader's ISR write to ZooKeeper is in flight; no other is proposed meanwhile.
    isr_update_in_flight: bool,
}

/// A leader's proposed ISR change, written to the state znode by the replica manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub controller_epoch: i32,
    /// The state znode version the write is conditional on.
    pub zk_version: i32,
}

/// How a proposed ISR write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrWriteOutcome {
    /// Written (or found already in place) at this znode version.
    Written(i32),
    /// The state changed underneath (the controller moved it): keep the old ISR.
    Rejected,
}

/// Where a read comes from: a read_uncommitted consumer sees up to the high watermark, a
/// read_committed one up to the last stable offset, a follower up to the LEO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    HighWatermark,
    TxnCommitted,
    LogEnd,
}

/// The result of reading one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub info: ReadInfo,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// For read_committed: the aborted transactions the consumer must drop (maybe none).
    pub aborted: Option<Vec<AbortedTxn>>,
}

/// A partition replica hosted by this broker.
pub struct Partition {
    tp: TopicPartition,
    local_broker: i32,
    log: Arc<Log>,
    /// `replica.lag.time.max.ms`: the HW and ISR-shrink horizon.
    lag_max_ms: i64,
    state: Mutex<State>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Partition {
    /// A replica with no role yet (leader epoch -1, so any LeaderAndIsr is newer).
    pub fn new(tp: TopicPartition, local_broker: i32, log: Arc<Log>, lag_max_ms: i64) -> Self {
        Self {
            tp,
            local_broker,
            log,
            lag_max_ms,
            state: Mutex::new(State {
                leader: -1,
                leader_epoch: -1,
                isr: Vec::new(),
                replicas: Vec::new(),
                zk_version: -1,
                controller_epoch: -1,
                high_watermark: 0,
                leader_epoch_start_offset: -1,
                followers: HashMap::new(),
                isr_update_in_flight: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section below leaves State consistent before it can panic, so a
        // poisoned lock still holds a usable value.
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state().leader_epoch
    }

    pub fn leader_id(&self) -> i32 {
        self.state().leader
    }

    pub fn is_leader(&self) -> bool {
        self.state().leader == self.local_broker
    }

    pub fn isr(&self) -> Vec<i32> {
        self.state().isr.clone()
    }

    pub fn high_watermark(&self) -> i64 {
        self.state().high_watermark
    }

    /// Seeds the high watermark from a checkpoint, never above the LEO.
    pub fn set_initial_high_watermark(&self, hw: i64) {
        let leo = self.log.log_end_offset();
        self.state().high_watermark = hw.clamp(self.log.log_start_offset(), leo);
    }

    /// Becomes leader (reference §4 "Become leader"). Returns false if the request's epoch is not
    /// newer than ours, in which case nothing changes.
    pub fn make_leader(&self, s: &LeaderAndIsrState) -> Result<bool, ReplicaError> {
        let mut st = self.state();
        if s.leader_epoch <= st.leader_epoch {
            return Ok(false);
        }
        let leo = self.log.log_end_offset();
        self.log
            .assign_epoch_start_offset(s.leader_epoch, leo)
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        let now = now_ms();
        st.leader = self.local_broker;
        st.leader_epoch = s.leader_epoch;
        st.isr = s.isr.clone();
        st.replicas = s.replicas.clone();
        st.zk_version = s.zk_version;
        st.controller_epoch = s.controller_epoch;
        st.leader_epoch_start_offset = leo;
        st.isr_update_in_flight = false;
        st.followers = s
            .replicas
            .iter()
            .filter(|r| **r != self.local_broker)
            .map(|r| {
                let caught_up = if s.isr.contains(r) { now } else { 0 };
                (*r, FollowerState::fresh(caught_up))
            })
            .collect();
        if st.high_watermark > leo {
            st.high_watermark = leo;
        }
        self.maybe_increment_hw(&mut st, leo, now);
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
            epoch = s.leader_epoch, isr = ?s.isr, leo, hw = st.high_watermark, "became leader");
        Ok(true)
    }

    /// Becomes a follower of `s.leader`. Returns false if the epoch is not newer.
    pub fn make_follower(&self, s: &LeaderAndIsrState) -> bool {
        let mut st = self.state();
        if s.leader_epoch <= st.leader_epoch {
            return false;
        }
        st.leader = s.leader;
        st.leader_epoch = s.leader_epoch;
        // Followers do not track the ISR (reference §4).
        st.isr.clear();
        st.replicas = s.replicas.clone();
        st.zk_version = s.zk_version;
        st.controller_epoch = s.controller_epoch;
        st.followers.clear();
        st.isr_update_in_flight = false;
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
            epoch = s.leader_epoch, leader = s.leader, hw = st.high_watermark, "became follower");
        true
    }

    fn follower_views(st: &State) -> Vec<FollowerView> {
        st.followers
            .iter()
            .map(|(id, f)| FollowerView {
                id: *id,
                log_end_offset: f.log_end_offset,
                last_caught_up_time_ms: f.last_caught_up_time_ms,
            })
            .collect()
    }

    /// Applies the HW rule (see [`rules::next_high_watermark`]); true if the HW moved.
    fn maybe_increment_hw(&self, st: &mut State, leader_leo: i64, now: i64) -> bool {
        let views = Self::follower_views(st);
        let new_hw = rules::next_high_watermark(
            st.high_watermark,
            leader_leo,
            &st.isr,
            &views,
            now,
            self.lag_max_ms,
        );
        if new_hw > st.high_watermark {
            st.high_watermark = new_hw;
            self.log.on_high_watermark_updated(new_hw);
            true
        } else {
            false
        }
    }

    /// Leader append of one validated batch. `min_isr` applies only when `acks == -1`.
    ///
    /// # Errors
    /// Not the leader, ISR below `min.insync.replicas` for acks=all, or a log failure.
    pub fn append_as_leader(
        &self,
        batch: Bytes,
        acks: i16,
    ) -> Result<(AppendInfo, bool), ReplicaError> {
        self.append_from(batch, acks, AppendOrigin::Client)
    }

    /// [`Self::append_as_leader`] for a batch from `origin` (a coordinator's marker or
    /// transactional offset commit).
    ///
    /// # Errors
    /// As [`Self::append_as_leader`].
    pub fn append_from(
        &self,
        batch: Bytes,
        acks: i16,
        origin: AppendOrigin,
    ) -> Result<(AppendInfo, bool), ReplicaError> {
        // The state lock is held across the log append so that a leader change cannot slip between
        // the role check and the write (Kafka holds leaderIsrUpdateLock's read side here).
        let mut st = self.state();
        if st.leader != self.local_broker {
            return Err(ReplicaError::NotLeader);
        }
        let min_isr = self.log.config().min_insync_replicas;
        if acks == -1 && (st.isr.len() as i32) < min_isr {
            return Err(ReplicaError::NotEnoughReplicas {
                isr: st.isr.len(),
                min_isr,
            });
        }
        let info = self
            .log
            .append_from(batch, st.leader_epoch, origin)
            .map_err(ReplicaError::from_log)?;
        let leo = self.log.log_end_offset();
        let hw_moved = self.maybe_increment_hw(&mut st, leo, now_ms());
        Ok((info, hw_moved))
    }

    /// Whether an acks=all append up to `required_offset` (last offset + 1) is done:
    /// `Some(Ok)` when the HW passed it, `Some(Err)` when it can no longer succeed, `None` to wait.
    pub fn check_enough_replicas_reach_offset(
        &self,
        required_offset: i64,
    ) -> Option<Result<(), ReplicaError>> {
        let st = self.state();
        if st.leader != self.local_broker {
            return Some(Err(ReplicaError::NotLeader));
        }
        if st.high_watermark >= required_offset {
            let min_isr = self.log.config().min_insync_replicas;
            if (st.isr.len() as i32) >= min_isr {
                Some(Ok(()))
            } else {
                Some(Err(ReplicaError::NotEnoughReplicasAfterAppend {
                    isr: st.isr.len(),
                    min_isr,
                }))
            }
        } else {
            None
        }
    }

    /// Records a follower's fetch at `offset` (Kafka's `updateFollowerFetchState`): its LEO,
    /// `lastCaughtUpTime`, then maybe an ISR expansion and an HW move.
    fn update_follower(
        &self,
        st: &mut State,
        follower: i32,
        offset: i64,
    ) -> (bool, Option<IsrProposal>) {
        let leo = self.log.log_end_offset();
        let now = now_ms();
        let Some(fs) = st.followers.get_mut(&follower) else {
            return (false, None);
        };
        fs.last_caught_up_time_ms = rules::last_caught_up_after_fetch(
            offset,
            leo,
            now,
            CaughtUpHistory {
                last_caught_up_time_ms: fs.last_caught_up_time_ms,
                last_fetch_leader_leo: fs.last_fetch_leader_log_end_offset,
                last_fetch_time_ms: fs.last_fetch_time_ms,
            },
        );
        fs.log_end_offset = offset;
        fs.last_fetch_leader_log_end_offset = leo;
        fs.last_fetch_time_ms = now;
        let proposal = if !st.isr.contains(&follower)
            && !st.isr_update_in_flight
            && rules::can_join_isr(offset, st.high_watermark, st.leader_epoch_start_offset)
        {
            let mut isr = st.isr.clone();
            isr.push(follower);
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
                epoch = st.leader_epoch, follower, isr = ?isr, "expanding ISR");
            Some(self.propose(st, isr))
        } else {
            None
        };
        (self.maybe_increment_hw(st, leo, now), proposal)
    }

    fn propose(&self, st: &mut State, isr: Vec<i32>) -> IsrProposal {
        st.isr_update_in_flight = true;
        IsrProposal {
            leader: self.local_broker,
            leader_epoch: st.leader_epoch,
            isr,
            controller_epoch: st.controller_epoch,
            zk_version: st.zk_version,
        }
    }

    /// The periodic ISR check (Kafka's `maybeShrinkIsr`): proposes dropping followers that have
    /// not caught up for `replica.lag.time.max.ms`.
    pub fn maybe_shrink_isr(&self) -> Option<IsrProposal> {
        let mut st = self.state();
        if st.leader != self.local_broker || st.isr_update_in_flight {
            return None;
        }
        let views = Self::follower_views(&st);
        let leo = self.log.log_end_offset();
        let out = rules::out_of_sync_replicas(
            self.local_broker,
            &st.isr,
            &views,
            leo,
            now_ms(),
            self.lag_max_ms,
        );
        if out.is_empty() {
            return None;
        }
        let isr: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|r| !out.contains(r))
            .collect();
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
            epoch = st.leader_epoch, out_of_sync = ?out, isr = ?isr, hw = st.high_watermark, leo,
            "shrinking ISR");
        Some(self.propose(&mut st, isr))
    }

    /// Applies the result of writing `proposal` to ZooKeeper. Returns whether the HW moved.
    pub fn complete_isr_update(&self, proposal: &IsrProposal, outcome: IsrWriteOutcome) -> bool {
        let mut st = self.state();
        if st.leader != self.local_broker || st.leader_epoch != proposal.leader_epoch {
            // A LeaderAndIsr arrived meanwhile and already reset the in-flight flag.
            return false;
        }
        st.isr_update_in_flight = false;
        match outcome {
            IsrWriteOutcome::Written(zk_version) => {
                st.isr = proposal.isr.clone();
                st.zk_version = zk_version;
                let leo = self.log.log_end_offset();
                self.maybe_increment_hw(&mut st, leo, now_ms())
            }
            IsrWriteOutcome::Rejected => false,
        }
    }

    /// Reads for a consumer (capped at the HW) or a follower (capped at the LEO).
    /// A follower's fetch offset updates what the leader knows of it, which may move the HW
    /// (the returned flag) and may propose an ISR expansion.
    ///
    /// # Errors
    /// Not the leader, an unknown replica, or the offset outside the log.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: FetchIsolation,
        min_one_batch: bool,
        follower: Option<i32>,
    ) -> Result<(PartitionRead, bool, Option<IsrProposal>), ReplicaError> {
        let mut hw_moved = false;
        let mut proposal = None;
        let hw = {
            let mut st = self.state();
            if st.leader != self.local_broker {
                return Err(ReplicaError::NotLeader);
            }
            if let Some(f) = follower {
                if !st.replicas.contains(&f) {
                    return Err(ReplicaError::UnknownReplica(f));
                }
                // Only an offset inside the log tells us where the follower is.
                if offset <= self.log.log_end_offset() && offset >= 0 {
                    (hw_moved, proposal) = self.update_follower(&mut st, f, offset);
                }
            }
            st.high_watermark
        };
        let lso = self.log.last_stable_offset(hw);
        let cap = match isolation {
            FetchIsolation::HighWatermark => Some(hw),
            FetchIsolation::TxnCommitted => Some(lso),
            FetchIsolation::LogEnd => None,
        };
        // A consumer asking for an offset in (cap, LEO] is in range: it just gets nothing yet.
        let info = if cap.is_some_and(|c| offset > c) {
            let leo = self.log.log_end_offset();
            if offset > leo {
                return Err(ReplicaError::OffsetOutOfRange {
                    offset,
                    log_start: self.log.log_start_offset(),
                    log_end: leo,
                });
            }
            ReadInfo {
                records: crate::protocol::file_region::FileRegion::default(),
                log_start_offset: self.log.log_start_offset(),
                log_end_offset: leo,
            }
        } else {
            self.log
                .read(offset, max_bytes, cap, min_one_batch)
                .map_err(ReplicaError::from_log)?
        };
        let aborted = if isolation == FetchIsolation::TxnCommitted && !info.records.is_empty() {
            Some(
                self.log
                    .collect_aborted_transactions(offset)
                    .map_err(ReplicaError::from_log)?,
            )
        } else {
            (isolation == FetchIsolation::TxnCommitted).then(Vec::new)
        };
        Ok((
            PartitionRead {
                info,
                high_watermark: hw,
                last_stable_offset: lso,
                aborted,
            },
            hw_moved,
            proposal,
        ))
    }

    /// The follower's view for its fetcher: `(leader, leader epoch)` while this broker follows.
    pub fn following(&self) -> Option<(i32, i32)> {
        let st = self.state();
        (st.leader != self.local_broker && st.leader >= 0).then_some((st.leader, st.leader_epoch))
    }

    fn check_following(&self, st: &State, epoch: i32) -> Result<(), ReplicaError> {
        if st.leader == self.local_broker || st.leader_epoch != epoch {
            return Err(ReplicaError::FencedLeaderEpoch);
        }
        Ok(())
    }

    /// Follower append of leader batches, verbatim, at `fetch_offset` (which must be our LEO),
    /// then HW = min(leader HW, LEO) and the leader's log start adopted if higher. Done under
    /// the state lock so a role change cannot interleave.
    ///
    /// # Errors
    /// `FencedLeaderEpoch` if the partition's role or epoch changed since the fetch was sent;
    /// log failures (including an offset mismatch).
    pub fn append_as_follower(
        &self,
        epoch: i32,
        fetch_offset: i64,
        records: Bytes,
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<i64, ReplicaError> {
        let mut st = self.state();
        self.check_following(&st, epoch)?;
        let leo = self.log.log_end_offset();
        if leo != fetch_offset {
            return Err(ReplicaError::Storage(format!(
                "fetched at {fetch_offset} but the log now ends at {leo}"
            )));
        }
        if !records.is_empty() {
            self.log
                .append_as_follower(records)
                .map_err(ReplicaError::from_log)?;
        }
        let leo = self.log.log_end_offset();
        if leader_log_start > self.log.log_start_offset() && leader_log_start <= leo {
            self.log
                .maybe_increment_log_start_offset(leader_log_start)
                .map_err(ReplicaError::from_log)?;
        }
        st.high_watermark = leader_hw.min(leo).max(self.log.log_start_offset());
        self.log.on_high_watermark_updated(st.high_watermark);
        Ok(leo)
    }

    /// Follower truncation to `offset` (divergence or an unclean leader); the HW follows.
    ///
    /// # Errors
    /// `FencedLeaderEpoch` if the role changed; log failures.
    pub fn truncate_as_follower(&self, epoch: i32, offset: i64) -> Result<i64, ReplicaError> {
        let mut st = self.state();
        self.check_following(&st, epoch)?;
        if offset < self.log.log_end_offset() {
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, epoch,
                from = self.log.log_end_offset(), to = offset, "follower truncating");
            self.log
                .truncate_to(offset)
                .map_err(ReplicaError::from_log)?;
        }
        let leo = self.log.log_end_offset();
        st.high_watermark = st.high_watermark.min(leo);
        Ok(leo)
    }

    /// Follower far behind the leader's log start: restart the log empty at `offset`.
    ///
    /// # Errors
    /// `FencedLeaderEpoch` if the role changed; log failures.
    pub fn truncate_fully_as_follower(&self, epoch: i32, offset: i64) -> Result<i64, ReplicaError> {
        let mut st = self.state();
        self.check_following(&st, epoch)?;
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, epoch,
            from = self.log.log_end_offset(), start = offset, "follower restarting its log");
        self.log
            .truncate_fully_and_start_at(offset)
            .map_err(ReplicaError::from_log)?;
        st.high_watermark = offset;
        Ok(offset)
    }

    /// OffsetForLeaderEpoch on the leader (reference §5 "Leader's answer").
    ///
    /// # Errors
    /// Not the leader, or a current-leader-epoch mismatch.
    pub fn last_offset_for_leader_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), ReplicaError> {
        let st = self.state();
        if st.leader != self.local_broker {
            return Err(ReplicaError::NotLeader);
        }
        match rules::leader_epoch_mismatch(current_leader_epoch, st.leader_epoch) {
            Some(true) => return Err(ReplicaError::FencedLeaderEpoch),
            Some(false) => return Err(ReplicaError::UnknownLeaderEpoch),
            None => {}
        }
        Ok(self.log.end_offset_for_epoch(epoch))
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
