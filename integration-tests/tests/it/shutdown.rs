//! Controlled shutdown and preferred leader elections: a SIGTERMed broker hands its leadership
//! over before it deregisters, and leadership goes back to the preferred replica through the
//! auto rebalance or `/admin/preferred_replica_election`.
//!
//! "Before it deregisters" is read from ZooKeeper itself: every partition state written by the
//! controlled shutdown has a modification zxid below the zxid at which `/brokers/ids/<id>` went
//! away (the parent's pzxid, as nothing else joins or leaves meanwhile). Broker-failure handling
//! can only write after that point.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use integration_tests::util::poll_until;
use integration_tests::{Cluster, ClusterOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::ClientConfig;
use zookeeper_client as zk;

use crate::clients;

/// Long enough that an uncontrolled failover could not pass for a controlled one.
const SESSION_MS: u64 = 10_000;
/// `controlled.shutdown.retry.backoff.ms` (Kafka's default): a shutdown faster than this
/// succeeded at the first attempt.
const RETRY_BACKOFF_MS: u64 = 5_000;
const PARTITIONS: i32 = 6;

fn options() -> ClusterOptions {
    ClusterOptions::new(3)
        .with_session_timeout_ms(SESSION_MS)
        .with_override("controlled.shutdown.retry.backoff.ms", RETRY_BACKOFF_MS)
}

/// Partition p on [p%3, (p+1)%3, (p+2)%3]: every broker is the preferred leader of two
/// partitions and a follower of the other four.
fn rotating_assignment() -> Vec<Vec<i32>> {
    (0..PARTITIONS)
        .map(|p| (0..3).map(|i| (p + i) % 3).collect())
        .collect()
}

async fn create_topic(bootstrap: &str, topic: &str, assignment: &[Vec<i32>]) -> anyhow::Result<()> {
    let admin: AdminClient<clients::Printing> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create_with_context(clients::Printing)
        .context("admin client")?;
    let replicas: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                assignment.len() as i32,
                TopicReplication::Variable(&replicas),
            )],
            &opts,
        )
        .await
        .context("create_topics")?;
    for r in res {
        if let Err((t, e)) = r {
            anyhow::bail!("creating topic {t}: {e}");
        }
    }
    clients::wait_for_leaders(bootstrap, topic, assignment.len(), Duration::from_secs(30))
}

/// A partition's state znode, with the zxid of its last write.
#[derive(Debug, Clone)]
struct State {
    leader: i32,
    leader_epoch: i64,
    isr: Vec<i32>,
    mzxid: i64,
}

async fn state(cluster: &Cluster, topic: &str, p: i32) -> anyhow::Result<State> {
    let path = format!("/brokers/topics/{topic}/partitions/{p}/state");
    let (data, stat) = cluster
        .zk_get(&path)
        .await?
        .with_context(|| format!("{path} missing"))?;
    let json: serde_json::Value = serde_json::from_slice(&data)?;
    let int = |k: &str| {
        json[k]
            .as_i64()
            .with_context(|| format!("{path}: no integer {k} in {json}"))
    };
    let isr = json["isr"]
        .as_array()
        .with_context(|| format!("{path}: no isr in {json}"))?
        .iter()
        .map(|b| b.as_i64().map(|b| b as i32))
        .collect::<Option<Vec<i32>>>()
        .with_context(|| format!("{path}: bad isr in {json}"))?;
    Ok(State {
        leader: int("leader")? as i32,
        leader_epoch: int("leader_epoch")?,
        isr,
        mzxid: stat.mzxid,
    })
}

async fn states(cluster: &Cluster, topic: &str) -> anyhow::Result<Vec<State>> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        out.push(state(cluster, topic, p).await?);
    }
    Ok(out)
}

/// Waits until `pred` holds for every listed partition's state.
async fn wait_states(
    cluster: &Cluster,
    topic: &str,
    partitions: &[i32],
    what: &str,
    timeout: Duration,
    pred: impl Fn(&State) -> bool,
) -> anyhow::Result<()> {
    let pred = &pred;
    let waited = poll_until(what, timeout, Duration::from_millis(100), || async move {
        for p in partitions {
            if !pred(&state(cluster, topic, *p).await?) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await;
    if let Err(e) = waited {
        let now = states(cluster, topic).await;
        return Err(e.context(format!("states of {topic} now: {now:?}")));
    }
    Ok(())
}

/// SIGTERMs `broker` and checks the controlled shutdown: the process exits well within the
/// session timeout (the first attempt succeeded), and when it is gone no partition is led by it
/// or leaderless, it is in no ISR, and every state it changed was written before its
/// registration went away. Returns the partitions it led.
async fn terminate_and_check_controlled(
    cluster: &Cluster,
    topic: &str,
    broker: i32,
) -> anyhow::Result<Vec<i32>> {
    let before = states(cluster, topic).await?;
    let led: Vec<i32> = (0..PARTITIONS)
        .filter(|p| before[*p as usize].leader == broker)
        .collect();
    ensure!(!led.is_empty(), "broker {broker} leads nothing: {before:?}");

    let started = Instant::now();
    let status = cluster.terminate(broker).await?;
    let took = started.elapsed();
    ensure!(status.success(), "broker {broker} exited with {status}");
    eprintln!("broker {broker} shut down in {took:?}");
    ensure!(
        took < Duration::from_millis(RETRY_BACKOFF_MS),
        "shutdown took {took:?}: the first controlled-shutdown attempt did not succeed"
    );

    let (_, ids) = cluster
        .zk_get("/brokers/ids")
        .await?
        .context("/brokers/ids missing")?;
    let deregistered_at = ids.pzxid;
    let after = states(cluster, topic).await?;
    for (p, (old, new)) in before.iter().zip(&after).enumerate() {
        ensure!(
            new.leader != broker && new.leader != -1,
            "partition {p}: leader {} after broker {broker} left ({old:?} -> {new:?})",
            new.leader
        );
        ensure!(
            !new.isr.contains(&broker),
            "partition {p}: broker {broker} still in the ISR {:?}",
            new.isr
        );
        ensure!(
            new.leader_epoch == old.leader_epoch + 1,
            "partition {p}: leader epoch {} -> {}, expected one bump",
            old.leader_epoch,
            new.leader_epoch
        );
        ensure!(
            new.mzxid < deregistered_at,
            "partition {p}: state written at zxid {:#x}, after broker {broker} deregistered at \
             {deregistered_at:#x}: leadership moved by failure handling, not controlled shutdown",
            new.mzxid
        );
    }
    let log = cluster.log_tail(broker, 400);
    ensure!(
        log.contains("controlled shutdown succeeded"),
        "broker {broker}'s log does not report a controlled shutdown:\n{log}"
    );
    Ok(led)
}

/// The controller shuts itself down: it sends ControlledShutdown to its own listener and its
/// still-running event loop moves every leadership away before it resigns.
#[tokio::test(flavor = "multi_thread")]
async fn controller_shutting_down_moves_leadership_before_it_exits() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(options()).await?;
    let bootstrap = cluster.bootstrap();
    let assignment = rotating_assignment();
    create_topic(&bootstrap, "cs", &assignment).await?;
    for (p, s) in states(&cluster, "cs").await?.iter().enumerate() {
        ensure!(
            s.leader == assignment[p][0] && s.isr.len() == 3,
            "partition {p} did not start on its preferred replica with a full ISR: {s:?}"
        );
    }
    let controller = cluster.controller_id().await?.context("no controller")?;

    let led = terminate_and_check_controlled(&cluster, "cs", controller).await?;
    eprintln!("controller {controller} handed over partitions {led:?}");
    // The survivors were told: their metadata names the leaders ZooKeeper has.
    for survivor in (0..3).filter(|b| *b != controller) {
        wait_metadata_matches(&cluster, survivor, "cs").await?;
    }
    Ok(())
}

/// Waits until broker `from` answers Metadata for `topic` with the leaders in ZooKeeper.
async fn wait_metadata_matches(cluster: &Cluster, from: i32, topic: &str) -> anyhow::Result<()> {
    let addr = cluster.broker_addr(from).to_string();
    poll_until(
        &format!("broker {from}'s metadata to show the leaders of {topic} in ZooKeeper"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let addr = addr.clone();
            async move {
                let expected: Vec<i32> = states(cluster, topic)
                    .await?
                    .iter()
                    .map(|s| s.leader)
                    .collect();
                let mut conn = gregor::protocol::client::BrokerConnection::connect(
                    &addr,
                    "it-shutdown",
                    Duration::from_secs(5),
                )
                .await?;
                // Null topics: every topic.
                let mut req = kafka_protocol::messages::MetadataRequest::default();
                req.topics = None;
                let md = conn.send(&req, 1).await?;
                let Some(t) = md
                    .topics
                    .iter()
                    .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                else {
                    return Ok(None);
                };
                let mut got = vec![-1; PARTITIONS as usize];
                for p in &t.partitions {
                    if let Some(slot) = got.get_mut(p.partition_index as usize) {
                        *slot = p.leader_id.0;
                    }
                }
                Ok((got == expected).then_some(()))
            }
        },
    )
    .await
}

/// Which partitions `broker` is the preferred (first) replica of.
fn preferred_of(broker: i32) -> Vec<i32> {
    rotating_assignment()
        .iter()
        .enumerate()
        .filter(|(_, r)| r[0] == broker)
        .map(|(p, _)| p as i32)
        .collect()
}

/// Restarts `broker` and waits until it is back in the ISR of `partitions`. That is the
/// partition leaders' doing once the broker has caught up as a follower; the controller never
/// adds a replica to an ISR.
async fn restart_and_wait_in_sync(
    cluster: &Cluster,
    topic: &str,
    broker: i32,
    partitions: &[i32],
) -> anyhow::Result<()> {
    cluster.restart(broker).await?;
    clients::wait_metadata_ready(cluster).await?;
    wait_states(
        cluster,
        topic,
        partitions,
        &format!("restarted broker {broker} back in the ISR (follower replication rejoins it)"),
        Duration::from_secs(30),
        |s| s.isr.contains(&broker),
    )
    .await
}

/// After a controlled shutdown and a restart, the auto rebalance makes the broker the leader of
/// its preferred partitions again.
#[tokio::test(flavor = "multi_thread")]
async fn auto_rebalance_returns_leadership_to_a_restarted_broker() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        options().with_override("leader.imbalance.check.interval.seconds", 5),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "rebalance", &rotating_assignment()).await?;
    let controller = cluster.controller_id().await?.context("no controller")?;
    let broker = (0..3).find(|b| *b != controller).context("no broker")?;
    let preferred = preferred_of(broker);

    let led = terminate_and_check_controlled(&cluster, "rebalance", broker).await?;
    ensure!(
        led == preferred,
        "broker {broker} led {led:?}, expected {preferred:?}"
    );
    restart_and_wait_in_sync(&cluster, "rebalance", broker, &preferred).await?;

    // Imbalance 2/2 = 100 % > 10 %: the next check (every 5 s) moves both back.
    wait_states(
        &cluster,
        "rebalance",
        &preferred,
        &format!("broker {broker} leading its preferred partitions again"),
        Duration::from_secs(20),
        |s| s.leader == broker,
    )
    .await?;
    clients::wait_for_leaders(
        &bootstrap,
        "rebalance",
        PARTITIONS as usize,
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// `/admin/preferred_replica_election` as `kafka-preferred-replica-election.sh` writes it.
async fn request_preferred_election(
    cluster: &Cluster,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = partitions
        .iter()
        .map(|p| serde_json::json!({"topic": topic, "partition": p}))
        .collect();
    let body = serde_json::json!({"version": 1, "partitions": list}).to_string();
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    cluster
        .zk_client()
        .create("/admin/preferred_replica_election", body.as_bytes(), &acl)
        .await
        .context("creating /admin/preferred_replica_election")?;
    Ok(())
}

async fn wait_election_consumed(cluster: &Cluster) -> anyhow::Result<()> {
    poll_until(
        "/admin/preferred_replica_election deleted by the controller",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move {
            Ok(cluster
                .zk_get("/admin/preferred_replica_election")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await
}

/// With the auto rebalance off, leadership returns only when asked through the znode.
#[tokio::test(flavor = "multi_thread")]
async fn preferred_replica_election_znode_returns_leadership() -> anyhow::Result<()> {
    let cluster =
        clients::start_cluster(options().with_override("auto.leader.rebalance.enable", "false"))
            .await?;
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "pref", &rotating_assignment()).await?;
    let controller = cluster.controller_id().await?.context("no controller")?;
    let broker = (0..3).find(|b| *b != controller).context("no broker")?;
    let preferred = preferred_of(broker);

    terminate_and_check_controlled(&cluster, "pref", broker).await?;
    restart_and_wait_in_sync(&cluster, "pref", broker, &preferred).await?;
    let before = states(&cluster, "pref").await?;
    for p in &preferred {
        ensure!(
            before[*p as usize].leader != broker,
            "partition {p} went back to broker {broker} without being asked"
        );
    }

    request_preferred_election(&cluster, "pref", &preferred).await?;
    wait_election_consumed(&cluster).await?;
    wait_states(
        &cluster,
        "pref",
        &preferred,
        &format!("broker {broker} leading its preferred partitions again"),
        Duration::from_secs(10),
        |s| s.leader == broker,
    )
    .await?;
    Ok(())
}

/// The controller consumes every election request, even one with nothing to do, and keeps
/// watching: a second request is consumed too, and a partition already led by its preferred
/// replica keeps its leader epoch.
#[tokio::test(flavor = "multi_thread")]
async fn preferred_replica_election_requests_are_consumed_and_rewatched() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "noop", 2, 1).await?;
    let before = state(&cluster, "noop", 0).await?;
    for round in 0..2 {
        // An unknown topic and partition are skipped, not fatal.
        request_preferred_election(&cluster, "noop", &[0, 7]).await?;
        wait_election_consumed(&cluster)
            .await
            .with_context(|| format!("round {round}"))?;
    }
    let after = state(&cluster, "noop", 0).await?;
    ensure!(
        after.leader == before.leader && after.leader_epoch == before.leader_epoch,
        "a needless election changed the state: {before:?} -> {after:?}"
    );
    Ok(())
}

/// Sends ControlledShutdown at `version` to broker `to` on behalf of `broker`; returns the error
/// code and the number of partitions reported as still led.
async fn send_controlled_shutdown(
    cluster: &Cluster,
    to: i32,
    version: i16,
    broker: i32,
    broker_epoch: i64,
) -> anyhow::Result<(i16, usize)> {
    let mut conn = gregor::protocol::client::BrokerConnection::connect(
        &cluster.broker_addr(to).to_string(),
        "it-shutdown",
        Duration::from_secs(10),
    )
    .await?;
    let mut req = kafka_protocol::messages::ControlledShutdownRequest::default();
    req.broker_id = kafka_protocol::messages::BrokerId(broker);
    req.broker_epoch = broker_epoch;
    let resp = conn
        .send(&req, version)
        .await
        .with_context(|| format!("ControlledShutdown v{version} to broker {to}"))?;
    Ok((resp.error_code, resp.remaining_partitions.len()))
}

/// Every version parses (v0 has a header without client id); only the controller acts, and
/// it refuses an old broker epoch or an unknown broker.
#[tokio::test(flavor = "multi_thread")]
async fn controlled_shutdown_requests_are_for_the_controller_and_fenced() -> anyhow::Result<()> {
    const NOT_CONTROLLER: i16 = 41;
    const STALE_BROKER_EPOCH: i16 = 77;
    const BROKER_NOT_AVAILABLE: i16 = 8;
    let cluster = clients::start_cluster(ClusterOptions::new(2)).await?;
    let controller = cluster.controller_id().await?.context("no controller")?;
    let other = 1 - controller;
    let (_, stat) = cluster
        .zk_get(&format!("/brokers/ids/{other}"))
        .await?
        .context("registration missing")?;
    let epoch = stat.czxid;

    for v in 0..=3 {
        let (code, _) = send_controlled_shutdown(&cluster, other, v, other, epoch).await?;
        ensure!(
            code == NOT_CONTROLLER,
            "v{v} to a non-controller: error {code}"
        );
    }
    for v in 2..=3 {
        let (code, _) = send_controlled_shutdown(&cluster, controller, v, other, epoch - 1).await?;
        ensure!(
            code == STALE_BROKER_EPOCH,
            "v{v} with an old epoch: error {code}"
        );
    }
    let (code, _) = send_controlled_shutdown(&cluster, controller, 3, 7, -1).await?;
    ensure!(code == BROKER_NOT_AVAILABLE, "unknown broker: error {code}");
    // v1 carries no epoch (accepted as unknown): the request is granted, and with no topics
    // there is nothing left to lead.
    let (code, remaining) = send_controlled_shutdown(&cluster, controller, 1, other, -1).await?;
    ensure!(
        code == 0 && remaining == 0,
        "v1: error {code}, {remaining} remaining"
    );
    Ok(())
}
