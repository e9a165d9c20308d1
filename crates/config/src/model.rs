use crate::units::{de_duration, de_opt_duration};
use crate::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tributary_core::secret::Secret;
use tributary_core::Schedule;

/// The text of one config file, kept so that any key path can be turned
/// into a line number long after parsing.
#[derive(Debug)]
pub struct ConfigDocument {
    pub path: PathBuf,
    pub text: String,
    /// Every value that came from `${ENV}`, by key path, so that errors and
    /// `Debug` output about those keys can mask it.
    pub substitutions: Vec<Substitution>,
}

impl ConfigDocument {
    /// An error about any key of the file (e.g. `streams.orders.target`,
    /// `source.brokers[1]`), located at that key's line, or at its nearest
    /// existing ancestor's. Values from `${ENV}` are masked in `message`.
    pub fn error(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        crate::load::error_at_path(self, key_path, message.into(), None)
    }

    /// The 1-based line of a key path, or of its nearest existing ancestor.
    pub fn line_of(&self, key_path: &str) -> Option<usize> {
        crate::load::line_of_path(self, key_path)
    }
}

/// One `${VAR}` replaced by its value. The value is a [`Secret`] because it
/// may be a credential: it must not reach an error message, a log or `Debug`.
#[derive(Debug, Clone)]
pub struct Substitution {
    /// Dotted key path of the string that contained `${VAR}`.
    pub key: String,
    /// The variable's name (not secret, useful in messages).
    pub variable: String,
    pub value: Secret,
}

/// One connector: a source, a sink, and how the runtime drives them.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    /// Prefix of default targets: `{topic_prefix}.{stream}`. Defaults to `name`.
    pub topic_prefix: String,
    /// Default schedule of every stream; `Schedule::Once` when absent.
    pub schedule: Schedule,
    /// False when the file has no `schedule`: a source may then supply its
    /// own default (ChargeOver: daily at midnight, as in Kafka Connect).
    pub schedule_configured: bool,
    pub source: SectionConfig,
    pub sink: SectionConfig,
    pub state: StateConfig,
    pub runtime: RuntimeConfig,
    pub metadata: MetadataConfig,
    /// False when the file has no `[metadata]` table: a source may then
    /// supply its own field names (ChargeOver: `_entity_type`, ...).
    pub metadata_configured: bool,
    pub bad_records: BadRecordConfig,
    /// Per-stream overrides, by stream name.
    pub streams: BTreeMap<String, StreamOverride>,
    /// The directory of the config file: relative paths resolve against it.
    pub base_dir: PathBuf,
    pub document: Arc<ConfigDocument>,
    /// Problems that do not stop the connector but likely are mistakes (a
    /// bare `$VAR`), located like errors; commands print them once.
    pub warnings: Vec<ConfigError>,
}

impl ConnectorConfig {
    /// The target of a stream's records when the source does not route them.
    pub fn target_for(&self, stream: &str) -> String {
        self.streams
            .get(stream)
            .and_then(|o| o.target.clone())
            .unwrap_or_else(|| format!("{}.{}", self.topic_prefix, stream))
    }

    /// The schedule of a stream: its override, else the connector's.
    pub fn schedule_for(&self, stream: &str) -> &Schedule {
        self.streams
            .get(stream)
            .and_then(|o| o.schedule.as_ref())
            .unwrap_or(&self.schedule)
    }

    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// What the sink is told of the streams: each with its target.
    pub fn sink_streams(
        &self,
        streams: &[tributary_core::StreamSpec],
    ) -> Vec<tributary_core::SinkStream> {
        streams
            .iter()
            .map(|spec| tributary_core::SinkStream {
                spec: spec.clone(),
                target: self.target_for(&spec.name),
            })
            .collect()
    }

    /// A `[streams.NAME]` override that names no stream the source offers
    /// is a typo that would silently do nothing: `check` and `run` both
    /// refuse it, at its line, with the closest stream name.
    pub fn check_stream_overrides(&self, offered: &[&str]) -> Result<(), ConfigError> {
        for configured in self.streams.keys() {
            if !offered.contains(&configured.as_str()) {
                let mut e = self.document.error(
                    &format!("streams.{}", crate::load::quoted_key(configured)),
                    format!(
                        "[streams.{configured}] names no stream of this source; it offers: {}",
                        offered.join(", ")
                    ),
                );
                e.suggestion = crate::did_you_mean(configured, offered);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `[sink] type = "kafka"` with `exactly_once = true`: the sink's Kafka
    /// transactions hold the checkpoints (in the state topic) and a Kafka
    /// source's consumer offsets, so the state store and the source join
    /// them instead of writing on their own.
    pub fn kafka_transactions(&self) -> bool {
        self.sink.kind == "kafka"
            && self
                .sink
                .table
                .get("exactly_once")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
    }
}

pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// A `[source]` or `[sink]` table: its `type`, and the rest kept raw for the
/// connector to type with [`SectionConfig::parse`].
///
/// `Debug` is written by hand: the raw table holds `${ENV}` values, which
/// may be credentials, and derived `Debug` would print them.
#[derive(Clone)]
pub struct SectionConfig {
    /// The `type` key, e.g. `file`, `generator`, `kafka`.
    pub kind: String,
    /// `source` or `sink`: the key path prefix used in error messages.
    pub key: String,
    /// The table without `type`, `${ENV}` already substituted.
    pub table: toml::Table,
    pub base_dir: PathBuf,
    pub document: Arc<ConfigDocument>,
}

impl SectionConfig {
    /// Types the table as the connector's own config struct (which should use
    /// `#[serde(deny_unknown_fields)]`). Errors carry file, key path, line and
    /// a did-you-mean suggestion for unknown keys.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        crate::load::parse_section(self)
    }

    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// An error about a key of this section, located in the file. `key_path`
    /// is relative to the section (`streams.orders.delimiter`, `brokers[1]`);
    /// an empty path means the section itself.
    pub fn error(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        let full = if key_path.is_empty() {
            self.key.clone()
        } else if key_path.starts_with('[') {
            format!("{}{key_path}", self.key)
        } else {
            format!("{}.{key_path}", self.key)
        };
        crate::load::locate_error(&self.document, &full, message.into(), None)
    }

    /// The error for a `type` no registry knows: the known types, and the
    /// closest one when the value looks like a typo of it.
    pub fn unknown_type(&self, known: &[&str]) -> ConfigError {
        let mut err = self.error(
            "type",
            format!(
                "unknown {} type `{}`; known types: {}",
                self.key,
                self.kind,
                known.join(", ")
            ),
        );
        err.suggestion = crate::did_you_mean(&self.kind, known);
        err
    }
}

impl std::fmt::Debug for SectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectionConfig")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("table", &crate::load::masked_table(self))
            .field("base_dir", &self.base_dir)
            .field("document", &self.document.path)
            .finish()
    }
}

/// Where checkpoints live.
#[derive(Debug, Clone, PartialEq)]
pub enum StateConfig {
    /// The embedded store in a local directory (the default, `.tributary/state`
    /// next to the config file).
    Embedded { dir: PathBuf },
    /// Another backend, selected by URL scheme (`kafka://`, `postgres://`).
    Url(String),
}

/// How the runtime drives the connector. Every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Records a source returns per poll, at most.
    pub batch_size: usize,
    /// Batches in flight between sources and the sink (backpressure).
    pub channel_capacity: usize,
    /// Flush the sink (and commit) after this many records...
    pub flush_records: usize,
    /// ...or this long after the first unflushed write, whichever first.
    #[serde(deserialize_with = "de_duration")]
    pub flush_interval: Duration,
    /// How long an idle stream (tailed file, quiet socket) waits before polling again.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Consecutive retryable errors of the sink or the state store
    /// tolerated before the connector stops.
    pub max_retries: u32,
    /// Consecutive failed attempts at one source request (a page, a report
    /// run) before the stream gives up until its next scheduled run, where
    /// it resumes from its checkpoint: Kafka Connect's `max.retries`. The
    /// other streams go on. Unset: `max_retries`.
    pub request_retries: Option<u32>,
    #[serde(deserialize_with = "de_duration")]
    pub backoff_initial: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub backoff_max: Duration,
    /// The longest a server's `Retry-After` is honoured; a longer request
    /// waits this long, then the next attempt asks again.
    #[serde(deserialize_with = "de_duration")]
    pub max_retry_after: Duration,
    /// A stream whose checkpoint has not advanced for this long is stale:
    /// reported by `/health`, `tributary state stuck` and the status page
    /// (the alarm seed 004 lacked). Unset: no freshness check.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_staleness: Option<Duration>,
}

impl RuntimeConfig {
    /// The retry budget of one source request (see `request_retries`).
    pub fn source_retries(&self) -> u32 {
        self.request_retries.unwrap_or(self.max_retries)
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            batch_size: 1000,
            channel_capacity: 4,
            flush_records: 50_000,
            flush_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
            max_retries: 10,
            request_retries: None,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            max_staleness: None,
        }
    }
}

/// Seed 000's metadata fields, added to every object record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub enabled: bool,
    /// Field names; an empty string leaves that field out.
    pub stream_field: String,
    pub ingested_at_field: String,
    pub ingested_at_format: TimestampFormat,
    pub load_mode_field: String,
}

/// How the ingestion time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// `"2026-11-23T18:00:00.123Z"`.
    #[default]
    Rfc3339,
    /// Milliseconds since the Unix epoch, as a number (Kafka Connect's convention).
    UnixMs,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            enabled: true,
            stream_field: "_stream".into(),
            ingested_at_field: "_ingested_at".into(),
            ingested_at_format: TimestampFormat::Rfc3339,
            load_mode_field: "_load_mode".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Stop the connector; nothing after the bad record is committed.
    #[default]
    Fail,
    /// Count it, log it, go on.
    Skip,
    /// Count it and append it, with its error, to the dead-letter file.
    DeadLetter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BadRecordConfig {
    pub policy: BadRecordPolicy,
    /// Where `dead_letter` writes (NDJSON); defaults to
    /// `.tributary/dead_letter/{connector}.ndjson` next to the config file.
    pub dead_letter_path: PathBuf,
}

/// Settings for one stream, under `[streams.NAME]`.
#[derive(Debug, Clone, Default)]
pub struct StreamOverride {
    pub target: Option<String>,
    pub schedule: Option<Schedule>,
}

/// `schedule = { interval = "30s" }` or `{ cron = "0 0 2 * * ?", timezone = "America/New_York" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleToml {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
}
