#!/usr/bin/env bash
# test.sh — the project's full check, in order, stopping at the first failure:
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo build --bin gregor                    (the binary the integration tests run)
#   4. scripts/build-images.sh --only zookeeper    (the image the integration tests run)
#   5. cargo nextest run --workspace               (cargo test --workspace without nextest)
# Extra arguments go to the test runner, e.g. `scripts/test.sh -E 'test(harness)'`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() {
    echo
    echo "==> $*"
    "$@" || { echo "==> FAILED: $*" >&2; exit 1; }
}

start=$SECONDS
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo build --bin gregor
step scripts/build-images.sh --only zookeeper

target="${CARGO_TARGET_DIR:-$ROOT/target}"
export GREGOR_BIN="${GREGOR_BIN:-$target/debug/gregor}"
echo
echo "==> tests with GREGOR_BIN=$GREGOR_BIN"
if cargo nextest --version >/dev/null 2>&1; then
    step cargo nextest run --workspace "$@"
else
    echo "cargo-nextest is not installed; using cargo test" >&2
    step cargo test --workspace "$@"
fi
echo
echo "==> all checks passed in $((SECONDS - start)) s"
