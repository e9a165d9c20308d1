//! Sources: each turns one kind of outside system into batches of records and
//! checkpoints. One folder per source (`config.rs` types the `[source]` table,
//! `source.rs` implements [`Source`](tributary_core::Source)); [`builtin`] registers
//! them, one line each, in the [`SourceRegistry`] the CLI builds sources from.
//!
//! | `type` | what it reads |
//! |---|---|
//! | `file` | CSV, NDJSON and text files named by a path or glob, optionally tailed ([`file`]) |
//! | `generator` | deterministic sample users, events, orders or sensor readings ([`generator`]) |
//! | `chargeover` | ChargeOver entities, windowed by modification time (seed 000) ([`chargeover`]) |
//! | `http` | any REST API described in TOML: auth, pagination, incremental windows ([`http`]) |
//! | `kafka` | Kafka topics (a list or a pattern), offsets committed after the sink acknowledged ([`kafka`]) |
//! | `sql` | PostgreSQL, MySQL/MariaDB and SQLite tables and queries, keyset-paged, incremental by timestamp or id ([`sql`]) |
//! | `stripe_reporting` | Stripe Reporting report runs per report type × timezone (seed 004) ([`stripe`]) |
//! | `mqtt` | MQTT 3.1.1/5 topics mapped to targets, persistent sessions, acknowledged after commit ([`mqtt`]) |
//! | `websocket` | messages pushed by a WebSocket server: subscriptions, heartbeat, reconnects, resume tokens ([`websocket`]) |
//! | `singer` | a Singer tap run as a child process ([`singer`], on the shared [`subprocess`] runner) |
//! | `airbyte` | an Airbyte-protocol source run as a child process ([`airbyte`]) |
//! | `fivetran` | a Fivetran Connector SDK connector (`connector.py`) run unchanged as a child process ([`fivetran`]) |

pub mod airbyte;
pub mod async_job;
pub mod chargeover;
pub mod file;
pub mod fivetran;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod singer;
pub mod sql;
pub mod stripe;
pub mod subprocess;
pub mod websocket;

pub(crate) mod object_text;
pub(crate) mod push;
pub mod registry;

pub use registry::{DuplicateType, SourceRegistry, SourceType};

use std::collections::BTreeMap;
use std::sync::Arc;
use tributary_config::{ConfigError, ConnectorConfig, SectionConfig};
use tributary_core::{Clock, Schedule, SystemClock};
use tributary_metrics::ConnectorStats;

/// What every source may need from the connector around it.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The connector's name, for log messages.
    pub connector: String,
    /// The connector's `runtime.batch_size`: records per batch, at most,
    /// unless a stream overrides it.
    pub batch_size: usize,
    /// "Now" for API windows: the same clock the scheduler uses, so a test
    /// that moves it moves both.
    pub clock: Arc<dyn Clock>,
    /// The connector's default schedule and per-stream overrides, for
    /// sources that record the next run in their checkpoint (seed 000's
    /// `next_scheduled_run`).
    pub schedule: Schedule,
    pub stream_schedules: BTreeMap<String, Schedule>,
    /// Where a source reports what only it sees (HTTP statuses, rate-limit
    /// waits) as typed events; the runtime's counters and the exporter read
    /// them. Detached (counted nowhere) unless the CLI attaches the
    /// connector's entry in the process registry.
    pub metrics: Arc<ConnectorStats>,
    /// The connector's `runtime.request_retries`: after that many failed
    /// attempts at one unreadable page, API sources hand the page to the
    /// bad-record policy instead of failing once more.
    pub max_retries: u32,
    /// The sink commits a Kafka source's consumer offsets inside its own
    /// transactions (a Kafka sink with `exactly_once`): the source then
    /// reads only committed messages and commits no offsets itself.
    pub offsets_in_sink_transaction: bool,
}

impl SourceContext {
    pub fn new(connector: impl Into<String>, batch_size: usize) -> Self {
        SourceContext {
            connector: connector.into(),
            batch_size,
            clock: Arc::new(SystemClock),
            schedule: Schedule::Once,
            stream_schedules: BTreeMap::new(),
            metrics: Arc::default(),
            max_retries: tributary_config::RuntimeConfig::default().max_retries,
            offsets_in_sink_transaction: false,
        }
    }

    pub fn from_config(config: &ConnectorConfig, clock: Arc<dyn Clock>) -> Self {
        SourceContext {
            connector: config.name.clone(),
            batch_size: config.runtime.batch_size,
            clock,
            schedule: config.schedule.clone(),
            stream_schedules: config
                .streams
                .iter()
                .filter_map(|(name, o)| Some((name.clone(), o.schedule.clone()?)))
                .collect(),
            metrics: Arc::default(),
            max_retries: config.runtime.source_retries(),
            offsets_in_sink_transaction: config.kafka_transactions(),
        }
    }

    pub fn schedule_for(&self, stream: &str) -> &Schedule {
        self.stream_schedules.get(stream).unwrap_or(&self.schedule)
    }
}

/// Every source type of the `tributary` binary, one line each: the one
/// place a built-in connector is registered ([`SourceRegistry`]).
pub fn builtin() -> SourceRegistry {
    use registry::SourceType as T;
    let types = [
        T::new("airbyte", airbyte::AirbyteSource::from_section),
        T::new("chargeover", chargeover::ChargeOverSource::from_section)
            .defaults(chargeover::apply_defaults),
        T::new("file", file::FileSource::from_section),
        T::new("fivetran", fivetran::FivetranSource::from_section),
        T::new("generator", generator::GeneratorSource::from_section),
        T::new("http", http::HttpSource::from_section),
        T::new("kafka", kafka::KafkaSource::from_section),
        T::new("mqtt", mqtt::MqttSource::from_section),
        T::new("singer", singer::SingerSource::from_section),
        T::new("sql", sql::SqlSource::from_section),
        T::new(
            "stripe_reporting",
            stripe::StripeReportingSource::from_section,
        )
        .defaults(stripe::apply_defaults),
        T::new("websocket", websocket::WebSocketSource::from_section),
    ];
    let mut registry = SourceRegistry::new();
    for t in types {
        // The names above are distinct literals.
        let _ = registry.register(t);
    }
    registry
}

/// Checks shared by every source's stream settings.
pub(crate) fn check_batch_size(
    section: &SectionConfig,
    key: &str,
    batch_size: Option<usize>,
) -> Result<(), ConfigError> {
    // The same range as `runtime.batch_size`, which it overrides.
    let max = tributary_config::MAX_BATCH_SIZE;
    match batch_size {
        Some(0) => Err(section.error(key, "batch_size must be at least 1")),
        Some(n) if n > max => {
            Err(section.error(key, format!("{n} is out of range: use 1 to {max}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::sync::Arc;
    use tributary_config::{ConfigDocument, SectionConfig};

    /// A `SectionConfig` for the `[source]` table of `text`, as the loader
    /// would build it for a config file in `base_dir`.
    pub fn section(text: &str, base_dir: &Path) -> SectionConfig {
        let doc: toml::Table = text.parse().expect("test config is valid TOML");
        let mut table = doc
            .get("source")
            .and_then(|v| v.as_table())
            .cloned()
            .expect("test config has [source]");
        let kind = table
            .remove("type")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        SectionConfig {
            kind,
            key: "source".into(),
            table,
            base_dir: base_dir.to_path_buf(),
            document: Arc::new(ConfigDocument {
                path: base_dir.join("connector.toml"),
                text: text.to_string(),
                substitutions: Vec::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_suggests_the_closest_name() {
        let dir = std::path::Path::new("/tmp");
        let s = test_support::section("[source]\ntype = \"fiel\"\n", dir);
        let err = builtin()
            .build(&s, &SourceContext::new("c", 10))
            .err()
            .unwrap();
        assert_eq!(err.suggestion.as_deref(), Some("file"));
        assert_eq!(err.key.as_deref(), Some("source.type"));
        assert!(err.message.contains("unknown source type `fiel`"), "{err}");

        let s = test_support::section("[source]\ntype = \"generatr\"\n", dir);
        let err = builtin()
            .build(&s, &SourceContext::new("c", 10))
            .err()
            .unwrap();
        assert_eq!(err.suggestion.as_deref(), Some("generator"));

        let s = test_support::section("[source]\ntype = \"zzz\"\n", dir);
        let err = builtin()
            .build(&s, &SourceContext::new("c", 10))
            .err()
            .unwrap();
        assert_eq!(err.suggestion, None);
    }
}
