#!/usr/bin/env bash
# bench.sh — produce/consume throughput and produce latency of a local gregor cluster, measured
# with the rdkafka client (integration-tests/src/bin/gregor-bench.rs); prints JSON, asserts
# nothing. Starts the cluster with scripts/cluster.sh if it is not running (release build).
#
#   scripts/bench.sh [--messages N] [--size BYTES] [--acks all|1|0] [--partitions P] [--replication-factor R]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
brokers="${BENCH_BROKERS:-1}"
bootstrap="$(scripts/cluster.sh up --brokers "$brokers" | tail -n 1)"
cargo build --release -q -p integration-tests --bin gregor-bench
echo "bench: bootstrap $bootstrap" >&2
exec target/release/gregor-bench --bootstrap "$bootstrap" "$@"
