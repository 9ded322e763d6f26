//! Smoke tests of the test harness itself: the ZooKeeper container answers through
//! `zk_connect()`, the cuttable proxy forwards, cuts and heals, and the process/fault API
//! (kill, restart, pause, cut off, terminate, add) works against real `gregor` brokers.
//!
//! Needs Docker and the image `gregor/zookeeper:latest` (`scripts/build-images.sh --only
//! zookeeper`); without them the tests fail and say so.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use integration_tests::{Cluster, ClusterOptions, TcpProxy};
use zookeeper_client as zk;

async fn start(opts: ClusterOptions) -> Cluster {
    match Cluster::start(opts).await {
        Ok(cluster) => cluster,
        Err(e) => panic!("cluster did not start: {e:#}"),
    }
}

/// Sends a ZooKeeper four-letter command to `addr` and returns the answer.
fn four_letter(addr: std::net::SocketAddr, cmd: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(cmd.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_container_answers_create_and_get_through_zk_connect() {
    let cluster = start(ClusterOptions::new(0)).await;
    assert!(
        cluster.zk_connect().starts_with("127.0.0.1:"),
        "{}",
        cluster.zk_connect()
    );
    assert!(
        cluster.zk_connect().ends_with(cluster.chroot()),
        "{}",
        cluster.zk_connect()
    );
    assert_eq!(cluster.bootstrap(), "");

    let client = zk::Client::connect(&cluster.zk_connect())
        .await
        .expect("connect to zk_connect()");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/smoke", b"hello", &persistent)
        .await
        .expect("create /smoke");

    let (data, stat) = cluster
        .zk_get("/smoke")
        .await
        .expect("zk_get")
        .expect("/smoke exists");
    assert_eq!(data, b"hello");
    assert_eq!(stat.version, 0);
    assert!(cluster.zk_get("/absent").await.expect("zk_get").is_none());
    assert!(cluster
        .zk_children("/")
        .await
        .expect("children")
        .expect("root")
        .contains(&"smoke".to_string()));

    // The chroot really is a prefix on the server.
    let root = zk::Client::connect(&cluster.zk_addr().to_string())
        .await
        .expect("connect to root");
    let (data, _) = root
        .get_data(&format!("{}/smoke", cluster.chroot()))
        .await
        .expect("get via root");
    assert_eq!(data, b"hello");

    assert_eq!(
        cluster.registered_broker_ids().await.expect("ids"),
        Vec::<i32>::new()
    );
    assert_eq!(cluster.controller_id().await.expect("controller"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_cuts_and_heals() {
    let cluster = start(ClusterOptions::new(0)).await;
    let proxy = TcpProxy::start(cluster.zk_addr()).await.expect("proxy");
    let addr = proxy.addr();

    assert_eq!(
        four_letter(addr, "ruok").expect("ruok through the proxy"),
        "imok"
    );

    let connect = format!("{addr}{}", cluster.chroot());
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(&connect)
        .await
        .expect("ZooKeeper session through the proxy");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/via-proxy", b"1", &persistent)
        .await
        .expect("create through the proxy");
    assert!(cluster
        .zk_get("/via-proxy")
        .await
        .expect("zk_get")
        .is_some());
    assert!(proxy.active_connections() >= 1);

    let mut states = client.state_watcher();
    proxy.cut().await;
    assert!(proxy.is_cut());
    assert_eq!(proxy.active_connections(), 0);
    let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(refused.is_err(), "a cut proxy must refuse connections");
    let state = tokio::time::timeout(Duration::from_secs(10), states.changed())
        .await
        .expect("state change");
    assert_eq!(state, zk::SessionState::Disconnected);
    let cut_write = tokio::time::timeout(
        Duration::from_secs(2),
        client.set_data("/via-proxy", b"2", None),
    )
    .await;
    assert!(
        !matches!(cut_write, Ok(Ok(_))),
        "a write through a cut proxy must not succeed"
    );

    proxy.heal().await.expect("heal");
    assert_eq!(proxy.addr(), addr, "the port survives cut and heal");
    assert_eq!(four_letter(addr, "ruok").expect("ruok after heal"), "imok");
    let state = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = states.changed().await;
            if s != zk::SessionState::Disconnected {
                return s;
            }
        }
    })
    .await
    .expect("reconnect after heal");
    assert_eq!(state, zk::SessionState::SyncConnected);
    client
        .set_data("/via-proxy", b"3", None)
        .await
        .expect("write after heal");
    let (data, _) = cluster
        .zk_get("/via-proxy")
        .await
        .expect("zk_get")
        .expect("exists");
    assert_eq!(data, b"3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_faults_against_real_brokers() {
    let mut opts = ClusterOptions::new(3).with_session_timeout_ms(6000);
    opts.shutdown_timeout = Duration::from_secs(10);
    let cluster = start(opts).await;
    let expiry = Duration::from_secs(20);

    assert_eq!(cluster.broker_ids(), vec![0, 1, 2]);
    assert_eq!(
        cluster.registered_broker_ids().await.expect("ids"),
        vec![0, 1, 2]
    );
    let bootstrap = cluster.bootstrap();
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
    assert!(bootstrap.starts_with(&format!("127.0.0.1:{}", cluster.broker_addr(0).port())));
    let config = std::fs::read_to_string(cluster.config_path(1)).expect("read server.properties");
    assert!(config.contains("broker.id=1\n"), "{config}");
    assert!(config.contains(&format!(
        "zookeeper.connect={}{}\n",
        cluster.zk_proxy_addr(1),
        cluster.chroot()
    )));
    assert!(cluster.data_dir(1).is_dir());
    let registration = cluster
        .zk_get_json("/brokers/ids/1")
        .await
        .expect("json")
        .expect("registered");
    assert_eq!(registration["port"], cluster.broker_addr(1).port());

    // kill: the controller's registration and /controller go when its session expires.
    let first = cluster
        .wait_for_controller(|c| c.is_some(), expiry)
        .await
        .expect("controller")
        .expect("some");
    cluster.kill(first).await.expect("kill");
    assert!(!cluster.is_running(first));
    cluster
        .wait_unregistered(first, expiry)
        .await
        .expect("killed broker's session expires");
    let second = cluster
        .wait_for_controller(|c| c.is_some_and(|c| c != first), expiry)
        .await
        .expect("a new controller")
        .expect("some");
    // restart: same port, config and data directory.
    let port = cluster.broker_addr(first).port();
    cluster.restart(first).await.expect("restart");
    assert_eq!(cluster.broker_addr(first).port(), port);
    assert!(cluster.is_registered(first).await.expect("registered"));

    // pause past the session timeout, then resume: it registers again with a new session.
    let paused = if second == 0 { 1 } else { 0 };
    cluster.pause(paused).await.expect("pause");
    cluster
        .wait_unregistered(paused, expiry)
        .await
        .expect("paused broker's session expires");
    cluster.resume(paused).await.expect("resume");
    cluster
        .wait_registered(paused, expiry)
        .await
        .expect("re-registers after resume");

    // cut off from ZooKeeper, then heal.
    cluster.cut_off_zk(paused).await.expect("cut");
    cluster
        .wait_unregistered(paused, expiry)
        .await
        .expect("cut-off broker's session expires");
    assert!(cluster.is_running(paused), "a cut-off broker keeps running");
    cluster.heal_zk(paused).await.expect("heal");
    cluster
        .wait_registered(paused, expiry)
        .await
        .expect("re-registers after heal");

    // terminate: graceful, registration gone at once (session closed, not expired).
    let status = cluster.terminate(2).await.expect("terminate");
    assert!(status.success(), "{status}");
    cluster
        .wait_unregistered(2, Duration::from_secs(3))
        .await
        .expect("closed session removes the node");

    // add a broker: next id.
    let added = cluster.add_broker().await.expect("add broker");
    assert_eq!(added, 3);
    let mut ids = cluster.registered_broker_ids().await.expect("ids");
    ids.sort_unstable();
    assert_eq!(ids, vec![0, 1, 3]);
    assert!(cluster
        .log_tail(3, 50)
        .contains("registered in /brokers/ids"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_exits_fails_start_with_its_log() {
    let mut opts = ClusterOptions::new(1).with_override("listeners", "bogus");
    opts.startup_timeout = Duration::from_secs(20);
    let err = Cluster::start(opts)
        .await
        .expect_err("a broker with a bad listener cannot start");
    let msg = format!("{err:#}");
    assert!(msg.contains("broker 0"), "{msg}");
    assert!(msg.contains("broker.log"), "{msg}");
    assert!(
        msg.contains("'listeners'"),
        "the log tail is in the error: {msg}"
    );
    // A failed start keeps its files for inspection; this one was expected, so remove them.
    if let Some(log) = msg
        .split_whitespace()
        .find(|w| w.ends_with("broker.log)") || w.ends_with("broker.log"))
    {
        let log = PathBuf::from(log.trim_end_matches(')'));
        if let Some(root) = log.parent().and_then(|p| p.parent()) {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
