//! Fetch (1), v4–11: raw batches from the log, long poll, no fetch sessions (`session_id` 0, so
//! clients keep sending full fetch requests).

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest};

use super::{error_code, ApiContext, ApiError, Req};
use crate::log::TopicPartition;
use crate::replication::{FetchParams, FetchPartitionRequest};

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<BytesMut>, ApiError> {
    let request: FetchRequest = req.decode()?;
    let params = FetchParams {
        replica_id: request.replica_id.0,
        max_wait_ms: request.max_wait_ms,
        min_bytes: request.min_bytes,
        // v3+ carries a response limit; before that it was unlimited.
        max_bytes: if req.version >= 3 {
            request.max_bytes
        } else {
            i32::MAX
        },
    };
    let mut order = Vec::with_capacity(request.topics.len());
    let mut partitions = Vec::new();
    for t in &request.topics {
        let name = t.topic.0.as_str().to_string();
        order.push((t.topic.clone(), t.partitions.len()));
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
    let results = ctx.replicas.fetch(params, partitions).await;

    let mut results = results.into_iter();
    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    resp.responses = order
        .into_iter()
        .map(|(topic, n)| {
            let mut t = FetchableTopicResponse::default();
            t.topic = topic;
            t.partitions = results
                .by_ref()
                .take(n)
                .map(|r| {
                    let mut pd = PartitionData::default();
                    pd.partition_index = r.tp.partition;
                    match r.result {
                        Ok(read) => {
                            pd.high_watermark = read.high_watermark;
                            // No transactions: the last stable offset is the high watermark.
                            pd.last_stable_offset = read.high_watermark;
                            pd.log_start_offset = read.info.log_start_offset;
                            pd.records = Some(read.info.records);
                        }
                        Err(f) => {
                            pd.error_code = error_code(&f.error);
                            pd.high_watermark = f.high_watermark;
                            pd.last_stable_offset = f.high_watermark;
                            pd.log_start_offset = f.log_start_offset;
                            pd.records = Some(bytes::Bytes::new());
                        }
                    }
                    if req.version < 5 {
                        pd.log_start_offset = -1;
                    }
                    if req.version >= 11 {
                        pd.preferred_read_replica = BrokerId(-1);
                    }
                    pd
                })
                .collect();
            t
        })
        .collect();
    req.respond(&resp)
}
