//! Raw Kafka-protocol requests, for what no client library sends: malformed frames and
//! controller requests with a stale epoch.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{MetadataRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the broker did with a raw frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response frame (size prefix stripped).
    Response(Vec<u8>),
    /// The broker closed the connection.
    Closed,
}

/// Sends raw bytes and reads one response frame or the close, within `timeout` (a hang fails).
pub async fn send_raw(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut s = TcpStream::connect(addr).await.context("connect")?;
    s.write_all(bytes).await.context("write")?;
    let read = async {
        let mut size = [0u8; 4];
        match s.read_exact(&mut size).await {
            Ok(_) => {}
            Err(_) => return Ok::<_, anyhow::Error>(Outcome::Closed),
        }
        let n = i32::from_be_bytes(size);
        anyhow::ensure!(n >= 0, "negative response size {n}");
        let mut body = vec![0u8; n as usize];
        s.read_exact(&mut body).await.context("response body")?;
        Ok(Outcome::Response(body))
    };
    tokio::time::timeout(timeout, read)
        .await
        .context("broker neither answered nor closed the connection (hang)")?
}

/// A size-prefixed request frame: header at the version the API needs, then `body`.
pub fn frame<R: Request>(req: &R, version: i16, correlation_id: i32) -> anyhow::Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut b = BytesMut::new();
    b.put_i32(0);
    header.encode(&mut b, R::header_version(version))?;
    req.encode(&mut b, version)?;
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    Ok(b.to_vec())
}

/// A well-formed Metadata v1 request for all topics: proof the broker still serves.
pub async fn metadata_ok(addr: SocketAddr) -> anyhow::Result<()> {
    let f = frame(&MetadataRequest::default(), 1, 7)?;
    match send_raw(addr, &f, Duration::from_secs(10)).await? {
        Outcome::Response(body) => {
            anyhow::ensure!(body[..4] == 7i32.to_be_bytes(), "wrong correlation id");
            Ok(())
        }
        Outcome::Closed => anyhow::bail!("broker closed a valid Metadata request"),
    }
}

/// Reads `stream` until the broker closes it (EOF or a reset) or `wait` passes without a byte:
/// the bytes read, and how it ended (`None` while it is still open).
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> (usize, Option<String>) {
    use tokio::io::AsyncReadExt;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) => return (got, Some("eof".to_string())),
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return (got, Some(e.to_string())),
        }
    }
}
