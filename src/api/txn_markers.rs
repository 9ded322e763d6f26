//! WriteTxnMarkers (27), v0–1: a transaction coordinator asks this broker, as leader of some
//! partitions, to end a producer's transaction there by appending a COMMIT or ABORT marker
//! (Kafka's `KafkaApis.handleWriteTxnMarkersRequest`).
//!
//! Each marker becomes one control batch per partition, appended with the coordinator's
//! origin (its producer and coordinator epochs are checked, not its sequence) and acks=all,
//! so the coordinator learns of a marker only once it is replicated. Every partition gets its
//! own code: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH,
//! TRANSACTION_COORDINATOR_FENCED, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, … as the append
//! answers; the coordinator retries the retriable ones against the current leader.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::metadata::OFFSETS_TOPIC;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::common::TopicPartition;
use crate::log::AppendOrigin;
use crate::protocol::control::{self, ControlType, EndTxnMarker};
use crate::util::clock::now_ms;

/// Kafka's `request.timeout.ms` default, which bounds the markers' acks=all wait.
const MARKER_APPEND_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: WriteTxnMarkersRequest = req.decode()?;
    let mut resp = WriteTxnMarkersResponse::default();
    for m in request.markers {
        let marker = EndTxnMarker {
            control: if m.transaction_result {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: m.coordinator_epoch,
        };
        let batch =
            control::encode_marker(m.producer_id.0, m.producer_epoch, marker, now_ms()).freeze();
        let entries: Vec<(TopicPartition, Option<bytes::Bytes>)> = m
            .topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.as_str();
                let batch = &batch;
                t.partition_indexes
                    .iter()
                    .map(move |p| (TopicPartition::new(name, *p), Some(batch.clone())))
            })
            .collect();
        let results = ctx
            .replicas
            .append_records_from(
                -1,
                MARKER_APPEND_TIMEOUT,
                entries,
                AppendOrigin::Coordinator,
            )
            .await;
        let mut codes: HashMap<TopicPartition, i16> = HashMap::with_capacity(results.len());
        for r in results {
            let code = match &r.result {
                Ok(_) => 0,
                Err(e) => {
                    tracing::info!(topic = %r.tp.topic, partition = r.tp.partition,
                        producer_id = m.producer_id.0, epoch = m.producer_epoch, error = %e,
                        "transaction marker not written");
                    error_code(e)
                }
            };
            codes.insert(r.tp, code);
        }
        // Kafka's handleTxnCompletion: a marker on an offsets partition makes the producer's
        // pending transactional offsets committed (or drops them).
        let offsets_partitions: Vec<i32> = codes
            .iter()
            .filter(|(tp, code)| tp.topic == OFFSETS_TOPIC && **code == 0)
            .map(|(tp, _)| tp.partition)
            .collect();
        if !offsets_partitions.is_empty() {
            ctx.coordinator.membership().complete_txn(
                m.producer_id.0,
                &offsets_partitions,
                m.transaction_result,
            );
        }
        let mut out = WritableTxnMarkerResult::default();
        out.producer_id = m.producer_id;
        out.topics = m
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.as_str().to_string();
                let mut topic = WritableTxnMarkerTopicResult::default();
                topic.partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| {
                        let mut r = WritableTxnMarkerPartitionResult::default();
                        r.partition_index = *p;
                        r.error_code = codes
                            .get(&TopicPartition::new(name.as_str(), *p))
                            .copied()
                            .unwrap_or(-1);
                        r
                    })
                    .collect();
                topic.name = t.name;
                topic
            })
            .collect();
        resp.markers.push(out);
    }
    req.respond(&resp)
}
