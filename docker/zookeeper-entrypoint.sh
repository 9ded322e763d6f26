#!/bin/bash
# zookeeper-entrypoint.sh — writes /conf/zoo.cfg from the environment and runs QuorumPeerMain in
# the foreground, logging to the console (stdout). Once the server answers the `srvr` four-letter
# command with a Mode (standalone, leader or follower) it prints "gregor-zookeeper: serving ...".
#
#   ZOO_MY_ID      this server's id (ensemble only), default 1
#   ZOO_SERVERS    ensemble, e.g. "server.1=zk1:2888:3888;2181 server.2=zk2:2888:3888;2181 ..."
#                  (empty = standalone)
#   ZOO_TICK_TIME, ZOO_INIT_LIMIT, ZOO_SYNC_LIMIT, ZOO_MAX_CLIENT_CNXNS, JVMFLAGS
set -euo pipefail

mkdir -p /conf /data /datalog
{
    echo "tickTime=${ZOO_TICK_TIME:-2000}"
    echo "initLimit=${ZOO_INIT_LIMIT:-10}"
    echo "syncLimit=${ZOO_SYNC_LIMIT:-5}"
    echo "dataDir=/data"
    echo "dataLogDir=/datalog"
    echo "clientPort=2181"
    echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-0}"
    echo "4lw.commands.whitelist=*"
    echo "admin.enableServer=false"
    echo "autopurge.purgeInterval=1"
    if [[ -n "${ZOO_SERVERS:-}" ]]; then
        echo "quorumListenOnAllIPs=true"
        echo "standaloneEnabled=false"
        echo "reconfigEnabled=false"
        for server in $ZOO_SERVERS; do echo "$server"; done
    fi
} >/conf/zoo.cfg
if [[ -n "${ZOO_SERVERS:-}" ]]; then
    echo "${ZOO_MY_ID:-1}" >/data/myid
fi
cp /etc/zookeeper/conf/log4j.properties /conf/log4j.properties

echo "gregor-zookeeper: zoo.cfg:"
sed 's/^/  /' /conf/zoo.cfg

CP="/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
# shellcheck disable=SC2086
java $JVMFLAGS -Dzookeeper.root.logger=INFO,CONSOLE -Dzookeeper.log.dir=/datalog \
    -Dlog4j.configuration=file:/conf/log4j.properties \
    -cp "$CP" org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg &
ZK_PID=$!
trap 'kill -TERM "$ZK_PID" 2>/dev/null || true' TERM INT

# Announce readiness once the server serves requests (an ensemble member only after a quorum).
(
    while kill -0 "$ZK_PID" 2>/dev/null; do
        if exec 3<>/dev/tcp/127.0.0.1/2181 2>/dev/null; then
            printf 'srvr' >&3
            # Bounded: a server that accepted the connection but never answers must not
            # stall the readiness probe forever.
            mode="$(timeout 2 grep -m1 '^Mode:' <&3 || true)"
            exec 3<&- 3>&-
            if [[ -n "$mode" ]]; then
                echo "gregor-zookeeper: serving on port 2181 ($mode)"
                exit 0
            fi
        fi
        sleep 0.2
    done
) &

set +e
wait "$ZK_PID"
status=$?
# A trapped signal interrupts `wait`; wait again for the JVM's own exit.
if kill -0 "$ZK_PID" 2>/dev/null; then wait "$ZK_PID"; status=$?; fi
exit "$status"
