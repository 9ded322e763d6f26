//! A broker started together with ZooKeeper: connecting must ride out refused and reset
//! connections until `zookeeper.connection.timeout.ms`, as Kafka's client does, rather than give
//! up after the first one (or after one session timeout).

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result};
use gregor::zk::KafkaZkClient;
use integration_tests::local_zk::{unique_chroot, ZkServer};
use integration_tests::util::free_port;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Shorter than [`RESETTING_FOR`].
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the port answers with resets before ZooKeeper takes it: past one session timeout,
/// so a client that gives up after one session timeout fails this test.
const RESETTING_FOR: Duration = Duration::from_millis(2500);

/// Closes `stream` with a TCP RST instead of a FIN ("Connection reset by peer" for the client).
fn reset(stream: tokio::net::TcpStream) -> Result<()> {
    let std = stream.into_std().context("detaching an accepted socket")?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (owned by `std` until it is dropped below) and `linger` is a
    // valid `struct linger` whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            std.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting SO_LINGER 0");
    }
    drop(std);
    Ok(())
}

/// Resets every connection to `port` for [`RESETTING_FOR`], then starts ZooKeeper on it.
/// Returns the server and how many connections were reset.
async fn reset_then_start_zookeeper(port: u16) -> Result<(ZkServer, usize)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let until = Instant::now() + RESETTING_FOR;
    let mut resets = 0;
    while let Ok(accepted) = tokio::time::timeout_at(until, listener.accept()).await {
        let (stream, _) = accepted.context("accepting a connection")?;
        reset(stream)?;
        resets += 1;
    }
    drop(listener);
    let server = ZkServer::start_on(port).await?;
    Ok((server, resets))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_through_resets_and_refusals_until_zookeeper_is_up() -> Result<()> {
    let port = free_port()?;
    let chroot = unique_chroot();
    let connect = format!("127.0.0.1:{port}{chroot}");
    let (connected, server) = tokio::join!(
        KafkaZkClient::connect(&connect, SESSION_TIMEOUT, CONNECTION_TIMEOUT),
        reset_then_start_zookeeper(port)
    );
    let (_server, resets) = server?;
    let client = connected.with_context(|| format!("connecting to {connect}"))?;
    assert!(
        resets >= 2,
        "the client tried only {resets} time(s) while the port reset connections"
    );
    client.create_top_level_paths().await?;
    assert!(client.get_or_create_cluster_id().await?.len() == 22);
    Ok(())
}
