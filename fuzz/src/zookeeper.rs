//! A real ZooKeeper (Debian's package, `/usr/share/java/zookeeper.jar`) as a child process of the
//! fuzzer, so the request path runs against the same coordination service as a real broker.
//!
//! This is the approach of `integration-tests/src/local_zk.rs`, written again here so that the
//! fuzz crate does not pull in the integration tests' dependencies (rdkafka's C library,
//! testcontainers) and build them with sanitizer flags. The JVM runs under a small `sh` guard
//! that kills it when our end of its stdin closes, so ZooKeeper also goes when libFuzzer kills
//! the process (a crash, a timeout, `-max_total_time`) without unwinding. Its data lives in a
//! temporary directory on `/dev/shm` when there is one, with `forceSync=no`: the fuzzer does
//! not need durability and every fsync would slow an execution down.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's `CLASSPATH` (`/etc/zookeeper/conf/environment`); `zookeeper.jar`'s manifest names
/// the dependency jars. Override with `ZK_TEST_CLASSPATH`, as the integration tests do.
const DEFAULT_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts java (`$JAVA` if set) in the background, prints its pid, then waits for EOF on stdin
/// and kills it.
const GUARD_SCRIPT: &str = r#""${JAVA:-java}" -Xmx512m -XX:TieredStopAtLevel=1 -Dzookeeper.forceSync=no -cp "$1" "$2" "$3" </dev/null >"$4" 2>&1 &
pid=$!
echo "$pid"
while read -r _line; do :; done
kill "$pid" 2>/dev/null
wait "$pid"
"#;

/// A running standalone ZooKeeper on 127.0.0.1.
pub struct ZooKeeper {
    port: u16,
    guard: Child,
    stdin: Option<ChildStdin>,
    java_pid: u32,
    dir: tempfile::TempDir,
}

/// Every scratch directory's name starts with this.
const SCRATCH_PREFIX: &str = "gregor-fuzz-";
/// The file in a scratch directory naming the process that made it.
const OWNER_FILE: &str = "owner.pid";

/// A temporary directory on tmpfs if the machine has one (cheap fsyncs), else in `$TMPDIR`.
///
/// libFuzzer ends the process with `exit()` (and a crash with `abort()`), so the directories
/// held in statics are never dropped; each records its owner's pid, and directories of owners
/// that are gone are removed here, before a new one is made.
pub fn scratch_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    remove_orphans(&parent);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{prefix}"))
        .tempdir_in(&parent)?;
    std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())?;
    Ok(dir)
}

/// Removes the scratch directories in `parent` whose owner process no longer exists.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        // A directory without an owner yet may be being made right now: leave it.
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A port nobody listens on right now (the OS picks it).
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// A four-letter command's answer, or `None` (a starting server accepts long before it answers).
fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ZooKeeper {
    /// Starts a server on a free port and waits until it answers `ruok`.
    ///
    /// # Errors
    /// A message naming what failed (no java, no ZooKeeper jar, no answer within 90 s with the
    /// tail of its log).
    pub fn start() -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port for ZooKeeper: {e}"))?;
        let dir = scratch_dir("zk-")
            .map_err(|e| format!("cannot create a directory for ZooKeeper: {e}"))?;
        let data_dir = dir.path().join("data");
        let cfg_path = dir.path().join("zoo.cfg");
        let log_path = dir.path().join("zookeeper.log");
        let cfg = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n\
             minSessionTimeout=1000\nmaxSessionTimeout=60000\n",
            data_dir.display()
        );
        std::fs::create_dir_all(&data_dir)
            .and_then(|()| std::fs::write(&cfg_path, cfg))
            .map_err(|e| format!("cannot write {}: {e}", cfg_path.display()))?;
        let classpath =
            std::env::var("ZK_TEST_CLASSPATH").unwrap_or_else(|_| DEFAULT_CLASSPATH.to_string());
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("zk-guard")
            .arg(&classpath)
            .arg(MAIN_CLASS)
            .arg(&cfg_path)
            .arg(&log_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start ZooKeeper's guard shell: {e}"))?;
        let stdin = guard.stdin.take();
        let mut pid_line = String::new();
        if let Some(out) = guard.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut pid_line);
        }
        let server = Self {
            port,
            guard,
            stdin,
            java_pid: pid_line.trim().parse().unwrap_or(0),
            dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while four_letter(port, "ruok").as_deref() != Some("imok") {
            if Instant::now() > deadline {
                return Err(format!(
                    "ZooKeeper did not answer on port {port} within {STARTUP_TIMEOUT:?} \
                     (classpath {classpath}; is the zookeeper package installed?):\n{}",
                    tail(&log_path, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// `127.0.0.1:<port>`, to which a broker appends its chroot.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's answer to a four-letter command (`cons`, `mntr`, …), for the statistics.
    pub fn four_letter(&self, cmd: &str) -> Option<String> {
        four_letter(self.port, cmd)
    }

    /// Where the server's log is.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("zookeeper.log")
    }
}

impl Drop for ZooKeeper {
    /// Closing stdin makes the guard kill java; if the guard hangs, kill what we started, by pid.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.guard.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
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

/// Deletes `root` and everything under it (a replaced broker's chroot), deepest first; znodes
/// already gone are fine. Without this a long run would fill ZooKeeper's heap with the topics
/// and partition states of every broker the fuzzer wore out.
pub async fn remove_tree(client: &zookeeper_client::Client, root: &str) {
    let mut paths = vec![root.to_string()];
    let mut i = 0;
    while i < paths.len() {
        if let Ok(children) = client.list_children(&paths[i]).await {
            let parent = paths[i].clone();
            paths.extend(children.into_iter().map(|c| format!("{parent}/{c}")));
        }
        i += 1;
    }
    for path in paths.iter().rev() {
        let _ = client.delete(path, None).await;
    }
}
