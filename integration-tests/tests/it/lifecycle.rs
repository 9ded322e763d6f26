//! Broker lifecycle and administration: identity checks at start-up, graceful SIGTERM, idle
//! connections, topics created by other tools through ZooKeeper, DescribeConfigs, and
//! ListOffsets by timestamp.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use integration_tests::util::free_port;
use integration_tests::ClusterOptions;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::AsyncReadExt;
use zookeeper_client as zk;

use crate::clients;

fn gregor_bin() -> String {
    std::env::var("GREGOR_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/gregor").to_string()
    })
}

/// Runs `gregor broker` with `config` and expects it to exit non-zero within 30 s; returns its
/// stderr.
async fn expect_start_failure(config: &std::path::Path) -> anyhow::Result<String> {
    let child = tokio::process::Command::new(gregor_bin())
        .args(["broker", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("broker did not exit")??;
    ensure!(
        !out.status.success(),
        "broker started although it should not have"
    );
    Ok(String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_is_checked_at_start_up() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let dir = tempfile::tempdir()?;

    // A second broker with the same id refuses to start while the first is registered.
    let original = std::fs::read_to_string(cluster.config_path(0))?;
    let mut twin: String = original
        .lines()
        .filter(|l| !l.starts_with("listeners") && !l.starts_with("log.dirs"))
        .map(|l| format!("{l}\n"))
        .collect();
    twin.push_str(&format!(
        "listeners=PLAINTEXT://127.0.0.1:{}\n",
        free_port()?
    ));
    twin.push_str(&format!("log.dirs={}\n", dir.path().join("data").display()));
    let twin_path = dir.path().join("twin.properties");
    std::fs::write(&twin_path, &twin)?;
    let err = expect_start_failure(&twin_path).await?;
    ensure!(
        err.contains("broker id 0 is already registered"),
        "stderr: {err}"
    );
    ensure!(cluster.is_running(0), "the first broker must keep running");

    // A data directory that belongs to another cluster is refused (meta.properties).
    let status = cluster.terminate(0).await?;
    ensure!(status.success(), "SIGTERM exit status {status}");
    let meta_path = cluster.data_dir(0).join("meta.properties");
    let meta = std::fs::read_to_string(&meta_path)?;
    ensure!(
        meta.contains("broker.id=0") && meta.contains("cluster.id="),
        "{meta}"
    );
    let forged: String = meta
        .lines()
        .map(|l| {
            if l.starts_with("cluster.id=") {
                "cluster.id=SomeOtherClusterXXXXXXX\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&meta_path, forged)?;
    let err = expect_start_failure(&cluster.config_path(0)).await?;
    ensure!(
        err.contains("meta.properties") && err.contains("SomeOtherClusterXXXXXXX"),
        "stderr: {err}"
    );
    std::fs::write(&meta_path, meta)?;
    cluster.restart(0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_is_graceful_and_restart_needs_no_recovery() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "g", 2, 1).await?;
    let producer = clients::producer(&bootstrap, "all")?;
    let acked = clients::produce_keyed(&producer, "g", 2000).await?;
    let status = cluster.terminate(0).await?;
    ensure!(status.success(), "exit status {status}");
    ensure!(
        cluster.data_dir(0).join(".kafka_cleanshutdown").exists(),
        "no clean-shutdown marker after SIGTERM"
    );
    ensure!(
        !cluster.is_registered(0).await?,
        "registration must go with a clean stop"
    );
    cluster.restart(0).await?;
    let log = std::fs::read_to_string(cluster.log_path(0))?;
    ensure!(
        log.contains("had_clean_shutdown=true"),
        "restart recovered logs anyway"
    );
    clients::wait_for_leaders(&bootstrap, "g", 2, Duration::from_secs(30))?;
    let consumed = clients::consume_all(&bootstrap, "g", 2, Duration::from_secs(30))?;
    crate::basic::check_acked_present(&acked, &consumed)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1).with_override("connections.max.idle.ms", 1000),
    )
    .await?;
    let mut s = tokio::net::TcpStream::connect(cluster.broker_addr(0)).await?;
    let mut buf = [0u8; 1];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .context("idle connection was not closed")?
        .unwrap_or(0);
    ensure!(n == 0, "read {n} bytes from an idle connection");
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_written_to_zookeeper_by_another_tool_is_created() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(2)).await?;
    let zk = cluster.zk_client();
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    zk.create(
        "/config/topics/external",
        br#"{"version":1,"config":{"retention.ms":"3600000"}}"#,
        &acl,
    )
    .await?;
    // Kafka 2.3's v1 format, as an old kafka-topics.sh would write it.
    zk.create(
        "/brokers/topics/external",
        br#"{"version":1,"partitions":{"0":[0],"1":[1],"2":[0]}}"#,
        &acl,
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    clients::wait_for_leaders(&bootstrap, "external", 3, Duration::from_secs(30))?;
    for p in 0..3 {
        let state = cluster
            .zk_get_json(&format!("/brokers/topics/external/partitions/{p}/state"))
            .await?
            .context("state")?;
        ensure!(state["leader"] == if p == 1 { 1 } else { 0 }, "{state}");
    }
    let producer = clients::producer(&bootstrap, "1")?;
    let acked = clients::produce_keyed(&producer, "external", 100).await?;
    let consumed = clients::consume_all(&bootstrap, "external", 3, Duration::from_secs(30))?;
    crate::basic::check_acked_present(&acked, &consumed)?;

    // DescribeConfigs shows the override next to the defaults.
    let admin: AdminClient<clients::Printing> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create_with_context(clients::Printing)?;
    let res = admin
        .describe_configs(
            &[ResourceSpecifier::Topic("external")],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    let Some(Ok(resource)) = res.into_iter().next() else {
        bail!("describe_configs returned no resource");
    };
    let get = |k: &str| {
        resource
            .entries
            .iter()
            .find(|e| e.name == k)
            .and_then(|e| e.value.clone())
    };
    ensure!(
        get("retention.ms").as_deref() == Some("3600000"),
        "{:?}",
        resource.entries
    );
    ensure!(get("cleanup.policy").as_deref() == Some("delete"));
    ensure!(get("segment.bytes").as_deref() == Some("1073741824"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn list_offsets_by_timestamp_finds_the_first_record_at_or_after() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "ts", 1, 1).await?;
    let producer = clients::producer(&bootstrap, "1")?;
    // Ten records with timestamps 1000, 2000, … sent together so they share batches.
    let base = 1_700_000_000_000i64;
    let mut futures = Vec::new();
    for i in 0..10i64 {
        let f = producer
            .send_result(
                FutureRecord::<(), _>::to("ts")
                    .partition(0)
                    .payload("x")
                    .timestamp(base + 1000 * (i + 1)),
            )
            .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
        futures.push(f);
    }
    for f in futures {
        f.await?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    }
    let consumer = clients::consumer(&bootstrap)?;
    for (target, expected) in [
        (base + 2500, Offset::Offset(2)),
        (base + 1000, Offset::Offset(0)),
        (base + 10_000, Offset::Offset(9)),
        (base + 99_999, Offset::End),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("ts", 0, Offset::Offset(target))?;
        let found = consumer.offsets_for_times(tpl, Duration::from_secs(10))?;
        let got = found
            .find_partition("ts", 0)
            .context("partition missing")?
            .offset();
        ensure!(
            got == expected,
            "timestamp {target}: {got:?}, expected {expected:?}"
        );
    }
    Ok(())
}

/// A Metadata request naming `__consumer_offsets` creates it with Kafka's internal-topic
/// settings: offsets.topic.num.partitions partitions, compacted, offsets.topic.segment.bytes.
#[tokio::test(flavor = "multi_thread")]
async fn offsets_topic_is_created_on_first_use_with_kafkas_configs() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            .with_override("offsets.topic.replication.factor", 1)
            .with_override("offsets.topic.num.partitions", 5)
            .with_override("offsets.topic.segment.bytes", 10_485_760),
    )
    .await?;
    // Metadata v8 naming the topic with auto-creation allowed; the first answer is
    // LEADER_NOT_AVAILABLE while the topic is created.
    let mut conn = gregor::protocol::client::BrokerConnection::connect(
        &cluster.broker_addr(0).to_string(),
        "it-offsets",
        Duration::from_secs(5),
    )
    .await?;
    let mut topic = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    topic.name = Some(kafka_protocol::messages::TopicName(
        "__consumer_offsets".into(),
    ));
    let mut req = kafka_protocol::messages::MetadataRequest::default();
    req.topics = Some(vec![topic]);
    req.allow_auto_topic_creation = true;
    let first = conn.send(&req, 8).await?;
    ensure!(
        first
            .topics
            .first()
            .is_some_and(|t| t.error_code == 5 && t.is_internal),
        "first answer {:?}",
        first.topics.first().map(|t| (t.error_code, t.is_internal))
    );
    clients::wait_for_leaders(
        &cluster.bootstrap(),
        "__consumer_offsets",
        5,
        Duration::from_secs(30),
    )?;
    let config = cluster
        .zk_get_json("/config/topics/__consumer_offsets")
        .await?
        .context("/config/topics/__consumer_offsets")?;
    ensure!(
        config["config"]["cleanup.policy"] == "compact"
            && config["config"]["segment.bytes"] == "10485760"
            && config["config"]["compression.type"] == "producer",
        "offsets topic config {config}"
    );
    Ok(())
}
