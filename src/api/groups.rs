//! The group membership APIs (reference §7): FindCoordinator (10) v0–2, JoinGroup (11) v0–5,
//! SyncGroup (14) v0–3, Heartbeat (12) v0–3, LeaveGroup (13) v0–3, DescribeGroups (15) v0–4 and
//! ListGroups (16) v0–3. Each group request first asks the coordinator whether this broker serves
//! the group (NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS otherwise).

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codes::{self, group_code};
use super::metadata::{ensure_internal_topic, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use super::{ApiContext, ApiError, Req, Response};
use crate::coordinator::membership::JoinRequest;
use crate::coordinator::GroupError;
use crate::util::clock::now_ms;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// The broker that coordinates `key` (a group id, or a transactional id when
/// `transactional`): (node id, host, port), or the error to answer. The internal topic is
/// created on first use, as Kafka does.
async fn locate(
    ctx: &ApiContext,
    key: &str,
    transactional: bool,
) -> Result<(i32, String, i32), ResponseError> {
    let (topic, partition) = if transactional {
        (
            TRANSACTION_STATE_TOPIC,
            ctx.txn_coordinator.partition_for(key),
        )
    } else {
        (OFFSETS_TOPIC, ctx.coordinator.partition_for(key))
    };
    let snap = ctx.metadata.snapshot();
    if !snap.topics.contains_key(topic) {
        ensure_internal_topic(ctx, topic).await;
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let leader = snap
        .partition(topic, partition)
        .map(|p| p.leader)
        .filter(|l| *l >= 0)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let broker = snap
        .brokers
        .get(&leader)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let ep = broker
        .endpoint(&ctx.listener)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((leader, ep.host.clone(), ep.port))
}

pub(super) async fn find_coordinator(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: FindCoordinatorRequest = req.decode()?;
    let key = request.key.as_str();
    let key_type = if req.version >= 1 {
        request.key_type
    } else {
        0
    };
    let found = if !matches!(key_type, 0 | 1) {
        tracing::debug!(key, key_type, "FindCoordinator for an unknown key type");
        Err(ResponseError::InvalidRequest)
    } else if key.is_empty() {
        Err(ResponseError::InvalidRequest)
    } else {
        locate(ctx, key, key_type == 1).await
    };
    let mut resp = FindCoordinatorResponse::default();
    match found {
        Ok((node, host, port)) => {
            resp.node_id = BrokerId(node);
            resp.host = s(host);
            resp.port = port;
        }
        Err(error) => {
            resp.error_code = error.code();
            resp.node_id = BrokerId(-1);
            resp.port = -1;
            if req.version >= 1 {
                resp.error_message = Some(s(match error {
                    ResponseError::InvalidRequest if !key.is_empty() => {
                        "the key type must be 0 (group) or 1 (transaction)"
                    }
                    ResponseError::InvalidRequest => "the key is empty",
                    _ => "the coordinator is not available",
                }));
            }
        }
    }
    req.respond(&resp)
}

pub(super) async fn join_group(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: JoinGroupRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let answer = |error: Option<GroupError>| {
        let mut r = JoinGroupResponse::default();
        r.error_code = group_code(error);
        r.generation_id = -1;
        r.member_id = s(member_id.clone());
        r
    };
    if let Err(e) = ctx.coordinator.check(&group_id) {
        return req.respond(&answer(Some(e)));
    }
    // KIP-394: v4+ members without a static instance id first get MEMBER_ID_REQUIRED.
    let require_known_member_id = req.version >= 4 && request.group_instance_id.is_none();
    let join = JoinRequest {
        group_id,
        member_id: member_id.clone(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: req.client_id.clone(),
        client_host: req.client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout bounds the join phase.
        rebalance_timeout_ms: if req.version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id,
    };
    let r = ctx.coordinator.membership().join(join, now_ms()).await;
    let mut resp = answer(r.error);
    resp.generation_id = r.generation_id;
    resp.protocol_name = r.protocol_name.map(s);
    resp.leader = s(r.leader);
    resp.member_id = s(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = s(id);
            m.group_instance_id = instance.map(s);
            m.metadata = metadata;
            m
        })
        .collect();
    req.respond(&resp)
}

pub(super) async fn sync_group(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: SyncGroupRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let mut resp = SyncGroupResponse::default();
    if let Err(e) = ctx.coordinator.check(&group_id) {
        resp.error_code = codes::group(e).code();
        return req.respond(&resp);
    }
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let r = ctx
        .coordinator
        .membership()
        .sync(
            &group_id,
            request.generation_id,
            request.member_id.as_str(),
            assignments,
            now_ms(),
        )
        .await;
    resp.error_code = group_code(r.error);
    resp.assignment = r.assignment;
    req.respond(&resp)
}

pub(super) fn heartbeat(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: HeartbeatRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let mut resp = HeartbeatResponse::default();
    let outcome = ctx.coordinator.check(&group_id).and_then(|()| {
        ctx.coordinator.membership().heartbeat(
            &group_id,
            request.generation_id,
            request.member_id.as_str(),
            now_ms(),
        )
    });
    resp.error_code = group_code(outcome.err());
    req.respond(&resp)
}

pub(super) fn leave_group(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: LeaveGroupRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let mut resp = LeaveGroupResponse::default();
    if let Err(e) = ctx.coordinator.check(&group_id) {
        resp.error_code = codes::group(e).code();
        return req.respond(&resp);
    }
    let m = ctx.coordinator.membership();
    if req.version < 3 {
        resp.error_code = group_code(
            m.leave(&group_id, request.member_id.as_str(), now_ms())
                .err(),
        );
    } else {
        // v3+: a batch of members, each with its own error.
        resp.members = request
            .members
            .into_iter()
            .map(|id| {
                let mut r = MemberResponse::default();
                r.error_code =
                    group_code(m.leave(&group_id, id.member_id.as_str(), now_ms()).err());
                r.member_id = id.member_id;
                r.group_instance_id = id.group_instance_id;
                r
            })
            .collect();
    }
    req.respond(&resp)
}

pub(super) fn describe_groups(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: DescribeGroupsRequest = req.decode()?;
    let mut resp = DescribeGroupsResponse::default();
    resp.groups = request
        .groups
        .into_iter()
        .map(|id| {
            let group_id = id.0.to_string();
            let mut g = DescribedGroup::default();
            g.group_id = id;
            // No authorizer: "unknown operations", as Kafka without one.
            g.authorized_operations = i32::MIN;
            if let Err(e) = ctx.coordinator.check(&group_id) {
                g.error_code = codes::group(e).code();
                g.group_state = s("");
                return g;
            }
            let d = ctx.coordinator.membership().describe(&group_id);
            g.group_state = s(d.state);
            g.protocol_type = s(d.protocol_type);
            g.protocol_data = s(d.protocol);
            g.members = d
                .members
                .into_iter()
                .map(
                    |(member_id, instance, client_id, host, metadata, assignment)| {
                        let mut m = DescribedGroupMember::default();
                        m.member_id = s(member_id);
                        m.group_instance_id = instance.map(s);
                        m.client_id = s(client_id);
                        m.client_host = s(host);
                        m.member_metadata = metadata;
                        m.member_assignment = assignment;
                        m
                    },
                )
                .collect();
            g
        })
        .collect();
    req.respond(&resp)
}

pub(super) fn list_groups(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let _request: ListGroupsRequest = req.decode()?;
    let mut resp = ListGroupsResponse::default();
    let (partitions, loading) = ctx.coordinator.loaded_partitions();
    if loading {
        // Kafka answers the whole request this way while any partition loads.
        resp.error_code = codes::group(GroupError::LoadInProgress).code();
    }
    resp.groups = ctx
        .coordinator
        .membership()
        .list(&partitions)
        .into_iter()
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(s(id));
            g.protocol_type = s(protocol_type);
            g.group_state = s(state);
            g
        })
        .collect();
    req.respond(&resp)
}
