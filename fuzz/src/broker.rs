//! One in-process broker for the request-path fuzzer, assembled from gregor's public parts in the
//! order `gregor::server::run` uses (ZooKeeper session and paths → cluster id → LogManager →
//! metadata cache → listener → ReplicaManager → `/brokers/ids/0` → controller → coordinator),
//! then seeded so that handlers have something to act on: the controller elects itself, a topic
//! is created through the normal admin path and its partitions become led here, records are
//! produced and the offsets topic exists.
//!
//! The broker serves its listener too: the controller reaches brokers (itself included) over the
//! Kafka protocol, so without it no LeaderAndIsr would ever arrive. The fuzzer itself calls
//! `gregor::api::handle` directly, in-process.
//!
//! Every incarnation has its own chroot and its own log directory, so a fresh one can replace a
//! broker whose state the fuzzer has driven somewhere uninteresting (see `request`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gregor::api::{ApiContext, FetchSessionCache};
use gregor::config::KafkaConfig;
use gregor::controller::{self, admin};
use gregor::coordinator::transaction::{
    ProducerIdManager, TransactionCoordinator, TxnCoordinatorConfig,
};
use gregor::coordinator::GroupCoordinator;
use gregor::log::{BackgroundIntervals, LogManager, TopicPartition};
use gregor::metadata::MetadataCache;
use gregor::network::{self, ConnectionLimits, ConnectionQuotaConfig, ConnectionQuotas};
use gregor::protocol::file_region::Chunk;
use gregor::replication::{FetcherConfig, ReplicaManager, ReplicationConfig};
use gregor::zk::{BrokerInfo, EndPoint, KafkaZkClient, SecurityProtocol, ZkHandle};
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The broker's id; the seeds' control requests name it.
pub const BROKER_ID: i32 = 0;
/// The topic every incarnation creates and leads; the seed frames name it.
pub const SEED_TOPIC: &str = "fuzz";
/// Its partition count.
pub const SEED_PARTITIONS: i32 = 2;
/// The group the seeds use (FindCoordinator creates the offsets topic for it).
pub const SEED_GROUP: &str = "group";
/// Partitions of `__consumer_offsets` (Kafka's default 50 would make a reset slow).
const OFFSETS_PARTITIONS: i32 = 2;
/// How long a stopping broker's tasks may take to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_millis(300);
/// How long start-up may take before the harness gives up (ZooKeeper, election, leaders).
/// Shorter than the `-timeout` scripts/fuzz.sh gives libFuzzer, so a hang is reported as such.
const START_TIMEOUT: Duration = Duration::from_secs(40);

/// What a broker holds while it runs.
pub struct Broker {
    pub ctx: ApiContext,
    /// The peer address handlers see (`Req::client_host`).
    pub client_host: Arc<str>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    logs: LogManager,
    zk: ZkHandle,
    session_lost: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// The server.properties of a fuzzed broker: Kafka's defaults except for what keeps a long run
/// bounded (small segments and retention, so produced data does not fill the disk) and fast
/// (no group rebalance delay, a small offsets topic).
fn config(zk_connect: &str, log_dir: &str, port: u16) -> Result<KafkaConfig, String> {
    let props = [
        ("broker.id", BROKER_ID.to_string()),
        ("zookeeper.connect", zk_connect.to_string()),
        ("zookeeper.session.timeout.ms", "30000".into()),
        ("log.dirs", log_dir.to_string()),
        ("listeners", format!("PLAINTEXT://127.0.0.1:{port}")),
        ("num.partitions", "2".into()),
        ("default.replication.factor", "1".into()),
        (
            "offsets.topic.num.partitions",
            OFFSETS_PARTITIONS.to_string(),
        ),
        ("offsets.topic.replication.factor", "1".into()),
        ("group.initial.rebalance.delay.ms", "0".into()),
        ("log.segment.bytes", (1 << 20).to_string()),
        ("log.index.size.max.bytes", (64 << 10).to_string()),
        ("log.retention.bytes", (4 << 20).to_string()),
        ("log.retention.check.interval.ms", "1000".into()),
        ("log.segment.delete.delay.ms", "0".into()),
        ("controlled.shutdown.enable", "false".into()),
        ("auto.leader.rebalance.enable", "false".into()),
    ];
    let map: BTreeMap<String, String> =
        props.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    KafkaConfig::from_map(map).map_err(|e| format!("fuzz broker config: {e}"))
}

fn replication_config(config: &KafkaConfig) -> ReplicationConfig {
    ReplicationConfig {
        fetcher: FetcherConfig {
            broker_id: config.broker_id,
            listener: config.advertised().name.clone(),
            fetch_max_bytes: config.replica_fetch_max_bytes,
            response_max_bytes: config.replica_fetch_response_max_bytes,
            wait_max_ms: config.replica_fetch_wait_max_ms,
            min_bytes: config.replica_fetch_min_bytes,
            backoff: Duration::from_millis(config.replica_fetch_backoff_ms),
            socket_timeout: Duration::from_millis(config.replica_socket_timeout_ms),
        },
        lag_time_max_ms: config.replica_lag_time_max_ms,
        high_watermark_checkpoint_interval_ms: config.replica_high_watermark_checkpoint_interval_ms,
    }
}

/// A request frame (no size prefix) for `body` at `version`.
pub fn frame<R: Encodable + HeaderVersion>(
    key: i16,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("gregor-fuzz")));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, R::header_version(version))
        .and_then(|()| body.encode(&mut b, version))
        .map_err(|e| format!("encoding a setup request: {e}"))?;
    Ok(b.freeze())
}

/// The bytes of a response, size prefix included.
pub fn response_bytes(chunks: &[Chunk]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in chunks {
        match c {
            Chunk::Mem(b) => out.extend_from_slice(b),
            Chunk::File(r) => out.extend_from_slice(&r.read()?),
        }
    }
    Ok(out)
}

async fn wait_until(
    what: &str,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    while !done() {
        if Instant::now() > deadline {
            return Err(format!(
                "fuzz broker start-up: timed out waiting for {what}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl Broker {
    /// Starts a broker on `zk_connect` (with its chroot) and seeds it; see the module docs.
    ///
    /// # Errors
    /// A message naming the step that failed.
    pub async fn start(zk_connect: &str) -> Result<Broker, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let step = Cell::new("the log directory");
        match tokio::time::timeout_at(
            deadline.into(),
            Self::start_steps(zk_connect, deadline, &step),
        )
        .await
        {
            Ok(started) => started,
            Err(_) => Err(format!(
                "fuzz broker start-up: timed out after {START_TIMEOUT:?} in {}",
                step.get()
            )),
        }
    }

    async fn start_steps(
        zk_connect: &str,
        deadline: Instant,
        step: &Cell<&'static str>,
    ) -> Result<Broker, String> {
        let dir = crate::zookeeper::scratch_dir("logs-")
            .map_err(|e| format!("cannot create a log directory: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the broker's listener: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        let config = Arc::new(config(zk_connect, &dir.path().display().to_string(), port)?);
        step.set("the ZooKeeper session");
        let zk = KafkaZkClient::connect(
            &config.zookeeper_connect,
            Duration::from_millis(config.zookeeper_session_timeout_ms),
            Duration::from_millis(config.zookeeper_connection_timeout_ms),
        )
        .await
        .map_err(|e| format!("ZooKeeper session: {e}"))?;
        zk.create_top_level_paths()
            .await
            .map_err(|e| format!("ZooKeeper paths: {e}"))?;
        let cluster_id = zk
            .get_or_create_cluster_id()
            .await
            .map_err(|e| format!("cluster id: {e}"))?;
        step.set("the log manager");
        let default_log_config = config.default_log_config();
        let logs = LogManager::startup(
            &config.log_dirs,
            config.broker_id,
            &cluster_id,
            default_log_config.clone(),
            &|_: &str| default_log_config.clone(),
        )
        .map_err(|e| format!("log manager: {e}"))?;
        let metadata = MetadataCache::new();
        let zk_handle = ZkHandle::new(zk.clone());
        let replicas = ReplicaManager::new(
            config.broker_id,
            replication_config(&config),
            logs.clone(),
            metadata.clone(),
            zk_handle.clone(),
        );
        let info = BrokerInfo {
            id: config.broker_id,
            endpoints: vec![EndPoint {
                listener_name: config.advertised().name.clone(),
                security_protocol: SecurityProtocol::Plaintext,
                host: "127.0.0.1".into(),
                port: i32::from(port),
            }],
            rack: None,
        };
        step.set("the broker registration");
        let broker_epoch = zk
            .register_broker(&info)
            .await
            .map_err(|e| format!("broker registration: {e}"))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (controller, controller_task) =
            controller::start(config.clone(), zk_handle.clone(), shutdown_rx.clone());
        let coordinator = GroupCoordinator::new(&config, replicas.clone());
        let producer_ids = Arc::new(ProducerIdManager::new(config.broker_id, zk_handle.clone()));
        let txn_coordinator = TransactionCoordinator::new(
            TxnCoordinatorConfig::from_broker(&config),
            replicas.clone(),
            metadata.clone(),
            producer_ids.clone(),
        );
        let ctx = ApiContext {
            coordinator: coordinator.clone(),
            txn_coordinator,
            producer_ids,
            config: config.clone(),
            cluster_id: cluster_id.into(),
            replicas: replicas.clone(),
            metadata,
            zk: zk_handle.clone(),
            controller,
            broker_epoch: Arc::new(AtomicI64::new(broker_epoch)),
            fetch_sessions: Arc::new(FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots,
            )),
            listener: config.advertised().name.as_str().into(),
        };
        let mut tasks = vec![controller_task];
        let limits = ConnectionLimits {
            max_request_bytes: config.socket_request_max_bytes,
            idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
            budget: gregor::network::RequestBudget::new(
                config.queued_max_requests,
                config.queued_max_request_bytes,
            ),
            send_buffer_bytes: config.socket_send_buffer_bytes,
            receive_buffer_bytes: config.socket_receive_buffer_bytes,
        };
        let quotas = ConnectionQuotas::new(ConnectionQuotaConfig {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            per_ip_overrides: Default::default(),
        });
        tasks.push(tokio::spawn(network::serve(
            listener,
            ctx.clone(),
            limits,
            quotas,
            shutdown_rx.clone(),
        )));
        let intervals = BackgroundIntervals {
            retention_check_ms: config.log_retention_check_interval_ms,
            flush_check_ms: config.log_flush_scheduler_interval_ms,
            recovery_point_checkpoint_ms: config.log_flush_offset_checkpoint_interval_ms,
            log_start_offset_checkpoint_ms: config.log_flush_start_offset_checkpoint_interval_ms,
            ..BackgroundIntervals::default()
        };
        let (bg_logs, bg_replicas, bg_shutdown) =
            (logs.clone(), replicas.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(async move {
            let hw = Arc::new(move |tp: &TopicPartition| bg_replicas.high_watermark(tp));
            bg_logs.run_background(intervals, hw, bg_shutdown).await;
        }));
        tasks.extend(replicas.start(shutdown_rx.clone()));
        tasks.extend(coordinator.start(shutdown_rx.clone()));
        let session_lost = Arc::new(AtomicBool::new(false));
        let (flag, watched) = (session_lost.clone(), zk.clone());
        tasks.push(tokio::spawn(async move {
            watched.session_lost().await;
            flag.store(true, Ordering::SeqCst);
        }));
        let broker = Broker {
            ctx,
            client_host: Arc::from("/127.0.0.1"),
            shutdown_tx,
            tasks,
            logs,
            zk: zk_handle,
            session_lost,
            _dir: dir,
        };
        broker.seed(deadline, step).await?;
        Ok(broker)
    }

    /// The controller elects itself, the seed topic is created through the admin path and led
    /// here, a few batches are produced to it, and the offsets topic is created.
    async fn seed(&self, deadline: Instant, step: &Cell<&'static str>) -> Result<(), String> {
        let ctx = &self.ctx;
        step.set("the controller election");
        wait_until("the controller election", deadline, || {
            ctx.controller.is_active() && ctx.metadata.snapshot().brokers.contains_key(&BROKER_ID)
        })
        .await?;
        let spec = admin::TopicSpec {
            name: SEED_TOPIC.into(),
            num_partitions: SEED_PARTITIONS,
            replication_factor: 1,
            assignment: None,
            configs: BTreeMap::new(),
        };
        step.set("creating the seed topic");
        admin::create_topic(&ctx.zk.get(), &[BROKER_ID], &spec, false)
            .await
            .map_err(|e| format!("creating the seed topic: {e}"))?;
        wait_until("the seed partitions' leadership", deadline, || {
            self.seed_partitions_led()
        })
        .await?;
        step.set("producing to the seed topic");
        for p in 0..SEED_PARTITIONS {
            self.call_ok(crate::seeds::produce_frame(p, 1, 3)?).await?;
        }
        let mut fc = FindCoordinatorRequest::default();
        fc.key = StrBytes::from_static_str(SEED_GROUP);
        step.set("creating the offsets topic");
        loop {
            let resp = self.call_ok(frame(10, 1, 7, &fc)?).await?;
            let mut body = Bytes::from(resp).slice(8..);
            let decoded = FindCoordinatorResponse::decode(&mut body, 1)
                .map_err(|e| format!("FindCoordinator response: {e}"))?;
            if decoded.error_code == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "fuzz broker start-up: FindCoordinator still answers error {}",
                    decoded.error_code
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Handles one setup request and returns its response (size prefix included).
    async fn call_ok(&self, frame: Bytes) -> Result<Vec<u8>, String> {
        match gregor::api::handle(&self.ctx, &self.client_host, frame).await {
            Ok(Some(chunks)) => response_bytes(&chunks).map_err(|e| format!("response: {e}")),
            Ok(None) => Err("setup request got no response".into()),
            Err(e) => Err(format!("setup request refused: {e}")),
        }
    }

    /// Whether every seed partition is led here and known as such in the metadata cache.
    pub fn seed_partitions_led(&self) -> bool {
        let snap = self.ctx.metadata.snapshot();
        (0..SEED_PARTITIONS).all(|p| {
            let tp = TopicPartition::new(SEED_TOPIC, p);
            self.ctx
                .replicas
                .partition(&tp)
                .is_some_and(|part| part.is_leader())
                && snap
                    .partition(SEED_TOPIC, p)
                    .is_some_and(|info| info.leader == BROKER_ID)
        })
    }

    /// Why this broker no longer gives the fuzzer something to act on, if it does not: the seed
    /// partitions are not led here any more, the controller's requests would be refused (a
    /// fuzzed control request raised the controller epoch), the session is gone.
    pub fn unhealthy(&self) -> Option<&'static str> {
        if self.session_lost.load(Ordering::SeqCst) {
            return Some("ZooKeeper session lost");
        }
        if !self.ctx.controller.is_active() {
            return Some("no longer the controller");
        }
        if self
            .ctx
            .replicas
            .check_controller_epoch(self.ctx.controller.epoch())
            .is_err()
        {
            return Some("controller epoch fenced by a fuzzed request");
        }
        if !self.seed_partitions_led() {
            return Some("seed partitions not led here");
        }
        None
    }

    /// State that grows with what the fuzzer created: (topics in the metadata cache,
    /// partitions hosted here).
    pub fn size(&self) -> (usize, usize) {
        (
            self.ctx.metadata.snapshot().topics.len(),
            self.ctx.replicas.all_partitions().len(),
        )
    }

    /// The log end offsets of the seed partitions (how much the fuzzer got appended).
    pub fn seed_log_end_offsets(&self) -> Vec<i64> {
        (0..SEED_PARTITIONS)
            .map(|p| {
                let tp = TopicPartition::new(SEED_TOPIC, p);
                self.ctx
                    .replicas
                    .log_manager()
                    .get_log(&tp)
                    .map_or(-1, |l| l.log_end_offset())
            })
            .collect()
    }

    /// Shuts down in server.rs's order (stop serving, controller, replicas, logs, registration);
    /// the log directory goes with `self`.
    pub async fn stop(self) {
        let _ = self.shutdown_tx.send(true);
        // Tasks get a moment to finish on the signal (the controller resigns, listeners close);
        // whatever still runs then is aborted, so a replacement costs about a second.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        self.ctx.replicas.shutdown();
        if let Err(e) = self.logs.shutdown() {
            eprintln!("gregor-fuzz: log manager shutdown failed: {e}");
        }
        let _ = self.zk.get().deregister(BROKER_ID).await;
    }
}
