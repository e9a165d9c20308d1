//! The Kafka sink: one topic per record target, key = the stream's primary
//! key, value = the record's JSON, `tributary.*` headers. The user guide is
//! `docs/sinks/kafka.md`; this comment says how it is built.
//!
//! # Delivery reports are the acknowledgement
//!
//! `write` encodes each record into a reused buffer and hands it to a
//! librdkafka producer (`acks=all`, idempotent by default), which copies it,
//! batches and sends in the background. Nothing is kept on our side for a
//! record in flight but a reference-counted tag (its batch's stream, load
//! mode, ingestion time), its delivery opaque. The producer's polling
//! thread counts delivery reports and copies failed messages out of
//! librdkafka; `flush` waits (asynchronously) until no message is
//! outstanding, and only returns `Ok` when every record since the previous
//! flush was acknowledged by the broker. The runtime commits its checkpoint
//! after that, so a crash at any instant loses nothing. At most 20,000
//! messages (16 MiB) wait in librdkafka; `write` waits beyond that, so
//! memory does not grow with `flush_records`.
//!
//! # Failed deliveries
//!
//! - A record the broker (or librdkafka's own size check) rejects for what
//!   it is (too large, invalid) follows `[bad_records] policy`: `fail` stops
//!   the connector before the checkpoint moves, `skip` logs and counts it,
//!   `dead_letter` sends it to the dead-letter topic with the error, the
//!   stream and the original topic in headers (a value too large even for
//!   the dead-letter topic is cut, and says so in a header). The flush
//!   waits for the dead letters too.
//! - Anything else (broker down past `message_timeout`, leader changes) is
//!   retryable: the failed records are kept and sent again by the same
//!   producer at the next flush, which the runtime calls after its backoff
//!   (librdkafka starts a new idempotent epoch after timed-out messages, and
//!   Apache Kafka keeps producer state across a restart). Nothing is lost; a
//!   re-sent record may land after records that were produced later.
//!
//! # Transactions
//!
//! With `exactly_once = true` each flush is one Kafka transaction holding
//! the records, the checkpoints (written into the `[state]` topic by this
//! producer) and a Kafka source's consumer offsets; `commit_transaction` is
//! the acknowledgement and the runtime writes nothing to the state store
//! itself. See `transaction.rs`.

mod config;
mod transaction;

pub use config::{Brokers, Compression, KafkaSinkConfig};

use chrono::SecondsFormat;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tributary_config::{BadRecordPolicy, ConfigError, SectionConfig};
use tributary_core::{
    BatchInfo, Checkpoint, ConnectorError, GroupOffsets, Op, Record, Sink, SinkStream,
};

/// Header names the sink writes. Part of the output format: documented in
/// `docs/sinks/kafka.md`, relied on by consumers.
pub mod header {
    pub const CONNECTOR: &str = "tributary.connector";
    pub const STREAM: &str = "tributary.stream";
    pub const LOAD_MODE: &str = "tributary.load_mode";
    pub const INGESTED_AT: &str = "tributary.ingested_at";
    /// Only on records whose op is `delete`, with the value `delete`.
    pub const OP: &str = "tributary.op";
    pub const DLQ_ERROR: &str = "tributary.dlq.error";
    pub const DLQ_TARGET: &str = "tributary.dlq.target";
    pub const DLQ_AT: &str = "tributary.dlq.at";
    /// On a dead letter whose value had to be cut: the original size in bytes.
    pub const DLQ_ORIGINAL_SIZE: &str = "tributary.dlq.original_size";
}

/// librdkafka's default `message.max.bytes`, used to size dead letters when
/// the properties do not set it.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room kept for key, headers and framing when a dead letter must be cut.
const DEAD_LETTER_OVERHEAD: usize = 4096;
/// How long admin and metadata requests may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `check` waits for the brokers: a wrong address is reported
/// while the user still waits.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers shared by every record of one batch, built once per batch.
struct BatchHeaders {
    stream: String,
    load_mode: &'static str,
    ingested_at: String,
}

/// What travels with each message as its delivery opaque: shared by every
/// record of a batch (a reference count, not a copy).
struct MessageTag {
    batch: Option<Arc<BatchHeaders>>,
    /// Set on a dead letter: why, and where the record was going.
    dead_letter: Option<DeadLetterInfo>,
}

struct DeadLetterInfo {
    error: String,
    target: String,
}

/// A message to send again (a failed delivery, or a new dead letter),
/// owned: records that were delivered are not kept anywhere.
struct Outgoing {
    topic: Arc<str>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
    tag: Arc<MessageTag>,
}

/// A delivery that failed, copied out of librdkafka's message.
struct Failed {
    error: KafkaError,
    message: Outgoing,
    /// librdkafka refused the message at once (it was never sent).
    refused: bool,
}

/// Delivery bookkeeping shared with the producer's polling thread.
#[derive(Default)]
struct Deliveries {
    outstanding: AtomicUsize,
    failed: Mutex<Vec<Failed>>,
    idle: Notify,
}

struct SinkContextRd {
    deliveries: Arc<Deliveries>,
}

impl ClientContext for SinkContextRd {}

impl ProducerContext for SinkContextRd {
    type DeliveryOpaque = Arc<MessageTag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Arc<MessageTag>) {
        if let Err((error, m)) = result {
            let failed = Failed {
                error: error.clone(),
                message: Outgoing {
                    topic: Arc::from(m.topic()),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m.headers().map(|h| h.detach()),
                    tag,
                },
                refused: false,
            };
            // Recorded before the count drops, so a flush that sees zero
            // outstanding also sees every failure.
            self.deliveries
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(failed);
        }
        if self.deliveries.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.deliveries.idle.notify_one();
        }
    }
}

type RdProducer = ThreadedProducer<SinkContextRd>;

/// Records into Kafka topics. See the [module docs](self).
pub struct KafkaSink {
    config: KafkaSinkConfig,
    connector: String,
    policy: BadRecordPolicy,
    dead_letter_topic: String,
    message_max_bytes: usize,
    producer: Option<Arc<RdProducer>>,
    deliveries: Arc<Deliveries>,
    /// Topics known to exist, by target.
    topics: HashMap<String, Arc<str>>,
    /// Targets of the streams, created before the first write.
    stream_targets: HashSet<String>,
    /// Something was sent since the last successful flush.
    unacked: bool,
    /// Messages to send (again) at the next flush.
    resend: Vec<Outgoing>,
    /// Encoding buffers, reused: librdkafka copies what it is given.
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// Records rejected by the broker, by policy, since the sink started.
    rejected: u64,
    /// With `exactly_once`: the transactions.
    eos: Option<transaction::Eos>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Types and validates the `[sink]` table. Nothing connects until the
    /// first write (or `check`).
    pub fn from_section(
        section: &SectionConfig,
        ctx: &crate::SinkContext,
    ) -> Result<Self, ConfigError> {
        let config: KafkaSinkConfig = section.parse()?;
        if config.brokers.joined().is_empty() {
            return Err(section.error("brokers", "must name at least one broker (host:port)"));
        }
        for (key, why) in config::RESERVED {
            if config.properties.contains_key(key) {
                return Err(section.error(
                    &format!("properties.\"{key}\""),
                    format!("`{key}` cannot be set here: {why}"),
                ));
            }
        }
        if let Some((key, message)) = config.properties.sasl_problem() {
            return Err(section.error(&format!("properties.\"{key}\""), message));
        }
        if config.partitions < 1 {
            return Err(section.error("partitions", "must be at least 1"));
        }
        if config.replication_factor < 1 {
            return Err(section.error("replication_factor", "must be at least 1"));
        }
        if config.message_timeout < Duration::from_millis(1) {
            return Err(section.error("message_timeout", "must be at least 1ms"));
        }
        if let Some(v) = config.properties.get("message.max.bytes") {
            if v.parse::<usize>().is_err() {
                return Err(section.error(
                    "properties.\"message.max.bytes\"",
                    format!("`{v}` is not a number of bytes"),
                ));
            }
        }
        if config.dead_letter_topic.as_deref() == Some("") {
            return Err(section.error("dead_letter_topic", "must not be empty"));
        }
        let mut sink = Self::new(config, &ctx.connector, ctx.bad_records);
        if sink.config.exactly_once {
            sink.eos = Some(Self::exactly_once(&sink.config, section, ctx)?);
        }
        Ok(sink)
    }

    /// Checks what `exactly_once` needs: the state in a Kafka topic (where
    /// the transactions write the checkpoints), the idempotent producer,
    /// and a transaction timeout longer than what a transaction takes.
    fn exactly_once(
        config: &KafkaSinkConfig,
        section: &SectionConfig,
        ctx: &crate::SinkContext,
    ) -> Result<transaction::Eos, ConfigError> {
        let url = ctx.state_url.as_deref().filter(|u| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("kafka://"))
        });
        let Some(url) = url else {
            return Err(section.error(
                "exactly_once",
                "exactly_once = true commits the checkpoints in the records' Kafka transaction, so they must live in a Kafka topic on the sink's cluster: set [state] url = \"kafka://<brokers>/<topic>\"",
            ));
        };
        if !config.idempotent {
            return Err(section.error(
                "idempotent",
                "exactly_once = true needs the idempotent producer (transactions are built on it); remove `idempotent = false`",
            ));
        }
        if config.transaction_timeout < Duration::from_secs(1) {
            return Err(section.error("transaction_timeout", "must be at least 1s"));
        }
        if config.message_timeout > config.transaction_timeout {
            return Err(section.error(
                "message_timeout",
                format!(
                    "must not be longer than transaction_timeout ({}s): a record still undelivered when the broker aborts its transaction is lost with it",
                    config.transaction_timeout.as_secs()
                ),
            ));
        }
        if ctx.flush_interval >= config.transaction_timeout {
            return Err(section.error(
                "transaction_timeout",
                format!(
                    "must be longer than [runtime] flush_interval ({}ms): a transaction stays open for up to a flush interval, and the broker aborts one that outlives transaction_timeout",
                    ctx.flush_interval.as_millis()
                ),
            ));
        }
        let store = match &ctx.kafka_state {
            Some(shared) if shared.is_transactional() => Arc::clone(shared),
            _ => transaction::open_store(url, &ctx.connector)
                .map(Arc::new)
                .map_err(|e| section.document.error("state.url", e))?,
        };
        Ok(transaction::Eos::new(
            store,
            tributary_state::kafka::transactional_id(&ctx.connector),
            config.transaction_timeout,
        ))
    }

    pub fn new(config: KafkaSinkConfig, connector: &str, policy: BadRecordPolicy) -> Self {
        let dead_letter_topic = config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{connector}.dead_letter"));
        let message_max_bytes = config
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        KafkaSink {
            config,
            connector: connector.to_string(),
            policy,
            dead_letter_topic,
            message_max_bytes,
            producer: None,
            deliveries: Arc::default(),
            topics: HashMap::new(),
            stream_targets: HashSet::new(),
            unacked: false,
            resend: Vec::new(),
            key_buf: Vec::with_capacity(64),
            value_buf: Vec::with_capacity(4096),
            rejected: 0,
            eos: None,
        }
    }

    /// Records the broker rejected and the policy let through (skipped or
    /// dead-lettered) since the sink started.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.config.brokers.joined())
            .set("acks", "all")
            .set(
                "enable.idempotence",
                if self.config.idempotent {
                    "true"
                } else {
                    "false"
                },
            )
            .set("compression.type", self.config.compression.as_str())
            .set(
                "message.timeout.ms",
                self.config.message_timeout.as_millis().to_string(),
            )
            // Topics are created by the sink, with the configured partitions,
            // or reported missing; never created by a metadata request.
            .set("allow.auto.create.topics", "false")
            // Memory stays bounded whatever `flush_records` is: at most this
            // many messages wait in librdkafka; `write` waits beyond.
            .set("queue.buffering.max.messages", "20000")
            .set("queue.buffering.max.kbytes", "16384");
        if let Some(eos) = &self.eos {
            c.set("transactional.id", eos.transactional_id()).set(
                "transaction.timeout.ms",
                self.config.transaction_timeout.as_millis().to_string(),
            );
        }
        for (k, v) in self.config.properties.iter() {
            c.set(k, v);
        }
        c
    }

    /// Forgets the producer and everything in flight with it: a
    /// transaction given up is read again, not sent again.
    fn drop_producer(&mut self) {
        self.producer = None;
        self.deliveries = Arc::default();
        self.resend.clear();
        self.unacked = false;
    }

    fn producer(&mut self) -> Result<&Arc<RdProducer>, ConnectorError> {
        if self.producer.is_none() {
            let context = SinkContextRd {
                deliveries: Arc::clone(&self.deliveries),
            };
            let p: RdProducer = self
                .client_config()
                .create_with_context(context)
                .map_err(|e| ConnectorError::config(format!("kafka sink: {e}")))?;
            self.producer = Some(Arc::new(p));
        }
        match &self.producer {
            Some(p) => Ok(p),
            None => Err(ConnectorError::fatal("kafka sink: no producer")),
        }
    }

    /// The topic of `target`, checked (and created if allowed) on first sight.
    async fn topic(&mut self, target: &str) -> Result<Arc<str>, ConnectorError> {
        if let Some(t) = self.topics.get(target) {
            return Ok(Arc::clone(t));
        }
        let mut wanted: Vec<String> = vec![target.to_string()];
        // Every stream's topic at once on the first write: one round trip.
        wanted.extend(self.stream_targets.drain().filter(|t| t != target));
        wanted.retain(|t| !self.topics.contains_key(t));
        self.ensure_topics(&wanted).await?;
        for t in wanted {
            self.topics.insert(t.clone(), Arc::from(t.as_str()));
        }
        Ok(Arc::clone(&self.topics[target]))
    }

    /// Fails with a clear error, or creates them, when topics are missing.
    async fn ensure_topics(&mut self, topics: &[String]) -> Result<(), ConnectorError> {
        let config = self.client_config();
        let missing = {
            let topics = topics.to_vec();
            let metadata = fetch_metadata(Arc::clone(self.producer()?))
                .await
                .map_err(|e| {
                    ConnectorError::retryable(format!(
                        "kafka sink: cannot read the cluster's topics from {}: {e}",
                        self.config.brokers.joined()
                    ))
                })?;
            let existing: HashSet<&str> = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name())
                .collect();
            topics
                .into_iter()
                .filter(|t| !existing.contains(t.as_str()))
                .collect::<Vec<_>>()
        };
        if missing.is_empty() {
            return Ok(());
        }
        if !self.config.create_topics {
            return Err(missing_topics(&missing));
        }
        create_topics(
            &config,
            &missing,
            self.config.partitions,
            self.config.replication_factor,
            &self.config.topic_config,
        )
        .await
    }

    /// Hands one message to librdkafka, waiting while its queue is full. A
    /// message it refuses at once (too large for `message.max.bytes`) is
    /// recorded as a failed delivery, handled by the next flush like a
    /// rejection from the broker.
    async fn produce(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        tag: Arc<MessageTag>,
    ) -> Result<(), ConnectorError> {
        let Some(producer) = self.producer.as_ref() else {
            return Err(ConnectorError::fatal("kafka sink: no producer"));
        };
        let mut record = BaseRecord::<[u8], [u8], Arc<MessageTag>>::with_opaque_to(topic, tag);
        record.key = key;
        record.payload = value;
        record.headers = headers;
        record.partition = partition;
        loop {
            // Counted before sending: the report can arrive before `send` returns.
            self.deliveries.outstanding.fetch_add(1, Ordering::AcqRel);
            let (error, back) = match producer.send(record) {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            };
            self.deliveries.outstanding.fetch_sub(1, Ordering::AcqRel);
            if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let failed = Failed {
                error,
                message: Outgoing {
                    topic: Arc::from(back.topic),
                    key: back.key.map(<[u8]>::to_vec),
                    value: back.payload.map(<[u8]>::to_vec),
                    headers: back.headers,
                    tag: back.delivery_opaque,
                },
                refused: true,
            };
            self.deliveries
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(failed);
            return Ok(());
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.deliveries.idle.notified();
            if self.deliveries.outstanding.load(Ordering::Acquire) == 0 {
                return;
            }
            // A lost wake-up cannot happen (`notify_one` keeps a permit), the
            // timeout is only a backstop.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Applies the bad-record policy to a record the broker rejected.
    fn reject(&mut self, failed: Failed) -> Result<(), ConnectorError> {
        let Failed { error, message, .. } = failed;
        let stream = message
            .tag
            .batch
            .as_ref()
            .map_or("", |b| b.stream.as_str())
            .to_string();
        let topic = message.topic.to_string();
        if let Some(dl) = &message.tag.dead_letter {
            return Err(ConnectorError::fatal(format!(
                "kafka sink: the dead-letter topic `{topic}` rejected a record of stream `{stream}` (sent there because `{}` rejected it: {}): {error}",
                dl.target, dl.error
            )));
        }
        let size = message.value.as_ref().map_or(0, Vec::len);
        match self.policy {
            BadRecordPolicy::Fail => Err(ConnectorError::bad_record(format!(
                "kafka sink: topic `{topic}` rejected a record of stream `{stream}` ({size} bytes): {error} (bad-record policy is `fail`; set [bad_records] policy = \"skip\" or \"dead_letter\" to continue past it)"
            ))),
            BadRecordPolicy::Skip => {
                self.rejected += 1;
                tracing::warn!(connector = %self.connector, stream = %stream, topic = %topic, error = %error, "kafka sink: skipped a record the broker rejected");
                Ok(())
            }
            BadRecordPolicy::DeadLetter => {
                let limit = self
                    .message_max_bytes
                    .saturating_sub(DEAD_LETTER_OVERHEAD)
                    .max(1);
                let mut value = message.value;
                let original_size = value.as_mut().filter(|v| v.len() > limit).map(|v| {
                    let n = v.len();
                    v.truncate(limit);
                    n
                });
                let mut h = message
                    .headers
                    .unwrap_or_else(|| OwnedHeaders::new_with_capacity(6));
                if !self.config.headers {
                    h = add_header(h, header::CONNECTOR, &self.connector);
                    h = add_header(h, header::STREAM, &stream);
                }
                h = add_header(h, header::DLQ_ERROR, &error.to_string());
                h = add_header(h, header::DLQ_TARGET, &topic);
                h = add_header(
                    h,
                    header::DLQ_AT,
                    &chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                );
                if let Some(n) = original_size {
                    h = add_header(h, header::DLQ_ORIGINAL_SIZE, &n.to_string());
                }
                self.rejected += 1;
                tracing::warn!(connector = %self.connector, stream = %stream, topic = %topic, dead_letter_topic = %self.dead_letter_topic, error = %error, "kafka sink: dead-lettered a record the broker rejected");
                self.resend.push(Outgoing {
                    topic: Arc::from(self.dead_letter_topic.as_str()),
                    key: message.key,
                    value,
                    headers: Some(h),
                    tag: Arc::new(MessageTag {
                        batch: message.tag.batch.clone(),
                        dead_letter: Some(DeadLetterInfo {
                            error: error.to_string(),
                            target: topic,
                        }),
                    }),
                });
                Ok(())
            }
        }
    }

    /// Sends what waits to be sent (again), waits until librdkafka has
    /// nothing outstanding, and returns the deliveries that failed.
    async fn send_and_wait(&mut self) -> Result<Vec<Failed>, ConnectorError> {
        if !self.resend.is_empty() {
            if self.resend.iter().any(|o| o.tag.dead_letter.is_some()) {
                let dlq = self.dead_letter_topic.clone();
                self.topic(&dlq).await?;
            }
            for o in std::mem::take(&mut self.resend) {
                self.produce(
                    &o.topic,
                    None,
                    o.key.as_deref(),
                    o.value.as_deref(),
                    o.headers,
                    o.tag,
                )
                .await?;
            }
        }
        self.wait_idle().await;
        Ok(std::mem::take(
            &mut *self
                .deliveries
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ))
    }

    async fn flush_inner(&mut self) -> Result<(), ConnectorError> {
        self.producer()?;
        loop {
            let failed = self.send_and_wait().await?;
            if failed.is_empty() {
                if self.resend.is_empty() {
                    self.unacked = false;
                    return Ok(());
                }
                continue;
            }
            let mut retry_reason = None;
            for f in failed {
                if is_bad_record(&f.error) {
                    self.reject(f)?;
                } else {
                    retry_reason.get_or_insert_with(|| f.error.to_string());
                    self.resend.push(f.message);
                }
            }
            if let Some(reason) = retry_reason {
                // Sent again by the runtime's next flush, after its backoff.
                return Err(ConnectorError::retryable(format!(
                    "kafka sink: {} record(s) not delivered ({reason}); they are sent again",
                    self.resend.len()
                )));
            }
        }
    }
}

/// What a rejected record cannot recover from by being sent again.
fn is_bad_record(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

fn add_header(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(value.as_bytes()),
    })
}

/// The record's own headers, then the `tributary.*` ones (when on).
fn build_headers(
    connector: &str,
    own: &[(String, String)],
    batch: Option<&BatchHeaders>,
    delete: bool,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(own.len() + 5);
    for (k, v) in own {
        h = add_header(h, k, v);
    }
    h = add_header(h, header::CONNECTOR, connector);
    if let Some(b) = batch {
        h = add_header(h, header::STREAM, &b.stream);
        h = add_header(h, header::LOAD_MODE, b.load_mode);
        h = add_header(h, header::INGESTED_AT, &b.ingested_at);
    }
    if delete {
        h = add_header(h, header::OP, "delete");
    }
    h
}

/// The cluster's topics; `fetch_metadata` blocks, so it runs off the
/// async workers (once per new topic).
async fn fetch_metadata(
    producer: Arc<RdProducer>,
) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, ADMIN_TIMEOUT))
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

fn missing_topics(missing: &[impl AsRef<str>]) -> ConnectorError {
    let names: Vec<&str> = missing.iter().map(AsRef::as_ref).collect();
    ConnectorError::config(format!(
        "kafka sink: topic `{}` does not exist and [sink] create_topics = false; create it, or set create_topics = true",
        names.join("`, `")
    ))
}

/// Creates `topics`; one that appeared meanwhile (another writer) is fine.
pub(crate) async fn create_topics(
    config: &ClientConfig,
    topics: &[String],
    partitions: i32,
    replication: i32,
    topic_config: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConnectorError> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| ConnectorError::config(format!("kafka sink: {e}")))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
            for (k, v) in topic_config {
                n = n.set(k.as_str(), v.as_str());
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| {
        ConnectorError::retryable(format!("kafka sink: creating topics failed: {e}"))
    })?;
    for r in results {
        match r {
            Ok(name) => {
                tracing::info!(topic = %name, partitions, replication, "kafka sink: created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                let message = format!("kafka sink: cannot create topic `{name}`: {code}");
                return Err(match code {
                    RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidTopic
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::PolicyViolation
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed => {
                        ConnectorError::config(message)
                    }
                    _ => ConnectorError::retryable(message),
                });
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    /// Asks the brokers for the targets' metadata, waiting at most
    /// [`CHECK_TIMEOUT`]: the brokers answer, every target topic may be
    /// described, and one that is missing can be created (or
    /// `create_topics = false` is reported, as the first write would).
    async fn check(&mut self) -> Result<(), ConnectorError> {
        let producer = Arc::clone(self.producer()?);
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, CHECK_TIMEOUT)
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
        .map_err(|e| {
            ConnectorError::retryable(format!(
                "kafka sink: cannot reach {} within {}s: {e}",
                self.config.brokers.joined(),
                CHECK_TIMEOUT.as_secs()
            ))
        })?;
        let mut missing = Vec::new();
        let mut targets: Vec<&String> = self.stream_targets.iter().collect();
        targets.sort();
        for target in targets {
            let found = metadata.topics().iter().find(|t| t.name() == target);
            match found.and_then(|t| t.error()).map(RDKafkaErrorCode::from) {
                None if found.is_some() => {}
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                    return Err(ConnectorError::config(format!(
                        "kafka sink: not authorized to describe topic `{target}` (grant DESCRIBE and WRITE on it)"
                    )))
                }
                _ => missing.push(target.as_str()),
            }
        }
        if !missing.is_empty() && !self.config.create_topics {
            return Err(missing_topics(&missing));
        }
        Ok(())
    }

    fn set_streams(&mut self, streams: &[SinkStream]) {
        self.stream_targets = streams.iter().map(|s| s.target.clone()).collect();
    }

    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        let headers = batch.map(|batch| {
            Arc::new(BatchHeaders {
                stream: batch.stream.to_string(),
                load_mode: batch.load_mode.as_str(),
                ingested_at: batch
                    .ingested_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        });
        self.write_with(batch.map(|b| b.target), headers, records)
            .await
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.eos.is_some() {
            return self.eos_flush(&[], &[]).await;
        }
        if !self.unacked && self.resend.is_empty() {
            return Ok(());
        }
        self.flush_inner().await
    }

    async fn flush_with_checkpoints(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
        group_offsets: &[GroupOffsets],
    ) -> Result<bool, ConnectorError> {
        if self.eos.is_none() {
            self.flush().await?;
            return Ok(false);
        }
        self.eos_flush(checkpoints, group_offsets).await?;
        Ok(true)
    }

    async fn stored_checkpoints(&mut self) -> Result<Vec<(String, Checkpoint)>, ConnectorError> {
        if self.eos.is_none() {
            return Ok(Vec::new());
        }
        self.eos_stored_checkpoints().await
    }

    fn checkpoints_in_state_store(&self) -> bool {
        self.eos.is_some()
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if self.eos.is_some() {
            return self.eos_close().await;
        }
        self.flush().await
    }
}

impl KafkaSink {
    /// Produces `records`, each to its own target, else `default_target`,
    /// else the connector's name.
    async fn write_with(
        &mut self,
        default_target: Option<&str>,
        batch: Option<Arc<BatchHeaders>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        self.producer()?;
        if self.eos.is_some() {
            self.ready().await?;
            self.begin()?;
        }
        let tag = Arc::new(MessageTag {
            batch,
            dead_letter: None,
        });
        for record in records {
            let target = record
                .target
                .as_deref()
                .or(default_target)
                .unwrap_or(self.connector.as_str());
            let topic = match self.topics.get(target) {
                Some(t) => Arc::clone(t),
                None => {
                    let target = target.to_string();
                    self.topic(&target).await?
                }
            };
            self.key_buf.clear();
            if let Some(k) = &record.key {
                serde_json::to_writer(&mut self.key_buf, k).map_err(|e| {
                    ConnectorError::bad_record(format!("kafka sink: cannot encode key: {e}"))
                })?;
            }
            self.value_buf.clear();
            record.value.write_json(&mut self.value_buf).map_err(|e| {
                ConnectorError::bad_record(format!("kafka sink: cannot encode record as JSON: {e}"))
            })?;
            let headers = if self.config.headers {
                Some(build_headers(
                    &self.connector,
                    &record.headers,
                    tag.batch.as_deref(),
                    record.op == Op::Delete,
                ))
            } else if record.headers.is_empty() {
                None
            } else {
                let mut h = OwnedHeaders::new_with_capacity(record.headers.len());
                for (k, v) in &record.headers {
                    h = add_header(h, k, v);
                }
                Some(h)
            };
            let key = record.key.as_ref().map(|_| self.key_buf.as_slice());
            self.produce(
                &topic,
                None,
                key,
                Some(&self.value_buf),
                headers,
                Arc::clone(&tag),
            )
            .await?;
            self.unacked = true;
        }
        Ok(())
    }
}
