//! Cluster harness for gregor's integration tests.
//!
//! [`Cluster::start`] runs ZooKeeper in a container (testcontainers, local image
//! `gregor/zookeeper:latest` built by `scripts/build-images.sh --only zookeeper`) and N `gregor`
//! brokers as child processes on 127.0.0.1, each with its own data directory, config and log file,
//! each reaching ZooKeeper through a [`TcpProxy`] the harness can cut. Faults: kill, pause/resume,
//! terminate, restart, cut off from / heal to ZooKeeper. Reads: registrations, controller, znodes.
//!
//! Modules:
//! - [`cluster`]: `Cluster` and `ClusterOptions` (uses every other module)
//! - `broker`: one broker's files and child process
//! - [`proxy`]: the cuttable TCP proxy
//! - [`zookeeper`]: the ZooKeeper container and client helpers
//! - [`local_zk`]: ZooKeeper as a local process, for the tests of `gregor::zk` (no Docker)
//! - [`util`]: ports, binary lookup, polling, log tails
//! - [`controller_bench`]: `gregor-bench controller`, the controller benchmark (not a test)
//! - [`latency`]: the end-to-end latency benchmark behind `gregor-bench --latency`
//! - [`python`]: the venv with the PyPI clients (aiokafka, kafka-python 3.x)
//! - [`raw_consumer`]: `gregor-bench --raw-consumer`, a fetch client that decodes no record
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use integration_tests::{Cluster, ClusterOptions};
//! use std::time::Duration;
//! let cluster = Cluster::start(ClusterOptions::new(3)).await?;
//! let before = cluster.wait_for_controller(|c| c.is_some(), Duration::from_secs(30)).await?;
//! cluster.kill(before.unwrap_or(0)).await?;
//! cluster
//!     .wait_for_controller(|c| c.is_some() && c != before, Duration::from_secs(30))
//!     .await?;
//! # Ok(()) }
//! ```

mod broker;
pub mod cluster;
pub mod controller_bench;
pub mod latency;
pub mod local_zk;
pub mod proxy;
pub mod python;
pub mod raw_consumer;
pub mod util;
pub mod zookeeper;

pub use cluster::{Cluster, ClusterOptions};
pub use proxy::TcpProxy;
pub use zookeeper::{ZooKeeper, BUILD_HINT};
pub use zookeeper_client::Stat;
