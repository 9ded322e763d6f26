//! Transactional offset commits (reference §2.7, Kafka's `doTxnCommitOffsets` and
//! `handleTxnCompletion`): TxnOffsetCommit writes the offsets as a transactional batch of the
//! producer and holds them *pending* for it, invisible to OffsetFetch; the producer's COMMIT
//! marker on the offsets partition makes them the group's committed offsets, an ABORT drops
//! them. Nothing is checked with the transaction coordinator, as in Kafka.

use super::error::GroupError;
use super::group::{Group, GroupState};
use super::membership::Membership;
use super::offsets::PartitionCommit;
use super::records::{self, OffsetValue};
use super::store::Record;

/// A TxnOffsetCommit as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 (or before v3) when the producer does not check the consumer's generation.
    pub generation_id: i32,
    /// "" when unchecked.
    pub member_id: String,
    pub partitions: Vec<PartitionCommit>,
}

/// Kafka 2.8's group checks for a transactional commit.
fn check_group(group: &Group, req: &TxnCommitRequest) -> Option<GroupError> {
    if group.is(GroupState::Dead) {
        Some(GroupError::CoordinatorNotAvailable)
    } else if !req.member_id.is_empty() && !group.has_member(&req.member_id) {
        Some(GroupError::UnknownMemberId)
    } else if req.generation_id >= 0 && req.generation_id != group.generation_id {
        Some(GroupError::IllegalGeneration)
    } else {
        None
    }
}

impl Membership {
    /// TxnOffsetCommit: per-partition outcomes in request order.
    pub async fn txn_commit_offsets(
        &self,
        req: TxnCommitRequest,
        now_ms: i64,
    ) -> Vec<Result<(), GroupError>> {
        let n = req.partitions.len();
        let partition = self.partition_of(&req.group_id);
        let mut outcomes = vec![Ok(()); n];
        let mut accepted: Vec<(usize, String, i32, OffsetValue)> = Vec::new();
        {
            let mut groups = self.groups();
            let entry = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| self.new_entry(&req.group_id, now_ms));
            if let Some(e) = check_group(&entry.group, &req) {
                return vec![Err(e); n];
            }
            for (i, p) in req.partitions.iter().enumerate() {
                let metadata = p.metadata.clone().unwrap_or_default();
                if metadata.len() > self.config.offset_metadata_max_bytes {
                    outcomes[i] = Err(GroupError::OffsetMetadataTooLarge);
                    continue;
                }
                let value = OffsetValue {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata,
                    commit_timestamp: now_ms,
                    expire_timestamp: None,
                };
                accepted.push((i, p.topic.clone(), p.partition, value));
            }
        }
        if accepted.is_empty() {
            return outcomes;
        }
        let batch: Vec<Record> = accepted
            .iter()
            .map(|(_, t, p, v)| {
                (
                    records::offset_key(&req.group_id, t, *p),
                    Some(records::offset_value(v)),
                )
            })
            .collect();
        let appended = self
            .log
            .append_transactional(partition, batch, req.producer_id, req.producer_epoch)
            .await;
        match appended {
            Ok(()) => {
                let mut groups = self.groups();
                if let Some(entry) = groups.get_mut(&req.group_id) {
                    let pending = entry
                        .group
                        .pending_txn_offsets
                        .entry(req.producer_id)
                        .or_default();
                    for (_, t, p, v) in accepted {
                        pending.insert((t, p), v);
                    }
                }
            }
            Err(append_error) => {
                let error = GroupError::from_offset_store(&append_error);
                tracing::warn!(group = %req.group_id, producer_id = req.producer_id, %append_error,
                    %error, "transactional offset commit failed");
                for (i, ..) in accepted {
                    outcomes[i] = Err(error);
                }
            }
        }
        outcomes
    }

    /// The producer's transaction ended on offsets partitions `partitions` (its marker is
    /// written there): its pending offsets in those partitions' groups become committed
    /// (`commit`) or are dropped. Returns how many offsets moved in.
    pub fn complete_txn(&self, producer_id: i64, partitions: &[i32], commit: bool) -> usize {
        let mut groups = self.groups();
        let mut moved = 0;
        for entry in groups.values_mut() {
            if !partitions.contains(&entry.partition) {
                continue;
            }
            let Some(pending) = entry.group.pending_txn_offsets.remove(&producer_id) else {
                continue;
            };
            if commit {
                moved += pending.len();
                entry.group.offsets.extend(pending);
            }
        }
        moved
    }

    /// Whether `group_id` has transactional offsets waiting for a marker.
    pub fn has_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.groups()
            .get(group_id)
            .is_some_and(|e| !e.group.pending_txn_offsets.is_empty())
    }
}
