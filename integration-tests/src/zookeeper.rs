//! ZooKeeper for tests: a container from the locally built image `gregor/zookeeper:latest`
//! (see `scripts/build-images.sh`), started with testcontainers, plus client helpers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use zookeeper_client as zk;

/// Image name (built locally, never pulled).
pub const ZK_IMAGE_NAME: &str = "gregor/zookeeper";
/// Image tag.
pub const ZK_IMAGE_TAG: &str = "latest";
/// The line the image's entrypoint prints on stdout once the server answers clients.
pub const ZK_READY_LINE: &str = "gregor-zookeeper: serving";
/// The hint every "image missing / Docker unusable" error carries.
pub const BUILD_HINT: &str =
    "run `scripts/build-images.sh --only zookeeper` (needs a running Docker engine)";

/// How long one ZooKeeper request from the harness may take.
pub(crate) const ZK_OP_TIMEOUT: Duration = Duration::from_secs(15);

/// A standalone ZooKeeper server in a container, removed when this value is dropped (drop it
/// inside a tokio runtime).
pub struct ZooKeeper {
    container: ContainerAsync<GenericImage>,
    port: u16,
}

impl ZooKeeper {
    /// Starts a container from `gregor/zookeeper:latest` and waits until it serves clients.
    ///
    /// # Errors
    /// When Docker is unreachable, the image is missing (the message says how to build it) or
    /// the server does not come up within `startup_timeout`.
    pub async fn start(startup_timeout: Duration) -> Result<ZooKeeper> {
        check_image().await?;
        match Self::start_once(startup_timeout).await {
            Ok(zk) => Ok(zk),
            Err(e) => {
                // A JVM starting on a loaded 2-core machine occasionally misses the deadline;
                // one fresh container is worth a try before failing the test.
                eprintln!("harness: ZooKeeper container did not come up ({e:#}); retrying once");
                Self::start_once(startup_timeout).await
            }
        }
    }

    async fn start_once(startup_timeout: Duration) -> Result<ZooKeeper> {
        let image = GenericImage::new(ZK_IMAGE_NAME, ZK_IMAGE_TAG)
            .with_exposed_port(2181.tcp())
            .with_wait_for(WaitFor::message_on_stdout(ZK_READY_LINE));
        let container = image
            .with_label("org.gregor.harness", "zookeeper")
            .with_env_var("JVMFLAGS", "-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1")
            .with_startup_timeout(startup_timeout)
            .start()
            .await
            .with_context(|| {
                format!("starting a ZooKeeper container from {ZK_IMAGE_NAME}:{ZK_IMAGE_TAG} failed; {BUILD_HINT}")
            })?;
        let port = container
            .get_host_port_ipv4(2181.tcp())
            .await
            .context("reading the host port mapped to ZooKeeper's 2181")?;
        Ok(ZooKeeper { container, port })
    }

    /// `127.0.0.1:<mapped port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.0.1:<mapped port>` as a connect string (no chroot).
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// The container (to pause it, read its logs, …).
    pub fn container(&self) -> &ContainerAsync<GenericImage> {
        &self.container
    }
}

/// Fails with a clear message when Docker is unreachable or the image is not built.
async fn check_image() -> Result<()> {
    use testcontainers::bollard::Docker;
    let docker = Docker::connect_with_defaults()
        .map_err(|e| anyhow!("cannot connect to Docker ({e}); {BUILD_HINT}"))?;
    docker
        .ping()
        .await
        .map_err(|e| anyhow!("Docker engine does not answer ({e}); {BUILD_HINT}"))?;
    let reference = format!("{ZK_IMAGE_NAME}:{ZK_IMAGE_TAG}");
    if let Err(e) = docker.inspect_image(&reference).await {
        bail!("Docker image {reference} is not available ({e}); {BUILD_HINT}");
    }
    Ok(())
}

/// Connects a client (session timeout 30 s) to `connect` (`host:port[/chroot]`).
///
/// # Errors
/// When no session is established within 20 s.
pub async fn connect(connect: &str) -> Result<zk::Client> {
    let connector = zk::Client::connector().with_session_timeout(Duration::from_secs(30));
    tokio::time::timeout(Duration::from_secs(20), connector.connect(connect))
        .await
        .map_err(|_| anyhow!("timed out connecting to ZooKeeper at {connect}"))?
        .with_context(|| format!("connecting to ZooKeeper at {connect}"))
}

/// Creates `path` and its missing ancestors as persistent, open-ACL znodes.
///
/// # Errors
/// ZooKeeper errors other than "exists".
pub async fn mkdirs(client: &zk::Client, path: &str) -> Result<()> {
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    with_timeout(path, client.mkdir(path, &options)).await
}

/// Reads a znode: `None` when it does not exist.
///
/// # Errors
/// ZooKeeper errors other than "no node", or a timeout.
pub async fn get(client: &zk::Client, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>> {
    match with_timeout_raw(path, client.get_data(path)).await? {
        Ok(v) => Ok(Some(v)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(anyhow!("ZooKeeper get {path}: {e}")),
    }
}

/// Lists a znode's children: `None` when it does not exist.
///
/// # Errors
/// ZooKeeper errors other than "no node", or a timeout.
pub async fn children(client: &zk::Client, path: &str) -> Result<Option<Vec<String>>> {
    match with_timeout_raw(path, client.list_children(path)).await? {
        Ok(mut v) => {
            v.sort();
            Ok(Some(v))
        }
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(anyhow!("ZooKeeper list {path}: {e}")),
    }
}

/// Whether a znode exists (its stat if so).
///
/// # Errors
/// ZooKeeper errors or a timeout.
pub async fn stat(client: &zk::Client, path: &str) -> Result<Option<zk::Stat>> {
    with_timeout_raw(path, client.check_stat(path))
        .await?
        .map_err(|e| anyhow!("ZooKeeper exists {path}: {e}"))
}

async fn with_timeout<T>(
    path: &str,
    f: impl std::future::Future<Output = std::result::Result<T, zk::Error>>,
) -> Result<T> {
    with_timeout_raw(path, f)
        .await?
        .map_err(|e| anyhow!("ZooKeeper request on {path}: {e}"))
}

async fn with_timeout_raw<T>(path: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(ZK_OP_TIMEOUT, f)
        .await
        .map_err(|_| anyhow!("ZooKeeper request on {path} timed out after {ZK_OP_TIMEOUT:?}"))
}
