#!/usr/bin/env bash
# test.sh — the project's full check, in order, stopping at the first failure:
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo build --bin gregor                    (the binary the integration tests run)
#   4. scripts/build-images.sh --only zookeeper    (the image the integration tests run)
#   5. cargo nextest run --workspace               (cargo test --workspace without nextest)
#   6. scripts/fuzz.sh request_path, batch_validator  (cargo fuzz, each for a bounded time)
# Extra arguments go to the test runner, e.g. `scripts/test.sh -E 'test(harness)'`.
# Step 6 runs each fuzz target for FUZZ_SECONDS (default 30; 0 skips it) with the sanitizer
# FUZZ_SANITIZER (default none: an AddressSanitizer build of the whole crate takes far longer
# on a small machine than the run itself; scripts/fuzz.sh defaults to address for long runs).
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
step cargo fmt --manifest-path fuzz/Cargo.toml -- --check
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

fuzz_seconds="${FUZZ_SECONDS:-30}"
if [[ "$fuzz_seconds" != 0 ]]; then
    for fuzz_target in request_path batch_validator; do
        step scripts/fuzz.sh "$fuzz_target" --seconds "$fuzz_seconds" \
            --sanitizer "${FUZZ_SANITIZER:-none}"
    done
fi
echo
echo "==> all checks passed in $((SECONDS - start)) s"
