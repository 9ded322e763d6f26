//! Membership rules driven with explicit clock values: MEMBER_ID_REQUIRED, the initial
//! rebalance delay, leader election and the leader-only member list, SyncGroup hand-out, a
//! joiner's rebalance, LeaveGroup, session expiry and the error answers.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::coordinator::store::MemoryGroupLog;
use crate::replication::ReplicaError;

/// A membership engine over an in-memory log (the log's records are inspected by the tests).
fn membership() -> (Membership, MemoryGroupLog) {
    let log = MemoryGroupLog::default();
    (
        Membership::new(MembershipConfig::default(), Arc::new(log.clone())),
        log,
    )
}

fn join_req(member_id: &str, protocols: &[&str], v4: bool) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{member_id}-{p}"))))
            .collect(),
        require_known_member_id: v4,
    }
}

/// Starts a join on its own task so the test can advance the clock while it is parked.
fn spawn_join(m: &Membership, req: JoinRequest, now: i64) -> tokio::task::JoinHandle<JoinResponse> {
    let m = m.clone();
    tokio::spawn(async move { m.join(req, now).await })
}

/// A follower's SyncGroup (generation 1, t=7000) on its own task: it parks until the leader's.
fn spawn_follower_sync(m: &Membership, member_id: &str) -> tokio::task::JoinHandle<SyncResponse> {
    let m = m.clone();
    let id = member_id.to_string();
    tokio::spawn(async move { m.sync("g", 1, &id, vec![], 7000).await })
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Two members join a new group (v4 flow); returns (leader response, follower response).
async fn two_member_group(m: &Membership) -> (JoinResponse, JoinResponse) {
    let first = m.join(join_req("", &["range"], true), 0).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    let a = spawn_join(m, join_req(&first.member_id, &["range"], true), 10);
    settle().await;
    let second = m.join(join_req("", &["range"], true), 20).await;
    let b = spawn_join(m, join_req(&second.member_id, &["range"], true), 30);
    settle().await;
    // Still inside the initial delay (3 s from t=10): nobody answered.
    m.tick(2000);
    settle().await;
    assert!(!a.is_finished() && !b.is_finished());
    // The delay is extended once because a member arrived during it, then completes.
    m.tick(3010);
    settle().await;
    assert!(!a.is_finished());
    m.tick(6010);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    (a, b)
}

#[tokio::test]
async fn join_elects_the_first_member_and_only_the_leader_sees_members() {
    let m = membership().0;
    let (a, b) = two_member_group(&m).await;
    assert_eq!(a.error, None);
    assert_eq!(b.error, None);
    assert_eq!(a.generation_id, 1);
    assert_eq!(a.leader, a.member_id, "the first member to join leads");
    assert_eq!(b.leader, a.member_id);
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    assert_eq!(a.members.len(), 2);
    assert!(b.members.is_empty(), "followers do not get the member list");
    let meta: Vec<&Bytes> = a.members.iter().map(|x| &x.2).collect();
    assert!(meta.contains(&&Bytes::from(format!("meta-{}-range", b.member_id))));
    assert_eq!(
        m.group_state("g").unwrap().0,
        GroupState::CompletingRebalance
    );
}

#[tokio::test]
async fn sync_hands_out_the_leaders_assignment() {
    let (m, log) = membership();
    let (a, b) = two_member_group(&m).await;
    let follower = spawn_follower_sync(&m, &b.member_id);
    settle().await;
    assert!(!follower.is_finished(), "the follower waits for the leader");
    assert_eq!(
        m.heartbeat("g", 1, &b.member_id, 7000),
        Err(GroupError::RebalanceInProgress)
    );
    let assignments = vec![
        (a.member_id.clone(), Bytes::from_static(b"p0,p1,p2")),
        (b.member_id.clone(), Bytes::from_static(b"p3,p4,p5")),
    ];
    let leader = m.sync("g", 1, &a.member_id, assignments, 7100).await;
    assert_eq!(leader.assignment, Bytes::from_static(b"p0,p1,p2"));
    let follower = follower.await.unwrap();
    assert_eq!(follower.error, None);
    assert_eq!(follower.assignment, Bytes::from_static(b"p3,p4,p5"));
    assert_eq!(m.group_state("g").unwrap().0, GroupState::Stable);
    // The assignment was written, as a group record in the group's partition, before it was
    // handed out.
    let appended = log.appended.lock().unwrap().clone();
    assert_eq!(appended.len(), 1);
    let (partition, recs) = &appended[0];
    assert_eq!(*partition, crate::coordinator::hash::partition_for("g", 50));
    assert_eq!(
        records::decode_key(&recs[0].0).unwrap(),
        records::RecordKey::Group { group: "g".into() }
    );
    let value = records::decode_group_value(recs[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(value.generation, 1);
    assert_eq!(value.protocol.as_deref(), Some("range"));
    assert_eq!(value.leader.as_deref(), Some(a.member_id.as_str()));
    let stored: Vec<(&str, &[u8])> = value
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.assignment.as_ref()))
        .collect();
    assert!(stored.contains(&(a.member_id.as_str(), b"p0,p1,p2".as_slice())));
    assert!(stored.contains(&(b.member_id.as_str(), b"p3,p4,p5".as_slice())));
    assert_eq!(m.heartbeat("g", 1, &b.member_id, 7200), Ok(()));
    assert_eq!(
        m.heartbeat("g", 0, &b.member_id, 7200),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        m.heartbeat("g", 1, "nobody", 7200),
        Err(GroupError::UnknownMemberId)
    );
    // A stable follower asking again gets its assignment back.
    let again = m.sync("g", 1, &b.member_id, vec![], 7300).await;
    assert_eq!(again.assignment, Bytes::from_static(b"p3,p4,p5"));
    assert_eq!(
        m.sync("g", 5, &b.member_id, vec![], 7300).await.error,
        Some(GroupError::IllegalGeneration)
    );
}

async fn stable_two_member_group(m: &Membership) -> (JoinResponse, JoinResponse) {
    let (a, b) = two_member_group(m).await;
    let f = spawn_follower_sync(m, &b.member_id);
    settle().await;
    m.sync("g", 1, &a.member_id, vec![], 7000).await;
    f.await.unwrap();
    (a, b)
}

#[tokio::test]
async fn a_joiner_triggers_a_rebalance_that_completes_when_all_rejoined() {
    let m = membership().0;
    let (a, b) = stable_two_member_group(&m).await;
    let c_id = m.join(join_req("", &["range"], true), 8000).await.member_id;
    let c = spawn_join(&m, join_req(&c_id, &["range"], true), 8010);
    settle().await;
    assert_eq!(
        m.group_state("g").unwrap().0,
        GroupState::PreparingRebalance
    );
    // Existing members learn through their heartbeat and rejoin.
    assert_eq!(
        m.heartbeat("g", 1, &a.member_id, 8100),
        Err(GroupError::RebalanceInProgress)
    );
    let ja = spawn_join(&m, join_req(&a.member_id, &["range"], true), 8200);
    settle().await;
    assert!(!ja.is_finished());
    let jb = m.join(join_req(&b.member_id, &["range"], true), 8300).await;
    let (ja, jc) = (ja.await.unwrap(), c.await.unwrap());
    assert_eq!(jb.generation_id, 2);
    assert_eq!(ja.generation_id, 2);
    assert_eq!(jc.generation_id, 2);
    assert_eq!(ja.leader, a.member_id, "the leader keeps leading");
    assert_eq!(ja.members.len(), 3);
}

#[tokio::test]
async fn leave_and_session_expiry_rebalance_the_rest() {
    let m = membership().0;
    let (a, b) = stable_two_member_group(&m).await;
    // The leader leaves: the follower takes over after rejoining.
    assert_eq!(m.leave("g", &a.member_id, 8000), Ok(()));
    assert_eq!(
        m.group_state("g").unwrap().0,
        GroupState::PreparingRebalance
    );
    let jb = m.join(join_req(&b.member_id, &["range"], true), 8100).await;
    assert_eq!(jb.generation_id, 2);
    assert_eq!(jb.leader, b.member_id);
    assert_eq!(
        m.leave("g", &a.member_id, 8200),
        Err(GroupError::UnknownMemberId)
    );
    m.sync("g", 2, &b.member_id, vec![], 8200).await;

    // No heartbeat for longer than the 10 s session: removed, the group is Empty.
    m.tick(8200 + 9_000);
    assert_eq!(m.group_state("g").unwrap().3, 1);
    m.tick(8200 + 10_001);
    let (state, generation, _, size) = m.group_state("g").unwrap();
    assert_eq!(size, 0);
    assert_eq!(state, GroupState::Empty);
    assert_eq!(generation, 3);
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let m = membership().0;
    let (a, b) = stable_two_member_group(&m).await;
    let ja = spawn_join(&m, join_req(&a.member_id, &["range"], true), 8000);
    settle().await;
    // b keeps heartbeating but never rejoins; the phase ends after the 30 s rebalance timeout.
    for t in (9000..38_000).step_by(3000) {
        assert_eq!(
            m.heartbeat("g", 1, &b.member_id, t),
            Err(GroupError::RebalanceInProgress)
        );
        m.tick(t);
    }
    settle().await;
    assert!(!ja.is_finished());
    m.tick(38_001);
    let ja = ja.await.unwrap();
    assert_eq!(ja.generation_id, 2);
    assert_eq!(ja.members.len(), 1);
    assert_eq!(
        m.heartbeat("g", 2, &b.member_id, 38_100),
        Err(GroupError::UnknownMemberId)
    );
}

#[tokio::test]
async fn bad_joins_are_refused() {
    let m = membership().0;
    let mut r = join_req("", &["range"], false);
    r.session_timeout_ms = 5999;
    assert_eq!(
        m.join(r, 0).await.error,
        Some(GroupError::InvalidSessionTimeout)
    );
    assert_eq!(
        m.join(join_req("ghost", &["range"], false), 0).await.error,
        Some(GroupError::UnknownMemberId)
    );
    let mut empty = join_req("", &[], false);
    empty.protocol_type = "consumer".into();
    assert_eq!(
        m.join(empty, 0).await.error,
        Some(GroupError::InconsistentGroupProtocol)
    );

    // A v3 join is added at once (no MEMBER_ID_REQUIRED round trip).
    let j = spawn_join(&m, join_req("", &["range"], false), 0);
    settle().await;
    let mut other = join_req("", &["roundrobin"], false);
    other.group_id = "g".into();
    assert_eq!(
        m.join(other, 10).await.error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    m.tick(3001);
    let j = j.await.unwrap();
    assert_eq!(j.error, None);
    assert_eq!(j.generation_id, 1);
}

#[tokio::test]
async fn a_failed_assignment_write_fails_the_syncs_and_rebalances() {
    let (m, log) = membership();
    let (a, b) = two_member_group(&m).await;
    *log.fail_with.lock().unwrap() = Some(ReplicaError::NotLeader.into());
    let follower = spawn_follower_sync(&m, &b.member_id);
    settle().await;
    let leader = m
        .sync(
            "g",
            1,
            &a.member_id,
            vec![(a.member_id.clone(), Bytes::from_static(b"x"))],
            7100,
        )
        .await;
    assert_eq!(
        leader.error,
        Some(GroupError::NotCoordinator),
        "NOT_LEADER maps to NOT_COORDINATOR"
    );
    assert_eq!(
        follower.await.unwrap().error,
        Some(GroupError::NotCoordinator)
    );
    assert_eq!(
        m.group_state("g").unwrap().0,
        GroupState::PreparingRebalance
    );
}

#[tokio::test]
async fn a_group_everyone_left_is_recorded_empty() {
    let m = membership().0;
    let (a, b) = stable_two_member_group(&m).await;
    assert_eq!(m.leave("g", &a.member_id, 8000), Ok(()));
    assert_eq!(m.leave("g", &b.member_id, 8001), Ok(()));
    let (state, generation, _, size) = m.group_state("g").unwrap();
    assert_eq!((state, size), (GroupState::Empty, 0));
    let queued = m.writes.drain();
    let last = queued.last().expect("an empty-group record is queued");
    let value = records::decode_group_value(last.1[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(value.generation, generation);
    assert!(value.members.is_empty());
    assert_eq!(value.protocol, None);
    assert_eq!(value.protocol_type, "consumer");
}
