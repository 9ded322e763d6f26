//! gregor's cluster tests, one binary: each module starts its own cluster (ZooKeeper in a
//! testcontainers container from the locally built `gregor/zookeeper` image, brokers as child
//! processes) and drives it with real clients.

mod bad_znodes;
mod basic;
mod clients;
mod configs;
mod connections;
mod control_plane;
mod control_validation;
mod external_clients;
mod failover;
mod fencing;
mod fetch_limits;
mod follower_hw;
mod group_clients;
mod group_python;
mod group_raw;
mod groups;
mod hostile;
mod idempotence;
mod idempotence_wire;
mod isr;
mod lifecycle;
mod log_dir_failure;
mod malformed;
mod memory;
mod raw;
mod recovery;
mod replication;
mod shutdown;
mod transactions;
mod txn_log;
mod txn_wire;
mod validation;
