//! The `[source]` table of `type = "singer"`.

use crate::subprocess::{child_command, config_json, ChildCommand, DEFAULT_SILENCE_TIMEOUT};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tributary_config::units::de_duration;
use tributary_config::{ConfigError, SectionConfig};

/// `[source]` with `type = "singer"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingerConfig {
    /// The tap and its first arguments: `[".venv/bin/tap-postgres"]`.
    pub command: Vec<String>,
    /// The tap's config, written to a private temporary file for `--config`.
    #[serde(default)]
    pub config: toml::Table,
    /// The tap streams (`tap_stream_id`s) to read; unset: every stream the
    /// tap's catalog offers.
    pub streams: Option<Vec<String>>,
    /// A catalog file to use instead of running the tap with `--discover`
    /// (a Meltano project's `.meltano/run/tap-x/tap.properties.json`).
    pub catalog: Option<PathBuf>,
    /// How the catalog reaches the tap: `--catalog` (Meltano SDK taps) or
    /// `--properties` (older singer-python taps).
    #[serde(default = "default_catalog_flag")]
    pub catalog_flag: String,
    /// Per stream: `{ method = "INCREMENTAL", key = "updated_at" }`.
    #[serde(default)]
    pub replication: BTreeMap<String, Replication>,
    /// Extra environment of the tap.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// No output from the tap for this long: it is killed and the run is
    /// retried. `"0s"`: never.
    #[serde(default = "default_silence", deserialize_with = "de_duration")]
    pub silence_timeout: Duration,
    /// Overrides the connector's `runtime.batch_size`.
    pub batch_size: Option<usize>,
}

/// `replication.STREAM = { method = "INCREMENTAL", key = "updated_at" }`:
/// the stream's `replication-method` and `replication-key` metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// `INCREMENTAL`, `FULL_TABLE` or `LOG_BASED`.
    pub method: Option<String>,
    pub key: Option<String>,
}

fn default_catalog_flag() -> String {
    "--catalog".into()
}

fn default_silence() -> Duration {
    DEFAULT_SILENCE_TIMEOUT
}

/// The validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub command: ChildCommand,
    /// The tap's config as JSON; holds resolved secrets, so never logged.
    pub config: Value,
    pub streams: Option<Vec<String>>,
    pub catalog: Option<PathBuf>,
    pub catalog_flag: String,
    pub replication: BTreeMap<String, Replication>,
    pub batch_size: usize,
}

pub(crate) fn resolve(
    section: &SectionConfig,
    default_batch: usize,
) -> Result<Settings, ConfigError> {
    let cfg: SingerConfig = section.parse()?;
    crate::check_batch_size(section, "batch_size", cfg.batch_size)?;
    let command = child_command(
        section,
        &cfg.command,
        &cfg.env,
        cfg.silence_timeout,
        "singer",
    )?;
    for (stream, r) in &cfg.replication {
        if let Some(m) = &r.method {
            if !matches!(m.as_str(), "INCREMENTAL" | "FULL_TABLE" | "LOG_BASED") {
                return Err(section.error(
                    &format!("replication.{stream}.method"),
                    format!("unknown replication method `{m}`: use INCREMENTAL, FULL_TABLE or LOG_BASED"),
                ));
            }
        }
        if r.method.as_deref() == Some("INCREMENTAL") && r.key.is_none() {
            return Err(section.error(
                &format!("replication.{stream}"),
                "INCREMENTAL replication needs a `key` (the replication key column)",
            ));
        }
    }
    if let Some(streams) = &cfg.streams {
        if streams.is_empty() {
            return Err(section.error(
                "streams",
                "streams is empty: name at least one, or remove it to read every stream",
            ));
        }
    }
    if !matches!(cfg.catalog_flag.as_str(), "--catalog" | "--properties") {
        return Err(section.error(
            "catalog_flag",
            "catalog_flag must be \"--catalog\" or \"--properties\"",
        ));
    }
    let catalog = cfg.catalog.map(|p| section.resolve_path(&p));
    if let Some(p) = &catalog {
        if !p.is_file() {
            return Err(section.error(
                "catalog",
                format!("catalog file `{}` does not exist", p.display()),
            ));
        }
    }
    Ok(Settings {
        command,
        config: config_json(&cfg.config),
        streams: cfg.streams,
        catalog,
        catalog_flag: cfg.catalog_flag,
        replication: cfg.replication,
        batch_size: cfg.batch_size.unwrap_or(default_batch),
    })
}
