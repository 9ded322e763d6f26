//! Controller election (one winner, epoch +1 per election), the `/controller` watch, and
//! epoch fencing of controller writes (KAFKA-6082).

use anyhow::Result;
use gregor::zk::paths::{partition_state_path, CONTROLLER_EPOCH_PATH, CONTROLLER_PATH};
use gregor::zk::{data, WatchEventKind, ZkError};
use integration_tests::local_zk::{client, raw_client, shared_server, unique_chroot};

use super::{exists, fired, node, state};

#[tokio::test]
async fn racing_brokers_elect_exactly_one_controller() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let a = client(&server, &chroot).await?;
    let b = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    assert_eq!(a.get_controller_epoch().await?, None);

    let (ra, rb) = tokio::join!(
        a.register_controller_and_increment_epoch(1),
        b.register_controller_and_increment_epoch(2)
    );
    let (winner, epoch, loser) = match (ra, rb) {
        (Ok(e), Err(err)) if err.is_controller_moved() => (1, e, b),
        (Err(err), Ok(e)) if err.is_controller_moved() => (2, e, a),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    // /controller_epoch was created as "0" (version 0) and bumped once.
    assert_eq!(epoch, (1, 1));
    assert_eq!(loser.get_controller_id().await?, Some(winner));
    assert_eq!(loser.get_controller_epoch().await?, Some(epoch));
    let (raw_epoch, _) = node(&raw, CONTROLLER_EPOCH_PATH).await?;
    assert_eq!(raw_epoch, b"1", "plain integer, not JSON");
    let (raw_controller, stat) = node(&raw, CONTROLLER_PATH).await?;
    assert_eq!(data::decode_controller(&raw_controller), Ok(winner));
    assert_ne!(stat.ephemeral_owner, 0, "/controller must be EPHEMERAL");

    // A later attempt while the controller lives also loses, and changes nothing.
    let again = loser.register_controller_and_increment_epoch(3).await;
    assert!(
        matches!(&again, Err(e) if e.is_controller_moved()),
        "{again:?}"
    );
    assert_eq!(loser.get_controller_epoch().await?, Some(epoch));
    Ok(())
}

#[tokio::test]
async fn controller_loss_fires_the_watch_and_the_next_election_bumps_the_epoch() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let first = client(&server, &chroot).await?;
    let second = client(&server, &chroot).await?;

    let (none, created_watch) = second.get_controller_and_watch().await?;
    assert_eq!(none, None);
    let (epoch1, version1) = first.register_controller_and_increment_epoch(1).await?;
    let event = fired(created_watch).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (WatchEventKind::NodeCreated, "/controller")
    );

    let (current, deleted_watch) = second.get_controller_and_watch().await?;
    assert_eq!(current, Some(1));
    drop(first);
    let event = fired(deleted_watch).await;
    assert_eq!(event.kind, WatchEventKind::NodeDeleted);

    let (epoch2, version2) = second.register_controller_and_increment_epoch(2).await?;
    assert_eq!((epoch2, version2), (epoch1 + 1, version1 + 1));

    // Moving the controller away with the current epoch works; a stale one is fenced.
    let stale = second.delete_controller(version1).await;
    assert!(
        matches!(&stale, Err(e) if e.is_controller_moved()),
        "{stale:?}"
    );
    assert_eq!(second.get_controller_id().await?, Some(2));
    second.delete_controller(version2).await?;
    assert_eq!(second.get_controller_id().await?, None);
    let third = client(&server, &chroot).await?;
    assert_eq!(
        third.register_controller_and_increment_epoch(3).await?,
        (epoch2 + 1, version2 + 1)
    );
    Ok(())
}

#[tokio::test]
async fn writes_with_a_stale_epoch_zk_version_are_fenced_and_change_nothing() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let old = client(&server, &chroot).await?;
    let new = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;
    let (epoch1, stale_version) = old.register_controller_and_increment_epoch(1).await?;
    let parts = [(0, vec![1, 2]), (1, vec![2, 1])].into();
    old.create_topic("t", &parts, &std::collections::BTreeMap::new())
        .await?;
    let s0 = state(1, 0, &[1, 2], epoch1);
    assert_eq!(
        old.create_partition_state("t", 0, &s0, stale_version)
            .await?,
        0
    );

    // The old controller's session ends; a new controller takes over and bumps the epoch.
    drop(old);
    let old = loop {
        match new.register_controller_and_increment_epoch(2).await {
            Ok(_) => break client(&server, &chroot).await?,
            // The old session's /controller may linger until its close is processed.
            Err(e) if e.is_controller_moved() => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => return Err(e.into()),
        }
    };

    let moved = |r: &Result<i32, ZkError>| matches!(r, Err(e) if e.is_controller_moved());
    let update = old
        .update_partition_state("t", 0, &state(2, 1, &[2], epoch1), 0, stale_version)
        .await;
    assert!(moved(&update), "{update:?}");
    assert_eq!(
        old.get_partition_state("t", 0).await?,
        Some((s0.clone(), 0)),
        "unchanged"
    );

    let create = old.create_partition_state("t", 1, &s0, stale_version).await;
    assert!(moved(&create), "{create:?}");
    assert!(
        !exists(&raw, &partition_state_path("t", 1)).await?,
        "nothing created"
    );

    let delete = old.delete_topic_znodes("t", stale_version).await;
    assert!(
        matches!(&delete, Err(e) if e.is_controller_moved()),
        "{delete:?}"
    );
    assert!(
        exists(&raw, &partition_state_path("t", 0)).await?,
        "nothing deleted"
    );
    Ok(())
}
