//! The `[source]` table of `type = "mqtt"`, validated into the settings the
//! client uses.

use crate::push::{MessageFormat, MessageRules, ReconnectConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tributary_config::units::{de_duration, ByteSize};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::secret::register;
use tributary_core::Secret;

/// `[source]` with `type = "mqtt"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:1883` (also `tcp://`), or `mqtts://host:8883` (also `ssl://`) for TLS.
    pub url: String,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Must be stable across restarts: the broker keeps the session (the
    /// subscriptions, the unacknowledged messages) under it. Default
    /// `tributary-{connector}-{stream}`.
    pub client_id: Option<String>,
    /// `false` (default): a persistent session, so QoS 1/2 messages published
    /// while tributary is down are kept by the broker and delivered after a
    /// restart. `true` discards them.
    #[serde(default)]
    pub clean_session: bool,
    /// MQTT 5: how long the broker keeps the session after a disconnect.
    #[serde(default = "default_session_expiry", deserialize_with = "de_duration")]
    pub session_expiry: Duration,
    #[serde(default = "default_keep_alive", deserialize_with = "de_duration")]
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<TlsConfig>,
    /// Seed 003's `topic_mappings`: topic filters (`+`, `#` wildcards) and
    /// where their messages go.
    pub topic_mappings: Vec<TopicMapping>,
    /// The stream's name (its state key and default target suffix).
    #[serde(default = "default_stream")]
    pub stream: String,
    #[serde(default)]
    pub format: MessageFormat,
    /// Dotted path of the record key; absent in a message: a generated UUID.
    /// Default `id`; `""`: always generated.
    pub id_field: Option<String>,
    /// MQTT 5: unacknowledged QoS 1/2 messages the broker may send before
    /// waiting for acknowledgements. Messages are acknowledged only after
    /// their checkpoint is committed, so this must cover what arrives in a
    /// flush interval; default 65535 (the maximum).
    pub receive_maximum: Option<u16>,
    /// Larger messages are refused by the client (the connection drops);
    /// default 16 MiB.
    pub max_message_bytes: Option<ByteSize>,
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// Overrides the connector's `runtime.batch_size`.
    pub batch_size: Option<usize>,
}

fn default_stream() -> String {
    "messages".into()
}

fn default_session_expiry() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
}

/// `[[source.topic_mappings]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicMapping {
    /// A topic filter: `sensors/+/temperature`, `events/#`.
    #[serde(alias = "topic")]
    pub source_pattern: String,
    /// Where matching messages go; absent: the stream's target.
    pub target: Option<String>,
    /// 0, 1 (default) or 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
}

fn default_qos() -> u8 {
    1
}

/// `tls = { ca_file = "ca.pem" }`; `mqtts://` alone uses the system's roots.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate and PKCS#8 key for client authentication.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Accept any certificate (tests only).
    #[serde(default)]
    pub accept_invalid_certs: bool,
}

pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 << 20;

/// The validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub stream: String,
    pub host: String,
    pub port: u16,
    /// The broker as it may be shown in messages.
    pub shown: String,
    pub protocol: Protocol,
    pub client_id: String,
    pub clean_session: bool,
    pub session_expiry: Duration,
    pub keep_alive: Duration,
    pub credentials: Option<(String, Secret)>,
    pub tls: Option<TlsSettings>,
    pub mappings: Vec<TopicMapping>,
    pub rules: MessageRules,
    pub receive_maximum: u16,
    pub max_message_bytes: usize,
    pub reconnect: ReconnectConfig,
    pub batch_size: usize,
}

/// TLS material, read when the config is loaded so a missing file is a
/// config error naming its key.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    pub ca_pem: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub accept_invalid_certs: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client key is a secret.
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

pub(crate) fn resolve(
    section: &SectionConfig,
    connector: &str,
    default_batch_size: usize,
) -> Result<Settings, ConfigError> {
    let cfg: MqttConfig = section.parse()?;
    let url = url::Url::parse(&cfg.url)
        .map_err(|e| section.error("url", format!("invalid url `{}`: {e}", cfg.url)))?;
    let (secure, default_port) = match url.scheme() {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" => (true, 8883),
        other => {
            return Err(section.error(
                "url",
                format!("unsupported scheme `{other}`; use mqtt://host:1883 or mqtts://host:8883"),
            ))
        }
    };
    let Some(host) = url.host_str().map(str::to_string) else {
        return Err(section.error("url", "url has no host, e.g. mqtt://127.0.0.1:1883"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(section.error(
            "url",
            "put credentials in `username` and `password` (password = \"${MQTT_PASSWORD}\"), not in the url",
        ));
    }
    let port = url.port().unwrap_or(default_port);
    if cfg.topic_mappings.is_empty() {
        return Err(section.error(
            "topic_mappings",
            "at least one topic mapping is required, e.g. [[source.topic_mappings]] source_pattern = \"sensors/#\"",
        ));
    }
    for (i, m) in cfg.topic_mappings.iter().enumerate() {
        if let Err(why) = super::topic::check_filter(&m.source_pattern) {
            return Err(section.error(&format!("topic_mappings[{i}].source_pattern"), why));
        }
        if m.qos > 2 {
            return Err(section.error(&format!("topic_mappings[{i}].qos"), "qos must be 0, 1 or 2"));
        }
    }
    let credentials = match (cfg.username, cfg.password) {
        (Some(u), Some(p)) => {
            register(p.expose());
            Some((u, p))
        }
        (Some(u), None) => Some((u, Secret::default())),
        (None, Some(_)) => {
            return Err(section.error("password", "password needs a username"));
        }
        (None, None) => None,
    };
    let tls = match (secure, cfg.tls) {
        (false, Some(_)) => {
            return Err(section.error("tls", "tls needs an mqtts:// url"));
        }
        (false, None) => None,
        (true, tls) => Some(read_tls(section, tls.unwrap_or_default())?),
    };
    if cfg.stream.trim().is_empty() {
        return Err(section.error("stream", "stream must not be empty"));
    }
    if cfg.receive_maximum == Some(0) {
        return Err(section.error("receive_maximum", "receive_maximum must be at least 1"));
    }
    if cfg.protocol == Protocol::V311 && cfg.receive_maximum.is_some() {
        return Err(section.error(
            "receive_maximum",
            "receive_maximum is an MQTT 5 setting; with 3.1.1 the broker decides (mosquitto: max_inflight_messages)",
        ));
    }
    if cfg.keep_alive < Duration::from_secs(5) {
        return Err(section.error("keep_alive", "keep_alive must be at least 5s"));
    }
    cfg.reconnect.validate(section)?;
    crate::check_batch_size(section, "batch_size", cfg.batch_size)?;
    let rules = MessageRules::new(
        section,
        cfg.format,
        Some(cfg.id_field.unwrap_or_else(|| "id".into())),
        None,
    )?;
    let client_id = cfg
        .client_id
        .unwrap_or_else(|| format!("tributary-{connector}-{}", cfg.stream));
    if client_id.is_empty() {
        return Err(section.error(
            "client_id",
            "client_id must not be empty: a persistent session needs a stable id",
        ));
    }
    Ok(Settings {
        shown: format!("{}://{host}:{port}", url.scheme()),
        stream: cfg.stream,
        host,
        port,
        protocol: cfg.protocol,
        client_id,
        clean_session: cfg.clean_session,
        session_expiry: cfg.session_expiry,
        keep_alive: cfg.keep_alive,
        credentials,
        tls,
        mappings: cfg.topic_mappings,
        rules,
        receive_maximum: cfg.receive_maximum.unwrap_or(u16::MAX),
        max_message_bytes: cfg
            .max_message_bytes
            .map_or(DEFAULT_MAX_MESSAGE_BYTES, |b| b.0)
            .clamp(1024, u32::MAX as u64) as usize,
        reconnect: cfg.reconnect,
        batch_size: cfg.batch_size.unwrap_or(default_batch_size).max(1),
    })
}

fn read_tls(section: &SectionConfig, tls: TlsConfig) -> Result<TlsSettings, ConfigError> {
    let read = |key: &str, path: &PathBuf| {
        let full = section.resolve_path(path);
        std::fs::read(&full).map_err(|e| {
            section.error(
                &format!("tls.{key}"),
                format!("cannot read {}: {e}", full.display()),
            )
        })
    };
    let ca_pem = tls
        .ca_file
        .as_ref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    let identity = match (&tls.client_cert, &tls.client_key) {
        (Some(c), Some(k)) => Some((read("client_cert", c)?, read("client_key", k)?)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(section.error("tls.client_cert", "client_cert needs client_key"))
        }
        (None, Some(_)) => {
            return Err(section.error("tls.client_key", "client_key needs client_cert"))
        }
    };
    if let Some(pem) = &ca_pem {
        native_tls::Certificate::from_pem(pem)
            .map_err(|e| section.error("tls.ca_file", format!("not a PEM certificate: {e}")))?;
    }
    if let Some((cert, key)) = &identity {
        native_tls::Identity::from_pkcs8(cert, key).map_err(|e| {
            section.error(
                "tls.client_key",
                format!("client_cert and client_key are not a PEM certificate and PKCS#8 key: {e}"),
            )
        })?;
    }
    Ok(TlsSettings {
        ca_pem,
        identity,
        accept_invalid_certs: tls.accept_invalid_certs,
    })
}

impl Settings {
    /// The mapping a message's topic falls under: the first that matches.
    pub fn mapping_for(&self, topic: &str) -> Option<&TopicMapping> {
        self.mappings
            .iter()
            .find(|m| super::topic::matches(&m.source_pattern, topic))
    }
}
