//! [`Cluster`]: ZooKeeper in a container plus N `gregor` broker processes on 127.0.0.1, each
//! reaching ZooKeeper through its own cuttable proxy, with the fault-injection API tests use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;
use zookeeper_client as zk;

use crate::broker::{Broker, BrokerSpec};
use crate::proxy::TcpProxy;
use crate::util;
use crate::zookeeper::{self as zkh, ZooKeeper};

/// How a [`Cluster`] is started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of brokers (ids `0..brokers`). `0` starts only ZooKeeper.
    pub brokers: usize,
    /// Extra `server.properties` entries for every broker (they replace the harness defaults).
    pub broker_overrides: Vec<(String, String)>,
    /// Extra entries for single brokers, applied after `broker_overrides`.
    pub per_broker_overrides: BTreeMap<i32, Vec<(String, String)>>,
    /// `zookeeper.session.timeout.ms` of the brokers (ZooKeeper accepts 4000..=40000).
    pub session_timeout_ms: u64,
    /// How long a broker may take to register (`/brokers/ids/<id>`) and accept TCP.
    pub startup_timeout: Duration,
    /// How long a SIGTERMed broker may take to exit before it is SIGKILLed.
    pub shutdown_timeout: Duration,
    /// `RUST_LOG` for the brokers; `None` = the test's `RUST_LOG`, else `info`.
    pub rust_log: Option<String>,
    /// The broker binary; `None` = `$GREGOR_BIN`, else `target/debug/gregor`, else release.
    pub broker_bin: Option<PathBuf>,
    /// Gives every broker a second listener, `CONTROL`, as its `control.plane.listener.name`.
    pub control_plane: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 3,
            broker_overrides: Vec::new(),
            per_broker_overrides: BTreeMap::new(),
            session_timeout_ms: 6000,
            startup_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            rust_log: None,
            broker_bin: None,
            control_plane: false,
        }
    }
}

impl ClusterOptions {
    /// Defaults with `brokers` brokers.
    pub fn new(brokers: usize) -> Self {
        ClusterOptions {
            brokers,
            ..Default::default()
        }
    }

    /// Adds a `server.properties` entry for every broker.
    pub fn with_override(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.broker_overrides.push((key.into(), value.to_string()));
        self
    }

    /// Adds a `server.properties` entry for broker `id` only.
    pub fn with_broker_override(
        mut self,
        id: i32,
        key: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        self.per_broker_overrides
            .entry(id)
            .or_default()
            .push((key.into(), value.to_string()));
        self
    }

    /// Runs the controller's requests on a listener of their own (`CONTROL`, KIP-291); clients
    /// keep `PLAINTEXT`, which then refuses controller requests.
    pub fn with_control_plane(mut self) -> Self {
        self.control_plane = true;
        self
    }

    /// Sets `zookeeper.session.timeout.ms`.
    pub fn with_session_timeout_ms(mut self, ms: u64) -> Self {
        self.session_timeout_ms = ms;
        self
    }
}

/// A running test cluster. Methods take `&self`, so a cluster can be shared (`Arc<Cluster>`)
/// between a workload task and a fault-injection task.
///
/// Dropping it SIGKILLs every broker and removes the ZooKeeper container (drop it inside the
/// tokio runtime, as a `#[tokio::test]` does). Broker files live in a temporary directory that is
/// deleted on drop, except when the test is panicking or the start failed: then it is kept and
/// its path printed.
pub struct Cluster {
    brokers: Mutex<BTreeMap<i32, Arc<Broker>>>,
    zk_client: zk::Client,
    chroot: String,
    zookeeper: ZooKeeper,
    opts: ClusterOptions,
    bin: Option<PathBuf>,
    root: PathBuf,
    dir: Option<TempDir>,
}

impl Cluster {
    /// Starts ZooKeeper (container `gregor/zookeeper:latest`) and `opts.brokers` brokers, and
    /// waits until every broker is registered in ZooKeeper and accepts TCP.
    ///
    /// # Errors
    /// Docker or the image missing (the message says to run `scripts/build-images.sh --only
    /// zookeeper`), the broker binary missing, or a broker that exits or does not register in
    /// time (the message carries its log path and last lines).
    pub async fn start(opts: ClusterOptions) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("gregor-it-")
            .tempdir()
            .context("creating the cluster's temporary directory")?;
        let root = dir.path().to_path_buf();
        // Resolve the binary first: no point starting ZooKeeper if there is no broker to run.
        let bin = match (&opts.broker_bin, opts.brokers) {
            (Some(bin), _) => Some(bin.clone()),
            (None, 0) => None,
            (None, _) => Some(util::gregor_bin()?),
        };
        let zookeeper = ZooKeeper::start(Duration::from_secs(120)).await?;
        let chroot = format!("/gregor-{}", util::unique_suffix());
        let root_client = zkh::connect(&zookeeper.connect_string()).await?;
        zkh::mkdirs(&root_client, &chroot).await?;
        let zk_client = root_client
            .chroot(chroot.as_str())
            .map_err(|_| anyhow!("ZooKeeper rejected chroot {chroot}"))?;
        let mut cluster = Cluster {
            brokers: Mutex::new(BTreeMap::new()),
            zk_client,
            chroot,
            zookeeper,
            opts,
            bin,
            root,
            dir: Some(dir),
        };
        if let Err(e) = cluster.start_brokers().await {
            cluster.keep_files();
            return Err(e);
        }
        eprintln!(
            "harness: cluster up: zookeeper {} brokers {} (files {})",
            cluster.zk_connect(),
            cluster.bootstrap(),
            cluster.root.display()
        );
        Ok(cluster)
    }

    async fn start_brokers(&self) -> Result<()> {
        let count = i32::try_from(self.opts.brokers).context("too many brokers")?;
        for id in 0..count {
            self.create_broker(id).await?;
        }
        for id in 0..count {
            self.broker(id)?.spawn()?;
        }
        let deadline = tokio::time::Instant::now() + self.opts.startup_timeout;
        for id in 0..count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.wait_registered(id, left.max(Duration::from_secs(1)))
                .await?;
        }
        Ok(())
    }

    async fn create_broker(&self, id: i32) -> Result<Arc<Broker>> {
        let bin = self.bin.clone().map_or_else(util::gregor_bin, Ok)?;
        let dir = self.root.join(format!("broker-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let rust_log = self
            .opts
            .rust_log
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".to_string());
        let spec = BrokerSpec {
            id,
            port: util::free_port()?,
            control_port: if self.opts.control_plane {
                Some(util::free_port()?)
            } else {
                None
            },
            dir,
            bin,
            rust_log,
        };
        let proxy = TcpProxy::start(self.zookeeper.addr()).await?;
        let broker = Arc::new(Broker::new(spec, proxy));
        broker.write_config(&self.broker_config(&broker))?;
        let mut brokers = self.lock_brokers();
        if brokers.contains_key(&id) {
            bail!("broker {id} already exists");
        }
        brokers.insert(id, broker.clone());
        Ok(broker)
    }

    fn broker_config(&self, broker: &Broker) -> Vec<(String, String)> {
        let spec = &broker.spec;
        let mut listener = format!("PLAINTEXT://127.0.0.1:{}", spec.port);
        let mut control = Vec::new();
        if let Some(cp) = spec.control_port {
            listener.push_str(&format!(",CONTROL://127.0.0.1:{cp}"));
            control = vec![
                (
                    "listener.security.protocol.map".to_string(),
                    "PLAINTEXT:PLAINTEXT,CONTROL:PLAINTEXT".to_string(),
                ),
                ("control.plane.listener.name".into(), "CONTROL".into()),
            ];
        }
        let mut props: Vec<(String, String)> = vec![
            ("broker.id".into(), spec.id.to_string()),
            ("listeners".into(), listener.clone()),
            ("advertised.listeners".into(), listener),
            ("log.dirs".into(), spec.data_dir().display().to_string()),
            (
                "zookeeper.connect".into(),
                format!("{}{}", broker.proxy.addr(), self.chroot),
            ),
            (
                "zookeeper.session.timeout.ms".into(),
                self.opts.session_timeout_ms.to_string(),
            ),
            ("num.partitions".into(), "1".into()),
            ("default.replication.factor".into(), "1".into()),
            (
                "offsets.topic.replication.factor".into(),
                self.opts.brokers.clamp(1, 3).to_string(),
            ),
            (
                "transaction.state.log.replication.factor".into(),
                self.opts.brokers.clamp(1, 3).to_string(),
            ),
            (
                "transaction.state.log.min.isr".into(),
                self.opts.brokers.clamp(1, 2).to_string(),
            ),
        ];
        props.extend(control);
        props.extend(self.opts.broker_overrides.iter().cloned());
        if let Some(extra) = self.opts.per_broker_overrides.get(&spec.id) {
            props.extend(extra.iter().cloned());
        }
        props
    }

    fn lock_brokers(&self) -> MutexGuard<'_, BTreeMap<i32, Arc<Broker>>> {
        self.brokers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn broker(&self, id: i32) -> Result<Arc<Broker>> {
        self.lock_brokers()
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow!("no broker with id {id} in this cluster"))
    }

    fn broker_or_panic(&self, id: i32) -> Arc<Broker> {
        match self.broker(id) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    // ----- addresses and files -------------------------------------------------------------

    /// `127.0.0.1:p0,127.0.0.1:p1,…` over all brokers (running or not), in id order.
    pub fn bootstrap(&self) -> String {
        self.lock_brokers()
            .values()
            .map(|b| b.spec.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `127.0.0.1:<zk port>/<chroot>`: ZooKeeper directly (not through a proxy), chrooted.
    pub fn zk_connect(&self) -> String {
        format!("{}{}", self.zookeeper.connect_string(), self.chroot)
    }

    /// ZooKeeper's address on the host (no chroot).
    pub fn zk_addr(&self) -> SocketAddr {
        self.zookeeper.addr()
    }

    /// The cluster's chroot, e.g. `/gregor-1a2b-…`.
    pub fn chroot(&self) -> &str {
        &self.chroot
    }

    /// The ZooKeeper container.
    pub fn zookeeper(&self) -> &ZooKeeper {
        &self.zookeeper
    }

    /// The harness's own ZooKeeper session (chrooted), for anything the helpers do not cover.
    pub fn zk_client(&self) -> &zk::Client {
        &self.zk_client
    }

    /// Broker ids, ascending.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.lock_brokers().keys().copied().collect()
    }

    /// `127.0.0.1:<port>` of broker `id`. Panics for an unknown id.
    pub fn broker_addr(&self, id: i32) -> SocketAddr {
        self.broker_or_panic(id).spec.addr()
    }

    /// Broker `id`'s control-plane listener, if the cluster has one. Panics for an unknown id.
    pub fn control_addr(&self, id: i32) -> Option<SocketAddr> {
        self.broker_or_panic(id).spec.control_addr()
    }

    /// Broker `id`'s `log.dirs`. Panics for an unknown id.
    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.broker_or_panic(id).spec.data_dir()
    }

    /// Broker `id`'s `server.properties`. Panics for an unknown id.
    pub fn config_path(&self, id: i32) -> PathBuf {
        self.broker_or_panic(id).spec.config_path()
    }

    /// Broker `id`'s stdout+stderr (appended across restarts). Panics for an unknown id.
    pub fn log_path(&self, id: i32) -> PathBuf {
        self.broker_or_panic(id).spec.log_path()
    }

    /// The last `lines` lines of broker `id`'s log. Panics for an unknown id.
    pub fn log_tail(&self, id: i32, lines: usize) -> String {
        self.broker_or_panic(id).log_tail(lines)
    }

    /// The directory holding every broker's files.
    pub fn root_dir(&self) -> &std::path::Path {
        &self.root
    }

    /// The proxy between broker `id` and ZooKeeper. Panics for an unknown id.
    pub fn zk_proxy_addr(&self, id: i32) -> SocketAddr {
        self.broker_or_panic(id).proxy.addr()
    }

    /// Broker `id`'s pid while it runs. Panics for an unknown id.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.broker_or_panic(id).pid()
    }

    /// Whether broker `id`'s process runs (paused counts as running). Panics for an unknown id.
    pub fn is_running(&self, id: i32) -> bool {
        self.pid(id).is_some()
    }

    /// How broker `id`'s last process exited, once it has. Panics for an unknown id.
    pub fn exit_status(&self, id: i32) -> Option<ExitStatus> {
        self.broker_or_panic(id).exit_status()
    }

    /// Keeps the cluster's files after drop and returns their directory.
    pub fn keep_files(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            eprintln!("harness: keeping cluster files in {}", path.display());
            return path;
        }
        self.root.clone()
    }

    // ----- process faults ------------------------------------------------------------------

    /// SIGKILLs broker `id` and reaps it (no-op if it is not running).
    ///
    /// # Errors
    /// Unknown id, or the signal/reap failing.
    pub async fn kill(&self, id: i32) -> Result<()> {
        self.broker(id)?.kill()
    }

    /// SIGSTOPs broker `id`: it keeps its sockets but answers nothing, so its ZooKeeper session
    /// expires after the session timeout.
    ///
    /// # Errors
    /// Unknown id or broker not running.
    pub async fn pause(&self, id: i32) -> Result<()> {
        self.broker(id)?.signal(libc::SIGSTOP)
    }

    /// SIGCONTs a paused broker.
    ///
    /// # Errors
    /// Unknown id or broker not running.
    pub async fn resume(&self, id: i32) -> Result<()> {
        self.broker(id)?.signal(libc::SIGCONT)
    }

    /// SIGTERMs broker `id` (graceful shutdown; resumes it first if paused) and waits for the
    /// exit, at most `shutdown_timeout` (then SIGKILLs it and fails).
    ///
    /// # Errors
    /// Unknown id, never started, or no exit in time.
    pub async fn terminate(&self, id: i32) -> Result<ExitStatus> {
        self.broker(id)?.terminate(self.opts.shutdown_timeout).await
    }

    /// Starts broker `id` again with the same id, port, config and data directory, and waits
    /// until it is registered. A running broker is terminated first. If a killed broker's
    /// registration is still in ZooKeeper (its session has not expired yet), waits for it to go
    /// first, as a Kafka broker would refuse to start otherwise.
    ///
    /// # Errors
    /// Unknown id, the old registration never going away, or the new process failing to
    /// register within `startup_timeout`.
    pub async fn restart(&self, id: i32) -> Result<()> {
        let broker = self.broker(id)?;
        if broker.pid().is_some() {
            broker.terminate(self.opts.shutdown_timeout).await?;
        }
        if self.is_registered(id).await? {
            let expiry =
                Duration::from_millis(self.opts.session_timeout_ms * 2) + Duration::from_secs(10);
            self.wait_unregistered(id, expiry)
                .await
                .with_context(|| format!("broker {id}'s previous registration did not expire"))?;
        }
        broker.spawn()?;
        self.wait_registered(id, self.opts.startup_timeout).await
    }

    /// Starts broker `id`'s process if it is not running, without waiting for anything (for
    /// tests of start-up itself; [`Cluster::restart`] is the usual way back).
    ///
    /// # Errors
    /// Unknown id or the spawn failing.
    pub async fn spawn(&self, id: i32) -> Result<u32> {
        self.broker(id)?.spawn()
    }

    /// Adds a broker with the next free id, starts it and waits until it is registered.
    ///
    /// # Errors
    /// As [`Cluster::restart`].
    pub async fn add_broker(&self) -> Result<i32> {
        let id = self
            .lock_brokers()
            .keys()
            .next_back()
            .map_or(0, |last| last + 1);
        let broker = self.create_broker(id).await?;
        broker.spawn()?;
        self.wait_registered(id, self.opts.startup_timeout).await?;
        Ok(id)
    }

    // ----- network faults ------------------------------------------------------------------

    /// Cuts broker `id` off ZooKeeper: its proxy closes every connection and refuses new ones.
    /// The broker's session expires after the session timeout (its registration disappears).
    ///
    /// # Errors
    /// Unknown id.
    pub async fn cut_off_zk(&self, id: i32) -> Result<()> {
        self.broker(id)?.proxy.cut().await;
        Ok(())
    }

    /// Lets broker `id` reach ZooKeeper again.
    ///
    /// # Errors
    /// Unknown id, or the proxy's port taken by someone else meanwhile.
    pub async fn heal_zk(&self, id: i32) -> Result<()> {
        self.broker(id)?.proxy.heal().await
    }

    // ----- waiting -------------------------------------------------------------------------

    /// Waits until `/brokers/ids/<id>` exists and the broker accepts TCP. Fails at once if the
    /// process exits.
    ///
    /// # Errors
    /// Timeout or exit, with the broker's log path and last lines.
    pub async fn wait_registered(&self, id: i32, timeout: Duration) -> Result<()> {
        let broker = self.broker(id)?;
        let what = format!("broker {id} to register in ZooKeeper and accept TCP");
        let result = util::poll_until(&what, timeout, Duration::from_millis(100), || {
            let broker = broker.clone();
            async move {
                if broker.pid().is_none() {
                    bail!("broker {id} is not running");
                }
                // A ZooKeeper hiccup is "not yet", not a failure.
                if !self.is_registered(id).await.unwrap_or(false) {
                    return Ok(None);
                }
                let connect = tokio::net::TcpStream::connect(broker.spec.addr());
                match tokio::time::timeout(Duration::from_millis(500), connect).await {
                    Ok(Ok(_)) => Ok(Some(())),
                    _ => Ok(None),
                }
            }
        })
        .await;
        result.map_err(|e| anyhow!("{e}: {}", broker.failure_report(40)))
    }

    /// Waits until every broker is registered.
    ///
    /// # Errors
    /// As [`Cluster::wait_registered`].
    pub async fn wait_all_registered(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for id in self.broker_ids() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.wait_registered(id, left.max(Duration::from_millis(100)))
                .await?;
        }
        Ok(())
    }

    /// Waits until `/brokers/ids/<id>` is gone (ZooKeeper errors count as "not yet").
    ///
    /// # Errors
    /// Timeout.
    pub async fn wait_unregistered(&self, id: i32, timeout: Duration) -> Result<()> {
        util::poll_until(
            &format!("broker {id}'s registration to disappear"),
            timeout,
            Duration::from_millis(100),
            || async move { Ok(matches!(self.is_registered(id).await, Ok(false)).then_some(())) },
        )
        .await
    }

    /// Whether `/brokers/ids/<id>` exists.
    ///
    /// # Errors
    /// ZooKeeper failing.
    pub async fn is_registered(&self, id: i32) -> Result<bool> {
        Ok(zkh::stat(&self.zk_client, &format!("/brokers/ids/{id}"))
            .await?
            .is_some())
    }

    /// The ids under `/brokers/ids`, ascending (empty if the path does not exist).
    ///
    /// # Errors
    /// ZooKeeper failing or a child that is not a number.
    pub async fn registered_broker_ids(&self) -> Result<Vec<i32>> {
        let children = zkh::children(&self.zk_client, "/brokers/ids")
            .await?
            .unwrap_or_default();
        let mut ids = children
            .iter()
            .map(|c| {
                c.parse::<i32>()
                    .with_context(|| format!("/brokers/ids/{c} is not a broker id"))
            })
            .collect::<Result<Vec<i32>>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// The `brokerid` in `/controller`, or `None` when there is no controller.
    ///
    /// # Errors
    /// ZooKeeper failing or `/controller` not holding Kafka's JSON.
    pub async fn controller_id(&self) -> Result<Option<i32>> {
        let Some(json) = self.zk_get_json("/controller").await? else {
            return Ok(None);
        };
        let id = json
            .get("brokerid")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| anyhow!("/controller has no numeric brokerid: {json}"))?;
        Ok(Some(i32::try_from(id).context("brokerid out of range")?))
    }

    /// Polls `/controller` until `pred(controller_id)` holds; returns that controller id.
    /// Example: `wait_for_controller(|c| c.is_some_and(|c| c != old), timeout)`.
    ///
    /// # Errors
    /// Timeout (the message names the last controller seen) or ZooKeeper failing.
    pub async fn wait_for_controller(
        &self,
        pred: impl Fn(Option<i32>) -> bool,
        timeout: Duration,
    ) -> Result<Option<i32>> {
        let last = Mutex::new(None);
        let pred = &pred;
        let last_ref = &last;
        util::poll_until(
            "a controller matching the predicate",
            timeout,
            Duration::from_millis(100),
            || async move {
                let current = self.controller_id().await?;
                *last_ref.lock().unwrap_or_else(|e| e.into_inner()) = current;
                Ok(pred(current).then_some(current))
            },
        )
        .await
        .map_err(|e| {
            anyhow!(
                "{e} (last controller seen: {:?})",
                *last.lock().unwrap_or_else(|e| e.into_inner())
            )
        })
    }

    // ----- ZooKeeper reads (paths relative to the chroot) ----------------------------------

    /// Data and stat of `path` (relative to the chroot, e.g. `/brokers/ids/0`), `None` if absent.
    ///
    /// # Errors
    /// ZooKeeper failing.
    pub async fn zk_get(&self, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>> {
        zkh::get(&self.zk_client, path).await
    }

    /// `path`'s data parsed as JSON, `None` if absent.
    ///
    /// # Errors
    /// ZooKeeper failing or invalid JSON.
    pub async fn zk_get_json(&self, path: &str) -> Result<Option<serde_json::Value>> {
        match self.zk_get(path).await? {
            None => Ok(None),
            Some((data, _)) => serde_json::from_slice(&data).map(Some).with_context(|| {
                format!(
                    "{path} does not hold JSON: {}",
                    String::from_utf8_lossy(&data)
                )
            }),
        }
    }

    /// Sorted children of `path`, `None` if absent.
    ///
    /// # Errors
    /// ZooKeeper failing.
    pub async fn zk_children(&self, path: &str) -> Result<Option<Vec<String>>> {
        zkh::children(&self.zk_client, path).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let brokers = std::mem::take(&mut *self.lock_brokers());
        if std::thread::panicking() {
            for broker in brokers.values() {
                eprintln!("harness: {}", broker.describe());
            }
            self.keep_files();
        }
        // Dropping the last handle SIGKILLs and reaps each broker and closes its proxy.
        drop(brokers);
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("zk_connect", &self.zk_connect())
            .field("bootstrap", &self.bootstrap())
            .field("root", &self.root)
            .finish()
    }
}
