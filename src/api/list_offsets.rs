//! ListOffsets (2), v0–5: earliest (-2), latest (-1: the high watermark for read_uncommitted
//! consumers, the last stable offset for read_committed ones from v2, the log end for a
//! follower), or the first offset whose timestamp is at or after a given time, through the time
//! index, if it is below that same limit.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ListOffsetsRequest;

use super::codes::NONE;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::log::TopicPartition;
use crate::replication::ReplicaError;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// (offset, timestamp) for one partition, or the error.
fn lookup(
    ctx: &ApiContext,
    tp: &TopicPartition,
    timestamp: i64,
    current_leader_epoch: i32,
    from_follower: bool,
    read_committed: bool,
) -> Result<(i64, i64, i32), ReplicaError> {
    let p = ctx.replicas.partition_or_error(tp)?;
    if !p.is_leader() {
        return Err(ReplicaError::NotLeader);
    }
    let epoch = p.leader_epoch();
    if current_leader_epoch >= 0 {
        if current_leader_epoch < epoch {
            return Err(ReplicaError::FencedLeaderEpoch);
        }
        if current_leader_epoch > epoch {
            return Err(ReplicaError::UnknownLeaderEpoch);
        }
    }
    let log = p.log();
    // Kafka's lastFetchableOffset: what this asker may read up to.
    let limit = if from_follower {
        log.log_end_offset()
    } else if read_committed {
        log.last_stable_offset(p.high_watermark())
    } else {
        p.high_watermark()
    };
    match timestamp {
        EARLIEST => Ok((log.log_start_offset(), -1, -1)),
        LATEST => Ok((limit, -1, epoch)),
        ts => match log
            .fetch_offset_by_timestamp(ts)
            .map_err(ReplicaError::from_log)?
        {
            Some((off, found_ts)) if off < limit => Ok((off, found_ts, -1)),
            _ => Ok((-1, -1, -1)),
        },
    }
}

pub(super) fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: ListOffsetsRequest = req.decode()?;
    let from_follower = request.replica_id.0 >= 0;
    let read_committed = req.version >= 2 && request.isolation_level == 1;
    let mut resp = ListOffsetsResponse::default();
    resp.topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let mut out = ListOffsetsTopicResponse::default();
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition {
                        topic: name.clone(),
                        partition: p.partition_index,
                    };
                    let epoch_check = if req.version >= 4 {
                        p.current_leader_epoch
                    } else {
                        -1
                    };
                    let mut r = ListOffsetsPartitionResponse::default();
                    r.partition_index = p.partition_index;
                    match lookup(
                        ctx,
                        &tp,
                        p.timestamp,
                        epoch_check,
                        from_follower,
                        read_committed,
                    ) {
                        Ok((offset, ts, epoch)) => {
                            if req.version == 0 {
                                // v0 answers a list of offsets; Kafka gives at most the one found.
                                r.old_style_offsets = if offset >= 0 && p.max_num_offsets > 0 {
                                    vec![offset]
                                } else {
                                    vec![]
                                };
                            } else {
                                r.offset = offset;
                                r.timestamp = ts;
                                if req.version >= 4 {
                                    r.leader_epoch = epoch;
                                }
                            }
                        }
                        Err(e) => {
                            r.error_code = error_code(&e);
                            if req.version >= 1 {
                                r.offset = -1;
                                r.timestamp = -1;
                            }
                        }
                    }
                    if r.error_code == NONE && req.version == 0 {
                        r.offset = -1;
                        r.timestamp = -1;
                    }
                    r
                })
                .collect();
            out.name = t.name;
            out
        })
        .collect();
    req.respond(&resp)
}
