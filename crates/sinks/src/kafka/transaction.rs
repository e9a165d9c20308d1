//! `exactly_once = true`: one Kafka transaction per flush, holding the
//! records, the checkpoint records of the `[state]` topic and a Kafka
//! source's consumer offsets. `commit_transaction` is the acknowledgement.
//!
//! - **Start** ([`KafkaSink::ready`]): the producer's `init_transactions`
//!   with the connector's transactional id fences any older instance (the
//!   broker aborts its open transaction and refuses its epoch), then a first
//!   transaction commits an owner record (who holds the connector now). Only
//!   then is the state topic read (`read_committed`, to its end), so the
//!   checkpoints the runtime resumes from are the last committed ones. The
//!   store is the connector's own (the runtime reads nothing itself).
//! - **Flush**: wait until librdkafka delivered every record of the
//!   transaction, produce the checkpoints to the state topic, send the
//!   consumer offsets, commit. A retriable commit error is retried as is
//!   (the runtime's next flush); anything else gives the transaction up.
//! - **Giving up** ([`KafkaSink::give_up`]): the producer is dropped (its
//!   transaction is aborted, by us or by the broker) and the sink answers
//!   [`ConnectorError::Aborted`]: the runtime reads the streams again from
//!   their committed checkpoints, through a fresh producer. Unless the owner
//!   record says another instance took over: then this one was fenced and
//!   stops ([`ConnectorError::Fatal`]) without touching the transactional
//!   id again. The broker reports a transaction it aborted for its age the
//!   same way as a takeover (the producer is fenced), hence the owner record.
//!
//! A takeover can race the owner record: a new instance that has fenced us
//! but not yet committed its owner record looks like an expired
//! transaction, our fresh producer fences it back, and it stops instead of
//! us. Either way one instance goes on, from the checkpoints committed with
//! the records: nothing is lost or written twice.

use super::{KafkaSink, MessageTag, RdProducer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_core::{Checkpoint, ConnectorError, GroupOffsets};
use tributary_state::kafka::{Owner, Staged};
use tributary_state::{KafkaStore, StateError, StateStore};

/// How long `init_transactions` may take (the broker may first have to
/// abort an older instance's transaction).
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long aborting may take before the producer is dropped anyway.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transactional side of the sink.
pub(super) struct Eos {
    /// The connector's state store (shared with the runtime, which then
    /// reads nothing itself): the checkpoints at start, the messages of
    /// each commit, and who owns the connector.
    store: Arc<KafkaStore>,
    transactional_id: String,
    transaction_timeout: Duration,
    /// `init_transactions` done and the owner record committed.
    ready: bool,
    /// This instance's owner record, once committed.
    owner: Option<Owner>,
    /// When the open transaction began; `None`: none is open.
    open_since: Option<Instant>,
    /// A commit whose `commit_transaction` failed retriably: the next flush
    /// retries the commit alone (everything else is in the transaction).
    committing: Option<Staged>,
    /// A consumer per group, for its group metadata (no I/O).
    groups: HashMap<String, BaseConsumer>,
}

impl Eos {
    pub(super) fn new(store: Arc<KafkaStore>, transactional_id: String, timeout: Duration) -> Eos {
        Eos {
            store,
            transactional_id,
            transaction_timeout: timeout,
            ready: false,
            owner: None,
            open_since: None,
            committing: None,
            groups: HashMap::new(),
        }
    }

    pub(super) fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    pub(super) fn is_open(&self) -> bool {
        self.open_since.is_some()
    }
}

fn state_error(e: StateError) -> ConnectorError {
    if e.is_retryable() {
        ConnectorError::retryable(format!("kafka sink: {e}"))
    } else {
        ConnectorError::fatal(format!("kafka sink: {e}"))
    }
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::fatal(format!("kafka sink: a transaction task failed: {e}")))
}

/// Waits (up to `timeout`) until the producer's polling thread has
/// consumed every delivery report, which happens just after our delivery
/// callbacks ran (what `deliver_transaction` waits for).
///
/// rdkafka's `commit_transaction` first calls its `flush`, which checks
/// librdkafka's count of undelivered messages once and, if reports are
/// still being consumed, polls the event queue for a full 100 ms before
/// checking again (its `poll` runs to its deadline): a third of the
/// commits took 100–130 ms instead of 1–15 ms, most of exactly-once's
/// cost. Once the count is zero that `flush` returns at once.
fn settle_delivery_reports(producer: &RdProducer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What a failed transactional call leaves us to do.
enum TxnFailure {
    /// Call again later: the transaction is intact.
    Retry(String),
    /// The transaction is lost (aborted, or the producer fenced).
    GiveUp(String),
}

fn classify(what: &str, e: &KafkaError) -> TxnFailure {
    let message = format!("{what}: {e}");
    match e {
        KafkaError::Transaction(t)
            if t.is_retriable() && !t.is_fatal() && !t.txn_requires_abort() =>
        {
            TxnFailure::Retry(message)
        }
        _ => TxnFailure::GiveUp(message),
    }
}

impl KafkaSink {
    fn eos(&mut self) -> Result<&mut Eos, ConnectorError> {
        self.eos
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("kafka sink: not in exactly-once mode"))
    }

    /// The producer's transactions are initialized (older instances fenced)
    /// and this instance's owner record is committed.
    pub(super) async fn ready(&mut self) -> Result<(), ConnectorError> {
        if self.eos()?.ready {
            return Ok(());
        }
        let producer = Arc::clone(self.producer()?);
        // Fence first: an older instance's open transaction, which holds
        // its uncommitted checkpoint, would stall any read of the state
        // topic until the broker timed it out.
        let p = Arc::clone(&producer);
        let started = Instant::now();
        let id = self.eos()?.transactional_id.clone();
        if let Err(e) = blocking(move || p.init_transactions(INIT_TIMEOUT)).await? {
            self.drop_producer();
            return Err(ConnectorError::retryable(format!(
                "kafka sink: initializing transactions of `{id}` failed: {e}"
            )));
        }
        tracing::info!(connector = %self.connector, transactional_id = %id, took_ms = started.elapsed().as_millis() as u64, "kafka sink: transactions initialized; any older instance of the connector is fenced");
        let reading = Instant::now();
        let store_cluster = self.eos()?.store.cluster_id().await.map_err(state_error)?;
        let p = Arc::clone(&producer);
        let sink_cluster = blocking(move || p.client().fetch_cluster_id(INIT_TIMEOUT)).await?;
        match sink_cluster {
            Some(c) if c == store_cluster => {}
            Some(c) => {
                return Err(ConnectorError::config(format!(
                    "kafka sink: exactly_once needs the state topic on the sink's cluster, in the same transactions as the records: [state] url points at cluster `{store_cluster}`, [sink] brokers at cluster `{c}`"
                )))
            }
            None => {
                return Err(ConnectorError::retryable(format!(
                    "kafka sink: cannot reach {} to learn its cluster id",
                    self.config.brokers.joined()
                )))
            }
        }
        let owner = Owner::new();
        let claiming = Instant::now();
        // Nothing to read again yet: a lost first transaction is retried.
        self.claim(&owner).await.map_err(|e| match e {
            ConnectorError::Aborted { message } => ConnectorError::retryable(message),
            other => other,
        })?;
        tracing::debug!(
            connector = %self.connector,
            read_ms = (claiming - reading).as_secs_f64() * 1e3,
            owner_ms = claiming.elapsed().as_secs_f64() * 1e3,
            "kafka sink: state topic read and owner record committed"
        );
        let eos = self.eos()?;
        eos.owner = Some(owner);
        eos.ready = true;
        Ok(())
    }

    /// The first transaction: this instance's owner record.
    async fn claim(&mut self, owner: &Owner) -> Result<(), ConnectorError> {
        let message = self
            .eos()?
            .store
            .owner_message(owner)
            .map_err(state_error)?;
        self.begin()?;
        let topic: Arc<str> = Arc::from(self.eos()?.store.topic());
        self.produce(
            &topic,
            Some(0),
            Some(&message.0),
            message.1.as_deref(),
            None,
            Arc::new(MessageTag {
                batch: None,
                dead_letter: None,
            }),
        )
        .await?;
        self.deliver_transaction().await?;
        self.commit_transaction().await
    }

    /// Begins a transaction unless one is open.
    pub(super) fn begin(&mut self) -> Result<(), ConnectorError> {
        if self.eos()?.is_open() {
            return Ok(());
        }
        let producer = Arc::clone(self.producer()?);
        producer.begin_transaction().map_err(|e| {
            ConnectorError::retryable(format!("kafka sink: beginning a transaction failed: {e}"))
        })?;
        self.eos()?.open_since = Some(Instant::now());
        Ok(())
    }

    /// The checkpoints committed in the state topic, read after the older
    /// instances were fenced.
    pub(super) async fn eos_stored_checkpoints(
        &mut self,
    ) -> Result<Vec<(String, Checkpoint)>, ConnectorError> {
        self.ready().await?;
        let all = self.eos()?.store.load_all().await.map_err(state_error)?;
        Ok(all.into_iter().map(|c| (c.stream, c.checkpoint)).collect())
    }

    /// One transaction: the records written since the last one, the
    /// checkpoints, the consumer offsets; committed.
    pub(super) async fn eos_flush(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
        group_offsets: &[GroupOffsets],
    ) -> Result<(), ConnectorError> {
        self.ready().await?;
        if self.eos()?.committing.is_some() {
            return self.finish_commit().await;
        }
        if checkpoints.is_empty() && !self.eos()?.is_open() {
            return Ok(());
        }
        self.begin()?;
        // The checkpoints join the records still in flight: one wait for
        // both (they are in one transaction, their order does not matter).
        let staged = self
            .eos()?
            .store
            .stage(checkpoints)
            .await
            .map_err(state_error)?;
        let topic: Arc<str> = Arc::from(self.eos()?.store.topic());
        let tag = Arc::new(MessageTag {
            batch: None,
            dead_letter: None,
        });
        for (key, value) in &staged.messages {
            self.produce(
                &topic,
                Some(0),
                Some(key),
                value.as_deref(),
                None,
                Arc::clone(&tag),
            )
            .await?;
        }
        let flushing = Instant::now();
        self.deliver_transaction().await?;
        self.send_offsets(group_offsets).await?;
        self.eos()?.committing = Some(staged);
        let committing = Instant::now();
        let opened = self.eos()?.open_since;
        self.finish_commit().await?;
        // Where a flush's time goes, for tuning flush_interval and
        // flush_records against the cost of a commit.
        tracing::debug!(
            connector = %self.connector,
            deliver_ms = (committing - flushing).as_secs_f64() * 1e3,
            commit_ms = committing.elapsed().as_secs_f64() * 1e3,
            open_ms = opened.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3),
            "kafka sink: transaction committed"
        );
        Ok(())
    }

    /// `commit_transaction`, then the store learns the new checkpoints.
    async fn finish_commit(&mut self) -> Result<(), ConnectorError> {
        self.commit_transaction().await?;
        if let Some(staged) = self.eos()?.committing.take() {
            self.eos()?.store.applied(staged).await;
        }
        Ok(())
    }

    async fn commit_transaction(&mut self) -> Result<(), ConnectorError> {
        let producer = Arc::clone(self.producer()?);
        let timeout = self.eos()?.transaction_timeout;
        let commit = move || {
            settle_delivery_reports(producer.as_ref(), timeout);
            producer.commit_transaction(timeout)
        };
        match blocking(commit).await? {
            Ok(()) => {
                self.eos()?.open_since = None;
                self.unacked = false;
                Ok(())
            }
            Err(e) => Err(self.failed("committing the transaction", &e).await),
        }
    }

    /// Commits each group's offsets inside the transaction.
    async fn send_offsets(&mut self, group_offsets: &[GroupOffsets]) -> Result<(), ConnectorError> {
        let mut by_group: HashMap<&str, TopicPartitionList> = HashMap::new();
        for g in group_offsets {
            let tpl = by_group.entry(g.group.as_str()).or_default();
            for (p, o) in &g.partitions {
                tpl.add_partition_offset(&g.topic, *p, Offset::Offset(*o))
                    .map_err(|e| ConnectorError::fatal(format!("kafka sink: {e}")))?;
            }
        }
        for (group, tpl) in by_group {
            let metadata = {
                let brokers = self.config.brokers.joined();
                let eos = self.eos()?;
                if !eos.groups.contains_key(group) {
                    let consumer: BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", brokers)
                        .set("group.id", group)
                        .create()
                        .map_err(|e| ConnectorError::fatal(format!("kafka sink: {e}")))?;
                    eos.groups.insert(group.to_string(), consumer);
                }
                eos.groups[group].group_metadata().ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "kafka sink: no group metadata for group `{group}`"
                    ))
                })?
            };
            let producer = Arc::clone(self.producer()?);
            let timeout = self.eos()?.transaction_timeout;
            let r =
                blocking(move || producer.send_offsets_to_transaction(&tpl, &metadata, timeout))
                    .await?;
            if let Err(e) = r {
                let what = format!("committing the offsets of group `{group}` in the transaction");
                return Err(self.failed(&what, &e).await);
            }
        }
        Ok(())
    }

    /// Waits until every message of the open transaction is delivered.
    /// Records refused before sending (larger than `message.max.bytes`)
    /// follow the bad-record policy as without transactions; any failed
    /// delivery dooms the transaction (librdkafka makes it abortable).
    async fn deliver_transaction(&mut self) -> Result<(), ConnectorError> {
        loop {
            let failed = self.send_and_wait().await?;
            if failed.is_empty() {
                if self.resend.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let mut delivery_failure = None;
            for f in failed {
                if f.refused && super::is_bad_record(&f.error) {
                    self.reject(f)?;
                } else {
                    delivery_failure.get_or_insert_with(|| f.error.to_string());
                }
            }
            if let Some(reason) = delivery_failure {
                return Err(self
                    .give_up(format!(
                        "a record of the transaction was not delivered: {reason}"
                    ))
                    .await);
            }
        }
    }

    /// The error for a failed transactional call, after giving the
    /// transaction up unless the call can simply be retried.
    async fn failed(&mut self, what: &str, e: &KafkaError) -> ConnectorError {
        match classify(what, e) {
            TxnFailure::Retry(message) => ConnectorError::retryable(format!(
                "kafka sink: {message} (retried; the transaction stays open)"
            )),
            TxnFailure::GiveUp(message) => self.give_up(message).await,
        }
    }

    /// Drops the transaction and its producer; the runtime reads again from
    /// the committed checkpoints, unless another instance took over.
    pub(super) async fn give_up(&mut self, reason: String) -> ConnectorError {
        let age = self
            .eos
            .as_ref()
            .and_then(|e| e.open_since)
            .map(|t| t.elapsed());
        if let Some(producer) = self.producer.clone() {
            // Best effort: a fenced producer cannot abort, the broker does.
            let _ = blocking(move || producer.abort_transaction(ABORT_TIMEOUT)).await;
        }
        self.drop_producer();
        let Some(eos) = self.eos.as_mut() else {
            return ConnectorError::fatal(reason);
        };
        eos.ready = false;
        eos.open_since = None;
        eos.committing = None;
        let mine = eos.owner.take();
        let timeout = eos.transaction_timeout;
        let id = eos.transactional_id.clone();
        match eos.store.latest_owner().await {
            Ok(Some(latest)) if mine.as_ref().is_some_and(|m| m.instance != latest.instance) => {
                tracing::error!(connector = %self.connector, transactional_id = %id, other = %latest.describe(), "kafka sink: fenced by another instance of the connector");
                ConnectorError::fatal(format!(
                    "kafka sink: fenced by another instance of connector `{}` ({}): the transactional id `{id}` is that instance's now. This instance stops; its open transaction is aborted, none of its uncommitted records become visible ({reason})",
                    self.connector,
                    latest.describe()
                ))
            }
            owner => {
                if let Err(e) = owner {
                    tracing::warn!(connector = %self.connector, error = %e, "kafka sink: cannot read the owner record after a failed transaction");
                }
                let age =
                    age.map_or_else(|| "-".to_string(), |a| format!("{:.1}s", a.as_secs_f64()));
                tracing::warn!(connector = %self.connector, transactional_id = %id, open_for = %age, transaction_timeout_s = timeout.as_secs(), reason = %reason, "kafka sink: transaction aborted; reading again from the last committed checkpoints");
                ConnectorError::aborted(format!(
                    "kafka sink: the transaction was aborted after {age} open (transaction_timeout = {}s): {reason}; its records are read again from the last committed checkpoints",
                    timeout.as_secs()
                ))
            }
        }
    }

    /// Aborts an open transaction at shutdown: it holds records whose
    /// checkpoint was not committed, which the next run reads again.
    pub(super) async fn eos_close(&mut self) -> Result<(), ConnectorError> {
        if self.eos.as_ref().is_some_and(Eos::is_open) {
            if let Some(producer) = self.producer.clone() {
                let r = blocking(move || producer.abort_transaction(ABORT_TIMEOUT)).await?;
                if let Err(e) = r {
                    tracing::warn!(connector = %self.connector, error = %e, "kafka sink: aborting the open transaction at shutdown failed; the broker aborts it");
                }
            }
        }
        self.drop_producer();
        Ok(())
    }
}

/// A transactional store reading the state topic of `url` for `connector`.
pub(super) fn open_store(url: &str, connector: &str) -> Result<KafkaStore, String> {
    KafkaStore::open(url, connector)
        .map(KafkaStore::transactional)
        .map_err(|e| e.to_string())
}
