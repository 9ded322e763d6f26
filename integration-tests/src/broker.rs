//! One broker of a test cluster: its files (config, data dir, log), its ZooKeeper proxy and its
//! child process, with the signals the fault-injection API sends.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::proxy::TcpProxy;

/// Static facts about one broker; stable across restarts.
#[derive(Debug)]
pub(crate) struct BrokerSpec {
    pub id: i32,
    pub port: u16,
    /// The `CONTROL` listener's port when the cluster runs a control plane (KIP-291).
    pub control_port: Option<u16>,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub rust_log: String,
}

impl BrokerSpec {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_port
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }
}

/// A broker: spec, ZooKeeper proxy, and the current child process (if started).
pub(crate) struct Broker {
    pub spec: BrokerSpec,
    pub proxy: TcpProxy,
    proc: Mutex<ProcState>,
}

#[derive(Default)]
struct ProcState {
    child: Option<Child>,
    paused: bool,
    starts: u32,
    last_exit: Option<ExitStatus>,
}

impl Broker {
    pub fn new(spec: BrokerSpec, proxy: TcpProxy) -> Broker {
        Broker {
            spec,
            proxy,
            proc: Mutex::new(ProcState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, ProcState> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `server.properties` (keys in order; a later duplicate replaces an earlier one).
    pub fn write_config(&self, props: &[(String, String)]) -> Result<()> {
        let mut merged: Vec<(String, String)> = Vec::new();
        for (k, v) in props {
            match merged.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = v.clone(),
                None => merged.push((k.clone(), v.clone())),
            }
        }
        let mut text = format!(
            "# written by the gregor integration-test harness for broker {}\n",
            self.spec.id
        );
        for (k, v) in merged {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::create_dir_all(self.spec.data_dir())
            .with_context(|| format!("creating {}", self.spec.data_dir().display()))?;
        std::fs::write(self.spec.config_path(), text)
            .with_context(|| format!("writing {}", self.spec.config_path().display()))
    }

    /// Starts the process unless it runs. Does not wait for anything.
    pub fn spawn(&self) -> Result<u32> {
        let mut st = self.state();
        if let Some(pid) = running_pid(&mut st) {
            return Ok(pid);
        }
        st.starts += 1;
        let log_path = self.spec.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "===== harness: starting broker {} (start #{}): {} broker --config {}",
            self.spec.id,
            st.starts,
            self.spec.bin.display(),
            self.spec.config_path().display()
        )
        .with_context(|| format!("writing {}", log_path.display()))?;
        let stdout = log.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new(&self.spec.bin);
        cmd.arg("broker")
            .arg("--config")
            .arg(self.spec.config_path())
            .env("RUST_LOG", &self.spec.rust_log)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the broker when
        // the thread that spawned it dies (see `spawn_from_long_lived_thread`), so brokers never
        // outlive a crashed test process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_long_lived_thread(cmd).with_context(|| {
            format!(
                "spawning {} for broker {}",
                self.spec.bin.display(),
                self.spec.id
            )
        })?;
        let pid = child.id();
        st.child = Some(child);
        st.paused = false;
        st.last_exit = None;
        Ok(pid)
    }

    /// The pid if the process runs (reaps it if it exited).
    pub fn pid(&self) -> Option<u32> {
        running_pid(&mut self.state())
    }

    /// How the last process exited, once it did.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut st = self.state();
        let _ = running_pid(&mut st);
        st.last_exit
    }

    /// Sends a signal to the running process.
    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let mut st = self.state();
        let pid = running_pid(&mut st)
            .ok_or_else(|| anyhow!("broker {} is not running", self.spec.id))?;
        send(pid, sig)?;
        match sig {
            libc::SIGSTOP => st.paused = true,
            libc::SIGCONT => st.paused = false,
            _ => {}
        }
        Ok(())
    }

    /// SIGKILL and reap. A broker that is not running is left alone.
    pub fn kill(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(child) = st.child.as_mut() {
            if child
                .try_wait()
                .context("polling a broker process")?
                .is_none()
            {
                child.kill().context("sending SIGKILL")?;
            }
            let status = child.wait().context("reaping a killed broker")?;
            st.last_exit = Some(status);
            st.child = None;
            st.paused = false;
        }
        Ok(())
    }

    /// SIGTERM (and SIGCONT if paused), then waits up to `timeout` for the exit; on timeout
    /// SIGKILLs it and fails.
    pub async fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        {
            let mut st = self.state();
            let pid = match running_pid(&mut st) {
                Some(pid) => pid,
                None => {
                    return st
                        .last_exit
                        .ok_or_else(|| anyhow!("broker {} was never started", self.spec.id));
                }
            };
            send(pid, libc::SIGTERM)?;
            if st.paused {
                send(pid, libc::SIGCONT)?;
                st.paused = false;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pid().is_none() {
                return self
                    .exit_status()
                    .ok_or_else(|| anyhow!("broker {} exit status lost", self.spec.id));
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill()?;
                bail!(
                    "broker {} did not exit within {timeout:?} of SIGTERM (killed it); log: {}",
                    self.spec.id,
                    self.spec.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::util::tail(&self.spec.log_path(), lines)
    }

    /// "broker 1 (pid 123, log /tmp/…/broker.log)" for error messages.
    pub fn describe(&self) -> String {
        let pid =
            self.pid()
                .map(|p| format!("pid {p}"))
                .unwrap_or_else(|| match self.exit_status() {
                    Some(status) => format!("exited: {status}"),
                    None => "not running".to_string(),
                });
        format!(
            "broker {} ({pid}, log {})",
            self.spec.id,
            self.spec.log_path().display()
        )
    }

    /// A failure report: description plus the log's last lines.
    pub fn failure_report(&self, lines: usize) -> String {
        format!(
            "{}\n--- last {lines} log lines ---\n{}",
            self.describe(),
            self.log_tail(lines)
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn running_pid(st: &mut ProcState) -> Option<u32> {
    let child = st.child.as_mut()?;
    match child.try_wait() {
        Ok(None) => Some(child.id()),
        Ok(Some(status)) => {
            st.last_exit = Some(status);
            st.child = None;
            st.paused = false;
            None
        }
        Err(_) => Some(child.id()),
    }
}

fn send(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) with a pid of our own, still unreaped child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("kill({pid}, {sig})"));
    }
    Ok(())
}

/// Spawns `cmd` from one thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, and tokio retires idle
/// blocking-pool threads (including workers that went through `block_in_place`); spawning from a
/// thread that never exits ties the brokers' lifetime to the test process instead.
fn spawn_from_long_lived_thread(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::SyncSender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the harness spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let gone = || std::io::Error::other("the harness spawner thread is gone");
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}
