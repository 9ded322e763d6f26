//! Loading and unloading an offsets partition (reference §7 "Loading on failover"): replay the
//! partition's records (last record per key wins, a tombstone removes), install the groups and
//! their offsets, and drop them again when another broker takes the partition over. Also the
//! read-only views DescribeGroups and ListGroups use.

use std::collections::HashMap;

use bytes::Bytes;

use super::error::GroupError;
use super::group::{Group, GroupState};
use super::membership::{Entry, JoinResponse, Membership, SyncResponse};
use super::records::{self, GroupValue, OffsetValue, RecordKey};
use crate::protocol::batch;
use crate::protocol::control::{self, ControlType};
use crate::util::clock::now_ms;

/// The state of one offsets partition after replaying its log.
#[derive(Debug, Default)]
pub struct Replayed {
    pub groups: HashMap<String, GroupValue>,
    pub offsets: HashMap<(String, String, i32), OffsetValue>,
    /// Group ids whose latest group record is a tombstone.
    pub removed_groups: Vec<String>,
    /// Records that could not be decoded (skipped, as Kafka would fail the load instead; a
    /// partition written by gregor or Kafka never has any).
    pub skipped: usize,
    /// Transactional offset commits whose marker the replay has not reached, by producer id:
    /// they stay pending (invisible) until a COMMIT marker arrives.
    pub pending_txn: HashMap<i64, HashMap<(String, String, i32), OffsetValue>>,
}

impl Replayed {
    /// Applies the records of `data` (whole batches as read from the log), in order.
    pub fn apply_batches(&mut self, data: &[u8]) {
        for item in batch::batches(data) {
            let Ok((header, range)) = item else {
                self.skipped += 1;
                break;
            };
            if header.is_control() {
                match control::parse_marker(&header, &data[range]) {
                    Ok(Some(m)) => {
                        let pending = self.pending_txn.remove(&header.producer_id);
                        if m.control == ControlType::Commit {
                            self.offsets.extend(pending.unwrap_or_default());
                        }
                    }
                    Ok(None) => {}
                    Err(_) => self.skipped += 1,
                }
                continue;
            }
            let Some(recs) = batch::uncompressed_records(&data[range]) else {
                // The coordinator never compresses; a compressed batch is not ours.
                self.skipped += 1;
                continue;
            };
            for r in recs {
                if header.is_transactional() {
                    self.apply_transactional(header.producer_id, r.key, r.value);
                } else {
                    self.apply(r.key, r.value);
                }
            }
        }
    }

    /// A TxnOffsetCommit record: held for its producer until the marker.
    fn apply_transactional(&mut self, pid: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let decoded = key.map(records::decode_key);
        let Some(Ok(RecordKey::Offset {
            group,
            topic,
            partition,
        })) = decoded
        else {
            self.skipped += 1;
            return;
        };
        match value.map(records::decode_offset_value) {
            Some(Ok(v)) => {
                self.pending_txn
                    .entry(pid)
                    .or_default()
                    .insert((group, topic, partition), v);
            }
            _ => self.skipped += 1,
        }
    }

    fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(Ok(key)) = key.map(records::decode_key) else {
            self.skipped += 1;
            return;
        };
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                let k = (group, topic, partition);
                match value.map(records::decode_offset_value) {
                    None => {
                        self.offsets.remove(&k);
                    }
                    Some(Ok(v)) => {
                        self.offsets.insert(k, v);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(group = %k.0, error = %e, "undecodable offset record");
                        self.skipped += 1;
                    }
                }
            }
            RecordKey::Group { group } => match value.map(records::decode_group_value) {
                None => {
                    self.groups.remove(&group);
                    self.removed_groups.push(group);
                }
                Some(Ok(v)) => {
                    self.removed_groups.retain(|g| *g != group);
                    self.groups.insert(group, v);
                }
                Some(Err(e)) => {
                    tracing::warn!(group = %group, error = %e, "undecodable group record");
                    self.skipped += 1;
                }
            },
        }
    }
}

/// A group as DescribeGroups reports it (Kafka's `GroupSummary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// The protocol while Stable, else "".
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment); metadata and
    /// assignment only while Stable.
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

impl Membership {
    /// Installs the groups and offsets replayed from `partition`. Groups with members come back
    /// Stable with a fresh session for every member; their clients' next heartbeat either
    /// keeps them or, if they are gone, the session expiry rebalances the group.
    pub fn install(&self, partition: i32, replayed: Replayed) -> (usize, usize) {
        let now = now_ms();
        let mut by_group: HashMap<String, Group> = HashMap::new();
        for (group_id, v) in &replayed.groups {
            by_group.insert(group_id.clone(), Group::from_record(group_id, v, now));
        }
        let offsets = replayed.offsets.len();
        for ((group_id, topic, p), v) in replayed.offsets {
            by_group
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now))
                .offsets
                .insert((topic, p), v);
        }
        for (pid, offsets) in replayed.pending_txn {
            for ((group_id, topic, p), v) in offsets {
                by_group
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, now))
                    .pending_txn_offsets
                    .entry(pid)
                    .or_default()
                    .insert((topic, p), v);
            }
        }
        let count = by_group.len();
        let mut groups = self.groups();
        for (group_id, group) in by_group {
            // Requests for this partition were refused while it loaded, so nothing newer exists.
            let mut entry = Entry::new(group, partition);
            let members: Vec<String> = entry.group.members().map(|m| m.member_id.clone()).collect();
            for id in members {
                entry.touch(&id, now);
            }
            groups.insert(group_id, entry);
        }
        (count, offsets)
    }

    /// Drops every group of `partition` (Kafka's `onResignation`): parked JoinGroup and
    /// SyncGroup requests are answered NOT_COORDINATOR so their clients look the coordinator up.
    pub fn unload(&self, partition: i32) -> usize {
        let mut groups = self.groups();
        let ids: Vec<String> = groups
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            if let Some(mut e) = groups.remove(id) {
                let _ = e.group.transition_to(GroupState::Dead, now_ms());
                for (member, tx) in e.joins.drain() {
                    let mut r = JoinResponse::error(GroupError::NotCoordinator, &member);
                    r.member_id = member;
                    let _ = tx.send(r);
                }
                for (_, tx) in e.syncs.drain() {
                    let _ = tx.send(SyncResponse::error(GroupError::NotCoordinator));
                }
            }
        }
        ids.len()
    }

    /// DescribeGroups for one group; an unknown group is reported Dead with no members.
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let groups = self.groups();
        let Some(e) = groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let g = &e.group;
        let stable = g.is(GroupState::Stable);
        let protocol = if stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        GroupDescription {
            group_id: group_id.to_string(),
            state: g.state().name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            members: g
                .members()
                .map(|m| {
                    let (meta, assignment) = if stable {
                        (
                            m.metadata(&protocol).cloned().unwrap_or_default(),
                            m.assignment.clone(),
                        )
                    } else {
                        (Bytes::new(), Bytes::new())
                    };
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        meta,
                        assignment,
                    )
                })
                .collect(),
            protocol,
        }
    }

    /// ListGroups: (group id, protocol type, state) of every group in `partitions`.
    pub fn list(&self, partitions: &[i32]) -> Vec<(String, String, &'static str)> {
        let groups = self.groups();
        let mut out: Vec<(String, String, &'static str)> = groups
            .iter()
            .filter(|(_, e)| partitions.contains(&e.partition))
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.group.protocol_type.clone().unwrap_or_default(),
                    e.group.state().name(),
                )
            })
            .collect();
        out.sort();
        out
    }
}
