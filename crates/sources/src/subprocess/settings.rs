//! The `[source]` keys every bridge shares: `command`, `env`,
//! `silence_timeout`, and `config`, the connector's own settings.

use super::child::{resolve_program, ChildCommand, DEFAULT_MAX_LINE_BYTES};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::{ConfigError, SectionConfig};

/// The default `silence_timeout`: long enough for a slow first query of a
/// large table, short enough that a wedged child is noticed the same hour.
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(600);

/// The child a bridge starts: `command[0]` resolved ([`resolve_program`])
/// relative to the config file, the rest its first arguments.
pub fn child_command(
    section: &SectionConfig,
    command: &[String],
    env: &BTreeMap<String, String>,
    silence_timeout: Duration,
    kind: &str,
) -> Result<ChildCommand, ConfigError> {
    let Some(program) = command.first() else {
        return Err(section.error(
            "command",
            "command is empty: give the program and its arguments, e.g. [\".venv/bin/tap-postgres\"]",
        ));
    };
    let path =
        resolve_program(program, &section.base_dir).map_err(|e| section.error("command", e))?;
    // `python3 tap.py` is named by its script.
    let base = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
    };
    let mut name = base(program);
    if name.starts_with("python") {
        if let Some(script) = command.get(1).filter(|a| !a.starts_with('-')) {
            name = base(script);
        }
    }
    let mut cmd = ChildCommand::new(path, format!("{kind} {name}"), section.base_dir.clone())
        .args(command[1..].iter().cloned());
    cmd.env = env.clone();
    cmd.silence_timeout = (!silence_timeout.is_zero()).then_some(silence_timeout);
    cmd.max_line_bytes = DEFAULT_MAX_LINE_BYTES;
    Ok(cmd)
}

/// The `config` table as the JSON the child reads. String values under a
/// key that names a credential (`password`, `token`, `secret`, `key`) are
/// registered with the redactor, so a child echoing its config on stderr
/// does not put them in our logs; values from `${ENV}` already are.
pub fn config_json(table: &toml::Table) -> Value {
    let value = toml_to_json(&toml::Value::Table(table.clone()));
    register_secrets(&value, false);
    value
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        // A TOML date-time is a string to a JSON reader.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// Registers with the redactor the string values under keys that name a
/// credential, in a config that did not come through `${ENV}` (a file).
pub fn register_secrets(v: &Value, secret_key: bool) {
    match v {
        Value::String(s) if secret_key => tributary_core::secret::register_credentials(s),
        Value::Object(m) => {
            for (k, v) in m {
                let k = k.to_ascii_lowercase();
                let secret = ["password", "token", "secret", "key", "credential"]
                    .iter()
                    .any(|w| k.contains(w))
                    && !k.ends_with("_keys")
                    && k != "replication_key"
                    && k != "primary_key";
                register_secrets(v, secret);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| register_secrets(v, secret_key)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_tables_become_json_and_their_credentials_are_redacted() {
        let table: toml::Table = r#"
            host = "localhost"
            port = 5432
            ratio = 0.5
            start_date = 2024-01-01T00:00:00Z
            api_token = "tk-9f8e7d6c5b4a"
            nested = { client_secret = "cs-0a1b2c3d4e5f" }
        "#
        .parse()
        .unwrap();
        let json = config_json(&table);
        assert_eq!(json["port"], 5432);
        assert_eq!(json["start_date"], "2024-01-01T00:00:00Z");
        assert_eq!(json["nested"]["client_secret"], "cs-0a1b2c3d4e5f");
        let line = "connecting with tk-9f8e7d6c5b4a and cs-0a1b2c3d4e5f to localhost";
        assert_eq!(
            tributary_core::secret::redact(line),
            "connecting with *** and *** to localhost"
        );
    }
}
