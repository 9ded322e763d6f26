//! Recovery after an unclean stop: a segment cut in the middle of a batch and followed by
//! garbage keeps every whole batch before the damage, and the broker serves the partition.

use std::io::Write;
use std::time::Duration;

use anyhow::{ensure, Context};
use integration_tests::ClusterOptions;

use crate::basic::check_acked_present;
use crate::clients;

/// (base offset, file position, size) of every batch in a segment file.
fn batches(log: &[u8]) -> Vec<(i64, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 12 <= log.len() {
        let base = i64::from_be_bytes(log[pos..pos + 8].try_into().unwrap_or_default());
        let len = i32::from_be_bytes(log[pos + 8..pos + 12].try_into().unwrap_or_default());
        let size = 12 + len.max(0) as usize;
        if len <= 0 || pos + size > log.len() {
            break;
        }
        out.push((base, pos, size));
        pos += size;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_batch_and_garbage_are_truncated_on_recovery() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let bootstrap = cluster.bootstrap();
    clients::create_topic(&bootstrap, "rec", 1, 1).await?;
    let producer = clients::producer(&bootstrap, "1")?;
    let mut acked = Vec::new();
    // Several produce rounds, so the segment holds many batches.
    for round in 0..10 {
        acked.extend(
            clients::produce_range(&producer, "rec", round * 100..(round + 1) * 100).await?,
        );
    }
    cluster.kill(0).await?;

    let seg = cluster
        .data_dir(0)
        .join("rec-0")
        .join("00000000000000000000.log");
    let bytes = std::fs::read(&seg).with_context(|| format!("reading {}", seg.display()))?;
    let all = batches(&bytes);
    ensure!(all.len() >= 5, "only {} batches in the segment", all.len());
    let (cut_base, cut_pos, cut_size) = all[all.len() - 2];
    let file = std::fs::OpenOptions::new().write(true).open(&seg)?;
    file.set_len((cut_pos + cut_size / 2) as u64)?;
    drop(file);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg)?;
    f.write_all(&[0xAB; 333])?;
    drop(f);
    eprintln!(
        "{} batches; cut the batch at offset {cut_base} (file position {cut_pos}) in half",
        all.len()
    );

    cluster.restart(0).await?;
    clients::wait_for_leaders(&bootstrap, "rec", 1, Duration::from_secs(30))?;
    let consumer = clients::consumer(&bootstrap)?;
    let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
        &consumer,
        "rec",
        0,
        Duration::from_secs(10),
    )?;
    ensure!(
        (low, high) == (0, cut_base),
        "watermarks {low}..{high}, expected 0..{cut_base}"
    );
    let kept: Vec<_> = acked
        .iter()
        .copied()
        .filter(|(_, off, _)| *off < cut_base)
        .collect();
    let consumed = clients::consume_all(&bootstrap, "rec", 1, Duration::from_secs(30))?;
    ensure!(consumed.values().map(Vec::len).sum::<usize>() == kept.len());
    check_acked_present(&kept, &consumed)?;

    // The partition takes new writes right after the last whole batch.
    let more = clients::produce_range(&producer, "rec", 5000..5010).await?;
    ensure!(
        more.first().map(|m| m.1) == Some(cut_base),
        "new writes start at {more:?}"
    );
    Ok(())
}
