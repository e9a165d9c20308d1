//! Where records go: one folder per sink (`stdout/`, `file/`, `postgres/`),
//! each with its typed `config.rs`, and [`build`], which turns a `[sink]`
//! table into a running [`Sink`].
//!
//! The stdout and file sinks write NDJSON in one of two [`Format`]s.
//! Encoding goes straight from the record into a reused byte buffer (no
//! `String` per record), because the whole pipeline targets >= 500k
//! records/s and the sink is the last hop on that path.
//!
//! The kafka sink produces each record to the topic of its target and
//! acknowledges a flush only when the broker acknowledged every record
//! ([`kafka`]).
//!
//! The postgres sink writes tables (upsert or append, soft or hard deletes,
//! schema evolution) in one transaction per flush, and can commit the
//! checkpoints in that same transaction (exactly-once); see [`postgres`].

pub mod file;
pub mod kafka;
mod ndjson;
pub mod postgres;
pub mod stdout;

pub use file::{FileSink, FileSinkConfig};
pub use kafka::{KafkaSink, KafkaSinkConfig};
pub use ndjson::Format;
pub use postgres::{PostgresSink, PostgresSinkConfig};
pub use stdout::{StdoutSink, StdoutSinkConfig};

use tributary_config::{BadRecordPolicy, ConfigError, SectionConfig};

use tributary_core::Sink;

/// Every `type` accepted in `[sink]`, for did-you-mean suggestions and docs.
pub const SINK_TYPES: &[&str] = &["stdout", "file", "postgres", "kafka"];

/// What a sink may need to know about the connector it serves.
#[derive(Debug, Clone, Default)]
pub struct SinkContext {
    /// The connector's name. The file sink uses it as the target of records
    /// that arrive without one (the runtime normally sets every target).
    pub connector: String,
    /// The connector's `[bad_records] policy`, for sinks whose destination
    /// rejects single records (the Kafka sink: a record too large).
    pub bad_records: BadRecordPolicy,
    /// The connector's `[state] url`, if one is set: the Kafka sink with
    /// `exactly_once` writes checkpoints into that topic itself.
    pub state_url: Option<String>,
    /// The connector's state store when it is a transactional Kafka store:
    /// the Kafka sink with `exactly_once` commits through it, so the
    /// runtime and the sink share one read of the state topic. Without it
    /// (`tributary check`) the sink opens its own from `state_url`.
    pub kafka_state: Option<std::sync::Arc<tributary_state::KafkaStore>>,
    /// `[runtime] flush_interval`: how long a Kafka transaction stays open
    /// at most while records arrive (checked against `transaction_timeout`).
    pub flush_interval: std::time::Duration,
}

/// Builds the sink a `[sink]` table describes, validating its configuration.
///
/// Nothing is opened or written here: files are created on first write and
/// the database is connected to on first use, so `tributary check` can build
/// a sink without side effects.
pub fn build(section: &SectionConfig, ctx: &SinkContext) -> Result<Box<dyn Sink>, ConfigError> {
    match section.kind.as_str() {
        "stdout" => Ok(Box::new(StdoutSink::from_section(section)?)),
        "file" => Ok(Box::new(FileSink::from_section(section, ctx)?)),
        "postgres" => Ok(Box::new(PostgresSink::from_section(section, ctx)?)),
        "kafka" => Ok(Box::new(KafkaSink::from_section(section, ctx)?)),
        _ => Err(section.unknown_type(SINK_TYPES)),
    }
}
