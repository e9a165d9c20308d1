//! The `[source]` table of `type = "websocket"`, validated into the settings
//! the connection task uses.

use crate::http::template::{json_placeholders, Template};
use crate::push::{MessageFormat, MessageRules, ReconnectConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::{de_duration, ByteSize};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::secret::register;
use tributary_core::Secret;

/// `[source]` with `type = "websocket"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// `ws://` or `wss://`; may use `{{ resume }}` (the last resume token,
    /// empty before the first).
    pub url: String,
    /// The stream's name (its state key and default target suffix).
    #[serde(default = "default_stream")]
    pub stream: String,
    #[serde(default)]
    pub format: MessageFormat,
    #[serde(default)]
    pub auth: WsAuth,
    /// Extra handshake headers (not secret; use `auth` for credentials).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Messages sent after every (re)connect, in order: a string is sent as
    /// text as it is, a table as its JSON. `{{ resume }}` in them is the last
    /// resume token (a string that is exactly `{{ resume }}` keeps its JSON
    /// type; null before the first).
    #[serde(default)]
    pub subscribe: Vec<Value>,
    /// Dotted path of the record key; default `id`. Messages without it get
    /// a generated UUID. `""`: always generated.
    pub id_field: Option<String>,
    /// Target of each record, a template over the message's fields, e.g.
    /// `"market.{{ channel }}"`; a message without those fields goes to the
    /// stream's target.
    pub target: Option<String>,
    /// Dotted path of a sequence number or resume token the server puts in
    /// its messages: kept in the checkpoint and available as `{{ resume }}`
    /// in `url` and `subscribe` on every (re)connect, so a server that can
    /// replay sends what was missed.
    pub resume_field: Option<String>,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// The TCP connect plus the WebSocket handshake, at most.
    #[serde(default = "default_connect_timeout", deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// A longer message (after reassembling its fragments) fails the
    /// connection instead of growing memory without bound; default 16 MiB.
    pub max_message_bytes: Option<ByteSize>,
    /// Overrides the connector's `runtime.batch_size`.
    pub batch_size: Option<usize>,
}

fn default_stream() -> String {
    "messages".into()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `auth = { type = "bearer", token = "${WS_TOKEN}" }` (seed 002's `auth-type`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WsAuth {
    #[default]
    None,
    /// `?{name}={token}` on the URL.
    Query { name: String, token: Secret },
    /// `{name}: {token}` on the handshake.
    Header { name: String, token: Secret },
    /// `Authorization: Bearer {token}`.
    Bearer { token: Secret },
}

/// `heartbeat = { interval = "30s", timeout = "10s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// How often to send a ping; `"0s"` disables the heartbeat.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// A ping not answered by a pong within this long declares the
    /// connection dead, and it is reconnected.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 << 20;

/// The validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub stream: String,
    pub url: Template,
    pub auth: WsAuth,
    pub headers: Vec<(String, String)>,
    pub subscribe: Vec<Value>,
    pub rules: MessageRules,
    pub resume_field: Option<String>,
    pub heartbeat: Option<HeartbeatConfig>,
    pub reconnect: ReconnectConfig,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
    pub batch_size: usize,
}

pub(crate) fn resolve(
    section: &SectionConfig,
    default_batch_size: usize,
) -> Result<Settings, ConfigError> {
    let cfg: WebSocketConfig = section.parse()?;
    let url = Template::parse(&cfg.url).map_err(|e| section.error("url", e))?;
    check_placeholders(section, "url", url.placeholders())?;
    // The scheme must be visible without rendering: a template can only
    // fill in parts of the URL.
    let scheme = cfg.url.split("://").next().unwrap_or("");
    if !matches!(scheme, "ws" | "wss") || !cfg.url.contains("://") {
        return Err(section.error(
            "url",
            format!(
                "url must start with ws:// or wss://, got `{}`",
                tributary_core::secret::redact(&cfg.url)
            ),
        ));
    }
    let probe = url
        .render(&serde_json::json!({"resume": "0"}))
        .ok()
        .and_then(|u| url::Url::parse(&u).ok());
    if probe.as_ref().and_then(|u| u.host_str()).is_none() {
        return Err(section.error("url", "url is not a valid ws:// or wss:// URL with a host"));
    }
    for (i, message) in cfg.subscribe.iter().enumerate() {
        let key = format!("subscribe[{i}]");
        let placeholders = json_placeholders(message).map_err(|e| section.error(&key, e))?;
        check_placeholders(section, &key, placeholders.iter().map(String::as_str))?;
        if !(message.is_string() || message.is_object() || message.is_array()) {
            return Err(section.error(
                &key,
                "a subscription message is a string (sent as text) or a table (sent as JSON)",
            ));
        }
    }
    if cfg.stream.trim().is_empty() {
        return Err(section.error("stream", "stream must not be empty"));
    }
    match &cfg.auth {
        WsAuth::None => {}
        WsAuth::Query { name, token } | WsAuth::Header { name, token } => {
            if name.trim().is_empty() {
                return Err(section.error("auth.name", "name must not be empty"));
            }
            register(token.expose());
        }
        WsAuth::Bearer { token } => register(token.expose()),
    }
    for name in cfg.headers.keys() {
        if http_header_name_invalid(name) {
            return Err(section.error(
                &format!("headers.{name}"),
                format!("`{name}` is not a valid HTTP header name"),
            ));
        }
    }
    cfg.reconnect.validate(section)?;
    let heartbeat = if cfg.heartbeat.interval.is_zero() {
        None
    } else {
        if cfg.heartbeat.timeout.is_zero() {
            return Err(section.error(
                "heartbeat.timeout",
                "timeout must be greater than 0 (or set interval = \"0s\" to disable the heartbeat)",
            ));
        }
        Some(cfg.heartbeat)
    };
    crate::check_batch_size(section, "batch_size", cfg.batch_size)?;
    let rules = MessageRules::new(
        section,
        cfg.format,
        Some(cfg.id_field.unwrap_or_else(|| "id".into())),
        cfg.target.as_deref(),
    )?;
    if cfg.format == MessageFormat::Text && cfg.resume_field.is_some() {
        return Err(section.error(
            "resume_field",
            "resume_field needs format = \"json\" (text messages have no fields)",
        ));
    }
    Ok(Settings {
        stream: cfg.stream,
        url,
        auth: cfg.auth,
        headers: cfg.headers.into_iter().collect(),
        subscribe: cfg.subscribe,
        rules,
        resume_field: cfg.resume_field.filter(|f| !f.is_empty()),
        heartbeat,
        reconnect: cfg.reconnect,
        connect_timeout: cfg.connect_timeout,
        max_message_bytes: cfg
            .max_message_bytes
            .map_or(DEFAULT_MAX_MESSAGE_BYTES, |b| b.0)
            .clamp(1, usize::MAX as u64) as usize,
        batch_size: cfg.batch_size.unwrap_or(default_batch_size).max(1),
    })
}

/// Only `{{ resume }}` exists in a WebSocket template.
fn check_placeholders<'a>(
    section: &SectionConfig,
    key: &str,
    mut paths: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    match paths.find(|p| *p != "resume") {
        Some(other) => Err(section.error(
            key,
            format!("unknown placeholder `{{{{ {other} }}}}`; the only one is `{{{{ resume }}}}`"),
        )),
        None => Ok(()),
    }
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::section;
    use std::path::Path;

    fn resolve_str(body: &str) -> Result<Settings, ConfigError> {
        resolve(
            &section(
                &format!("[source]\ntype = \"websocket\"\n{body}"),
                Path::new("/cfg"),
            ),
            100,
        )
    }

    #[test]
    fn defaults() {
        let s = resolve_str("url = \"ws://127.0.0.1:9/x\"\n").unwrap();
        assert_eq!(s.stream, "messages");
        assert_eq!(s.rules.id_field.as_deref(), Some("id"));
        assert_eq!(
            s.heartbeat.as_ref().unwrap().interval,
            Duration::from_secs(30)
        );
        assert_eq!(s.reconnect.max_restarts, -1);
        assert_eq!(s.batch_size, 100);
        assert_eq!(s.max_message_bytes, 16 << 20);
    }

    #[test]
    fn errors_name_the_key() {
        let err = resolve_str("url = \"http://x/y\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.url"));
        assert!(err.message.contains("ws:// or wss://"), "{err}");

        let err = resolve_str("url = \"ws://x/{{ seq }}\"\n").unwrap_err();
        assert!(
            err.message.contains("unknown placeholder `{{ seq }}`"),
            "{err}"
        );

        let err =
            resolve_str("url = \"ws://x/\"\nsubscribe = [{ op = \"{{ nope }}\" }]\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.subscribe[0]"));

        let err =
            resolve_str("url = \"ws://x/\"\nreconnect = { max_restarts = -2 }\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.reconnect.max_restarts"));

        let err =
            resolve_str("url = \"ws://x/\"\nheartbeet = { interval = \"1s\" }\n").unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("heartbeat"));

        let err = resolve_str("url = \"ws://x/\"\nauth = { type = \"bearer\" }\n").unwrap_err();
        assert!(err.message.contains("token"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = resolve_str(
            "url = \"wss://x/\"\nauth = { type = \"query\", name = \"key\", token = \"tok-7731-secret\" }\n",
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("tok-7731-secret"), "{debug}");
    }
}
