//! Consumer groups with the Python clients users run: kafka-python's `KafkaConsumer(group_id=…)`
//! and confluent-kafka's `Consumer`, each reading everything in a group, committing, and
//! kafka-python resuming from its commits.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context};

use crate::clients;
use crate::group_clients::{
    self as gc, check_committed, check_reads, indices, log_ends, Read, Spawned,
};
use crate::group_raw as raw;
use crate::groups::group_cluster;

const KAFKA_PYTHON_GROUP: &str = r#"
import sys
from kafka import KafkaConsumer
boot, topic, group, expect = sys.argv[1].split(","), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = KafkaConsumer(topic, group_id=group, bootstrap_servers=boot, client_id="it-kafka-python",
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  session_timeout_ms=10000, heartbeat_interval_ms=1000, consumer_timeout_ms=30000)
def show(m):
    print("m", m.partition, m.offset, m.key.decode(), m.value.decode())
got = 0
for m in c:
    show(m)
    got += 1
    if got >= expect:
        break
# Whatever comes after the expected messages would be a redelivery: show it too.
if got < expect:
    print("read only %d of %d messages" % (got, expect), file=sys.stderr)
    sys.exit(2)
for msgs in c.poll(timeout_ms=2000).values():
    for m in msgs:
        show(m)
c.commit()
for tp in sorted(c.assignment()):
    print("committed", tp.partition, c.committed(tp))
c.close()
print("done", got)
"#;

const CONFLUENT_KAFKA_GROUP: &str = r#"
import sys, time
from confluent_kafka import Consumer
boot, topic, group, expect = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": boot, "group.id": group, "client.id": "it-confluent-kafka",
              "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
              "enable.auto.commit": True})
c.subscribe([topic])
def show(m):
    print("m", m.partition(), m.offset(), m.key().decode(), m.value().decode())
got = 0
deadline = time.time() + 60
while got < expect and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        print("consumer error:", m.error(), file=sys.stderr)
        continue
    show(m)
    got += 1
if got < expect:
    print("read only %d of %d messages in 60 s" % (got, expect), file=sys.stderr)
    sys.exit(2)
end = time.time() + 2
while time.time() < end:
    m = c.poll(0.2)
    if m is not None and not m.error():
        show(m)
c.close()
print("done", got)
"#;

/// `read` holds every acknowledged message of `all` (each where it was acknowledged).
fn read_everything(
    name: &str,
    read: &[Read],
    acked: &[(i32, i64, usize)],
    all: &BTreeSet<usize>,
) -> anyhow::Result<()> {
    check_reads(name, read, acked)?;
    ensure!(
        indices(read) == *all,
        "{name} read {} distinct of {} messages",
        indices(read).len(),
        all.len()
    );
    Ok(())
}

/// Output of a group script: messages read, committed offsets (kafka-python), whether it
/// finished.
struct ScriptRun {
    read: Vec<Read>,
    committed: BTreeMap<i32, Option<i64>>,
}

async fn run_group_script(
    dir: &std::path::Path,
    name: &str,
    script: &str,
    args: &[&str],
) -> anyhow::Result<ScriptRun> {
    let mut cmd = Command::new(gc::python());
    cmd.arg("-c").arg(script).args(args);
    let mut proc = Spawned::spawn(&mut cmd, dir, name)?;
    let status = proc.wait(Duration::from_secs(120)).await?;
    let out = proc.stdout_text()?;
    let Some(status) = status else {
        bail!(
            "{name} did not finish within 120 s (killed) after printing {} lines; stderr: {}",
            out.lines().count(),
            proc.stderr_tail(30)
        );
    };
    ensure!(
        status.success(),
        "{name} failed ({status}); stderr: {}",
        proc.stderr_tail(30)
    );
    let mut run = ScriptRun {
        read: Vec::new(),
        committed: BTreeMap::new(),
    };
    let mut done = false;
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["m", p, o, k, v] => {
                let i = gc::message_index(k.as_bytes(), v.as_bytes())?;
                run.read.push((p.parse()?, o.parse()?, i));
            }
            ["committed", p, o] => {
                let off = if *o == "None" { None } else { Some(o.parse()?) };
                run.committed.insert(p.parse()?, off);
            }
            ["done", _] => done = true,
            _ => bail!("{name}: unexpected output line {line:?}"),
        }
    }
    ensure!(
        done,
        "{name} did not report done; stderr: {}",
        proc.stderr_tail(30)
    );
    Ok(run)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_and_confluent_kafka_consumers_in_a_group() -> anyhow::Result<()> {
    let modules = Command::new(gc::python())
        .args(["-c", "import kafka, confluent_kafka"])
        .output()
        .context("running python3")?;
    ensure!(
        modules.status.success(),
        "{} lacks kafka-python or confluent-kafka (apt-get install python3-kafka python3-confluent-kafka): {}",
        gc::python(),
        String::from_utf8_lossy(&modules.stderr)
    );
    let cluster = clients::start_cluster(group_cluster(1)).await?;
    raw::require_group_apis(&cluster).await?;
    let b = cluster.bootstrap();
    let topic = "gp";
    clients::create_topic(&b, topic, 6, 1).await?;
    let n = 2000;
    let producer = clients::producer(&b, "all")?;
    let mut acked = clients::produce_keyed(&producer, topic, n).await?;
    let dir = tempfile::tempdir()?;
    let all: BTreeSet<usize> = (0..n).collect();

    // kafka-python reads everything as a group member and commits.
    let n_arg = n.to_string();
    let kp = run_group_script(
        dir.path(),
        "kafka-python-1",
        KAFKA_PYTHON_GROUP,
        &[&b, topic, "kp-group", &n_arg],
    )
    .await?;
    read_everything("kafka-python", &kp.read, &acked, &all)?;
    for (p, end) in log_ends(&acked) {
        ensure!(
            kp.committed.get(&p) == Some(&Some(end)),
            "kafka-python's committed offset of partition {p}: {:?}, log end {end} (all: {:?})",
            kp.committed.get(&p),
            kp.committed
        );
    }
    check_committed(
        &b,
        "kp-group",
        topic,
        6,
        &log_ends(&acked),
        Duration::from_secs(30),
    )
    .await
    .context("offsets kafka-python committed")?;

    // confluent-kafka in another group reads everything too.
    let ck = run_group_script(
        dir.path(),
        "confluent-kafka",
        CONFLUENT_KAFKA_GROUP,
        &[&b, topic, "ck-group", &n_arg],
    )
    .await?;
    read_everything("confluent-kafka", &ck.read, &acked, &all)?;

    // kafka-python again in its first group: only what was produced after it committed.
    let m = 500;
    let before = log_ends(&acked);
    acked.extend(clients::produce_range(&producer, topic, n..n + m).await?);
    let m_arg = m.to_string();
    let again = run_group_script(
        dir.path(),
        "kafka-python-2",
        KAFKA_PYTHON_GROUP,
        &[&b, topic, "kp-group", &m_arg],
    )
    .await?;
    check_reads("kafka-python (resumed)", &again.read, &acked)?;
    let new: BTreeSet<usize> = (n..n + m).collect();
    let got = indices(&again.read);
    ensure!(
        got == new,
        "resumed kafka-python read {} messages, expected exactly the {m} new ones (old ones read: {:?}, new ones missing: {:?})",
        got.len(),
        got.difference(&new).take(10).collect::<Vec<_>>(),
        new.difference(&got).take(10).collect::<Vec<_>>()
    );
    for (p, off, i) in &again.read {
        ensure!(
            *off >= before.get(p).copied().unwrap_or(0),
            "resumed kafka-python re-read message {i} at {p}/{off}"
        );
    }
    Ok(())
}
