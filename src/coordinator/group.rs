//! One consumer group's state (Kafka's `GroupMetadata`): the state machine of reference §7
//! (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead), its members, the group leader,
//! the generation and protocol selection. Pure data: the coordinator owns the timers, the
//! parked requests and the writes to `__consumer_offsets`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::records::{GroupValue, MemberValue, OffsetValue};

/// A group's state; see [`GroupState::can_follow`] for the allowed transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's `validPreviousStates`.
    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Empty, Stable, CompletingRebalance],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Empty, PreparingRebalance, CompletingRebalance, Stable, Dead],
        }
    }

    /// Whether `self` may be entered from `from`.
    pub fn can_follow(self, from: GroupState) -> bool {
        self.valid_previous().contains(&from)
    }

    /// The name DescribeGroups/ListGroups report (Kafka's `GroupState.toString`).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A transition the state machine does not allow; a coordinator bug if it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("group {group_state:?} cannot move to {to:?}")]
pub struct IllegalTransition {
    pub group_state: GroupState,
    pub to: GroupState,
}

/// One member as the coordinator tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Joined in the current join phase (Kafka: `awaitingJoinCallback` set).
    pub awaiting_join: bool,
    /// Sent SyncGroup in the current sync phase.
    pub awaiting_sync: bool,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

/// A consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    pub group_id: String,
    state: GroupState,
    /// When the group entered its current state (ms since the epoch).
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// Members by id; `join_order` keeps the order they were added, which decides who takes
    /// over as leader.
    members: BTreeMap<String, Member>,
    join_order: Vec<String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet joined with.
    pub pending_members: BTreeSet<String>,
    /// A member joined an Empty group during the initial rebalance delay.
    pub new_member_added: bool,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// TxnOffsetCommit offsets by producer id, invisible until its COMMIT marker.
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
}

impl Group {
    pub fn new(group_id: impl Into<String>, now_ms: i64) -> Self {
        Self {
            group_id: group_id.into(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            generation_id: 0,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            join_order: Vec::new(),
            pending_members: BTreeSet::new(),
            new_member_added: false,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    /// Rebuilds a group from its `__consumer_offsets` record (Kafka's `GroupMetadata.loadGroup`):
    /// Empty without members, else Stable with the stored generation, leader and assignments.
    pub fn from_record(group_id: &str, v: &GroupValue, now_ms: i64) -> Self {
        let mut g = Group::new(group_id, v.current_state_timestamp.unwrap_or(now_ms));
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.generation_id = v.generation;
        g.protocol_name = v.protocol.clone();
        for m in &v.members {
            let protocol = v.protocol.clone().unwrap_or_default();
            g.join_order.push(m.member_id.clone());
            g.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocol_type: v.protocol_type.clone(),
                    protocols: vec![(protocol, m.subscription.clone())],
                    assignment: m.assignment.clone(),
                    awaiting_join: false,
                    awaiting_sync: false,
                },
            );
        }
        g.leader_id = v.leader.clone().filter(|l| g.members.contains_key(l));
        if !g.members.is_empty() {
            g.state = GroupState::Stable;
        }
        g
    }

    /// The group's record (Kafka's `groupMetadataValue`), with `assignment` deciding each
    /// member's stored assignment.
    pub fn to_record(&self, assignment: impl Fn(&Member) -> Bytes) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp: Some(self.state_timestamp_ms),
            members: self
                .members()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms,
                    session_timeout: m.session_timeout_ms,
                    subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                    assignment: assignment(m),
                })
                .collect(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Moves to `to` if the state machine allows it.
    ///
    /// # Errors
    /// The transition is not allowed from the current state.
    pub fn transition_to(&mut self, to: GroupState, now_ms: i64) -> Result<(), IllegalTransition> {
        if !to.can_follow(self.state) {
            return Err(IllegalTransition {
                group_state: self.state,
                to,
            });
        }
        self.state = to;
        self.state_timestamp_ms = now_ms;
        Ok(())
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.get_mut(member_id)
    }

    /// Members in the order they joined.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.join_order.iter().filter_map(|id| self.members.get(id))
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Adds a member; the first member of a leaderless group becomes its leader. An Empty group
    /// adopts the member's protocol type.
    pub fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.join_order.push(member.member_id.clone());
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; if it led, the longest-standing remaining member takes over.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id)?;
        self.join_order.retain(|id| id != member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.join_order.first().cloned();
        }
        Some(removed)
    }

    /// Whether a joining member's protocols fit the group (Kafka's `supportsProtocols`): an empty
    /// group takes any non-empty offer; otherwise the type must match and at least one of the
    /// offered protocols must be supported by every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[String]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(p)))
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member votes
    /// for the first of its own preferences; the most votes win (ties go to the protocol that
    /// comes first in the longest-standing member's preferences, so the choice is stable).
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|p| self.members.values().all(|m| m.supports(p)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c) == Some(&best))
            .map(str::to_string)
    }

    /// The longest rebalance timeout of the members: how long the join phase may wait.
    pub fn max_rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Every known member has rejoined and no handed-out member id is still pending.
    pub fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join) && self.pending_members.is_empty()
    }

    /// Members that did not rejoin in this join phase.
    pub fn not_yet_rejoined(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.member_id.clone())
            .collect()
    }

    /// Completes a join phase (Kafka's `initNextGeneration`): generation + 1, then with members
    /// the protocol is chosen and the group waits for SyncGroup (CompletingRebalance); without
    /// members it becomes Empty with no protocol.
    ///
    /// # Errors
    /// Called outside PreparingRebalance.
    pub fn init_next_generation(&mut self, now_ms: i64) -> Result<(), IllegalTransition> {
        let next = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::CompletingRebalance
        };
        if !next.can_follow(self.state) {
            return Err(IllegalTransition {
                group_state: self.state,
                to: next,
            });
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
        } else {
            self.protocol_name = self.select_protocol();
        }
        if !self.leader_id.as_ref().is_some_and(|l| self.has_member(l)) {
            self.leader_id = self.join_order.first().cloned();
        }
        for m in self.members.values_mut() {
            m.awaiting_join = false;
            m.awaiting_sync = false;
        }
        self.transition_to(next, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GroupState::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"m")))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
        }
    }

    #[test]
    fn transitions_follow_kafkas_table() {
        let all = [Empty, PreparingRebalance, CompletingRebalance, Stable, Dead];
        let allowed = |to: GroupState, from: GroupState| match to {
            Empty => from == PreparingRebalance,
            PreparingRebalance => matches!(from, Empty | Stable | CompletingRebalance),
            CompletingRebalance => from == PreparingRebalance,
            Stable => from == CompletingRebalance,
            Dead => true,
        };
        for to in all {
            for from in all {
                assert_eq!(to.can_follow(from), allowed(to, from), "{from:?} -> {to:?}");
            }
        }
        let mut g = Group::new("g", 0);
        assert!(g.transition_to(Stable, 1).is_err());
        g.transition_to(PreparingRebalance, 2).unwrap();
        assert_eq!(g.state_timestamp_ms, 2);
        assert!(g.transition_to(PreparingRebalance, 3).is_err());
    }

    #[test]
    fn first_member_leads_and_leadership_passes_on() {
        let mut g = Group::new("g", 0);
        g.add(member("a", &["range"]));
        g.add(member("b", &["range"]));
        g.add(member("c", &["range"]));
        assert!(g.is_leader("a"));
        assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
        g.remove("b");
        assert!(g.is_leader("a"));
        g.remove("a");
        assert!(g.is_leader("c"));
        g.remove("c");
        assert_eq!(g.leader_id, None);
    }

    #[test]
    fn protocol_support_and_selection() {
        let mut g = Group::new("g", 0);
        assert!(!g.supports_protocols("", &["range".into()]));
        assert!(!g.supports_protocols("consumer", &[]));
        assert!(g.supports_protocols("consumer", &["range".into()]));
        g.add(member("a", &["roundrobin", "range"]));
        g.add(member("b", &["range", "roundrobin"]));
        g.add(member("c", &["range", "sticky"]));
        // Only "range" is supported by all three.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        assert!(g.supports_protocols("consumer", &["sticky".into(), "range".into()]));
        assert!(!g.supports_protocols("consumer", &["sticky".into()]));
        assert!(!g.supports_protocols("connect", &["range".into()]));

        let mut g = Group::new("g", 0);
        g.add(member("a", &["roundrobin", "range"]));
        g.add(member("b", &["roundrobin", "range"]));
        g.add(member("c", &["range", "roundrobin"]));
        // Both candidates are common; two votes for roundrobin, one for range.
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
    }

    #[test]
    fn next_generation_completes_or_empties() {
        let mut g = Group::new("g", 0);
        g.transition_to(PreparingRebalance, 1).unwrap();
        g.add(member("a", &["range"]));
        g.add(member("b", &["range"]));
        assert!(g.has_all_members_joined());
        g.init_next_generation(5).unwrap();
        assert_eq!(g.state(), CompletingRebalance);
        assert_eq!(g.generation_id, 1);
        assert_eq!(g.protocol_name.as_deref(), Some("range"));
        assert!(
            !g.has_all_members_joined(),
            "join flags reset for the next phase"
        );

        g.transition_to(Stable, 6).unwrap();
        g.transition_to(PreparingRebalance, 7).unwrap();
        assert_eq!(g.not_yet_rejoined().len(), 2);
        g.remove("a");
        g.remove("b");
        g.init_next_generation(8).unwrap();
        assert_eq!(g.state(), Empty);
        assert_eq!(g.generation_id, 2);
        assert_eq!(g.protocol_name, None);
        assert!(
            g.init_next_generation(9).is_err(),
            "only from PreparingRebalance"
        );
    }

    #[test]
    fn pending_member_holds_the_join_phase() {
        let mut g = Group::new("g", 0);
        g.transition_to(PreparingRebalance, 1).unwrap();
        g.add(member("a", &["range"]));
        g.pending_members.insert("b".into());
        assert!(!g.has_all_members_joined());
        g.add(member("b", &["range"]));
        assert!(g.has_all_members_joined());
        assert_eq!(g.max_rebalance_timeout_ms(), 30_000);
    }
}
