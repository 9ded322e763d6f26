//! Deletion flags and topic znode removal, ISR change notifications and preferred replica
//! election requests: producer side, controller watch, epoch-checked cleanup.

use std::collections::BTreeMap;

use anyhow::Result;
use gregor::zk::paths::{delete_topic_path, topic_config_path, topic_path};
use gregor::zk::{WatchEventKind, ZkError};
use integration_tests::local_zk::{client, raw_client, shared_server, unique_chroot};

use super::{exists, fired, state};

#[tokio::test]
async fn deletion_flags_and_topic_znode_removal() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let (epoch, version) = zk.register_controller_and_increment_epoch(1).await?;
    let parts: BTreeMap<i32, Vec<i32>> = [(0, vec![1]), (1, vec![1])].into();
    zk.create_topic("doomed", &parts, &BTreeMap::new()).await?;
    zk.create_partition_states(
        "doomed",
        &[(0, state(1, 0, &[1], epoch)), (1, state(1, 0, &[1], epoch))],
        version,
    )
    .await?;

    let (queued, watch) = zk.get_topic_deletions_and_watch().await?;
    assert!(queued.is_empty());
    zk.request_topic_deletion("doomed").await?;
    zk.request_topic_deletion("doomed").await?; // already marked: fine
    zk.request_topic_deletion("ghost").await?;
    assert_eq!(fired(watch).await.kind, WatchEventKind::ChildrenChanged);
    let (queued, _) = zk.get_topic_deletions_and_watch().await?;
    assert_eq!(queued, vec!["doomed".to_string(), "ghost".to_string()]);

    let recreate = zk.create_topic("doomed", &parts, &BTreeMap::new()).await;
    assert!(
        matches!(recreate, Err(ZkError::TopicExists { .. })),
        "{recreate:?}"
    );

    let stale = zk.delete_topic_znodes("doomed", version + 1).await;
    assert!(
        matches!(&stale, Err(e) if e.is_controller_moved()),
        "{stale:?}"
    );
    assert!(exists(&raw, &topic_path("doomed")).await?);

    zk.delete_topic_znodes("doomed", version).await?;
    for path in [
        topic_path("doomed"),
        topic_config_path("doomed"),
        delete_topic_path("doomed"),
    ] {
        assert!(!exists(&raw, &path).await?, "{path} still exists");
    }
    zk.delete_topic_deletion_flag("ghost", version).await?;
    zk.delete_topic_deletion_flag("ghost", version).await?; // already gone: fine
    let (queued, _) = zk.get_topic_deletions_and_watch().await?;
    assert!(queued.is_empty());
    assert!(zk.get_all_topics().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn isr_change_notifications_are_sequenced_read_and_deleted() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let leader = client(&server, &chroot).await?;
    let controller = client(&server, &chroot).await?;
    let (_, version) = controller
        .register_controller_and_increment_epoch(1)
        .await?;

    let (pending, watch) = controller.get_isr_change_notifications_and_watch().await?;
    assert!(pending.is_empty());
    leader
        .create_isr_change_notification(&[("t".to_string(), 0), ("u".to_string(), 2)])
        .await?;
    assert_eq!(fired(watch).await.kind, WatchEventKind::ChildrenChanged);
    leader
        .create_isr_change_notification(&[("t".to_string(), 1)])
        .await?;

    let (pending, watch) = controller.get_isr_change_notifications_and_watch().await?;
    assert_eq!(pending.len(), 2);
    for child in &pending {
        let seq = child.strip_prefix("isr_change_").unwrap_or_default();
        assert!(
            seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()),
            "{child}"
        );
    }
    assert_eq!(
        controller.read_isr_change_notification(&pending[0]).await?,
        vec![("t".to_string(), 0), ("u".to_string(), 2)]
    );
    assert_eq!(
        controller.read_isr_change_notification(&pending[1]).await?,
        vec![("t".to_string(), 1)]
    );
    let bad = controller
        .read_isr_change_notification("../controller")
        .await;
    assert!(matches!(bad, Err(ZkError::MalformedData { .. })), "{bad:?}");

    let stale = controller
        .delete_isr_change_notifications(&pending, version + 1)
        .await;
    assert!(
        matches!(&stale, Err(e) if e.is_controller_moved()),
        "{stale:?}"
    );
    controller
        .delete_isr_change_notifications(&pending, version)
        .await?;
    assert_eq!(fired(watch).await.kind, WatchEventKind::ChildrenChanged);
    let (pending_after, _) = controller.get_isr_change_notifications_and_watch().await?;
    assert!(pending_after.is_empty());
    assert!(controller
        .read_isr_change_notification(&pending[0])
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn preferred_replica_election_request_lifecycle() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let zk = client(&server, &chroot).await?;
    let (_, version) = zk.register_controller_and_increment_epoch(1).await?;

    let (none, watch) = zk.get_preferred_replica_election_and_watch().await?;
    assert_eq!(none, None);
    let request = vec![("t".to_string(), 0), ("t".to_string(), 1)];
    zk.create_preferred_replica_election(&request).await?;
    let event = fired(watch).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (
            WatchEventKind::NodeCreated,
            "/admin/preferred_replica_election"
        )
    );

    let busy = zk.create_preferred_replica_election(&request).await;
    assert!(matches!(busy, Err(ZkError::NodeExists { .. })), "{busy:?}");
    let (found, watch) = zk.get_preferred_replica_election_and_watch().await?;
    assert_eq!(found, Some(request));

    let stale = zk.delete_preferred_replica_election(version - 1).await;
    assert!(
        matches!(&stale, Err(e) if e.is_controller_moved()),
        "{stale:?}"
    );
    zk.delete_preferred_replica_election(version).await?;
    assert_eq!(fired(watch).await.kind, WatchEventKind::NodeDeleted);
    assert_eq!(zk.get_preferred_replica_election_and_watch().await?.0, None);
    Ok(())
}
