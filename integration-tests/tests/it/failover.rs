//! Controller failover and broker crashes: the controller moves within the session timeout with
//! the epoch one higher, a dead broker's partitions are recorded offline (leader -1), and after a
//! restart everything acknowledged is still there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use integration_tests::{Cluster, ClusterOptions};
use rdkafka::producer::FutureRecord;

use crate::basic::{check_acked_present, check_exactly_acked};
use crate::clients;

const SESSION_MS: u64 = 6000;

pub(crate) async fn controller_epoch(cluster: &Cluster) -> anyhow::Result<i32> {
    let (data, _) = cluster
        .zk_get("/controller_epoch")
        .await?
        .context("/controller_epoch missing")?;
    Ok(String::from_utf8(data)?.trim().parse()?)
}

async fn partition_state(
    cluster: &Cluster,
    topic: &str,
    p: i32,
) -> anyhow::Result<serde_json::Value> {
    cluster
        .zk_get_json(&format!("/brokers/topics/{topic}/partitions/{p}/state"))
        .await?
        .context("state znode missing")
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_kill_moves_controller_and_restart_restores_leadership() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(SESSION_MS)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "ft", 6, 1).await?;
    let producer = clients::producer(&bootstrap, "1")?;
    let mut acked = clients::produce_keyed(&producer, "ft", 3000).await?;

    let old = cluster
        .wait_for_controller(|c| c.is_some(), Duration::from_secs(30))
        .await?
        .context("no controller")?;
    let epoch = controller_epoch(&cluster).await?;
    let assignment = cluster
        .zk_get_json("/brokers/topics/ft")
        .await?
        .context("topic znode")?;
    let led_by_old: Vec<i32> = (0..6)
        .filter(|p| assignment["partitions"][p.to_string()][0] == old)
        .collect();
    ensure!(
        !led_by_old.is_empty(),
        "controller {old} leads no partition of ft"
    );

    let killed_at = Instant::now();
    cluster.kill(old).await?;
    let new = cluster
        .wait_for_controller(
            |c| c.is_some_and(|c| c != old),
            Duration::from_millis(SESSION_MS + 5000),
        )
        .await?
        .context("no new controller")?;
    let failover = killed_at.elapsed();
    let new_epoch = controller_epoch(&cluster).await?;
    ensure!(new_epoch == epoch + 1, "epoch {epoch} -> {new_epoch}");
    eprintln!("controller {old} -> {new} in {failover:?}, epoch {epoch} -> {new_epoch}");

    integration_tests::util::poll_until(
        "dead broker's partitions recorded offline (leader -1, ISR kept)",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            for p in &led_by_old {
                let s = partition_state(&cluster, "ft", *p).await?;
                if s["leader"] != -1 || s["isr"] != serde_json::json!([old]) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;

    cluster.restart(old).await?;
    integration_tests::util::poll_until(
        "restarted broker leads its partitions again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            for p in &led_by_old {
                if partition_state(&cluster, "ft", *p).await?["leader"] != old {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    clients::wait_for_leaders(&bootstrap, "ft", 6, Duration::from_secs(30))?;

    // Clients produce and consume again, and the data from before the crash is intact.
    let producer = clients::producer(&bootstrap, "1")?;
    acked.extend(clients::produce_range(&producer, "ft", 3000..3600).await?);
    let consumed = clients::consume_all(&bootstrap, "ft", 6, Duration::from_secs(60))?;
    check_exactly_acked(&acked, &consumed)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_acks1_produce_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let cluster = Arc::new(
        clients::start_cluster(ClusterOptions::new(3).with_session_timeout_ms(SESSION_MS)).await?,
    );
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "crash", 6, 1).await?;
    let controller = cluster.controller_id().await?.context("no controller")?;
    let victim = (0..3).find(|b| *b != controller).context("no victim")?;

    let producer = clients::producer(&bootstrap, "1")?;
    let deadline = Instant::now() + Duration::from_secs(8);
    let kill_at = Instant::now() + Duration::from_secs(3);
    let mut pending = Vec::new();
    let mut i = 0usize;
    let mut killed = false;
    while Instant::now() < deadline {
        for _ in 0..200 {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            match producer.send_result(FutureRecord::to("crash").key(&key).payload(&value)) {
                Ok(f) => pending.push((i, f)),
                Err((e, _)) => anyhow::bail!("enqueue {i}: {e}"),
            }
            i += 1;
        }
        if !killed && Instant::now() >= kill_at {
            cluster.kill(victim).await?;
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart(victim).await?;
    let mut acked = Vec::new();
    let mut failed = 0usize;
    for (i, f) in pending {
        match f.await {
            Ok(Ok(d)) => acked.push((d.partition, d.offset, i)),
            _ => failed += 1,
        }
    }
    eprintln!("sent {i}, acked {}, not acked {failed}", acked.len());
    ensure!(
        acked.len() > 1000,
        "too few acks to mean anything: {}",
        acked.len()
    );
    clients::wait_for_leaders(&bootstrap, "crash", 6, Duration::from_secs(30))?;
    let consumed = clients::consume_all(&bootstrap, "crash", 6, Duration::from_secs(90))?;
    check_acked_present(&acked, &consumed)?;
    Ok(())
}
