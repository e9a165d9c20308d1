//! A connector config as Kafka Connect's REST API carries one: a flat map of
//! keys to strings. [`flatten`] turns a config file into that map (for
//! `GET /connectors/{name}/config`), [`validate`] takes one back and
//! validates it as `tributary check` validates a file before connecting
//! (for `PUT /connector-plugins/{plugin}/config/validate`).
//!
//! Keys are dotted TOML paths (`source.streams.orders.path`). Values are
//! the strings themselves, and every other value in its TOML literal form
//! (`500`, `true`, `["a", "b"]`); a string that would read as one of those
//! is shown quoted (`"\"500\""`), so a map read back gives the same file.
//! A Kafka Connect config (one with `connector.class`) is converted first,
//! as `tributary convert` converts it.

use std::collections::BTreeMap;
use std::path::Path;
use toml_edit::{DocumentMut, Item, Key, Table, Value};

/// What a shown config never gives away: the value of a key named like a
/// credential that is not a `${...}` reference.
const HIDDEN: &str = "[hidden]";

/// Key names (their last segment) that hold credentials.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "credentials",
    "authorization",
];

/// The keys of an `auth` table that are not credentials; its others
/// (`value`, `password`, `token`, ...) are.
const AUTH_PUBLIC: &[&str] = &[
    "type",
    "name",
    "in",
    "username",
    "token_url",
    "client_id",
    "scopes",
    "refresh_before",
];

/// One config error, on the key it is about (`connector` when the error
/// is about no key in particular).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Validation {
    pub errors: Vec<KeyError>,
}

/// The file's keys and values as strings, credentials masked.
pub fn flatten(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(doc) = text.parse::<DocumentMut>() {
        walk_table(doc.as_table(), &mut Vec::new(), &mut out);
    }
    out
}

fn walk_table(table: &Table, path: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
    for (k, item) in table.iter() {
        path.push(k.to_string());
        match item {
            Item::Table(t) => walk_table(t, path, out),
            Item::Value(Value::InlineTable(t)) => {
                for (k, v) in t.iter() {
                    path.push(k.to_string());
                    leaf(v, path, out);
                    path.pop();
                }
            }
            Item::Value(v) => leaf(v, path, out),
            Item::ArrayOfTables(a) => {
                let inline: toml_edit::Array = a
                    .iter()
                    .map(|t| Value::InlineTable(t.clone().into_inline_table()))
                    .collect();
                leaf(&Value::Array(inline), path, out);
            }
            Item::None => {}
        }
        path.pop();
    }
}

fn leaf(v: &Value, path: &[String], out: &mut BTreeMap<String, String>) {
    if let Value::InlineTable(t) = v {
        let mut path = path.to_vec();
        for (k, v) in t.iter() {
            path.push(k.to_string());
            leaf(v, &path, out);
            path.pop();
        }
        return;
    }
    let key = dotted(path);
    let text = match v {
        Value::String(s) if reads_as_other_type(s.value()) => literal(v),
        Value::String(s) => s.value().clone(),
        other => literal(other),
    };
    let shown = shown_value(&key, &text);
    out.insert(key, shown);
}

fn literal(v: &Value) -> String {
    v.clone().decorated("", "").to_string()
}

fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|seg| Key::new(seg.as_str()).display_repr().into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether a string read back from the map would become a number, a
/// boolean, an array or a table instead.
fn reads_as_other_type(s: &str) -> bool {
    matches!(
        s.parse::<Value>(),
        Ok(Value::Integer(_)
            | Value::Float(_)
            | Value::Boolean(_)
            | Value::Array(_)
            | Value::InlineTable(_))
    )
}

/// `value` as the admin server may show it: credentials (by key name, or a
/// URL's password) masked, registered secrets redacted.
pub fn shown_value(key: &str, value: &str) -> String {
    if value.contains("${") {
        return tributary_core::secret::redact(value);
    }
    let mut segments = key.rsplit('.');
    let last = segments.next().unwrap_or(key).to_ascii_lowercase();
    let in_auth = segments.next() == Some("auth");
    if SECRET_WORDS.iter().any(|w| last.contains(w))
        || (in_auth && !AUTH_PUBLIC.contains(&last.as_str()))
    {
        return HIDDEN.to_string();
    }
    let shown = match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => value.to_string(),
    };
    tributary_core::secret::redact(&shown)
}

/// Validates `props` as a config of `plugin` (a source or sink type, or a
/// Kafka Connect connector class that `tributary convert` reads). `Err` is
/// a request that is not a config of that plugin at all.
pub fn validate(plugin: &str, props: &BTreeMap<String, String>) -> Result<Validation, String> {
    let request = Path::new("request");
    let text = match props.get("connector.class") {
        Some(class) => {
            let simple = class.rsplit('.').next().unwrap_or(class);
            if plugin != class && plugin != simple {
                return Err(format!(
                    "Included connector type {class} does not match request type {plugin}"
                ));
            }
            let json = serde_json::to_vec(props).map_err(|e| e.to_string())?;
            match crate::convert::convert(request, &json) {
                Ok(converted) => converted.toml,
                Err(e) => {
                    return Ok(Validation {
                        errors: vec![key_error(e.key.as_deref(), &e.message, e.suggestion)],
                    })
                }
            }
        }
        None => unflatten(plugin, props)?,
    };
    // A converted Connect config refers to its password as a variable; the
    // request carries it.
    let env = |name: &str| match name {
        crate::convert::PASSWORD_ENV if props.contains_key("connector.class") => {
            props.get("chargeover.password").cloned()
        }
        _ => std::env::var(name).ok(),
    };
    let config = match crate::build::load_text(request, &text, &env) {
        Ok(c) => c,
        Err(f) => {
            return Ok(Validation {
                errors: vec![failure_error(f)],
            })
        }
    };
    let mut errors = Vec::new();
    let clock = std::sync::Arc::new(tributary_core::SystemClock);
    if let Err(f) = crate::build::source(&config, clock) {
        errors.push(failure_error(f));
    }
    if let Err(f) = crate::build::sink(&config, None) {
        errors.push(failure_error(f));
    }
    for e in &mut errors {
        e.key = narrowed(&e.key, &e.message, props);
    }
    Ok(Validation { errors })
}

/// An error a section reports about itself (`source.streams.items.pagination`:
/// `invalid type: string "lots"`) belongs to the request's key under it whose
/// value it quotes, when there is one.
fn narrowed(key: &str, message: &str, props: &BTreeMap<String, String>) -> String {
    if props.contains_key(key) {
        return key.to_string();
    }
    let prefix = format!("{key}.");
    let mut under = props
        .iter()
        .filter(|(k, v)| k.starts_with(&prefix) && message.contains(&format!("\"{v}\"")));
    match (under.next(), under.next()) {
        (Some((k, _)), None) => k.clone(),
        _ => key.to_string(),
    }
}

fn key_error(key: Option<&str>, message: &str, suggestion: Option<String>) -> KeyError {
    let mut message = message.to_string();
    if let Some(s) = suggestion {
        message.push_str(&format!(" (did you mean `{s}`?)"));
    }
    KeyError {
        key: key.unwrap_or("connector").to_string(),
        message: tributary_core::secret::redact(&message),
    }
}

fn failure_error(f: crate::exit::Failure) -> KeyError {
    match f.error.downcast_ref::<tributary_config::ConfigError>() {
        Some(e) => key_error(e.key.as_deref(), &e.message, e.suggestion.clone()),
        None => key_error(None, &f.error.to_string(), None),
    }
}

/// The TOML file of a flat map (`POST /connectors` of a worker): the
/// inverse of [`flatten`].
pub fn unflattened(props: &BTreeMap<String, String>) -> Result<String, String> {
    let plugin = props
        .get("source.type")
        .ok_or("the config has no `source.type`")?;
    unflatten(plugin, props)
}

/// The TOML file of a flat map, the plugin's type filled in when the map
/// leaves it out.
fn unflatten(plugin: &str, props: &BTreeMap<String, String>) -> Result<String, String> {
    let sources = crate::app::registry().names();
    let is_source = sources.contains(&plugin);
    let is_sink = tributary_sinks::SINK_TYPES.contains(&plugin);
    if !is_source && !is_sink {
        let mut all: Vec<&str> = sources.clone();
        all.extend(tributary_sinks::SINK_TYPES);
        return Err(format!(
            "Failed to find any class that implements Connector and which name matches {plugin}, available connectors are: {}",
            all.join(", ")
        ));
    }
    let source = props.get("source.type").map(String::as_str);
    let sink = props.get("sink.type").map(String::as_str);
    let fill = if source == Some(plugin) || sink == Some(plugin) {
        None
    } else if is_source && source.is_none() {
        Some("source.type")
    } else if is_sink && sink.is_none() {
        Some("sink.type")
    } else {
        let included = source.or(sink).unwrap_or_default();
        return Err(format!(
            "Included connector type {included} does not match request type {plugin}"
        ));
    };
    let mut doc = DocumentMut::new();
    let mut put = |key: &str, text: &str| -> Result<(), String> {
        let path = Key::parse(key).map_err(|_| format!("`{key}` is not a TOML key"))?;
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| "an empty key".to_string())?;
        let mut table = doc.as_table_mut();
        for seg in parents {
            let entry = table.entry(seg.get()).or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            table = entry
                .as_table_mut()
                .ok_or_else(|| format!("`{key}`: `{}` is already a value", seg.get()))?;
        }
        if table.contains_key(last.get()) {
            return Err(format!("`{key}` is given twice"));
        }
        table.insert(last.get(), Item::Value(typed(text)));
        Ok(())
    };
    for (k, v) in props {
        put(k, v)?;
    }
    if let Some(key) = fill {
        put(key, plugin)?;
    }
    Ok(doc.to_string())
}

/// A map value as TOML: its literal when it reads as a number, boolean,
/// array, table or quoted string, else the string itself.
fn typed(text: &str) -> Value {
    match text.parse::<Value>() {
        Ok(
            v @ (Value::Integer(_)
            | Value::Float(_)
            | Value::Boolean(_)
            | Value::Array(_)
            | Value::InlineTable(_)),
        ) => v.decorated("", ""),
        Ok(Value::String(s)) if text.trim_start().starts_with(['"', '\'']) => {
            Value::from(s.value().as_str())
        }
        _ => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_flattens_to_strings_and_reads_back_the_same() {
        let text = r#"name = "shop"
[source]
type = "http"
url = "https://api.example.com/v1/orders"
token = "literal-tok3n"
api_key = "${API_KEY}"
auth = { type = "api_key", name = "X-Key", value = "k3y" }
page_size = 500
code = "500"
schedule = { cron = "0 0 2 * * ?", timezone = "UTC" }
[source.streams."eu.orders"]
fields = ["id", "total"]
[sink]
type = "postgres"
url = "postgres://app:hunter2@db:5432/shop"
"#;
        let flat = flatten(text);
        let expected: BTreeMap<String, String> = [
            ("name", "shop"),
            ("source.type", "http"),
            ("source.url", "https://api.example.com/v1/orders"),
            ("source.token", "[hidden]"),
            ("source.api_key", "${API_KEY}"),
            ("source.auth.type", "api_key"),
            ("source.auth.name", "X-Key"),
            ("source.auth.value", "[hidden]"),
            ("source.page_size", "500"),
            ("source.code", "\"500\""),
            ("source.schedule.cron", "0 0 2 * * ?"),
            ("source.schedule.timezone", "UTC"),
            ("source.streams.\"eu.orders\".fields", "[\"id\", \"total\"]"),
            ("sink.type", "postgres"),
            ("sink.url", "postgres://app:***@db:5432/shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(flat, expected);
        let back = unflatten("http", &flat).unwrap();
        let reread = flatten(&back);
        assert_eq!(reread, flat, "{back}");
        let doc: DocumentMut = back.parse().unwrap();
        assert_eq!(doc["source"]["page_size"].as_integer(), Some(500));
        assert_eq!(doc["source"]["code"].as_str(), Some("500"));
    }
}
