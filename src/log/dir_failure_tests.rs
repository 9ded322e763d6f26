//! Log-directory failure (KIP-112) in the log layer, with real I/O errors: a file the log must
//! create is made impossible to create (a directory stands at its path), so the error comes from
//! the kernel, not from a test hook. Whatever fails first, the directory is offline from then on,
//! the other directory keeps working, nothing is checkpointed into the failed one, and a restart
//! without the fault loads it again.

use super::tests::{batch_for, small_config, start_with, tp};
use super::*;
use std::path::{Path, PathBuf};

/// The first segment's `.index` path of `tp()` under `dir`; the deferred index file is created
/// at the log's first append, so a directory put there makes that append fail.
fn block_first_index(dir: &Path) {
    let index = dir
        .join(tp().to_string())
        .join("00000000000000000000.index");
    std::fs::create_dir_all(index).unwrap();
}

fn data_dirs(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("a"), root.join("b"))
}

#[tokio::test]
async fn an_io_error_takes_its_dir_offline_and_the_other_dir_serves_on() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = data_dirs(root.path());
    let mgr = start_with(&[a.clone(), b.clone()], small_config());
    let mut failures = mgr.take_failure_receiver().unwrap();
    assert!(mgr.take_failure_receiver().is_none(), "one receiver");
    // Fewest partitions, ties to the first listed: the log goes to `a`.
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    assert_eq!(log.dir().parent(), Some(a.as_path()));
    block_first_index(&a);

    let e = log.append_as_leader(batch_for(0, 1000), 0).unwrap_err();
    assert!(matches!(e, LogError::Io { .. }), "{e:?}");
    assert_eq!(failures.next().await, Some(a.clone()));
    assert_eq!(mgr.live_dirs(), vec![b.clone()]);
    assert_eq!(mgr.offline_dirs(), vec![a.clone()]);
    // From now on the log refuses everything, with the directory named.
    for e in [
        log.append_as_leader(batch_for(1, 1000), 0).unwrap_err(),
        log.read(0, 1024, None, true).unwrap_err(),
        log.flush().unwrap_err(),
        log.roll().unwrap_err(),
        log.truncate_to(0).unwrap_err(),
    ] {
        assert!(
            matches!(&e, LogError::DirOffline { dir, .. } if dir == &a),
            "{e:?}"
        );
    }
    assert_eq!(log.recovery_point(), 0);

    // The replica manager's step: the manager forgets the directory's logs.
    assert_eq!(mgr.handle_dir_failure(&a), vec![tp()]);
    assert!(mgr.get_log(&tp()).is_none());
    // A partition new to the cluster may be created on the healthy directory; one that is
    // not new may have its data on the failed one and is refused.
    let other = TopicPartition::new("orders", 1);
    let e = mgr
        .get_or_create_log_for(&other, small_config(), false)
        .unwrap_err();
    assert!(matches!(e, LogError::DirOffline { .. }), "{e:?}");
    let moved = mgr
        .get_or_create_log_for(&other, small_config(), true)
        .unwrap();
    assert_eq!(moved.dir().parent(), Some(b.as_path()));
    moved.append_as_leader(batch_for(0, 1000), 0).unwrap();

    // Checkpoints and shutdown leave the failed directory alone: no clean-shutdown marker
    // there, so its logs are recovered at the next start.
    mgr.checkpoint_recovery_points().unwrap();
    mgr.checkpoint_log_start_offsets().unwrap();
    assert!(!a.join("recovery-point-offset-checkpoint").exists());
    assert!(b.join("recovery-point-offset-checkpoint").exists());
    mgr.shutdown().unwrap();
    assert!(!a.join(CLEAN_SHUTDOWN_FILE).exists());
    assert!(b.join(CLEAN_SHUTDOWN_FILE).exists());

    // Restarted with the fault repaired, both directories and both logs are back.
    std::fs::remove_dir(a.join(tp().to_string()).join("00000000000000000000.index")).unwrap();
    let mgr = start_with(&[a.clone(), b.clone()], small_config());
    assert_eq!(mgr.live_dirs(), vec![a.clone(), b.clone()]);
    assert_eq!(mgr.get_log(&tp()).unwrap().log_end_offset(), 0);
    assert_eq!(mgr.get_log(&other).unwrap().log_end_offset(), 2);
    mgr.get_log(&tp())
        .unwrap()
        .append_as_leader(batch_for(0, 1000), 0)
        .unwrap();
    mgr.shutdown().unwrap();
}

#[tokio::test]
async fn a_dir_that_fails_at_start_up_is_offline_and_the_broker_starts_on_the_others() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = data_dirs(root.path());
    start_with(&[a.clone(), b.clone()], small_config())
        .shutdown()
        .unwrap();
    // meta.properties cannot be read (a directory stands there): an I/O error, not a
    // mismatch.
    std::fs::remove_file(b.join("meta.properties")).unwrap();
    std::fs::create_dir(b.join("meta.properties")).unwrap();
    let mgr = start_with(&[a.clone(), b.clone()], small_config());
    assert_eq!(mgr.live_dirs(), vec![a.clone()]);
    let mut failures = mgr.take_failure_receiver().unwrap();
    assert_eq!(failures.next().await, Some(b.clone()));
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    assert_eq!(log.dir().parent(), Some(a.as_path()));
    mgr.shutdown().unwrap();

    // With every directory failing the manager does not start, and says why.
    std::fs::remove_file(a.join("meta.properties")).unwrap();
    std::fs::create_dir(a.join("meta.properties")).unwrap();
    let per_topic = small_config();
    let e = LogManager::startup(&[a, b], 1, "cluster-a", small_config(), &move |_| {
        per_topic.clone()
    })
    .unwrap_err();
    assert!(matches!(e, LogError::AllDirsOffline), "{e:?}");
}

#[test]
fn a_failed_fsync_elsewhere_in_the_dir_stops_the_recovery_point() {
    // Linux clears the error after reporting it once, so a second fsync of the same data can
    // succeed; the recovery point must not move once any error has been seen.
    let root = tempfile::tempdir().unwrap();
    let (a, _) = data_dirs(root.path());
    let mgr = start_with(std::slice::from_ref(&a), small_config());
    let log = mgr.get_or_create_log(&tp(), small_config()).unwrap();
    log.append_as_leader(batch_for(0, 1000), 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    // The error is reported the way every log-layer I/O error is, on a file of the dir.
    let eio = std::io::Error::from_raw_os_error(libc::EIO);
    let _ = LogError::io(&log.dir().join("00000000000000000000.log"), eio);
    assert!(log.flush().is_err());
    assert_eq!(log.recovery_point(), 0, "no advance after an I/O error");
}
