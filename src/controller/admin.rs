//! Topic administration through ZooKeeper, as Kafka's `AdminZkClient`/`AdminUtils` do it: topic
//! name rules, Kafka's default (rack-unaware) replica placement, and the znode writes that the
//! controller then turns into partitions.

use std::collections::BTreeMap;

use rand::Rng;

use crate::zk::{KafkaZkClient, ZkError};

/// What a topic creation asks for.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit replica lists per partition, instead of the default placement.
    pub assignment: Option<BTreeMap<i32, Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

/// Why a topic could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    #[error("invalid number of partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
}

pub use crate::common::validate_topic_name;

/// Kafka's rack-unaware placement (reference §1 "Default placement"): replica 0 of partition p on
/// `b[(p+start)%n]`, the others spread by a shift that grows every n partitions.
pub fn assign_replicas_to_brokers(
    brokers: &[i32],
    num_partitions: i32,
    replication_factor: i16,
    start: usize,
    shift: usize,
) -> BTreeMap<i32, Vec<i32>> {
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let rf = replication_factor as usize;
    let mut out = BTreeMap::new();
    if n == 0 || rf == 0 {
        return out;
    }
    let mut shift = shift;
    for p in 0..num_partitions.max(0) as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![sorted[first]];
        for j in 0..rf.saturating_sub(1) {
            let idx = if n > 1 {
                (first + 1 + (shift + j) % (n - 1)) % n
            } else {
                first
            };
            replicas.push(sorted[idx]);
        }
        out.insert(p as i32, replicas);
    }
    out
}

/// Validates `spec` against the live brokers and writes `/config/topics/<t>` then
/// `/brokers/topics/<t>`; the controller's watch does the rest. `validate_only` stops before
/// writing.
///
/// # Errors
/// An [`AdminError`] naming the problem.
pub async fn create_topic(
    zk: &KafkaZkClient,
    live_brokers: &[i32],
    spec: &TopicSpec,
    validate_only: bool,
) -> Result<(), AdminError> {
    validate_topic_name(&spec.name).map_err(AdminError::InvalidTopic)?;
    let assignment = match &spec.assignment {
        Some(a) => {
            validate_assignment(a, live_brokers)?;
            a.clone()
        }
        None => {
            if spec.num_partitions < 1 {
                return Err(AdminError::InvalidPartitions(format!(
                    "{} (must be at least 1)",
                    spec.num_partitions
                )));
            }
            if spec.replication_factor < 1 {
                return Err(AdminError::InvalidReplicationFactor(format!(
                    "{} (must be at least 1)",
                    spec.replication_factor
                )));
            }
            if spec.replication_factor as usize > live_brokers.len() {
                return Err(AdminError::InvalidReplicationFactor(format!(
                    "replication factor {} is larger than the {} available brokers",
                    spec.replication_factor,
                    live_brokers.len()
                )));
            }
            check_assignment_fits(spec, live_brokers)?;
            let n = live_brokers.len();
            let (start, shift) = {
                let mut rng = rand::thread_rng();
                (rng.gen_range(0..n), rng.gen_range(0..n))
            };
            let (brokers, partitions, rf) = (
                live_brokers.to_vec(),
                spec.num_partitions,
                spec.replication_factor,
            );
            // Placement is proportional to the partition count; large ones run off the async
            // workers so that other requests are not held up behind them.
            let place = move || assign_replicas_to_brokers(&brokers, partitions, rf, start, shift);
            if partitions > BLOCKING_PLACEMENT_PARTITIONS {
                tokio::task::spawn_blocking(place)
                    .await
                    .map_err(|e| AdminError::InvalidRequest(format!("placement failed: {e}")))?
            } else {
                place()
            }
        }
    };
    if validate_only {
        if zk.get_topic_assignment(&spec.name).await?.is_some() {
            return Err(AdminError::TopicExists(spec.name.clone()));
        }
        return Ok(());
    }
    match zk
        .create_topic(&spec.name, &assignment, &spec.configs)
        .await
    {
        Ok(()) => Ok(()),
        Err(ZkError::TopicExists { .. }) => Err(AdminError::TopicExists(spec.name.clone())),
        Err(e) => Err(AdminError::Zk(e)),
    }
}

/// ZooKeeper's default `jute.maxbuffer`: no znode, and so no topic's assignment, can be larger.
pub const ZNODE_MAX_BYTES: usize = 0xfffff;
/// Partition counts above which the default placement runs on a blocking thread.
const BLOCKING_PLACEMENT_PARTITIONS: i32 = 10_000;

/// Size of the `"partitions"` object of `/brokers/topics/<t>` for `partitions` partitions of `rf`
/// replicas each, every broker id taking at most `id_digits` digits: per partition
/// `"<p>":[<ids>],`. Arithmetic, so an absurd count costs nothing to refuse.
fn assignment_json_bytes(partitions: u64, rf: u64, id_digits: u64) -> u64 {
    let mut digits = 0u64;
    let (mut low, mut width) = (0u64, 1u64);
    while low < partitions {
        let high = (low.max(1) * 10).min(partitions);
        digits += (high - low) * width;
        low = high;
        width += 1;
    }
    // quotes, colon, brackets and the trailing comma; ids and the commas between them
    digits + partitions * (6 + rf * (id_digits + 1) - 1)
}

/// Refuses a default placement whose assignment znode ZooKeeper would not store, before
/// anything proportional to the partition count is built.
fn check_assignment_fits(spec: &TopicSpec, live: &[i32]) -> Result<(), AdminError> {
    let id_digits = live
        .iter()
        .map(|b| b.unsigned_abs().to_string().len() as u64 + u64::from(*b < 0))
        .max()
        .unwrap_or(1);
    let bytes = assignment_json_bytes(
        u64::from(spec.num_partitions.unsigned_abs()),
        u64::from(spec.replication_factor.unsigned_abs()),
        id_digits,
    );
    if bytes > ZNODE_MAX_BYTES as u64 {
        return Err(AdminError::InvalidPartitions(format!(
            "{} partitions with replication factor {} need a {bytes}-byte assignment in /brokers/topics/{}, more than ZooKeeper's {ZNODE_MAX_BYTES}-byte znode limit (jute.maxbuffer)",
            spec.num_partitions, spec.replication_factor, spec.name
        )));
    }
    Ok(())
}

fn validate_assignment(a: &BTreeMap<i32, Vec<i32>>, live: &[i32]) -> Result<(), AdminError> {
    if a.is_empty() {
        return Err(AdminError::InvalidReplicaAssignment("no partitions".into()));
    }
    let expected: Vec<i32> = (0..a.len() as i32).collect();
    let got: Vec<i32> = a.keys().copied().collect();
    if got != expected {
        return Err(AdminError::InvalidReplicaAssignment(format!(
            "partitions must be numbered 0..{}, got {got:?}",
            a.len()
        )));
    }
    let rf = a.values().next().map(Vec::len).unwrap_or(0);
    for (p, replicas) in a {
        if replicas.is_empty() || replicas.len() != rf {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {p} has {} replicas, expected {rf}",
                replicas.len()
            )));
        }
        let mut dedup = replicas.clone();
        dedup.sort_unstable();
        dedup.dedup();
        if dedup.len() != replicas.len() {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {p} lists a broker twice: {replicas:?}"
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {p} names broker {b}, which is not alive"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn placement_matches_kafka() {
        // AdminUtils' documented example: 5 brokers, 10 partitions, RF 3, start 0, shift 0.
        let a = assign_replicas_to_brokers(&[0, 1, 2, 3, 4], 10, 3, 0, 0);
        assert_eq!(a[&0], vec![0, 1, 2]);
        assert_eq!(a[&1], vec![1, 2, 3]);
        assert_eq!(a[&4], vec![4, 0, 1]);
        assert_eq!(a[&5], vec![0, 2, 3]);
        assert_eq!(a[&9], vec![4, 1, 2]);
        // Every partition has distinct replicas.
        for r in a.values() {
            let mut d = r.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3);
        }
    }

    #[test]
    fn assignment_size_matches_the_znode_json() {
        let a = assign_replicas_to_brokers(&[1, 2, 3], 1234, 3, 0, 0);
        let json: String = a
            .iter()
            .map(|(p, r)| {
                let ids: Vec<String> = r.iter().map(i32::to_string).collect();
                format!("\"{p}\":[{}],", ids.join(","))
            })
            .collect();
        assert_eq!(assignment_json_bytes(1234, 3, 1), json.len() as u64);
        assert_eq!(assignment_json_bytes(0, 3, 1), 0);
        assert_eq!(assignment_json_bytes(1, 1, 1), "\"0\":[1],".len() as u64);
    }

    #[test]
    fn absurd_partition_counts_are_refused_with_the_limit() {
        let spec = |n| TopicSpec {
            name: "t".into(),
            num_partitions: n,
            replication_factor: 3,
            assignment: None,
            configs: BTreeMap::new(),
        };
        let err = check_assignment_fits(&spec(5_000_000), &[1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("jute.maxbuffer"), "{err}");
        assert!(check_assignment_fits(&spec(10_000), &[1, 2, 3]).is_ok());
        assert!(check_assignment_fits(&spec(i32::MAX), &[1, 2, 3]).is_err());
    }

    #[test]
    fn placement_single_broker() {
        let a = assign_replicas_to_brokers(&[7], 3, 1, 0, 0);
        assert_eq!(a.values().cloned().collect::<Vec<_>>(), vec![vec![7]; 3]);
    }

    #[test]
    fn assignment_validation() {
        let live = [1, 2];
        let ok: BTreeMap<i32, Vec<i32>> = [(0, vec![1, 2]), (1, vec![2, 1])].into();
        assert!(validate_assignment(&ok, &live).is_ok());
        let dup: BTreeMap<i32, Vec<i32>> = [(0, vec![1, 1])].into();
        assert!(validate_assignment(&dup, &live).is_err());
        let dead: BTreeMap<i32, Vec<i32>> = [(0, vec![3])].into();
        assert!(validate_assignment(&dead, &live).is_err());
        let gap: BTreeMap<i32, Vec<i32>> = [(1, vec![1])].into();
        assert!(validate_assignment(&gap, &live).is_err());
    }
}
