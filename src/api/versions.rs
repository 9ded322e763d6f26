//! ApiVersions (18): the ranges in `protocol::versions`, and the KIP-511 fallback for versions we
//! do not know.
//!
//! The v3 response must leave its tagged fields out when they hold defaults: librdkafka 2.0.x
//! misreads them, which would fail every connection (the encoder omits defaults; a test pins it).

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::ResponseError;

use super::codes::NONE;
use super::{ApiError, Req, Response};
use crate::protocol::file_region::Chunk;
use crate::protocol::frame::encode_response;
use crate::protocol::versions::SUPPORTED;

fn body(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    r
}

pub(super) fn handle(req: &Req) -> Result<Option<Response>, ApiError> {
    // Decoding checks the body is well formed; the client software name is only informative.
    let _: ApiVersionsRequest = req.decode()?;
    req.respond(&body(NONE))
}

/// UNSUPPORTED_VERSION encoded as v0 (header v0), still listing our ranges so the client can retry.
pub(super) fn unsupported_version(correlation_id: i32) -> Result<Option<Response>, ApiError> {
    let error_code = ResponseError::UnsupportedVersion.code();
    encode_response(correlation_id, 0, &body(error_code), 0)
        .map(|b| Some(vec![Chunk::Mem(b.freeze())]))
        .map_err(|e| ApiError::Encode {
            key: kafka_protocol::messages::ApiKey::ApiVersions,
            version: 0,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn v3_response_has_no_tagged_fields() {
        let r = body(NONE);
        let mut b = bytes::BytesMut::new();
        r.encode(&mut b, 3).unwrap();
        // The body ends with throttle_time_ms (4 bytes) then the tagged-field count, which must be 0.
        assert_eq!(
            *b.last().unwrap(),
            0,
            "tagged fields present: {:?}",
            &b[b.len() - 6..]
        );
        let n = SUPPORTED.len();
        // error code (2) + compact array len (1) + n * (2+2+2+1 tag byte) + throttle (4) + tags (1)
        assert_eq!(b.len(), 2 + 1 + n * 7 + 4 + 1);
    }

    #[test]
    fn unsupported_version_is_v0_with_ranges() {
        let out = crate::protocol::file_region::concat(&unsupported_version(7).unwrap().unwrap())
            .unwrap();
        // size(4) corr(4) error(2)
        assert_eq!(&out[4..8], &7i32.to_be_bytes());
        // UNSUPPORTED_VERSION.
        assert_eq!(&out[8..10], &35i16.to_be_bytes());
        assert_eq!(&out[10..14], &(SUPPORTED.len() as i32).to_be_bytes());
    }
}
