//! What DescribeConfigs reports, as Kafka 2.8's `ConfigHelper.describeConfigs` does it.
//!
//! A broker lists every key of the table with its value (the key's own, not a synonym's:
//! `log.retention.ms` is null unless set) and the source of the first synonym that sets it
//! (STATIC_BROKER_CONFIG for `server.properties`, DEFAULT_CONFIG otherwise), plus every key of
//! `server.properties` the table does not know, which Kafka cannot type and so hides as sensitive.
//! A topic lists every topic key with the value it takes effect with: the override
//! (TOPIC_CONFIG) or the broker synonym's value and source. Synonyms come in Kafka's order
//! (topic override, static broker, default), starting at the key itself, so a topic's
//! `retention.ms` that inherits `log.retention.hours` reports DEFAULT_CONFIG with no synonyms,
//! exactly as Kafka does. Sensitive values are never shown.

use std::collections::BTreeMap;

use super::broker::Props;
use super::keys::{BrokerKey, Dynamic, BROKER_KEYS, TOPIC_KEYS};
use super::value::parse;
use super::ConfigError;

/// Kafka's `DescribeConfigsResponse.ConfigSource` (only the ones gregor can produce have a
/// source of their own; dynamic configs do not exist yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicConfig,
    StaticBrokerConfig,
    DefaultConfig,
}

impl ConfigSource {
    /// The wire id.
    pub fn id(self) -> i8 {
        match self {
            ConfigSource::TopicConfig => 1,
            ConfigSource::StaticBrokerConfig => 4,
            ConfigSource::DefaultConfig => 5,
        }
    }
}

/// One synonym of a described key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One described key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    /// `None` for a key without a value, and for every sensitive key.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// Always computed; the api layer sends them only when asked (`include_synonyms`).
    pub synonyms: Vec<Synonym>,
}

fn hide(value: Option<String>, sensitive: bool) -> Option<String> {
    value.filter(|_| !sensitive)
}

/// Kafka's `configSynonyms`: the synonyms of `name` that `server.properties` sets, then those
/// with a default, each in `names` order; everything before `name` itself is dropped.
fn broker_synonyms(
    table: &[BrokerKey],
    name: &str,
    names: &[&str],
    statics: &BTreeMap<String, String>,
    sensitive: bool,
) -> Vec<Synonym> {
    let set = names.iter().filter_map(|n| {
        statics.get(*n).map(|raw| Synonym {
            name: n.to_string(),
            value: hide(Some(raw.clone()), sensitive),
            source: ConfigSource::StaticBrokerConfig,
        })
    });
    let defaults = names.iter().filter_map(|n| {
        let key = table.iter().find(|k| k.name == *n)?;
        key.default.map(|d| Synonym {
            name: n.to_string(),
            value: hide(Some(d.to_string()), sensitive),
            source: ConfigSource::DefaultConfig,
        })
    });
    set.chain(defaults).skip_while(|s| s.name != name).collect()
}

fn described(
    name: &str,
    value: Option<String>,
    read_only: bool,
    sensitive: bool,
    synonyms: Vec<Synonym>,
) -> Described {
    Described {
        name: name.to_string(),
        value: hide(value, sensitive),
        source: synonyms
            .first()
            .map_or(ConfigSource::DefaultConfig, |s| s.source),
        read_only,
        sensitive,
        synonyms,
    }
}

/// A key gregor does not know: Kafka cannot tell its type, so it treats it as sensitive.
fn untyped(name: &str, source: ConfigSource, read_only: bool) -> Described {
    let synonym = Synonym {
        name: name.to_string(),
        value: None,
        source,
    };
    described(name, None, read_only, true, vec![synonym])
}

/// Every broker key for a broker started with `statics` (its `server.properties` and
/// overrides), sorted by name.
pub fn describe_broker(statics: &BTreeMap<String, String>) -> Vec<Described> {
    describe_broker_in(BROKER_KEYS, statics)
}

fn describe_broker_in(table: &[BrokerKey], statics: &BTreeMap<String, String>) -> Vec<Described> {
    let mut out: Vec<Described> = table
        .iter()
        .map(|key| {
            let sensitive = key.ty.is_sensitive();
            // The value as Kafka's parsed config renders it (`TRUE` → `true`); start-up has
            // already refused a value that does not parse.
            let value = match statics.get(key.name) {
                Some(raw) => Some(
                    parse(key.name, key.ty, key.validator, raw)
                        .map_or_else(|_| raw.trim().to_string(), |v| v.render()),
                ),
                None => key.default.map(str::to_string),
            };
            let synonyms =
                broker_synonyms(table, key.name, &key.synonym_names(), statics, sensitive);
            let read_only = key.dynamic == Dynamic::ReadOnly;
            described(key.name, value, read_only, sensitive, synonyms)
        })
        .collect();
    for name in statics.keys() {
        if !table.iter().any(|k| k.name == name) {
            out.push(untyped(name, ConfigSource::StaticBrokerConfig, true));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every topic key for a topic with `overrides` on a broker started with `statics`, sorted by
/// name.
///
/// # Errors
/// An override that does not parse for its key (the topic's config is then unusable, as in
/// Kafka, whose `LogConfig.fromProps` fails the same way).
pub fn describe_topic(
    statics: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Result<Vec<Described>, ConfigError> {
    let props = Props::new(statics);
    let mut out = Vec::with_capacity(TOPIC_KEYS.len());
    for key in TOPIC_KEYS {
        let sensitive = key.ty.is_sensitive();
        let mut synonyms = Vec::new();
        let value = match overrides.get(key.name) {
            Some(raw) => {
                let v = parse(key.name, key.ty, key.validator, raw)?.render();
                synonyms.push(Synonym {
                    name: key.name.to_string(),
                    value: hide(Some(v.clone()), sensitive),
                    source: ConfigSource::TopicConfig,
                });
                Some(v)
            }
            None => match key.broker_synonym {
                Some(b) => props.effective(b)?.map(|v| v.render()),
                None => key.default.map(str::to_string),
            },
        };
        if let Some(b) = key.broker_synonym.and_then(super::keys::broker_key) {
            let names = b.synonym_names();
            synonyms.extend(broker_synonyms(
                BROKER_KEYS,
                b.name,
                &names,
                statics,
                sensitive,
            ));
        }
        out.push(described(key.name, value, false, sensitive, synonyms));
    }
    for name in overrides.keys() {
        if super::keys::topic_key(name).is_none() {
            out.push(untyped(name, ConfigSource::TopicConfig, false));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{ConfigType, Support, Validator};
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A table with a password key, which the real table does not have yet.
    static SECRET_TABLE: &[BrokerKey] = &[
        BrokerKey {
            name: "ssl.key.password",
            ty: ConfigType::Password,
            default: None,
            validator: Validator::Any,
            dynamic: Dynamic::PerBroker,
            support: Support::Applied,
            synonyms: &[],
        },
        BrokerKey {
            name: "plain",
            ty: ConfigType::Str,
            default: Some("d"),
            validator: Validator::Any,
            dynamic: Dynamic::ReadOnly,
            support: Support::Applied,
            synonyms: &[],
        },
    ];

    #[test]
    fn sensitive_values_are_hidden_everywhere() {
        let out = describe_broker_in(SECRET_TABLE, &map(&[("ssl.key.password", "hunter2")]));
        let secret = out.iter().find(|d| d.name == "ssl.key.password").unwrap();
        assert!(secret.sensitive);
        assert_eq!(secret.value, None);
        assert_eq!(secret.source, ConfigSource::StaticBrokerConfig);
        assert!(!secret.read_only);
        assert_eq!(secret.synonyms.len(), 1);
        assert_eq!(secret.synonyms[0].value, None);
        let plain = out.iter().find(|d| d.name == "plain").unwrap();
        assert_eq!(plain.value.as_deref(), Some("d"));
        assert!(!plain.sensitive && plain.read_only);
        assert!(!format!("{out:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_static_key_is_listed_as_sensitive() {
        let out = describe_broker(&map(&[("my.secret.thing", "s3cret")]));
        let d = out.iter().find(|d| d.name == "my.secret.thing").unwrap();
        assert!(d.sensitive && d.read_only);
        assert_eq!(d.value, None);
        assert_eq!(d.source, ConfigSource::StaticBrokerConfig);
    }
}
