//! The controller benchmark (`gregor-bench controller`, issue 9 acceptance 1–2): on a running
//! `scripts/cluster.sh` cluster, one N-partition RF 3 topic is created, its leaders are disturbed
//! (SIGTERM of the busiest leader, `kill -9` of a non-controller and of the controller) and it is
//! deleted; every phase's figures are printed as one JSON object. A benchmark, not a test: it
//! asserts nothing about speed, and a deadline passing is reported, never waited out.
//!
//! Before each disturbance the cluster is brought back to three running brokers with full ISRs and
//! preferred leaders ([`restore`]); every restart is timed and listed under `restarts`, with the
//! restarted broker's descriptor count and RLIMIT_NOFILE.
//!
//! - [`probe`]: ZooKeeper reads (gregor's `zk` client) and per-broker Metadata (gregor's protocol
//!   client); CreateTopics / DeleteTopics.
//! - [`procs`]: the brokers as processes (pid files, signals, `/proc`, `cluster.sh up`).
//! - [`wait`]: the bounded "every partition satisfies P in ZooKeeper and in each Metadata" wait.
//! - `phases`, [`restore`]: the phases and the recovery between them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

mod phases;
pub mod probe;
pub mod procs;
pub mod restore;
pub mod wait;

use probe::Probe;
use procs::LocalCluster;

/// Options of `gregor-bench controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Partitions of the benchmark topic (replication factor 3).
    #[arg(long)]
    pub partitions: i32,
    /// ZooKeeper connect string of the cluster.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub zookeeper: String,
    /// Number of brokers (ids 0..N, broker i on 127.0.0.1:BASE_PORT+i).
    #[arg(long, default_value_t = 3)]
    pub brokers: usize,
    #[arg(long, default_value_t = 9092)]
    pub base_port: u16,
    /// `scripts/cluster.sh` state directory (`.cluster` or `$CLUSTER_DIR`).
    #[arg(long)]
    pub cluster_dir: PathBuf,
    /// `scripts/cluster.sh`, used to restart stopped brokers.
    #[arg(long)]
    pub cluster_script: PathBuf,
    /// Deadline of every wait, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Topic name (default `bench-controller-<pid>`).
    #[arg(long)]
    pub topic: Option<String>,
    /// The phases to run after creation, in this order (comma-separated): a quicker look at
    /// one figure. Phases left out are reported as skipped.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sigterm,kill-non-controller,kill-controller,delete"
    )]
    pub phases: Vec<Phase>,
}

/// A phase of the benchmark after topic creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Sigterm,
    KillNonController,
    KillController,
    Delete,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Sigterm,
        Phase::KillNonController,
        Phase::KillController,
        Phase::Delete,
    ];

    /// The phase's key in the report.
    fn name(self) -> &'static str {
        match self {
            Phase::Sigterm => "sigterm",
            Phase::KillNonController => "kill_non_controller",
            Phase::KillController => "kill_controller",
            Phase::Delete => "delete",
        }
    }
}

/// Everything the phases share.
pub struct Bench {
    probe: Probe,
    cluster: LocalCluster,
    base_port: u16,
    topic: String,
    partitions: i32,
    timeout: Duration,
    /// One entry per broker restart, in order.
    restarts: Vec<Value>,
    /// How each currently stopped broker was stopped ("SIGTERM", "SIGKILL").
    stopped_by: BTreeMap<i32, &'static str>,
}

impl Bench {
    /// [`wait::wait_partitions`] on the benchmark topic.
    async fn wait_all(
        &mut self,
        ask: Vec<i32>,
        pred: wait::Pred<'_>,
        start: Instant,
        deadline: Instant,
    ) -> wait::WaitOutcome {
        let spec = wait::WaitSpec {
            topic: &self.topic,
            partitions: self.partitions,
            ask,
            pred,
            start,
            deadline,
        };
        wait::wait_partitions(&mut self.probe, &spec).await
    }
}

/// Prints one phase's result to stderr as it completes, so a long run shows progress.
fn progress(name: &str, v: &Value) {
    eprintln!("gregor-bench controller: {name}: {v}");
}

/// Waits until every broker of `ids` is registered.
async fn await_registered(probe: &Probe, ids: &[i32], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let regs = probe.registrations().await.unwrap_or_default();
        if ids.iter().all(|id| regs.contains_key(id)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let have: Vec<&i32> = regs.keys().collect();
            bail!("brokers {ids:?} not all registered within {timeout:?} (registered: {have:?})");
        }
        tokio::time::sleep(wait::POLL).await;
    }
}

/// Runs every phase and returns the report.
///
/// # Errors
/// Only when the benchmark cannot start (ZooKeeper unreachable, brokers not registered); a phase
/// that fails or times out is reported inside the JSON.
pub async fn run(args: ControllerArgs) -> Result<Value> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let ids: Vec<i32> = (0..args.brokers as i32).collect();
    let addrs: BTreeMap<i32, String> = ids
        .iter()
        .map(|id| (*id, format!("127.0.0.1:{}", args.base_port + *id as u16)))
        .collect();
    let probe = Probe::connect(&args.zookeeper, addrs).await?;
    let timeout = Duration::from_secs(args.timeout);
    await_registered(&probe, &ids, timeout).await?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench-controller-{}", std::process::id()));
    let mut bench = Bench {
        probe,
        cluster: LocalCluster {
            script: args.cluster_script.clone(),
            state_dir: args.cluster_dir.clone(),
            brokers: args.brokers,
        },
        base_port: args.base_port,
        topic,
        partitions: args.partitions,
        timeout,
        restarts: Vec::new(),
        stopped_by: BTreeMap::new(),
    };
    let started = Instant::now();
    let mut report = json!({
        "partitions": args.partitions,
        "replication_factor": 3,
        "brokers": args.brokers,
        "topic": bench.topic,
        "timeout_seconds": args.timeout,
    });
    let create = bench.create().await;
    progress("create", &create);
    report["create"] = create;
    let (_, steady) = bench.ready("create").await;
    report["steady_state"] = json!({
        "balance": steady,
        "descriptors": bench.cluster.descriptors(&ids),
    });
    progress("steady_state", &report["steady_state"]);
    for phase in Phase::ALL {
        let name = phase.name();
        if !args.phases.contains(&phase) {
            report[name] = json!({"skipped": "not selected with --phases"});
            continue;
        }
        let (healthy, prepare) = bench.ready(name).await;
        // Deletion runs on an unhealthy cluster too: whether it finishes is the figure.
        let mut v = if !healthy && name != "delete" {
            json!({"skipped": "not every broker is running and registered"})
        } else {
            match phase {
                Phase::Sigterm => bench.sigterm().await,
                Phase::KillNonController => bench.kill(false).await,
                Phase::KillController => bench.kill(true).await,
                Phase::Delete => bench.delete().await,
            }
        };
        v["prepare"] = prepare;
        v["cluster_healthy"] = json!(healthy);
        progress(name, &v);
        report[name] = v;
    }
    report["restarts"] = json!(bench.restarts);
    report["total_seconds"] = json!(wait::secs(started));
    Ok(report)
}
