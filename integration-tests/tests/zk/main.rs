//! gregor's ZooKeeper layer (`gregor::zk`) against a real ZooKeeper run as a local process
//! (`integration_tests::local_zk`, Debian's package; no Docker needed). Each test works under
//! its own chroot on the shared server, reads znodes back with a plain ZooKeeper client to check
//! what was written, and returns `Result` so unexpected errors surface with their path.

mod admin;
mod brokers;
mod controller;
mod session;
mod startup;
mod topics;

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use gregor::zk::{BrokerInfo, EndPoint, LeaderIsrAndControllerEpoch, Watch, WatchEvent};
use zookeeper_client as zk;

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

/// Data and stat of a znode that must exist, read with the plain client `raw`.
async fn node(raw: &zk::Client, path: &str) -> Result<(Vec<u8>, zk::Stat)> {
    match within(path, raw.get_data(path)).await {
        Ok(node) => Ok(node),
        Err(zk::Error::NoNode) => bail!("znode {path} does not exist"),
        Err(e) => Err(anyhow!("reading {path}: {e}")),
    }
}

/// Whether a znode exists, asked with the plain client `raw`.
async fn exists(raw: &zk::Client, path: &str) -> Result<bool> {
    match within(path, raw.check_stat(path)).await {
        Ok(stat) => Ok(stat.is_some()),
        Err(e) => Err(anyhow!("exists {path}: {e}")),
    }
}
