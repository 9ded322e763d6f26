//! Connection limits as Kafka applies them: an address at `max.connections.per.ip` (or its
//! override) gets its next connection closed unanswered, and a closed connection frees a place.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use integration_tests::ClusterOptions;
use kafka_protocol::messages::MetadataRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients;
use crate::raw::frame;

const LIMIT: usize = 6;

/// A connection that answered one Metadata request (kept open), or `None` if the broker closed
/// it unanswered.
async fn served(addr: SocketAddr) -> anyhow::Result<Option<TcpStream>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&frame(&MetadataRequest::default(), 1, 1)?)
        .await?;
    let mut size = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut size)).await {
        Err(_) => bail!("neither answered nor closed within 10 s"),
        Ok(Err(_)) => Ok(None),
        Ok(Ok(_)) => {
            let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
            s.read_exact(&mut body).await?;
            Ok(Some(s))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_at_its_connection_limit_is_refused_until_one_closes() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            // Any other address may open many; this host's override is what binds here.
            .with_override("max.connections.per.ip", 1000)
            .with_override(
                "max.connections.per.ip.overrides",
                format!("127.0.0.1:{LIMIT}"),
            ),
    )
    .await?;
    let addr = cluster.broker_addr(0);
    // The broker's own connections (its controller's channel to itself) count too, so open
    // until refused rather than assume how many are left.
    let mut open = Vec::new();
    loop {
        match served(addr).await? {
            Some(s) => open.push(s),
            None => break,
        }
        ensure!(
            open.len() <= LIMIT,
            "{} connections from 127.0.0.1 served, limit {LIMIT}",
            open.len()
        );
    }
    ensure!(!open.is_empty(), "no connection was served at all");
    ensure!(
        cluster.log_tail(0, 500).contains("rejected connection"),
        "the refusal was not logged"
    );

    // One closed, one more fits again (the broker notices the close asynchronously).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = served(addr).await? {
            open.push(s);
            break;
        }
        ensure!(Instant::now() < deadline, "a freed place was never reused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(served(addr).await?.is_none(), "the limit no longer holds");
    Ok(())
}
