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
    DescribeConfigsSynonym,
};
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::codes::{self, NONE};
use super::{ApiContext, ApiError, Req, Response};
use crate::config;
use crate::config::describe::{self, ConfigSource, Described};
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
    // Kafka's ZkAdminManager: a null value is a malformed request, then LogConfig.validate
    // refuses unknown names and invalid values before anything reaches ZooKeeper.
    let nulls: Vec<&str> = t
        .configs
        .iter()
        .filter(|c| c.value.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(AdminError::InvalidRequest(format!(
            "Null value not supported for topic configs : {}",
            nulls.join(",")
        )));
    }
    let configs: BTreeMap<String, String> = t
        .configs
        .iter()
        .filter_map(|c| Some((c.name.as_str().to_string(), c.value.as_ref()?.to_string())))
        .collect();
    config::validate_topic_configs(&configs)
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

/// One described key in the request's version: `is_default` in v0, the source (and the
/// synonyms, when asked) from v1.
fn entry(version: i16, d: Described, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(&d.name);
    e.value = d.value.as_deref().map(str_bytes);
    e.read_only = d.read_only;
    e.is_sensitive = d.sensitive;
    if version == 0 {
        e.is_default = d.source == ConfigSource::DefaultConfig;
    } else {
        e.config_source = d.source.id();
        if include_synonyms {
            e.synonyms = d
                .synonyms
                .into_iter()
                .map(|s| {
                    let mut out = DescribeConfigsSynonym::default();
                    out.name = str_bytes(&s.name);
                    out.value = s.value.as_deref().map(str_bytes);
                    out.source = s.source.id();
                    out
                })
                .collect();
        }
    }
    e
}

/// The described keys of one resource, or its error code and message.
async fn describe_resource(
    ctx: &ApiContext,
    resource_type: i8,
    name: &str,
) -> Result<Vec<Described>, (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => {
            admin::validate_topic_name(name)
                .map_err(|e| (ResponseError::InvalidTopicException.code(), e.to_string()))?;
            if !ctx.metadata.snapshot().topics.contains_key(name) {
                return Err((
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic '{name}' does not exist"),
                ));
            }
            let overrides = ctx
                .zk
                .get()
                .get_topic_config(name)
                .await
                .map_err(|e| (ResponseError::UnknownServerError.code(), e.to_string()))?;
            describe::describe_topic(&ctx.config.raw, &overrides).map_err(|e| {
                (
                    ResponseError::InvalidConfig.code(),
                    format!("topic '{name}': {e}"),
                )
            })
        }
        // Kafka: the empty name is the cluster-wide dynamic default, of which there is none.
        RESOURCE_BROKER if name.is_empty() => Ok(Vec::new()),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == ctx.broker_id() => Ok(describe::describe_broker(&ctx.config.raw)),
            Ok(_) => Err((
                ResponseError::InvalidRequest.code(),
                format!(
                    "Unexpected broker id, expected {} or empty string, but received {name}",
                    ctx.broker_id()
                ),
            )),
            Err(_) => Err((
                ResponseError::InvalidRequest.code(),
                format!("Broker id must be an integer, but it is: {name}"),
            )),
        },
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("Unsupported resource type: {other}"),
        )),
    }
}

pub(super) async fn describe_configs(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: DescribeConfigsRequest = req.decode()?;
    let mut resp = DescribeConfigsResponse::default();
    for res in &request.resources {
        // Kafka 2.8 describes every key when the list is null or empty.
        let wanted = |k: &str| match &res.configuration_keys {
            Some(keys) if !keys.is_empty() => keys.iter().any(|x| x.as_str() == k),
            _ => true,
        };
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        match describe_resource(ctx, res.resource_type, res.resource_name.as_str()).await {
            Ok(described) => {
                out.configs = described
                    .into_iter()
                    .filter(|d| wanted(&d.name))
                    .map(|d| entry(req.version, d, request.include_synonyms))
                    .collect();
            }
            Err((code, message)) => {
                out.error_code = code;
                out.error_message = Some(str_bytes(&message));
            }
        }
        resp.results.push(out);
    }
    req.respond(&resp)
}
