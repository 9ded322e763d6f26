//! Produce (0), v3–8: one RecordBatch v2 per partition, appended as raw bytes.
//!
//! Each partition's records pass Kafka's request-level checks here (one batch, magic 2, zstd
//! from v7), then the log validator on the leader's append; v8 answers carry the validator's
//! message and its per-record errors (`record_errors`).
//!
//! acks must be -1, 0 or 1 (else INVALID_REQUIRED_ACKS for every partition). With acks=0 nothing
//! is answered, and any failure closes the connection, which is how the client learns of it.

use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::is_internal;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::log::TopicPartition;
use crate::log::{RecordError, ValidationError};
use crate::protocol::batch::{self, BatchHeader, CompressionCodec};
use crate::replication::ReplicaError;

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: ProduceRequest = req.decode()?;
    let acks = request.acks;
    let mut order: Vec<(String, Vec<i32>)> = Vec::new();
    let mut entries = Vec::new();
    let mut rejected: Vec<(TopicPartition, i16, Option<String>)> = Vec::new();
    // Kafka answers a request carrying transactional batches without a transactional id with
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition, before looking at any of them.
    // A transactional bit without a producer id is a malformed batch instead (INVALID_RECORD
    // from the log validator), so one bad batch cannot fail a whole request.
    let unauthorized_transactional = request.transactional_id.is_none()
        && request.topic_data.iter().any(|t| {
            t.partition_data
                .iter()
                .any(|p| p.records.as_deref().is_some_and(is_transactional))
        });
    for topic in request.topic_data {
        let name = topic.name.0.as_str().to_string();
        let mut parts = Vec::new();
        for p in topic.partition_data {
            parts.push(p.index);
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.index,
            };
            if unauthorized_transactional {
                let code = ResponseError::TransactionalIdAuthorizationFailed.code();
                rejected.push((tp, code, None));
            } else if !matches!(acks, -1..=1) {
                rejected.push((tp, ResponseError::InvalidRequiredAcks.code(), None));
            } else if is_internal(&name) {
                // Only the coordinators write their internal topics.
                rejected.push((tp, ResponseError::InvalidTopicException.code(), None));
            } else if let Err((e, why)) = check_records(req.version, p.records.as_deref()) {
                rejected.push((tp, e.code(), Some(why)));
            } else {
                entries.push((tp, p.records));
            }
        }
        order.push((name, parts));
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let results = ctx.replicas.append_records(acks, timeout, entries).await;

    if acks == 0 {
        let failed = results
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.tp.clone(), e.clone())))
            .map(|(tp, e)| format!("{tp}: {e}"))
            .chain(
                rejected
                    .iter()
                    .map(|(tp, c, _)| format!("{tp}: error code {c}")),
            )
            .collect::<Vec<_>>();
        if failed.is_empty() {
            return Ok(None);
        }
        return Err(ApiError::AcksZeroFailure(failed.join(", ")));
    }

    let mut by_tp = std::collections::HashMap::new();
    for r in results {
        let mut pr = PartitionProduceResponse::default();
        pr.index = r.tp.partition;
        match &r.result {
            Ok(info) => {
                pr.base_offset = info.first_offset;
                pr.log_append_time_ms = info.log_append_time;
            }
            Err(e) => {
                pr.error_code = error_code(e);
                pr.base_offset = -1;
                pr.log_append_time_ms = -1;
                if req.version >= 8 && !matches!(e, ReplicaError::NotLeader) {
                    pr.error_message = Some(StrBytes::from_string(e.to_string()));
                    if let ReplicaError::Rejected(ValidationError::Records { errors, .. }) = e {
                        pr.record_errors = errors.iter().map(record_error).collect();
                    }
                }
            }
        }
        if req.version >= 5 {
            pr.log_start_offset = r.log_start_offset;
        }
        by_tp.insert(r.tp, pr);
    }
    for (tp, code, why) in rejected {
        let mut pr = PartitionProduceResponse::default();
        pr.index = tp.partition;
        pr.error_code = code;
        if req.version >= 8 {
            pr.error_message = why.map(StrBytes::from_string);
        }
        pr.base_offset = -1;
        pr.log_append_time_ms = -1;
        if req.version >= 5 {
            pr.log_start_offset = -1;
        }
        by_tp.insert(tp, pr);
    }
    let mut resp = ProduceResponse::default();
    resp.responses = order
        .into_iter()
        .map(|(name, parts)| {
            let mut t = TopicProduceResponse::default();
            t.partition_responses = parts
                .into_iter()
                .filter_map(|p| {
                    by_tp.remove(&TopicPartition {
                        topic: name.clone(),
                        partition: p,
                    })
                })
                .collect();
            t.name = TopicName(StrBytes::from_string(name));
            t
        })
        .collect();
    req.respond(&resp)
}

fn record_error(e: &RecordError) -> BatchIndexAndErrorMessage {
    let mut out = BatchIndexAndErrorMessage::default();
    out.batch_index = e.batch_index;
    out.batch_index_error_message = Some(StrBytes::from_string(e.message.clone()));
    out
}

/// Whether `records` starts with a transactional batch of a producer.
fn is_transactional(records: &[u8]) -> bool {
    BatchHeader::parse(records).is_ok_and(|h| h.is_transactional() && h.producer_id >= 0)
}

/// Kafka's `ProduceRequest.validateRecords` for v3+: exactly one batch, magic 2, and no zstd
/// before v7. Framing and CRC are checked with the append.
fn check_records(version: i16, records: Option<&[u8]>) -> Result<(), (ResponseError, String)> {
    let Some(records) = records else {
        return Ok(());
    };
    let invalid = |why: String| Err((ResponseError::InvalidRecord, why));
    if records.len() < batch::LOG_OVERHEAD + 5 {
        return invalid(format!(
            "Produce requests with version {version} must have at least one record batch"
        ));
    }
    let magic = records[batch::LOG_OVERHEAD + 4] as i8;
    if magic != batch::MAGIC_V2 {
        return invalid(format!(
            "Produce requests with version {version} are only allowed to contain record batches with magic version 2"
        ));
    }
    let Ok(header) = BatchHeader::parse(records) else {
        return Ok(());
    };
    if version < 7 && header.compression_codec() == CompressionCodec::Zstd {
        return Err((
            ResponseError::UnsupportedCompressionType,
            format!("Produce requests with version {version} are not allowed to use ZStandard compression"),
        ));
    }
    if header.total_size() < records.len() {
        return invalid(format!(
            "Produce requests with version {version} are only allowed to contain exactly one record batch"
        ));
    }
    Ok(())
}
