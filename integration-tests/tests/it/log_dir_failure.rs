//! Log-directory failure (KIP-112) on a real small filesystem: a tmpfs of a few MiB that the
//! test fills up. These tests mount, so they need root (as `.ci/run` runs); they fail, rather
//! than skip, where mounting is not allowed.
//!
//! - In-process: the log layer appends into a nearly full filesystem, over and over with a
//!   different amount of space left each time, so that sometimes the segment write and
//!   sometimes an index entry is the one that meets the full disk. Index entries are stores
//!   into a memory mapping; over a sparse page on a full filesystem such a store kills the
//!   process with SIGBUS (the test binary itself here), so surviving every round is the check.
//! - A 3-broker cluster: one broker's second log directory is the small filesystem. When it
//!   fills, the broker stays up, the directory goes offline, leadership of its partitions moves
//!   to the other brokers, acks=all writes go on with nothing acknowledged lost, and once space
//!   is freed and the broker restarted it rejoins every ISR.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gregor::log::{LogConfig, LogError, LogManager, TopicPartition};
use gregor::protocol::batch_builder::build_batch;
use integration_tests::util::poll_until;
use integration_tests::ClusterOptions;
use rdkafka::admin::TopicReplication;

use crate::clients;
use crate::replication::{check_acked_with_duplicates, leader_of};

/// A tmpfs of `size` bytes mounted on a fresh directory; unmounted when dropped.
struct SmallFs {
    mount_point: PathBuf,
    _holder: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> anyhow::Result<SmallFs> {
        let holder = tempfile::tempdir()?;
        let mount_point = holder.path().join("small");
        std::fs::create_dir(&mount_point)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .output()
            .context("running mount")?;
        ensure!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (these tests need root): {}",
            mount_point.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(SmallFs {
            mount_point,
            _holder: holder,
        })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Writes `filler` until the filesystem is full, then gives back `leave` bytes.
    fn fill_leaving(&self, leave: u64) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        let filler = self.mount_point.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).context("filling the small filesystem"),
            }
        }
        let len = f.metadata()?.len();
        f.set_len(len.saturating_sub(leave))?;
        Ok(filler)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

fn record_batch(i: usize) -> bytes::BytesMut {
    let value = format!("{i:08}-{}", "v".repeat(600));
    build_batch(
        0,
        1_700_000_000_000 + i as i64,
        &[(Some(b"k".as_slice()), Some(value.as_bytes()))],
    )
}

/// Space left from 0 to 256 KiB, a page more each round: beyond the two indexes' 64 KiB
/// reservations, the segment write is the one to fail.
const ROUNDS: u64 = 64;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_filesystem_is_an_error_never_a_crash() -> anyhow::Result<()> {
    let config = LogConfig {
        // An index entry for nearly every batch, and a time-index entry with each.
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for leave_pages in 0..ROUNDS {
        let fs = SmallFs::mount("2m")?;
        let dir = fs.path().join("data");
        let per_topic = config.clone();
        let mgr = LogManager::startup(
            std::slice::from_ref(&dir),
            1,
            "small-fs",
            config.clone(),
            &move |_| per_topic.clone(),
        )?;
        let tp = TopicPartition::new("full", 0);
        let log = mgr.get_or_create_log(&tp, config.clone())?;
        log.append_as_leader(record_batch(0), 0)?;
        fs.fill_leaving(leave_pages * 4096)?;
        let mut appended = 1usize;
        let error = loop {
            match log.append_as_leader(record_batch(appended), 0) {
                Ok(_) => appended += 1,
                Err(e) => break e,
            }
            ensure!(
                appended < 100_000,
                "a full filesystem never refused an append"
            );
        };
        // The first error is the I/O error itself; the directory is offline from then on.
        ensure!(
            matches!(error, LogError::Io { .. } | LogError::DirOffline { .. }),
            "unexpected error on a full disk: {error}"
        );
        ensure!(
            mgr.live_dirs().is_empty(),
            "the directory should be offline after: {error}"
        );
        let again = log
            .append_as_leader(record_batch(appended), 0)
            .expect_err("an offline directory takes no appends");
        ensure!(matches!(again, LogError::DirOffline { .. }), "{again}");
        // Either the segment write met the full disk, or reserving blocks for an index entry
        // did first (that append still succeeded, without the entry) and the next was refused.
        let first = match &error {
            LogError::Io { path, .. } => format!(
                "I/O error on the {}",
                path.extension().and_then(|e| e.to_str()).unwrap_or("?")
            ),
            LogError::DirOffline { .. } => "index reservation failed first".to_string(),
            other => other.to_string(),
        };
        *outcomes.entry(first).or_default() += 1;
        drop(log);
        let _ = mgr.shutdown();
    }
    eprintln!("{ROUNDS} rounds on a nearly full 2 MiB tmpfs, first errors: {outcomes:?}");
    ensure!(
        outcomes.len() >= 2,
        "both the segment write and an index reservation should have met the full disk: {outcomes:?}"
    );
    Ok(())
}

/// Which partitions of `topic` have their log under `dir`.
fn partitions_in(dir: &Path, topic: &str) -> anyhow::Result<Vec<i32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if let Some(p) = name
            .strip_prefix(&format!("{topic}-"))
            .and_then(|p| p.parse().ok())
        {
            out.push(p);
        }
    }
    out.sort_unstable();
    Ok(out)
}

async fn isr(
    cluster: &integration_tests::Cluster,
    topic: &str,
    p: i32,
) -> anyhow::Result<Vec<i64>> {
    let state = cluster
        .zk_get_json(&format!("/brokers/topics/{topic}/partitions/{p}/state"))
        .await?
        .context("state znode missing")?;
    Ok(state["isr"]
        .as_array()
        .context("isr")?
        .iter()
        .filter_map(|v| v.as_i64())
        .collect())
}

const PARTITIONS: i32 = 6;

/// Polls until the ISR of every partition of `topic` satisfies `ok`.
async fn wait_every_isr(
    cluster: &integration_tests::Cluster,
    topic: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&[i64]) -> bool,
) -> anyhow::Result<()> {
    let ok = &ok;
    poll_until(
        &format!("every ISR of {topic} {what}"),
        timeout,
        Duration::from_millis(200),
        || async move {
            for p in 0..PARTITIONS {
                if !ok(&isr(cluster, topic, p).await?) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_whose_log_dir_fills_up_hands_its_partitions_over_and_rejoins(
) -> anyhow::Result<()> {
    let fs = SmallFs::mount("16m")?;
    let healthy = tempfile::tempdir()?;
    let victim = 0;
    let dirs = format!(
        "{},{}",
        healthy.path().join("data").display(),
        fs.path().join("data").display()
    );
    let cluster = clients::start_cluster(
        ClusterOptions::new(3).with_broker_override(victim, "log.dirs", dirs),
    )
    .await?;
    let bootstrap = cluster.bootstrap();
    let topic = "filling";
    // Every broker leads two partitions (preferred leaders), and holds all six.
    let assignment: Vec<Vec<i32>> = (0..PARTITIONS)
        .map(|p| (0..3).map(|r| (p + r) % 3).collect())
        .collect();
    let refs: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    clients::create_topic_with(
        &bootstrap,
        topic,
        PARTITIONS,
        TopicReplication::Variable(&refs),
        &[("min.insync.replicas", "2"), ("segment.bytes", "1048576")],
    )
    .await?;
    wait_every_isr(
        &cluster,
        topic,
        "to be full",
        Duration::from_secs(30),
        |isr| isr.len() == 3,
    )
    .await?;
    let on_small = partitions_in(&fs.path().join("data"), topic)?;
    let on_healthy = partitions_in(&healthy.path().join("data"), topic)?;
    eprintln!(
        "broker {victim}: partitions {on_small:?} on the small fs, {on_healthy:?} on the other dir"
    );
    ensure!(
        !on_small.is_empty() && !on_healthy.is_empty(),
        "both directories should hold partitions"
    );
    let led_on_small: Vec<i32> = {
        let mut v = Vec::new();
        for p in &on_small {
            if leader_of(&cluster, topic, *p).await? == victim {
                v.push(*p);
            }
        }
        v
    };

    // Produce acks=all all through the failure; leave ~1.5 MiB so it comes soon.
    let filler = fs.fill_leaving(1536 * 1024)?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let producer = crate::replication::durable_producer(&bootstrap)?;
    let producing = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<usize> = (i..i + 200).collect();
                i += 200;
                let value_pad = "p".repeat(400);
                let mut futures = Vec::new();
                for n in &batch {
                    let key = format!("key-{n}");
                    let value = format!("value-{n}");
                    match producer.send_result(
                        rdkafka::producer::FutureRecord::to(topic)
                            .key(&key)
                            .payload(&value)
                            .headers(rdkafka::message::OwnedHeaders::new().insert(
                                rdkafka::message::Header {
                                    key: "pad",
                                    value: Some(value_pad.as_bytes()),
                                },
                            )),
                    ) {
                        Ok(f) => futures.push((*n, f)),
                        Err((e, _)) => bail!("enqueue {n}: {e}"),
                    }
                }
                for (n, f) in futures {
                    match f.await {
                        Ok(Ok(d)) => acked
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push((d.partition, d.offset, n)),
                        Ok(Err(_)) => *failed.lock().map_err(|_| anyhow::anyhow!("poisoned"))? += 1,
                        Err(_) => bail!("delivery of {n} cancelled"),
                    }
                }
            }
            Ok(())
        })
    };

    // The directory fills up and goes offline: the broker says so and stays up.
    let offline_seen = poll_until(
        "the victim to take its small log dir offline",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            ensure!(
                cluster.is_running(victim),
                "broker {victim} exited: {}",
                cluster.log_tail(victim, 30)
            );
            Ok(cluster
                .log_tail(victim, 400)
                .contains("log directory is offline")
                .then(Instant::now))
        },
    )
    .await?;
    // Leadership of what it led there moves, and it leaves those ISRs.
    let moved_in = poll_until(
        "leadership and ISR of the offline replicas to move",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            for p in &on_small {
                let isr = isr(&cluster, topic, *p).await?;
                if isr.contains(&(victim as i64)) || leader_of(&cluster, topic, *p).await? == victim
                {
                    return Ok(None);
                }
            }
            Ok(Some(offline_seen.elapsed()))
        },
    )
    .await?;
    eprintln!(
        "partitions {on_small:?} (broker {victim} led {led_on_small:?}) moved off the offline dir {moved_in:?} after it went offline"
    );
    // Its other directory still serves: those partitions keep it in their ISRs.
    for p in &on_healthy {
        let isr = isr(&cluster, topic, *p).await?;
        ensure!(
            isr.contains(&(victim as i64)),
            "partition {p} on the healthy dir lost broker {victim}: {isr:?}"
        );
    }
    ensure!(cluster.is_running(victim), "broker {victim} exited");

    // acks=all goes on: more acknowledgements after the move.
    let acked_at_move = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
    poll_until(
        "acks=all writes to continue after the move",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let n = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
            Ok((n >= acked_at_move + 2000).then_some(n))
        },
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    producing.await??;
    let acked = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let failed = *failed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let consumed = clients::consume_all(&bootstrap, topic, PARTITIONS, Duration::from_secs(60))?;
    let duplicates = check_acked_with_duplicates(&acked, &consumed)?;
    eprintln!(
        "{} acknowledged, {failed} not acknowledged, {duplicates} duplicates; every acknowledged message read back",
        acked.len()
    );

    // Space is freed and the broker restarted: it rejoins every ISR.
    cluster.terminate(victim).await?;
    std::fs::remove_file(&filler)?;
    let restarted = Instant::now();
    cluster.spawn(victim).await?;
    wait_every_isr(
        &cluster,
        topic,
        "to hold the victim again",
        Duration::from_secs(60),
        |isr| isr.contains(&(victim as i64)),
    )
    .await?;
    eprintln!(
        "broker {victim} back in every ISR {:?} after its restart",
        restarted.elapsed()
    );
    let again = clients::consume_all(&bootstrap, topic, PARTITIONS, Duration::from_secs(60))?;
    check_acked_with_duplicates(&acked, &again)?;
    Ok(())
}
