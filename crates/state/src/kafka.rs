//! Checkpoints in a compacted Kafka topic, selected by
//! `[state] url = "kafka://host:9092[,host2:9092]/topic[?property=value&...]"`
//! (topic default `_tributary_offsets`), the way Kafka Connect keeps source
//! offsets (seed 004).
//!
//! # Layout
//!
//! One partition, `cleanup.policy=compact`, created if missing. Every
//! connector sharing the topic writes to it; each reads all of it at start
//! and keeps its own entries:
//!
//! - checkpoint: key `["connector","stream"]`, value the JSON of
//!   [`StoredCheckpoint`] (`stream`, `checkpoint`, `committed_at`,
//!   `advanced_at`); a reset writes a tombstone (null value) for the key;
//! - owner: key `["connector"]`, value `{"instance", "host", "pid",
//!   "claimed_at"}` (see Fencing).
//!
//! Any Kafka consumer can read the topic; keys and values are plain JSON.
//!
//! # Durability and atomicity
//!
//! A commit produces one message per stream with `acks=all` and the
//! idempotent producer, and returns only when the broker acknowledged all of
//! them. Without transactions Kafka has no multi-message atomicity, so a
//! crash in the middle of a multi-stream commit can leave some streams at
//! the new checkpoint and the others at the previous one. Each checkpoint alone is still valid (it
//! covers only records the sink had acknowledged), so the cost is at most
//! one flush of duplicates for the streams left behind, never a gap. The
//! messages of a commit are produced together and usually travel in one
//! record batch, which Kafka appends as a unit.
//!
//! # Fencing
//!
//! A connector about to run calls [`StateStore::claim`]: the store appends
//! an owner record with a fresh instance id and reads the topic back to it.
//! After every commit it reads the topic back to that commit; an owner
//! record of another instance among what it read means a second instance
//! of the connector (or `tributary state reset`) took over, and the commit
//! fails with [`StateError::Fenced`]: the older instance stops instead of
//! both writing. The newest claim wins, as with Kafka's producer epochs.
//! The commit that discovered the fence has landed after the newer claim;
//! that checkpoint covers records already delivered, so the worst case is
//! re-reading them (duplicates), never a gap.
//!
//! Reading back to an offset this store wrote is exact; reading "to the
//! end" (at start) stops at the end the broker reports.

use crate::{StateError, StateStore, StoredCheckpoint};
use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tributary_core::Checkpoint;

pub const DEFAULT_TOPIC: &str = "_tributary_offsets";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The owner record's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub claimed_at: DateTime<Utc>,
}

/// Checkpoints of one connector in a compacted Kafka topic. See the
/// [module docs](self).
pub struct KafkaStore {
    connector: String,
    topic: String,
    brokers: String,
    replication_factor: i32,
    config: ClientConfig,
    inner: Mutex<Option<Inner>>,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("location", &self.describe())
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

struct Inner {
    producer: FutureProducer,
    consumer: Arc<BaseConsumer>,
    /// The next offset to read.
    next: i64,
    /// This connector's entries; `Err` holds why a stored value is corrupt.
    checkpoints: BTreeMap<String, Result<StoredCheckpoint, String>>,
    /// The latest owner record of this connector and its offset.
    owner: Option<(i64, Owner)>,
    /// This instance's claim, once made.
    claimed: Option<Owner>,
}

enum Entry {
    Checkpoint(String, Option<Result<StoredCheckpoint, String>>),
    Owner(Owner),
}

impl KafkaStore {
    /// Parses the URL; nothing connects until the first operation.
    pub fn open(url: &str, connector: &str) -> Result<KafkaStore, StateError> {
        let bad = |message: String| StateError::Storage {
            path: "kafka state URL".into(),
            message,
        };
        let rest = url
            .split_once("://")
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("kafka"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("expected kafka://host:port/topic".into()))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = rest.split_once('/').unwrap_or((rest, ""));
        if brokers.is_empty() {
            return Err(bad("no broker in kafka://host:port/topic".into()));
        }
        if brokers.contains('@') {
            return Err(bad(
                "credentials go in query parameters (sasl.username, sasl.password), not before the host"
                    .into(),
            ));
        }
        let topic = if topic.is_empty() {
            DEFAULT_TOPIC.to_string()
        } else {
            topic.to_string()
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        let mut replication_factor = 1;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k.to_ascii_lowercase().contains("password") || k.contains("secret") {
                tributary_core::secret::register(&v);
            }
            if k == "replication_factor" {
                replication_factor =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        bad(format!("replication_factor=`{v}` is not a number >= 1"))
                    })?;
            } else if k.contains('.') {
                config.set(k.as_ref(), v.as_ref());
            } else {
                return Err(bad(format!(
                    "unknown parameter `{k}`: librdkafka properties contain a dot (sasl.username), the store's own options are: replication_factor"
                )));
            }
        }
        Ok(KafkaStore {
            connector: connector.to_string(),
            topic,
            brokers: brokers.to_string(),
            replication_factor,
            config,
            inner: Mutex::new(None),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn storage(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Storage {
            path: self.describe(),
            message: message.to_string(),
        }
    }

    /// Connects, creates the topic if missing and reads it to its end.
    async fn opened(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Inner>>, StateError> {
        let mut guard = self.inner.lock().await;
        if guard.is_none() {
            self.ensure_topic().await?;
            let mut consumer_config = self.config.clone();
            consumer_config
                // librdkafka refuses `assign` without a group; this one
                // never joins or commits (the store tracks its own offset).
                .set("group.id", "tributary-state-reader")
                // Reading to the end should not wait for more data to arrive.
                .set("fetch.wait.max.ms", "10")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest");
            let consumer: BaseConsumer = consumer_config
                .create()
                .map_err(|e| self.storage(format!("cannot create a consumer: {e}")))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
                .map_err(|e| self.storage(e))?;
            consumer.assign(&tpl).map_err(|e| self.storage(e))?;
            let mut producer_config = self.config.clone();
            producer_config
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", TIMEOUT.as_millis().to_string());
            let producer: FutureProducer = producer_config
                .create()
                .map_err(|e| self.storage(format!("cannot create a producer: {e}")))?;
            let mut inner = Inner {
                producer,
                consumer: Arc::new(consumer),
                next: 0,
                checkpoints: BTreeMap::new(),
                owner: None,
                claimed: None,
            };
            // The end is only known from the broker here (see `Until::End`);
            // writers read back to their own last offset.
            self.catch_up(&mut inner, Until::End).await?;
            *guard = Some(inner);
        }
        Ok(guard)
    }

    async fn ensure_topic(&self) -> Result<(), StateError> {
        // The admin client is a producer handle, whose metadata request for
        // a missing topic lets a broker with `auto.create.topics.enable`
        // (Apache Kafka's default) create it with the broker's defaults:
        // not compacted. The store creates it itself, compacted.
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .clone()
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| self.storage(format!("cannot create an admin client: {e}")))?;
        let topic = self.topic.clone();
        let (admin, partitions) = tokio::task::spawn_blocking(move || {
            let partitions = admin
                .inner()
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len())
                });
            (admin, partitions)
        })
        .await
        .map_err(|e| self.storage(e))?;
        match partitions.map_err(|e| self.storage(format!("cannot reach the brokers: {e}")))? {
            Some(1) => return Ok(()),
            Some(n) => {
                return Err(self.storage(format!(
                    "the topic has {n} partitions; the state store needs exactly one, so that every commit is read back in order"
                )))
            }
            None => {}
        }
        let new = NewTopic::new(
            &self.topic,
            1,
            TopicReplication::Fixed(self.replication_factor),
        )
        .set("cleanup.policy", "compact");
        let results = admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            )
            .await
            .map_err(|e| self.storage(format!("cannot create the topic: {e}")))?;
        for r in results {
            match r {
                Ok(_) => {
                    tracing::info!(topic = %self.topic, "created the compacted state topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(self.storage(format!("cannot create the topic: {code}")))
                }
            }
        }
        Ok(())
    }

    /// Reads every message after `inner.next` up to `until` and applies
    /// this connector's entries.
    async fn catch_up(&self, inner: &mut Inner, until: Until) -> Result<(), StateError> {
        let consumer = Arc::clone(&inner.consumer);
        let topic = self.topic.clone();
        let next = inner.next;
        let read = tokio::task::spawn_blocking(move || read_until(&consumer, &topic, next, until))
            .await
            .map_err(|e| self.storage(e))?
            .map_err(|e| self.storage(e))?;
        inner.next = read.next;
        for ReadMessage { offset, key, value } in read.messages {
            match self.decode(key.as_deref(), value.as_deref()) {
                Some(Entry::Checkpoint(stream, Some(entry))) => {
                    inner.checkpoints.insert(stream, entry);
                }
                Some(Entry::Checkpoint(stream, None)) => {
                    inner.checkpoints.remove(&stream);
                }
                Some(Entry::Owner(owner)) => inner.owner = Some((offset, owner)),
                None => {}
            }
        }
        Ok(())
    }

    /// This connector's entry in a message, if it is one.
    fn decode(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Entry> {
        let key: Vec<Value> = serde_json::from_slice(key?).ok()?;
        if key.first()?.as_str()? != self.connector {
            return None;
        }
        match key.as_slice() {
            [_] => {
                let owner = serde_json::from_slice::<Owner>(value?).ok()?;
                Some(Entry::Owner(owner))
            }
            [_, Value::String(stream)] => {
                let entry = value.map(|v| {
                    serde_json::from_slice::<StoredCheckpoint>(v).map_err(|e| e.to_string())
                });
                Some(Entry::Checkpoint(stream.clone(), entry))
            }
            _ => None,
        }
    }

    /// Fails with [`StateError::Fenced`] if another instance claimed the
    /// connector after this one (or at all, when this one has not claimed).
    fn check_owner(&self, inner: &Inner) -> Result<(), StateError> {
        let (Some(mine), Some((_, latest))) = (&inner.claimed, &inner.owner) else {
            return Ok(());
        };
        if latest.instance == mine.instance {
            return Ok(());
        }
        Err(StateError::Fenced {
            path: self.describe(),
            message: format!(
                "connector `{}` was claimed by another instance (pid {} on {}, at {}); this instance stops so that only one writes its checkpoints. Stop one of them (or, after `tributary state reset`, restart this one)",
                self.connector,
                latest.pid,
                latest.host,
                latest.claimed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        })
    }

    async fn claim_in(&self, inner: &mut Inner) -> Result<(), StateError> {
        let owner = Owner {
            instance: instance_id(),
            host: hostname(),
            pid: std::process::id(),
            claimed_at: Utc::now(),
        };
        let key = serde_json::to_vec(&[&self.connector]).map_err(|e| self.storage(e))?;
        let value = serde_json::to_vec(&owner).map_err(|e| self.storage(e))?;
        let at = self.produce(inner, vec![(key, Some(value))]).await?;
        inner.claimed = Some(owner);
        self.catch_up(inner, Until::Offset(at)).await?;
        self.check_owner(inner)
    }

    /// Produces `messages`, waits until the broker acknowledged each, and
    /// returns the offset of the last one.
    async fn produce(
        &self,
        inner: &Inner,
        messages: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<i64, StateError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, value) in &messages {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(0)
                .key(key.as_slice());
            if let Some(v) = value {
                record = record.payload(v.as_slice());
            }
            let delivery = inner
                .producer
                .send_result(record)
                .map_err(|(e, _)| self.storage(format!("cannot send a commit: {e}")))?;
            deliveries.push(delivery);
        }
        let mut last = -1;
        for d in deliveries {
            match d.await {
                Ok(Ok(delivery)) => last = last.max(delivery.offset),
                Ok(Err((e, _))) => {
                    return Err(self.storage(format!("a commit was not acknowledged: {e}")))
                }
                Err(_) => return Err(self.storage("the producer was dropped during a commit")),
            }
        }
        Ok(last)
    }

    /// Claims the connector before its first write.
    async fn before_write(&self, inner: &mut Inner) -> Result<(), StateError> {
        if inner.claimed.is_none() {
            self.claim_in(inner).await?;
        }
        Ok(())
    }

    /// Reads the topic back to the write at `at` and checks that no other
    /// instance claimed the connector before it.
    async fn after_write(&self, inner: &mut Inner, at: i64) -> Result<(), StateError> {
        self.catch_up(inner, Until::Offset(at)).await?;
        self.check_owner(inner)
    }

    fn entry_key(&self, stream: &str) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(&[&self.connector, stream]).map_err(|e| self.storage(e))
    }
}

/// A message read back: offset, key, value (`None`: a tombstone).
struct ReadMessage {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

struct ReadResult {
    messages: Vec<ReadMessage>,
    next: i64,
}

/// How far [`read_until`] reads.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Up to and including this offset (a write of this store: exact).
    Offset(i64),
    /// To the partition's end as the broker reports it when the read
    /// starts: librdkafka's end-of-partition event, which also steps over
    /// transaction markers (offsets that hold no message).
    End,
}

/// Polls partition 0 from `next` until `until`.
fn read_until(
    consumer: &BaseConsumer,
    topic: &str,
    mut next: i64,
    until: Until,
) -> Result<ReadResult, String> {
    let high = match until {
        Until::Offset(o) => o + 1,
        Until::End => {
            consumer
                .fetch_watermarks(topic, 0, TIMEOUT)
                .map_err(|e| format!("cannot read the topic's end offset: {e}"))?
                .1
        }
    };
    let mut messages = Vec::new();
    let started = Instant::now();
    while next < high {
        if started.elapsed() > TIMEOUT {
            return Err(format!(
                "reading the topic timed out at offset {next} of {high}"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) if matches!(until, Until::End) => break,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(format!("reading the topic failed: {e}")),
            Some(Ok(m)) => {
                next = m.offset() + 1;
                messages.push(ReadMessage {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
            }
        }
    }
    Ok(ReadResult { messages, next })
}

fn instance_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[async_trait::async_trait]
impl StateStore for KafkaStore {
    async fn load(&self, stream: &str) -> Result<Option<StoredCheckpoint>, StateError> {
        let guard = self.opened().await?;
        let Some(inner) = guard.as_ref() else {
            return Ok(None);
        };
        match inner.checkpoints.get(stream) {
            None => Ok(None),
            Some(Ok(c)) => Ok(Some(c.clone())),
            Some(Err(message)) => Err(StateError::Corrupt {
                path: self.describe(),
                stream: stream.to_string(),
                message: message.clone(),
            }),
        }
    }

    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError> {
        let guard = self.opened().await?;
        let Some(inner) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        inner
            .checkpoints
            .iter()
            .map(|(stream, c)| {
                c.clone().map_err(|message| StateError::Corrupt {
                    path: self.describe(),
                    stream: stream.clone(),
                    message,
                })
            })
            .collect()
    }

    async fn commit(&self, checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.before_write(inner).await?;
        let now = Utc::now();
        let mut stored = Vec::with_capacity(checkpoints.len());
        let mut messages = Vec::with_capacity(checkpoints.len());
        for (stream, checkpoint) in checkpoints {
            let advanced_at = match inner.checkpoints.get(stream) {
                Some(Ok(p)) if p.checkpoint.same_position(checkpoint) => p.advanced_at,
                _ => now,
            };
            let s = StoredCheckpoint {
                stream: stream.clone(),
                checkpoint: checkpoint.clone(),
                committed_at: now,
                advanced_at,
            };
            let value = serde_json::to_vec(&s).map_err(|e| self.storage(e))?;
            messages.push((self.entry_key(stream)?, Some(value)));
            stored.push(s);
        }
        let at = self.produce(inner, messages).await?;
        for s in stored {
            inner.checkpoints.insert(s.stream.clone(), Ok(s));
        }
        self.after_write(inner, at).await
    }

    async fn reset(&self, stream: Option<&str>) -> Result<usize, StateError> {
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.before_write(inner).await?;
        let streams: Vec<String> = match stream {
            Some(s) => inner
                .checkpoints
                .contains_key(s)
                .then(|| s.to_string())
                .into_iter()
                .collect(),
            None => inner.checkpoints.keys().cloned().collect(),
        };
        let messages = streams
            .iter()
            .map(|s| Ok((self.entry_key(s)?, None)))
            .collect::<Result<Vec<_>, StateError>>()?;
        if messages.is_empty() {
            return Ok(0);
        }
        let at = self.produce(inner, messages).await?;
        for s in &streams {
            inner.checkpoints.remove(s);
        }
        self.after_write(inner, at).await?;
        Ok(streams.len())
    }

    /// One produce of every entry, as given (times included); the same
    /// ownership check as a commit, so an operator's write also fences a
    /// running instance rather than racing it.
    async fn put(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.before_write(inner).await?;
        let messages = entries
            .iter()
            .map(|e| {
                let value = serde_json::to_vec(e).map_err(|err| self.storage(err))?;
                Ok((self.entry_key(&e.stream)?, Some(value)))
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        let at = self.produce(inner, messages).await?;
        for e in entries {
            inner.checkpoints.insert(e.stream.clone(), Ok(e.clone()));
        }
        self.after_write(inner, at).await
    }

    async fn claim(&self) -> Result<(), StateError> {
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.claim_in(inner).await
    }

    fn describe(&self) -> String {
        format!("kafka://{}/{}", self.brokers, self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_brokers_topic_and_properties() {
        let s = KafkaStore::open(
            "kafka://a:9092,b:9092/offsets?security.protocol=SASL_SSL&sasl.password=pw-71ab2c3d&replication_factor=3",
            "billing",
        )
        .unwrap();
        assert_eq!(s.describe(), "kafka://a:9092,b:9092/offsets");
        assert_eq!(s.replication_factor, 3);
        assert_eq!(s.config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(tributary_core::secret::redact("x pw-71ab2c3d"), "x ***");
        let d = KafkaStore::open("kafka://k:9092", "c").unwrap();
        assert_eq!(d.topic(), DEFAULT_TOPIC);
        let e = KafkaStore::open("kafka://k:9092/t?linger=5", "c").unwrap_err();
        assert!(e.to_string().contains("unknown parameter `linger`"), "{e}");
        let e = KafkaStore::open("kafka://u:p@k:9092/t", "c").unwrap_err();
        assert!(!e.to_string().contains("u:p"), "{e}");
    }
}
