#!/usr/bin/env bash
# cluster.sh — run a local gregor cluster for development: one ZooKeeper (Debian's `zookeeper`
# package, 127.0.0.1:2181) and N brokers (127.0.0.1:9092, 9093, …), all as background processes
# with their data, logs and pid files under .cluster/ in the repository.
#
#   scripts/cluster.sh up [--brokers N] [--no-build]   start what is not running (default N=3)
#   scripts/cluster.sh down [--purge]                  SIGTERM brokers, stop ZooKeeper; --purge
#                                                      also deletes .cluster/ (all data)
#   scripts/cluster.sh status                          processes, registrations, controller
#
# Environment: CLUSTER_DIR (state directory, .cluster), CLUSTER_ZK_PORT (2181), CLUSTER_BASE_PORT
# (9092; broker i listens on BASE_PORT+i), CLUSTER_START_TIMEOUT (60 s, for ZooKeeper and for each
# broker), CLUSTER_STOP_TIMEOUT (30 s), GREGOR_BIN, RUST_LOG (info). Give each concurrent cluster
# its own dir and ports.
#
# Every wait is bounded and, when it gives up, names the log file to read. A process counts as
# started while it exists and is not a zombie: right after `&` the child may not have exec'd its
# program yet, so its command line is only checked for processes found through an old pid file.
#
# `up` is idempotent: it starts only what is not running, so after a broker is killed a second
# `up` brings it back with the same id, config and data. Missing Debian packages (zookeeper, kcat)
# are installed with apt-get. The broker is `cargo build --release --bin gregor` unless
# --no-build is given or GREGOR_BIN names a binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CLUSTER_DIR:-$ROOT/.cluster}"
ZK_DIR="$STATE/zookeeper"
# Ports: CLUSTER_ZK_PORT / CLUSTER_BASE_PORT override the defaults; `up` records the ports in
# .cluster/ports.env so that later commands use the same ones.
ZK_PORT=2181
BASE_PORT=9092
if [[ -f "$STATE/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$STATE/ports.env"
fi
ZK_PORT="${CLUSTER_ZK_PORT:-$ZK_PORT}"
BASE_PORT="${CLUSTER_BASE_PORT:-$BASE_PORT}"
ZK_CP="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh
START_TIMEOUT="${CLUSTER_START_TIMEOUT:-60}"
STOP_TIMEOUT="${CLUSTER_STOP_TIMEOUT:-30}"
SESSION_TIMEOUT_MS=18000

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# ----- helpers -------------------------------------------------------------------------------

ensure_packages() {
    local missing=()
    [[ -f /usr/share/java/zookeeper.jar && -x "$ZKCLI" ]] || missing+=(zookeeper)
    command -v kcat >/dev/null || missing+=(kcat)
    command -v java >/dev/null || missing+=(default-jre-headless)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# running <pid> → true while that process exists and has not exited (an exited child of this
# script stays a zombie until the script ends, and `kill -0` still succeeds on a zombie)
running() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# alive <pidfile> <word the command line must contain> → prints the pid if that process runs.
# For a pid file left by an earlier run: the command-line check guards against a reused pid.
alive() {
    local pidfile="$1" expect="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$expect" || return 1
    echo "$pid"
}

# four_letter <cmd> → ZooKeeper's answer on 127.0.0.1:$ZK_PORT (empty if unreachable). The whole
# exchange, connect included, is bounded: a starting server may accept and then say nothing.
four_letter() {
    local answer
    answer="$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "%s" "$1" >&3 && cat <&3' \
        "$ZK_PORT" "$1" 2>/dev/null)" || true
    printf '%s' "$answer"
}

port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

# registered_ids → broker ids with an ephemeral /brokers/ids/<id> (from the `dump` command)
registered_ids() {
    four_letter dump | sed -n 's#^[[:space:]]*/brokers/ids/\([0-9][0-9]*\)[[:space:]]*$#\1#p' | sort -n | uniq
}

is_registered() { registered_ids | grep -qx "$1"; }

broker_dir() { echo "$STATE/broker-$1"; }

# ----- ZooKeeper -----------------------------------------------------------------------------

start_zookeeper() {
    local pid
    if pid="$(alive "$ZK_DIR/zookeeper.pid" QuorumPeerMain)"; then
        log "zookeeper already running (pid $pid)"
        return
    fi
    if port_open "$ZK_PORT"; then
        die "127.0.0.1:$ZK_PORT is in use by a process this script did not start; stop it first"
    fi
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<CFG
tickTime=2000
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
autopurge.purgeInterval=1
CFG
    log "starting zookeeper on 127.0.0.1:$ZK_PORT (log $ZK_DIR/zookeeper.log)"
    # Not a process-group leader in a non-interactive shell, so setsid execs in place: $! is java.
    setsid nohup java -Xms32m -Xmx256m -Dzookeeper.root.logger=INFO,CONSOLE \
        -Dzookeeper.log.dir="$ZK_DIR" -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties \
        -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo.cfg" \
        >>"$ZK_DIR/zookeeper.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$ZK_DIR/zookeeper.pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    until four_letter srvr | grep -q '^Mode:'; do
        if ! running "$pid"; then
            tail -n 20 "$ZK_DIR/zookeeper.log" >&2 || true
            die "zookeeper (pid $pid) exited during start-up; see $ZK_DIR/zookeeper.log"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$ZK_DIR/zookeeper.log" >&2 || true
            die "zookeeper (pid $pid) did not serve clients within ${START_TIMEOUT} s; see $ZK_DIR/zookeeper.log"
        fi
        sleep 0.3
    done
    log "zookeeper serving (pid $pid)"
}

# ----- brokers -------------------------------------------------------------------------------

broker_bin() {
    if [[ -n "${GREGOR_BIN:-}" ]]; then
        [[ -x "$GREGOR_BIN" ]] || die "GREGOR_BIN=$GREGOR_BIN is not an executable"
        echo "$GREGOR_BIN"
    else
        echo "$ROOT/target/release/gregor"
    fi
}

write_broker_config() {
    local id="$1" n="$2" dir rf
    dir="$(broker_dir "$id")"
    rf=$((n < 3 ? n : 3))
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<CFG
# written by scripts/cluster.sh
broker.id=$id
listeners=PLAINTEXT://127.0.0.1:$((BASE_PORT + id))
advertised.listeners=PLAINTEXT://127.0.0.1:$((BASE_PORT + id))
log.dirs=$dir/data
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.session.timeout.ms=$SESSION_TIMEOUT_MS
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$((rf < 2 ? rf : 2))
CFG
}

start_broker() {
    local id="$1" n="$2" bin="$3" dir pid
    dir="$(broker_dir "$id")"
    if pid="$(alive "$dir/broker.pid" "$dir/server.properties")"; then
        log "broker $id already running (pid $pid)"
        return 1
    fi
    # Keep an existing config (it may have been edited); write one for a new broker.
    [[ -f "$dir/server.properties" ]] || write_broker_config "$id" "$n"
    if port_open $((BASE_PORT + id)); then
        die "127.0.0.1:$((BASE_PORT + id)) is in use by a process this script did not start"
    fi
    # A killed broker's registration lives until its ZooKeeper session expires; a new process
    # with the same id would refuse to start before that.
    if is_registered "$id"; then
        log "broker $id: waiting for the previous session's registration to expire"
        local deadline=$((SECONDS + SESSION_TIMEOUT_MS / 1000 + 15))
        while is_registered "$id"; do
            ((SECONDS < deadline)) || die "/brokers/ids/$id is still registered but broker $id is not running; see $ZK_DIR/zookeeper.log and $dir/broker.log"
            sleep 0.5
        done
    fi
    log "starting broker $id on 127.0.0.1:$((BASE_PORT + id)) (log $dir/broker.log)"
    echo "===== cluster.sh: starting broker $id at $(date -Is)" >>"$dir/broker.log"
    RUST_LOG="${RUST_LOG:-info}" setsid nohup "$bin" broker --config "$dir/server.properties" \
        >>"$dir/broker.log" 2>&1 </dev/null &
    echo $! >"$dir/broker.pid"
    return 0
}

wait_broker() {
    local id="$1" dir deadline pid
    dir="$(broker_dir "$id")"
    pid="$(<"$dir/broker.pid")"
    deadline=$((SECONDS + START_TIMEOUT))
    until is_registered "$id" && port_open $((BASE_PORT + id)); do
        if ! running "$pid"; then
            tail -n 20 "$dir/broker.log" >&2 || true
            die "broker $id (pid $pid) exited during start-up; see $dir/broker.log"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$dir/broker.log" >&2 || true
            die "broker $id (pid $pid) did not register and listen within ${START_TIMEOUT} s; see $dir/broker.log"
        fi
        sleep 0.3
    done
    log "broker $id registered (pid $pid)"
}

# ----- commands ------------------------------------------------------------------------------

cmd_up() {
    local n=3 build=1
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --brokers) n="${2:?--brokers needs a number}"; shift 2 ;;
            --brokers=*) n="${1#--brokers=}"; shift ;;
            --no-build) build=0; shift ;;
            *) die "up: unknown argument $1" ;;
        esac
    done
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--brokers must be a positive number"
    ensure_packages
    mkdir -p "$STATE"
    printf 'ZK_PORT=%s\nBASE_PORT=%s\n' "$ZK_PORT" "$BASE_PORT" >"$STATE/ports.env"
    start_zookeeper
    local bin
    bin="$(broker_bin)"
    if [[ -z "${GREGOR_BIN:-}" && $build -eq 1 ]]; then
        log "cargo build --release --bin gregor"
        (cd "$ROOT" && cargo build --release --bin gregor) || die "building the broker failed"
    fi
    [[ -x "$bin" ]] || die "no broker binary at $bin (run without --no-build, or set GREGOR_BIN)"
    local started=() id
    for ((id = 0; id < n; id++)); do
        if start_broker "$id" "$n" "$bin"; then started+=("$id"); fi
    done
    for id in "${started[@]}"; do wait_broker "$id"; done
    local bootstrap=()
    for ((id = 0; id < n; id++)); do bootstrap+=("127.0.0.1:$((BASE_PORT + id))"); done
    log "cluster up: zookeeper 127.0.0.1:$ZK_PORT, $n broker(s)"
    (IFS=,; echo "${bootstrap[*]}")
}

stop_pid() { # stop_pid <name> <pid> <timeout s>: SIGTERM, wait, SIGKILL
    local name="$1" pid="$2" timeout="$3" deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    kill -CONT "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) did not stop within ${timeout} s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
}

cmd_down() {
    local purge=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --purge) purge=1; shift ;;
            *) die "down: unknown argument $1" ;;
        esac
    done
    local dir pid pids=() names=()
    for dir in "$STATE"/broker-*; do
        [[ -d "$dir" ]] || continue
        if pid="$(alive "$dir/broker.pid" "$dir/server.properties")"; then
            log "stopping ${dir##*/} (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            kill -CONT "$pid" 2>/dev/null || true
            pids+=("$pid"); names+=("${dir##*/}")
        fi
        rm -f "$dir/broker.pid"
    done
    local i
    for i in "${!pids[@]}"; do stop_pid "${names[$i]}" "${pids[$i]}" "$STOP_TIMEOUT"; done
    if pid="$(alive "$ZK_DIR/zookeeper.pid" QuorumPeerMain)"; then
        log "stopping zookeeper (pid $pid)"
        stop_pid zookeeper "$pid" 15
    fi
    rm -f "$ZK_DIR/zookeeper.pid"
    if [[ $purge -eq 1 ]]; then
        log "removing $STATE"
        rm -rf "$STATE"
    fi
    log "cluster down"
}

cmd_status() {
    local pid dir id controller
    if pid="$(alive "$ZK_DIR/zookeeper.pid" QuorumPeerMain)"; then
        echo "zookeeper   running  pid $pid  127.0.0.1:$ZK_PORT  $(four_letter srvr | grep '^Mode:' || echo 'Mode: not serving')"
    else
        echo "zookeeper   stopped"
    fi
    local registered
    registered="$(registered_ids | paste -sd' ' -)"
    for dir in "$STATE"/broker-*; do
        [[ -d "$dir" ]] || continue
        id="${dir##*-}"
        local state="stopped" reg="not registered"
        if pid="$(alive "$dir/broker.pid" "$dir/server.properties")"; then
            state="running  pid $pid"
            grep -q '^State:[[:space:]]*T' "/proc/$pid/status" 2>/dev/null && state="PAUSED   pid $pid"
        fi
        [[ " $registered " == *" $id "* ]] && reg="registered"
        echo "broker $id    $state  127.0.0.1:$((BASE_PORT + id))  $reg  log $dir/broker.log"
    done
    echo "registered broker ids: ${registered:-none}"
    controller=""
    if [[ -x "$ZKCLI" ]] && four_letter ruok | grep -q imok; then
        controller="$("$ZKCLI" -server "127.0.0.1:$ZK_PORT" get /controller 2>/dev/null \
            | sed -n 's/.*"brokerid":[[:space:]]*\(-\{0,1\}[0-9][0-9]*\).*/\1/p' | head -n1)"
    fi
    echo "controller: ${controller:-none}"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
