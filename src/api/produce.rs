//! Produce (0), v3–8: one RecordBatch v2 per partition, appended as raw bytes.
//!
//! acks must be -1, 0 or 1 (else INVALID_REQUIRED_ACKS for every partition). With acks=0 nothing
//! is answered, and any failure closes the connection, which is how the client learns of it.

use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::OFFSETS_TOPIC;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::log::TopicPartition;
use crate::replication::ReplicaError;

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: ProduceRequest = req.decode()?;
    let acks = request.acks;
    let mut order: Vec<(String, Vec<i32>)> = Vec::new();
    let mut entries = Vec::new();
    let mut rejected: Vec<(TopicPartition, i16)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.as_str().to_string();
        let mut parts = Vec::new();
        for p in topic.partition_data {
            parts.push(p.index);
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.index,
            };
            if !matches!(acks, -1..=1) {
                rejected.push((tp, ResponseError::InvalidRequiredAcks.code()));
            } else if name == OFFSETS_TOPIC {
                // Only the group coordinator writes the offsets topic.
                rejected.push((tp, ResponseError::InvalidTopicException.code()));
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
                    .map(|(tp, c)| format!("{tp}: error code {c}")),
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
                }
            }
        }
        if req.version >= 5 {
            pr.log_start_offset = r.log_start_offset;
        }
        by_tp.insert(r.tp, pr);
    }
    for (tp, code) in rejected {
        let mut pr = PartitionProduceResponse::default();
        pr.index = tp.partition;
        pr.error_code = code;
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
