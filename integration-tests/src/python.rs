//! A Python virtual environment holding the PyPI clients the tests drive — aiokafka,
//! kafka-python 3.x and the codec libraries both need — created on first use.
//!
//! Debian ships kafka-python 2.0 only, and neither aiokafka nor kafka-python 3.x; Kafka users
//! run those, so the tests install them from PyPI, pinned, into `<target>/py-venv` (or
//! `$GREGOR_PY_VENV`). Test processes run in parallel, so creation is serialised with an
//! exclusive `flock` on a file next to the venv, and a marker holding the requirements tells a
//! later run that the venv is complete and current.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::workspace_root;

/// What the venv holds, pinned to the versions the tests were written against.
pub const REQUIREMENTS: &[&str] = &[
    "aiokafka==0.14.0",
    "kafka-python==3.0.12",
    "cramjam==2.14.0",
    "lz4==4.4.5",
    "zstandard==0.25.0",
    "python-snappy==0.7.3",
];

/// The venv's directory: `$GREGOR_PY_VENV`, else `<target>/py-venv`.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GREGOR_PY_VENV") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("py-venv")
}

/// The venv's `python`, creating and filling the venv first if it is missing or stale.
///
/// # Errors
/// When no `python3` with the `venv` module is on PATH, or pip cannot install the
/// requirements (PyPI unreachable), with pip's output.
pub fn venv_python() -> Result<PathBuf> {
    let dir = venv_dir();
    let parent = dir.parent().context("venv directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let lock_path = parent.join("py-venv.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
    }
    let python = dir.join("bin/python");
    let marker = dir.join(".gregor-requirements");
    let wanted = REQUIREMENTS.join("\n");
    if python.is_file() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (install python3-venv, or a python3 with the venv module)",
    )?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install of the test clients from PyPI",
    )?;
    std::fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
