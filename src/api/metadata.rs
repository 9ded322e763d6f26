//! Metadata (3), v0–8: live brokers, topics with leaders/replicas/ISR, the controller id, and topic
//! auto-creation (reference §9 "Metadata semantics"). Each distinct requested name is answered
//! once, as Kafka does; the request is decoded by `metadata_request` so duplicates cost nothing.

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codes::{self, NONE};
use super::metadata_request;
use super::{ApiContext, ApiError, Req, Response};
use crate::controller::admin::{self, AdminError};
use crate::metadata::Snapshot;

pub(crate) use crate::coordinator::store::OFFSETS_TOPIC;
pub(crate) use crate::coordinator::transaction::TRANSACTION_STATE_TOPIC;

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request =
        metadata_request::parse(&req.body, req.version).map_err(|reason| ApiError::Malformed {
            key: req.key,
            version: req.version,
            reason,
        })?;
    let snap = ctx.metadata.snapshot();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match request.topics {
        Some(t) if t.is_empty() && req.version == 0 => None,
        other => other,
    };
    let allow_auto_create =
        request.allow_auto_topic_creation && ctx.config.auto_create_topics_enable;

    let mut topics = Vec::new();
    match requested {
        None => {
            let mut names: Vec<&String> = snap.topics.keys().collect();
            names.sort();
            for name in names {
                topics.push(topic_metadata(&snap, name, req.version, &ctx.listener));
            }
        }
        Some(names) => {
            for name in names {
                if snap.topics.contains_key(name) {
                    topics.push(topic_metadata(&snap, name, req.version, &ctx.listener));
                    continue;
                }
                let code = if let Err(reason) = admin::validate_topic_name(name) {
                    tracing::debug!(topic = %name, %reason, "metadata for an invalid topic name");
                    ResponseError::InvalidTopicException.code()
                } else if is_internal(name) {
                    // Kafka creates internal topics whenever they are named, and reports too few
                    // brokers as INVALID_REPLICATION_FACTOR here.
                    match ensure_internal_topic(ctx, name).await {
                        ResponseError::CoordinatorNotAvailable => {
                            ResponseError::InvalidReplicationFactor
                        }
                        other => other,
                    }
                    .code()
                } else if allow_auto_create {
                    auto_create(ctx, name).await.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                let mut t = MetadataResponseTopic::default();
                t.error_code = code;
                t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
                t.is_internal = is_internal(name);
                topics.push(t);
            }
        }
    }

    let listener: &str = &ctx.listener;
    let mut resp = MetadataResponse::default();
    resp.brokers = snap
        .brokers
        .values()
        .filter_map(|b| {
            let ep = b.endpoint(listener)?;
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.id);
            mb.host = StrBytes::from_string(ep.host.clone());
            mb.port = ep.port;
            if req.version >= 1 {
                mb.rack = b.rack.clone().map(StrBytes::from_string);
            }
            Some(mb)
        })
        .collect();
    if req.version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(ctx.cluster_id.to_string()));
    }
    if req.version >= 1 {
        resp.controller_id = BrokerId(snap.controller_id);
    }
    resp.topics = topics;
    if req.version >= 8 && request.include_cluster_authorized_operations {
        // No authorizer: report "all operations unknown" the way Kafka does without one.
        resp.cluster_authorized_operations = i32::MIN;
    }
    req.respond(&resp)
}

/// Creates `topic` with the broker defaults, as Kafka's auto-create does, and answers
/// LEADER_NOT_AVAILABLE so the client retries once the controller has elected leaders.
/// Kafka's `offsetsTopicConfigs`: compacted (the newest commit per key is what matters; this
/// broker does not compact yet, but the policy keeps time retention from deleting commits),
/// `offsets.topic.segment.bytes`, and batches kept as the coordinator wrote them.
/// Kafka's `transactionTopicConfigs`: compacted, uncompressed, `transaction.state.log.min.isr`,
/// `transaction.state.log.segment.bytes`, never an unclean leader.
pub(crate) fn transaction_topic_configs(
    ctx: &ApiContext,
) -> std::collections::BTreeMap<String, String> {
    let c = &ctx.config;
    [
        ("cleanup.policy", "compact".to_string()),
        ("compression.type", "uncompressed".to_string()),
        (
            "min.insync.replicas",
            c.transaction_state_log_min_isr.to_string(),
        ),
        (
            "segment.bytes",
            c.transaction_state_log_segment_bytes.to_string(),
        ),
        ("unclean.leader.election.enable", "false".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub(crate) fn offsets_topic_configs(
    ctx: &ApiContext,
) -> std::collections::BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_string()),
        (
            "segment.bytes",
            ctx.config.offsets_topic_segment_bytes.to_string(),
        ),
        ("compression.type", "producer".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether `name` is one of the broker's internal topics.
pub(crate) fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// (partitions, replication factor, configs) of an internal topic, as Kafka creates it.
fn internal_topic_spec(
    ctx: &ApiContext,
    name: &str,
) -> Option<(i32, i16, std::collections::BTreeMap<String, String>)> {
    let c = &ctx.config;
    match name {
        OFFSETS_TOPIC => Some((
            c.offsets_topic_num_partitions,
            c.offsets_topic_replication_factor,
            offsets_topic_configs(ctx),
        )),
        TRANSACTION_STATE_TOPIC => Some((
            c.transaction_state_log_num_partitions,
            c.transaction_state_log_replication_factor,
            transaction_topic_configs(ctx),
        )),
        _ => None,
    }
}

/// Creates an internal topic (Kafka's `createInternalTopic`): LEADER_NOT_AVAILABLE once it is
/// being created, COORDINATOR_NOT_AVAILABLE while fewer brokers are alive than its replication
/// factor (`offsets.topic.replication.factor`, `transaction.state.log.replication.factor`;
/// never lowered).
pub(crate) async fn ensure_internal_topic(ctx: &ApiContext, topic: &str) -> ResponseError {
    let live = ctx.metadata.snapshot().brokers.len();
    let rf = internal_topic_spec(ctx, topic).map_or(1, |(_, rf, _)| rf);
    if live < usize::try_from(rf).unwrap_or(usize::MAX) {
        tracing::warn!(
            topic,
            live_brokers = live,
            replication_factor = rf,
            "too few live brokers for the internal topic's replication factor"
        );
        return ResponseError::CoordinatorNotAvailable;
    }
    auto_create(ctx, topic).await
}

async fn auto_create(ctx: &ApiContext, topic: &str) -> ResponseError {
    let snap = ctx.metadata.snapshot();
    let live: Vec<i32> = snap.brokers.keys().copied().collect();
    let (partitions, rf, configs) = internal_topic_spec(ctx, topic).unwrap_or((
        ctx.config.num_partitions,
        ctx.config.default_replication_factor,
        Default::default(),
    ));
    let spec = admin::TopicSpec {
        name: topic.to_string(),
        num_partitions: partitions,
        replication_factor: rf,
        assignment: None,
        configs,
    };
    match admin::create_topic(&ctx.zk.get(), &live, &spec, false).await {
        Ok(()) => {
            tracing::info!(
                topic,
                partitions,
                replication_factor = rf,
                "auto-created topic"
            );
            ResponseError::LeaderNotAvailable
        }
        Err(AdminError::TopicExists(_)) => ResponseError::LeaderNotAvailable,
        Err(AdminError::InvalidReplicationFactor(reason)) => {
            // Too few live brokers for the default RF; the client retries until enough appear.
            tracing::warn!(topic, %reason, "cannot auto-create topic");
            ResponseError::LeaderNotAvailable
        }
        Err(e) => {
            tracing::warn!(topic, error = %e, "auto-create failed");
            codes::admin(&e)
        }
    }
}

/// One topic as seen through `listener` (Kafka's `MetadataCache.getPartitionMetadata`): a
/// leader without an endpoint on that listener is LISTENER_NOT_FOUND if it is alive, else
/// LEADER_NOT_AVAILABLE; offline replicas are those the controller says are offline (dead
/// brokers and failed log directories).
fn topic_metadata(
    snap: &Snapshot,
    name: &str,
    version: i16,
    listener: &str,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    t.is_internal = is_internal(name);
    if let Some(parts) = snap.topics.get(name) {
        t.partitions = parts
            .iter()
            .map(|(p, info)| {
                let mut mp = MetadataResponsePartition::default();
                mp.partition_index = *p;
                let leader = snap.brokers.get(&info.leader);
                let reachable = leader.is_some_and(|b| b.endpoint(listener).is_some());
                mp.leader_id = BrokerId(if reachable { info.leader } else { -1 });
                mp.error_code = match (leader, reachable) {
                    (_, true) => NONE,
                    (Some(_), false) => ResponseError::ListenerNotFound.code(),
                    (None, _) => ResponseError::LeaderNotAvailable.code(),
                };
                if version >= 7 {
                    mp.leader_epoch = info.leader_epoch;
                }
                mp.replica_nodes = info.replicas.iter().map(|r| BrokerId(*r)).collect();
                mp.isr_nodes = info.isr.iter().map(|r| BrokerId(*r)).collect();
                if version >= 5 {
                    mp.offline_replicas = info
                        .replicas
                        .iter()
                        .filter(|r| {
                            !snap.brokers.contains_key(r) || info.offline_replicas.contains(r)
                        })
                        .map(|r| BrokerId(*r))
                        .collect();
                }
                mp
            })
            .collect();
    }
    t
}
