//! Znode payloads of Kafka 2.8 (reference §1): the data model and pure encode/decode functions.
//!
//! Encoders build `serde_json::Value`s by hand so they cannot fail or panic; output is compact
//! and keys come out sorted (Kafka readers ignore key order). Decoders accept every version a
//! 2.x cluster may have written (broker v1–v5, topic v1–v3) and ignore unknown keys, so a
//! cluster that previously ran Kafka can be taken over.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::CodecError;

/// Version written to `/brokers/ids/<id>` (IBP ≥ 2.7-IV0 adds `features`).
pub const BROKER_JSON_VERSION: i64 = 5;
/// Version written to `/brokers/topics/<t>` (2.8 adds `topic_id`).
pub const TOPIC_JSON_VERSION: i64 = 3;
/// Kafka's `Topic.MAX_NAME_LENGTH`.
pub use crate::common::MAX_TOPIC_NAME_LENGTH;
/// `leader` value meaning "no leader".
pub use crate::common::NO_LEADER;

/// Security protocol of a listener, with Kafka's wire ids (used in UpdateMetadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's `SecurityProtocol.id`.
    pub fn id(self) -> i16 {
        match self {
            Self::Plaintext => 0,
            Self::Ssl => 1,
            Self::SaslPlaintext => 2,
            Self::SaslSsl => 3,
        }
    }

    /// Kafka's `SecurityProtocol.name`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Case-insensitive, like `SecurityProtocol.forName`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPoint {
    /// Upper-case listener name, e.g. `PLAINTEXT` or `INTERNAL`.
    pub listener_name: String,
    pub security_protocol: SecurityProtocol,
    /// Empty means "unset" (Kafka's `null` host).
    pub host: String,
    pub port: i32,
}

impl EndPoint {
    /// A listener whose name is its protocol's name, the common single-listener case.
    pub fn plaintext(host: impl Into<String>, port: i32) -> Self {
        Self {
            listener_name: "PLAINTEXT".to_string(),
            security_protocol: SecurityProtocol::Plaintext,
            host: host.into(),
            port,
        }
    }

    /// `LISTENER://host:port`, with IPv6 hosts in brackets (Kafka's `connectionString`).
    pub fn connection_string(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.listener_name, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.listener_name, self.host, self.port)
        }
    }

    /// Parses a connection string; the protocol comes from `protocols` (the broker JSON's
    /// `listener_security_protocol_map`) or, without a map, from the listener name itself.
    pub fn parse(
        s: &str,
        protocols: Option<&BTreeMap<String, SecurityProtocol>>,
    ) -> Result<Self, CodecError> {
        let (listener, hostport) = s
            .split_once("://")
            .ok_or_else(|| CodecError::new(format!("endpoint {s:?} lacks '://'")))?;
        let listener_name = listener.to_ascii_uppercase();
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| CodecError::new(format!("endpoint {s:?} lacks a port")))?;
        let port: i32 = port
            .parse()
            .map_err(|_| CodecError::new(format!("endpoint {s:?} has a non-numeric port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let security_protocol = match protocols {
            Some(map) => map.get(&listener_name).copied().ok_or_else(|| {
                CodecError::new(format!(
                    "listener {listener_name} of {s:?} has no security protocol"
                ))
            })?,
            None => SecurityProtocol::from_name(&listener_name).ok_or_else(|| {
                CodecError::new(format!(
                    "listener {listener_name} is not a security protocol"
                ))
            })?,
        };
        Ok(Self {
            listener_name,
            security_protocol,
            host,
            port,
        })
    }
}

/// A broker registration (`/brokers/ids/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub endpoints: Vec<EndPoint>,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// The endpoint of `listener` (an upper-case listener name), if the broker has one.
    pub fn endpoint(&self, listener: &str) -> Option<&EndPoint> {
        self.endpoints.iter().find(|e| e.listener_name == listener)
    }

    /// `host:port` of `listener`.
    pub fn address(&self, listener: &str) -> Option<String> {
        self.endpoint(listener)
            .map(|e| format!("{}:{}", e.host, e.port))
    }
}

/// `/brokers/topics/<t>`: replicas per partition (`[0]` is the preferred leader) and, during a
/// reassignment, the replicas being added and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAssignment {
    /// 22-character base64 topic id (absent in topics written before 2.8).
    pub topic_id: Option<String>,
    pub partitions: BTreeMap<i32, Vec<i32>>,
    pub adding: BTreeMap<i32, Vec<i32>>,
    pub removing: BTreeMap<i32, Vec<i32>>,
}

/// `…/partitions/<p>/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderIsrAndControllerEpoch {
    /// `NO_LEADER` (-1) when the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Epoch of the controller that wrote this state.
    pub controller_epoch: i32,
}

fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn int_list(values: &[i32]) -> Value {
    Value::Array(values.iter().map(|v| Value::from(*v)).collect())
}

fn partition_map(map: &BTreeMap<i32, Vec<i32>>) -> Value {
    Value::Object(
        map.iter()
            .map(|(p, r)| (p.to_string(), int_list(r)))
            .collect(),
    )
}

fn to_bytes(value: Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|e| {
        CodecError::new(format!(
            "invalid {what} JSON {:?}: {e}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

// ---- /controller and /controller_epoch ----

/// `{"brokerid":2,"timestamp":"1589000000000","version":1}`.
pub fn encode_controller(broker_id: i32, timestamp_ms: i64) -> Vec<u8> {
    to_bytes(obj([
        ("version", Value::from(1)),
        ("brokerid", Value::from(broker_id)),
        ("timestamp", Value::from(timestamp_ms.to_string())),
    ]))
}

/// The `brokerid` of a `/controller` payload.
pub fn decode_controller(bytes: &[u8]) -> Result<i32, CodecError> {
    #[derive(Deserialize)]
    struct Controller {
        brokerid: i32,
    }
    parse::<Controller>(bytes, "controller").map(|c| c.brokerid)
}

/// `/controller_epoch` is a plain ASCII integer, not JSON.
pub fn encode_controller_epoch(epoch: i32) -> Vec<u8> {
    epoch.to_string().into_bytes()
}

pub fn decode_controller_epoch(bytes: &[u8]) -> Result<i32, CodecError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            CodecError::new(format!(
                "controller epoch {:?} is not an integer",
                String::from_utf8_lossy(bytes)
            ))
        })
}

// ---- /cluster/id ----

/// `{"id":"…","version":"1"}`: the version is a *string* in Kafka.
pub fn encode_cluster_id(id: &str) -> Vec<u8> {
    to_bytes(obj([
        ("version", Value::from("1")),
        ("id", Value::from(id)),
    ]))
}

pub fn decode_cluster_id(bytes: &[u8]) -> Result<String, CodecError> {
    #[derive(Deserialize)]
    struct ClusterId {
        id: String,
    }
    parse::<ClusterId>(bytes, "cluster id").map(|c| c.id)
}

/// Kafka's base64 UUID form: 16 random bytes, URL-safe base64, no padding (22 characters).
pub fn base64_uuid(uuid: &uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(uuid.as_bytes())
}

/// A fresh random id for `/cluster/id` (`CoreUtils.generateUuidAsBase64`).
pub fn new_cluster_id() -> String {
    base64_uuid(&uuid::Uuid::new_v4())
}

/// A fresh random topic id. Like later Kafka versions, ids starting with `-` are redrawn so
/// they can be passed as command-line arguments.
pub fn new_topic_id() -> String {
    loop {
        let id = base64_uuid(&uuid::Uuid::new_v4());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn validate_base64_uuid(id: &str) -> Result<(), CodecError> {
    match URL_SAFE_NO_PAD.decode(id) {
        Ok(bytes) if bytes.len() == 16 => Ok(()),
        _ => Err(CodecError::new(format!(
            "topic_id {id:?} is not a base64 UUID"
        ))),
    }
}

// ---- /brokers/ids/<id> ----

/// The v5 registration. `host`/`port` mirror the first PLAINTEXT endpoint (null/-1 without
/// one) for pre-0.9 clients; `jmx_port` is -1 (no JMX); `rack` is omitted when unset.
pub fn encode_broker(info: &BrokerInfo, timestamp_ms: i64) -> Vec<u8> {
    let plaintext = info
        .endpoints
        .iter()
        .find(|e| e.security_protocol == SecurityProtocol::Plaintext);
    let host = match plaintext {
        Some(e) if !e.host.is_empty() => Value::from(e.host.clone()),
        _ => Value::Null,
    };
    let port = plaintext.map_or(-1, |e| e.port);
    let endpoints = info
        .endpoints
        .iter()
        .map(|e| Value::from(e.connection_string()))
        .collect();
    let protocols: Map<String, Value> = info
        .endpoints
        .iter()
        .map(|e| {
            (
                e.listener_name.clone(),
                Value::from(e.security_protocol.name()),
            )
        })
        .collect();
    let mut json = obj([
        ("version", Value::from(BROKER_JSON_VERSION)),
        ("host", host),
        ("port", Value::from(port)),
        ("jmx_port", Value::from(-1)),
        ("timestamp", Value::from(timestamp_ms.to_string())),
        ("endpoints", Value::Array(endpoints)),
        ("listener_security_protocol_map", Value::Object(protocols)),
        ("features", Value::Object(Map::new())),
    ]);
    if let (Some(rack), Value::Object(map)) = (&info.rack, &mut json) {
        map.insert("rack".to_string(), Value::from(rack.clone()));
    }
    to_bytes(json)
}

/// Decodes any broker registration version (1–5). `id` comes from the znode name.
pub fn decode_broker(id: i32, bytes: &[u8]) -> Result<BrokerInfo, CodecError> {
    #[derive(Deserialize)]
    struct Broker {
        version: i32,
        host: Option<String>,
        port: Option<i32>,
        endpoints: Option<Vec<String>>,
        listener_security_protocol_map: Option<BTreeMap<String, String>>,
        rack: Option<String>,
    }
    let b: Broker = parse(bytes, "broker registration")?;
    let endpoints = match b.version {
        v if v < 1 => {
            return Err(CodecError::new(format!(
                "unsupported broker registration version {v}"
            )))
        }
        1 => {
            let host = b
                .host
                .ok_or_else(|| CodecError::new("v1 registration lacks host"))?;
            let port = b
                .port
                .ok_or_else(|| CodecError::new("v1 registration lacks port"))?;
            vec![EndPoint::plaintext(host, port)]
        }
        _ => {
            let protocols = match b.listener_security_protocol_map {
                Some(map) => {
                    let mut parsed = BTreeMap::new();
                    for (listener, protocol) in map {
                        let p = SecurityProtocol::from_name(&protocol).ok_or_else(|| {
                            CodecError::new(format!("unknown security protocol {protocol:?}"))
                        })?;
                        parsed.insert(listener.to_ascii_uppercase(), p);
                    }
                    Some(parsed)
                }
                None => None,
            };
            let listeners = b
                .endpoints
                .ok_or_else(|| CodecError::new("registration lacks endpoints"))?;
            listeners
                .iter()
                .map(|s| EndPoint::parse(s, protocols.as_ref()))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(BrokerInfo {
        id,
        endpoints,
        rack: b.rack,
    })
}

// ---- /brokers/topics/<t> ----

/// The v3 assignment; `adding_replicas`/`removing_replicas` list only non-empty entries.
pub fn encode_topic_assignment(assignment: &TopicAssignment) -> Vec<u8> {
    let non_empty = |m: &BTreeMap<i32, Vec<i32>>| {
        m.iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(p, r)| (*p, r.clone()))
            .collect()
    };
    let mut json = obj([
        ("version", Value::from(TOPIC_JSON_VERSION)),
        ("partitions", partition_map(&assignment.partitions)),
        (
            "adding_replicas",
            partition_map(&non_empty(&assignment.adding)),
        ),
        (
            "removing_replicas",
            partition_map(&non_empty(&assignment.removing)),
        ),
    ]);
    if let (Some(id), Value::Object(map)) = (&assignment.topic_id, &mut json) {
        map.insert("topic_id".to_string(), Value::from(id.clone()));
    }
    to_bytes(json)
}

fn parse_partition_map(
    raw: BTreeMap<String, Vec<i32>>,
    field: &str,
) -> Result<BTreeMap<i32, Vec<i32>>, CodecError> {
    raw.into_iter()
        .map(|(p, replicas)| {
            let p: i32 = p.parse().map_err(|_| {
                CodecError::new(format!("{field} has non-numeric partition key {p:?}"))
            })?;
            Ok((p, replicas))
        })
        .collect()
}

/// Decodes v1, v2 and v3 assignments. Like Kafka, adding/removing entries are kept only for
/// partitions present in `partitions`, and empty lists are dropped.
pub fn decode_topic_assignment(bytes: &[u8]) -> Result<TopicAssignment, CodecError> {
    #[derive(Deserialize)]
    struct Topic {
        topic_id: Option<String>,
        #[serde(default)]
        partitions: BTreeMap<String, Vec<i32>>,
        #[serde(default)]
        adding_replicas: BTreeMap<String, Vec<i32>>,
        #[serde(default)]
        removing_replicas: BTreeMap<String, Vec<i32>>,
    }
    let t: Topic = parse(bytes, "topic assignment")?;
    if let Some(id) = &t.topic_id {
        validate_base64_uuid(id)?;
    }
    let partitions = parse_partition_map(t.partitions, "partitions")?;
    let keep = |m: BTreeMap<i32, Vec<i32>>| -> BTreeMap<i32, Vec<i32>> {
        m.into_iter()
            .filter(|(p, r)| !r.is_empty() && partitions.contains_key(p))
            .collect()
    };
    let adding = keep(parse_partition_map(t.adding_replicas, "adding_replicas")?);
    let removing = keep(parse_partition_map(
        t.removing_replicas,
        "removing_replicas",
    )?);
    Ok(TopicAssignment {
        topic_id: t.topic_id,
        partitions,
        adding,
        removing,
    })
}

// ---- /config/<type>/<entity> ----

/// `{"config":{"retention.ms":"86400000"},"version":1}`.
pub fn encode_config(config: &BTreeMap<String, String>) -> Vec<u8> {
    let entries = config
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    to_bytes(obj([
        ("version", Value::from(1)),
        ("config", Value::Object(entries)),
    ]))
}

/// An empty payload (a node created without data) means no overrides, as in Kafka.
pub fn decode_config(bytes: &[u8]) -> Result<BTreeMap<String, String>, CodecError> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        config: BTreeMap<String, String>,
    }
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    parse::<Config>(bytes, "entity config").map(|c| c.config)
}

// ---- …/partitions/<p>/state ----

/// `{"controller_epoch":7,"isr":[1,2],"leader":1,"leader_epoch":4,"version":1}`.
pub fn encode_partition_state(state: &LeaderIsrAndControllerEpoch) -> Vec<u8> {
    to_bytes(obj([
        ("version", Value::from(1)),
        ("leader", Value::from(state.leader)),
        ("leader_epoch", Value::from(state.leader_epoch)),
        ("isr", int_list(&state.isr)),
        ("controller_epoch", Value::from(state.controller_epoch)),
    ]))
}

pub fn decode_partition_state(bytes: &[u8]) -> Result<LeaderIsrAndControllerEpoch, CodecError> {
    #[derive(Deserialize)]
    struct State {
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
        controller_epoch: i32,
    }
    let s: State = parse(bytes, "partition state")?;
    // A controller writes leader_epoch + 1: an epoch that cannot be incremented is refused
    // here rather than wrapped to a negative (older-looking) one later.
    if !(0..i32::MAX).contains(&s.leader_epoch) {
        return Err(CodecError::new(format!(
            "leader epoch {} is outside 0..{}",
            s.leader_epoch,
            i32::MAX
        )));
    }
    Ok(LeaderIsrAndControllerEpoch {
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        isr: s.isr,
        controller_epoch: s.controller_epoch,
    })
}

// ---- partition lists: isr_change_<seq> and /admin/preferred_replica_election ----

/// `{"partitions":[{"partition":0,"topic":"t"}],"version":1}`.
pub fn encode_partition_list(partitions: &[(String, i32)]) -> Vec<u8> {
    let list = partitions
        .iter()
        .map(|(t, p)| {
            obj([
                ("topic", Value::from(t.clone())),
                ("partition", Value::from(*p)),
            ])
        })
        .collect();
    to_bytes(obj([
        ("version", Value::from(1)),
        ("partitions", Value::Array(list)),
    ]))
}

/// Kafka treats these lists as sets, so duplicates are dropped (first occurrence kept).
pub fn decode_partition_list(bytes: &[u8]) -> Result<Vec<(String, i32)>, CodecError> {
    #[derive(Deserialize)]
    struct Entry {
        topic: String,
        partition: i32,
    }
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        partitions: Vec<Entry>,
    }
    let list: List = parse(bytes, "partition list")?;
    let mut out: Vec<(String, i32)> = Vec::with_capacity(list.partitions.len());
    for e in list.partitions {
        let tp = (e.topic, e.partition);
        if !out.contains(&tp) {
            out.push(tp);
        }
    }
    Ok(out)
}

// ---- /log_dir_event_notification/log_dir_event_<seq> ----

/// Kafka's `LogDirEventNotificationHandler.LogDirFailure`, the only event 2.8 writes.
pub const LOG_DIR_FAILURE_EVENT: i32 = 1;

/// `{"version":1,"broker":<id>,"event":1}` (Kafka's `LogDirEventNotificationSequenceZNode`).
pub fn encode_log_dir_event(broker: i32) -> Vec<u8> {
    to_bytes(obj([
        ("version", Value::from(1)),
        ("broker", Value::from(broker)),
        ("event", Value::from(LOG_DIR_FAILURE_EVENT)),
    ]))
}

/// The broker id of a log-dir event (Kafka reads only `broker`).
pub fn decode_log_dir_event(bytes: &[u8]) -> Result<i32, CodecError> {
    #[derive(Deserialize)]
    struct Event {
        broker: i32,
    }
    let e: Event = parse(bytes, "log dir event")?;
    Ok(e.broker)
}

/// One broker's block of producer ids, `/latest_producer_id_block` (Kafka's
/// `ProducerIdBlockZNode`); both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub broker: i32,
    pub start: i64,
    pub end: i64,
}

/// `{"version":1,"broker":<id>,"block_start":"<n>","block_end":"<n>"}`: Kafka writes the
/// ends as decimal strings.
pub fn encode_producer_id_block(b: &ProducerIdBlock) -> Vec<u8> {
    to_bytes(obj([
        ("version", Value::from(1)),
        ("broker", Value::from(b.broker)),
        ("block_start", Value::from(b.start.to_string())),
        ("block_end", Value::from(b.end.to_string())),
    ]))
}

pub fn decode_producer_id_block(bytes: &[u8]) -> Result<ProducerIdBlock, CodecError> {
    #[derive(Deserialize)]
    struct Block {
        broker: i32,
        block_start: String,
        block_end: String,
    }
    let b: Block = parse(bytes, "producer id block")?;
    let num = |field: &str, v: &str| {
        v.parse::<i64>().map_err(|_| {
            CodecError::new(format!("producer id block {field} {v:?} is not a number"))
        })
    };
    let block = ProducerIdBlock {
        broker: b.broker,
        start: num("block_start", &b.block_start)?,
        end: num("block_end", &b.block_end)?,
    };
    if block.start < 0 || block.end < block.start {
        return Err(CodecError::new(format!(
            "producer id block [{}, {}] is not a valid range",
            block.start, block.end
        )));
    }
    Ok(block)
}

// ---- validation (AdminZkClient.validateTopicCreate, Topic.validate) ----

pub use crate::common::validate_topic_name;

/// Two names collide when they differ only by `.` versus `_` (metric names would clash).
pub fn topics_collide(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

/// Kafka's assignment rules: partitions `0..n`, n ≥ 1, every partition with the same positive
/// number of distinct replicas.
pub fn validate_assignment(assignment: &BTreeMap<i32, Vec<i32>>) -> Result<(), String> {
    let Some(first) = assignment.values().next() else {
        return Err("at least one partition is required".to_string());
    };
    if assignment.keys().copied().ne(0..assignment.len() as i32) {
        return Err("partitions should be a consecutive 0-based integer sequence".to_string());
    }
    for (p, replicas) in assignment {
        if replicas.is_empty() {
            return Err(format!(
                "partition {p}: replication factor must be larger than 0"
            ));
        }
        if replicas.len() != first.len() {
            return Err("all partitions should have the same number of replicas".to_string());
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != replicas.len() {
            return Err(format!("partition {p}: duplicate replica in {replicas:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
