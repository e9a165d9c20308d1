//! The `[source]` table of `type = "airbyte"`.

use crate::subprocess::{child_command, config_json, ChildCommand, DEFAULT_SILENCE_TIMEOUT};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tributary_config::units::de_duration;
use tributary_config::{ConfigError, SectionConfig};

/// `[source]` with `type = "airbyte"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirbyteConfig {
    /// The source's entry point and first arguments:
    /// `[".venv/bin/source-faker"]`, `[".venv/bin/source-declarative-manifest"]`.
    pub command: Vec<String>,
    /// The connector's config (its `spec`), written to a private
    /// temporary file for `--config`.
    #[serde(default)]
    pub config: toml::Table,
    /// A declarative manifest (YAML) for `source-declarative-manifest`,
    /// passed as `--manifest-path`.
    pub manifest: Option<PathBuf>,
    /// A catalog file to use instead of running `discover` (what `discover`
    /// printed: its CATALOG message, or the message's `catalog` object).
    pub catalog: Option<PathBuf>,
    /// The streams to read; unset: every stream the catalog offers.
    pub streams: Option<Vec<String>>,
    /// The sync mode of streams without their own: unset, incremental
    /// where the stream supports it, else full refresh.
    pub sync_mode: Option<SyncMode>,
    /// Per stream: `{ mode = "incremental", cursor_field = ["updated_at"], primary_key = ["id"] }`.
    #[serde(default)]
    pub sync: BTreeMap<String, StreamSync>,
    /// Extra environment of the connector.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// No output for this long: the connector is killed and the run is
    /// retried. `"0s"`: never.
    #[serde(default = "default_silence", deserialize_with = "de_duration")]
    pub silence_timeout: Duration,
    /// Overrides the connector's `runtime.batch_size`.
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    FullRefresh,
    Incremental,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
        }
    }
}

/// `sync.STREAM`: what the configured catalog says about one stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSync {
    pub mode: Option<SyncMode>,
    /// The cursor's path, for streams whose source does not define it.
    pub cursor_field: Option<Vec<String>>,
    /// Key fields, for streams whose source does not define them.
    pub primary_key: Option<Vec<String>>,
}

fn default_silence() -> Duration {
    DEFAULT_SILENCE_TIMEOUT
}

/// The validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub command: ChildCommand,
    /// The connector's config as JSON; holds resolved secrets, never logged.
    pub config: Value,
    pub manifest: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    pub streams: Option<Vec<String>>,
    pub sync_mode: Option<SyncMode>,
    pub sync: BTreeMap<String, StreamSync>,
    pub batch_size: usize,
}

pub(crate) fn resolve(
    section: &SectionConfig,
    default_batch: usize,
) -> Result<Settings, ConfigError> {
    let cfg: AirbyteConfig = section.parse()?;
    crate::check_batch_size(section, "batch_size", cfg.batch_size)?;
    let command = child_command(
        section,
        &cfg.command,
        &cfg.env,
        cfg.silence_timeout,
        "airbyte",
    )?;
    let existing = |key: &str, what: &str, path: Option<PathBuf>| {
        let path = path.map(|p| section.resolve_path(&p));
        match &path {
            Some(p) if !p.is_file() => {
                Err(section.error(key, format!("{what} file `{}` does not exist", p.display())))
            }
            _ => Ok(path),
        }
    };
    let manifest = existing("manifest", "manifest", cfg.manifest)?;
    let catalog = existing("catalog", "catalog", cfg.catalog)?;
    if cfg.streams.as_ref().is_some_and(Vec::is_empty) {
        return Err(section.error(
            "streams",
            "streams is empty: name at least one, or remove it to read every stream",
        ));
    }
    Ok(Settings {
        command,
        config: config_json(&cfg.config),
        manifest,
        catalog,
        streams: cfg.streams,
        sync_mode: cfg.sync_mode,
        sync: cfg.sync,
        batch_size: cfg.batch_size.unwrap_or(default_batch),
    })
}
