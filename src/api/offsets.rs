//! OffsetCommit (8) v0–7 and OffsetFetch (9) v0–7 (reference §7). Version 0 of both reads and
//! writes ZooKeeper's `/consumers/<group>/offsets/…`, as Kafka does; later versions go to the
//! group coordinator and `__consumer_offsets`. OffsetFetch v7's `require_stable` (KIP-447, sent
//! by read_committed consumers) answers UNSTABLE_OFFSET_COMMIT for a partition whose
//! transactional offset commit still awaits its marker, so the consumer asks again instead of
//! starting from the offset before the transaction.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codes::{self, group_code, NONE};
use super::{ApiContext, ApiError, Req, Response};
use crate::coordinator::offsets::{CommitRequest, FetchedOffset, PartitionCommit};
use crate::util::clock::now_ms;

/// Groups per-partition answers by topic, keeping the order topics first appear in.
fn by_topic<P>(items: impl IntoIterator<Item = (String, P)>) -> Vec<(String, Vec<P>)> {
    let mut out: Vec<(String, Vec<P>)> = Vec::new();
    for (topic, p) in items {
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push(p),
            _ => out.push((topic, vec![p])),
        }
    }
    out
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

pub(super) async fn offset_commit(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: OffsetCommitRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let snap = ctx.metadata.snapshot();
    // (topic, partition, commit) in request order; `Err` = already decided.
    let mut items: Vec<(String, i32, Result<PartitionCommit, i16>)> = Vec::new();
    for t in &request.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let known = snap.partition(&topic, p.partition_index).is_some();
            let commit = PartitionCommit {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: (req.version >= 6 && p.committed_leader_epoch >= 0)
                    .then_some(p.committed_leader_epoch),
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                commit_timestamp: if req.version == 1 {
                    p.commit_timestamp
                } else {
                    -1
                },
            };
            let item = if known {
                Ok(commit)
            } else {
                Err(ResponseError::UnknownTopicOrPartition.code())
            };
            items.push((topic.clone(), p.partition_index, item));
        }
    }
    let codes: Vec<i16> = if req.version == 0 {
        commit_to_zookeeper(ctx, &group_id, &items).await
    } else if let Err(e) = ctx.coordinator.check(&group_id) {
        vec![codes::group(e).code(); items.len()]
    } else {
        let accepted: Vec<PartitionCommit> = items
            .iter()
            .filter_map(|(_, _, c)| c.as_ref().ok().cloned())
            .collect();
        let commit = CommitRequest {
            group_id: group_id.clone(),
            generation_id: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            retention_ms: (matches!(req.version, 2..=4) && request.retention_time_ms != -1)
                .then_some(request.retention_time_ms),
            partitions: accepted,
        };
        let mut results = ctx
            .coordinator
            .membership()
            .commit_offsets(commit, now_ms())
            .await
            .into_iter();
        items
            .iter()
            .map(|(_, _, c)| match c {
                Ok(_) => results
                    .next()
                    .map_or(ResponseError::UnknownServerError.code(), |r| {
                        group_code(r.err())
                    }),
                Err(code) => *code,
            })
            .collect()
    };
    let mut resp = OffsetCommitResponse::default();
    resp.topics = by_topic(
        items
            .iter()
            .zip(codes)
            .map(|((topic, partition, _), code)| {
                let mut p = OffsetCommitResponsePartition::default();
                p.partition_index = *partition;
                p.error_code = code;
                (topic.clone(), p)
            }),
    )
    .into_iter()
    .map(|(topic, partitions)| {
        let mut t = OffsetCommitResponseTopic::default();
        t.name = name(&topic);
        t.partitions = partitions;
        t
    })
    .collect();
    req.respond(&resp)
}

async fn commit_to_zookeeper(
    ctx: &ApiContext,
    group_id: &str,
    items: &[(String, i32, Result<PartitionCommit, i16>)],
) -> Vec<i16> {
    let zk = ctx.zk.get();
    let mut codes = Vec::with_capacity(items.len());
    for (topic, partition, c) in items {
        let code = match c {
            Err(code) => *code,
            Ok(c)
                if c.metadata.as_ref().map_or(0, String::len)
                    > ctx.config.offset_metadata_max_bytes =>
            {
                ResponseError::OffsetMetadataTooLarge.code()
            }
            Ok(c) => match zk
                .set_consumer_offset(group_id, topic, *partition, c.offset)
                .await
            {
                Ok(()) => NONE,
                Err(e) => {
                    tracing::warn!(group = %group_id, topic = %topic, partition, error = %e,
                        "v0 offset commit to ZooKeeper failed");
                    ResponseError::UnknownServerError.code()
                }
            },
        };
        codes.push(code);
    }
    codes
}

pub(super) async fn offset_fetch(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: OffsetFetchRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let requested: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let mut resp = OffsetFetchResponse::default();
    let (fetched, error): (Vec<FetchedOffset>, i16) = if req.version == 0 {
        (
            fetch_from_zookeeper(ctx, &group_id, requested.unwrap_or_default()).await,
            NONE,
        )
    } else {
        match ctx.coordinator.check(&group_id) {
            Ok(()) => (
                ctx.coordinator.membership().fetch_offsets(
                    &group_id,
                    requested,
                    request.require_stable,
                ),
                NONE,
            ),
            Err(e) => {
                // Every requested partition carries the error (v1 has no top-level code).
                let unanswered = requested
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|(t, ps)| {
                        ps.into_iter().map(move |p| FetchedOffset {
                            topic: t.clone(),
                            partition: p,
                            offset: -1,
                            leader_epoch: None,
                            metadata: String::new(),
                            unstable: false,
                        })
                    })
                    .collect();
                (unanswered, codes::group(e).code())
            }
        }
    };
    if req.version >= 2 {
        resp.error_code = error;
    }
    resp.topics = by_topic(fetched.into_iter().map(|f| {
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = f.partition;
        p.committed_offset = f.offset;
        p.committed_leader_epoch = f.leader_epoch.unwrap_or(-1);
        p.metadata = Some(StrBytes::from_string(f.metadata));
        p.error_code = if f.unstable {
            ResponseError::UnstableOffsetCommit.code()
        } else {
            error
        };
        (f.topic, p)
    }))
    .into_iter()
    .map(|(topic, partitions)| {
        let mut t = OffsetFetchResponseTopic::default();
        t.name = name(&topic);
        t.partitions = partitions;
        t
    })
    .collect();
    req.respond(&resp)
}

async fn fetch_from_zookeeper(
    ctx: &ApiContext,
    group_id: &str,
    requested: Vec<(String, Vec<i32>)>,
) -> Vec<FetchedOffset> {
    let zk = ctx.zk.get();
    let mut out = Vec::new();
    for (topic, partitions) in requested {
        for partition in partitions {
            let offset = match zk.get_consumer_offset(group_id, &topic, partition).await {
                Ok(o) => o.unwrap_or(-1),
                Err(e) => {
                    tracing::warn!(group = %group_id, topic = %topic, partition, error = %e,
                        "v0 offset fetch from ZooKeeper failed");
                    -1
                }
            };
            out.push(FetchedOffset {
                topic: topic.clone(),
                partition,
                offset,
                leader_epoch: None,
                metadata: String::new(),
                unstable: false,
            });
        }
    }
    out
}
