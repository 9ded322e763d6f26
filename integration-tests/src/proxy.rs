//! A TCP proxy on 127.0.0.1 that the harness can cut: every broker reaches ZooKeeper through one,
//! so a test can isolate a single broker from ZooKeeper while everything else keeps running.
//!
//! The proxy runs on a runtime of its own (one background worker thread shared by all proxies),
//! so a test that blocks its own thread — a synchronous client call, `std::thread::sleep` — does
//! not stall the brokers' ZooKeeper traffic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// The runtime all proxies run on; created on first use, lives as long as the process.
fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("harness-proxy")
        .enable_all()
        .build()
        .context("building the proxy runtime")?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// A cuttable TCP forwarder from `127.0.0.1:<port>` to a fixed target.
///
/// * [`TcpProxy::cut`]: closes every forwarded connection and stops listening, so new
///   connections are refused (`ECONNREFUSED`), as when a host is cut off.
/// * [`TcpProxy::heal`]: listens again on the same port.
///
/// Dropping the proxy closes everything.
pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

#[derive(Default)]
struct Shared {
    connections: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
}

struct State {
    acceptor: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(target: SocketAddr) -> Result<TcpProxy> {
        Self::start_on(target, 0).await
    }

    /// Starts a proxy to `target` on `127.0.0.1:port` (`0` = any free port).
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start_on(target: SocketAddr, port: u16) -> Result<TcpProxy> {
        let shared = Arc::new(Shared::default());
        let (acceptor, port) = spawn_acceptor(port, target, shared.clone()).await?;
        Ok(TcpProxy {
            port,
            target,
            shared,
            state: Mutex::new(State {
                acceptor: Some(acceptor),
            }),
        })
    }

    /// The port the proxy listens on (on 127.0.0.1); stable across cut and heal.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted (and forwarded) since the proxy started.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections being forwarded now.
    pub fn active_connections(&self) -> usize {
        let mut conns = lock(&self.shared.connections);
        conns.retain(|c| !c.is_finished());
        conns.len()
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        lock(&self.state).acceptor.is_none()
    }

    /// Stops listening (new connections are refused) and closes every forwarded connection.
    /// Returns once the listener and the connections are closed. Cutting twice is harmless.
    pub async fn cut(&self) {
        let acceptor = lock(&self.state).acceptor.take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            let _ = acceptor.await;
        }
        let conns: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.shared.connections));
        for conn in &conns {
            conn.abort();
        }
        for conn in conns {
            let _ = conn.await;
        }
    }

    /// Listens again on the same port. Healing a proxy that is not cut is harmless.
    ///
    /// # Errors
    /// When the port cannot be bound again (another process took it meanwhile).
    pub async fn heal(&self) -> Result<()> {
        if !self.is_cut() {
            return Ok(());
        }
        let (acceptor, _) = spawn_acceptor(self.port, self.target, self.shared.clone())
            .await
            .with_context(|| format!("re-binding proxy port {} while healing", self.port))?;
        let previous = lock(&self.state).acceptor.replace(acceptor);
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(acceptor) = lock(&self.state).acceptor.take() {
            acceptor.abort();
        }
        for conn in lock(&self.shared.connections).drain(..) {
            conn.abort();
        }
    }
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr())
            .field("target", &self.target)
            .field("cut", &self.is_cut())
            .finish()
    }
}

/// Locks a mutex, ignoring poisoning (the data are plain handles).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn spawn_acceptor(
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
) -> Result<(JoinHandle<()>, u16)> {
    let rt = runtime()?;
    // Bind on the proxy runtime so the listener is registered with its reactor.
    let listener = rt
        .spawn(async move {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
            socket.listen(1024)
        })
        .await
        .context("proxy runtime task failed")?
        .with_context(|| format!("binding proxy listener on 127.0.0.1:{port}"))?;
    let port = listener
        .local_addr()
        .context("reading the proxy's address")?
        .port();
    let handle = rt.spawn(accept_loop(listener, target, shared));
    Ok((handle, port))
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(e) => {
                tracing::warn!("proxy to {target}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = tokio::spawn(forward(inbound, target));
        let mut conns = lock(&shared.connections);
        conns.retain(|c| !c.is_finished());
        conns.push(conn);
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    let _ = inbound.set_nodelay(true);
    match TcpStream::connect(target).await {
        Ok(mut outbound) => {
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        }
        Err(e) => tracing::debug!("proxy: connecting to {target} failed: {e}"),
    }
}
