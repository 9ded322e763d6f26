//! Control requests are not trusted with names: a LeaderAndIsr naming an illegal topic (a space,
//! a path) is refused per partition with INVALID_TOPIC_EXCEPTION, creates no directory, and leaves
//! every checkpoint file parseable. StopReplica v3 partitions whose leader epoch is not newer
//! than the hosted partition's are fenced (FENCED_LEADER_EPOCH), as in Kafka 2.8.

use std::time::Duration;

use anyhow::{ensure, Context};
use gregor::protocol::client::BrokerConnection;
use integration_tests::ClusterOptions;
use kafka_protocol::messages::leader_and_isr_request::{
    LeaderAndIsrPartitionState, LeaderAndIsrTopicState,
};
use kafka_protocol::messages::stop_replica_request::{
    StopReplicaPartitionState, StopReplicaTopicState,
};
use kafka_protocol::messages::{BrokerId, LeaderAndIsrRequest, StopReplicaRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::clients;
use crate::failover::controller_epoch;
use crate::raw::metadata_ok;

const INVALID_TOPIC_EXCEPTION: i16 = 17;
const ILLEGAL: [&str; 3] = ["fuzz space", "../escape", "a/b"];

fn topic_state(name: &str, broker: i32, controller_epoch: i32) -> LeaderAndIsrTopicState {
    let mut state = LeaderAndIsrPartitionState::default();
    state.partition_index = 0;
    state.controller_epoch = controller_epoch;
    state.leader = BrokerId(broker);
    state.leader_epoch = 0;
    state.isr = vec![BrokerId(broker)];
    state.replicas = vec![BrokerId(broker)];
    state.is_new = true;
    let mut ts = LeaderAndIsrTopicState::default();
    ts.topic_name = TopicName(StrBytes::from_string(name.to_string()));
    ts.partition_states = vec![state];
    ts
}

/// Every line of a Kafka offset checkpoint after the version and count is `topic partition
/// offset`, with as many lines as the count says.
fn check_checkpoint(path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut lines = text.lines();
    ensure!(
        lines.next() == Some("0"),
        "{}: version line",
        path.display()
    );
    let count: usize = lines.next().context("count line")?.trim().parse()?;
    let entries: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    ensure!(
        entries.len() == count,
        "{}: {count} entries announced, {} present",
        path.display(),
        entries.len()
    );
    for e in entries {
        let fields: Vec<&str> = e.split(' ').collect();
        ensure!(
            fields.len() == 3
                && fields[1].parse::<i32>().is_ok()
                && fields[2].parse::<i64>().is_ok(),
            "{}: unparsable line {e:?}",
            path.display()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_and_isr_naming_an_illegal_topic_is_refused_and_touches_no_file(
) -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1).with_override("replica.high.watermark.checkpoint.interval.ms", 500),
    )
    .await?;
    clients::create_topic(&cluster.bootstrap(), "ok", 2, 1).await?;
    let epoch = controller_epoch(&cluster).await?;
    let addr = cluster.broker_addr(0);

    let mut lai = LeaderAndIsrRequest::default();
    lai.controller_id = BrokerId(0);
    lai.controller_epoch = epoch;
    lai.broker_epoch = -1;
    lai.topic_states = ILLEGAL.iter().map(|t| topic_state(t, 0, epoch)).collect();
    let mut conn =
        BrokerConnection::connect(&addr.to_string(), "control-test", Duration::from_secs(10))
            .await?;
    let resp = conn.send(&lai, 4).await?;
    ensure!(resp.error_code == 0, "top-level error {}", resp.error_code);
    ensure!(
        resp.partition_errors.len() == ILLEGAL.len(),
        "{} partition errors for {} partitions",
        resp.partition_errors.len(),
        ILLEGAL.len()
    );
    for e in &resp.partition_errors {
        ensure!(
            e.error_code == INVALID_TOPIC_EXCEPTION,
            "{:?} got error {}",
            e.topic_name.0.as_str(),
            e.error_code
        );
    }

    let data = cluster.data_dir(0);
    let root = data
        .parent()
        .context("data dir has a parent")?
        .to_path_buf();
    for dir in [&data, &root] {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            ensure!(
                !name.contains("fuzz") && !name.contains("escape") && name != "a",
                "{} holds {name:?}",
                dir.display()
            );
        }
    }
    // Checkpoints written after the request (the high-watermark one every 500 ms) still parse.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for file in [
        "replication-offset-checkpoint",
        "recovery-point-offset-checkpoint",
        "log-start-offset-checkpoint",
    ] {
        let path = data.join(file);
        if path.exists() {
            check_checkpoint(&path)?;
        }
    }
    ensure!(
        data.join("replication-offset-checkpoint").exists(),
        "no high-watermark checkpoint was written"
    );
    metadata_ok(addr).await?;
    clients::wait_for_leaders(&cluster.bootstrap(), "ok", 2, Duration::from_secs(10))?;
    Ok(())
}

/// A StopReplica v3 for `topic`-0 with `leader_epoch`, delete=true, from the current controller.
fn stop_replica(topic: &str, leader_epoch: i32, controller_epoch: i32) -> StopReplicaRequest {
    let mut p = StopReplicaPartitionState::default();
    p.partition_index = 0;
    p.leader_epoch = leader_epoch;
    p.delete_partition = true;
    let mut t = StopReplicaTopicState::default();
    t.topic_name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_states = vec![p];
    let mut req = StopReplicaRequest::default();
    req.controller_id = BrokerId(0);
    req.controller_epoch = controller_epoch;
    req.broker_epoch = -1;
    req.topic_states = vec![t];
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_replica_v3_with_a_leader_epoch_not_newer_is_fenced() -> anyhow::Result<()> {
    const FENCED_LEADER_EPOCH: i16 = 74;
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let boot = cluster.bootstrap();
    clients::create_topic(&boot, "fenced", 1, 1).await?;
    let producer = clients::producer(&boot, "1")?;
    clients::produce_keyed(&producer, "fenced", 5).await?;
    let epoch = controller_epoch(&cluster).await?;
    let dir = cluster.data_dir(0).join("fenced-0");
    let mut conn = BrokerConnection::connect(
        &cluster.broker_addr(0).to_string(),
        "control-test",
        Duration::from_secs(10),
    )
    .await?;

    // The partition is at leader epoch 0: a StopReplica at epoch 0 must not delete it.
    let resp = conn.send(&stop_replica("fenced", 0, epoch), 3).await?;
    let code = resp.partition_errors.first().map(|e| e.error_code);
    ensure!(code == Some(FENCED_LEADER_EPOCH), "epoch 0: {code:?}");
    ensure!(
        dir.exists(),
        "the fenced StopReplica deleted {}",
        dir.display()
    );
    let read = clients::consume_all(&boot, "fenced", 1, Duration::from_secs(30))?;
    ensure!(
        read.get(&0).map(Vec::len) == Some(5),
        "read after the fenced request: {read:?}"
    );

    // The same request at a newer epoch is obeyed: the fencing was the only thing in the way.
    let resp = conn.send(&stop_replica("fenced", 1, epoch), 3).await?;
    let code = resp.partition_errors.first().map(|e| e.error_code);
    ensure!(code == Some(0), "epoch 1: {code:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        ensure!(
            std::time::Instant::now() < deadline,
            "{} still there after an obeyed delete",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
