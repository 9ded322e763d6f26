//! Session set-up: chroot bootstrap, start-up paths, cluster id, timeouts and session loss.

use std::time::Duration;

use anyhow::Result;
use gregor::zk::paths::{CLUSTER_ID_PATH, TOP_LEVEL_PATHS};
use gregor::zk::{KafkaZkClient, SessionLoss, WatchEventKind, ZkError};
use integration_tests::local_zk::{
    client, raw_client, shared_server, unique_chroot, ZkServer, CONNECTION_TIMEOUT, SESSION_TIMEOUT,
};

use super::{exists, fired, node, within};

#[tokio::test]
async fn chroot_is_created_and_top_level_paths_exist() -> Result<()> {
    let server = shared_server().await?;
    let chroot = format!("{}/nested/kafka", unique_chroot());
    let zk = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let raw_root = raw_client(&server, "").await?;
    // Idempotent on a second run.
    zk.create_top_level_paths().await?;

    let root = KafkaZkClient::connect(
        &server.connect_string(),
        SESSION_TIMEOUT,
        CONNECTION_TIMEOUT,
    )
    .await?;
    assert!(exists(&raw_root, &chroot).await?, "chroot {chroot} missing");
    for path in TOP_LEVEL_PATHS {
        assert!(
            exists(&raw_root, &format!("{chroot}{path}")).await?,
            "{path} missing under the chroot"
        );
        assert!(
            exists(&raw, path).await?,
            "{path} missing via the chrooted client"
        );
        let (data, _) = node(&raw, path).await?;
        assert!(data.is_empty(), "{path} must have no data");
    }
    assert!(
        !exists(&raw_root, "/brokers/ids").await?,
        "paths must be under the chroot"
    );
    assert_ne!(zk.session_id(), root.session_id());
    Ok(())
}

#[tokio::test]
async fn cluster_id_is_created_once_and_stable_across_clients() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let a = client(&server, &chroot).await?;
    let b = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let (id_a, id_b) = tokio::join!(a.get_or_create_cluster_id(), b.get_or_create_cluster_id());
    let (id_a, id_b) = (id_a?, id_b?);
    assert_eq!(id_a, id_b);
    assert_eq!(id_a.len(), 22);
    assert_eq!(b.get_or_create_cluster_id().await?, id_a);

    let (stored, _) = node(&raw, CLUSTER_ID_PATH).await?;
    let json: serde_json::Value = serde_json::from_slice(&stored)?;
    assert_eq!(json["version"], "1", "version must be the string \"1\"");
    assert_eq!(json["id"], id_a.as_str());
    Ok(())
}

#[tokio::test]
async fn connect_times_out_without_server() {
    // A port nothing listens on.
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("{e}"),
    };
    let started = std::time::Instant::now();
    let result = KafkaZkClient::connect(
        &format!("127.0.0.1:{port}/kafka"),
        SESSION_TIMEOUT,
        Duration::from_millis(800),
    )
    .await;
    // A refused connection is retried with back-off (100, 200, 400 ms, …) until the deadline.
    assert!(
        matches!(result, Err(ZkError::ConnectTimeout { attempts, .. }) if attempts >= 3),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn invalid_chroot_is_rejected() -> Result<()> {
    let server = shared_server().await?;
    let result = KafkaZkClient::connect(
        &format!("{}/bad//chroot", server.connect_string()),
        SESSION_TIMEOUT,
        CONNECTION_TIMEOUT,
    )
    .await;
    assert!(
        matches!(result, Err(ZkError::InvalidConnectString { .. })),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn session_expiry_resolves_session_lost_and_fires_watches() -> Result<()> {
    // A private server: expiring sessions means wiping it.
    let mut server = ZkServer::start().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let (_, controller_watch) = zk.get_controller_and_watch().await?;

    server.restart_empty().await?;

    assert_eq!(
        within("session loss", zk.session_lost()).await,
        SessionLoss::Expired
    );
    // Already lost: resolves at once.
    assert_eq!(
        within("session loss again", zk.session_lost()).await,
        SessionLoss::Expired
    );
    let event = fired(controller_watch).await;
    assert_eq!(
        event.kind,
        WatchEventKind::SessionEnded(SessionLoss::Expired)
    );
    assert_eq!(event.path, "/controller");

    let err = zk.get_controller_id().await;
    assert!(
        matches!(&err, Err(e) if e.is_session_lost() && !e.is_retriable()),
        "{err:?}"
    );

    // The owner reconnects with the same settings; the (wiped) chroot is re-created.
    let fresh = zk.reconnect().await?;
    assert_ne!(fresh.session_id(), zk.session_id());
    fresh.create_top_level_paths().await?;
    assert_eq!(fresh.get_controller_id().await?, None);
    Ok(())
}

/// A write sent to a server that stops answering (the client gives the connection up after
/// its read timeout and fails the pending request with a transport error, not ZooKeeper's
/// CONNECTIONLOSS) is retried once the session reconnects, within the session timeout; it once
/// failed at once ("no response from connection in 2400ms") and a broker restarted instead of
/// registering.
#[tokio::test]
async fn a_write_left_unanswered_by_a_stalled_server_is_retried_after_the_reconnect() -> Result<()>
{
    // A server of its own: this one is stopped for a while.
    let server = ZkServer::start().await?;
    let chroot = unique_chroot();
    client(&server, &chroot).await?;
    let zk = KafkaZkClient::connect(
        &format!("{}{chroot}", server.connect_string()),
        Duration::from_secs(12),
        CONNECTION_TIMEOUT,
    )
    .await?;
    zk.create_top_level_paths().await?;
    let info = gregor::zk::BrokerInfo {
        id: 7,
        endpoints: vec![gregor::zk::EndPoint::plaintext("127.0.0.1", 9097)],
        rack: None,
    };
    server.pause(true)?;
    let registering = {
        let zk = zk.clone();
        tokio::spawn(async move { zk.register_broker(&info).await })
    };
    // Past the client's read timeout (a third of the session timeout here), short of the
    // session timeout: the request was sent and its connection given up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let gave_up = registering.is_finished();
    server.pause(false)?;
    assert!(
        !gave_up,
        "gave up while the server was stalled: {:?}",
        registering.await
    );
    let epoch = within("the registration", registering).await??;
    assert!(epoch > 0);
    let raw = raw_client(&server, &chroot).await?;
    assert!(exists(&raw, "/brokers/ids/7").await?);
    Ok(())
}
