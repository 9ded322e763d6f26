//! Topic creation, assignment and config round-trips, reading older JSON versions, the
//! `/brokers/topics` watch, and partition-state create/update with BadVersion.

use std::collections::BTreeMap;

use anyhow::Result;
use gregor::zk::paths::{topic_config_path, topic_path};
use gregor::zk::{WatchEventKind, ZkError};
use integration_tests::local_zk::{client, raw_client, shared_server, unique_chroot};
use zookeeper_client as zk;

use super::{exists, fired, node, state};

fn assignment(entries: &[(i32, &[i32])]) -> BTreeMap<i32, Vec<i32>> {
    entries.iter().map(|(p, r)| (*p, r.to_vec())).collect()
}

#[tokio::test]
async fn create_topic_round_trips_assignment_and_config() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let (topics, watch) = zk.get_all_topics_and_watch().await?;
    assert!(topics.is_empty());

    let parts = assignment(&[(0, &[1, 2]), (1, &[2, 1])]);
    let config: BTreeMap<String, String> = [
        ("retention.ms".to_string(), "86400000".to_string()),
        ("cleanup.policy".to_string(), "compact".to_string()),
    ]
    .into();
    zk.create_topic("orders.v1", &parts, &config).await?;
    let event = fired(watch).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (WatchEventKind::ChildrenChanged, "/brokers/topics")
    );

    let stored = zk.get_topic_assignment("orders.v1").await?;
    let stored = match stored {
        Some(a) => a,
        None => panic!("assignment missing"),
    };
    assert_eq!(stored.partitions, parts);
    assert!(stored.adding.is_empty() && stored.removing.is_empty());
    assert_eq!(stored.topic_id.as_ref().map(String::len), Some(22));
    let (json, _) = node(&raw, &topic_path("orders.v1")).await?;
    let json = String::from_utf8_lossy(&json).into_owned();
    assert!(
        json.contains(r#""version":3"#) && json.contains(r#""partitions":{"0":[1,2],"1":[2,1]}"#),
        "{json}"
    );

    assert_eq!(zk.get_topic_config("orders.v1").await?, config);
    assert_eq!(zk.get_topic_config("unknown").await?, BTreeMap::new());
    assert_eq!(zk.get_all_topics().await?, vec!["orders.v1".to_string()]);
    let (raw_config, _) = node(&raw, &topic_config_path("orders.v1")).await?;
    assert!(String::from_utf8_lossy(&raw_config).contains(r#""version":1"#));

    // A second, config-less topic: its config znode holds an empty map.
    zk.create_topic("plain", &assignment(&[(0, &[3])]), &BTreeMap::new())
        .await?;
    let all = zk.get_all_topic_configs().await?;
    assert_eq!(all.get("orders.v1"), Some(&config));
    assert_eq!(all.get("plain"), Some(&BTreeMap::new()));

    let dup = zk.create_topic("orders.v1", &parts, &config).await;
    assert!(matches!(dup, Err(ZkError::TopicExists { .. })), "{dup:?}");
    let collide = zk.create_topic("orders_v1", &parts, &config).await;
    assert!(
        matches!(collide, Err(ZkError::InvalidTopic { .. })),
        "{collide:?}"
    );
    let bad_name = zk.create_topic("a/b", &parts, &config).await;
    assert!(
        matches!(bad_name, Err(ZkError::InvalidTopic { .. })),
        "{bad_name:?}"
    );
    let bad_assignment = zk
        .create_topic("gaps", &assignment(&[(0, &[1]), (2, &[1])]), &config)
        .await;
    assert!(
        matches!(
            bad_assignment,
            Err(ZkError::InvalidReplicaAssignment { .. })
        ),
        "{bad_assignment:?}"
    );
    assert!(
        !exists(&raw, &topic_config_path("gaps")).await?,
        "nothing written for a rejected topic"
    );
    Ok(())
}

#[tokio::test]
async fn topics_written_by_older_kafka_are_readable_and_watchable() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let v1 = br#"{"version":1,"partitions":{"0":[1,2,3],"1":[2,3,1]}}"#;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.create(&topic_path("legacy"), v1, &persistent).await?;

    let (found, watch) = zk.get_topic_assignment_and_watch("legacy").await?;
    let found = match found {
        Some(a) => a,
        None => panic!("legacy topic missing"),
    };
    assert_eq!(found.topic_id, None);
    assert_eq!(
        found.partitions,
        assignment(&[(0, &[1, 2, 3]), (1, &[2, 3, 1])])
    );

    // A reassignment in progress (v2 JSON) fires the topic's data watch.
    let v2 = br#"{"version":2,"partitions":{"0":[1,2,3,4]},"adding_replicas":{"0":[4]},"removing_replicas":{"0":[1]}}"#;
    raw.set_data(&topic_path("legacy"), v2, None).await?;
    assert_eq!(fired(watch).await.kind, WatchEventKind::DataChanged);
    let found = zk.get_topic_assignment("legacy").await?;
    assert_eq!(
        found.map(|a| (a.adding, a.removing)),
        Some((assignment(&[(0, &[4])]), assignment(&[(0, &[1])])))
    );

    raw.set_data(&topic_path("legacy"), b"garbage", None)
        .await?;
    let garbage = zk.get_topic_assignment("legacy").await;
    assert!(
        matches!(&garbage, Err(ZkError::MalformedData { path, .. }) if path == "/brokers/topics/legacy")
    );
    Ok(())
}

#[tokio::test]
async fn partition_state_create_and_conditional_updates() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let (epoch, epoch_version) = zk.register_controller_and_increment_epoch(1).await?;
    let no_topic = zk
        .create_partition_state("t", 0, &state(1, 0, &[1], epoch), epoch_version)
        .await;
    assert!(
        matches!(&no_topic, Err(ZkError::NoNode { path }) if path == "/brokers/topics/t/partitions")
    );
    zk.create_topic(
        "t",
        &assignment(&[(0, &[1, 2]), (1, &[2, 1])]),
        &BTreeMap::new(),
    )
    .await?;

    let s0 = state(1, 0, &[1, 2], epoch);
    let created = zk
        .create_partition_states(
            "t",
            &[(0, s0.clone()), (1, state(2, 0, &[2, 1], epoch))],
            epoch_version,
        )
        .await?;
    assert!(
        matches!(created.as_slice(), [(0, Ok(0)), (1, Ok(0))]),
        "{created:?}"
    );
    let again = zk.create_partition_state("t", 0, &s0, epoch_version).await;
    assert!(
        matches!(again, Err(ZkError::NodeExists { .. })),
        "{again:?}"
    );

    assert_eq!(zk.get_partition_state("t", 0).await?, Some((s0.clone(), 0)));
    assert_eq!(zk.get_partition_state("t", 7).await?, None);
    let states = zk.get_partition_states("t", &[0, 1, 7]).await?;
    assert_eq!(states.keys().copied().collect::<Vec<_>>(), vec![0, 1]);

    // Controller election: leader epoch + 1, conditional on version 0.
    let s1 = state(2, 1, &[2], epoch);
    assert_eq!(
        zk.update_partition_state("t", 0, &s1, 0, epoch_version)
            .await?,
        1
    );
    let stale = zk
        .update_partition_state("t", 0, &state(1, 9, &[1], epoch), 0, epoch_version)
        .await;
    assert!(
        matches!(
            stale,
            Err(ZkError::BadVersion {
                expected: Some(0),
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(zk.get_partition_state("t", 0).await?, Some((s1, 1)));

    // Leader ISR expansion: same leader epoch, no controller-epoch check.
    let s2 = state(2, 1, &[2, 1], epoch);
    assert_eq!(
        zk.update_partition_state_as_leader("t", 0, &s2, 1).await?,
        2
    );
    let lost = zk.update_partition_state_as_leader("t", 0, &s2, 1).await;
    assert!(
        matches!(
            lost,
            Err(ZkError::BadVersion {
                expected: Some(1),
                ..
            })
        ),
        "{lost:?}"
    );
    let missing = zk.update_partition_state_as_leader("t", 9, &s2, 0).await;
    assert!(
        matches!(missing, Err(ZkError::NoNode { .. })),
        "{missing:?}"
    );
    assert_eq!(zk.get_partition_state("t", 0).await?, Some((s2, 2)));
    Ok(())
}
