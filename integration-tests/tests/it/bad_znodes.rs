//! Bad data in ZooKeeper must not wedge the controller: a topic znode or a partition state that
//! does not decode is skipped, as Kafka skips it, by the controller that sees it appear and by a
//! new controller's failover; the rest of the cluster goes on working, the controller does not
//! move again, and removing the bad znode needs no restart.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use integration_tests::ClusterOptions;
use zookeeper_client as zk;

use crate::clients;
use crate::failover::controller_epoch;

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_topic_znode_does_not_wedge_a_controller_move() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "good", 3, 3).await?;
    let first = cluster
        .wait_for_controller(|c| c.is_some(), Duration::from_secs(30))
        .await?
        .context("no controller")?;

    let zk = cluster.zk_client();
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    zk.create(
        "/brokers/topics/broken",
        b"{\"version\":1,\"partitions\":",
        &acl,
    )
    .await?;
    // The sitting controller sees the new child and must skip it.
    wait_for_log(&cluster, first, "skipping undecodable topic znode").await?;
    clients::create_topic(&bootstrap, "while-broken", 1, 3).await?;

    // A partition state no controller can read either (it was valid when the topic was made).
    zk.set_data(
        "/brokers/topics/good/partitions/0/state",
        b"{\"leader\":",
        None,
    )
    .await?;

    // An operator's way to move the controller; the bad znodes are still there for the failover.
    let epoch_before = controller_epoch(&cluster).await?;
    zk.delete("/controller", None).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        if let Some(id) = cluster.controller_id().await? {
            if controller_epoch(&cluster).await? > epoch_before {
                break id;
            }
        }
        ensure!(Instant::now() < deadline, "no new controller within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        cluster.zk_get("/brokers/topics/broken").await?.is_some(),
        "the bad znode must still exist during the failover"
    );

    // The new controller is active: it creates topics, and the old ones keep their leaders.
    clients::create_topic(&bootstrap, "after-move", 3, 3).await?;
    clients::wait_for_leaders(&bootstrap, "good", 3, Duration::from_secs(30))?;
    let producer = clients::producer(&bootstrap, "all")?;
    let acked = clients::produce_keyed(&producer, "after-move", 200).await?;
    let consumed = clients::consume_all(&bootstrap, "after-move", 3, Duration::from_secs(30))?;
    crate::basic::check_acked_present(&acked, &consumed)?;
    ensure!(
        cluster.controller_id().await? == Some(second),
        "the controller moved again instead of settling"
    );

    // Removing the bad znode needs no restart.
    zk.delete("/brokers/topics/broken", None).await?;
    clients::create_topic(&bootstrap, "after-removal", 1, 3).await?;
    ensure!(
        controller_epoch(&cluster).await? == epoch_before + 1,
        "the controller moved more than once"
    );
    // The failover did meet both bad znodes.
    wait_for_log(&cluster, second, "skipping undecodable partition state").await?;
    if second != first {
        wait_for_log(&cluster, second, "skipping undecodable topic znode").await?;
    }
    Ok(())
}

async fn wait_for_log(
    cluster: &integration_tests::Cluster,
    broker: i32,
    needle: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.log_tail(broker, 2000).contains(needle) {
        ensure!(
            Instant::now() < deadline,
            "broker {broker} never logged {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
