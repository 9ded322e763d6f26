//! Committed offsets (reference §7 "OffsetCommit", "OffsetFetch", "Offset expiry"): Kafka's
//! `doCommitOffsets` validation, the cache updated only after the records are committed, the
//! reads, and the periodic expiry that writes tombstones and drops emptied groups.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::error::GroupError;
use super::group::{Group, GroupState};
use super::membership::Membership;
use super::records::{self, OffsetValue};
use super::store::Record;

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: Option<i32>,
    /// `None` (null on the wire) is stored as "".
    pub metadata: Option<String>,
    /// OffsetCommit v1 only; -1 means "now".
    pub commit_timestamp: i64,
}

/// An OffsetCommit as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 (or v0) for a commit from outside group management.
    pub generation_id: i32,
    pub member_id: String,
    /// v2–4 `RetentionTimeMs` when not -1: the offsets expire at commit time + this.
    pub retention_ms: Option<i64>,
    pub partitions: Vec<PartitionCommit>,
}

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    /// A transaction's offset commit for the partition awaits its marker and the fetch asked
    /// for stable offsets only (KIP-447): the client is to ask again, offset is -1.
    pub unstable: bool,
}

/// The topics a live consumer-protocol group subscribes to, from its members' subscriptions
/// (Kafka's `computeSubscribedTopics`). `None` when that cannot be known: another protocol
/// type, no members, or a subscription that does not parse.
pub fn subscribed_topics(group: &Group) -> Option<BTreeSet<String>> {
    if group.protocol_type.as_deref() != Some("consumer") || group.size() == 0 {
        return None;
    }
    let protocol = group.protocol_name.clone()?;
    let mut topics = BTreeSet::new();
    for m in group.members() {
        topics.extend(consumer_subscription_topics(m.metadata(&protocol)?)?);
    }
    Some(topics)
}

/// The topic list at the start of a ConsumerProtocol subscription (any version: `int16`
/// version, then an array of STRING topics; later fields are not needed here).
fn consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut pos = 2usize;
    let count = i32::from_be_bytes(metadata.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(metadata.get(pos..pos + 2)?.try_into().ok()?);
        pos += 2;
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(metadata.get(pos..pos + len)?).ok()?;
        topics.push(name.to_string());
        pos += len;
    }
    Some(topics)
}

/// The offsets of `group` that have expired at `now_ms` (Kafka's `removeExpiredOffsets`
/// rules, reference §7 "Offset expiry").
pub fn expired_offsets(group: &Group, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
    let expired_since = |base: i64, v: &OffsetValue| match v.expire_timestamp {
        Some(expire) => now_ms >= expire,
        None => now_ms - base >= retention_ms,
    };
    let keep_topics: BTreeSet<String>;
    let base: Box<dyn Fn(&OffsetValue) -> i64> = match group.protocol_type.as_deref() {
        // An Empty group with a protocol: measured from when it became Empty.
        Some(_) if group.is(GroupState::Empty) => {
            keep_topics = BTreeSet::new();
            let since = group.state_timestamp_ms;
            Box::new(move |_| since)
        }
        // A live consumer group: only topics it no longer subscribes to, from the commit.
        Some("consumer") => match subscribed_topics(group) {
            Some(topics) => {
                keep_topics = topics;
                Box::new(|v| v.commit_timestamp)
            }
            None => return Vec::new(),
        },
        // Offsets-only (simple) consumers: from the commit.
        None => {
            keep_topics = BTreeSet::new();
            Box::new(|v| v.commit_timestamp)
        }
        Some(_) => return Vec::new(),
    };
    group
        .offsets
        .iter()
        .filter(|((topic, _), v)| !keep_topics.contains(topic) && expired_since(base(v), v))
        .map(|(tp, _)| tp.clone())
        .collect()
}

fn offset_record(group_id: &str, topic: &str, partition: i32, v: Option<&OffsetValue>) -> Record {
    (
        records::offset_key(group_id, topic, partition),
        v.map(records::offset_value),
    )
}

impl Membership {
    /// OffsetCommit (Kafka's `handleCommitOffsets` + `doCommitOffsets`): per-partition outcomes
    /// in request order. Accepted offsets are appended (acks=-1) and cached only once
    /// the append succeeded.
    pub async fn commit_offsets(
        &self,
        req: CommitRequest,
        now_ms: i64,
    ) -> Vec<Result<(), GroupError>> {
        let n = req.partitions.len();
        let partition = self.partition_of(&req.group_id);
        let mut outcomes = vec![Ok(()); n];
        let mut accepted: Vec<(usize, PartitionCommit, OffsetValue)> = Vec::new();
        {
            let mut groups = self.groups();
            if !groups.contains_key(&req.group_id) {
                if req.generation_id >= 0 {
                    // A member of a generation this coordinator never saw.
                    return vec![Err(GroupError::IllegalGeneration); n];
                }
                // Not using group management: the group exists only to hold offsets.
                let entry = self.new_entry(&req.group_id, now_ms);
                groups.insert(req.group_id.clone(), entry);
            }
            let Some(entry) = groups.get_mut(&req.group_id) else {
                return vec![Err(GroupError::CoordinatorNotAvailable); n];
            };
            let g = &entry.group;
            let group_error = if g.is(GroupState::Dead) {
                Some(GroupError::CoordinatorNotAvailable)
            } else if req.generation_id < 0 && g.is(GroupState::Empty) {
                None
            } else if !g.has_member(&req.member_id) {
                Some(GroupError::UnknownMemberId)
            } else if req.generation_id != g.generation_id {
                Some(GroupError::IllegalGeneration)
            } else {
                match g.state() {
                    GroupState::Stable | GroupState::PreparingRebalance => None,
                    _ => Some(GroupError::RebalanceInProgress),
                }
            };
            if let Some(e) = group_error {
                return vec![Err(e); n];
            }
            if g.has_member(&req.member_id) {
                entry.touch(&req.member_id, now_ms);
            }
            for (i, p) in req.partitions.into_iter().enumerate() {
                let metadata = p.metadata.clone().unwrap_or_default();
                if metadata.len() > self.config.offset_metadata_max_bytes {
                    outcomes[i] = Err(GroupError::OffsetMetadataTooLarge);
                    continue;
                }
                let commit_timestamp = if p.commit_timestamp >= 0 {
                    p.commit_timestamp
                } else {
                    now_ms
                };
                let value = OffsetValue {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata,
                    commit_timestamp,
                    expire_timestamp: req.retention_ms.map(|r| commit_timestamp.saturating_add(r)),
                };
                accepted.push((i, p, value));
            }
        }
        if accepted.is_empty() {
            return outcomes;
        }
        let batch: Vec<Record> = accepted
            .iter()
            .map(|(_, p, v)| offset_record(&req.group_id, &p.topic, p.partition, Some(v)))
            .collect();
        match self.log.append(partition, batch).await {
            Ok(()) => {
                let mut groups = self.groups();
                if let Some(entry) = groups.get_mut(&req.group_id) {
                    for (_, p, v) in accepted {
                        entry.group.offsets.insert((p.topic, p.partition), v);
                    }
                }
            }
            Err(append_error) => {
                let error = GroupError::from_offset_store(&append_error);
                tracing::warn!(group = %req.group_id, %append_error, %error,
                    "offset commit failed");
                for (i, _, _) in accepted {
                    outcomes[i] = Err(error);
                }
            }
        }
        outcomes
    }

    /// OffsetFetch: the committed offsets of `topics` (topic → partitions), or of every
    /// partition the group committed when `None`. An unknown group or partition answers -1.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<FetchedOffset> {
        let groups = self.groups();
        let group = groups.get(group_id).map(|e| &e.group);
        let offsets = group.map(|g| &g.offsets);
        // Kafka's `hasPendingOffsetCommitsForTopicPartition`, for the transactional ones.
        let pending = |key: &(String, i32)| {
            group.is_some_and(|g| g.pending_txn_offsets.values().any(|o| o.contains_key(key)))
        };
        let answer = |topic: &str, partition: i32| {
            let key = (topic.to_string(), partition);
            let committed = offsets.and_then(|o| o.get(&key));
            let unstable = require_stable && pending(&key);
            match committed.filter(|_| !unstable) {
                Some(v) => FetchedOffset {
                    topic: key.0,
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    unstable,
                },
                None => FetchedOffset {
                    topic: key.0,
                    partition,
                    offset: -1,
                    leader_epoch: None,
                    metadata: String::new(),
                    unstable,
                },
            }
        };
        match topics {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| answer(t, *p)).collect::<Vec<_>>())
                .collect(),
            None => offsets
                .map(|o| o.keys().map(|(t, p)| answer(t, *p)).collect())
                .unwrap_or_default(),
        }
    }

    /// Removes expired offsets and then groups left Empty without offsets (committed or
    /// awaiting a transaction's marker), queueing their tombstones (Kafka's `cleanupGroupMetadata`). Returns (offsets removed, groups removed).
    pub fn expire_offsets(&self, now_ms: i64) -> (usize, usize) {
        let retention = self.config.offsets_retention_ms;
        let mut removed_offsets = 0;
        let mut dead = Vec::new();
        let mut writes: Vec<(i32, Vec<Record>)> = Vec::new();
        {
            let mut groups = self.groups();
            for (group_id, entry) in groups.iter_mut() {
                let expired = expired_offsets(&entry.group, now_ms, retention);
                let mut tombstones: Vec<Record> = expired
                    .iter()
                    .map(|(t, p)| offset_record(group_id, t, *p, None))
                    .collect();
                for tp in &expired {
                    entry.group.offsets.remove(tp);
                }
                removed_offsets += expired.len();
                if entry.group.is(GroupState::Empty)
                    && entry.group.offsets.is_empty()
                    && entry.group.pending_members.is_empty()
                    && entry.group.pending_txn_offsets.is_empty()
                    && entry.group.transition_to(GroupState::Dead, now_ms).is_ok()
                {
                    tombstones.push((records::group_key(group_id), None::<Bytes>));
                    dead.push(group_id.clone());
                }
                if !tombstones.is_empty() {
                    writes.push((entry.partition, tombstones));
                }
            }
            for g in &dead {
                groups.remove(g);
            }
        }
        for (partition, recs) in writes {
            self.writes.push(partition, recs);
        }
        if removed_offsets > 0 || !dead.is_empty() {
            tracing::info!(
                offsets = removed_offsets,
                groups = dead.len(),
                "removed expired offsets and empty groups"
            );
        }
        (removed_offsets, dead.len())
    }
}

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
