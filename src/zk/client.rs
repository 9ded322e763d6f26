//! `KafkaZkClient`: session set-up (chroot bootstrap, timeouts), session-loss detection, and the
//! start-up znodes every broker ensures (top-level paths, `/cluster/id`).
//!
//! One client = one ZooKeeper session. Clones share it; the session is closed when the last
//! clone is dropped. After `SessionLoss::Expired` the owner builds a new client with
//! [`KafkaZkClient::reconnect`], re-registers its broker and re-elects (reference §2).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use zookeeper_client::{Client, SessionState};

use super::data;
use super::error::ZkError;
use super::ops::PERSISTENT;
use super::paths::{CLUSTER_ID_PATH, TOP_LEVEL_PATHS};
use super::watch::SessionLoss;

/// Connection parameters, kept so [`KafkaZkClient::reconnect`] can open an identical session.
#[derive(Debug)]
struct Settings {
    connect: String,
    session_timeout: Duration,
    connection_timeout: Duration,
}

/// Kafka's `zookeeper.max.in.flight.requests` for the pipelined batch helpers; shared by every
/// clone and by sessions opened again after expiry.
#[derive(Debug)]
pub(super) struct InFlight(std::sync::atomic::AtomicUsize);

/// Kafka's `KafkaZkClient`: typed access to the ZooKeeper layout of reference §1.
#[derive(Clone, Debug)]
pub struct KafkaZkClient {
    pub(super) zk: Client,
    settings: Arc<Settings>,
    in_flight: Arc<InFlight>,
}

/// Byte offset of the chroot in a connect string: the first `/` that is not part of a
/// `tcp://`-style scheme prefix (which zookeeper-client accepts per host).
fn chroot_index(connect: &str) -> Option<usize> {
    let mut i = 0;
    while i < connect.len() {
        if connect[i..].starts_with("://") {
            i += 3;
        } else if connect[i..].starts_with('/') {
            return Some(i);
        } else {
            i += connect[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    None
}

/// First pause between connection attempts; it doubles up to [`MAX_CONNECT_BACKOFF`].
const FIRST_CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between connection attempts (the Java client sleeps up to 1 s between hosts).
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Opens one session, retrying until `deadline` (from Kafka's `zookeeper.connection.timeout.ms`).
///
/// A refused or reset connection is what a ZooKeeper that is still starting looks like, so, as
/// Kafka's client does, it is retried with a growing back-off rather than reported at once. Each
/// attempt makes one pass over the hosts (`fail_eagerly`), so this loop, not the library, decides
/// how long to keep trying and logs every failure. Only an unusable connect string is final.
async fn open_session(
    connect: &str,
    session_timeout: Duration,
    connection_timeout: Duration,
    deadline: Instant,
) -> Result<Client, ZkError> {
    let mut backoff = FIRST_CONNECT_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let connecting = Client::connector()
            .with_session_timeout(session_timeout)
            .with_fail_eagerly()
            .connect(connect);
        let last_error = match tokio::time::timeout(remaining, connecting).await {
            Ok(Ok(client)) => {
                if attempts > 1 {
                    info!(connect, attempts, "connected to ZooKeeper after retrying");
                }
                return Ok(client);
            }
            Ok(Err(zookeeper_client::Error::BadArguments(reason))) => {
                return Err(ZkError::InvalidConnectString {
                    connect: connect.to_string(),
                    reason: reason.to_string(),
                })
            }
            Ok(Err(zookeeper_client::Error::NoHosts)) => "no server accepted a session".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no session established before the deadline".to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(ZkError::ConnectTimeout {
                connect: connect.to_string(),
                timeout: connection_timeout,
                attempts,
                last_error,
            });
        }
        let pause = backoff.min(deadline - now);
        warn!(
            connect,
            attempts,
            error = %last_error,
            retry_in_ms = pause.as_millis() as u64,
            "cannot connect to ZooKeeper yet; retrying"
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
    }
}

/// Logs session transitions until the session ends. Holds only a state watcher, so it does not
/// keep the session open.
fn spawn_state_logger(zk: &Client) {
    let mut states = zk.state_watcher();
    let session_id = zk.session_id().0;
    tokio::spawn(async move {
        loop {
            let state = states.changed().await;
            match state {
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                    info!(
                        session_id = format_args!("{session_id:#x}"),
                        ?state,
                        "zookeeper reconnected"
                    )
                }
                SessionState::Disconnected => {
                    warn!(
                        session_id = format_args!("{session_id:#x}"),
                        "zookeeper disconnected"
                    )
                }
                _ => {
                    warn!(
                        session_id = format_args!("{session_id:#x}"),
                        ?state,
                        "zookeeper session ended"
                    );
                    return;
                }
            }
        }
    });
}

impl KafkaZkClient {
    /// Connects to `"h1:2181,h2:2181/chroot"`. With a chroot, a first session without it creates
    /// the chroot path (recursively) and is closed, then the real session is opened with it,
    /// as Kafka's `KafkaServer.initZkClient` does.
    ///
    /// Refused, reset or unanswered connections are retried with back-off until
    /// `connection_timeout` has passed since the call (both sessions share that budget).
    ///
    /// # Errors
    /// `InvalidConnectString`, `ConnectTimeout` after `connection_timeout`, or the error that
    /// prevented creating the chroot.
    pub async fn connect(
        connect: &str,
        session_timeout: Duration,
        connection_timeout: Duration,
    ) -> Result<Self, ZkError> {
        let deadline = Instant::now() + connection_timeout;
        if let Some(i) = chroot_index(connect) {
            let (hosts, chroot) = connect.split_at(i);
            if chroot != "/" {
                let bootstrap =
                    open_session(hosts, session_timeout, connection_timeout, deadline).await?;
                match bootstrap.mkdir(chroot, &PERSISTENT).await {
                    Ok(()) => {}
                    Err(zookeeper_client::Error::BadArguments(reason)) => {
                        return Err(ZkError::InvalidConnectString {
                            connect: connect.to_string(),
                            reason: format!("chroot {chroot:?}: {reason}"),
                        })
                    }
                    Err(e) => return Err(ZkError::from_zk(chroot, e)),
                }
                info!(chroot, "zookeeper chroot ensured");
                // Dropping the only handle closes the bootstrap session.
                drop(bootstrap);
            }
        }
        let zk = open_session(connect, session_timeout, connection_timeout, deadline).await?;
        info!(
            connect,
            session_id = format_args!("{:#x}", zk.session_id().0),
            negotiated_timeout_ms = zk.session_timeout().as_millis() as u64,
            "zookeeper session established"
        );
        spawn_state_logger(&zk);
        let settings = Settings {
            connect: connect.to_string(),
            session_timeout,
            connection_timeout,
        };
        Ok(Self {
            zk,
            settings: Arc::new(settings),
            in_flight: Arc::new(InFlight(std::sync::atomic::AtomicUsize::new(
                super::ops::PIPELINE_CHUNK,
            ))),
        })
    }

    /// Caps the requests a pipelined batch keeps in flight (`zookeeper.max.in.flight.requests`).
    pub fn set_max_in_flight(&self, n: usize) {
        self.in_flight
            .0
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests a pipelined batch keeps in flight.
    pub(super) fn max_in_flight(&self) -> usize {
        self.in_flight.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens a fresh session with the same connect string and timeouts (after expiry).
    ///
    /// # Errors
    /// As [`KafkaZkClient::connect`].
    pub async fn reconnect(&self) -> Result<Self, ZkError> {
        let s = &self.settings;
        let mut fresh = Self::connect(&s.connect, s.session_timeout, s.connection_timeout).await?;
        fresh.in_flight = Arc::clone(&self.in_flight);
        Ok(fresh)
    }

    /// The session id, for logs (ZooKeeper prints it in hex).
    pub fn session_id(&self) -> i64 {
        self.zk.session_id().0
    }

    /// Negotiated session timeout.
    pub fn session_timeout(&self) -> Duration {
        self.zk.session_timeout()
    }

    /// Resolves once this session has ended for good (expired, closed or auth failure);
    /// immediately if it already has. Disconnections that recover do not resolve it.
    pub async fn session_lost(&self) -> SessionLoss {
        let mut states = self.zk.state_watcher();
        let mut state = states.peek_state();
        while !state.is_terminated() {
            state = states.changed().await;
        }
        SessionLoss::from_state(state)
    }

    /// Creates Kafka 2.8's persistent start-up paths (no data); existing ones are left alone.
    ///
    /// # Errors
    /// Any ZooKeeper failure, naming the path.
    pub async fn create_top_level_paths(&self) -> Result<(), ZkError> {
        for path in TOP_LEVEL_PATHS {
            self.ensure_path(path).await?;
        }
        Ok(())
    }

    /// Returns `/cluster/id`, creating it with a fresh id if absent. Racing brokers converge on
    /// whichever id was created first.
    ///
    /// # Errors
    /// ZooKeeper failures, or `MalformedData` if the stored JSON is not Kafka's.
    pub async fn get_or_create_cluster_id(&self) -> Result<String, ZkError> {
        let decode = |bytes: &[u8]| {
            data::decode_cluster_id(bytes).map_err(|e| ZkError::malformed(CLUSTER_ID_PATH, e))
        };
        if let Some((bytes, _)) = self.get_data_opt(CLUSTER_ID_PATH).await? {
            return decode(&bytes);
        }
        let proposed = data::new_cluster_id();
        match self
            .create_recursive(
                CLUSTER_ID_PATH,
                &data::encode_cluster_id(&proposed),
                &PERSISTENT,
            )
            .await
        {
            Ok(_) => {
                info!(cluster_id = %proposed, "created cluster id");
                Ok(proposed)
            }
            Err(ZkError::NodeExists { .. }) => match self.get_data_opt(CLUSTER_ID_PATH).await? {
                Some((bytes, _)) => decode(&bytes),
                None => Err(ZkError::NoNode {
                    path: CLUSTER_ID_PATH.to_string(),
                }),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chroot_index;

    #[test]
    fn chroot_is_everything_from_the_first_slash() {
        assert_eq!(chroot_index("h1:2181,h2:2181/kafka"), Some(15));
        assert_eq!(chroot_index("h1:2181"), None);
        assert_eq!(chroot_index("tcp://h1:2181,h2:2181/a/b"), Some(21));
        assert_eq!(chroot_index("tcp://h1:2181"), None);
    }
}
