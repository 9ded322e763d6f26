#!/bin/bash
# broker-entrypoint.sh — writes /etc/gregor/server.properties from the environment, then execs
# `gregor broker --config /etc/gregor/server.properties "$@"` (extra arguments, e.g.
# `--override key=value`, pass through).
#
#   BROKER_ID             broker.id (default 0)
#   ZOOKEEPER_CONNECT     zookeeper.connect, may end in a /chroot (default zookeeper:2181)
#   BROKER_PORT           port of the PLAINTEXT listener (default 9092)
#   LISTENERS             listeners (default PLAINTEXT://0.0.0.0:$BROKER_PORT)
#   ADVERTISED_HOST       host to advertise (default: this container's hostname)
#   ADVERTISED_LISTENERS  advertised.listeners (default PLAINTEXT://$ADVERTISED_HOST:$BROKER_PORT)
#   LOG_DIRS              log.dirs (default /data)
#   GREGOR_CFG_<NAME>     any other key: GREGOR_CFG_LOG_SEGMENT_BYTES=1048576 → log.segment.bytes
set -euo pipefail

conf=/etc/gregor/server.properties
port="${BROKER_PORT:-9092}"
host="${ADVERTISED_HOST:-$(hostname)}"
mkdir -p /etc/gregor "${LOG_DIRS:-/data}"
{
    echo "# written by broker-entrypoint.sh"
    echo "broker.id=${BROKER_ID:-0}"
    echo "listeners=${LISTENERS:-PLAINTEXT://0.0.0.0:$port}"
    echo "advertised.listeners=${ADVERTISED_LISTENERS:-PLAINTEXT://$host:$port}"
    echo "log.dirs=${LOG_DIRS:-/data}"
    echo "zookeeper.connect=${ZOOKEEPER_CONNECT:-zookeeper:2181}"
    while IFS='=' read -r name value; do
        key="${name#GREGOR_CFG_}"
        key="$(echo "$key" | tr '[:upper:]_' '[:lower:].')"
        echo "$key=$value"
    done < <(env | grep '^GREGOR_CFG_' | sort)
} >"$conf"

echo "broker-entrypoint: $conf:" >&2
sed 's/^/  /' "$conf" >&2
exec /usr/local/bin/gregor broker --config "$conf" "$@"
