#!/usr/bin/env bash
# bench.sh — produce/consume throughput and produce latency of a local gregor cluster, measured
# with the rdkafka client (integration-tests/src/bin/gregor-bench.rs); prints JSON, asserts
# nothing. Starts the cluster with scripts/cluster.sh if it is not running (release build).
#
#   scripts/bench.sh [--messages N] [--size BYTES] [--acks all|1|0] [--partitions P] [--replication-factor R]
#   scripts/bench.sh --latency [--rate R] [--seconds S] [--partitions P]
#   scripts/bench.sh --idempotence [--messages N] [--rounds R] [--transaction-size T] [--replication-factor R]
#
# --latency measures end-to-end latency (produce → consumer sees it) at R records/s (default
# 1,000) for RF 1 and RF 3 with acks=all in one run, on 3 brokers, printing p50/p99/max per case.
# --idempotence measures produce throughput (acks=all) with and without enable.idempotence and
# with a transactional producer committing every T messages (default 100; 0 skips it),
# alternating for R rounds (default 3), printing all three and their ratios.
# BENCH_BROKERS sets the broker count (default 1; 3 with --latency); CLUSTER_ZK_PORT and
# CLUSTER_BASE_PORT (see cluster.sh) move the cluster off the default ports.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
default_brokers=1
for arg in "$@"; do [[ "$arg" == --latency ]] && default_brokers=3; done
brokers="${BENCH_BROKERS:-$default_brokers}"
bootstrap="$(scripts/cluster.sh up --brokers "$brokers" | tail -n 1)"
cargo build --release -q -p integration-tests --bin gregor-bench
echo "bench: bootstrap $bootstrap" >&2
pid_args=()
# With one broker its CPU per message is measured too (gregor-bench reads /proc/<pid>/stat).
pid_file="${CLUSTER_DIR:-$ROOT/.cluster}/broker-0/broker.pid"
if [[ "$brokers" == 1 && -r "$pid_file" ]]; then pid_args=(--broker-pid "$(<"$pid_file")"); fi
exec target/release/gregor-bench --bootstrap "$bootstrap" "${pid_args[@]}" "$@"
