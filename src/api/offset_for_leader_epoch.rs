//! OffsetForLeaderEpoch (23), v0–3: a follower asks the leader where one of its leader epochs
//! ended, to find where its log diverged (KIP-101/279). The answer comes from the leader's
//! leader-epoch cache; CurrentLeaderEpoch (v2+) fences followers of an older or newer epoch.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::OffsetForLeaderEpochRequest;

use super::codes::NONE;
use super::{error_code, ApiContext, ApiError, Req, Response};
use crate::log::{TopicPartition, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::replication::ReplicaError;

fn answer(
    ctx: &ApiContext,
    tp: &TopicPartition,
    current_leader_epoch: i32,
    epoch: i32,
) -> Result<(i32, i64), ReplicaError> {
    let p = ctx.replicas.partition_or_error(tp)?;
    p.last_offset_for_leader_epoch(current_leader_epoch, epoch)
}

pub(super) fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: OffsetForLeaderEpochRequest = req.decode()?;
    let mut resp = OffsetForLeaderEpochResponse::default();
    resp.topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.as_str().to_string();
            let mut out = OffsetForLeaderTopicResult::default();
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(name.clone(), p.partition);
                    let current = if req.version >= 2 {
                        p.current_leader_epoch
                    } else {
                        -1
                    };
                    let mut e = EpochEndOffset::default();
                    e.partition = p.partition;
                    match answer(ctx, &tp, current, p.leader_epoch) {
                        Ok((epoch, end)) => {
                            e.error_code = NONE;
                            e.leader_epoch = epoch;
                            e.end_offset = end;
                        }
                        Err(err) => {
                            e.error_code = error_code(&err);
                            e.leader_epoch = UNDEFINED_EPOCH;
                            e.end_offset = UNDEFINED_EPOCH_OFFSET;
                        }
                    }
                    e
                })
                .collect();
            out.topic = t.topic;
            out
        })
        .collect();
    req.respond(&resp)
}
