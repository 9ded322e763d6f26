//! A zombie controller (stopped past its session timeout, then continued) changes no znode, and
//! brokers reject requests carrying its old controller epoch with STALE_CONTROLLER_EPOCH.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use gregor::protocol::client::BrokerConnection;
use integration_tests::{Cluster, ClusterOptions};
use kafka_protocol::messages::leader_and_isr_request::{
    LeaderAndIsrPartitionState, LeaderAndIsrTopicState,
};
use kafka_protocol::messages::{
    BrokerId, LeaderAndIsrRequest, MetadataRequest, StopReplicaRequest, TopicName,
    UpdateMetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::clients;

const SESSION_MS: u64 = 6000;
const STALE_CONTROLLER_EPOCH: i16 = 11;

/// mzxid of every znode a controller writes, to prove none changed.
async fn controller_written_stats(cluster: &Cluster) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let mut paths = vec!["/controller_epoch".to_string(), "/controller".to_string()];
    for p in 0..6 {
        paths.push(format!("/brokers/topics/zt/partitions/{p}/state"));
    }
    paths.push("/brokers/topics/zt".to_string());
    for path in paths {
        let (_, stat) = cluster.zk_get(&path).await?.with_context(|| path.clone())?;
        out.insert(path, stat.mzxid);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_controller_is_fenced_after_it_resumes() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(SESSION_MS)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "zt", 6, 1).await?;
    let zombie = cluster.controller_id().await?.context("no controller")?;
    let (epoch_bytes, _) = cluster
        .zk_get("/controller_epoch")
        .await?
        .context("epoch")?;
    let old_epoch: i32 = String::from_utf8(epoch_bytes)?.trim().parse()?;

    cluster.pause(zombie).await?;
    let new = cluster
        .wait_for_controller(
            |c| c.is_some_and(|c| c != zombie),
            Duration::from_millis(SESSION_MS + 10_000),
        )
        .await?
        .context("no new controller")?;
    // Let the new controller finish taking over (marking the zombie's partitions offline).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = controller_written_stats(&cluster).await?;

    cluster.resume(zombie).await?;
    // The zombie wakes with queued work and an expired session; give it time to misbehave.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = controller_written_stats(&cluster).await?;
    let (epoch_bytes, _) = cluster
        .zk_get("/controller_epoch")
        .await?
        .context("epoch")?;
    let new_epoch: i32 = String::from_utf8(epoch_bytes)?.trim().parse()?;
    ensure!(
        new_epoch == old_epoch + 1,
        "epoch {old_epoch} -> {new_epoch}"
    );
    for (path, mzxid) in &after {
        if before.get(path) == Some(mzxid) {
            continue;
        }
        // The new controller legitimately re-elects the returning broker's partitions; any
        // write stamped with the zombie's epoch would be the zombie's.
        let json = cluster.zk_get_json(path).await?.context("znode vanished")?;
        ensure!(
            path.ends_with("/state") && json["controller_epoch"] == new_epoch,
            "{path} changed after the zombie resumed: {json}"
        );
    }
    ensure!(
        cluster.controller_id().await? == Some(new),
        "controller moved away from {new}"
    );
    // The zombie comes back as an ordinary broker with a new session.
    cluster
        .wait_registered(zombie, Duration::from_secs(30))
        .await?;

    // Requests stamped with the zombie's epoch are refused by every live broker, once it has
    // heard from the new controller (its Metadata names the new controller).
    for id in cluster.broker_ids() {
        let addr = cluster.broker_addr(id).to_string();
        let mut conn = BrokerConnection::connect(&addr, "zombie", Duration::from_secs(10)).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let md = conn.send(&MetadataRequest::default(), 1).await?;
            if md.controller_id.0 == new {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "broker {id} still names controller {}",
                md.controller_id.0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let mut state = LeaderAndIsrPartitionState::default();
        state.partition_index = 0;
        state.controller_epoch = old_epoch;
        state.leader = BrokerId(id);
        state.leader_epoch = 1000;
        state.isr = vec![BrokerId(id)];
        state.replicas = vec![BrokerId(id)];
        let mut ts = LeaderAndIsrTopicState::default();
        ts.topic_name = TopicName(StrBytes::from_static_str("zt"));
        ts.partition_states = vec![state];
        let mut lai = LeaderAndIsrRequest::default();
        lai.controller_id = BrokerId(zombie);
        lai.controller_epoch = old_epoch;
        lai.broker_epoch = -1;
        lai.topic_states = vec![ts];
        let resp = conn.send(&lai, 4).await?;
        ensure!(
            resp.error_code == STALE_CONTROLLER_EPOCH,
            "broker {id}: LeaderAndIsr with epoch {old_epoch} got {}",
            resp.error_code
        );

        let mut um = UpdateMetadataRequest::default();
        um.controller_id = BrokerId(zombie);
        um.controller_epoch = old_epoch;
        um.broker_epoch = -1;
        let resp = conn.send(&um, 6).await?;
        ensure!(
            resp.error_code == STALE_CONTROLLER_EPOCH,
            "UpdateMetadata got {}",
            resp.error_code
        );

        let mut sr = StopReplicaRequest::default();
        sr.controller_id = BrokerId(zombie);
        sr.controller_epoch = old_epoch;
        sr.broker_epoch = -1;
        let resp = conn.send(&sr, 3).await?;
        ensure!(
            resp.error_code == STALE_CONTROLLER_EPOCH,
            "StopReplica got {}",
            resp.error_code
        );
    }
    // Nothing the stale requests said took effect: the cluster still serves every partition.
    clients::wait_for_leaders(&bootstrap, "zt", 6, Duration::from_secs(30))?;
    Ok(())
}
