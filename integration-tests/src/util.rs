//! Small helpers shared by the harness: free ports, locating the `gregor` binary, polling with a
//! deadline, reading the tail of a log file, unique names.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// Environment variable naming the broker binary the harness starts.
pub const GREGOR_BIN_ENV: &str = "GREGOR_BIN";

/// A TCP port on 127.0.0.1 that was free a moment ago, chosen below the kernel's ephemeral range.
///
/// A port found by binding port 0 comes from the ephemeral range, which every outgoing
/// connection draws from too: between its release and the broker's bind, any client connection
/// of a concurrently running test could take it ("Address already in use"). Below that range a
/// port only competes with other listeners, and tests spread over it at random.
///
/// # Errors
/// When binding a listener fails.
pub fn free_port() -> Result<u16> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FIRST: u16 = 10_000;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = ((u64::from(std::process::id()) << 32)
        ^ nanos
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15))
        | 1;
    if low > FIRST + 100 {
        for _ in 0..200 {
            // xorshift64: no dependency, and any spread will do.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = FIRST + (x % u64::from(low - FIRST)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the address of a bound listener")?
        .port())
}

/// Whether something accepts TCP connections on `addr` (200 ms connect timeout).
pub fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `gregor` binary to run: `$GREGOR_BIN`, else `<target>/debug/gregor`, else
/// `<target>/release/gregor`, where `<target>` is `$CARGO_TARGET_DIR` or `<workspace>/target`.
///
/// # Errors
/// When `$GREGOR_BIN` names a missing file, or no binary exists in the target directory.
pub fn gregor_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(GREGOR_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{GREGOR_BIN_ENV}={} does not exist; build it with `cargo build --bin gregor`",
            bin.display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let candidates = [target.join("debug/gregor"), target.join("release/gregor")];
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "no gregor binary at {} or {}: run `cargo build --bin gregor` or set {GREGOR_BIN_ENV}",
        candidates[0].display(),
        candidates[1].display()
    )
}

/// The last `lines` lines of a text file, or a note saying why it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A name unique to this process and call: `<pid>-<time>-<counter>` in hex.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every `interval` until it returns `Ok(Some(value))` or `timeout` passes.
/// An `Err` from `check` ends the wait at once.
///
/// # Errors
/// The first error of `check`, or a timeout error naming `what`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}
