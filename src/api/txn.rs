//! The transactional producer's APIs (reference §2.5–2.7): AddPartitionsToTxn (24),
//! AddOffsetsToTxn (25) and EndTxn (26) at the transaction coordinator, TxnOffsetCommit (28)
//! at the group coordinator, all v0–3. Requests before KIP-588 (AddPartitionsToTxn, AddOffsetsToTxn
//! and EndTxn below v2) are told INVALID_PRODUCER_EPOCH where newer ones get PRODUCER_FENCED.

use std::collections::BTreeSet;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codes::{self, group_code};
use super::metadata::{is_internal, OFFSETS_TOPIC};
use super::{ApiContext, ApiError, Req, Response};
use crate::coordinator::offsets::PartitionCommit;
use crate::coordinator::txn_offsets::TxnCommitRequest;
use crate::log::TopicPartition;
use crate::util::clock::now_ms;

/// The first version of these APIs that knows PRODUCER_FENCED.
const FENCED_FROM: i16 = 2;

fn txn_code(e: crate::coordinator::transaction::TxnError, version: i16) -> i16 {
    codes::txn(e, version < FENCED_FROM).code()
}

pub(super) async fn add_partitions_to_txn(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: AddPartitionsToTxnRequest = req.decode()?;
    let id = request.v3_and_below_transactional_id.0.to_string();
    let snap = ctx.metadata.snapshot();
    let mut wanted: BTreeSet<TopicPartition> = BTreeSet::new();
    // Kafka's broker-side checks come first: an internal topic may not be written by a
    // producer, an unknown partition is unknown; if any fails nothing is added.
    let mut refused: Vec<(TopicPartition, ResponseError)> = Vec::new();
    for t in &request.v3_and_below_topics {
        let topic = t.name.0.as_str();
        for p in &t.partitions {
            let tp = TopicPartition::new(topic, *p);
            if is_internal(topic) {
                refused.push((tp, ResponseError::TopicAuthorizationFailed));
            } else if snap.partition(topic, *p).is_none() {
                refused.push((tp, ResponseError::UnknownTopicOrPartition));
            } else {
                wanted.insert(tp);
            }
        }
    }
    let codes: Vec<(TopicPartition, i16)> = if refused.is_empty() {
        let code = match ctx
            .txn_coordinator
            .add_partitions(
                &id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &wanted,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => txn_code(e, req.version),
        };
        wanted.into_iter().map(|tp| (tp, code)).collect()
    } else {
        let not_attempted = ResponseError::OperationNotAttempted.code();
        refused
            .into_iter()
            .map(|(tp, e)| (tp, e.code()))
            .chain(wanted.into_iter().map(|tp| (tp, not_attempted)))
            .collect()
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (tp, code) in codes {
        let mut r = AddPartitionsToTxnPartitionResult::default();
        r.partition_index = tp.partition;
        r.partition_error_code = code;
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == tp.topic => t.results_by_partition.push(r),
            _ => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(StrBytes::from_string(tp.topic));
                t.results_by_partition = vec![r];
                topics.push(t);
            }
        }
    }
    resp.results_by_topic_v3_and_below = topics;
    req.respond(&resp)
}

pub(super) async fn add_offsets_to_txn(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: AddOffsetsToTxnRequest = req.decode()?;
    let group = request.group_id.0.as_str();
    let tp = TopicPartition::new(OFFSETS_TOPIC, ctx.coordinator.partition_for(group));
    let mut resp = AddOffsetsToTxnResponse::default();
    if let Err(e) = ctx
        .txn_coordinator
        .add_partitions(
            request.transactional_id.0.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            &[tp].into_iter().collect(),
        )
        .await
    {
        resp.error_code = txn_code(e, req.version);
    }
    req.respond(&resp)
}

pub(super) async fn end_txn(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: EndTxnRequest = req.decode()?;
    let mut resp = EndTxnResponse::default();
    if let Err(e) = ctx
        .txn_coordinator
        .end_txn(
            request.transactional_id.0.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await
    {
        resp.error_code = txn_code(e, req.version);
    }
    req.respond(&resp)
}

pub(super) async fn txn_offset_commit(
    ctx: &ApiContext,
    req: &Req,
) -> Result<Option<Response>, ApiError> {
    let request: TxnOffsetCommitRequest = req.decode()?;
    let group_id = request.group_id.0.to_string();
    let snap = ctx.metadata.snapshot();
    let mut items: Vec<(String, i32, Result<PartitionCommit, i16>)> = Vec::new();
    for t in &request.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let commit = PartitionCommit {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: (req.version >= 2 && p.committed_leader_epoch >= 0)
                    .then_some(p.committed_leader_epoch),
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                commit_timestamp: -1,
            };
            let known = snap.partition(&topic, p.partition_index).is_some();
            let r = if known {
                Ok(commit)
            } else {
                Err(ResponseError::UnknownTopicOrPartition.code())
            };
            items.push((topic.clone(), p.partition_index, r));
        }
    }
    let outcomes: Vec<i16> = match ctx.coordinator.check(&group_id) {
        Err(e) => {
            // Kafka answers v0-1 clients COORDINATOR_NOT_AVAILABLE for a loading partition.
            let e = match e {
                crate::coordinator::GroupError::LoadInProgress if req.version < 2 => {
                    crate::coordinator::GroupError::CoordinatorNotAvailable
                }
                other => other,
            };
            vec![group_code(Some(e)); items.len()]
        }
        Ok(()) => {
            let accepted: Vec<PartitionCommit> = items
                .iter()
                .filter_map(|(_, _, r)| r.as_ref().ok().cloned())
                .collect();
            let commit = TxnCommitRequest {
                group_id: group_id.clone(),
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
                generation_id: if req.version >= 3 {
                    request.generation_id
                } else {
                    -1
                },
                member_id: if req.version >= 3 {
                    request.member_id.to_string()
                } else {
                    String::new()
                },
                partitions: accepted,
            };
            let mut results = ctx
                .coordinator
                .membership()
                .txn_commit_offsets(commit, now_ms())
                .await
                .into_iter();
            items
                .iter()
                .map(|(_, _, r)| match r {
                    Err(code) => *code,
                    Ok(_) => group_code(results.next().and_then(Result::err)),
                })
                .collect()
        }
    };
    let mut resp = TxnOffsetCommitResponse::default();
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for ((topic, partition, _), code) in items.into_iter().zip(outcomes) {
        let mut p = TxnOffsetCommitResponsePartition::default();
        p.partition_index = partition;
        p.error_code = code;
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = TopicName(StrBytes::from_string(topic));
                t.partitions = vec![p];
                topics.push(t);
            }
        }
    }
    resp.topics = topics;
    req.respond(&resp)
}
