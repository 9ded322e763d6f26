//! The follower's side of incremental fetch sessions (KIP-227; Kafka's `FetchSessionHandler`):
//! after one full fetch opens a session on the leader, each request lists only the partitions
//! whose fetch parameters changed since the last one, and the ones to forget; the leader answers
//! only partitions with news. An idle partition then costs no bytes in either direction.
//!
//! Any doubt about what the leader holds — a session error, another top-level error, a lost
//! connection — makes the next request a full one, which replaces the session it names.

use std::collections::HashMap;

use kafka_protocol::ResponseError;

use crate::common::TopicPartition;

const NO_SESSION: i32 = 0;
const INITIAL_EPOCH: i32 = 0;

/// What the leader is told about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartitionParams {
    pub offset: i64,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub max_bytes: i32,
}

/// One request's session fields and contents, kept until its response arrives.
#[derive(Debug)]
pub(super) struct Plan {
    pub session_id: i32,
    pub epoch: i32,
    /// Indexes into the partitions passed to [`SessionHandler::plan`] that the request lists.
    pub listed: Vec<usize>,
    pub forgotten: Vec<TopicPartition>,
    full: bool,
    next: HashMap<TopicPartition, PartitionParams>,
}

/// One fetcher's session with one leader.
#[derive(Debug)]
pub(super) struct SessionHandler {
    id: i32,
    /// The epoch of the next request; [`INITIAL_EPOCH`] means a full one.
    epoch: i32,
    /// What the leader's session holds, as of the last answered request.
    held: HashMap<TopicPartition, PartitionParams>,
}

impl Default for SessionHandler {
    fn default() -> Self {
        Self {
            id: NO_SESSION,
            epoch: INITIAL_EPOCH,
            held: HashMap::new(),
        }
    }
}

impl SessionHandler {
    /// The next request for `partitions` (the full set this fetcher wants fetched now).
    pub(super) fn plan(&self, partitions: &[(TopicPartition, PartitionParams)]) -> Plan {
        let next: HashMap<TopicPartition, PartitionParams> = partitions.iter().cloned().collect();
        let full = self.epoch == INITIAL_EPOCH;
        let listed = partitions
            .iter()
            .enumerate()
            .filter(|(_, (tp, params))| full || self.held.get(tp) != Some(params))
            .map(|(i, _)| i)
            .collect();
        let forgotten = if full {
            Vec::new()
        } else {
            self.held
                .keys()
                .filter(|tp| !next.contains_key(*tp))
                .cloned()
                .collect()
        };
        Plan {
            session_id: self.id,
            epoch: self.epoch,
            listed,
            forgotten,
            full,
            next,
        }
    }

    /// Records the leader's answer to `plan`: `error` is the response's top-level error.
    pub(super) fn answered(&mut self, plan: Plan, error: Option<ResponseError>, session_id: i32) {
        match error {
            None if plan.full && session_id != NO_SESSION => {
                self.id = session_id;
                self.epoch = 1;
                self.held = plan.next;
            }
            None if !plan.full && session_id == self.id => {
                self.epoch = next_epoch(self.epoch);
                self.held = plan.next;
            }
            // A full fetch the leader kept no session for: the next one is full again.
            None if plan.full => {
                self.id = NO_SESSION;
                self.held.clear();
            }
            Some(ResponseError::FetchSessionIdNotFound) => {
                self.id = NO_SESSION;
                self.restart();
            }
            _ => self.restart(),
        }
    }

    /// The next request is a full one (which also closes the current session on the leader).
    pub(super) fn restart(&mut self) {
        self.epoch = INITIAL_EPOCH;
        self.held.clear();
    }
}

/// `FetchMetadata.nextEpoch` for an open session.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn at(offset: i64) -> PartitionParams {
        PartitionParams {
            offset,
            leader_epoch: 0,
            log_start_offset: 0,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_first_request_is_full_and_opens_a_session() {
        let mut h = SessionHandler::default();
        let parts = [(tp(0), at(5)), (tp(1), at(7))];
        let plan = h.plan(&parts);
        assert_eq!((plan.session_id, plan.epoch), (0, 0));
        assert_eq!(plan.listed, vec![0, 1]);
        h.answered(plan, None, 99);
        let plan = h.plan(&parts);
        assert_eq!((plan.session_id, plan.epoch), (99, 1));
        assert!(plan.listed.is_empty(), "nothing changed");
        assert!(plan.forgotten.is_empty());
    }

    #[test]
    fn only_changed_partitions_are_listed_and_dropped_ones_forgotten() {
        let mut h = SessionHandler::default();
        let plan = h.plan(&[(tp(0), at(5)), (tp(1), at(7)), (tp(2), at(1))]);
        h.answered(plan, None, 99);
        let plan = h.plan(&[(tp(0), at(6)), (tp(1), at(7)), (tp(3), at(0))]);
        assert_eq!(plan.listed, vec![0, 2]);
        assert_eq!(plan.forgotten, vec![tp(2)]);
        h.answered(plan, None, 99);
        let plan = h.plan(&[(tp(0), at(6)), (tp(1), at(7)), (tp(3), at(0))]);
        assert_eq!(plan.epoch, 2);
        assert!(plan.listed.is_empty());
    }

    #[test]
    fn a_session_error_or_a_failure_makes_the_next_request_full() {
        let parts = [(tp(0), at(5))];
        let mut h = SessionHandler::default();
        h.answered(h.plan(&parts), None, 99);
        h.answered(
            h.plan(&parts),
            Some(ResponseError::InvalidFetchSessionEpoch),
            0,
        );
        let plan = h.plan(&parts);
        // Full, and naming the session so that the leader closes it.
        assert_eq!((plan.session_id, plan.epoch, plan.listed.len()), (99, 0, 1));
        h.answered(plan, None, 100);
        h.answered(
            h.plan(&parts),
            Some(ResponseError::FetchSessionIdNotFound),
            0,
        );
        let plan = h.plan(&parts);
        assert_eq!((plan.session_id, plan.epoch), (0, 0));
        h.answered(plan, None, 101);
        h.restart();
        assert_eq!(h.plan(&parts).epoch, 0);
    }

    #[test]
    fn a_leader_without_room_keeps_every_request_full() {
        let parts = [(tp(0), at(5))];
        let mut h = SessionHandler::default();
        h.answered(h.plan(&parts), None, 0);
        let plan = h.plan(&parts);
        assert_eq!((plan.session_id, plan.epoch, plan.listed.len()), (0, 0, 1));
    }
}
