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
//! # Reading
//!
//! The topic is read with `isolation.level=read_committed`: a checkpoint
//! written in a Kafka transaction (the Kafka sink with `exactly_once`) counts
//! only once its transaction committed, so an aborted or unfinished one
//! leaves the previous checkpoint. Reading "to the end" means to the high
//! watermark (aborted records and transaction markers included, which the
//! consumer steps over), not to the last stable offset: a transaction still
//! open on the topic is waited for (at most [`OPEN_TRANSACTION_WAIT`], the
//! broker's longest transaction timeout), since a commit of this connector
//! may sit behind another connector's open transaction.
//!
//! # Durability and atomicity
//!
//! Without transactions, a commit produces one message per stream with
//! `acks=all` and the idempotent producer, and returns only when the broker
//! acknowledged all of them. Kafka has no multi-message atomicity outside
//! transactions, so a crash in the middle of a multi-stream commit can leave
//! some streams at the new checkpoint and the others at the previous one.
//! Each checkpoint alone is still valid (it covers only records the sink had
//! acknowledged), so the cost is at most one flush of duplicates for the
//! streams left behind, never a gap.
//!
//! A store opened [`KafkaStore::transactional`] (the connector's sink is
//! Kafka with `exactly_once`) writes every change (an operator's `state
//! set`, the offsets API) as one transaction of the connector's
//! transactional id ([`transactional_id`]): all of it or nothing, and the
//! broker fences the running instance's producer, as a new instance would.
//! During a run such a store writes nothing: the sink's transactions hold
//! the checkpoints ([`KafkaStore::stage`], [`KafkaStore::applied`]). The
//! sink is handed the connector's own store ([`StateStore::kafka`]), so the
//! topic is read once at start (by the sink, after fencing) and the
//! runtime's loads and the admin server's reads see the sink's commits.
//!
//! # Fencing
//!
//! Transactional: by the broker (producer epochs of the transactional id).
//! The sink still writes an owner record in its first transaction, so that
//! an instance that was fenced can tell (and say) who took over, and can
//! tell a takeover from a transaction the broker aborted for its age.
//!
//! Otherwise: a connector about to run calls [`StateStore::claim`]: the
//! store appends an owner record with a fresh instance id and reads the
//! topic back to it. After every commit it reads the topic back to that
//! commit; an owner record of another instance among what it read means a
//! second instance of the connector (or `tributary state reset`) took over,
//! and the commit fails with [`StateError::Fenced`]: the older instance
//! stops instead of both writing. The newest claim wins, as with Kafka's
//! producer epochs. The commit that discovered the fence has landed after
//! the newer claim; that checkpoint covers records already delivered, so the
//! worst case is re-reading them (duplicates), never a gap.

use crate::{StateError, StateStore, StoredCheckpoint};
use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
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
/// How long a read waits for a transaction still open on the state topic:
/// the broker's longest transaction timeout (`transaction.max.timeout.ms`,
/// 15 minutes by default), after which the broker aborts it anyway.
pub const OPEN_TRANSACTION_WAIT: Duration = Duration::from_secs(15 * 60);
/// How often a read blocked by an open transaction says so.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(15);

/// The transactional id of a connector's writes with `exactly_once`: the
/// same for every instance of the connector, so that a new one fences the
/// old one (Kafka's zombie fencing).
pub fn transactional_id(connector: &str) -> String {
    format!("tributary-{connector}")
}

/// The owner record's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub claimed_at: DateTime<Utc>,
}

impl Owner {
    /// An owner record for this process, with a fresh instance id.
    pub fn new() -> Owner {
        Owner {
            instance: instance_id(),
            host: hostname(),
            pid: std::process::id(),
            claimed_at: Utc::now(),
        }
    }

    /// "pid 123 on host, since 2024-...": who an instance is, for messages.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on {}, since {}",
            self.pid,
            self.host,
            self.claimed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

impl Default for Owner {
    fn default() -> Self {
        Owner::new()
    }
}

/// The readers' context: end-of-partition events are how a read knows it
/// reached the end, so the ones still queued when a reader is dropped are
/// not errors worth a log line (librdkafka's default context logs them).
#[derive(Clone, Copy, Default)]
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::warn!(error = %error, reason, "kafka state store: client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

type Reader = BaseConsumer<ReaderContext>;

/// A message of the state topic: key, value (`None`: a tombstone).
pub type StateMessage = (Vec<u8>, Option<Vec<u8>>);

/// A commit prepared for another producer's transaction (the Kafka sink's):
/// the messages to produce to the state topic's partition 0, and the
/// entries they hold, for [`KafkaStore::applied`] once it committed.
#[derive(Debug, Clone)]
pub struct Staged {
    pub messages: Vec<StateMessage>,
    entries: Vec<StoredCheckpoint>,
}

/// Checkpoints of one connector in a compacted Kafka topic. See the
/// [module docs](self).
pub struct KafkaStore {
    connector: String,
    topic: String,
    brokers: String,
    replication_factor: i32,
    config: ClientConfig,
    /// Writes are transactions of this transactional id.
    transactional_id: Option<String>,
    inner: Mutex<Option<Inner>>,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("location", &self.describe())
            .field("connector", &self.connector)
            .field("transactional", &self.transactional_id.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// The non-transactional writer; `None` for a transactional store.
    producer: Option<FutureProducer>,
    /// Reads with `read_committed`.
    consumer: Arc<Reader>,
    /// Asks for the high watermark (`read_uncommitted`): the end to read to.
    probe: Arc<Reader>,
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
            } else if k == "isolation.level" || k == "transactional.id" {
                return Err(bad(format!(
                    "`{k}` is the store's own: it reads committed data only, and its transactional id is the connector's"
                )));
            } else if k.contains('.') {
                config.set(k.as_ref(), v.as_ref());
            } else {
                return Err(bad(format!(
                    "unknown parameter `{k}`: librdkafka properties contain a dot (sasl.username), the store's own options are: replication_factor"
                )));
            }
        }
        let mechanism = config
            .get("sasl.mechanism")
            .or(config.get("sasl.mechanisms"));
        if let Some(message) =
            tributary_core::kafka_client::sasl_problem(config.get("security.protocol"), mechanism)
        {
            return Err(bad(message));
        }
        Ok(KafkaStore {
            connector: connector.to_string(),
            topic,
            brokers: brokers.to_string(),
            replication_factor,
            config,
            transactional_id: None,
            inner: Mutex::new(None),
        })
    }

    /// Every write becomes one transaction of the connector's transactional
    /// id, and [`StateStore::claim`] is left to the broker's fencing: for a
    /// connector whose Kafka sink has `exactly_once`.
    pub fn transactional(mut self) -> KafkaStore {
        self.transactional_id = Some(transactional_id(&self.connector));
        self
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional_id.is_some()
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
            let consumer = self.consumer("read_committed")?;
            let probe = self.consumer("read_uncommitted")?;
            let mut tpl = TopicPartitionList::new();
            // Offset 0, not `Beginning`: a logical offset is first looked
            // up, and librdkafka retries that lookup 500 ms later when the
            // partition's leader is learnt meanwhile (as at every start),
            // half a second of each start measured. A log that no longer
            // starts at 0 is out of range: `auto.offset.reset` = earliest.
            tpl.add_partition_offset(&self.topic, 0, Offset::Offset(0))
                .map_err(|e| self.storage(e))?;
            consumer.assign(&tpl).map_err(|e| self.storage(e))?;
            let producer = match self.transactional_id {
                Some(_) => None,
                None => Some(self.producer(None)?),
            };
            let mut inner = Inner {
                producer,
                consumer: Arc::new(consumer),
                probe: Arc::new(probe),
                next: 0,
                checkpoints: BTreeMap::new(),
                owner: None,
                claimed: None,
            };
            self.catch_up(&mut inner, Until::End).await?;
            *guard = Some(inner);
        }
        Ok(guard)
    }

    fn consumer(&self, isolation: &str) -> Result<Reader, StateError> {
        let mut config = self.config.clone();
        config
            // librdkafka refuses `assign` without a group; this one
            // never joins or commits (the store tracks its own offset).
            .set("group.id", "tributary-state-reader")
            // Reading to the end should not wait for more data to arrive.
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", isolation);
        config
            .create_with_context(ReaderContext)
            .map_err(|e| self.storage(format!("cannot create a consumer: {e}")))
    }

    fn producer(&self, transactional_id: Option<&str>) -> Result<FutureProducer, StateError> {
        let mut config = self.config.clone();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", TIMEOUT.as_millis().to_string());
        if let Some(id) = transactional_id {
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", TIMEOUT.as_millis().to_string());
        }
        config
            .create()
            .map_err(|e| self.storage(format!("cannot create a producer: {e}")))
    }

    /// The partitions of the state topic (`None`: it does not exist),
    /// asking the brokers for at most `wait`. A metadata request for a
    /// missing topic must not make the broker create it
    /// (`auto.create.topics.enable`) with the default
    /// `cleanup.policy=delete`: the store creates it compacted.
    async fn topic_partitions(
        &self,
        wait: Duration,
    ) -> Result<(AdminClient<DefaultClientContext>, Option<usize>), StateError> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .clone()
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| self.storage(format!("cannot create an admin client: {e}")))?;
        let topic = self.topic.clone();
        let (admin, metadata) = tokio::task::spawn_blocking(move || {
            let metadata = admin.inner().fetch_metadata(Some(&topic), wait).map(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| (t.error(), t.partitions().len()))
            });
            (admin, metadata)
        })
        .await
        .map_err(|e| self.storage(e))?;
        let found = metadata.map_err(|e| {
            self.storage(format!(
                "cannot reach the brokers at {} within {}s: {e}",
                self.brokers,
                wait.as_secs()
            ))
        })?;
        match found {
            Some((None, n)) => Ok((admin, Some(n))),
            Some((Some(e), _))
                if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::TopicAuthorizationFailed =>
            {
                Err(self.storage(
                    "not authorized to describe the topic (grant DESCRIBE, READ and WRITE on it)",
                ))
            }
            _ => Ok((admin, None)),
        }
    }

    /// Proves the brokers answer and the topic can hold the checkpoints,
    /// waiting at most `wait` (for `check`, which must not hang on an
    /// unreachable cluster). Changes nothing: a missing topic is created by
    /// the first run. Returns what was found, for the report.
    pub async fn check(&self, wait: Duration) -> Result<String, StateError> {
        match self.topic_partitions(wait).await?.1 {
            Some(1) => Ok(format!("topic `{}` on {}", self.topic, self.brokers)),
            Some(n) => Err(self.partitions_error(n)),
            None => Ok(format!(
                "{} reachable; topic `{}` is created (compacted) by the first run",
                self.brokers, self.topic
            )),
        }
    }

    fn partitions_error(&self, n: usize) -> StateError {
        self.storage(format!(
            "the topic has {n} partitions; the state store needs exactly one, so that every commit is read back in order"
        ))
    }

    async fn ensure_topic(&self) -> Result<(), StateError> {
        let (admin, partitions) = self.topic_partitions(TIMEOUT).await?;
        match partitions {
            Some(1) => return Ok(()),
            Some(n) => return Err(self.partitions_error(n)),
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
        let probe = Arc::clone(&inner.probe);
        let topic = self.topic.clone();
        let next = inner.next;
        let read =
            tokio::task::spawn_blocking(move || read_until(&consumer, &probe, &topic, next, until))
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
                "connector `{}` was claimed by another instance ({}); this instance stops so that only one writes its checkpoints. Stop one of them (or, after `tributary state reset`, restart this one)",
                self.connector,
                latest.describe()
            ),
        })
    }

    async fn claim_in(&self, inner: &mut Inner) -> Result<(), StateError> {
        let owner = Owner::new();
        let at = self
            .produce(inner, vec![self.owner_message(&owner)?])
            .await?;
        inner.claimed = Some(owner);
        self.catch_up(inner, Until::Offset(at)).await?;
        self.check_owner(inner)
    }

    /// The owner record of `owner` for this connector.
    pub fn owner_message(&self, owner: &Owner) -> Result<StateMessage, StateError> {
        let key = serde_json::to_vec(&[&self.connector]).map_err(|e| self.storage(e))?;
        let value = serde_json::to_vec(owner).map_err(|e| self.storage(e))?;
        Ok((key, Some(value)))
    }

    /// Produces `messages` with the store's plain producer, waits until the
    /// broker acknowledged each, and returns the offset of the last one.
    async fn produce(&self, inner: &Inner, messages: Vec<StateMessage>) -> Result<i64, StateError> {
        let Some(producer) = inner.producer.as_ref() else {
            return Err(self.storage("no producer"));
        };
        self.send_all(producer, &messages).await
    }

    async fn send_all(
        &self,
        producer: &FutureProducer,
        messages: &[StateMessage],
    ) -> Result<i64, StateError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, value) in messages {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(0)
                .key(key.as_slice());
            if let Some(v) = value {
                record = record.payload(v.as_slice());
            }
            let delivery = producer
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

    /// One transaction of the connector's transactional id holding
    /// `messages`: a fresh producer (whose `init_transactions` fences any
    /// other, a running instance's included), then begin, produce, commit.
    async fn transact(&self, id: &str, messages: &[StateMessage]) -> Result<i64, StateError> {
        let producer = Arc::new(self.producer(Some(id))?);
        let txn = |what: &'static str, r: Result<(), KafkaError>| {
            r.map_err(|e| match &e {
                KafkaError::Transaction(t) if t.code() == RDKafkaErrorCode::Fenced => {
                    StateError::Fenced {
                        path: self.describe(),
                        message: format!(
                            "another writer of connector `{}` took over during this write ({what}: {e}); nothing was written",
                            self.connector
                        ),
                    }
                }
                _ => self.storage(format!("{what} failed: {e}")),
            })
        };
        let p = Arc::clone(&producer);
        let r = tokio::task::spawn_blocking(move || p.init_transactions(TIMEOUT))
            .await
            .map_err(|e| self.storage(e))?;
        txn("initializing the transactional producer", r)?;
        txn("beginning a transaction", producer.begin_transaction())?;
        let at = self.send_all(&producer, messages).await?;
        let p = Arc::clone(&producer);
        let r = tokio::task::spawn_blocking(move || p.commit_transaction(TIMEOUT))
            .await
            .map_err(|e| self.storage(e))?;
        txn("committing the transaction", r)?;
        Ok(at)
    }

    /// Claims the connector before its first write.
    async fn before_write(&self, inner: &mut Inner) -> Result<(), StateError> {
        if inner.claimed.is_none() {
            self.claim_in(inner).await?;
        }
        Ok(())
    }

    /// Writes `messages` (a transaction when transactional, else a claimed
    /// plain write), reads the topic back to them and checks ownership.
    async fn write(
        &self,
        inner: &mut Inner,
        messages: Vec<StateMessage>,
    ) -> Result<(), StateError> {
        let at = match &self.transactional_id {
            Some(id) => self.transact(id, &messages).await?,
            None => {
                self.before_write(inner).await?;
                self.produce(inner, messages).await?
            }
        };
        self.catch_up(inner, Until::Offset(at)).await?;
        self.check_owner(inner)
    }

    fn entry_key(&self, stream: &str) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(&[&self.connector, stream]).map_err(|e| self.storage(e))
    }

    /// The messages and entries of a commit of `checkpoints` now:
    /// `advanced_at` moves only for a checkpoint that changed.
    fn commit_messages(
        &self,
        inner: &Inner,
        checkpoints: &[(String, Checkpoint)],
    ) -> Result<Staged, StateError> {
        let now = Utc::now();
        let mut entries = Vec::with_capacity(checkpoints.len());
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
            entries.push(s);
        }
        Ok(Staged { messages, entries })
    }

    /// A commit of `checkpoints` for the Kafka sink to produce inside its
    /// own transaction (records, checkpoints and consumer offsets at once).
    pub async fn stage(&self, checkpoints: &[(String, Checkpoint)]) -> Result<Staged, StateError> {
        let guard = self.opened().await?;
        let Some(inner) = guard.as_ref() else {
            return Err(self.storage("not open"));
        };
        self.commit_messages(inner, checkpoints)
    }

    /// The sink's transaction holding `staged` committed.
    pub async fn applied(&self, staged: Staged) {
        let mut guard = self.inner.lock().await;
        if let Some(inner) = guard.as_mut() {
            for s in staged.entries {
                inner.checkpoints.insert(s.stream.clone(), Ok(s));
            }
        }
    }

    /// The latest committed owner record of this connector, after reading
    /// the topic to its end.
    pub async fn latest_owner(&self) -> Result<Option<Owner>, StateError> {
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.catch_up(inner, Until::End).await?;
        Ok(inner.owner.as_ref().map(|(_, o)| o.clone()))
    }

    /// The id of the cluster holding the topic.
    pub async fn cluster_id(&self) -> Result<String, StateError> {
        let guard = self.opened().await?;
        let Some(inner) = guard.as_ref() else {
            return Err(self.storage("not open"));
        };
        let consumer = Arc::clone(&inner.probe);
        drop(guard);
        tokio::task::spawn_blocking(move || consumer.client().fetch_cluster_id(TIMEOUT))
            .await
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| self.storage("the brokers did not say which cluster they are"))
    }

    /// Reads what other writers (the sink's transactions) committed since.
    async fn refreshed(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Inner>>, StateError> {
        let mut guard = self.opened().await?;
        if self.transactional_id.is_some() {
            if let Some(inner) = guard.as_mut() {
                self.catch_up(inner, Until::End).await?;
            }
        }
        Ok(guard)
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
    /// To the high watermark when the read starts, past transaction
    /// markers and aborted records.
    End,
}

/// Polls partition 0 from `next` until `until`, with the `read_committed`
/// `consumer`. The end is known by the consumer's position at its
/// end-of-partition events (transaction markers hold offsets but no
/// message, so the last message's offset + 1 is not the end). A position
/// short of the target at the end of the partition means a transaction is
/// still open before it: the read waits for it, up to
/// [`OPEN_TRANSACTION_WAIT`].
fn read_until(
    consumer: &Reader,
    probe: &Reader,
    topic: &str,
    mut next: i64,
    until: Until,
) -> Result<ReadResult, String> {
    let high = match until {
        Until::Offset(o) => o + 1,
        Until::End => {
            probe
                .fetch_watermarks(topic, 0, TIMEOUT)
                .map_err(|e| format!("cannot read the topic's end offset: {e}"))?
                .1
        }
    };
    let position = || -> Option<i64> {
        consumer
            .position()
            .ok()?
            .elements_for_topic(topic)
            .iter()
            .find(|e| e.partition() == 0)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
    };
    let mut messages = Vec::new();
    let started = Instant::now();
    // Set once the consumer stood at the end of the partition short of `high`.
    let mut blocked_since: Option<Instant> = None;
    let mut logged = Instant::now();
    while next < high {
        let limit = if blocked_since.is_some() {
            OPEN_TRANSACTION_WAIT
        } else {
            TIMEOUT
        };
        if started.elapsed() > limit {
            return Err(match blocked_since {
                Some(_) => format!(
                    "a transaction open on the topic since before offset {next} did not end within {}s",
                    limit.as_secs()
                ),
                None => format!("reading the topic timed out at offset {next} of {high}"),
            });
        }
        let at_end = match consumer.poll(Duration::from_millis(200)) {
            None => blocked_since.is_some(),
            Some(Err(KafkaError::PartitionEOF(_))) => true,
            Some(Err(e)) => return Err(format!("reading the topic failed: {e}")),
            Some(Ok(m)) => {
                next = m.offset() + 1;
                messages.push(ReadMessage {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                false
            }
        };
        if at_end {
            if let Some(p) = position() {
                next = next.max(p);
            }
            if next < high {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if logged.elapsed() >= WAIT_LOG_EVERY {
                    logged = Instant::now();
                    tracing::warn!(
                        topic,
                        at = next,
                        end = high,
                        waited_s = since.elapsed().as_secs(),
                        "state topic: waiting for an open transaction to end before reading on"
                    );
                }
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

    /// For a transactional store, read on to the end first: the running
    /// connector's sink commits into the topic, not through this store.
    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError> {
        let guard = self.refreshed().await?;
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
        let mut guard = self.refreshed().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        let staged = self.commit_messages(inner, checkpoints)?;
        self.write(inner, staged.messages).await?;
        for s in staged.entries {
            inner.checkpoints.insert(s.stream.clone(), Ok(s));
        }
        Ok(())
    }

    async fn reset(&self, stream: Option<&str>) -> Result<usize, StateError> {
        let mut guard = self.refreshed().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
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
        self.write(inner, messages).await?;
        for s in &streams {
            inner.checkpoints.remove(s);
        }
        Ok(streams.len())
    }

    /// One write of every entry, as given (times included); the same
    /// ownership check as a commit, so an operator's write also fences a
    /// running instance rather than racing it.
    async fn put(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut guard = self.refreshed().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        let messages = entries
            .iter()
            .map(|e| {
                let value = serde_json::to_vec(e).map_err(|err| self.storage(err))?;
                Ok((self.entry_key(&e.stream)?, Some(value)))
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        self.write(inner, messages).await?;
        for e in entries {
            inner.checkpoints.insert(e.stream.clone(), Ok(e.clone()));
        }
        Ok(())
    }

    /// One write: tombstones for the streams not in `entries`, then
    /// `entries` (a single transaction for a transactional store).
    async fn replace_all(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        let mut guard = self.refreshed().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        let gone: Vec<String> = inner
            .checkpoints
            .keys()
            .filter(|s| !entries.iter().any(|e| &e.stream == *s))
            .cloned()
            .collect();
        let mut messages = gone
            .iter()
            .map(|s| Ok((self.entry_key(s)?, None)))
            .collect::<Result<Vec<_>, StateError>>()?;
        for e in entries {
            let value = serde_json::to_vec(e).map_err(|err| self.storage(err))?;
            messages.push((self.entry_key(&e.stream)?, Some(value)));
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.write(inner, messages).await?;
        for s in &gone {
            inner.checkpoints.remove(s);
        }
        for e in entries {
            inner.checkpoints.insert(e.stream.clone(), Ok(e.clone()));
        }
        Ok(())
    }

    /// Transactional: nothing to do, the broker fences by transactional id.
    async fn claim(&self) -> Result<(), StateError> {
        if self.transactional_id.is_some() {
            return Ok(());
        }
        let mut guard = self.opened().await?;
        let Some(inner) = guard.as_mut() else {
            return Err(self.storage("not open"));
        };
        self.claim_in(inner).await
    }

    fn describe(&self) -> String {
        format!("kafka://{}/{}", self.brokers, self.topic)
    }

    fn kafka(self: Arc<Self>) -> Option<Arc<KafkaStore>> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_brokers_topic_and_properties() {
        let s = KafkaStore::open(
            "kafka://a:9092,b:9092/offsets?security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.password=pw-71ab2c3d&replication_factor=3",
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
        // SASL without a mechanism is named before librdkafka falls back
        // to Kerberos.
        let e = KafkaStore::open("kafka://k:9092/t?security.protocol=SASL_SSL", "c").unwrap_err();
        assert!(e.to_string().contains("needs `sasl.mechanism`"), "{e}");
    }
}
