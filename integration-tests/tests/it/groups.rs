//! Consumer groups end to end: the group coordinator on `__consumer_offsets` (FindCoordinator,
//! JoinGroup/SyncGroup/Heartbeat/LeaveGroup, OffsetCommit/OffsetFetch, DescribeGroups/ListGroups,
//! groups and offsets loaded on coordinator failover), driven by kcat's balanced consumer,
//! rdkafka, kafka-python, confluent-kafka and raw requests. Every wait is bounded, so a broker
//! without group support fails these tests with a message instead of hanging.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use integration_tests::ClusterOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::clients;
use crate::group_clients::{
    self as gc, check_committed, check_reads, check_resume, group_config, indices, log_ends,
    read_as_new_member, read_prefix_and_commit, splits, wait_until, Member, Spawned,
};
use crate::group_raw::{self as raw, find_coordinator};

/// `offsets.topic.num.partitions` of these tests: fewer than Kafka's 50 keeps them fast.
pub(crate) const OFFSETS_PARTITIONS: i32 = 10;

/// Brokers for the group tests: a small `__consumer_offsets`, no initial rebalance delay.
pub(crate) fn group_cluster(brokers: usize) -> ClusterOptions {
    ClusterOptions::new(brokers)
        .with_override("offsets.topic.num.partitions", OFFSETS_PARTITIONS)
        .with_override("group.initial.rebalance.delay.ms", 0)
}

fn all_partitions(n: i32) -> BTreeSet<i32> {
    (0..n).collect()
}

#[test]
fn java_string_hash_matches_java() {
    // Values of java.lang.String#hashCode.
    assert_eq!(raw::java_string_hash(""), 0);
    assert_eq!(raw::java_string_hash("hello"), 99_162_322);
    assert_eq!(raw::java_string_hash("Aa"), raw::java_string_hash("BB"));
    assert_eq!(raw::java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(raw::offsets_partition_for("polygenelubricants", 10), 0);
    assert_eq!(raw::offsets_partition_for("hello", 50), 99_162_322 % 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_balanced_consumer_reads_everything() -> anyhow::Result<()> {
    gc::require_tool("kcat")?;
    // Kafka's default group.initial.rebalance.delay.ms (3 s) stays: the lone member waits it out.
    let cluster = clients::start_cluster(
        ClusterOptions::new(2).with_override("offsets.topic.num.partitions", OFFSETS_PARTITIONS),
    )
    .await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    clients::create_topic(&b, "kg", 6, 1).await?;
    let n = 3000;
    let acked = clients::produce_keyed(&clients::producer(&b, "all")?, "kg", n).await?;

    let dir = tempfile::tempdir()?;
    // -e in -G mode: exit once every assigned partition reached its end (kcat 1.7).
    let mut kcat = Spawned::spawn(
        Command::new("kcat").args([
            "-b",
            &b,
            "-G",
            "kcat-group",
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "session.timeout.ms=6000",
            "-e",
            "-u",
            "-f",
            "%p %o %k %s\\n",
            "kg",
        ]),
        dir.path(),
        "kcat-G",
    )?;
    let status = kcat.wait(Duration::from_secs(90)).await?;
    let out = kcat.stdout_text()?;
    let Some(status) = status else {
        bail!(
            "kcat -G did not reach the end of its partitions within 90 s (killed); it printed {} lines; stderr: {}",
            out.lines().count(),
            kcat.stderr_tail(30)
        );
    };
    ensure!(
        status.success(),
        "kcat -G exited with {status}; stderr: {}",
        kcat.stderr_tail(30)
    );
    let mut read = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        ensure!(f.len() == 4, "bad kcat line {line:?}");
        let i = gc::message_index(f[2].as_bytes(), f[3].as_bytes())?;
        read.push((f[0].parse()?, f[1].parse()?, i));
    }
    check_reads("kcat -G", &read, &acked)?;
    ensure!(
        read.len() == n,
        "kcat -G read {} of {n} messages; stderr: {}",
        read.len(),
        kcat.stderr_tail(30)
    );

    // kcat commits what it read when it closes (auto-commit): the group's offsets are the ends.
    check_committed(
        &b,
        "kcat-group",
        "kg",
        6,
        &log_ends(&acked),
        Duration::from_secs(30),
    )
    .await
    .context("offsets kcat committed on close")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rdkafka_group_assignments_follow_members() -> anyhow::Result<()> {
    gc::require_tool("kcat")?;
    let cluster = clients::start_cluster(group_cluster(2)).await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    let topic = "ga";
    clients::create_topic(&b, topic, 6, 1).await?;
    let all = all_partitions(6);
    let group = "assign-group";
    // A 30 s session: a member that leaves cleanly must be gone long before it would expire.
    let config = |id: &str| group_config(&b, group, id, 30_000, true);

    let m1 = Member::start("m1", config("it-m1"), topic)?;
    let m2 = Member::start("m2", config("it-m2"), topic)?;
    let report2 = || format!("{}; {}", m1.describe(), m2.describe());
    wait_until(
        "2 members splitting all 6 partitions",
        Duration::from_secs(45),
        || Ok(splits(&[m1.assignment(), m2.assignment()], &all).then_some(())),
        report2,
    )
    .await?;

    let m3 = Member::start("m3", config("it-m3"), topic)?;
    wait_until(
        "3 members splitting all 6 partitions after a third joined",
        Duration::from_secs(45),
        || {
            let sets = [m1.assignment(), m2.assignment(), m3.assignment()];
            Ok(splits(&sets, &all).then_some(()))
        },
        || format!("{}; {}; {}", m1.describe(), m2.describe(), m3.describe()),
    )
    .await?;

    // A clean close sends LeaveGroup: the others take over without waiting for the session.
    m3.close(Duration::from_secs(30)).await?;
    let closed_at = Instant::now();
    wait_until(
        "the 2 remaining members to take over m3's partitions (LeaveGroup; m3's session is 30 s)",
        Duration::from_secs(20),
        || Ok(splits(&[m1.assignment(), m2.assignment()], &all).then_some(())),
        report2,
    )
    .await?;
    eprintln!("after m3 left: rebalanced in {:?}", closed_at.elapsed());
    let before_join = (m1.assignment(), m2.assignment());

    // An external member (kcat, its own librdkafka) joins: a rebalance gives it partitions.
    let dir = tempfile::tempdir()?;
    let mut kcat = Spawned::spawn(
        Command::new("kcat").args([
            "-b",
            &b,
            "-G",
            group,
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=1000",
            "-X",
            "partition.assignment.strategy=range",
            "-X",
            "client.id=it-kcat",
            topic,
        ]),
        dir.path(),
        "kcat-member",
    )?;
    let kcat_stderr = dir.path().join("kcat-member.err");
    let joined = wait_until(
        "kcat's join to take partitions from the rdkafka members",
        Duration::from_secs(45),
        || {
            if let Some(status) = kcat.exited()? {
                bail!(
                    "kcat -G exited ({status}) while joining; stderr: {}",
                    kcat.stderr_tail(20)
                );
            }
            let (a1, a2) = (m1.assignment(), m2.assignment());
            let union: BTreeSet<i32> = a1.union(&a2).copied().collect();
            let settled = !a1.is_empty()
                && !a2.is_empty()
                && a1.is_disjoint(&a2)
                && !union.is_empty()
                && union.len() < all.len();
            Ok(settled.then(|| all.difference(&union).copied().collect::<BTreeSet<i32>>()))
        },
        || {
            let stderr = integration_tests::util::tail(&kcat_stderr, 10);
            format!(
                "{}; {}; kcat stderr: {stderr}",
                m1.describe(),
                m2.describe()
            )
        },
    )
    .await?;
    ensure!(
        (m1.assignment(), m2.assignment()) != before_join,
        "assignments did not change when kcat joined"
    );
    eprintln!(
        "kcat joined: rebalance moved {joined:?} to it (before {before_join:?}, now {:?} / {:?})",
        m1.assignment(),
        m2.assignment()
    );

    // Killed without LeaveGroup: its partitions move back once its 6 s session expires.
    ensure!(
        kcat.exited()?.is_none(),
        "kcat exited before it was killed; stderr: {}",
        kcat.stderr_tail(20)
    );
    kcat.kill()?;
    let killed_at = Instant::now();
    wait_until(
        "the killed kcat member's partitions to move to the rdkafka members (session 6 s)",
        Duration::from_secs(30),
        || Ok(splits(&[m1.assignment(), m2.assignment()], &all).then_some(())),
        report2,
    )
    .await?;
    eprintln!(
        "after kcat was killed: rebalanced in {:?}",
        killed_at.elapsed()
    );

    m1.close(Duration::from_secs(30)).await?;
    m2.close(Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_resume_without_gaps_or_redelivery() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(group_cluster(1)).await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    let topic = "gr";
    clients::create_topic(&b, topic, 6, 1).await?;
    let n = 2000;
    let acked = clients::produce_keyed(&clients::producer(&b, "all")?, topic, n).await?;
    let group = "resume-group";

    let (first, committed) = read_prefix_and_commit(&b, group, topic, n / 2).await?;
    eprintln!(
        "first consumer read {} messages, committed {committed:?}",
        first.len()
    );
    check_committed(&b, group, topic, 6, &committed, Duration::from_secs(30)).await?;

    let rest = n - first.len();
    let resumed = read_as_new_member(&b, group, topic, rest).await?;
    check_resume(&first, &committed, &resumed, &acked)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_kill_keeps_group_and_offsets() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(
        group_cluster(3)
            .with_override("offsets.topic.replication.factor", 3)
            // The dead broker leaves the ISRs quickly, so high watermarks move on without it.
            .with_override("replica.lag.time.max.ms", 3000),
    )
    .await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    let topic = "gf";
    clients::create_topic(&b, topic, 6, 3).await?;
    let n = 1000;
    let mut acked = clients::produce_keyed(&clients::producer(&b, "all")?, topic, n).await?;
    let group = "failover-group";

    let coordinator = find_coordinator(&cluster, 0, group, Duration::from_secs(30)).await?;
    let p = raw::offsets_partition_for(group, OFFSETS_PARTITIONS);
    let leader = raw::offsets_topic_leader(&b, p)?;
    ensure!(
        coordinator == leader,
        "FindCoordinator names broker {coordinator} for {group}, but __consumer_offsets-{p} (abs(hashCode) % {OFFSETS_PARTITIONS}) is led by {leader}"
    );

    let (first, committed) = read_prefix_and_commit(&b, group, topic, n / 2).await?;
    check_committed(&b, group, topic, 6, &committed, Duration::from_secs(30)).await?;

    // A live group with the same coordinator, consuming while the coordinator dies.
    let mut live_group = None;
    for i in 0..60 {
        let candidate = format!("live-{i}");
        if find_coordinator(&cluster, 0, &candidate, Duration::from_secs(30)).await? == coordinator
        {
            live_group = Some(candidate);
            break;
        }
    }
    let live_group =
        live_group.context("no group id among live-0..live-59 maps to the coordinator")?;
    let live = Member::start(
        "live",
        group_config(&b, &live_group, "it-live", 6000, true),
        topic,
    )?;
    let all: BTreeSet<usize> = (0..n).collect();
    wait_until(
        "the live member to read everything produced so far",
        Duration::from_secs(60),
        || Ok(indices(&live.messages()).is_superset(&all).then_some(())),
        || live.describe(),
    )
    .await?;

    eprintln!("killing broker {coordinator}, coordinator of {group} and {live_group}");
    cluster.kill(coordinator).await?;
    let killed_at = Instant::now();
    let survivor = (0..3)
        .find(|id| *id != coordinator)
        .context("no survivor")?;
    let moved = wait_until_coordinator_moves(&cluster, survivor, group, coordinator).await?;
    eprintln!(
        "coordinator of {group}: {coordinator} -> {moved} after {:?}",
        killed_at.elapsed()
    );

    // The running group keeps consuming what is produced after the failover.
    let more = clients::produce_range(&clients::producer(&b, "1")?, topic, n..n + 300).await?;
    acked.extend(more);
    let new: BTreeSet<usize> = (n..n + 300).collect();
    wait_until(
        "the live member to read the messages produced after the coordinator died",
        Duration::from_secs(60),
        || Ok(indices(&live.messages()).is_superset(&new).then_some(())),
        || live.describe(),
    )
    .await?;

    // The committed offsets survived on the new coordinator, and a new member resumes there.
    check_committed(&b, group, topic, 6, &committed, Duration::from_secs(60))
        .await
        .context("committed offsets after the coordinator was killed")?;
    let rest = acked.len() - first.len();
    let resumed = read_as_new_member(&b, group, topic, rest).await?;
    check_resume(&first, &committed, &resumed, &acked)?;
    live.close(Duration::from_secs(30)).await?;
    Ok(())
}

/// Waits (ZooKeeper session + elections + loading) until broker `via` names a coordinator for
/// `group` other than `old`.
async fn wait_until_coordinator_moves(
    cluster: &integration_tests::Cluster,
    via: i32,
    group: &str,
    old: i32,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let node = find_coordinator(cluster, via, group, left.max(Duration::from_secs(1))).await?;
        if node != old {
            return Ok(node);
        }
        if Instant::now() > deadline {
            bail!("60 s after broker {old} was killed, broker {via} still names it coordinator of {group}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What DescribeGroups (through librdkafka's group list) says about one group.
#[derive(Debug)]
struct GroupView {
    state: String,
    protocol_type: String,
    protocol: String,
    /// (member id, client id, assignment bytes)
    members: Vec<(String, String, usize)>,
}

fn describe_group(consumer: &BaseConsumer, group: &str) -> anyhow::Result<Option<GroupView>> {
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .context("fetch_group_list")?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| GroupView {
            state: g.state().to_string(),
            protocol_type: g.protocol_type().to_string(),
            protocol: g.protocol().to_string(),
            members: g
                .members()
                .iter()
                .map(|m| {
                    (
                        m.id().to_string(),
                        m.client_id().to_string(),
                        m.assignment().map_or(0, <[u8]>::len),
                    )
                })
                .collect(),
        }))
}

/// Polls the group's description until `pred` holds (errors count as "not yet").
async fn wait_group(
    consumer: &BaseConsumer,
    group: &str,
    what: &str,
    pred: impl Fn(&GroupView) -> bool,
) -> anyhow::Result<GroupView> {
    let last = std::cell::RefCell::new(String::from("nothing yet"));
    wait_until(
        what,
        Duration::from_secs(45),
        || match describe_group(consumer, group) {
            Ok(Some(v)) if pred(&v) => Ok(Some(v)),
            Ok(v) => {
                *last.borrow_mut() = format!("{v:?}");
                Ok(None)
            }
            Err(e) => {
                *last.borrow_mut() = format!("{e:#}");
                Ok(None)
            }
        },
        || format!("last seen: {}", last.borrow()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_and_list_groups_show_members_and_states() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(group_cluster(2)).await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    let topic = "dg";
    clients::create_topic(&b, topic, 3, 1).await?;
    clients::produce_keyed(&clients::producer(&b, "all")?, topic, 30).await?;
    let group = "describe-group";
    let all = all_partitions(3);

    let ma = Member::start(
        "a",
        group_config(&b, group, "it-member-a", 10_000, true),
        topic,
    )?;
    let mb = Member::start(
        "b",
        group_config(&b, group, "it-member-b", 10_000, true),
        topic,
    )?;
    wait_until(
        "2 members splitting the 3 partitions",
        Duration::from_secs(45),
        || Ok(splits(&[ma.assignment(), mb.assignment()], &all).then_some(())),
        || format!("{}; {}", ma.describe(), mb.describe()),
    )
    .await?;

    let admin = clients::consumer(&b)?;
    let stable = wait_group(&admin, group, "the group Stable with 2 members", |v| {
        v.state == "Stable" && v.members.len() == 2
    })
    .await?;
    ensure!(
        stable.protocol_type == "consumer",
        "protocol type {:?}",
        stable.protocol_type
    );
    ensure!(
        stable.protocol == "range",
        "protocol {:?} (both members asked for range only)",
        stable.protocol
    );
    let clients_seen: BTreeSet<&str> = stable.members.iter().map(|m| m.1.as_str()).collect();
    ensure!(
        clients_seen == BTreeSet::from(["it-member-a", "it-member-b"]),
        "member client ids {clients_seen:?}"
    );
    for (id, client, assignment) in &stable.members {
        ensure!(!id.is_empty(), "member of {client} has an empty member id");
        ensure!(
            *assignment > 0,
            "member {id} ({client}) has no assignment in DescribeGroups"
        );
    }

    // Raw: FindCoordinator from any broker, ListGroups at the coordinator (and only there).
    let coordinator = find_coordinator(&cluster, 0, group, Duration::from_secs(30)).await?;
    let mut conn = raw::connect(&cluster, coordinator).await?;
    let (err, groups) = raw::list_groups(&mut conn, 0, 0).await?;
    ensure!(err == raw::NONE, "ListGroups v0 error {err}");
    ensure!(
        groups.contains(&(group.to_string(), "consumer".to_string())),
        "ListGroups v0 at the coordinator {coordinator} does not list {group} (consumer): {groups:?}"
    );
    for other in cluster
        .broker_ids()
        .into_iter()
        .filter(|id| *id != coordinator)
    {
        let mut c = raw::connect(&cluster, other).await?;
        let (_, groups) = raw::list_groups(&mut c, 0, 0).await?;
        ensure!(
            !groups.iter().any(|g| g.0 == group),
            "broker {other} lists {group} though {coordinator} coordinates it: {groups:?}"
        );
    }

    ma.close(Duration::from_secs(30)).await?;
    mb.close(Duration::from_secs(30)).await?;
    let empty = wait_group(&admin, group, "the group Empty after both closed", |v| {
        v.state == "Empty"
    })
    .await?;
    ensure!(
        empty.members.is_empty(),
        "Empty group with members {:?}",
        empty.members
    );

    // Raw standalone commits (generation -1, no member id) and fetches at the coordinator.
    let solo = "standalone-group";
    let coordinator = find_coordinator(&cluster, 0, solo, Duration::from_secs(30)).await?;
    let mut conn = raw::connect(&cluster, coordinator).await?;
    let errors = raw::offset_commit(
        &mut conn,
        solo,
        topic,
        &[(0, 42, "hello-metadata"), (1, 7, "")],
    )
    .await?;
    ensure!(
        errors == BTreeMap::from([(0, raw::NONE), (1, raw::NONE)]),
        "standalone OffsetCommit errors {errors:?}"
    );
    let (top, fetched) =
        raw::offset_fetch_loaded(&mut conn, solo, topic, &[0, 1, 2], Duration::from_secs(30))
            .await?;
    ensure!(top == raw::NONE, "OffsetFetch top-level error {top}");
    let expect = |offset: i64, meta: &str| raw::Fetched {
        offset,
        metadata: Some(meta.to_string()),
        error: raw::NONE,
    };
    ensure!(
        fetched.get(&0) == Some(&expect(42, "hello-metadata"))
            && fetched.get(&1) == Some(&expect(7, "")),
        "OffsetFetch after the standalone commit: {fetched:?}"
    );
    let p2 = fetched.get(&2).context("no answer for partition 2")?;
    ensure!(
        p2.offset == -1 && p2.error == raw::NONE,
        "partition 2 was never committed: {p2:?}"
    );

    // Metadata over offset.metadata.max.bytes (4096) is refused and changes nothing.
    let big = "x".repeat(5000);
    let errors = raw::offset_commit(&mut conn, solo, topic, &[(0, 99, &big)]).await?;
    ensure!(
        errors.get(&0) == Some(&raw::OFFSET_METADATA_TOO_LARGE),
        "OffsetCommit with 5000 bytes of metadata: {errors:?}, expected OFFSET_METADATA_TOO_LARGE (12)"
    );
    let (_, fetched) = raw::offset_fetch(&mut conn, solo, topic, &[0]).await?;
    ensure!(
        fetched.get(&0) == Some(&expect(42, "hello-metadata")),
        "the refused commit changed partition 0: {fetched:?}"
    );

    // A group nobody knows: -1 for every partition, no error (asked at its own coordinator).
    let unknown = "never-seen-group";
    let unknown_coordinator =
        find_coordinator(&cluster, 0, unknown, Duration::from_secs(30)).await?;
    let mut unknown_conn = raw::connect(&cluster, unknown_coordinator).await?;
    let (top, fetched) = raw::offset_fetch_loaded(
        &mut unknown_conn,
        unknown,
        topic,
        &[0, 1, 2],
        Duration::from_secs(30),
    )
    .await?;
    ensure!(
        top == raw::NONE,
        "OffsetFetch of an unknown group: top-level error {top}"
    );
    ensure!(
        fetched.len() == 3
            && fetched
                .values()
                .all(|f| f.offset == -1 && f.error == raw::NONE),
        "OffsetFetch of an unknown group: {fetched:?}"
    );

    // The other broker is not the coordinator of the standalone group and says so.
    for other in cluster
        .broker_ids()
        .into_iter()
        .filter(|id| *id != coordinator)
    {
        let mut c = raw::connect(&cluster, other).await?;
        let (top, fetched) = raw::offset_fetch(&mut c, solo, topic, &[0]).await?;
        ensure!(
            top == raw::NOT_COORDINATOR
                || (!fetched.is_empty() && fetched.values().all(|f| f.error == raw::NOT_COORDINATOR)),
            "OffsetFetch of {solo} at broker {other} (coordinator is {coordinator}): top-level {top}, {fetched:?}; expected NOT_COORDINATOR (16)"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_topic_waits_for_enough_brokers_for_its_replication_factor() -> anyhow::Result<()> {
    // Two live brokers, offsets.topic.replication.factor 3: Kafka never lowers the factor, it
    // answers COORDINATOR_NOT_AVAILABLE until a third broker is alive.
    let cluster = clients::start_cluster(
        group_cluster(2).with_override("offsets.topic.replication.factor", 3),
    )
    .await?;
    raw::require_group_apis(&cluster).await?;
    for attempt in 0..5 {
        let answer = raw::find_coordinator_once(&cluster, attempt % 2, "rf-group").await?;
        ensure!(
            answer == Err(15),
            "FindCoordinator with 2 of 3 brokers: {answer:?}, expected COORDINATOR_NOT_AVAILABLE (15)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        cluster
            .zk_get("/brokers/topics/__consumer_offsets")
            .await?
            .is_none(),
        "__consumer_offsets was created with fewer brokers than its replication factor"
    );
    let third = cluster.add_broker().await?;
    clients::wait_metadata_ready(&cluster).await?;
    let node = find_coordinator(&cluster, 0, "rf-group", Duration::from_secs(60)).await?;
    let assignment = cluster
        .zk_get_json("/brokers/topics/__consumer_offsets")
        .await?
        .context("__consumer_offsets not in ZooKeeper after the third broker came")?;
    let replicas = assignment["partitions"]["0"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    ensure!(
        replicas == 3,
        "__consumer_offsets partition 0 has {replicas} replicas: {assignment}"
    );
    eprintln!("with broker {third} added, broker {node} coordinates rf-group");
    Ok(())
}
