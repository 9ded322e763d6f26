//! InitProducerId (22), v0–4. Without a transactional id: a fresh producer id from this
//! broker's block, epoch 0, nothing persisted (any broker answers; the Java client asks the
//! least-loaded one). With one: the transaction coordinator of that id initialises it —
//! bumping its epoch, fencing an older producer and aborting its open transaction
//! (reference §2.4). Before v4 (KIP-588) PRODUCER_FENCED is answered as
//! INVALID_PRODUCER_EPOCH.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::codes;
use super::{ApiContext, ApiError, Req, Response};

/// The first version that knows PRODUCER_FENCED.
const FENCED_FROM: i16 = 4;

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: InitProducerIdRequest = req.decode()?;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    match answer(ctx, &request, req.version).await {
        Ok((id, epoch)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = epoch;
        }
        Err(e) => resp.error_code = e.code(),
    }
    req.respond(&resp)
}

async fn answer(
    ctx: &ApiContext,
    r: &InitProducerIdRequest,
    version: i16,
) -> Result<(i64, i16), ResponseError> {
    // Both or neither: an id without an epoch (or the reverse) is a malformed request.
    if (r.producer_id.0 == -1) != (r.producer_epoch == -1) {
        return Err(ResponseError::InvalidRequest);
    }
    if let Some(txn) = &r.transactional_id {
        let expected =
            (version >= 3 && r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch));
        return ctx
            .txn_coordinator
            .init_producer_id(txn.0.as_str(), r.transaction_timeout_ms, expected)
            .await
            .map_err(|e| codes::txn(e, version < FENCED_FROM));
    }
    ctx.producer_ids
        .generate()
        .await
        .map(|id| (id, 0))
        .map_err(|e| {
            tracing::warn!(error = %e, "InitProducerId failed");
            // Retriable in every client: the request is tried again once ZooKeeper answers.
            ResponseError::CoordinatorNotAvailable
        })
}
