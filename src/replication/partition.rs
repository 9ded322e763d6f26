//! One partition replica on this broker: its role (leader or follower), leader epoch, ISR and high
//! watermark, over its [`Log`]. Mirrors Kafka's `cluster/Partition.scala`.
//!
//! All state sits behind one std `Mutex` that is never held across an `.await`; the log has its own
//! lock, so a long read never blocks a role change for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::ReplicaError;
use crate::log::{AppendInfo, Log, ReadInfo, TopicPartition};

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
#[derive(Debug, Clone, Copy, Default)]
struct FollowerState {
    /// The follower's LEO, learned from its last fetch offset; -1 until it fetches.
    log_end_offset: i64,
    last_caught_up_time_ms: i64,
    last_fetch_leader_log_end_offset: i64,
    last_fetch_time_ms: i64,
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
}

/// Where a read comes from: a consumer sees only up to the high watermark; a follower up to the LEO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    HighWatermark,
    LogEnd,
}

/// The result of reading one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub info: ReadInfo,
    pub high_watermark: i64,
}

/// A partition replica hosted by this broker.
pub struct Partition {
    tp: TopicPartition,
    local_broker: i32,
    log: Arc<Log>,
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
    pub fn new(tp: TopicPartition, local_broker: i32, log: Arc<Log>) -> Self {
        Self {
            tp,
            local_broker,
            log,
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
        st.followers = s
            .replicas
            .iter()
            .filter(|r| **r != self.local_broker)
            .map(|r| {
                let caught_up = if s.isr.contains(r) { now } else { 0 };
                (
                    *r,
                    FollowerState {
                        log_end_offset: -1,
                        last_caught_up_time_ms: caught_up,
                        last_fetch_leader_log_end_offset: -1,
                        last_fetch_time_ms: 0,
                    },
                )
            })
            .collect();
        if st.high_watermark > leo {
            st.high_watermark = leo;
        }
        Self::maybe_increment_hw(&mut st, self.local_broker, leo, now);
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
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition,
            epoch = s.leader_epoch, leader = s.leader, "became follower");
        true
    }

    /// HW = min(leader LEO, LEO of every ISR follower or follower caught up within the lag time).
    /// It never decreases.
    fn maybe_increment_hw(st: &mut State, local: i32, leader_leo: i64, _now: i64) -> bool {
        let mut new_hw = leader_leo;
        for r in &st.isr {
            if *r == local {
                continue;
            }
            match st.followers.get(r).map(|f| f.log_end_offset) {
                Some(leo) if leo >= 0 => new_hw = new_hw.min(leo),
                // A follower whose position is not known yet holds the HW where it is.
                _ => new_hw = new_hw.min(st.high_watermark),
            }
        }
        if new_hw > st.high_watermark {
            st.high_watermark = new_hw;
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
            .append_as_leader(batch, st.leader_epoch)
            .map_err(ReplicaError::from_log)?;
        let leo = self.log.log_end_offset();
        let hw_moved = Self::maybe_increment_hw(&mut st, self.local_broker, leo, now_ms());
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

    /// Reads for a consumer (capped at the HW) or a follower (capped at the LEO).
    /// A follower's fetch offset updates what the leader knows of it, which may move the HW;
    /// the returned flag says whether it did.
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
    ) -> Result<(PartitionRead, bool), ReplicaError> {
        let mut hw_moved = false;
        let hw = {
            let mut st = self.state();
            if st.leader != self.local_broker {
                return Err(ReplicaError::NotLeader);
            }
            if let Some(f) = follower {
                if !st.replicas.contains(&f) {
                    return Err(ReplicaError::UnknownReplica(f));
                }
                let leo = self.log.log_end_offset();
                let now = now_ms();
                if let Some(fs) = st.followers.get_mut(&f) {
                    if offset >= leo {
                        fs.last_caught_up_time_ms = now;
                    } else if offset >= fs.last_fetch_leader_log_end_offset
                        && fs.last_fetch_leader_log_end_offset >= 0
                    {
                        fs.last_caught_up_time_ms = fs.last_fetch_time_ms;
                    }
                    fs.log_end_offset = offset;
                    fs.last_fetch_leader_log_end_offset = leo;
                    fs.last_fetch_time_ms = now;
                }
                hw_moved = Self::maybe_increment_hw(&mut st, self.local_broker, leo, now);
            }
            st.high_watermark
        };
        let cap = match isolation {
            FetchIsolation::HighWatermark => Some(hw),
            FetchIsolation::LogEnd => None,
        };
        // A consumer asking for an offset in (HW, LEO] is in range: it just gets nothing yet.
        let info = if isolation == FetchIsolation::HighWatermark && offset > hw {
            let leo = self.log.log_end_offset();
            if offset > leo {
                return Err(ReplicaError::OffsetOutOfRange {
                    offset,
                    log_start: self.log.log_start_offset(),
                    log_end: leo,
                });
            }
            ReadInfo {
                records: bytes::Bytes::new(),
                log_start_offset: self.log.log_start_offset(),
                log_end_offset: leo,
            }
        } else {
            self.log
                .read(offset, max_bytes, cap, min_one_batch)
                .map_err(ReplicaError::from_log)?
        };
        Ok((
            PartitionRead {
                info,
                high_watermark: hw,
            },
            hw_moved,
        ))
    }
}
