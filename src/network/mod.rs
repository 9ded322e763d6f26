//! The SocketServer: PLAINTEXT listeners and one task per connection.
//!
//! A connection handles one request at a time and writes its response before reading the next,
//! which is Kafka's "muting": responses stay in request order and a client that pipelines simply
//! waits in the socket buffer. A frame larger than `socket.request.max.bytes` (or with a negative
//! size) closes the connection before any of it is buffered; so does a connection idle for
//! `connections.max.idle.ms`, and so does one whose peer takes no response bytes for that long.
//! Connection counts are limited per address and in all (`quotas`). On shutdown, listeners stop accepting, each connection finishes the
//! request it is working on, and then closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::io::IoSlice;
use std::os::fd::AsRawFd;

use bytes::Buf;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, ApiContext};
use crate::protocol::file_region::{Chunk, FileRegion};
use crate::protocol::frame_reader::FrameReader;

mod budget;
mod quotas;
pub use budget::RequestBudget;
pub use quotas::{ConnectionQuotaConfig, ConnectionQuotas};

/// Limits applied to every connection.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_request_bytes: usize,
    pub idle_timeout: Duration,
    /// The broker-wide budget of requests being received.
    pub budget: std::sync::Arc<RequestBudget>,
    /// `SO_SNDBUF` / `SO_RCVBUF` for accepted sockets (`None`: the OS default).
    pub send_buffer_bytes: Option<usize>,
    pub receive_buffer_bytes: Option<usize>,
}

/// Counts connections for logs.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(0);

/// Accepts connections on `listener` until `shutdown` turns true, then waits for every connection
/// to finish its in-flight request.
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    limits: ConnectionLimits,
    quotas: std::sync::Arc<ConnectionQuotas>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(listener = %local, "accepting connections");
    loop {
        // At max.connections, new clients wait in the backlog until a connection closes.
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = quotas.wait_for_room() => {}
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = match quotas.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(e) => {
                            tracing::info!(%peer, error = %e, "rejected connection");
                            drop(stream);
                            continue;
                        }
                    };
                    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
                    let ctx = ctx.clone();
                    let sd = shutdown.clone();
                    let limits = limits.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let _ = stream.set_nodelay(true);
                        set_buffer_sizes(&stream, &limits);
                        if let Err(e) = handle_connection(stream, peer, &ctx, &limits, sd).await {
                            tracing::debug!(connection = id, %peer, error = %e, "connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    drop(listener);
    tracing::info!(listener = %local, open = connections.len(), "stopped accepting; draining connections");
    while connections.join_next().await.is_some() {}
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("request size {size} is negative or exceeds socket.request.max.bytes={max}")]
    FrameTooLarge { size: i32, max: usize },
    #[error("idle for more than {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Api(#[from] api::ApiError),
}

/// Reads the 4-byte size; `Ok(None)` on a clean close or shutdown between requests.
async fn read_size(
    reader: &mut FrameReader,
    stream: &mut TcpStream,
    limits: &ConnectionLimits,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<i32>, ConnectionError> {
    tokio::select! {
        r = tokio::time::timeout(limits.idle_timeout, reader.read_size(stream)) => match r {
            Err(_) => Err(ConnectionError::Idle(limits.idle_timeout)),
            Ok(r) => Ok(r?),
        },
        _ = shutdown.changed() => Ok(None),
    }
}

async fn handle_connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: &ApiContext,
    limits: &ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    // Group members report their host as Kafka does; formatted once, not per request.
    let client_host: std::sync::Arc<str> = format!("/{}", peer.ip()).into();
    let mut reader = FrameReader::default();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let Some(size) = read_size(&mut reader, &mut stream, limits, &mut shutdown).await? else {
            return Ok(());
        };
        if size < 0 || size as usize > limits.max_request_bytes {
            return Err(ConnectionError::FrameTooLarge {
                size,
                max: limits.max_request_bytes,
            });
        }
        // The frame is allocated only within the broker's budget (see `budget`).
        let reserved = tokio::select! {
            r = limits.budget.reserve(size as usize) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        // A client that sends a size and then stalls is as idle as one that sends nothing.
        let frame = tokio::time::timeout(
            limits.idle_timeout,
            reader.read_body(&mut stream, size as usize),
        )
        .await
        .map_err(|_| ConnectionError::Idle(limits.idle_timeout))??;
        drop(reserved);
        // The request runs to completion even if shutdown starts meanwhile: in-flight work
        // finishes (for acks=all, that is the wait for replication).
        if let Some(mut response) = api::handle(ctx, &client_host, frame).await? {
            write_response(&mut stream, &mut response, limits.idle_timeout).await?;
        }
    }
}

/// Kafka sets the configured buffer sizes on every accepted socket; -1 leaves the OS's.
fn set_buffer_sizes(stream: &TcpStream, limits: &ConnectionLimits) {
    let sock = socket2::SockRef::from(stream);
    if let Some(n) = limits.send_buffer_bytes {
        if let Err(e) = sock.set_send_buffer_size(n) {
            tracing::debug!(error = %e, "cannot set socket.send.buffer.bytes");
        }
    }
    if let Some(n) = limits.receive_buffer_bytes {
        if let Err(e) = sock.set_recv_buffer_size(n) {
            tracing::debug!(error = %e, "cannot set socket.receive.buffer.bytes");
        }
    }
}

/// Writes the response: runs of in-memory chunks with vectored writes (never copied into one
/// buffer), file ranges with `sendfile(2)` straight from the page cache. A peer that takes
/// nothing for `idle` is as idle as one that sends nothing: the connection closes rather than
/// hold its response forever.
///
/// In-memory bytes followed by a file range go with `MSG_MORE`, so the kernel holds them for
/// the range and the two leave as one segment: otherwise a response of a header and one
/// partition's records is two segments, and the peer wakes for each.
async fn write_response(
    stream: &mut TcpStream,
    chunks: &mut [Chunk],
    idle: Duration,
) -> Result<(), ConnectionError> {
    let mut idx = 0;
    while idx < chunks.len() {
        let run = chunks[idx..]
            .iter()
            .take_while(|c| matches!(c, Chunk::Mem(_)))
            .count();
        if run > 0 {
            let more = chunks[idx + run..].iter().any(|c| !c.is_empty());
            write_mem(stream, &mut chunks[idx..idx + run], idle, more).await?;
            idx += run;
        } else {
            if let Chunk::File(region) = &chunks[idx] {
                send_file(stream, region, idle).await?;
            }
            idx += 1;
        }
    }
    Ok(())
}

/// Writes in-memory chunks (all `Chunk::Mem`) with vectored writes; `more` (a file range
/// follows) sends them with `MSG_MORE`.
async fn write_mem(
    stream: &mut TcpStream,
    chunks: &mut [Chunk],
    idle: Duration,
    more: bool,
) -> Result<(), ConnectionError> {
    /// Kernel iovec limits are 1024; stay well below.
    const MAX_SLICES: usize = 64;
    let mut idx = 0;
    while idx < chunks.len() {
        if chunks[idx].is_empty() {
            idx += 1;
            continue;
        }
        let slices: Vec<IoSlice<'_>> = chunks[idx..]
            .iter()
            .take(MAX_SLICES)
            .filter_map(|c| match c {
                Chunk::Mem(b) => Some(IoSlice::new(b)),
                Chunk::File(_) => None,
            })
            .collect();
        let attempt = async {
            if more {
                send_more(stream, &slices).await
            } else {
                stream.write_vectored(&slices).await
            }
        };
        let mut written = tokio::time::timeout(idle, attempt)
            .await
            .map_err(|_| ConnectionError::Idle(idle))??;
        if written == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        while written > 0 && idx < chunks.len() {
            let len = chunks[idx].len();
            if written >= len {
                written -= len;
                idx += 1;
            } else {
                if let Chunk::Mem(b) = &mut chunks[idx] {
                    b.advance(written);
                }
                written = 0;
            }
        }
    }
    Ok(())
}

/// `sendmsg(2)` of `slices` with `MSG_MORE`, waiting for socket room.
async fn send_more(stream: &TcpStream, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    write_when_ready(stream, || {
        // SAFETY: an all-zero msghdr is valid (no name, no control data); `IoSlice` is
        // ABI-compatible with `iovec` on Unix, and `slices` outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = slices.as_ptr().cast_mut().cast();
        msg.msg_iovlen = slices.len() as _;
        // SAFETY: `fd` is borrowed from the live stream; `msg` points at valid iovecs.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    })
    .await
}

/// Runs the non-blocking write `op` once the socket has room, again after a spurious wake-up
/// or an interrupted call.
async fn write_when_ready(
    stream: &TcpStream,
    mut op: impl FnMut() -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    loop {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, &mut op) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            other => return other,
        }
    }
}

/// Sends a file range with `sendfile(2)`, waiting for socket room between calls. A file that
/// ends inside the range (truncated since the read) closes the connection: the frame's size
/// prefix already promised those bytes, as in Kafka's `FileRecords.writeTo`.
async fn send_file(
    stream: &TcpStream,
    region: &FileRegion,
    idle: Duration,
) -> Result<(), ConnectionError> {
    /// Bytes per call, so one large range does not hold a worker in one system call.
    const MAX_PER_CALL: usize = 1 << 20;
    let Some((file, pos)) = region.source() else {
        return Ok(());
    };
    let (in_fd, out_fd) = (file.as_raw_fd(), stream.as_raw_fd());
    let mut offset = libc::off_t::try_from(pos).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("file position {pos} does not fit off_t"),
        )
    })?;
    let mut left = region.len();
    while left > 0 {
        let sent = tokio::time::timeout(
            idle,
            write_when_ready(stream, || {
                // SAFETY: `file` and `stream` are borrowed for this whole function, so both
                // descriptors stay open; `offset` is a live off_t the kernel advances.
                let n =
                    unsafe { libc::sendfile(out_fd, in_fd, &mut offset, left.min(MAX_PER_CALL)) };
                usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
            }),
        )
        .await
        .map_err(|_| ConnectionError::Idle(idle))??;
        if sent == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("segment file ended {left} bytes before the end of the fetched range"),
            )
            .into());
        }
        left -= sent;
    }
    Ok(())
}
