//! Raw coordinator requests for the group tests in [`crate::groups`] (FindCoordinator,
//! ListGroups, OffsetCommit, OffsetFetch) at versions negotiated through ApiVersions, sent to the
//! broker a test names (the coordinator, or deliberately another one), and Kafka's group →
//! `__consumer_offsets` partition mapping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gregor::protocol::client::BrokerConnection;
use integration_tests::Cluster;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestTopic};
use kafka_protocol::messages::{ApiVersionsRequest, GroupId, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use rdkafka::consumer::Consumer;

/// Kafka error codes the group tests look for.
pub const NONE: i16 = 0;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;

/// A connection to broker `id` (5 s connect and request timeout).
pub async fn connect(cluster: &Cluster, id: i32) -> anyhow::Result<BrokerConnection> {
    let addr = cluster.broker_addr(id).to_string();
    BrokerConnection::connect(&addr, "it-groups-raw", Duration::from_secs(5))
        .await
        .with_context(|| format!("connecting to broker {id} at {addr}"))
}

/// The highest version of API `key` in `lo..=hi` that the broker advertises in ApiVersions.
///
/// # Errors
/// The broker does not advertise the API, or no version in the range.
pub async fn negotiate(
    conn: &mut BrokerConnection,
    key: i16,
    name: &str,
    lo: i16,
    hi: i16,
) -> anyhow::Result<i16> {
    let resp = conn
        .send(&ApiVersionsRequest::default(), 0)
        .await
        .with_context(|| format!("ApiVersions to {}", conn.addr()))?;
    ensure!(
        resp.error_code == NONE,
        "ApiVersions error {}",
        resp.error_code
    );
    let Some(v) = resp.api_keys.iter().find(|k| k.api_key == key) else {
        let keys: Vec<i16> = resp.api_keys.iter().map(|k| k.api_key).collect();
        bail!(
            "broker {} does not advertise {name} (api key {key}) in ApiVersions; it advertises keys {keys:?}",
            conn.addr()
        );
    };
    let version = v.max_version.min(hi);
    ensure!(
        version >= lo && version >= v.min_version,
        "broker {} advertises {name} v{}..v{}, the test needs one of v{lo}..v{hi}",
        conn.addr(),
        v.min_version,
        v.max_version
    );
    Ok(version)
}

/// The consumer-group APIs (name, key) a Kafka 2.x broker advertises.
const GROUP_APIS: &[(&str, i16)] = &[
    ("OffsetCommit", 8),
    ("OffsetFetch", 9),
    ("FindCoordinator", 10),
    ("JoinGroup", 11),
    ("Heartbeat", 12),
    ("LeaveGroup", 13),
    ("SyncGroup", 14),
    ("DescribeGroups", 15),
    ("ListGroups", 16),
];

/// Fails at once, naming what is missing, unless every running broker advertises every
/// consumer-group API in ApiVersions (clients check ApiVersions before they use a group).
pub async fn require_group_apis(cluster: &Cluster) -> anyhow::Result<()> {
    for id in cluster.broker_ids() {
        if !cluster.is_running(id) {
            continue;
        }
        let mut conn = connect(cluster, id).await?;
        let resp = conn
            .send(&ApiVersionsRequest::default(), 0)
            .await
            .with_context(|| format!("ApiVersions to broker {id}"))?;
        let missing: Vec<String> = GROUP_APIS
            .iter()
            .filter(|(_, key)| !resp.api_keys.iter().any(|k| k.api_key == *key))
            .map(|(name, key)| format!("{name} ({key})"))
            .collect();
        ensure!(
            missing.is_empty(),
            "broker {id} does not advertise the consumer-group APIs {} in ApiVersions: no group coordinator is served",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Asks broker `via` for the coordinator of `group` until it names one (COORDINATOR_NOT_AVAILABLE
/// and COORDINATOR_LOAD_IN_PROGRESS, and connection failures, are retried until `timeout`), and
/// checks the advertised host:port is that broker's.
pub async fn find_coordinator(
    cluster: &Cluster,
    via: i32,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match find_coordinator_once(cluster, via, group).await {
            Ok(Ok(node)) => return Ok(node),
            Ok(Err(code)) => format!("error code {code}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("FindCoordinator({group}) via broker {via}: no coordinator within {timeout:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One FindCoordinator: `Ok(Ok(node))`, `Ok(Err(retriable code))`, or a failure.
pub async fn find_coordinator_once(
    cluster: &Cluster,
    via: i32,
    group: &str,
) -> anyhow::Result<Result<i32, i16>> {
    let mut conn = connect(cluster, via).await?;
    let version = negotiate(
        &mut conn,
        FindCoordinatorRequest::KEY,
        "FindCoordinator",
        0,
        3,
    )
    .await?;
    let mut req =
        FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    if version >= 1 {
        req = req.with_key_type(0);
    }
    let resp = conn
        .send(&req, version)
        .await
        .with_context(|| format!("FindCoordinator v{version} to broker {via}"))?;
    match resp.error_code {
        NONE => {}
        COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
            return Ok(Err(resp.error_code))
        }
        code => bail!(
            "FindCoordinator v{version} for {group} via broker {via}: error {code} {:?}",
            resp.error_message
        ),
    }
    let node = resp.node_id.0;
    ensure!(
        cluster.broker_ids().contains(&node),
        "FindCoordinator for {group} named node {node}, not a broker of this cluster"
    );
    let advertised = format!("{}:{}", resp.host.as_str(), resp.port);
    ensure!(
        advertised == cluster.broker_addr(node).to_string(),
        "FindCoordinator for {group} named node {node} at {advertised}, but that broker listens on {}",
        cluster.broker_addr(node)
    );
    Ok(Ok(node))
}

/// ListGroups at the highest version in `lo..=hi`: (error code, [(group, protocol type)]).
pub async fn list_groups(
    conn: &mut BrokerConnection,
    lo: i16,
    hi: i16,
) -> anyhow::Result<(i16, Vec<(String, String)>)> {
    let version = negotiate(conn, ListGroupsRequest::KEY, "ListGroups", lo, hi).await?;
    let resp = conn
        .send(&ListGroupsRequest::default(), version)
        .await
        .with_context(|| format!("ListGroups v{version}"))?;
    let groups = resp
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.as_str().to_string(),
                g.protocol_type.as_str().to_string(),
            )
        })
        .collect();
    Ok((resp.error_code, groups))
}

/// A standalone OffsetCommit (generation -1, member id "": no group membership) of
/// `(partition, offset, metadata)` for `topic`, at the highest version in v2..v7. Returns the
/// error code per partition.
pub async fn offset_commit(
    conn: &mut BrokerConnection,
    group: &str,
    topic: &str,
    partitions: &[(i32, i64, &str)],
) -> anyhow::Result<BTreeMap<i32, i16>> {
    let version = negotiate(conn, OffsetCommitRequest::KEY, "OffsetCommit", 2, 7).await?;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, off, meta)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*off)
                            .with_committed_metadata(Some(StrBytes::from_string(meta.to_string())))
                    })
                    .collect(),
            )]);
    let resp = conn
        .send(&req, version)
        .await
        .with_context(|| format!("OffsetCommit v{version} for group {group}"))?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        ensure!(
            t.name.0.as_str() == topic,
            "OffsetCommit answered for topic {:?}",
            t.name.0.as_str()
        );
        for p in &t.partitions {
            out.insert(p.partition_index, p.error_code);
        }
    }
    Ok(out)
}

/// What OffsetFetch returned for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub offset: i64,
    pub metadata: Option<String>,
    pub error: i16,
}

/// OffsetFetch of `topic` `partitions` for `group` at the highest version in v1..v7:
/// (top-level error code, 0 below v2; partition → answer).
pub async fn offset_fetch(
    conn: &mut BrokerConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<(i16, BTreeMap<i32, Fetched>)> {
    let version = negotiate(conn, OffsetFetchRequest::KEY, "OffsetFetch", 1, 7).await?;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes(partitions.to_vec())]));
    let resp = conn
        .send(&req, version)
        .await
        .with_context(|| format!("OffsetFetch v{version} for group {group}"))?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        ensure!(
            t.name.0.as_str() == topic,
            "OffsetFetch answered for topic {:?}",
            t.name.0.as_str()
        );
        for p in &t.partitions {
            out.insert(
                p.partition_index,
                Fetched {
                    offset: p.committed_offset,
                    metadata: p.metadata.as_ref().map(|m| m.as_str().to_string()),
                    error: p.error_code,
                },
            );
        }
    }
    Ok((resp.error_code, out))
}

/// [`offset_fetch`] repeated while the coordinator answers COORDINATOR_LOAD_IN_PROGRESS (at the
/// top level or for a partition), at most `timeout`.
pub async fn offset_fetch_loaded(
    conn: &mut BrokerConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> anyhow::Result<(i16, BTreeMap<i32, Fetched>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (top, parts) = offset_fetch(conn, group, topic, partitions).await?;
        let loading = top == COORDINATOR_LOAD_IN_PROGRESS
            || parts
                .values()
                .any(|f| f.error == COORDINATOR_LOAD_IN_PROGRESS);
        if !loading {
            return Ok((top, parts));
        }
        if Instant::now() > deadline {
            bail!("group {group}'s coordinator still loading after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ----- the group → __consumer_offsets partition mapping --------------------------------------

/// Java's `String.hashCode()` (over UTF-16 code units, wrapping).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`.
pub fn offsets_partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// The leader of `__consumer_offsets` partition `p` in the cluster's metadata.
pub fn offsets_topic_leader(bootstrap: &str, p: i32) -> anyhow::Result<i32> {
    let consumer = crate::clients::consumer(bootstrap)?;
    let md = consumer
        .fetch_metadata(Some("__consumer_offsets"), Duration::from_secs(10))
        .context("metadata of __consumer_offsets")?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == "__consumer_offsets")
        .context("no __consumer_offsets in the metadata")?;
    let part = topic
        .partitions()
        .iter()
        .find(|x| x.id() == p)
        .with_context(|| {
            format!(
                "__consumer_offsets has no partition {p} ({} partitions)",
                topic.partitions().len()
            )
        })?;
    Ok(part.leader())
}
