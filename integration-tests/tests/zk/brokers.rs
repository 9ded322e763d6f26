//! Broker registration: czxid as broker epoch, duplicate ids, ephemerality and the
//! `/brokers/ids` child watch.

use anyhow::Result;
use gregor::zk::paths::broker_path;
use gregor::zk::{WatchEventKind, ZkError};
use integration_tests::local_zk::{client, raw_client, shared_server, unique_chroot};

use super::{broker, fired, node};

#[tokio::test]
async fn registration_returns_czxid_and_rejects_a_second_session() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let first = client(&server, &chroot).await?;
    let second = client(&server, &chroot).await?;
    let raw = raw_client(&server, &chroot).await?;

    let info = broker(1, 9092);
    let epoch = first.register_broker(&info).await?;
    assert!(epoch > 0);
    let (_, stat) = node(&raw, &broker_path(1)).await?;
    assert_eq!(stat.czxid, epoch);
    assert_eq!(
        stat.ephemeral_owner,
        first.session_id(),
        "must be EPHEMERAL, owned by us"
    );
    assert_eq!(first.get_broker(1).await?, Some((info.clone(), epoch)));

    // Same session again (e.g. a retry after a lost reply): recognised as ours.
    assert_eq!(first.register_broker(&info).await?, epoch);

    match second.register_broker(&broker(1, 9093)).await {
        Err(ZkError::BrokerIdInUse { id: 1, existing }) => {
            assert!(
                existing.contains("PLAINTEXT://127.0.0.1:9092"),
                "{existing}"
            )
        }
        other => panic!("expected BrokerIdInUse, got {other:?}"),
    }

    let epoch2 = second.register_broker(&broker(2, 9094)).await?;
    assert!(epoch2 > epoch, "czxids grow");
    let all = first.get_all_brokers().await?;
    assert_eq!(all, vec![(info, epoch), (broker(2, 9094), epoch2)]);
    assert_eq!(first.get_broker(3).await?, None);
    Ok(())
}

#[tokio::test]
async fn registration_vanishes_with_its_session_and_the_watch_fires() -> Result<()> {
    let server = shared_server().await?;
    let chroot = unique_chroot();
    let controller = client(&server, &chroot).await?;
    let (ids, watch) = controller.get_broker_ids_and_watch().await?;
    assert!(ids.is_empty());

    let other = client(&server, &chroot).await?;
    let first_epoch = other.register_broker(&broker(5, 9092)).await?;
    let event = fired(watch).await;
    assert_eq!(event.kind, WatchEventKind::ChildrenChanged);
    assert_eq!(event.path, "/brokers/ids");

    let (ids, watch) = controller.get_broker_ids_and_watch().await?;
    assert_eq!(ids, vec![5]);
    let (registration, node_watch) = controller.get_broker_and_watch(5).await?;
    assert_eq!(registration.map(|(_, epoch)| epoch), Some(first_epoch));

    // Closing the session (dropping the last handle) removes the ephemeral node.
    drop(other);
    assert_eq!(fired(watch).await.kind, WatchEventKind::ChildrenChanged);
    assert_eq!(fired(node_watch).await.kind, WatchEventKind::NodeDeleted);
    assert_eq!(controller.get_broker(5).await?, None);
    let (ids, _) = controller.get_broker_ids_and_watch().await?;
    assert!(ids.is_empty());

    // A restarted broker gets a new, larger epoch (a "bounce" for the controller).
    let restarted = client(&server, &chroot).await?;
    assert!(restarted.register_broker(&broker(5, 9092)).await? > first_epoch);
    Ok(())
}
