//! Group membership (Kafka's `GroupCoordinator` join/sync/heartbeat/leave paths, reference §7):
//! JoinGroup parks until the join phase completes, SyncGroup parks until the leader's
//! assignment arrives, and a clock tick expires sessions, join deadlines and the initial
//! rebalance delay.
//!
//! All groups sit behind one mutex that is never held across an `.await`: a parked request waits
//! on a oneshot channel filled when the phase completes. Time comes in as `now_ms` arguments so
//! the rules can be tested without sleeping; [`Membership::run_ticker`] drives them in the
//! broker. The leader's assignment is written to `__consumer_offsets` (acks=-1) before the
//! group becomes Stable; an emptied group's record is queued without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::error::{AppendError, GroupError};
use super::group::{Group, GroupState, Member};
use super::hash::partition_for;
use super::records;
use super::store::{GroupLog, Record, WriteQueue};
use crate::util::clock::now_ms;
use crate::util::sync::lock;

/// The `group.*` broker settings.
#[derive(Debug, Clone, Copy)]
pub struct MembershipConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub max_size: usize,
    /// `offsets.topic.num.partitions`: decides which partition stores a group.
    pub offsets_partitions: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` in ms.
    pub offsets_retention_ms: i64,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            max_size: usize::MAX,
            offsets_partitions: 50,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 10_080 * 60_000,
        }
    }
}

/// A JoinGroup as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without a group instance id: a new member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer. `members` is filled for the leader only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// `None` when the member joined; [`GroupError::MemberIdRequired`] still carries the id.
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResponse {
    pub(super) fn error(error: GroupError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// `None` when the assignment was handed out.
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub(super) fn error(error: GroupError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Per-group bookkeeping around the pure [`Group`].
pub(super) struct Entry {
    pub(super) group: Group,
    /// The offsets partition that stores this group.
    pub(super) partition: i32,
    pub(super) joins: HashMap<String, oneshot::Sender<JoinResponse>>,
    pub(super) syncs: HashMap<String, oneshot::Sender<SyncResponse>>,
    /// Session deadline of every member and pending member id.
    pub(super) session_deadline_ms: HashMap<String, i64>,
    /// When the current join phase ends at the latest.
    join_deadline_ms: Option<i64>,
    /// The initial rebalance delay of an Empty group: (phase end, rebalance time left).
    initial_delay: Option<(i64, i64)>,
}

impl Entry {
    pub(super) fn new(group: Group, partition: i32) -> Self {
        Self {
            group,
            partition,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            session_deadline_ms: HashMap::new(),
            join_deadline_ms: None,
            initial_delay: None,
        }
    }

    pub(super) fn touch(&mut self, member_id: &str, now_ms: i64) {
        let timeout = self
            .group
            .member(member_id)
            .map(|m| m.session_timeout_ms)
            .unwrap_or(0);
        self.session_deadline_ms
            .insert(member_id.to_string(), now_ms + i64::from(timeout));
    }
}

/// What a join attempt did: answered at once, or parked until the phase completes.
enum Joined {
    Now(JoinResponse),
    Parked(oneshot::Receiver<JoinResponse>),
}

/// The membership side of the group coordinator.
#[derive(Clone)]
pub struct Membership {
    pub(super) config: MembershipConfig,
    groups: Arc<Mutex<HashMap<String, Entry>>>,
    pub(super) log: Arc<dyn GroupLog>,
    /// Writes nobody waits for; [`WriteQueue::run`] appends them.
    pub writes: WriteQueue,
}

/// Kafka's member id: the client id (or the static instance id), "-", a random UUID.
fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Membership {
    pub fn new(config: MembershipConfig, log: Arc<dyn GroupLog>) -> Self {
        Self {
            config,
            groups: Arc::new(Mutex::new(HashMap::new())),
            log,
            writes: WriteQueue::default(),
        }
    }

    pub(super) fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_partitions)
    }

    pub(super) fn new_entry(&self, group_id: &str, now_ms: i64) -> Entry {
        Entry::new(Group::new(group_id, now_ms), self.partition_of(group_id))
    }

    pub(super) fn groups(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        lock(&self.groups)
    }

    /// The state of a group, if known (tests, DescribeGroups).
    pub fn group_state(&self, group_id: &str) -> Option<(GroupState, i32, Option<String>, usize)> {
        self.groups().get(group_id).map(|e| {
            (
                e.group.state(),
                e.group.generation_id,
                e.group.leader_id.clone(),
                e.group.size(),
            )
        })
    }

    /// JoinGroup: waits until the join phase completes (or answers at once with an error or
    /// MEMBER_ID_REQUIRED).
    pub async fn join(&self, req: JoinRequest, now_ms: i64) -> JoinResponse {
        let joined = self.join_now(req.clone(), now_ms);
        match joined {
            Joined::Now(r) => r,
            Joined::Parked(rx) => rx.await.unwrap_or_else(|_| {
                JoinResponse::error(GroupError::UnknownMemberId, &req.member_id)
            }),
        }
    }

    fn join_now(&self, req: JoinRequest, now_ms: i64) -> Joined {
        let cfg = self.config;
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return Joined::Now(JoinResponse::error(
                GroupError::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        let mut groups = self.groups();
        if !req.member_id.is_empty() && !groups.contains_key(&req.group_id) {
            return Joined::Now(JoinResponse::error(
                GroupError::UnknownMemberId,
                &req.member_id,
            ));
        }
        let entry = groups
            .entry(req.group_id.clone())
            .or_insert_with(|| self.new_entry(&req.group_id, now_ms));
        let names: Vec<String> = req.protocols.iter().map(|(n, _)| n.clone()).collect();
        if entry.group.is(GroupState::Dead) {
            // The group was unloaded or deleted under the request.
            return Joined::Now(JoinResponse::error(
                GroupError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        if !entry.group.supports_protocols(&req.protocol_type, &names) {
            return Joined::Now(JoinResponse::error(
                GroupError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.member_id.is_empty() {
            self.join_new_member(entry, req, now_ms)
        } else {
            self.join_known_member(entry, req, now_ms)
        }
    }

    fn join_new_member(&self, entry: &mut Entry, req: JoinRequest, now_ms: i64) -> Joined {
        if entry.group.size() >= self.config.max_size {
            return Joined::Now(JoinResponse::error(GroupError::GroupMaxSizeReached, ""));
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let member_id = new_member_id(prefix);
        if req.require_known_member_id {
            // KIP-394: hand out the id first; the member rejoins with it within a session.
            entry.group.pending_members.insert(member_id.clone());
            entry.session_deadline_ms.insert(
                member_id.clone(),
                now_ms + i64::from(req.session_timeout_ms),
            );
            return Joined::Now(JoinResponse::error(
                GroupError::MemberIdRequired,
                &member_id,
            ));
        }
        self.add_member_and_rebalance(entry, req, member_id, now_ms)
    }

    fn join_known_member(&self, entry: &mut Entry, req: JoinRequest, now_ms: i64) -> Joined {
        let member_id = req.member_id.clone();
        if entry.group.pending_members.contains(&member_id) {
            return self.add_member_and_rebalance(entry, req, member_id, now_ms);
        }
        if !entry.group.has_member(&member_id) {
            return Joined::Now(JoinResponse::error(GroupError::UnknownMemberId, &member_id));
        }
        let state = entry.group.state();
        let changed = entry
            .group
            .member(&member_id)
            .is_some_and(|m| m.protocols != req.protocols);
        // Kafka's doJoinGroup for a known member: an unchanged member rejoining while the
        // group completes the rebalance, or a follower of a stable group, gets the current
        // generation back (its earlier JoinGroup answer was probably lost); anything else
        // (the leader of a stable group, new metadata) starts a rebalance.
        let resend = !changed
            && match state {
                GroupState::CompletingRebalance => true,
                GroupState::Stable => !entry.group.is_leader(&member_id),
                _ => false,
            };
        if resend {
            entry.touch(&member_id, now_ms);
            return Joined::Now(self.join_response(entry, &member_id));
        }
        self.update_member(entry, &req, now_ms);
        let (tx, rx) = oneshot::channel();
        entry.joins.insert(member_id, tx);
        self.prepare_rebalance(entry, now_ms);
        self.maybe_complete_join(entry, now_ms);
        Joined::Parked(rx)
    }

    fn update_member(&self, entry: &mut Entry, req: &JoinRequest, now_ms: i64) {
        if let Some(m) = entry.group.member_mut(&req.member_id) {
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.awaiting_join = true;
        }
        entry.touch(&req.member_id, now_ms);
    }

    fn add_member_and_rebalance(
        &self,
        entry: &mut Entry,
        req: JoinRequest,
        member_id: String,
        now_ms: i64,
    ) -> Joined {
        entry.group.add(Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
        });
        entry.touch(&member_id, now_ms);
        if entry.group.is(GroupState::PreparingRebalance) && entry.initial_delay.is_some() {
            entry.group.new_member_added = true;
        }
        let (tx, rx) = oneshot::channel();
        entry.joins.insert(member_id, tx);
        self.prepare_rebalance(entry, now_ms);
        self.maybe_complete_join(entry, now_ms);
        Joined::Parked(rx)
    }

    /// Starts a join phase (Kafka's `prepareRebalance`): parked syncs fail with
    /// REBALANCE_IN_PROGRESS; an Empty group first waits the initial rebalance delay.
    fn prepare_rebalance(&self, entry: &mut Entry, now_ms: i64) {
        if entry.group.is(GroupState::PreparingRebalance) {
            return;
        }
        if entry.group.is(GroupState::CompletingRebalance) {
            for (_, tx) in entry.syncs.drain() {
                let _ = tx.send(SyncResponse::error(GroupError::RebalanceInProgress));
            }
        }
        let was_empty = entry.group.is(GroupState::Empty);
        if entry
            .group
            .transition_to(GroupState::PreparingRebalance, now_ms)
            .is_err()
        {
            return;
        }
        let timeout = i64::from(entry.group.max_rebalance_timeout_ms());
        if was_empty && self.config.initial_rebalance_delay_ms > 0 {
            let delay = i64::from(self.config.initial_rebalance_delay_ms);
            entry.initial_delay = Some((now_ms + delay, (timeout - delay).max(0)));
            entry.group.new_member_added = false;
        } else {
            entry.initial_delay = None;
        }
        entry.join_deadline_ms = Some(now_ms + timeout);
        tracing::info!(group = %entry.group.group_id, generation = entry.group.generation_id,
            members = entry.group.size(), "preparing to rebalance");
    }

    /// Completes the join phase once everyone rejoined (outside the initial delay).
    fn maybe_complete_join(&self, entry: &mut Entry, now_ms: i64) {
        if entry.group.is(GroupState::PreparingRebalance)
            && entry.initial_delay.is_none()
            && entry.group.has_all_members_joined()
        {
            self.complete_join(entry, now_ms);
        }
    }

    /// Kafka's `onCompleteJoin`: members that did not rejoin are dropped, the next generation
    /// starts and every parked JoinGroup is answered (the leader with the member list).
    fn complete_join(&self, entry: &mut Entry, now_ms: i64) {
        for id in entry.group.not_yet_rejoined() {
            entry.group.remove(&id);
            entry.session_deadline_ms.remove(&id);
        }
        entry.initial_delay = None;
        entry.join_deadline_ms = None;
        if entry.group.init_next_generation(now_ms).is_err() {
            return;
        }
        if entry.group.is(GroupState::Empty) {
            // Everyone left: the new generation is recorded without waiting (Kafka's
            // onCompleteJoin stores an empty group the same way).
            let value = entry.group.to_record(|_| Bytes::new());
            self.writes.push(
                entry.partition,
                vec![group_record(&entry.group.group_id, &value)],
            );
        }
        tracing::info!(group = %entry.group.group_id, generation = entry.group.generation_id,
            protocol = ?entry.group.protocol_name, leader = ?entry.group.leader_id,
            members = entry.group.size(), "join phase complete");
        let waiting: Vec<(String, oneshot::Sender<JoinResponse>)> = entry.joins.drain().collect();
        for (member_id, tx) in waiting {
            entry.touch(&member_id, now_ms);
            let _ = tx.send(self.join_response(entry, &member_id));
        }
    }

    fn join_response(&self, entry: &Entry, member_id: &str) -> JoinResponse {
        let g = &entry.group;
        let members = if g.is_leader(member_id) {
            let protocol = g.protocol_name.clone().unwrap_or_default();
            g.members()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation_id: g.generation_id,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            leader: g.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// SyncGroup: in CompletingRebalance waits for the leader's assignment; in Stable returns
    /// the member's stored assignment. The leader's assignment is written to the log first and
    /// only then handed out, so a new coordinator can restore it.
    pub async fn sync(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> SyncResponse {
        let (rx, write) = {
            let mut groups = self.groups();
            let Some(entry) = groups.get_mut(group_id) else {
                return SyncResponse::error(GroupError::UnknownMemberId);
            };
            if !entry.group.has_member(member_id) {
                return SyncResponse::error(GroupError::UnknownMemberId);
            }
            if generation_id != entry.group.generation_id {
                return SyncResponse::error(GroupError::IllegalGeneration);
            }
            entry.touch(member_id, now_ms);
            match entry.group.state() {
                GroupState::Empty | GroupState::Dead => {
                    return SyncResponse::error(GroupError::UnknownMemberId)
                }
                GroupState::PreparingRebalance => {
                    return SyncResponse::error(GroupError::RebalanceInProgress)
                }
                GroupState::Stable => return self.sync_response(entry, member_id),
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            entry.syncs.insert(member_id.to_string(), tx);
            let write = entry.group.is_leader(member_id).then(|| {
                // Members the leader left out get an empty assignment.
                let assigned: HashMap<String, Bytes> = entry
                    .group
                    .members()
                    .map(|m| {
                        let a = assignments
                            .iter()
                            .find(|(id, _)| *id == m.member_id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                        (m.member_id.clone(), a)
                    })
                    .collect();
                let value = entry
                    .group
                    .to_record(|m| assigned.get(&m.member_id).cloned().unwrap_or_default());
                (entry.partition, group_record(group_id, &value), assigned)
            });
            (rx, write)
        };
        if let Some((partition, record, assigned)) = write {
            let stored = self.log.append(partition, vec![record]).await;
            self.finish_assignment(group_id, generation_id, assigned, stored, now_ms);
        }
        rx.await
            .unwrap_or_else(|_| SyncResponse::error(GroupError::RebalanceInProgress))
    }

    /// After the leader's group record was appended: hand the assignment out and go Stable,
    /// or, if the write failed, fail every parked SyncGroup and rebalance (Kafka's
    /// `resetAndPropagateAssignmentError` + `maybePrepareRebalance`). Nothing happens if the
    /// group moved on meanwhile.
    fn finish_assignment(
        &self,
        group_id: &str,
        generation_id: i32,
        assigned: HashMap<String, Bytes>,
        stored: Result<(), AppendError>,
        now_ms: i64,
    ) {
        let mut groups = self.groups();
        let Some(entry) = groups.get_mut(group_id) else {
            return;
        };
        if !entry.group.is(GroupState::CompletingRebalance)
            || entry.group.generation_id != generation_id
        {
            return;
        }
        match stored {
            Ok(()) => {
                for (id, a) in assigned {
                    if let Some(m) = entry.group.member_mut(&id) {
                        m.assignment = a;
                    }
                }
                if entry
                    .group
                    .transition_to(GroupState::Stable, now_ms)
                    .is_ok()
                {
                    tracing::info!(group = %group_id, generation = generation_id,
                        "assignment stored; group stable");
                    let waiting: Vec<(String, oneshot::Sender<SyncResponse>)> =
                        entry.syncs.drain().collect();
                    for (id, tx) in waiting {
                        let _ = tx.send(self.sync_response(entry, &id));
                    }
                }
            }
            Err(append_error) => {
                let error = GroupError::from_group_store(&append_error);
                tracing::warn!(group = %group_id, generation = generation_id, %append_error,
                    %error, "storing the assignment failed; rebalancing");
                for (_, tx) in entry.syncs.drain() {
                    let _ = tx.send(SyncResponse::error(error));
                }
                self.prepare_rebalance(entry, now_ms);
            }
        }
    }

    fn sync_response(&self, entry: &Entry, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: entry.group.protocol_type.clone(),
            protocol_name: entry.group.protocol_name.clone(),
            assignment: entry
                .group
                .member(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat: keeps the session alive and tells the member when to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let mut groups = self.groups();
        let Some(entry) = groups.get_mut(group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if !entry.group.has_member(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        // Kafka's handleHeartbeat, state by state.
        match entry.group.state() {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance => {
                entry.touch(member_id, now_ms);
                Err(GroupError::RebalanceInProgress)
            }
            _ if generation_id != entry.group.generation_id => Err(GroupError::IllegalGeneration),
            GroupState::PreparingRebalance => {
                entry.touch(member_id, now_ms);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::Stable => {
                entry.touch(member_id, now_ms);
                Ok(())
            }
        }
    }

    /// LeaveGroup for one member.
    pub fn leave(&self, group_id: &str, member_id: &str, now_ms: i64) -> Result<(), GroupError> {
        let mut groups = self.groups();
        let Some(entry) = groups.get_mut(group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if entry.group.pending_members.remove(member_id) {
            entry.session_deadline_ms.remove(member_id);
            return Ok(());
        }
        if !entry.group.has_member(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        tracing::info!(group = %group_id, member = %member_id, "member left");
        self.remove_member_and_rebalance(entry, member_id, now_ms);
        Ok(())
    }

    fn remove_member_and_rebalance(&self, entry: &mut Entry, member_id: &str, now_ms: i64) {
        entry.group.remove(member_id);
        entry.session_deadline_ms.remove(member_id);
        if let Some(tx) = entry.joins.remove(member_id) {
            let _ = tx.send(JoinResponse::error(GroupError::UnknownMemberId, member_id));
        }
        match entry.group.state() {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(entry, now_ms);
                self.maybe_complete_join(entry, now_ms);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(entry, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Expires sessions, pending member ids, the initial delay and join deadlines at `now_ms`.
    pub fn tick(&self, now_ms: i64) {
        let mut groups = self.groups();
        for entry in groups.values_mut() {
            let expired: Vec<String> = entry
                .session_deadline_ms
                .iter()
                .filter(|(id, deadline)| {
                    // A member parked in JoinGroup or SyncGroup is kept alive, as Kafka does.
                    **deadline < now_ms
                        && !entry.joins.contains_key(*id)
                        && !entry.syncs.contains_key(*id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                if entry.group.pending_members.remove(&id) {
                    entry.session_deadline_ms.remove(&id);
                    self.maybe_complete_join(entry, now_ms);
                    continue;
                }
                tracing::info!(group = %entry.group.group_id, member = %id,
                    "member session expired");
                self.remove_member_and_rebalance(entry, &id, now_ms);
            }
            if let Some((end, remaining)) = entry.initial_delay {
                if now_ms >= end {
                    let delay = i64::from(self.config.initial_rebalance_delay_ms);
                    if entry.group.new_member_added && remaining > 0 {
                        let next = delay.min(remaining);
                        entry.initial_delay = Some((now_ms + next, remaining - next));
                        entry.group.new_member_added = false;
                    } else {
                        entry.initial_delay = None;
                        self.maybe_complete_join(entry, now_ms);
                    }
                }
            }
            if entry.join_deadline_ms.is_some_and(|d| now_ms >= d)
                && entry.group.is(GroupState::PreparingRebalance)
            {
                self.complete_join(entry, now_ms);
            }
        }
    }

    /// Calls [`Membership::tick`] every 100 ms until `shutdown`.
    pub async fn run_ticker(self, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = every.tick() => self.tick(now_ms()),
            }
        }
    }
}

/// The record that stores `value` for `group_id`.
pub(super) fn group_record(group_id: &str, value: &records::GroupValue) -> Record {
    (
        records::group_key(group_id),
        Some(records::group_value(value)),
    )
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
