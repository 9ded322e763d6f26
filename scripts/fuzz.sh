#!/usr/bin/env bash
# fuzz.sh — builds and runs one of gregor's cargo fuzz (libFuzzer) targets, bounded:
#   scripts/fuzz.sh request_path --runs 10000000      # stop after N executions
#   scripts/fuzz.sh batch_validator --seconds 60      # stop after S seconds of fuzzing
# Targets (fuzz/fuzz_targets/): request_path (request frames through gregor::api::handle on a
# live in-process broker with a real ZooKeeper) and batch_validator (record batches through the
# produce path's checks and Log::append_as_leader, Kafka's LogValidator).
#
# Options:
#   --runs N            libFuzzer -runs=N (default: --seconds 60 when neither is given)
#   --seconds S         libFuzzer -max_total_time=S
#   --sanitizer NAME    address (default), none, … (cargo fuzz -s); none builds much faster
#   --no-debug-assertions  build without overflow checks and debug assertions (on by default)
#   --dev               unoptimised build (cargo fuzz --dev): builds in a fraction of the time,
#                       runs several times slower; for short smoke runs
#   --build-only        build the target and write its seed corpus, do not fuzz
#   -- ARGS             further libFuzzer arguments (e.g. -- -max_len=8192 -seed=1)
#
# It installs cargo-fuzz (cargo install cargo-fuzz --locked) if missing. cargo fuzz needs a
# nightly compiler: `cargo +nightly` when rustup has one, else the default toolchain with
# RUSTC_BOOTSTRAP=1 (FUZZ_TOOLCHAIN=stable forces that path; any toolchain name may be given).
# Everything is built into fuzz/target (the fuzz crate is its own workspace), never the main
# target directory. The seed corpus (fuzz/corpus/<target>) is written by the built target itself
# (GREGOR_FUZZ_WRITE_SEEDS); crashes go to fuzz/artifacts/<target>/.
#
# At the end it prints the number of executions from libFuzzer's final statistics and exits
# non-zero if libFuzzer found a crash, a timeout or an out-of-memory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
log() { echo "fuzz.sh: $*" >&2; }

target=""
runs=""
seconds=""
sanitizer="address"
debug_assertions=1
profile=release
build_only=0
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
        --sanitizer|-s) sanitizer="${2:?--sanitizer needs a name}"; shift 2 ;;
        --no-debug-assertions) debug_assertions=0; shift ;;
        --dev) profile=debug; shift ;;
        --build-only) build_only=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) log "unknown option $1"; usage ;;
        *) [[ -z "$target" ]] || { log "one target only"; usage; }; target="$1"; shift ;;
    esac
done
case "$target" in
    request_path|batch_validator) ;;
    "") log "which target? request_path or batch_validator"; usage ;;
    *) log "unknown target '$target' (request_path, batch_validator)"; exit 2 ;;
esac
if [[ -z "$runs" && -z "$seconds" ]]; then
    seconds=60
fi

if [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { log "cargo is not installed (install Rust via rustup)"; exit 1; }

# The toolchain: nightly if rustup has it, else the default one allowed nightly flags.
cargo_cmd=(cargo)
toolchain="${FUZZ_TOOLCHAIN:-}"
if [[ -z "$toolchain" ]] && cargo +nightly --version >/dev/null 2>&1; then
    toolchain=nightly
fi
if [[ -n "$toolchain" ]]; then
    cargo_cmd=(cargo "+$toolchain")
fi
if [[ "$toolchain" != nightly* ]] && ! "${cargo_cmd[@]}" --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
    log "no nightly toolchain in use: building with RUSTC_BOOTSTRAP=1 ($("${cargo_cmd[@]}" --version))"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

# fuzz/ is its own workspace; keep its artifacts out of the main target directory even when
# CARGO_TARGET_DIR points there.
export CARGO_TARGET_DIR="$ROOT/fuzz/target"
build_flags=(--fuzz-dir "$ROOT/fuzz" --target-dir "$CARGO_TARGET_DIR" -s "$sanitizer")
if [[ $profile == debug ]]; then
    build_flags+=(--dev)
elif [[ $debug_assertions -eq 0 ]]; then
    build_flags+=(-O) # cargo fuzz's default is release with debug assertions; -O drops them
fi

echo "+ ${cargo_cmd[*]} fuzz build ${build_flags[*]} $target"
build_start=$SECONDS
"${cargo_cmd[@]}" fuzz build "${build_flags[@]}" "$target"
echo "fuzz.sh: build took $((SECONDS - build_start)) s"

triple="$(rustc -vV | sed -n 's/^host: //p')"
binary="$CARGO_TARGET_DIR/$triple/$profile/$target"
[[ -x "$binary" ]] || { log "built binary not found at $binary"; exit 1; }
corpus="$ROOT/fuzz/corpus/$target"
GREGOR_FUZZ_WRITE_SEEDS="$corpus" "$binary"
[[ $build_only -eq 0 ]] || exit 0

artifacts="$ROOT/fuzz/artifacts/$target"
mkdir -p "$artifacts"
libfuzzer=(-print_final_stats=1 "-artifact_prefix=$artifacts/")
if [[ -n "$runs" ]]; then
    libfuzzer+=("-runs=$runs")
fi
if [[ -n "$seconds" ]]; then
    libfuzzer+=("-max_total_time=$seconds")
fi
case "$target" in
    # Inputs are waited for at most GREGOR_FUZZ_HANDLER_TIMEOUT_MS each; a replaced broker
    # takes a second or two. Growth of the broker's state across inputs is not a leak.
    request_path) libfuzzer+=(-timeout=60 -detect_leaks=0 -rss_limit_mb=4096) ;;
    batch_validator) libfuzzer+=(-timeout=20) ;;
esac
libfuzzer+=("${extra[@]}")

output="$(mktemp "${TMPDIR:-/tmp}/gregor-fuzz-$target.XXXXXX")"
trap 'rm -f "$output"' EXIT
cmd=("${cargo_cmd[@]}" fuzz run "${build_flags[@]}" "$target" "$corpus" -- "${libfuzzer[@]}")
[[ -z "${RUSTC_BOOTSTRAP:-}" ]] || echo "+ export RUSTC_BOOTSTRAP=$RUSTC_BOOTSTRAP"
echo "+ ${cmd[*]}"
run_start=$SECONDS
set +e
"${cmd[@]}" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
wall=$((SECONDS - run_start))

executed="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$output" | tail -n 1)"
if [[ -z "$executed" ]]; then
    executed="$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$output" | tail -n 1)"
fi
rate="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$output" | tail -n 1)"
echo
echo "fuzz.sh: $target: ${executed:-unknown} executions in ${wall} s wall (libFuzzer: ${rate:-?} exec/s)"
if [[ $status -ne 0 ]] || grep -qE '^==[0-9]+==ERROR|^SUMMARY: libFuzzer|deadly signal' "$output"; then
    echo "fuzz.sh: $target FAILED (exit status $status); reproducer under $artifacts/" >&2
    echo "fuzz.sh: reproduce with: ${cargo_cmd[*]} fuzz run ${build_flags[*]} $target <artifact>" >&2
    exit $(( status == 0 ? 1 : status ))
fi
echo "fuzz.sh: $target: no crash"
