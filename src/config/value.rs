//! Parsing and rendering a config value as Kafka's `ConfigDef` does: the type's parse (trimmed,
//! booleans in any case, lists split on commas), then the key's validator; and back to Kafka's
//! string form (`ConfigDef.convertToString`), which is what DescribeConfigs shows.

use super::keys::{ConfigType, Validator};
use super::ConfigError;

/// A parsed value. INT, SHORT and LONG are all `Long` (range-checked for their type).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Long(i64),
    Double(f64),
    Text(String),
    List(Vec<String>),
}

pub(super) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses `raw` as `ty` and checks it with `validator`; errors name `key`.
pub fn parse(
    key: &str,
    ty: ConfigType,
    validator: Validator,
    raw: &str,
) -> Result<Value, ConfigError> {
    let v = raw.trim();
    let type_err = |t: &str| invalid(key, raw, format!("not a number of type {t}"));
    let value = match ty {
        ConfigType::Bool if v.eq_ignore_ascii_case("true") => Value::Bool(true),
        ConfigType::Bool if v.eq_ignore_ascii_case("false") => Value::Bool(false),
        ConfigType::Bool => {
            return Err(invalid(
                key,
                raw,
                "expected value to be either true or false",
            ))
        }
        ConfigType::Short => Value::Long(v.parse::<i16>().map_err(|_| type_err("SHORT"))?.into()),
        ConfigType::Int => Value::Long(v.parse::<i32>().map_err(|_| type_err("INT"))?.into()),
        ConfigType::Long => Value::Long(v.parse::<i64>().map_err(|_| type_err("LONG"))?),
        ConfigType::Double => Value::Double(v.parse::<f64>().map_err(|_| type_err("DOUBLE"))?),
        ConfigType::List => Value::List(split_list(v)),
        ConfigType::Str | ConfigType::Class | ConfigType::Password => Value::Text(v.to_string()),
    };
    check(key, raw, &value, validator)?;
    Ok(value)
}

/// Java's `split("\\s*,\\s*")` of a trimmed value: empty → no entries, trailing empties dropped.
fn split_list(v: &str) -> Vec<String> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    while items.last().is_some_and(String::is_empty) {
        items.pop();
    }
    items
}

fn check(key: &str, raw: &str, value: &Value, validator: Validator) -> Result<(), ConfigError> {
    match (validator, value) {
        (Validator::Any, _) => Ok(()),
        (Validator::AtLeast(min), Value::Long(n)) if *n < min => {
            Err(invalid(key, raw, format!("value must be at least {min}")))
        }
        (Validator::AtLeast(min), Value::Double(d)) if *d < min as f64 => {
            Err(invalid(key, raw, format!("value must be at least {min}")))
        }
        (Validator::Between(lo, hi), Value::Double(d)) if !(lo..=hi).contains(d) => Err(invalid(
            key,
            raw,
            format!(
                "value must be between {} and {}",
                java_double(lo),
                java_double(hi)
            ),
        )),
        (Validator::OneOf(allowed), Value::Text(s)) if !allowed.contains(&s.as_str()) => {
            Err(invalid(
                key,
                raw,
                format!("string must be one of: {}", allowed.join(", ")),
            ))
        }
        (Validator::EachOneOf(allowed), Value::List(items)) => {
            match items.iter().find(|i| !allowed.contains(&i.as_str())) {
                Some(bad) => Err(invalid(
                    key,
                    raw,
                    format!("'{bad}' is not one of: {}", allowed.join(", ")),
                )),
                None => Ok(()),
            }
        }
        (Validator::Check(f), _) => f(raw.trim()).map_err(|reason| invalid(key, raw, reason)),
        _ => Ok(()),
    }
}

impl Value {
    /// Kafka's `ConfigDef.convertToString`.
    pub fn render(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Long(n) => n.to_string(),
            Value::Double(d) => java_double(*d),
            Value::Text(s) => s.clone(),
            Value::List(items) => items.join(","),
        }
    }

    /// The number, converted to the type gregor keeps it in; errors name `key`.
    pub fn num<T: TryFrom<i64>>(&self, key: &str) -> Result<T, ConfigError> {
        match self {
            Value::Long(n) => T::try_from(*n).map_err(|_| {
                invalid(
                    key,
                    &n.to_string(),
                    format!("out of range for {}", std::any::type_name::<T>()),
                )
            }),
            other => Err(invalid(key, &other.render(), "not a number")),
        }
    }

    /// The boolean; errors name `key`.
    pub fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => Err(invalid(key, &other.render(), "not a boolean")),
        }
    }

    /// The list entries (a single entry for a non-list value).
    pub fn items(&self) -> Vec<String> {
        match self {
            Value::List(items) => items.clone(),
            other => vec![other.render()],
        }
    }
}

/// Java's `Double.toString`: plain notation in [1e-3, 1e7) with at least one decimal, otherwise
/// `d.dddE±n`; both with the shortest digits that read back as the same double.
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = d.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let s = format!("{d}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{d:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exp}")
}
