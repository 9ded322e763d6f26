//! The composition root (Kafka's `KafkaServer`): ordered start-up, the ZooKeeper session keeper,
//! and shutdown in reverse order.
//!
//! Start-up: ZooKeeper session and top-level paths → cluster id → LogManager (meta.properties,
//! recovery) → metadata cache → bind listeners → ReplicaManager → `/brokers/ids/<id>` (the broker
//! epoch) → controller election → serve. Shutdown: controlled shutdown (when enabled) → stop
//! accepting and drain connections → stop the controller → flush logs, write checkpoints and the
//! clean-shutdown marker → close the ZooKeeper session (which removes `/brokers/ids/<id>`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{ApiContext, FetchSessionCache};
use crate::config::KafkaConfig;
use crate::controller::{self, ControllerHandle, Event};
use crate::coordinator::transaction::{
    ProducerIdManager, TransactionCoordinator, TxnCoordinatorConfig,
};
use crate::coordinator::GroupCoordinator;
use crate::log::{BackgroundIntervals, LogManager};
use crate::metadata::MetadataCache;
use crate::network::{
    self, ConnectionLimits, ConnectionQuotaConfig, ConnectionQuotas, RequestBudget,
};
use crate::replication::{FetcherConfig, ReplicaManager, ReplicationConfig};
use crate::util::fd_limit;
use crate::zk::{BrokerInfo, EndPoint, KafkaZkClient, SecurityProtocol, ZkError, ZkHandle};

/// Why the broker could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
    #[error("log manager: {0}")]
    Log(#[from] crate::log::LogError),
    #[error("cannot bind listener {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid topic config in ZooKeeper for '{topic}': {reason}")]
    TopicConfig { topic: String, reason: String },
}

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn broker_info(config: &KafkaConfig) -> BrokerInfo {
    BrokerInfo {
        id: config.broker_id,
        endpoints: config
            .advertised_listeners
            .iter()
            .map(|l| EndPoint {
                listener_name: l.name.clone(),
                security_protocol: SecurityProtocol::Plaintext,
                host: l.host.clone(),
                port: i32::from(l.port),
            })
            .collect(),
        rack: config.rack.clone(),
    }
}

fn replication_config(config: &KafkaConfig) -> ReplicationConfig {
    // Followers connect to the leaders' inter-broker listener.
    let listener = config.inter_broker_listener_name.clone();
    ReplicationConfig {
        fetcher: FetcherConfig {
            broker_id: config.broker_id,
            listener,
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

async fn connect_zk(config: &KafkaConfig) -> Result<KafkaZkClient, ZkError> {
    let zk = KafkaZkClient::connect(
        &config.zookeeper_connect,
        Duration::from_millis(config.zookeeper_session_timeout_ms),
        Duration::from_millis(config.zookeeper_connection_timeout_ms),
    )
    .await?;
    zk.set_max_in_flight(config.zookeeper_max_in_flight_requests);
    Ok(zk)
}

/// Raises the soft open-file limit to the hard one, as operators do for Kafka: the broker holds
/// one descriptor per log segment. A failure is logged, not fatal; an open that later runs out
/// of descriptors says which limit to raise.
fn raise_fd_limit(broker_id: i32) {
    match fd_limit::raise_soft_to_hard() {
        Ok((before, after)) => tracing::info!(
            broker = broker_id,
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "open-file limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(broker = broker_id, error = %e,
            "cannot raise the open-file limit; a broker with many partitions may run out"),
    }
}

/// Binds every configured listener before the broker registers, so a port in use fails start-up
/// instead of advertising an endpoint nobody serves.
async fn bind_listeners(config: &KafkaConfig) -> Result<Vec<(String, TcpListener)>, ServerError> {
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let host = if l.host.is_empty() {
            "0.0.0.0"
        } else {
            &l.host
        };
        let addr = format!("{host}:{}", l.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        listeners.push((l.name.clone(), listener));
    }
    Ok(listeners)
}

/// Starts the log manager's retention, flush and checkpoint task; retention needs each
/// partition's high watermark from the ReplicaManager.
fn spawn_log_background(
    config: &KafkaConfig,
    logs: &LogManager,
    replicas: &ReplicaManager,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let logs = logs.clone();
    let replicas = replicas.clone();
    let intervals = BackgroundIntervals {
        retention_check_ms: config.log_retention_check_interval_ms,
        flush_check_ms: config.log_flush_scheduler_interval_ms,
        recovery_point_checkpoint_ms: config.log_flush_offset_checkpoint_interval_ms,
        log_start_offset_checkpoint_ms: config.log_flush_start_offset_checkpoint_interval_ms,
        ..BackgroundIntervals::default()
    };
    tokio::spawn(async move {
        let hw = Arc::new(move |tp: &crate::log::TopicPartition| replicas.high_watermark(tp));
        logs.run_background(intervals, hw, shutdown).await;
    })
}

/// Kafka's `LogDirFailureHandler`: each data directory the log layer takes offline is handed
/// to the replica manager; when none is left the process stops at once, as Kafka's does
/// ("all log dirs have failed"): it can serve nothing, and a clean shutdown would try to write
/// to the failed disks. The task ends with the log manager.
fn spawn_log_dir_failure_handler(broker_id: i32, logs: &LogManager, replicas: &ReplicaManager) {
    let Some(mut failures) = logs.take_failure_receiver() else {
        return;
    };
    let replicas = replicas.clone();
    let configured = logs.log_dirs().len();
    tokio::spawn(async move {
        while let Some(dir) = failures.next().await {
            let live = replicas.handle_log_dir_failure(&dir).await;
            if live == 0 {
                tracing::error!(
                    broker = broker_id,
                    dirs = configured,
                    "every log directory has failed; stopping the broker"
                );
                std::process::exit(1);
            }
            tracing::warn!(broker = broker_id, dir = %dir.display(), live_dirs = live,
                "log directory offline; serving the others");
        }
    });
}

/// Runs a broker until `shutdown_signal` resolves, then shuts it down cleanly.
///
/// # Errors
/// Any start-up failure (ZooKeeper unreachable, meta.properties mismatch, a live broker with the
/// same id, a port in use); the message names the cause.
pub async fn run(
    config: KafkaConfig,
    shutdown_signal: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let broker_id = config.broker_id;
    tracing::info!(broker = broker_id, zookeeper = %config.zookeeper_connect, "starting broker");
    raise_fd_limit(broker_id);

    let zk = connect_zk(&config).await?;
    zk.create_top_level_paths().await?;
    let cluster_id = zk.get_or_create_cluster_id().await?;
    tracing::info!(broker = broker_id, cluster_id = %cluster_id, "joined cluster");

    let logs = start_logs(&config, &zk, &cluster_id).await?;

    let metadata = MetadataCache::new();
    let listeners = bind_listeners(&config).await?;

    let zk_handle = ZkHandle::new(zk.clone());
    let replicas = ReplicaManager::new(
        broker_id,
        replication_config(&config),
        logs.clone(),
        metadata.clone(),
        zk_handle.clone(),
    );

    let broker_epoch = zk.register_broker(&broker_info(&config)).await?;
    tracing::info!(
        broker = broker_id,
        broker_epoch,
        "registered in /brokers/ids"
    );
    let broker_epoch = Arc::new(AtomicI64::new(broker_epoch));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (controller, controller_task) =
        controller::start(config.clone(), zk_handle.clone(), shutdown_rx.clone());

    let coordinator = GroupCoordinator::new(&config, replicas.clone());
    let producer_ids = Arc::new(ProducerIdManager::new(broker_id, zk_handle.clone()));
    {
        let producer_ids = producer_ids.clone();
        tokio::spawn(async move {
            if let Err(e) = producer_ids.claim_initial_block().await {
                tracing::warn!(error = %e, "no producer id block at start-up; InitProducerId will claim one");
            }
        });
    }
    let txn_coordinator = TransactionCoordinator::new(
        TxnCoordinatorConfig::from_broker(&config),
        replicas.clone(),
        metadata.clone(),
        producer_ids.clone(),
    );
    let ctx = ApiContext {
        coordinator: coordinator.clone(),
        txn_coordinator: txn_coordinator.clone(),
        producer_ids,
        config: config.clone(),
        cluster_id: cluster_id.into(),
        replicas: replicas.clone(),
        metadata,
        zk: zk_handle.clone(),
        controller: controller.clone(),
        broker_epoch: broker_epoch.clone(),
        fetch_sessions: Arc::new(FetchSessionCache::new(
            config.max_incremental_fetch_session_cache_slots,
        )),
        listener: config.advertised().name.as_str().into(),
    };
    let limits = ConnectionLimits {
        max_request_bytes: config.socket_request_max_bytes,
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
        budget: RequestBudget::new(config.queued_max_requests, config.queued_max_request_bytes),
        send_buffer_bytes: config.socket_send_buffer_bytes,
        receive_buffer_bytes: config.socket_receive_buffer_bytes,
    };
    let quotas = ConnectionQuotas::new(ConnectionQuotaConfig {
        max_connections: config.max_connections,
        max_per_ip: config.max_connections_per_ip,
        per_ip_overrides: config
            .max_connections_per_ip_overrides
            .iter()
            .copied()
            .collect(),
    });
    let mut servers = Vec::new();
    for (name, listener) in listeners {
        // Each listener's requests know which listener they came on (Metadata answers with
        // its endpoints; a control plane refuses controller requests elsewhere).
        let ctx = ApiContext {
            listener: name.into(),
            ..ctx.clone()
        };
        servers.push(tokio::spawn(network::serve(
            listener,
            ctx,
            limits.clone(),
            quotas.clone(),
            shutdown_rx.clone(),
        )));
    }

    let background = spawn_log_background(&config, &logs, &replicas, shutdown_rx.clone());
    spawn_log_dir_failure_handler(broker_id, &logs, &replicas);

    let replication_tasks = replicas.start(shutdown_rx.clone());
    let coordinator_tasks = coordinator.start(shutdown_rx.clone());
    let txn_tasks = txn_coordinator.start(shutdown_rx.clone());

    let session_keeper = tokio::spawn(keep_session(
        config.clone(),
        zk_handle.clone(),
        controller.clone(),
        broker_epoch,
        shutdown_rx.clone(),
    ));
    tracing::info!(broker = broker_id, "broker started");

    shutdown_signal.await;
    shut_down(Running {
        config,
        ctx,
        zk: zk_handle,
        shutdown_tx,
        servers,
        controller_task,
        background,
        replicas,
        tasks: replication_tasks
            .into_iter()
            .chain(coordinator_tasks)
            .chain(txn_tasks)
            .collect(),
        session_keeper,
        logs,
    })
    .await;
    tracing::info!(broker = broker_id, "shutdown complete");
    Ok(())
}

/// Opens (and recovers) every partition of the log directories, each with its topic's config
/// from ZooKeeper.
async fn start_logs(
    config: &KafkaConfig,
    zk: &KafkaZkClient,
    cluster_id: &str,
) -> Result<LogManager, ServerError> {
    let default_log_config = config.default_log_config();
    let topic_overrides: BTreeMap<String, BTreeMap<String, String>> =
        zk.get_all_topic_configs().await?;
    let mut topic_configs = BTreeMap::new();
    for (topic, overrides) in &topic_overrides {
        let cfg = crate::config::topic_log_config(&default_log_config, overrides).map_err(|e| {
            ServerError::TopicConfig {
                topic: topic.clone(),
                reason: e.to_string(),
            }
        })?;
        topic_configs.insert(topic.clone(), cfg);
    }
    Ok(LogManager::startup_with_threads(
        &config.log_dirs,
        config.broker_id,
        cluster_id,
        default_log_config.clone(),
        &|topic: &str| {
            topic_configs
                .get(topic)
                .cloned()
                .unwrap_or_else(|| default_log_config.clone())
        },
        config.num_recovery_threads_per_data_dir,
    )?)
}

/// What a running broker holds, handed to [`shut_down`].
struct Running {
    config: Arc<KafkaConfig>,
    ctx: ApiContext,
    zk: ZkHandle,
    shutdown_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    controller_task: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
    replicas: ReplicaManager,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    session_keeper: tokio::task::JoinHandle<()>,
    logs: LogManager,
}

/// Shutdown in reverse start-up order (see `docs/architecture.md`).
async fn shut_down(r: Running) {
    let broker_id = r.config.broker_id;
    tracing::info!(broker = broker_id, "shutting down");
    // Leadership moves away while this broker still serves (its own controller included, which
    // answers the request on its event loop); only then do listeners and the controller stop.
    if r.config.controlled_shutdown_enable {
        controller::controlled_shutdown(&r.config, &r.zk, r.ctx.broker_epoch()).await;
    }
    let _ = r.shutdown_tx.send(true);
    for s in r.servers {
        if tokio::time::timeout(DRAIN_TIMEOUT, s).await.is_err() {
            tracing::warn!(broker = broker_id, "connections did not drain in time");
        }
    }
    let _ = r.controller_task.await;
    let _ = r.background.await;
    r.replicas.shutdown();
    for t in r.tasks {
        t.abort();
    }
    r.session_keeper.abort();
    if let Err(e) = r.logs.shutdown() {
        tracing::error!(broker = broker_id, error = %e, "log manager shutdown failed");
    }
    // Remove our ephemeral znodes now (as closing the session does in Kafka), so the controller
    // and the next election react at once rather than after the session timeout.
    if let Err(e) = r.zk.get().deregister(broker_id).await {
        tracing::warn!(broker = broker_id, error = %e, "cannot remove ephemeral znodes");
    }
}

/// Watches the ZooKeeper session; on expiry resigns the controller, opens a new session,
/// re-registers `/brokers/ids/<id>` (a new broker epoch) and re-runs the election (reference §2).
async fn keep_session(
    config: Arc<KafkaConfig>,
    zk: ZkHandle,
    controller: ControllerHandle,
    broker_epoch: Arc<AtomicI64>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let loss = zk.get().session_lost().await;
        if *shutdown.borrow() {
            return;
        }
        tracing::warn!(
            broker = config.broker_id,
            ?loss,
            "ZooKeeper session lost; re-registering"
        );
        controller.notify(Event::SessionExpired);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match connect_zk(&config).await {
                Ok(client) => match client.register_broker(&broker_info(&config)).await {
                    Ok(epoch) => {
                        broker_epoch.store(epoch, Ordering::SeqCst);
                        zk.replace(client);
                        tracing::info!(
                            broker = config.broker_id,
                            broker_epoch = epoch,
                            "re-registered with a new session"
                        );
                        controller.notify(Event::Startup);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(broker = config.broker_id, error = %e,
                            "re-registration failed; retrying");
                    }
                },
                Err(e) => {
                    tracing::warn!(broker = config.broker_id, error = %e,
                        "cannot reconnect to ZooKeeper; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
