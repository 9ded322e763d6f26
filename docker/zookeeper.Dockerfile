# gregor/zookeeper — Apache ZooKeeper from Debian's `zookeeper` package on the debootstrapped base.
# Built by scripts/build-images.sh (no registry pulls). Configured from the environment by
# zookeeper-entrypoint.sh: ZOO_MY_ID, ZOO_SERVERS (ensemble), ZOO_TICK_TIME, ZOO_*_LIMIT.
# Prints "gregor-zookeeper: serving" on stdout once it answers clients (testcontainers waits on it).
FROM gregor/base:bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zookeeper \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

COPY zookeeper-entrypoint.sh /usr/local/bin/zookeeper-entrypoint.sh
RUN chmod 0755 /usr/local/bin/zookeeper-entrypoint.sh && mkdir -p /data /datalog /conf

ENV ZOO_MY_ID=1 ZOO_SERVERS="" ZOO_TICK_TIME=2000 ZOO_INIT_LIMIT=10 ZOO_SYNC_LIMIT=5 \
    ZOO_MAX_CLIENT_CNXNS=0 JVMFLAGS="-Xms64m -Xmx256m"
EXPOSE 2181 2888 3888
VOLUME ["/data", "/datalog"]
ENTRYPOINT ["/usr/local/bin/zookeeper-entrypoint.sh"]
