//! Test helper: a real standalone ZooKeeper (Debian's 3.8 package) run as a child process.
//!
//! One server is shared by the tests running at the same time (each test works under its own
//! chroot) and is stopped when the last of them drops it. The JVM runs under a small `sh`
//! guard that kills it as soon as our end of its stdin closes, so the server also dies if the
//! test binary is killed without unwinding.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::KafkaZkClient;

/// Debian's `CLASSPATH` from `/etc/zookeeper/conf/environment`; `zookeeper.jar`'s manifest
/// pulls in the dependency jars. Override with `ZK_TEST_CLASSPATH`.
const DEFAULT_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts java (`$JAVA` if set) in the background, prints its pid, then waits for EOF on stdin
/// and kills it.
const GUARD_SCRIPT: &str = r#""${JAVA:-java}" -Xmx256m -XX:TieredStopAtLevel=1 -cp "$1" "$2" "$3" </dev/null >"$4" 2>&1 &
pid=$!
echo "$pid"
while read -r _line; do :; done
kill "$pid" 2>/dev/null
wait "$pid"
"#;

fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot find a free port: {e}"),
    }
}

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
    fn spawn(classpath: &str, cfg_path: &Path, log_path: &Path) -> Self {
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("zk-guard")
            .arg(classpath)
            .arg(MAIN_CLASS)
            .arg(cfg_path)
            .arg(log_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut guard = match spawned {
            Ok(child) => child,
            Err(e) => panic!("cannot start ZooKeeper (is java installed?): {e}"),
        };
        let stdin = guard.stdin.take();
        let mut pid_line = String::new();
        if let Some(out) = guard.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut pid_line);
        }
        let java_pid = pid_line.trim().parse().unwrap_or(0);
        Self {
            guard,
            stdin,
            java_pid,
        }
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
pub(crate) struct ZkServer {
    port: u16,
    classpath: String,
    process: Process,
    dir: tempfile::TempDir,
}

impl ZkServer {
    /// Writes a `zoo.cfg` into a temp dir and starts the server; panics (test setup failure)
    /// if it does not answer `ruok` in time.
    pub(crate) async fn start() -> Self {
        let dir = match tempfile::Builder::new().prefix("gregor-zk-").tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temp dir for ZooKeeper: {e}"),
        };
        let port = free_port();
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
        if let Err(e) =
            std::fs::create_dir_all(&data_dir).and_then(|()| std::fs::write(&cfg_path, cfg))
        {
            panic!("cannot write {}: {e}", cfg_path.display());
        }
        let classpath =
            std::env::var("ZK_TEST_CLASSPATH").unwrap_or_else(|_| DEFAULT_CLASSPATH.to_string());
        let process = Process::spawn(&classpath, &cfg_path, &dir.path().join("zookeeper.log"));
        let server = Self {
            port,
            classpath,
            process,
            dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while four_letter(self.port, "ruok").await.as_deref() != Some("imok") {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("zookeeper.log"))
                    .unwrap_or_default();
                panic!(
                    "ZooKeeper did not start on port {} (classpath {}):\n{log}",
                    self.port, self.classpath
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server, wipes its data and starts an empty one on the same port. Every
    /// session is then unknown to the server, so reconnecting clients are told it expired:
    /// a deterministic way to expire sessions.
    pub(crate) async fn restart_empty(&mut self) {
        self.process.stop();
        let data_dir = self.dir.path().join("data");
        if let Err(e) =
            std::fs::remove_dir_all(&data_dir).and_then(|()| std::fs::create_dir_all(&data_dir))
        {
            panic!("cannot wipe {}: {e}", data_dir.display());
        }
        let dir = self.dir.path();
        self.process = Process::spawn(
            &self.classpath,
            &dir.join("zoo.cfg"),
            &dir.join("zookeeper.log"),
        );
        self.wait_ready().await;
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn connect_string(&self) -> String {
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
pub(crate) async fn shared_server() -> Arc<ZkServer> {
    let mut slot = SHARED.lock().await;
    if let Some(server) = slot.upgrade() {
        return server;
    }
    let server = Arc::new(ZkServer::start().await);
    *slot = Arc::downgrade(&server);
    server
}

/// A chroot no other test uses.
pub(crate) fn unique_chroot() -> String {
    format!("/gregor-test/{}", uuid::Uuid::new_v4().simple())
}

/// Default timeouts for test sessions.
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// A client on `chroot` of `server` with start-up paths created.
pub(crate) async fn client(server: &ZkServer, chroot: &str) -> KafkaZkClient {
    let connect = format!("{}{chroot}", server.connect_string());
    let client = match KafkaZkClient::connect(&connect, SESSION_TIMEOUT, CONNECTION_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => panic!("connect {connect}: {e}"),
    };
    if let Err(e) = client.create_top_level_paths().await {
        panic!("create_top_level_paths: {e}");
    }
    client
}
