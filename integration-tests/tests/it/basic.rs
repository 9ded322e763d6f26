//! A three-broker cluster serving rdkafka, and the znodes Kafka would have written.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use integration_tests::ClusterOptions;
use rdkafka::consumer::Consumer;

use crate::clients;

/// Every acked message was consumed exactly at its acked (partition, offset).
pub fn check_acked_at_offsets(
    acked: &[(i32, i64, usize)],
    consumed: &clients::Consumed,
) -> anyhow::Result<()> {
    let by_offset: std::collections::HashMap<(i32, i64), &(i64, String, String)> = consumed
        .iter()
        .flat_map(|(p, msgs)| msgs.iter().map(move |m| ((*p, m.0), m)))
        .collect();
    for (p, off, i) in acked {
        let m = by_offset
            .get(&(*p, *off))
            .with_context(|| format!("acked message {i} at {p}/{off} was not consumed"))?;
        ensure!(
            m.1 == format!("key-{i}") && m.2 == format!("value-{i}"),
            "offset {p}/{off} holds {:?}={:?}, expected message {i}",
            m.1,
            m.2
        );
    }
    Ok(())
}

/// Every acked message is consumed exactly at its acked offset, and within each partition the
/// producer's order is kept.
pub fn check_acked_present(
    acked: &[(i32, i64, usize)],
    consumed: &clients::Consumed,
) -> anyhow::Result<()> {
    check_acked_at_offsets(acked, consumed)?;
    for (p, msgs) in consumed {
        let mut last = None;
        for (off, key, _) in msgs {
            let i: usize = key.trim_start_matches("key-").parse()?;
            if let Some((lo, li)) = last {
                ensure!(*off > lo, "partition {p}: offsets not increasing at {off}");
                ensure!(
                    i > li,
                    "partition {p}: message {i} after {li} (order broken)"
                );
            }
            last = Some((*off, i));
        }
    }
    Ok(())
}

/// [`check_acked_present`], and nothing was consumed that was not acknowledged.
pub fn check_exactly_acked(
    acked: &[(i32, i64, usize)],
    consumed: &clients::Consumed,
) -> anyhow::Result<()> {
    let total: usize = consumed.values().map(Vec::len).sum();
    ensure!(
        total == acked.len(),
        "consumed {total}, acked {}",
        acked.len()
    );
    check_acked_present(acked, consumed)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_brokers_serve_rdkafka_and_write_kafkas_znodes() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "orders", 6, 1).await?;

    let producer = clients::producer(&bootstrap, "all")?;
    let acked = clients::produce_keyed(&producer, "orders", 20_000).await?;
    let consumed = clients::consume_all(&bootstrap, "orders", 6, Duration::from_secs(60))?;
    check_exactly_acked(&acked, &consumed)?;
    let used: BTreeSet<i32> = acked.iter().map(|a| a.0).collect();
    ensure!(used.len() == 6, "keyed messages used partitions {used:?}");

    // Metadata from any broker: all three brokers and the controller.
    let consumer = clients::consumer(&bootstrap)?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let ids: BTreeSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
    ensure!(ids == BTreeSet::from([0, 1, 2]), "metadata brokers {ids:?}");

    // The znodes an operator inspects with zkCli.
    for id in 0..3 {
        let (data, stat) = cluster
            .zk_get(&format!("/brokers/ids/{id}"))
            .await?
            .context("broker znode missing")?;
        ensure!(
            stat.ephemeral_owner != 0,
            "/brokers/ids/{id} is not ephemeral"
        );
        let json: serde_json::Value = serde_json::from_slice(&data)?;
        ensure!(
            json["version"] == 5 && json["jmx_port"] == -1,
            "broker JSON {json}"
        );
        let addr = cluster.broker_addr(id);
        ensure!(
            json["endpoints"][0] == format!("PLAINTEXT://127.0.0.1:{}", addr.port()),
            "endpoints in {json}"
        );
        ensure!(json["listener_security_protocol_map"]["PLAINTEXT"] == "PLAINTEXT");
        ensure!(
            json["timestamp"].is_string(),
            "timestamp must be a string: {json}"
        );
    }
    let controller = cluster
        .zk_get_json("/controller")
        .await?
        .context("/controller")?;
    ensure!(controller["version"] == 1 && controller["timestamp"].is_string());
    let (epoch, _) = cluster
        .zk_get("/controller_epoch")
        .await?
        .context("epoch")?;
    let epoch: i32 = String::from_utf8(epoch)?.trim().parse()?;
    ensure!(epoch >= 1, "controller epoch {epoch}");
    let cid = cluster
        .zk_get_json("/cluster/id")
        .await?
        .context("/cluster/id")?;
    ensure!(
        cid["version"] == "1" && cid["id"].as_str().map(str::len) == Some(22),
        "{cid}"
    );
    let topic = cluster
        .zk_get_json("/brokers/topics/orders")
        .await?
        .context("topic znode")?;
    ensure!(
        topic["partitions"].as_object().map(|m| m.len()) == Some(6),
        "{topic}"
    );
    for p in 0..6 {
        let state = cluster
            .zk_get_json(&format!("/brokers/topics/orders/partitions/{p}/state"))
            .await?
            .context("state znode")?;
        let replicas = &topic["partitions"][p.to_string()];
        ensure!(
            state["version"] == 1 && state["leader"] == replicas[0],
            "{state}"
        );
        ensure!(
            state["isr"] == *replicas && state["controller_epoch"] == epoch,
            "{state}"
        );
        ensure!(state["leader_epoch"] == 0, "{state}");
    }
    let config = cluster.zk_get_json("/config/topics/orders").await?;
    ensure!(
        config.is_some_and(|c| c["config"].is_object()),
        "/config/topics/orders"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_auto_created_and_deleted() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(2).with_override("num.partitions", 3)).await?;
    let bootstrap = cluster.bootstrap();
    let producer = clients::producer(&bootstrap, "1")?;
    // Producing to an unknown topic creates it with num.partitions (Kafka's auto-create).
    let acked = clients::produce_keyed(&producer, "auto", 300).await?;
    ensure!(acked.len() == 300);
    clients::wait_for_leaders(&bootstrap, "auto", 3, Duration::from_secs(30))?;
    let dirs: Vec<_> = (0..2)
        .flat_map(|id| {
            std::fs::read_dir(cluster.data_dir(id))
                .into_iter()
                .flatten()
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("auto-"))
        .collect();
    ensure!(dirs.len() == 3, "partition directories: {}", dirs.len());

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
    let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = admin.delete_topics(&["auto"], &opts).await?;
    ensure!(res.iter().all(|r| r.is_ok()), "delete_topics: {res:?}");
    integration_tests::util::poll_until(
        "topic znodes and directories gone",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let znode = cluster.zk_get("/brokers/topics/auto").await?;
            let flag = cluster.zk_get("/admin/delete_topics/auto").await?;
            let left = (0..2)
                .flat_map(|id| {
                    std::fs::read_dir(cluster.data_dir(id))
                        .into_iter()
                        .flatten()
                })
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with("auto-") && !n.ends_with("-delete")
                })
                .count();
            Ok((znode.is_none() && flag.is_none() && left == 0).then_some(()))
        },
    )
    .await?;
    Ok(())
}
