//! `[source] type = "kafka"`: the typed table, validated.
//!
//! ```toml
//! [source]
//! type = "kafka"
//! brokers = "kafka-1:9092"            # or a list
//! topics = ["orders", "customers"]    # or: topic_pattern = "^shop\\..*"
//! group_id = "tributary.billing"      # default: tributary.{connector}
//! format = "json"                     # json | string: how values are read
//! start = "earliest"                  # earliest | latest: where a partition with no offset starts
//! stop_at_end = false                 # true: a run ends once every partition reached its end
//! [source.properties]                 # any librdkafka consumer property
//! "security.protocol" = "SASL_SSL"
//! "sasl.password" = "${KAFKA_PASSWORD}"
//! ```
//!
//! Every option is described in `docs/sources/kafka.md`.

use serde::Deserialize;
use tributary_config::{Brokers, ClientProperties};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// Each value is one JSON document; anything else is a bad record.
    #[default]
    Json,
    /// Each value is text (invalid UTF-8 replaced), kept as a JSON string.
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

impl Start {
    pub fn as_str(self) -> &'static str {
        match self {
            Start::Earliest => "earliest",
            Start::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub brokers: Brokers,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub topic_pattern: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub format: ValueFormat,
    #[serde(default)]
    pub start: Start,
    #[serde(default)]
    pub stop_at_end: bool,
    #[serde(default)]
    pub properties: ClientProperties,
}

/// Properties the source sets itself.
pub(crate) const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    ("group.id", "use `group_id`"),
    ("auto.offset.reset", "use `start`"),
    (
        "enable.auto.commit",
        "offsets are committed only after the sink acknowledged the records",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed only after the sink acknowledged the records",
    ),
];
