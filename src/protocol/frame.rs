//! Request framing: the header in front of every request body, and response encoding.
//!
//! The 4-byte size prefix itself is read by `network`; this module sees one whole frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A request whose header has been decoded; `body` is the rest of the frame, still encoded.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: Bytes,
}

/// Why a frame's header could not be read. Each closes the connection (Kafka does the same).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("request frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header for API key {key} v{version}: {reason}")]
    Malformed {
        key: i16,
        version: i16,
        reason: String,
    },
}

/// The fixed prefix every request header version shares: key, version, correlation id.
pub fn peek_fixed(frame: &[u8]) -> Result<(i16, i16, i32), HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    Ok((key, version, corr))
}

/// Decodes the request header of `frame` with the header version its API and version call for.
///
/// # Errors
/// A frame too short for a header, an unknown API key, or a header that does not decode.
pub fn decode_header(frame: Bytes) -> Result<RequestFrame, HeaderError> {
    let (key, version, _) = peek_fixed(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| HeaderError::UnknownApiKey(key))?;
    let header_version = api_key.request_header_version(version);
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| HeaderError::Malformed {
            key,
            version,
            reason: e.to_string(),
        })?;
    Ok(RequestFrame {
        api_key,
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|s| s.as_str().to_string()),
        body: buf,
    })
}

/// Encodes a size-prefixed response frame: header (v0 or v1 by `header_version`) then the body.
///
/// # Errors
/// The body cannot be encoded at `version` (a field set that the version lacks): a bug to log,
/// answered by closing the connection rather than sending something wrong.
pub fn encode_response<M: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &M,
    version: i16,
) -> anyhow::Result<BytesMut> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, version)?;
    Ok(out)
}

/// Reads a request body of type `M`, requiring that every byte was consumed.
///
/// # Errors
/// The body does not decode at `version`, or bytes are left over.
pub fn decode_body<M: Decodable>(body: &Bytes, version: i16) -> anyhow::Result<M> {
    let mut buf = body.clone();
    let msg = M::decode(&mut buf, version)?;
    if buf.has_remaining() {
        anyhow::bail!("{} trailing bytes after the request body", buf.remaining());
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    fn request_bytes(key: i16, version: i16, header_version: i16) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "c",
            )));
        let mut b = BytesMut::new();
        header.encode(&mut b, header_version).unwrap();
        MetadataRequest::default().encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn decodes_v1_and_flexible_headers() {
        let f = decode_header(request_bytes(3, 8, 1)).unwrap();
        assert_eq!(
            (f.api_key, f.api_version, f.correlation_id),
            (ApiKey::Metadata, 8, 42)
        );
        assert_eq!(f.client_id.as_deref(), Some("c"));
        let f = decode_header(request_bytes(3, 9, 2)).unwrap();
        assert_eq!(f.correlation_id, 42);
        let _: MetadataRequest = decode_body(&f.body, 9).unwrap();
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(
            decode_header(Bytes::from_static(&[0, 3])).unwrap_err(),
            HeaderError::TooShort(2)
        );
        let mut b = BytesMut::new();
        b.put_i16(999);
        b.put_i16(0);
        b.put_i32(1);
        assert_eq!(
            decode_header(b.freeze()).unwrap_err(),
            HeaderError::UnknownApiKey(999)
        );
    }
}
