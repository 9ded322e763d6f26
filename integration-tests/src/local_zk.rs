//! A real standalone ZooKeeper (Debian's package) run as a child process, for tests of gregor's
//! ZooKeeper layer that need no Docker: start, wipe-and-restart on the same port (a
//! deterministic way to expire every session), start on a chosen port later than a client
//! began connecting.
//!
//! The tests running at the same time share one server ([`shared_server`]), each under its own
//! chroot ([`unique_chroot`]); it stops when the last of them drops it. The JVM runs under a small
//! `sh` guard that kills it as soon as our end of its stdin closes, so the server also dies if the
//! test binary is killed without unwinding.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gregor::zk::KafkaZkClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

use crate::util;

/// Debian's `CLASSPATH` from `/etc/zookeeper/conf/environment`; `zookeeper.jar`'s manifest
/// pulls in the dependency jars. Override with `ZK_TEST_CLASSPATH`.
const DEFAULT_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Default timeouts for test sessions.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Generous: the shared server may still be starting on a loaded machine.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts java (`$JAVA` if set) in the background, prints its pid, then waits for EOF on stdin
/// and kills it.
const GUARD_SCRIPT: &str = r#""${JAVA:-java}" -Xmx256m -XX:TieredStopAtLevel=1 -cp "$1" "$2" "$3" </dev/null >"$4" 2>&1 &
pid=$!
echo "$pid"
while read -r _line; do :; done
kill "$pid" 2>/dev/null
wait "$pid"
"#;

/// Sends a four-letter command; `None` until the server answers (a starting server may accept
/// the connection long before it replies, hence the timeout).
async fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(cmd.as_bytes()).await.ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.ok()?;
        Some(reply)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// The `sh` guard and the JVM it supervises.
struct Process {
    guard: Child,
    stdin: Option<ChildStdin>,
    java_pid: u32,
}

impl Process {
    fn spawn(classpath: &str, cfg_path: &Path, log_path: &Path) -> Result<Self> {
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("zk-guard")
            .arg(classpath)
            .arg(MAIN_CLASS)
            .arg(cfg_path)
            .arg(log_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start ZooKeeper (is java installed?)")?;
        let stdin = guard.stdin.take();
        let mut pid_line = String::new();
        if let Some(out) = guard.stdout.take() {
            BufReader::new(out)
                .read_line(&mut pid_line)
                .context("reading the ZooKeeper pid from its guard")?;
        }
        let java_pid = pid_line.trim().parse().unwrap_or(0);
        Ok(Self {
            guard,
            stdin,
            java_pid,
        })
    }

    /// Closing stdin makes the guard kill java and wait for it; if the guard hangs, kill what
    /// we started, by pid.
    fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.guard.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break,
            }
        }
        if self.java_pid != 0 {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(self.java_pid.to_string())
                .status();
        }
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

/// A running ZooKeeper server on 127.0.0.1.
pub struct ZkServer {
    port: u16,
    classpath: String,
    process: Process,
    dir: tempfile::TempDir,
}

impl ZkServer {
    /// Starts a server on a free port.
    ///
    /// # Errors
    /// When the server cannot be started or does not answer `ruok` within 60 s (the error
    /// carries its log).
    pub async fn start() -> Result<Self> {
        Self::start_on(util::free_port()?).await
    }

    /// Writes a `zoo.cfg` for `port` into a temp dir and starts the server there.
    ///
    /// # Errors
    /// As [`ZkServer::start`].
    pub async fn start_on(port: u16) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("gregor-zk-")
            .tempdir()
            .context("creating a temp dir for ZooKeeper")?;
        let data_dir = dir.path().join("data");
        let cfg_path = dir.path().join("zoo.cfg");
        // Short ticks allow 1 s sessions; maxClientCnxns=0 because parallel tests open many
        // sessions from one address.
        let cfg = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n\
             minSessionTimeout=1000\nmaxSessionTimeout=60000\n",
            data_dir.display()
        );
        std::fs::create_dir_all(&data_dir)
            .and_then(|()| std::fs::write(&cfg_path, cfg))
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let classpath =
            std::env::var("ZK_TEST_CLASSPATH").unwrap_or_else(|_| DEFAULT_CLASSPATH.to_string());
        let process = Process::spawn(&classpath, &cfg_path, &dir.path().join("zookeeper.log"))?;
        let server = Self {
            port,
            classpath,
            process,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while four_letter(self.port, "ruok").await.as_deref() != Some("imok") {
            if Instant::now() > deadline {
                let log = util::tail(&self.dir.path().join("zookeeper.log"), 40);
                bail!(
                    "ZooKeeper did not start on port {} within {STARTUP_TIMEOUT:?} (classpath {}):\n{log}",
                    self.port,
                    self.classpath
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the server, wipes its data and starts an empty one on the same port. Every
    /// session is then unknown to the server, so reconnecting clients are told it expired.
    ///
    /// # Errors
    /// When the data cannot be wiped or the new server does not start.
    pub async fn restart_empty(&mut self) -> Result<()> {
        self.process.stop();
        let data_dir = self.dir.path().join("data");
        std::fs::remove_dir_all(&data_dir)
            .and_then(|()| std::fs::create_dir_all(&data_dir))
            .with_context(|| format!("wiping {}", data_dir.display()))?;
        let dir = self.dir.path();
        self.process = Process::spawn(
            &self.classpath,
            &dir.join("zoo.cfg"),
            &dir.join("zookeeper.log"),
        )?;
        self.wait_ready().await
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server's JVM: its clients' requests then go
    /// unanswered on a connection that stays open, as with a stalled or partitioned server.
    pub fn pause(&self, paused: bool) -> Result<()> {
        let sig = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(sig)
            .arg(self.process.java_pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill {sig} {} failed", self.process.java_pid);
        }
        Ok(())
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.process.stop();
    }
}

static SHARED: tokio::sync::Mutex<Weak<ZkServer>> = tokio::sync::Mutex::const_new(Weak::new());

/// The server shared by concurrently running tests, started on first use.
///
/// # Errors
/// As [`ZkServer::start`].
pub async fn shared_server() -> Result<Arc<ZkServer>> {
    let mut slot = SHARED.lock().await;
    if let Some(server) = slot.upgrade() {
        return Ok(server);
    }
    let server = Arc::new(ZkServer::start().await?);
    *slot = Arc::downgrade(&server);
    Ok(server)
}

/// A chroot no other test uses.
pub fn unique_chroot() -> String {
    format!("/gregor-test/{}", util::unique_suffix())
}

/// gregor's client on `chroot` of `server`, with the start-up paths created.
///
/// # Errors
/// When the session cannot be opened or the paths cannot be created.
pub async fn client(server: &ZkServer, chroot: &str) -> Result<KafkaZkClient> {
    let connect = format!("{}{chroot}", server.connect_string());
    let client = KafkaZkClient::connect(&connect, SESSION_TIMEOUT, CONNECTION_TIMEOUT)
        .await
        .with_context(|| format!("connecting to {connect}"))?;
    client
        .create_top_level_paths()
        .await
        .context("creating the top-level paths")?;
    Ok(client)
}

/// A plain ZooKeeper client on `chroot` of `server` (which must exist), to look at znodes
/// independently of the code under test.
///
/// # Errors
/// When no session is established within [`CONNECTION_TIMEOUT`].
pub async fn raw_client(server: &ZkServer, chroot: &str) -> Result<zk::Client> {
    let connect = format!("{}{chroot}", server.connect_string());
    let connecting = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .connect(&connect);
    tokio::time::timeout(CONNECTION_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow!("timed out connecting to {connect}"))?
        .with_context(|| format!("connecting to {connect}"))
}
