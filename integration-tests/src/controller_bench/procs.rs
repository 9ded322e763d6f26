//! The broker processes of a `scripts/cluster.sh` cluster, seen from outside: pids from its pid
//! files, signals, liveness and descriptors from `/proc`, and restarts through `cluster.sh up`
//! (which restarts only what is not running, with the same id, config and data).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The cluster started by `scripts/cluster.sh` with its state under `state_dir`.
pub struct LocalCluster {
    pub script: PathBuf,
    pub state_dir: PathBuf,
    pub brokers: usize,
}

/// `/proc/<pid>/limits`' "Max open files" line.
#[derive(Debug, Clone, Copy)]
pub struct NoFile {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

fn parse_limit(word: &str) -> Option<u64> {
    word.parse().ok()
}

/// Whether `pid` runs and is not a zombie: the broker's parent is not this process, so it may
/// linger as a zombie until its reaper collects it.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `sig` to `pid`.
///
/// # Errors
/// When the signal cannot be delivered (the process is gone, or not ours).
pub fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid_t = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes plain integers and has no memory effects on this process.
    let rc = unsafe { libc::kill(pid_t, sig) };
    if rc != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// How long ago `pid` started: `/proc/uptime` minus the start time in `/proc/<pid>/stat`
/// (clock ticks since boot), so a restart is timed from the process, not from the script.
pub fn age(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3; the start time is field 22.
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (uptime - ticks / hz as f64).max(0.0),
    ))
}

/// Number of open descriptors of `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// RLIMIT_NOFILE in effect for `pid`.
pub fn nofile(pid: u32) -> Option<NoFile> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some(NoFile {
        soft: words.next().and_then(parse_limit),
        hard: words.next().and_then(parse_limit),
    })
}

/// Last `n` lines of `path` (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// A `cluster.sh up` run in the background.
pub struct Starting {
    child: Child,
}

impl Starting {
    /// Whether it has finished, and with what result (`None` while it runs).
    pub fn try_finished(&mut self) -> Option<bool> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.success()),
            Ok(None) => None,
            Err(_) => Some(false),
        }
    }

    /// Waits up to `timeout` for it to end (killing it after that: it is our own child) and
    /// returns its exit success and the tail of its stderr.
    pub async fn finish(mut self, timeout: Duration) -> Value {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(_)) => None,
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                None
            }
        };
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err)).await;
        }
        let lines: Vec<&str> = err.lines().collect();
        json!({
            "ok": status.is_some_and(|s| s.success()),
            "exit_code": status.and_then(|s| s.code()),
            "stderr_tail": lines[lines.len().saturating_sub(5)..],
        })
    }
}

impl LocalCluster {
    pub fn broker_dir(&self, id: i32) -> PathBuf {
        self.state_dir.join(format!("broker-{id}"))
    }

    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.broker_dir(id).join("data")
    }

    pub fn log_path(&self, id: i32) -> PathBuf {
        self.broker_dir(id).join("broker.log")
    }

    /// The pid `cluster.sh` recorded for broker `id`, if that process still runs.
    pub fn pid(&self, id: i32) -> Option<u32> {
        let text = std::fs::read_to_string(self.broker_dir(id).join("broker.pid")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Starts `cluster.sh up --no-build` for all brokers; it starts whichever is not running and
    /// returns once they registered. `start_timeout` becomes its `CLUSTER_START_TIMEOUT`.
    ///
    /// # Errors
    /// When the script cannot be spawned.
    pub fn start_missing(&self, start_timeout: Duration) -> Result<Starting> {
        let child = Command::new(&self.script)
            .args(["up", "--brokers", &self.brokers.to_string(), "--no-build"])
            .env("CLUSTER_DIR", &self.state_dir)
            .env("CLUSTER_START_TIMEOUT", start_timeout.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} up", self.script.display()))?;
        Ok(Starting { child })
    }

    /// Log directories of `topic`'s partitions in broker `id`'s data dir: `(live, renamed)`,
    /// where renamed ones (`<t>-<p>.<uuid>-delete`) wait for `file.delete.delay.ms`.
    pub fn topic_dirs(&self, id: i32, topic: &str) -> (usize, usize) {
        let Ok(entries) = std::fs::read_dir(self.data_dir(id)) else {
            return (0, 0);
        };
        let prefix = format!("{topic}-");
        let (mut live, mut renamed) = (0, 0);
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if rest.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty() {
                live += 1;
            } else if rest.ends_with("-delete") {
                renamed += 1;
            }
        }
        (live, renamed)
    }

    /// Descriptor counts and RLIMIT_NOFILE of every running broker.
    pub fn descriptors(&self, ids: &[i32]) -> Value {
        let mut out = serde_json::Map::new();
        for &id in ids {
            let v = match self.pid(id) {
                Some(pid) => {
                    let limit = nofile(pid);
                    json!({
                        "pid": pid,
                        "open_fds": open_fds(pid),
                        "nofile_soft": limit.and_then(|l| l.soft),
                        "nofile_hard": limit.and_then(|l| l.hard),
                    })
                }
                None => json!({"running": false}),
            };
            out.insert(id.to_string(), v);
        }
        Value::Object(out)
    }
}
