//! CreateTopics (19) v0–4, DeleteTopics (20) v0–3 and DescribeConfigs (32) v0–2.
//!
//! As in Kafka 2.x, topic creation and deletion must reach the active controller (NOT_CONTROLLER
//! elsewhere, so clients re-route); the work itself is a ZooKeeper write that the controller's
//! watches act on. The response waits (up to the request timeout) until this broker's metadata
//! shows the result, like Kafka's DelayedCreatePartitions / DelayedDeleteTopics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::codes::{self, NONE};
use super::{ApiContext, ApiError, Req, Response};
use crate::controller::admin::{self, AdminError, TopicSpec};

/// How often a waiting admin request re-checks the metadata cache.
const METADATA_POLL: Duration = Duration::from_millis(50);

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Waits until `done` holds for the metadata cache, or `timeout`.
async fn wait_for_metadata(
    ctx: &ApiContext,
    timeout: Duration,
    done: impl Fn(&crate::metadata::Snapshot) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&ctx.metadata.snapshot()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(METADATA_POLL).await;
    }
}

pub(super) async fn create_topics(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: CreateTopicsRequest = req.decode()?;
    let is_controller = ctx.controller.is_active();
    let live: Vec<i32> = ctx.metadata.snapshot().brokers.keys().copied().collect();
    let mut results = Vec::new();
    let mut created = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in &request.topics {
        let name = t.name.0.as_str().to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        let outcome: Result<(), (i16, String)> = if !seen.insert(name.clone()) {
            Err((
                ResponseError::InvalidRequest.code(),
                format!("topic '{name}' listed twice"),
            ))
        } else if !is_controller {
            Err((
                ResponseError::NotController.code(),
                "this broker is not the controller".into(),
            ))
        } else {
            let spec = spec_from_request(ctx, t);
            match spec {
                Err(e) => Err((codes::admin(&e).code(), e.to_string())),
                Ok(spec) => admin::create_topic(&ctx.zk.get(), &live, &spec, request.validate_only)
                    .await
                    .map_err(|e| (codes::admin(&e).code(), e.to_string())),
            }
        };
        match outcome {
            Ok(()) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, "created topic");
                    created.push(name.clone());
                }
            }
            Err((code, msg)) => {
                r.error_code = code;
                if req.version >= 1 {
                    r.error_message = Some(str_bytes(&msg));
                }
            }
        }
        if req.version >= 5 {
            r.num_partitions = t.num_partitions;
            r.replication_factor = t.replication_factor;
        }
        results.push(r);
    }
    if !created.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let ready = |s: &crate::metadata::Snapshot, name: &str| {
            s.topics
                .get(name)
                .is_some_and(|parts| !parts.is_empty() && parts.values().all(|p| p.leader >= 0))
        };
        wait_for_metadata(ctx, timeout, |s| created.iter().all(|n| ready(s, n))).await;
        let snap = ctx.metadata.snapshot();
        for r in results.iter_mut() {
            let name = r.name.0.as_str();
            if r.error_code == NONE && created.iter().any(|c| c == name) && !ready(&snap, name) {
                r.error_code = ResponseError::RequestTimedOut.code();
            }
        }
    }
    let mut resp = CreateTopicsResponse::default();
    resp.topics = results;
    req.respond(&resp)
}

fn spec_from_request(
    ctx: &ApiContext,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<TopicSpec, AdminError> {
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        if let Some(v) = &c.value {
            configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
        }
    }
    // Reject configs the log layer cannot parse before anything reaches ZooKeeper.
    ctx.replicas
        .log_manager()
        .default_config()
        .with_overrides(&configs)
        .map_err(|e| AdminError::InvalidConfig(e.to_string()))?;
    let assignment = if t.assignments.is_empty() {
        None
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(AdminError::InvalidRequest(
                "both a replica assignment and partitions/replication factor were given".into(),
            ));
        }
        Some(
            t.assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
        )
    };
    Ok(TopicSpec {
        name: t.name.0.as_str().to_string(),
        num_partitions: if t.num_partitions == -1 {
            ctx.config.num_partitions
        } else {
            t.num_partitions
        },
        replication_factor: if t.replication_factor == -1 {
            ctx.config.default_replication_factor
        } else {
            t.replication_factor
        },
        assignment,
        configs,
    })
}

pub(super) async fn delete_topics(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: DeleteTopicsRequest = req.decode()?;
    let is_controller = ctx.controller.is_active();
    let snap = ctx.metadata.snapshot();
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for name in &request.topic_names {
        let topic = name.0.as_str().to_string();
        let mut r = DeletableTopicResult::default();
        r.name = Some(name.clone());
        r.error_code = if !is_controller {
            ResponseError::NotController.code()
        } else if !ctx.config.delete_topic_enable {
            ResponseError::TopicDeletionDisabled.code()
        } else if !snap.topics.contains_key(&topic) {
            ResponseError::UnknownTopicOrPartition.code()
        } else {
            match ctx.zk.get().request_topic_deletion(&topic).await {
                Ok(()) => {
                    tracing::info!(topic = %topic, "topic deletion requested");
                    pending.push(topic.clone());
                    NONE
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "cannot request topic deletion");
                    ResponseError::UnknownServerError.code()
                }
            }
        };
        results.push(r);
    }
    if !pending.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        wait_for_metadata(ctx, timeout, |s| {
            pending.iter().all(|t| !s.topics.contains_key(t))
        })
        .await;
        let snap = ctx.metadata.snapshot();
        for r in results.iter_mut() {
            let still_there = r
                .name
                .as_ref()
                .is_some_and(|n| snap.topics.contains_key(n.0.as_str()));
            if r.error_code == NONE && still_there {
                r.error_code = ResponseError::RequestTimedOut.code();
            }
        }
    }
    let mut resp = DeleteTopicsResponse::default();
    resp.responses = results;
    req.respond(&resp)
}

/// DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config sources (v1+).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Topic-level keys and the broker default each falls back to.
fn topic_defaults(ctx: &ApiContext) -> Vec<(&'static str, String)> {
    let c = &ctx.config;
    vec![
        (
            "cleanup.policy",
            if c.log_cleanup_policy_delete {
                "delete"
            } else {
                "compact"
            }
            .into(),
        ),
        (
            "file.delete.delay.ms",
            c.log_segment_delete_delay_ms.to_string(),
        ),
        ("flush.messages", c.log_flush_interval_messages.to_string()),
        ("flush.ms", c.log_flush_interval_ms.to_string()),
        (
            "index.interval.bytes",
            c.log_index_interval_bytes.to_string(),
        ),
        ("max.message.bytes", c.message_max_bytes.to_string()),
        (
            "message.timestamp.type",
            match c.log_message_timestamp_type {
                crate::log::TimestampType::CreateTime => "CreateTime".into(),
                crate::log::TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
        ),
        ("min.insync.replicas", c.min_insync_replicas.to_string()),
        ("retention.bytes", c.log_retention_bytes.to_string()),
        ("retention.ms", c.log_retention_ms.to_string()),
        ("segment.bytes", c.log_segment_bytes.to_string()),
        (
            "segment.index.bytes",
            c.log_index_size_max_bytes.to_string(),
        ),
        ("segment.jitter.ms", c.log_roll_jitter_ms.to_string()),
        ("segment.ms", c.log_roll_ms.to_string()),
        (
            "unclean.leader.election.enable",
            c.unclean_leader_election_enable.to_string(),
        ),
    ]
}

fn entry(
    version: i16,
    name: &str,
    value: &str,
    source: i8,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    e.read_only = read_only;
    if version == 0 {
        e.is_default = source == SOURCE_DEFAULT;
    } else {
        e.config_source = source;
    }
    e
}

pub(super) async fn describe_configs(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: DescribeConfigsRequest = req.decode()?;
    let mut resp = DescribeConfigsResponse::default();
    for res in &request.resources {
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
        };
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        match res.resource_type {
            RESOURCE_TOPIC => {
                if !ctx.metadata.snapshot().topics.contains_key(name) {
                    out.error_code = ResponseError::UnknownTopicOrPartition.code();
                    out.error_message = Some(str_bytes(&format!("topic '{name}' does not exist")));
                } else {
                    match ctx.zk.get().get_topic_config(name).await {
                        Ok(overrides) => {
                            for (k, default) in topic_defaults(ctx) {
                                if !wanted(k) {
                                    continue;
                                }
                                out.configs.push(match overrides.get(k) {
                                    Some(v) => entry(req.version, k, v, SOURCE_TOPIC, false),
                                    None => entry(req.version, k, &default, SOURCE_DEFAULT, false),
                                });
                            }
                        }
                        Err(e) => {
                            out.error_code = ResponseError::UnknownServerError.code();
                            out.error_message = Some(str_bytes(&e.to_string()));
                        }
                    }
                }
            }
            RESOURCE_BROKER => {
                if name.parse::<i32>().ok() != Some(ctx.broker_id()) {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(str_bytes(&format!(
                        "broker {} cannot describe the configs of broker '{name}'",
                        ctx.broker_id()
                    )));
                } else {
                    for (k, v) in &ctx.config.raw {
                        if wanted(k) {
                            out.configs
                                .push(entry(req.version, k, v, SOURCE_STATIC_BROKER, true));
                        }
                    }
                }
            }
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(str_bytes(&format!("unsupported resource type {other}")));
            }
        }
        resp.results.push(out);
    }
    req.respond(&resp)
}
