#!/usr/bin/env bash
# build-images.sh — build gregor's container images locally, without pulling from any registry.
#
#   gregor/base:bookworm     a Debian 12 minbase root filesystem made with debootstrap from the
#                            host's configured Debian mirror and loaded with `docker import`
#                            (the tarball is cached in .cache/ and reused)
#   gregor/zookeeper:latest  docker/zookeeper.Dockerfile: Debian's `zookeeper` package
#   gregor/broker:latest     docker/broker.Dockerfile: the host-built release `gregor` binary
#
# Idempotent: an image is rebuilt only when the hash of its inputs (Dockerfile, entrypoint,
# binary, base image id) differs from the `org.gregor.inputs` label on the existing image.
#
# Usage: scripts/build-images.sh [--only base|zookeeper|broker] [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/images"
BASE_IMAGE="gregor/base:bookworm"
ZK_IMAGE="gregor/zookeeper:latest"
BROKER_IMAGE="gregor/broker:latest"
SUITE="bookworm"

ONLY="all"
FORCE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --only) ONLY="${2:?--only needs base|zookeeper|broker}"; shift 2 ;;
        --only=*) ONLY="${1#--only=}"; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "build-images: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$ONLY" in all|base|zookeeper|broker) ;; *) echo "build-images: --only must be base, zookeeper or broker" >&2; exit 2 ;; esac

log() { echo "build-images: $*" >&2; }
die() { echo "build-images: error: $*" >&2; exit 1; }

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is dockerd running, may this user use it?)"

image_label() { # image label -> value or empty
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# The Debian mirror the host's apt uses (deb822 .sources or one-line format); first match wins.
host_mirror() { # $1 = regex the URI must match, $2 = regex it must not match
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        awk -v want="$1" -v avoid="$2" '
            /^[[:space:]]*#/ { next }
            /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { u = $i; break }
                                if (u ~ want && u !~ avoid) { print u; exit } u = "" ; next }
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ want && $i !~ avoid) { print $i; exit } }
        ' "$f"
    done | head -n1
}

build_base() {
    if [[ $FORCE -eq 0 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "$BASE_IMAGE present"
        return
    fi
    local tarball="$CACHE/base-$SUITE-minbase.tar"
    mkdir -p "$CACHE"
    if [[ $FORCE -eq 1 || ! -s "$tarball" ]]; then
        command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
        local mirror security
        mirror="$(host_mirror '/debian/?$' 'security')"
        security="$(host_mirror 'debian-security/?$' '^$^')"
        [[ -n "$mirror" ]] || mirror="http://deb.debian.org/debian"
        log "debootstrap --variant=minbase $SUITE from $mirror (takes a few minutes)"
        local dir
        dir="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        # shellcheck disable=SC2064
        trap "as_root rm -rf '$dir'" EXIT
        as_root debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (full log: $CACHE/debootstrap.log)"; }
        {
            echo "deb $mirror $SUITE main"
            echo "deb $mirror $SUITE-updates main"
            [[ -n "$security" ]] && echo "deb $security $SUITE-security main"
        } | as_root tee "$dir/etc/apt/sources.list" >/dev/null
        # Keep images small: no docs/man pages, no apt caches.
        as_root tee "$dir/etc/dpkg/dpkg.cfg.d/01-gregor-nodoc" >/dev/null <<'NODOC'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
NODOC
        as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
        as_root tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        as_root rm -rf "$dir"
        trap - EXIT
        log "cached root filesystem: $tarball"
    else
        log "reusing cached root filesystem $tarball"
    fi
    docker import --change 'CMD ["/bin/bash"]' --message "debootstrap minbase $SUITE" "$tarball" "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE"
}

# build_image <image> <dockerfile> <context dir> <extra input files...>
build_image() {
    local image="$1" dockerfile="$2" context="$3"; shift 3
    local base_id inputs
    base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")"
    inputs="$( { echo "$base_id"; sha256sum "$dockerfile" "$@" | awk '{print $1}'; } | sha256sum | awk '{print $1}')"
    if [[ $FORCE -eq 0 && "$(image_label "$image" org.gregor.inputs)" == "$inputs" ]]; then
        log "$image up to date (inputs ${inputs:0:12})"
        return
    fi
    log "building $image from ${dockerfile#"$ROOT"/}"
    local build_log="$CACHE/build-${image//[\/:]/_}.log"
    mkdir -p "$CACHE"
    if ! docker build --label "org.gregor.inputs=$inputs" -t "$image" -f "$dockerfile" "$context" \
        >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "docker build of $image failed (full log: $build_log)"
    fi
    log "built $image"
}

build_zookeeper() {
    build_image "$ZK_IMAGE" "$ROOT/docker/zookeeper.Dockerfile" "$ROOT/docker" \
        "$ROOT/docker/zookeeper-entrypoint.sh"
}

build_broker() {
    log "cargo build --release --bin gregor"
    (cd "$ROOT" && cargo build --release --bin gregor) || die "cargo build of the broker failed"
    local ctx="$CACHE/broker-context"
    mkdir -p "$ctx"
    # A small build context: the binary and the entrypoint only.
    cp -f "$ROOT/target/release/gregor" "$ctx/gregor"
    cp -f "$ROOT/docker/broker-entrypoint.sh" "$ctx/broker-entrypoint.sh"
    build_image "$BROKER_IMAGE" "$ROOT/docker/broker.Dockerfile" "$ctx" \
        "$ctx/gregor" "$ctx/broker-entrypoint.sh"
}

start=$SECONDS
build_base
case "$ONLY" in
    base) ;;
    zookeeper) build_zookeeper ;;
    broker) build_broker ;;
    all) build_zookeeper; build_broker ;;
esac
log "done in $((SECONDS - start)) s"
