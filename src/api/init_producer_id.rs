//! InitProducerId (22), v0–4, for idempotent producers (no transactional id): a fresh
//! producer id from this broker's block, epoch 0, nothing persisted (Kafka's
//! `TransactionCoordinator.handleInitProducerId` with a null transactional id). Any broker
//! answers; the Java client asks the least-loaded one.
//!
//! With a transactional id the request belongs to the transaction coordinator, which gregor
//! does not have yet: it is refused with INVALID_REQUEST, as FindCoordinator refuses the
//! transaction key type, so a transactional producer fails at once instead of retrying.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{ApiContext, ApiError, Req, Response};

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: InitProducerIdRequest = req.decode()?;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    match answer(ctx, &request).await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => resp.error_code = e.code(),
    }
    req.respond(&resp)
}

async fn answer(ctx: &ApiContext, r: &InitProducerIdRequest) -> Result<i64, ResponseError> {
    // Both or neither: an id without an epoch (or the reverse) is a malformed request.
    if (r.producer_id.0 == -1) != (r.producer_epoch == -1) {
        return Err(ResponseError::InvalidRequest);
    }
    if let Some(txn) = &r.transactional_id {
        tracing::info!(transactional_id = %txn.0.as_str(),
            "InitProducerId with a transactional id refused: transactions are not supported yet");
        return Err(ResponseError::InvalidRequest);
    }
    ctx.producer_ids.generate().await.map_err(|e| {
        tracing::warn!(error = %e, "InitProducerId failed");
        // Retriable in every client: the request is tried again once ZooKeeper answers.
        ResponseError::CoordinatorNotAvailable
    })
}
