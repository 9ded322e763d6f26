# gregor/broker — the `gregor` broker binary (built on the host by scripts/build-images.sh with
# `cargo build --release --bin gregor`; host and image are both Debian 12, so glibc matches) on the
# debootstrapped base. broker-entrypoint.sh writes server.properties from the environment.
FROM gregor/base:bookworm

COPY gregor /usr/local/bin/gregor
COPY broker-entrypoint.sh /usr/local/bin/broker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/gregor /usr/local/bin/broker-entrypoint.sh \
 && mkdir -p /data /etc/gregor

ENV BROKER_ID=0 BROKER_PORT=9092 ZOOKEEPER_CONNECT=zookeeper:2181 RUST_LOG=info
EXPOSE 9092
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/broker-entrypoint.sh"]
