//! ControlledShutdown (7) v0–3 (reference §4): a broker about to stop asks the controller to move
//! its leadership away. Only the active controller answers; the work runs on the controller's
//! event loop (`controller::shutdown`), which this handler awaits.
//!
//! v0 uses request header v0 (no client id); `protocol::frame` picks the header version per API
//! and version, so it decodes like any other request.

use kafka_protocol::messages::controlled_shutdown_response::RemainingPartition;
use kafka_protocol::messages::{ControlledShutdownRequest, ControlledShutdownResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::codes;
use super::{ApiContext, ApiError, Req, Response};

pub(super) async fn handle(ctx: &ApiContext, req: &Req) -> Result<Option<Response>, ApiError> {
    let request: ControlledShutdownRequest = req.decode()?;
    let broker = request.broker_id.0;
    // Before v2 the request carries no epoch: -1, which the controller accepts (KIP-380).
    let broker_epoch = if req.version >= 2 {
        request.broker_epoch
    } else {
        -1
    };
    let mut resp = ControlledShutdownResponse::default();
    if let Some(code) = super::control::control_plane_error(ctx, "ControlledShutdown") {
        resp.error_code = code;
        return req.respond(&resp);
    }
    match ctx
        .controller
        .controlled_shutdown(broker, broker_epoch)
        .await
    {
        Ok(remaining) => {
            tracing::info!(
                broker,
                broker_epoch,
                remaining = remaining.len(),
                "answered controlled shutdown"
            );
            resp.remaining_partitions = remaining
                .into_iter()
                .map(|tp| {
                    let mut p = RemainingPartition::default();
                    p.topic_name = TopicName(StrBytes::from_string(tp.topic));
                    p.partition_index = tp.partition;
                    p
                })
                .collect();
        }
        Err(e) => {
            tracing::info!(broker, broker_epoch, error = %e, "controlled shutdown refused");
            resp.error_code = codes::shutdown(e).code();
        }
    }
    req.respond(&resp)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{ApiKey, ControlledShutdownRequest};

    use crate::api::Req;
    use crate::protocol::frame;

    #[test]
    fn v0_header_has_no_client_id_and_decodes() {
        // Header v0: key, version, correlation id, and no client id; then BrokerId.
        let mut b = BytesMut::new();
        b.put_i16(ApiKey::ControlledShutdown as i16);
        b.put_i16(0);
        b.put_i32(9);
        b.put_i32(4);
        let f = frame::decode_header(b.freeze()).unwrap();
        assert_eq!(
            (f.api_key, f.api_version, f.correlation_id),
            (ApiKey::ControlledShutdown, 0, 9)
        );
        let req = Req::from_frame(f, std::sync::Arc::from(""));
        let body: ControlledShutdownRequest = req.decode().unwrap();
        assert_eq!(body.broker_id.0, 4);
    }

    #[test]
    fn v1_header_carries_a_client_id() {
        let mut b = BytesMut::new();
        b.put_i16(ApiKey::ControlledShutdown as i16);
        b.put_i16(1);
        b.put_i32(9);
        b.put_i16(1);
        b.put_u8(b'x');
        b.put_i32(4);
        let f = frame::decode_header(b.freeze()).unwrap();
        assert_eq!(f.client_id.as_deref(), Some("x"));
        let body: ControlledShutdownRequest = Req::from_frame(f, std::sync::Arc::from(""))
            .decode()
            .unwrap();
        assert_eq!(body.broker_id.0, 4);
    }
}
