//! Fetch (1), v4–11: raw batches from the log, long poll, and incremental fetch sessions from v7
//! (KIP-227, see `fetch_session`). Records are file ranges from the log, sent to the socket
//! from the page cache (see `fetch_encode`).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;

use super::fetch_encode::{self, PartitionOut, SessionFields, TopicOut};
use super::fetch_session::{FetchContext, Outcome, SessionRequest, NO_SESSION};
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::common::TopicPartition;
use crate::protocol::file_region::FileRegion;
use crate::replication::{FetchParams, FetchPartitionRequest, FetchPartitionResult};

/// The first version with fetch sessions; older requests are sessionless.
const SESSIONS_FROM: i16 = 7;
/// The epoch of a sessionless full fetch.
const FINAL_EPOCH: i32 = -1;

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: FetchRequest = req.decode()?;
    // Kafka caps every response at the broker's `fetch.max.bytes`, whatever the client asks.
    let max_bytes = request.max_bytes.min(ctx.config.fetch_max_bytes);
    let params = FetchParams {
        replica_id: request.replica_id.0,
        max_wait_ms: request.max_wait_ms,
        min_bytes: request.min_bytes.min(max_bytes),
        max_bytes,
        isolation_level: request.isolation_level,
    };
    let partitions = requested_partitions(&request, req.version);
    let forgotten: Vec<TopicPartition> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let name = t.topic.0.as_str();
            t.partitions
                .iter()
                .map(move |&p| TopicPartition::new(name, p))
        })
        .collect();
    let (session_id, epoch) = if req.version >= SESSIONS_FROM {
        (request.session_id, request.session_epoch)
    } else {
        (NO_SESSION, FINAL_EPOCH)
    };
    let (context, reads) = ctx.fetch_sessions.new_context(SessionRequest {
        session_id,
        epoch,
        partitions,
        forgotten: &forgotten,
        follower: params.replica_id >= 0,
    });
    let results = match context {
        // A session error is answered at once: the client starts over with a full fetch.
        FetchContext::Error(_) => Vec::new(),
        _ => ctx.replicas.fetch(params, reads).await,
    };
    let outcomes: Vec<Outcome> = results.iter().map(outcome).collect();
    let answer = ctx.fetch_sessions.respond(context, &outcomes);
    let mut results: Vec<Option<FetchPartitionResult>> = results.into_iter().map(Some).collect();
    let included = answer
        .include
        .iter()
        .filter_map(|&i| results.get_mut(i).and_then(Option::take));
    let session = SessionFields {
        error_code: answer.error.map_or(0, |e| e.code()),
        session_id: answer.session_id,
    };
    Ok(Some(fetch_encode::encode(
        req.correlation_id,
        req.version,
        session,
        &by_topic(included),
    )))
}

/// The request's partitions in order, each once: a partition listed again keeps its first place
/// and takes the later parameters, as Kafka's `LinkedHashMap` of fetch data does. Reading it
/// once per listing would multiply the response (60 listings, 60 copies of the same bytes).
fn requested_partitions(request: &FetchRequest, version: i16) -> Vec<FetchPartitionRequest> {
    let mut partitions: Vec<FetchPartitionRequest> = Vec::new();
    let mut seen: HashMap<TopicPartition, usize> = HashMap::new();
    for t in &request.topics {
        let name = t.topic.0.as_str();
        for p in &t.partitions {
            let wanted = FetchPartitionRequest {
                tp: TopicPartition::new(name, p.partition),
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                },
            };
            match seen.get(&wanted.tp) {
                Some(&i) => partitions[i] = wanted,
                None => {
                    seen.insert(wanted.tp.clone(), partitions.len());
                    partitions.push(wanted);
                }
            }
        }
    }
    partitions
}

fn outcome(r: &FetchPartitionResult) -> Outcome {
    match &r.result {
        Ok(read) => Outcome {
            has_records: !read.info.records.is_empty(),
            error: false,
            high_watermark: read.high_watermark,
            log_start_offset: read.info.log_start_offset,
        },
        Err(f) => Outcome {
            has_records: false,
            error: true,
            high_watermark: f.high_watermark,
            log_start_offset: f.log_start_offset,
        },
    }
}

/// Results as the response's topics: consecutive partitions of one topic share an entry.
fn by_topic(results: impl Iterator<Item = FetchPartitionResult>) -> Vec<TopicOut> {
    let mut topics: Vec<TopicOut> = Vec::new();
    for r in results {
        let out = partition_out(&r);
        match topics.last_mut() {
            Some(t) if t.name == r.tp.topic.as_bytes() => t.partitions.push(out),
            _ => topics.push(TopicOut {
                name: Bytes::from(r.tp.topic.into_bytes()),
                partitions: vec![out],
            }),
        }
    }
    topics
}

fn partition_out(r: &FetchPartitionResult) -> PartitionOut {
    match &r.result {
        Ok(read) => PartitionOut {
            index: r.tp.partition,
            error_code: 0,
            high_watermark: read.high_watermark,
            last_stable_offset: read.last_stable_offset,
            log_start_offset: read.info.log_start_offset,
            aborted: read.aborted.as_ref().map(|list| {
                list.iter()
                    .map(|t| (t.producer_id, t.first_offset))
                    .collect()
            }),
            records: read.info.records.clone(),
        },
        Err(f) => PartitionOut {
            index: r.tp.partition,
            error_code: error_code(&f.error),
            high_watermark: f.high_watermark,
            last_stable_offset: f.high_watermark,
            log_start_offset: f.log_start_offset,
            aborted: None,
            records: FileRegion::default(),
        },
    }
}
