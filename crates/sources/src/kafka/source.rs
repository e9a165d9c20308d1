//! The `kafka` [`Source`]: one stream per topic, read with a consumer that
//! is assigned every partition of the topic.

use super::config::{self, KafkaSourceConfig, ValueFormat};
use crate::http::raw_page::{record_text, TextProblem};
use crate::SourceContext;
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, BadRecord, Batch, Checkpoint, ConnectorError, GroupOffsets, LoadMode, Op, Payload,
    Poll, RawJson, Record, Source, StreamReader, StreamSpec,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long one poll waits for the first message before reporting Idle.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// After the first message, how long a poll keeps filling its batch.
const FILL_WAIT: Duration = Duration::from_millis(50);

/// The checkpoint of a topic: the next offset to read, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaCheckpoint {
    pub partitions: BTreeMap<i32, i64>,
}

/// Kafka topics; see the [module docs](super).
#[derive(Debug)]
pub struct KafkaSource {
    config: KafkaSourceConfig,
    pattern: Option<regex::Regex>,
    group_id: String,
    batch_size: usize,
    /// The sink commits the group's offsets in its transactions.
    offsets_in_sink: bool,
}

impl KafkaSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let config: KafkaSourceConfig = section.parse()?;
        if config.brokers.joined().is_empty() {
            return Err(section.error("brokers", "must name at least one broker (host:port)"));
        }
        let pattern = match (&config.topic_pattern, config.topics.is_empty()) {
            (Some(_), false) => {
                return Err(section.error(
                    "topic_pattern",
                    "set either `topics` or `topic_pattern`, not both",
                ))
            }
            (None, true) => {
                return Err(
                    section.error("topics", "name at least one topic (or set `topic_pattern`)")
                )
            }
            (Some(p), true) => Some(regex::Regex::new(p).map_err(|e| {
                section.error("topic_pattern", format!("invalid regular expression: {e}"))
            })?),
            (None, false) => None,
        };
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
        if ctx.offsets_in_sink_transaction {
            if let Some(level) = config
                .properties
                .get("isolation.level")
                .filter(|l| *l != "read_committed")
            {
                return Err(section.error(
                    "properties.\"isolation.level\"",
                    format!("`{level}` cannot be used with the sink's exactly_once: only records of committed transactions may be copied (read_committed)"),
                ));
            }
        }
        let group_id = config
            .group_id
            .clone()
            .unwrap_or_else(|| format!("tributary.{}", ctx.connector));
        Ok(KafkaSource {
            config,
            pattern,
            group_id,
            batch_size: ctx.batch_size.max(1),
            offsets_in_sink: ctx.offsets_in_sink_transaction,
        })
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.config.brokers.joined())
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.config.start.as_str())
            .set("enable.partition.eof", "false");
        if self.offsets_in_sink {
            // Aborted records of an upstream transactional producer are
            // never copied (librdkafka's default, set so it cannot drift).
            c.set("isolation.level", "read_committed");
        }
        for (k, v) in self.config.properties.iter() {
            c.set(k, v);
        }
        c
    }

    fn consumer(&self) -> Result<BaseConsumer, ConnectorError> {
        self.client_config()
            .create()
            .map_err(|e| ConnectorError::config(format!("kafka source: {e}")))
    }

    /// Topic name -> partition ids, from the cluster's metadata.
    async fn topics(&self) -> Result<BTreeMap<String, Vec<i32>>, ConnectorError> {
        let consumer = self.consumer()?;
        let brokers = self.config.brokers.joined();
        tokio::task::spawn_blocking(move || {
            let m = consumer.fetch_metadata(None, TIMEOUT).map_err(|e| {
                ConnectorError::retryable(format!(
                    "kafka source: cannot read the topics of {brokers}: {e}"
                ))
            })?;
            Ok(m.topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| {
                    (
                        t.name().to_string(),
                        t.partitions().iter().map(|p| p.id()).collect(),
                    )
                })
                .collect())
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("kafka source: metadata task failed: {e}")))?
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn check(&self) -> Result<(), ConnectorError> {
        self.discover().await.map(|_| ())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        let all = self.topics().await?;
        match &self.pattern {
            Some(p) => {
                let found: Vec<StreamSpec> = all
                    .keys()
                    .filter(|t| p.is_match(t))
                    .map(StreamSpec::new)
                    .collect();
                if found.is_empty() {
                    return Err(ConnectorError::config(format!(
                        "kafka source: no topic matches topic_pattern `{}`",
                        p.as_str()
                    )));
                }
                Ok(found)
            }
            None => {
                if let Some(missing) = self.config.topics.iter().find(|t| !all.contains_key(*t)) {
                    return Err(ConnectorError::config(format!(
                        "kafka source: topic `{missing}` does not exist"
                    )));
                }
                Ok(self.config.topics.iter().map(StreamSpec::new).collect())
            }
        }
    }

    /// The group's offsets for the topic, from the checkpoint.
    fn group_offsets(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> Option<GroupOffsets> {
        let position: KafkaCheckpoint = checkpoint.to_state().ok()?;
        Some(GroupOffsets {
            group: self.group_id.clone(),
            topic: stream.name.clone(),
            partitions: position.partitions.into_iter().collect(),
        })
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let topic = stream.name.clone();
        let position: KafkaCheckpoint = match &checkpoint {
            Some(c) => c.to_state().map_err(|e| {
                ConnectorError::fatal(format!(
                    "kafka source: checkpoint of topic `{topic}` is not {{\"partitions\": {{...}}}}: {e}"
                ))
            })?,
            None => KafkaCheckpoint::default(),
        };
        let partitions = self.topics().await?.remove(&topic).ok_or_else(|| {
            ConnectorError::retryable(format!(
                "kafka source: topic `{topic}` is not in the cluster's metadata"
            ))
        })?;
        let consumer = Arc::new(self.consumer()?);
        let stop_at_end = self.config.stop_at_end;
        let setup = {
            let consumer = Arc::clone(&consumer);
            let topic = topic.clone();
            let partitions = partitions.clone();
            let position = position.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ConnectorError> {
                let mut tpl = TopicPartitionList::new();
                for p in &partitions {
                    // Checkpoint first; else the group's committed offset,
                    // else `start` (auto.offset.reset).
                    let offset = match position.partitions.get(p) {
                        Some(&o) => Offset::Offset(o),
                        None => Offset::Stored,
                    };
                    tpl.add_partition_offset(&topic, *p, offset)
                        .map_err(|e| ConnectorError::fatal(format!("kafka source: {e}")))?;
                }
                consumer.assign(&tpl).map_err(|e| {
                    ConnectorError::retryable(format!(
                        "kafka source: assigning `{topic}` failed: {e}"
                    ))
                })?;
                let mut end = BTreeMap::new();
                if stop_at_end {
                    for p in &partitions {
                        let (low, high) =
                            consumer
                                .fetch_watermarks(&topic, *p, TIMEOUT)
                                .map_err(|e| {
                                    ConnectorError::retryable(format!(
                                "kafka source: cannot read the end of `{topic}` partition {p}: {e}"
                            ))
                                })?;
                        end.insert(*p, (low, high));
                    }
                }
                Ok(end)
            })
        };
        let end = setup.await.map_err(|e| {
            ConnectorError::fatal(format!("kafka source: setup task failed: {e}"))
        })??;
        Ok(Box::new(KafkaReader {
            consumer,
            offsets_in_sink: self.offsets_in_sink,
            topic,
            format: self.config.format,
            batch_size: self.batch_size,
            position,
            end: stop_at_end.then_some(end),
        }))
    }
}

struct KafkaReader {
    consumer: Arc<BaseConsumer>,
    /// The sink's transaction commits the group's offsets.
    offsets_in_sink: bool,
    topic: String,
    format: ValueFormat,
    batch_size: usize,
    position: KafkaCheckpoint,
    /// With `stop_at_end`: each partition's first offset and high watermark
    /// when the run started. The run ends when every partition is past its
    /// watermark and a poll brings nothing more.
    end: Option<BTreeMap<i32, (i64, i64)>>,
}

/// One message, copied out of librdkafka's buffer.
struct Raw {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl KafkaReader {
    /// Whether every partition is past the end read at start. The
    /// consumer's position, not the last message's offset + 1, says so:
    /// a transactional producer's last offsets are commit markers, which
    /// hold an offset and no message.
    async fn at_end(&self) -> Result<bool, ConnectorError> {
        let Some(end) = &self.end else {
            return Ok(false);
        };
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let positions = tokio::task::spawn_blocking(move || {
            consumer.position().map(|tpl| {
                tpl.elements_for_topic(&topic)
                    .iter()
                    .filter_map(|e| Some((e.partition(), e.offset().to_raw()?)))
                    .collect::<BTreeMap<i32, i64>>()
            })
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("kafka source: position task failed: {e}")))?
        .map_err(|e| ConnectorError::retryable(format!("kafka source: {e}")))?;
        Ok(end.iter().all(|(p, (low, high))| {
            let read = self.position.partitions.get(p).copied().unwrap_or(*low);
            let consumed = positions.get(p).copied().unwrap_or(-1);
            read.max(consumed) >= *high
        }))
    }

    fn record(&self, m: Raw) -> Result<Record, BadRecord> {
        let location = format!("{}/{}@{}", self.topic, m.partition, m.offset);
        let key_text = m
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let (value, op) = match (m.value, self.format) {
            (None, _) => (Payload::Json(Value::Null), Op::Delete),
            (Some(v), ValueFormat::Json) => {
                // Kept by the rule of every raw record: one line (a
                // pretty-printed message is compacted), and only what
                // strict parsers accept.
                let kept = match std::str::from_utf8(&v) {
                    Ok(text) => record_text(text).map(|kept| match kept {
                        Cow::Borrowed(t) if t.len() == v.len() => None,
                        kept => Some(Bytes::from(kept.into_owned())),
                    }),
                    // serde_json words where the invalid UTF-8 is.
                    Err(_) => Err(TextProblem::Invalid(
                        match serde_json::from_slice::<serde::de::IgnoredAny>(&v) {
                            Err(e) => e,
                            Ok(_) => serde::de::Error::custom("invalid UTF-8"),
                        },
                    )),
                };
                match kept {
                    Ok(text) => {
                        let text = text.unwrap_or_else(|| Bytes::from(v));
                        (Payload::Raw(RawJson::from_checked(text)), Op::Upsert)
                    }
                    Err(problem) => {
                        let error = match problem {
                            TextProblem::Invalid(e) => format!("value is not JSON: {e}"),
                            TextProblem::NotStrict(message) => format!("value: {message}"),
                        };
                        return Err(BadRecord {
                            location,
                            error,
                            raw: String::from_utf8_lossy(&v).into_owned().into(),
                        });
                    }
                }
            }
            (Some(v), ValueFormat::String) => (
                Payload::Json(Value::String(String::from_utf8_lossy(&v).into_owned())),
                Op::Upsert,
            ),
        };
        let key = key_text.as_deref().map(|k| {
            serde_json::from_str::<Value>(k).unwrap_or_else(|_| Value::String(k.to_string()))
        });
        let mut headers = m.headers;
        headers.push(("kafka.topic".into(), self.topic.clone()));
        headers.push(("kafka.partition".into(), m.partition.to_string()));
        headers.push(("kafka.offset".into(), m.offset.to_string()));
        if let Some(t) = m.timestamp {
            headers.push(("kafka.timestamp".into(), t.to_string()));
        }
        if let Some(k) = key_text {
            headers.push(("kafka.key".into(), k));
        }
        Ok(Record {
            key,
            value,
            headers,
            target: None,
            op,
        })
    }
}

/// Polls up to `max` messages: waits up to [`IDLE_WAIT`] for the first,
/// then [`FILL_WAIT`] more for the rest.
fn poll_many(consumer: &BaseConsumer, max: usize) -> Result<Vec<Raw>, ConnectorError> {
    let mut out = Vec::new();
    let started = Instant::now();
    let mut deadline = started + IDLE_WAIT;
    while out.len() < max {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match consumer.poll(deadline - now) {
            None => break,
            Some(Err(e)) => {
                if out.is_empty() {
                    return Err(ConnectorError::retryable(format!("kafka source: {e}")));
                }
                break;
            }
            Some(Ok(m)) => {
                if out.is_empty() {
                    deadline = Instant::now() + FILL_WAIT;
                }
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    h.value
                                        .map(|v| String::from_utf8_lossy(v).into_owned())
                                        .unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl StreamReader for KafkaReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let consumer = Arc::clone(&self.consumer);
        let max = self.batch_size;
        let messages = tokio::task::spawn_blocking(move || poll_many(&consumer, max))
            .await
            .map_err(|e| ConnectorError::fatal(format!("kafka source: poll task failed: {e}")))??;
        if messages.is_empty() {
            // The end is reported on the first poll that brings nothing
            // once every partition is past the watermarks read at start.
            return Ok(if self.at_end().await? {
                Poll::End
            } else {
                Poll::Idle
            });
        }
        let mut records = Vec::with_capacity(messages.len());
        let mut bad_records = Vec::new();
        for m in messages {
            self.position.partitions.insert(m.partition, m.offset + 1);
            match self.record(m) {
                Ok(r) => records.push(r),
                Err(b) => bad_records.push(b),
            }
        }
        let mut batch = Batch::new(
            records,
            Checkpoint::from_state(&self.position),
            LoadMode::Incremental,
        );
        batch.bad_records = bad_records;
        Ok(Poll::Batch(batch))
    }

    /// Every record before `checkpoint` is durable in the sink: only now
    /// does the group's committed offset move (at-least-once). With the
    /// sink's transactions it already moved, with the records.
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        if self.offsets_in_sink {
            return Ok(());
        }
        let Ok(position) = checkpoint.to_state::<KafkaCheckpoint>() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &position.partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .map_err(|e| ConnectorError::fatal(format!("kafka source: {e}")))?;
        }
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| ConnectorError::fatal(format!("kafka source: commit task failed: {e}")))?;
        if let Err(e) = result {
            // The checkpoint, not the group offset, is where the stream
            // resumes; a failed group commit only delays what lag monitors see.
            tracing::warn!(topic = %topic, error = %e, "kafka source: committing the consumer group's offsets failed");
        }
        Ok(())
    }
}
