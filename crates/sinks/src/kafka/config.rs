//! `[sink] type = "kafka"`: the typed table, validated.
//!
//! ```toml
//! [sink]
//! type = "kafka"
//! brokers = "kafka-1:9092,kafka-2:9092"   # or a list
//! compression = "lz4"                     # none | gzip | snappy | lz4 | zstd
//! idempotent = true                       # the idempotent producer (no duplicates from retries)
//! headers = true                          # tributary.* headers on every record
//! create_topics = true                    # create missing topics through the admin API
//! partitions = 3                          # of created topics
//! replication_factor = 3                  # of created topics
//! message_timeout = "60s"                 # a record not delivered by then fails the flush (retried)
//! dead_letter_topic = "billing.dead_letter"   # records the broker rejects, with [bad_records] policy = "dead_letter"
//! exactly_once = false                    # records and checkpoints in one Kafka transaction per flush
//! transaction_timeout = "60s"             # with exactly_once: the broker aborts a transaction open longer
//! [sink.topic_config]                     # configs of created topics
//! "retention.ms" = "604800000"
//! [sink.properties]                       # any librdkafka producer property
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "loader"
//! "sasl.password" = "${KAFKA_PASSWORD}"
//! ```
//!
//! Every option is described in `docs/sinks/kafka.md`. Unknown keys are
//! errors with a did-you-mean suggestion.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::de_duration;
pub use tributary_config::Brokers;
use tributary_config::ClientProperties;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The `[sink]` table of `type = "kafka"`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub brokers: Brokers,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "yes")]
    pub idempotent: bool,
    #[serde(default = "yes")]
    pub headers: bool,
    #[serde(default = "yes")]
    pub create_topics: bool,
    #[serde(default = "one")]
    pub partitions: i32,
    #[serde(default = "one")]
    pub replication_factor: i32,
    #[serde(default)]
    pub topic_config: BTreeMap<String, String>,
    #[serde(default = "default_message_timeout", deserialize_with = "de_duration")]
    pub message_timeout: Duration,
    /// Default: `{connector}.dead_letter`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Each flush is one Kafka transaction holding the records, the
    /// checkpoints (in the `[state]` topic) and a Kafka source's consumer
    /// offsets. Needs `[state] url = "kafka://..."` on the same cluster.
    #[serde(default)]
    pub exactly_once: bool,
    /// `transaction.timeout.ms`: the broker aborts a transaction open longer.
    #[serde(
        default = "default_transaction_timeout",
        deserialize_with = "de_duration"
    )]
    pub transaction_timeout: Duration,
    #[serde(default)]
    pub properties: ClientProperties,
}

impl KafkaSinkConfig {
    /// A config with every default, for `brokers`.
    pub fn new(brokers: &str) -> Self {
        KafkaSinkConfig {
            brokers: Brokers::One(brokers.into()),
            compression: Compression::None,
            idempotent: true,
            headers: true,
            create_topics: true,
            partitions: 1,
            replication_factor: 1,
            topic_config: BTreeMap::new(),
            message_timeout: default_message_timeout(),
            dead_letter_topic: None,
            exactly_once: false,
            transaction_timeout: default_transaction_timeout(),
            properties: ClientProperties::default(),
        }
    }
}

/// Properties the sink sets from its own options; setting them under
/// `[sink.properties]` too would make the two disagree, so it is an error
/// naming the option to use.
pub(crate) const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    (
        "acks",
        "it is always `all`: a checkpoint is committed only after every in-sync replica has the records",
    ),
    ("request.required.acks", "it is always `all` (see `acks`)"),
    ("enable.idempotence", "use `idempotent`"),
    ("compression.type", "use `compression`"),
    ("compression.codec", "use `compression`"),
    ("message.timeout.ms", "use `message_timeout`"),
    ("delivery.timeout.ms", "use `message_timeout`"),
    (
        "transactional.id",
        "set `exactly_once = true`: the id is the connector's (`tributary-{connector}`), the same for every instance, so that a new one fences the old",
    ),
    ("transaction.timeout.ms", "use `transaction_timeout`"),
];

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

fn default_transaction_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(60)
}
