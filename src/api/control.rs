//! The controller-to-broker requests: LeaderAndIsr (4) v0–4, UpdateMetadata (6) v0–6 and
//! StopReplica (5) v0–3 (reference §4).
//!
//! Each checks the broker epoch (STALE_BROKER_EPOCH when the request targets an older session of
//! this broker) and the controller epoch (STALE_CONTROLLER_EPOCH when a newer controller has
//! already spoken), which is what fences a zombie controller.

use kafka_protocol::messages::leader_and_isr_request::LeaderAndIsrPartitionState;
use kafka_protocol::messages::leader_and_isr_response::{
    LeaderAndIsrPartitionError, LeaderAndIsrResponse,
};
use kafka_protocol::messages::stop_replica_response::{
    StopReplicaPartitionError, StopReplicaResponse,
};
use kafka_protocol::messages::update_metadata_request::UpdateMetadataPartitionState;
use kafka_protocol::messages::{
    LeaderAndIsrRequest, StopReplicaRequest, TopicName, UpdateMetadataRequest,
    UpdateMetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codes::NONE;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::common::NO_EPOCH;
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::coordinator::transaction::TRANSACTION_STATE_TOPIC;
use crate::log::TopicPartition;
use crate::metadata::{Endpoint, LiveBroker, PartitionInfo};
use crate::replication::LeaderAndIsrState;

/// CLUSTER_AUTHORIZATION_FAILED for a controller request on a listener other than the
/// configured `control.plane.listener.name`.
pub(super) fn control_plane_error(ctx: &ApiContext, what: &str) -> Option<i16> {
    if ctx.config.accepts_control_requests(&ctx.listener) {
        return None;
    }
    tracing::warn!(listener = %ctx.listener, request = what,
        control_plane = ?ctx.config.control_plane_listener_name,
        "refusing a controller request that did not come on the control-plane listener");
    Some(ResponseError::ClusterAuthorizationFailed.code())
}

/// -1 in a request means "epoch unknown", which Kafka accepts.
fn broker_epoch_is_stale(ctx: &ApiContext, request_epoch: i64) -> bool {
    request_epoch != -1 && request_epoch < ctx.broker_epoch()
}

/// The request-level fencing every control request gets: a stale broker epoch (when the
/// version carries one), then a stale controller epoch. `None` means accepted.
fn fencing_error(
    ctx: &ApiContext,
    broker_epoch: Option<i64>,
    controller_id: i32,
    controller_epoch: i32,
    what: &str,
) -> Option<i16> {
    // First, before any epoch is adopted: with a control plane (KIP-291) configured, the
    // controller's requests come only on its listener; on a client listener they are someone
    // else's, refused as unauthorised.
    if let Some(code) = control_plane_error(ctx, what) {
        return Some(code);
    }
    if broker_epoch.is_some_and(|e| broker_epoch_is_stale(ctx, e)) {
        return Some(ResponseError::StaleBrokerEpoch.code());
    }
    if let Err(e) = ctx.replicas.check_controller_epoch(controller_epoch) {
        tracing::warn!(controller = controller_id, error = %e, request = what,
            "rejecting a request from a stale controller");
        return Some(ResponseError::StaleControllerEpoch.code());
    }
    None
}

/// Flattens per-topic partition states (v2+/v5+ layouts) into states that carry their topic.
fn flatten<T>(topics: Vec<(TopicName, Vec<T>)>, set_topic: impl Fn(&mut T, TopicName)) -> Vec<T> {
    let mut out = Vec::new();
    for (name, parts) in topics {
        for mut p in parts {
            set_topic(&mut p, name.clone());
            out.push(p);
        }
    }
    out
}

pub(super) async fn leader_and_isr(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let started = std::time::Instant::now();
    let request: LeaderAndIsrRequest = req.decode()?;
    let mut resp = LeaderAndIsrResponse::default();
    let states: Vec<LeaderAndIsrPartitionState> = if req.version >= 2 {
        flatten(
            request
                .topic_states
                .into_iter()
                .map(|t| (t.topic_name, t.partition_states))
                .collect(),
            |p, name| p.topic_name = name,
        )
    } else {
        request.ungrouped_partition_states
    };
    let top_error = fencing_error(
        ctx,
        (req.version >= 2).then_some(request.broker_epoch),
        request.controller_id.0,
        request.controller_epoch,
        "LeaderAndIsr",
    );
    if let Some(code) = top_error {
        resp.error_code = code;
        resp.partition_errors = states
            .iter()
            .map(|s| partition_error(&s.topic_name, s.partition_index, code))
            .collect();
        return req.respond(&resp);
    }
    // A controller names only legal topics; anything else is refused before it reaches a
    // directory or a checkpoint (Kafka's INVALID_TOPIC_EXCEPTION).
    let (states, illegal): (Vec<_>, Vec<_>) = states.into_iter().partition(|s| {
        crate::common::validate_topic_name(s.topic_name.0.as_str()).is_ok()
            && s.partition_index >= 0
    });
    for s in &illegal {
        tracing::warn!(topic = %s.topic_name.0.as_str(), partition = s.partition_index,
            controller = request.controller_id.0, "LeaderAndIsr names an illegal partition; refused");
    }
    let parsed: Vec<(TopicPartition, LeaderAndIsrState)> = states
        .iter()
        .map(|s| {
            (
                TopicPartition {
                    topic: s.topic_name.0.as_str().to_string(),
                    partition: s.partition_index,
                },
                LeaderAndIsrState {
                    controller_epoch: s.controller_epoch,
                    leader: s.leader.0,
                    leader_epoch: s.leader_epoch,
                    isr: s.isr.iter().map(|b| b.0).collect(),
                    zk_version: s.partition_epoch,
                    replicas: s.replicas.iter().map(|b| b.0).collect(),
                    is_new: s.is_new,
                },
            )
        })
        .collect();
    let live_leaders: Vec<(i32, String)> = request
        .live_leaders
        .iter()
        .map(|l| {
            (
                l.broker_id.0,
                format!("{}:{}", l.host_name.as_str(), l.port),
            )
        })
        .collect();
    let elections: Vec<(TopicPartition, i32, i32)> = parsed
        .iter()
        .filter(|(tp, _)| tp.topic == OFFSETS_TOPIC || tp.topic == TRANSACTION_STATE_TOPIC)
        .map(|(tp, s)| (tp.clone(), s.leader, s.leader_epoch))
        .collect();
    let count = parsed.len();
    let outcomes = ctx
        .replicas
        .become_leader_or_follower(parsed, &live_leaders)
        .await;
    log_applied(
        ctx,
        "LeaderAndIsr",
        request.controller_id.0,
        request.controller_epoch,
        count,
        started,
    );
    // Kafka's onLeadershipChange: the group coordinator follows the offsets partitions, the
    // transaction coordinator those of __transaction_state (its epoch is the leader epoch).
    for (tp, leader, epoch) in elections {
        if !outcomes.iter().any(|(t, r)| *t == tp && r.is_ok()) {
            continue;
        }
        let ours = leader == ctx.broker_id();
        match (tp.topic == OFFSETS_TOPIC, ours) {
            (true, true) => ctx.coordinator.on_election(tp.partition, epoch),
            (true, false) => ctx.coordinator.on_resignation(tp.partition),
            (false, true) => ctx.txn_coordinator.on_election(tp.partition, epoch),
            (false, false) => ctx.txn_coordinator.on_resignation(tp.partition),
        }
    }
    resp.partition_errors = illegal
        .iter()
        .map(|s| {
            partition_error(
                &s.topic_name,
                s.partition_index,
                ResponseError::InvalidTopicException.code(),
            )
        })
        .collect();
    resp.partition_errors
        .extend(outcomes.into_iter().map(|(tp, r)| {
            let code = match r {
                Ok(()) => NONE,
                // The request's leader epoch was not newer than ours (reference §4).
                Err(None) => ResponseError::StaleControllerEpoch.code(),
                Err(Some(e)) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "LeaderAndIsr failed for partition");
                    error_code(&e)
                }
            };
            partition_error(
                &TopicName(StrBytes::from_string(tp.topic)),
                tp.partition,
                code,
            )
        }));
    req.respond(&resp)
}

/// One line per applied control request: how long a controller's batch took on this broker.
fn log_applied(
    ctx: &ApiContext,
    request: &'static str,
    controller: i32,
    controller_epoch: i32,
    partitions: usize,
    started: std::time::Instant,
) {
    tracing::info!(
        broker = ctx.broker_id(),
        controller,
        controller_epoch,
        partitions,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "applied {request}"
    );
}

fn partition_error(topic: &TopicName, partition: i32, code: i16) -> LeaderAndIsrPartitionError {
    let mut e = LeaderAndIsrPartitionError::default();
    e.topic_name = topic.clone();
    e.partition_index = partition;
    e.error_code = code;
    e
}

pub(super) fn update_metadata(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let started = std::time::Instant::now();
    let request: UpdateMetadataRequest = req.decode()?;
    let mut resp = UpdateMetadataResponse::default();
    if let Some(code) = fencing_error(
        ctx,
        (req.version >= 5).then_some(request.broker_epoch),
        request.controller_id.0,
        request.controller_epoch,
        "UpdateMetadata",
    ) {
        resp.error_code = code;
        return req.respond(&resp);
    }
    let brokers = request
        .live_brokers
        .iter()
        .map(|b| LiveBroker {
            id: b.id.0,
            endpoints: if req.version == 0 {
                vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    security_protocol: 0,
                    host: b.v0_host.as_str().to_string(),
                    port: b.v0_port,
                }]
            } else {
                b.endpoints
                    .iter()
                    .map(|e| Endpoint {
                        listener: if req.version >= 3 {
                            e.listener.as_str().to_string()
                        } else {
                            "PLAINTEXT".into()
                        },
                        security_protocol: e.security_protocol,
                        host: e.host.as_str().to_string(),
                        port: e.port,
                    })
                    .collect()
            },
            rack: b.rack.as_ref().map(|r| r.as_str().to_string()),
        })
        .collect();
    let states: Vec<UpdateMetadataPartitionState> = if req.version >= 5 {
        flatten(
            request
                .topic_states
                .into_iter()
                .map(|t| (t.topic_name, t.partition_states))
                .collect(),
            |p, name| p.topic_name = name,
        )
    } else {
        request.ungrouped_partition_states
    };
    let partitions: Vec<_> = states
        .into_iter()
        .map(|s| {
            (
                s.topic_name.0.as_str().to_string(),
                s.partition_index,
                PartitionInfo {
                    leader: s.leader.0,
                    leader_epoch: s.leader_epoch,
                    isr: s.isr.iter().map(|b| b.0).collect(),
                    replicas: s.replicas.iter().map(|b| b.0).collect(),
                    offline_replicas: s.offline_replicas.iter().map(|b| b.0).collect(),
                    zk_version: s.zk_version,
                    controller_epoch: s.controller_epoch,
                },
            )
        })
        .collect();
    let count = partitions.len();
    let deleted = ctx
        .metadata
        .update(request.controller_id.0, brokers, partitions);
    log_applied(
        ctx,
        "UpdateMetadata",
        request.controller_id.0,
        request.controller_epoch,
        count,
        started,
    );
    for tp in deleted {
        tracing::debug!(topic = %tp.topic, partition = tp.partition, "partition removed from metadata");
    }
    req.respond(&resp)
}

pub(super) async fn stop_replica(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: StopReplicaRequest = req.decode()?;
    // (partition, delete, leader epoch); before v3 there is no epoch, and Kafka's NoEpoch (-1)
    // skips the fencing.
    let partitions: Vec<(TopicPartition, bool, i32)> = match req.version {
        0 => request
            .ungrouped_partitions
            .iter()
            .map(|p| {
                (
                    TopicPartition {
                        topic: p.topic_name.0.as_str().to_string(),
                        partition: p.partition_index,
                    },
                    request.delete_partitions,
                    NO_EPOCH,
                )
            })
            .collect(),
        1 | 2 => request
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes.iter().map(|p| {
                    (
                        TopicPartition {
                            topic: t.name.0.as_str().to_string(),
                            partition: *p,
                        },
                        request.delete_partitions,
                        NO_EPOCH,
                    )
                })
            })
            .collect(),
        _ => request
            .topic_states
            .iter()
            .flat_map(|t| {
                t.partition_states.iter().map(|p| {
                    (
                        TopicPartition {
                            topic: t.topic_name.0.as_str().to_string(),
                            partition: p.partition_index,
                        },
                        p.delete_partition,
                        p.leader_epoch,
                    )
                })
            })
            .collect(),
    };
    let mut resp = StopReplicaResponse::default();
    let top_error = fencing_error(
        ctx,
        (req.version >= 1).then_some(request.broker_epoch),
        request.controller_id.0,
        request.controller_epoch,
        "StopReplica",
    );
    let outcomes: Vec<(TopicPartition, i16)> = match top_error {
        Some(code) => {
            resp.error_code = code;
            partitions
                .into_iter()
                .map(|(tp, _, _)| (tp, code))
                .collect()
        }
        None => {
            // Renames and fsyncs of thousands of directories stay off the runtime's threads,
            // so the ZooKeeper session and other connections keep being served meanwhile.
            let replicas = ctx.replicas.clone();
            let names: Vec<TopicPartition> =
                partitions.iter().map(|(tp, _, _)| tp.clone()).collect();
            let outcomes =
                match tokio::task::spawn_blocking(move || replicas.stop_replicas(partitions)).await
                {
                    Ok(outcomes) => outcomes,
                    Err(e) => {
                        tracing::error!(error = %e, "StopReplica task failed");
                        names
                            .into_iter()
                            .map(|tp| {
                                (
                                    tp,
                                    Err(crate::replication::ReplicaError::Storage(format!(
                                        "StopReplica failed: {e}"
                                    ))),
                                )
                            })
                            .collect()
                    }
                };
            // Only a stopped offsets partition is resigned; a fenced one is still this
            // broker's (Kafka resigns on NONE only).
            for (tp, r) in &outcomes {
                if tp.topic == OFFSETS_TOPIC && r.is_ok() {
                    ctx.coordinator.on_resignation(tp.partition);
                }
                if tp.topic == TRANSACTION_STATE_TOPIC && r.is_ok() {
                    ctx.txn_coordinator.on_resignation(tp.partition);
                }
            }
            outcomes
                .into_iter()
                .map(|(tp, r)| {
                    let code = match r {
                        Ok(()) => NONE,
                        Err(e) => error_code(&e),
                    };
                    (tp, code)
                })
                .collect()
        }
    };
    resp.partition_errors = outcomes
        .into_iter()
        .map(|(tp, code)| {
            let mut e = StopReplicaPartitionError::default();
            e.topic_name = TopicName(StrBytes::from_string(tp.topic));
            e.partition_index = tp.partition;
            e.error_code = code;
            e
        })
        .collect();
    req.respond(&resp)
}
