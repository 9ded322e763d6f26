//! A minimal Kafka-protocol client connection, used for broker-to-broker traffic: the controller's
//! LeaderAndIsr/UpdateMetadata/StopReplica and (later) follower fetches. One request in flight at a
//! time, which is all the controller channel needs (reference §2: strictly one in flight).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frame_reader::FrameReader;

/// Why a request to another broker failed; every variant means "drop the connection and retry".
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("request to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("encode/decode with {addr}: {reason}")]
    Codec { addr: String, reason: String },
    #[error("response from {addr} has correlation id {got}, expected {expected}")]
    Correlation {
        addr: String,
        got: i32,
        expected: i32,
    },
    #[error("response from {addr} announces {size} bytes, more than the {max} allowed")]
    TooLarge { addr: String, size: i32, max: usize },
}

/// Largest response a broker-to-broker connection accepts (a fetch response is capped well below).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// One TCP connection to a broker.
pub struct BrokerConnection {
    addr: String,
    stream: TcpStream,
    reader: FrameReader,
    client_id: StrBytes,
    next_correlation: i32,
    timeout: Duration,
}

impl BrokerConnection {
    /// Connects to `addr` ("host:port") within `timeout`.
    ///
    /// # Errors
    /// Connection refused, unresolvable host, or the timeout.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        // Small control requests: latency matters more than coalescing.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            addr: addr.to_string(),
            stream,
            reader: FrameReader::default(),
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation: 0,
            timeout,
        })
    }

    /// Uses `timeout` for every later request (e.g. longer than a fetch's long-poll wait).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` at `version` and waits for its response, within the connection's timeout.
    ///
    /// # Errors
    /// Any I/O, codec or timeout failure; the connection must then be dropped.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.send_inner(req, version)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }

    async fn send_inner<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let codec = |e: anyhow::Error| ClientError::Codec {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = R::header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| Ok(h + req.compute_size(version)?))
            .map_err(codec)?;
        let mut out = BytesMut::with_capacity(size + 4);
        out.extend_from_slice(&(size as i32).to_be_bytes());
        header.encode(&mut out, header_version).map_err(codec)?;
        req.encode(&mut out, version).map_err(codec)?;
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(&out).await.map_err(io)?;
        let size = self
            .reader
            .read_size(&mut self.stream)
            .await
            .map_err(io)?
            .ok_or_else(|| io(std::io::ErrorKind::UnexpectedEof.into()))?;
        if size < 0 || size as usize > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge {
                addr: self.addr.clone(),
                size,
                max: MAX_RESPONSE_BYTES,
            });
        }
        let mut buf = self
            .reader
            .read_body(&mut self.stream, size as usize)
            .await
            .map_err(io)?;
        let resp_header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut buf, resp_header_version).map_err(codec)?;
        if header.correlation_id != correlation {
            return Err(ClientError::Correlation {
                addr: self.addr.clone(),
                got: header.correlation_id,
                expected: correlation,
            });
        }
        let resp = R::Response::decode(&mut buf, version).map_err(codec)?;
        if buf.has_remaining() {
            tracing::debug!(addr = %self.addr, left = buf.remaining(), "trailing bytes in response");
        }
        Ok(resp)
    }
}
