//! The process's limit on open file descriptors (`RLIMIT_NOFILE`).
//!
//! A broker holds one descriptor per log segment (its `.log`; the indexes are memory-mapped and
//! their descriptors closed), one per connection and a few more, so a broker with many partitions
//! needs far more than the usual soft limit of 1,024. As Kafka's operators do with `ulimit -n`,
//! the broker raises its soft limit to the hard limit at start ([`raise_soft_to_hard`]), and when
//! an open still fails with EMFILE the error names the limit ([`describe_exhaustion`]).

/// Soft and hard `RLIMIT_NOFILE`; `u64::MAX` stands for "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// The current limit, or `None` if it cannot be read.
pub fn current() -> Option<FdLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable `struct rlimit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    // `rlim_t` is `u64` on the Linux targets this broker runs on.
    (rc == 0).then_some(FdLimit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
    })
}

/// Raises the soft limit to the hard one; returns the limit before and after.
///
/// # Errors
/// When the limit cannot be read or `setrlimit` refuses (the OS error).
pub fn raise_soft_to_hard() -> std::io::Result<(FdLimit, FdLimit)> {
    let before = current().ok_or_else(std::io::Error::last_os_error)?;
    if before.soft >= before.hard {
        return Ok((before, before));
    }
    let rl = libc::rlimit {
        rlim_cur: before.hard,
        rlim_max: before.hard,
    };
    // SAFETY: `rl` is a valid `struct rlimit`; raising the soft limit up to the hard one needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let after = current().ok_or_else(std::io::Error::last_os_error)?;
    Ok((before, after))
}

fn show(n: u64) -> String {
    if n == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        n.to_string()
    }
}

/// For an error caused by running out of descriptors (EMFILE for this process, ENFILE for the
/// whole system), the sentence telling the operator which limit was hit and how to raise it;
/// `None` for any other error.
pub fn describe_exhaustion(e: &std::io::Error) -> Option<String> {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            let limit = match current() {
                Some(l) => format!("soft {}, hard {}", show(l.soft), show(l.hard)),
                None => "unknown".to_string(),
            };
            Some(format!(
                "this process reached its open-file limit ({limit}); the broker holds one \
                 descriptor per log segment plus one per connection: raise the limit \
                 (`ulimit -n` before starting, or LimitNOFILE= in the systemd unit)"
            ))
        }
        Some(libc::ENFILE) => {
            Some("the system-wide open-file table is full: raise fs.file-max (sysctl)".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_readable_and_raising_keeps_soft_at_most_hard() {
        let Some(limit) = current() else {
            panic!(
                "getrlimit(RLIMIT_NOFILE) failed: {}",
                std::io::Error::last_os_error()
            );
        };
        assert!(limit.soft <= limit.hard, "{limit:?}");
        let (before, after) = match raise_soft_to_hard() {
            Ok(r) => r,
            Err(e) => panic!("raising the soft limit: {e}"),
        };
        assert!(
            before.soft <= after.soft && after.soft == after.hard,
            "{before:?} {after:?}"
        );
    }

    #[test]
    fn only_descriptor_exhaustion_is_described() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let text = describe_exhaustion(&emfile).unwrap_or_default();
        assert!(
            text.contains("open-file limit (soft ") && text.contains("ulimit -n"),
            "{text}"
        );
        let enfile = std::io::Error::from_raw_os_error(libc::ENFILE);
        assert!(describe_exhaustion(&enfile).is_some_and(|t| t.contains("fs.file-max")));
        let other = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_exhaustion(&other), None);
    }
}
