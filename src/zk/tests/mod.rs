//! Integration tests of the ZooKeeper layer against a real ZooKeeper (see `test_support`).
//! Each test works under its own chroot on the shared server and returns `Result` so that
//! unexpected ZooKeeper errors surface with their path.

mod admin;
mod brokers;
mod controller;
mod session;
mod topics;

use std::future::Future;
use std::time::Duration;

use super::data::{BrokerInfo, EndPoint, LeaderIsrAndControllerEpoch};
use super::watch::{Watch, WatchEvent};

/// Upper bound for anything a test waits on, so a missing watch fails instead of hanging.
const WAIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn fired(watch: Watch) -> WatchEvent {
    let path = watch.path().to_string();
    within(&format!("watch on {path}"), watch.changed()).await
}

fn broker(id: i32, port: i32) -> BrokerInfo {
    BrokerInfo {
        id,
        endpoints: vec![EndPoint::plaintext("127.0.0.1", port)],
        rack: None,
    }
}

fn state(
    leader: i32,
    leader_epoch: i32,
    isr: &[i32],
    controller_epoch: i32,
) -> LeaderIsrAndControllerEpoch {
    LeaderIsrAndControllerEpoch {
        leader,
        leader_epoch,
        isr: isr.to_vec(),
        controller_epoch,
    }
}

/// Data and stat of a znode that must exist.
async fn node(
    zk: &super::KafkaZkClient,
    path: &str,
) -> Result<(Vec<u8>, zookeeper_client::Stat), super::ZkError> {
    match zk.get_data_opt(path).await? {
        Some(node) => Ok(node),
        None => panic!("znode {path} does not exist"),
    }
}
