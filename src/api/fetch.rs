//! Fetch (1), v4–11: raw batches from the log, long poll, no fetch sessions (`session_id` 0, so
//! clients keep sending full fetch requests). Records go from the log's read buffer to the
//! socket without another copy (see `fetch_encode`).

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;

use super::fetch_encode::{self, PartitionOut, TopicOut};
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::log::TopicPartition;
use crate::replication::{FetchParams, FetchPartitionRequest};

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: FetchRequest = req.decode()?;
    let params = FetchParams {
        replica_id: request.replica_id.0,
        max_wait_ms: request.max_wait_ms,
        min_bytes: request.min_bytes,
        max_bytes: request.max_bytes,
    };
    let mut order = Vec::with_capacity(request.topics.len());
    let mut partitions = Vec::new();
    for t in &request.topics {
        let name = t.topic.0.as_str().to_string();
        order.push((t.topic.0.clone().into_bytes(), t.partitions.len()));
        for p in &t.partitions {
            partitions.push(FetchPartitionRequest {
                tp: TopicPartition {
                    topic: name.clone(),
                    partition: p.partition,
                },
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: if req.version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                },
            });
        }
    }
    let mut results = ctx.replicas.fetch(params, partitions).await.into_iter();
    let topics: Vec<TopicOut> = order
        .into_iter()
        .map(|(name, n)| TopicOut {
            name,
            partitions: results
                .by_ref()
                .take(n)
                .map(|r| match r.result {
                    Ok(read) => PartitionOut {
                        index: r.tp.partition,
                        error_code: 0,
                        high_watermark: read.high_watermark,
                        // No transactions: the last stable offset is the high watermark.
                        last_stable_offset: read.high_watermark,
                        log_start_offset: read.info.log_start_offset,
                        records: read.info.records,
                    },
                    Err(f) => PartitionOut {
                        index: r.tp.partition,
                        error_code: error_code(&f.error),
                        high_watermark: f.high_watermark,
                        last_stable_offset: f.high_watermark,
                        log_start_offset: f.log_start_offset,
                        records: Bytes::new(),
                    },
                })
                .collect(),
        })
        .collect();
    Ok(Some(fetch_encode::encode(
        req.correlation_id,
        req.version,
        &topics,
    )))
}
