#!/usr/bin/env bash
# bench-compare.sh — the same produce/consume benchmark against the broker of an earlier
# revision and against the working tree's, in alternating rounds on fresh one-broker clusters,
# printing one JSON line per round (labelled "before" / "after") with throughput and the
# broker's CPU per message. Asserts nothing.
#
#   scripts/bench-compare.sh REV [--rounds N] [gregor-bench options, e.g. --messages 2000000]
#
# REV's broker is built in a git worktree under target/compare/ (release, its own target
# directory, kept for the next run); the working tree's with `cargo build --release`. Both
# clusters use CLUSTER_ZK_PORT / CLUSTER_BASE_PORT (default 24181 / 49092) and directories under
# /dev/shm when it exists, so the disk is not what is measured.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ $# -ge 1 ]] || { echo "usage: $0 REV [--rounds N] [gregor-bench options]" >&2; exit 2; }
rev="$(git rev-parse --short "$1")"
shift
rounds=2
if [[ "${1:-}" == --rounds ]]; then rounds="$2"; shift 2; fi

compare="$ROOT/target/compare"
tree="$compare/$rev"
if [[ ! -d "$tree" ]]; then
    git worktree add --detach "$tree" "$rev" >&2
fi
echo "bench-compare: building $rev's broker" >&2
(cd "$tree" && CARGO_TARGET_DIR="$compare/target" cargo build --release -q --bin gregor)
cp "$compare/target/release/gregor" "$compare/gregor-$rev"
echo "bench-compare: building the working tree's broker and gregor-bench" >&2
cargo build --release -q --bin gregor
cargo build --release -q -p integration-tests --bin gregor-bench

base="/tmp"
[[ -d /dev/shm ]] && base="/dev/shm"
export CLUSTER_ZK_PORT="${CLUSTER_ZK_PORT:-24181}"
export CLUSTER_BASE_PORT="${CLUSTER_BASE_PORT:-49092}"
run_round() {
    local label="$1" bin="$2" dir="$base/gregor-bench-compare-$$"
    local bootstrap pid out
    shift 2
    bootstrap="$(CLUSTER_DIR="$dir" GREGOR_BIN="$bin" scripts/cluster.sh up --brokers 1 --no-build | tail -n 1)"
    pid="$(<"$dir/broker-0/broker.pid")"
    if out="$(target/release/gregor-bench --bootstrap "$bootstrap" --broker-pid "$pid" "$@")"; then
        echo "{\"label\":\"$label\",\"broker\":\"$bin\",\"result\":$out}"
    else
        echo "bench-compare: the $label round failed" >&2
    fi
    CLUSTER_DIR="$dir" scripts/cluster.sh down --purge >/dev/null
}
for ((i = 1; i <= rounds; i++)); do
    run_round before "$compare/gregor-$rev" "$@"
    run_round after "$ROOT/target/release/gregor" "$@"
done
