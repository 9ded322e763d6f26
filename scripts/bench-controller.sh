#!/usr/bin/env bash
# bench-controller.sh — the controller benchmark of issue 9 (acceptance 1–2): starts a fresh
# 3-broker cluster with scripts/cluster.sh in its own state directory and on its own ports, runs
# `gregor-bench controller` (integration-tests/src/controller_bench) with one N-partition RF 3
# topic, prints its JSON on stdout (progress on stderr), and stops the cluster it started.
# A benchmark: it asserts nothing about speed; waits past --timeout are reported as timed_out.
#
#   scripts/bench-controller.sh N [--timeout SECONDS] [--phases LIST] [--keep]
#       N          partitions of the topic (e.g. 1000, 10000)
#       --timeout  deadline of every single wait (default 300)
#       --phases   comma-separated phases after creation (default: all, i.e.
#                  sigterm,kill-non-controller,kill-controller,delete)
#       --keep     leave the cluster running afterwards (otherwise it is stopped and its
#                  state directory removed; stop a kept one with
#                  CLUSTER_DIR=<dir> scripts/cluster.sh down)
#
# Environment: BENCH_CLUSTER_DIR (.cluster-bench), BENCH_ZK_PORT (22181), BENCH_BASE_PORT
# (29092), GREGOR_BIN (broker binary; default: cargo build --release), GREGOR_BENCH_BIN
# (bench binary; default: cargo build --release -p integration-tests), RUST_LOG (info).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

[[ $# -ge 1 && "$1" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
partitions="$1"; shift
timeout=300 keep=0 phases=sigterm,kill-non-controller,kill-controller,delete
while [[ $# -gt 0 ]]; do
    case "$1" in
        --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
        --phases) phases="${2:?--phases needs a list}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

export CLUSTER_DIR="${BENCH_CLUSTER_DIR:-$ROOT/.cluster-bench}"
export CLUSTER_ZK_PORT="${BENCH_ZK_PORT:-22181}"
export CLUSTER_BASE_PORT="${BENCH_BASE_PORT:-29092}"
# Restarts of brokers with N replicas wait for log loading and ISR catch-up.
export CLUSTER_START_TIMEOUT="$timeout"

if [[ -z "${GREGOR_BIN:-}" ]]; then
    cargo build --release -q --bin gregor
    export GREGOR_BIN="$ROOT/target/release/gregor"
fi
bench_bin="${GREGOR_BENCH_BIN:-}"
if [[ -z "$bench_bin" ]]; then
    cargo build --release -q -p integration-tests --bin gregor-bench
    bench_bin="$ROOT/target/release/gregor-bench"
fi

if [[ -d "$CLUSTER_DIR" ]]; then
    # Tens of thousands of files deleted just before the run make the next file creations
    # several times slower on some filesystems (ext4 without a journal skips recently freed
    # inodes): the creation figure would then measure the disk's recovery, not the broker.
    echo "bench-controller: removing the previous run's $CLUSTER_DIR; on ext4 without a journal, figures right after a large removal are slower (better: let the previous run purge at its end)" >&2
fi
scripts/cluster.sh down --purge >&2
if [[ $keep -eq 0 ]]; then
    # The run's own files go at its end, not at the start of the next run; the brokers' logs
    # are kept in $CLUSTER_DIR-logs for reading afterwards.
    finish() {
        scripts/cluster.sh down >&2 || true
        rm -rf "$CLUSTER_DIR-logs" && mkdir -p "$CLUSTER_DIR-logs"
        for log in "$CLUSTER_DIR"/broker-*/broker.log; do
            [[ -f "$log" ]] && cp "$log" "$CLUSTER_DIR-logs/$(basename "$(dirname "$log")").log"
        done
        scripts/cluster.sh down --purge >&2 || true
        echo "bench-controller: broker logs kept in $CLUSTER_DIR-logs" >&2
    }
    trap finish EXIT
fi
scripts/cluster.sh up --brokers 3 --no-build >&2
echo "bench-controller: cluster in $CLUSTER_DIR, zookeeper 127.0.0.1:$CLUSTER_ZK_PORT, brokers from port $CLUSTER_BASE_PORT" >&2

"$bench_bin" controller --partitions "$partitions" --timeout "$timeout" --phases "$phases" \
    --zookeeper "127.0.0.1:$CLUSTER_ZK_PORT" --brokers 3 --base-port "$CLUSTER_BASE_PORT" \
    --cluster-dir "$CLUSTER_DIR" --cluster-script "$ROOT/scripts/cluster.sh"
