//! Running one connector: a task per stream feeding one sink task through a
//! bounded channel.
//!
//! ```text
//! stream task (per stream) ──batch──► bounded channel ──► sink task
//!   schedule, open, poll,                                  write, flush (= ack),
//!   retry, bad-record policy,                              then state.commit(checkpoints)
//!   transform                     ◄── committed checkpoint ─┘ (reader.committed)
//! ```
//!
//! Checkpoints travel only with their batches and are committed only by the
//! sink task after the sink's flush returned: invariant 1 holds by
//! construction. The flush is `sink.flush_with_checkpoints`, so a sink that
//! stores checkpoints in its own transaction (PostgreSQL, exactly-once) gets
//! them there first; at startup such a sink's stored checkpoints win over the
//! state store's, which may lag by one commit after a crash.

use crate::clock::Clock;
use crate::dead_letter::DeadLetterFile;
use crate::handle::{ConnectorHandle, ConnectorPhase};
use crate::transform::Transform;
use crate::RuntimeError;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tributary_config::{BadRecordPolicy, ConnectorConfig};
use tributary_core::backoff;
use tributary_core::{
    BadRecord, BatchInfo, Checkpoint, CheckpointSummary, ConnectorError, GroupOffsets, LoadMode,
    Poll, Record, RunProgress, Schedule, Sink, Source, StreamReader, StreamSpec,
};
use tributary_metrics::{
    ConnectorEvent, ConnectorStats, Registry, RetryReason, StreamEvent, StreamStats, StreamStatus,
};
use tributary_state::StateStore;

/// What a connector is made of; built by the CLI from a [`ConnectorConfig`].
pub struct ConnectorParts {
    pub config: ConnectorConfig,
    pub source: Arc<dyn Source>,
    pub sink: Box<dyn Sink>,
    pub state: Arc<dyn StateStore>,
}

/// What the runtime shares across connectors.
#[derive(Clone)]
pub struct RuntimeEnv {
    pub clock: Arc<dyn Clock>,
    pub metrics: Registry,
    /// Cancelled on SIGINT/SIGTERM: streams stop polling, the sink drains.
    pub shutdown: CancellationToken,
}

/// How a finished connector ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub connector: String,
    /// Records acknowledged by the sink and covered by a commit, per stream.
    pub committed: BTreeMap<String, u64>,
    /// Bad records written to the dead-letter file, per stream (this run).
    pub dead_letters: BTreeMap<String, u64>,
    /// True when the run ended because shutdown was requested.
    pub interrupted: bool,
}

/// A batch on its way from a stream task to the sink task.
struct Envelope {
    stream: usize,
    load_mode: LoadMode,
    ingested_at: DateTime<Utc>,
    records: Vec<Record>,
    dead_letters: Vec<BadRecord>,
    checkpoint: Checkpoint,
    /// Flush and commit at once: a stream that ended waits for its last
    /// checkpoint's commit, so its reader can acknowledge upstream before it
    /// closes (a Kafka group offset, an MQTT PUBACK).
    flush_now: bool,
}

enum StreamEnd {
    Finished,
    Cancelled,
}

/// Runs a connector until every stream finished (run-once schedules), a
/// fatal error, or shutdown. Committed progress is never lost in any case.
pub async fn run_connector(
    parts: ConnectorParts,
    env: RuntimeEnv,
) -> Result<RunSummary, RuntimeError> {
    let handle = ConnectorHandle::new(&parts, &env);
    run_connector_with(parts, env, handle).await
}

/// [`run_connector`] with a handle made beforehand
/// ([`ConnectorHandle::new`]), through which the admin server watches the
/// connector and can stop it alone.
pub async fn run_connector_with(
    parts: ConnectorParts,
    env: RuntimeEnv,
    handle: Arc<ConnectorHandle>,
) -> Result<RunSummary, RuntimeError> {
    handle.set_phase(ConnectorPhase::Starting);
    handle.set_config_document(parts.config.document.clone());
    let result = run(parts, env, &handle).await;
    handle.set_phase(match &result {
        Ok(_) => ConnectorPhase::Stopped,
        Err(e) => ConnectorPhase::Failed {
            reason: tributary_core::secret::redact(&e.to_string()),
        },
    });
    result
}

/// How one attempt at running a connector ended.
enum Attempt {
    Done(Result<RunSummary, RuntimeError>),
    /// The sink gave up its transaction ([`ConnectorError::Aborted`]):
    /// everything since the last commit is gone, and the connector starts
    /// over from its committed checkpoints with the same sink.
    Rewind {
        sink: Box<dyn Sink>,
        committed: BTreeMap<String, u64>,
        error: ConnectorError,
    },
}

/// Runs attempts until one is done. A rewind is retried like any transient
/// failure: up to `max_retries` in a row that commit nothing, with backoff.
async fn run(
    parts: ConnectorParts,
    env: RuntimeEnv,
    handle: &ConnectorHandle,
) -> Result<RunSummary, RuntimeError> {
    let ConnectorParts {
        config,
        source,
        mut sink,
        state,
    } = parts;
    let config = Arc::new(config);
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    let mut rewinds = 0u32;
    loop {
        let attempt = run_attempt(
            config.clone(),
            source.clone(),
            sink,
            state.clone(),
            &env,
            handle,
        )
        .await;
        match attempt {
            Attempt::Done(result) => {
                return result.map(|mut summary| {
                    for (stream, n) in committed {
                        *summary.committed.entry(stream).or_default() += n;
                    }
                    summary
                })
            }
            Attempt::Rewind {
                sink: returned,
                committed: progress,
                error,
            } => {
                if progress.values().any(|n| *n > 0) {
                    rewinds = 0;
                }
                for (stream, n) in progress {
                    *committed.entry(stream).or_default() += n;
                }
                rewinds += 1;
                if rewinds > config.runtime.max_retries {
                    return Err(RuntimeError::Sink {
                        connector: config.name.clone(),
                        source: error,
                    });
                }
                let wait = backoff::delay(
                    rewinds,
                    config.runtime.backoff_initial,
                    config.runtime.backoff_max,
                );
                warn!(connector = %config.name, error = %error, attempt = rewinds, ?wait, "the sink's transaction was aborted; every stream starts again from its committed checkpoint");
                let stop = handle.stop_token();
                tokio::select! {
                    _ = stop.cancelled() => {
                        return Ok(RunSummary {
                            connector: config.name.clone(),
                            committed,
                            dead_letters: BTreeMap::new(),
                            interrupted: true,
                        })
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                sink = returned;
            }
        }
    }
}

/// One run of the connector, from claiming its state to the sink's last
/// commit.
async fn run_attempt(
    config: Arc<ConnectorConfig>,
    source: Arc<dyn Source>,
    mut sink: Box<dyn Sink>,
    state: Arc<dyn StateStore>,
    env: &RuntimeEnv,
    handle: &ConnectorHandle,
) -> Attempt {
    macro_rules! done {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Attempt::Done(Err(e)),
            }
        };
    }
    let name = config.name.clone();
    // A child of the handle's token: a failing stream cancels this one to
    // stop its siblings, without that looking like an operator's stop.
    let stop = handle.stop_token().child_token();
    let connector_stats = handle.stats().clone();

    // Ownership first: a second instance must stop before it reads anything.
    let mut attempt = 0;
    loop {
        match state.claim().await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && attempt < config.runtime.max_retries => {
                attempt += 1;
                let wait = backoff::delay(
                    attempt,
                    config.runtime.backoff_initial,
                    config.runtime.backoff_max,
                );
                warn!(connector = %name, error = %e, ?wait, "claiming the state store failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => {
                        return Attempt::Done(Ok(RunSummary::interrupted(name)))
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(source) => {
                return Attempt::Done(Err(RuntimeError::State {
                    connector: name,
                    source,
                }))
            }
        }
    }

    let streams = done!(discover_with_retries(&config, source.as_ref(), &stop).await);
    let Some(streams) = streams else {
        return Attempt::Done(Ok(RunSummary::interrupted(name)));
    };
    let offered: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    if let Err(e) = config.check_stream_overrides(&offered) {
        return Attempt::Done(Err(RuntimeError::Config {
            connector: name,
            message: e.to_string(),
        }));
    }

    let sink_streams = config.sink_streams(&streams);
    sink.set_streams(&[sink_streams.clone(), source.routed_targets()].concat());
    let targets = sink_streams.into_iter().map(|s| s.target).collect();
    let Some(mut in_sink) =
        done!(sink_checkpoints_with_retries(&config, sink.as_mut(), &stop).await)
    else {
        return Attempt::Done(Ok(RunSummary::interrupted(name)));
    };
    // The sink's transactions write the state topic: nothing to copy there.
    let sink_holds_state = sink.checkpoints_in_state_store();

    let (tx, rx) = mpsc::channel::<Envelope>(config.runtime.channel_capacity.max(1));
    let mut commit_watchers = Vec::new();
    let mut stream_tasks = JoinSet::new();
    let mut stats = Vec::new();
    let mut last_committed = Vec::new();
    // Sink checkpoints the state store lags behind: copied into it below.
    let mut catch_up = Vec::new();
    // Committed checkpoints are summarized (status, cursor lag) by the sink
    // task, once per commit rather than once per batch.
    let specs = streams.clone();
    for (index, spec) in streams.into_iter().enumerate() {
        let st = env.metrics.stream(&name, &spec.name);
        st.record(StreamEvent::Started {
            at: env.clock.now(),
        });
        let stored = done!(state
            .load(&spec.name)
            .await
            .map_err(|source| RuntimeError::State {
                connector: name.clone(),
                source,
            }))
        .map(|c| {
            st.record(StreamEvent::Restored {
                advanced_at: c.advanced_at,
                committed_at: c.committed_at,
                summary: summarize(source.as_ref(), &spec, &c.checkpoint),
                stuck_reason: c.checkpoint.stuck_reason().map(str::to_string),
            });
            c.checkpoint
        });
        // The sink's checkpoint committed with its data: authoritative.
        let position = match in_sink.remove(&spec.name) {
            Some(from_sink) => {
                if stored.as_ref() != Some(&from_sink) {
                    info!(connector = %name, stream = %spec.name, "resuming from the checkpoint the sink committed with its data (the state store's is older)");
                    catch_up.push((spec.name.clone(), from_sink.clone()));
                }
                Some(from_sink)
            }
            None => stored,
        };
        stats.push((spec.name.clone(), st.clone()));
        last_committed.push(position.clone());
        let (commit_tx, commit_rx) = watch::channel(None);
        commit_watchers.push(commit_tx);
        let stuck = position
            .as_ref()
            .and_then(|p| p.stuck_reason().map(str::to_string));
        let task = StreamTask {
            stuck,
            failed: false,
            index,
            transform: Transform::new(&spec.name, &config.metadata),
            schedule: config.schedule_for(&spec.name).clone(),
            spec,
            position,
            config: config.clone(),
            source: source.clone(),
            tx: tx.clone(),
            commits: commit_rx,
            commit_undelivered: false,
            clock: env.clock.clone(),
            stats: st,
            stop: stop.clone(),
        };
        stream_tasks.spawn(task.run());
    }
    drop(tx);
    if !catch_up.is_empty() && !sink_holds_state {
        // So that `tributary state` shows where the streams really resume.
        done!(state
            .commit(&catch_up)
            .await
            .map_err(|source| RuntimeError::State {
                connector: name.clone(),
                source,
            }));
    }

    let sink_task = tokio::spawn(
        SinkTask {
            connector: name.clone(),
            config: config.clone(),
            sink,
            state,
            dead_letters: DeadLetterFile::new(config.bad_records.dead_letter_path.clone()),
            commit_watchers,
            streams: stats.clone(),
            targets,
            source: source.clone(),
            specs,
            last_committed,
            connector_stats,
            stop: stop.clone(),
            clock: env.clock.clone(),
        }
        .run(rx),
    );
    handle.set_phase(ConnectorPhase::Running);

    // A stream that fails stops alone, as a failed task in Kafka Connect
    // does not stop its siblings: the others keep reading and committing.
    let mut failures = Vec::new();
    while let Some(joined) = stream_tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(RuntimeError::Internal {
                connector: name.clone(),
                message: format!("stream task panicked: {e}"),
            })
        });
        if let Err(e) = result {
            failures.push(e);
        }
    }
    let (sink_result, committed) = match sink_task.await {
        Ok(SinkOutcome {
            sink,
            committed,
            result,
        }) => match result {
            Err(RuntimeError::Sink {
                source: error @ ConnectorError::Aborted { .. },
                ..
            }) if failures.is_empty() && !handle.stop_token().is_cancelled() => {
                let committed = stats
                    .iter()
                    .zip(committed)
                    .map(|((n, _), c)| (n.clone(), c))
                    .collect();
                return Attempt::Rewind {
                    sink,
                    committed,
                    error,
                };
            }
            // Shutting down anyway: the next run reads the aborted records again.
            Err(RuntimeError::Sink {
                source: ConnectorError::Aborted { .. },
                ..
            }) if failures.is_empty() => (Ok(()), committed),
            other => (other, committed),
        },
        Err(e) => (
            Err(RuntimeError::Internal {
                connector: name.clone(),
                message: format!("sink task panicked: {e}"),
            }),
            Vec::new(),
        ),
    };
    if let Err(e) = source.close().await {
        warn!(connector = %name, error = %e, "closing the source failed");
    }
    done!(sink_result);
    if failures.len() > 1 {
        return Attempt::Done(Err(RuntimeError::StreamsFailed {
            connector: name,
            failures: failures.iter().map(ToString::to_string).collect(),
        }));
    }
    if let Some(e) = failures.pop() {
        return Attempt::Done(Err(e));
    }
    Attempt::Done(Ok(RunSummary {
        connector: name,
        dead_letters: stats
            .iter()
            .map(|(n, s)| (n.clone(), s.dead_letters()))
            .collect(),
        committed: stats
            .iter()
            .zip(committed)
            .map(|((n, _), c)| (n.clone(), c))
            .collect(),
        interrupted: handle.stop_token().is_cancelled(),
    }))
}

impl RunSummary {
    fn interrupted(connector: String) -> RunSummary {
        RunSummary {
            connector,
            committed: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            interrupted: true,
        }
    }
}

/// Streams of the source; `None` if shutdown came first.
async fn discover_with_retries(
    config: &ConnectorConfig,
    source: &dyn Source,
    stop: &CancellationToken,
) -> Result<Option<Vec<StreamSpec>>, RuntimeError> {
    let mut attempt = 0;
    loop {
        match source.discover().await {
            Ok(s) => return Ok(Some(s)),
            Err(e @ ConnectorError::Retryable { .. }) if attempt < config.runtime.max_retries => {
                attempt += 1;
                let wait = retry_wait(&e, attempt, config);
                warn!(connector = %config.name, error = %e, ?wait, "discovering streams failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                return Err(RuntimeError::Source {
                    connector: config.name.clone(),
                    stream: "*".into(),
                    source: e,
                })
            }
        }
    }
}

/// The checkpoints the sink stored with its data, by stream; `None` if
/// shutdown came first.
async fn sink_checkpoints_with_retries(
    config: &ConnectorConfig,
    sink: &mut dyn Sink,
    stop: &CancellationToken,
) -> Result<Option<BTreeMap<String, Checkpoint>>, RuntimeError> {
    let mut attempt = 0;
    loop {
        match sink.stored_checkpoints().await {
            Ok(list) => return Ok(Some(list.into_iter().collect())),
            Err(e @ ConnectorError::Retryable { .. }) if attempt < config.runtime.max_retries => {
                attempt += 1;
                let wait = retry_wait(&e, attempt, config);
                warn!(connector = %config.name, error = %e, ?wait, "reading the sink's checkpoints failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(source) => {
                return Err(RuntimeError::Sink {
                    connector: config.name.clone(),
                    source,
                })
            }
        }
    }
}

/// A server's `Retry-After` is honoured up to `runtime.max_retry_after`
/// (documented in docs/configuration.md): past it, the next attempt asks
/// again rather than sleeping on a value that may be a server's mistake.
fn retry_wait(e: &ConnectorError, attempt: u32, config: &ConnectorConfig) -> Duration {
    match e {
        ConnectorError::Retryable {
            retry_after: Some(d),
            ..
        } => (*d).min(config.runtime.max_retry_after),
        _ => backoff::delay(
            attempt,
            config.runtime.backoff_initial,
            config.runtime.backoff_max,
        ),
    }
}

/// The source's summary of a checkpoint; for sources that give no position,
/// the checkpoint itself, compact, cut short and with registered secrets masked.
fn summarize(source: &dyn Source, spec: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
    const MAX: usize = 160;
    let mut summary = source.summarize(spec, checkpoint);
    if summary.position.is_none() {
        let mut text = tributary_core::secret::redact(&checkpoint.as_json().to_string());
        if text.len() > MAX {
            let cut = (0..=MAX - 3)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("...");
        }
        summary.position = Some(text);
    }
    summary
}
/// How long a push source's reader waits for the sink's last commit after a shutdown.
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(30);

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

struct StreamTask {
    index: usize,
    spec: StreamSpec,
    transform: Transform,
    schedule: Schedule,
    /// The checkpoint after the last batch handed to the sink: where the next
    /// read starts. Equal to the committed checkpoint at start-up.
    position: Option<Checkpoint>,
    config: Arc<ConnectorConfig>,
    source: Arc<dyn Source>,
    tx: mpsc::Sender<Envelope>,
    commits: watch::Receiver<Option<Checkpoint>>,
    /// A wait was woken by a commit: `changed()` marked it seen, so
    /// `has_changed` no longer reports it, yet the reader has not been told.
    commit_undelivered: bool,
    clock: Arc<dyn Clock>,
    stats: Arc<StreamStats>,
    stop: CancellationToken,
    /// The stuck mark of the last checkpoint handed over
    /// ([`Checkpoint::stuck_reason`]), to log when it appears or goes; the
    /// stats keep it visible from its commit until the stream advances.
    stuck: Option<String>,
    /// A run ended with an error: logged once when the stream recovers.
    failed: bool,
}

impl StreamTask {
    /// Follows the stuck mark of each checkpoint handed to the sink.
    fn note_stuck(&mut self, checkpoint: &Checkpoint) {
        let now = checkpoint.stuck_reason();
        if now == self.stuck.as_deref() {
            return;
        }
        match now {
            Some(reason) => {
                warn!(connector = %self.config.name, stream = %self.spec.name, reason, "stream is stuck: it cannot make progress on its own; other streams go on")
            }
            None => {
                info!(connector = %self.config.name, stream = %self.spec.name, "stream is no longer stuck")
            }
        }
        self.stuck = now.map(str::to_string);
    }

    async fn run(mut self) -> Result<(), RuntimeError> {
        let result = self.run_schedule().await;
        let status = match &result {
            Ok(StreamEnd::Finished) => match &self.stuck {
                Some(reason) => StreamStatus::Stuck {
                    reason: reason.clone(),
                },
                None => StreamStatus::Finished,
            },
            Ok(StreamEnd::Cancelled) => match self.stats.status() {
                s @ StreamStatus::Scheduled { .. } => s,
                _ => StreamStatus::Idle,
            },
            Err(e) => StreamStatus::Failed {
                reason: tributary_core::secret::redact(&e.to_string()),
            },
        };
        self.stats.record(StreamEvent::Status(status));
        result.map(|_| ())
    }

    async fn run_schedule(&mut self) -> Result<StreamEnd, RuntimeError> {
        let mut next_run = match &self.schedule {
            Schedule::Cron(_) => self.first_cron_run(),
            Schedule::Once | Schedule::Interval(_) => Some(self.clock.now()),
        };
        while let Some(at) = next_run {
            if at > self.clock.now() {
                self.stats
                    .record(StreamEvent::Status(StreamStatus::Scheduled {
                        next_run: at,
                    }));
                tokio::select! {
                    _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                    _ = self.clock.sleep_until(at) => {}
                }
            }
            let started = self.clock.now();
            info!(connector = %self.config.name, stream = %self.spec.name, "run started");
            match self.run_once().await {
                Ok(StreamEnd::Cancelled) => return Ok(StreamEnd::Cancelled),
                Ok(StreamEnd::Finished) => {}
                // A run-once stream ends failed; a scheduled one stays
                // failed (sticky) and tries again at its next run.
                Err(e) if matches!(self.schedule, Schedule::Once) => {
                    self.fail(&e);
                    return Err(e);
                }
                Err(e) => {
                    self.fail(&e);
                    warn!(connector = %self.config.name, stream = %self.spec.name, "the stream tries again at its next scheduled run; the other streams go on");
                }
            }
            next_run = self.schedule.next_run(started, self.clock.now());
        }
        Ok(StreamEnd::Finished)
    }

    /// Marks the stream failed (sticky until it advances) and says why.
    fn fail(&mut self, e: &RuntimeError) {
        let reason = tributary_core::secret::redact(&e.to_string());
        tracing::error!(connector = %self.config.name, stream = %self.spec.name, error = %reason, "stream failed; the other streams of the connector go on");
        self.failed = true;
        self.stats.record(StreamEvent::Failed {
            reason,
            at: self.clock.now(),
        });
    }

    /// A stream that never ran starts at once (its initial load), so does one
    /// whose last run was cut short or missed a fire time while the process
    /// was down (gap recovery); otherwise it waits for the next fire time.
    fn first_cron_run(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let Some(position) = &self.position else {
            return Some(now);
        };
        match self.source.run_progress(&self.spec, position) {
            RunProgress::InProgress => Some(now),
            RunProgress::CompletedAt(last) => self.schedule.next_after(last).map(|t| t.max(now)),
            RunProgress::Unknown => self.schedule.next_after(now),
        }
    }

    /// One run: read until the source says it is caught up, reopening the
    /// reader from the last handed-off position after retryable errors.
    async fn run_once(&mut self) -> Result<StreamEnd, RuntimeError> {
        let mut attempt = 0u32;
        loop {
            self.stats
                .record(StreamEvent::Status(StreamStatus::Running));
            let opened = tokio::select! {
                _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                r = self.source.open(&self.spec, self.position.clone()) => r,
            };
            let outcome = match opened {
                Ok(mut reader) => {
                    let r = self.read(reader.as_mut(), &mut attempt).await;
                    if matches!(r, Ok(StreamEnd::Cancelled)) && reader.commits_interrupt_poll() {
                        self.deliver_final_commit(reader.as_mut()).await;
                    }
                    if let Err(e) = reader.close().await {
                        warn!(connector = %self.config.name, stream = %self.spec.name, error = %e, "closing the reader failed");
                    }
                    r
                }
                Err(e) => Err(e),
            };
            let error = match outcome {
                Ok(end) => return Ok(end),
                Err(e) => e,
            };
            match error {
                ConnectorError::Retryable { .. }
                    if attempt < self.config.runtime.source_retries() =>
                {
                    attempt += 1;
                    let wait = retry_wait(&error, attempt, &self.config);
                    warn!(connector = %self.config.name, stream = %self.spec.name, attempt, error = %error, ?wait, "retryable error; reopening from the last position");
                    let reason = match &error {
                        ConnectorError::Retryable {
                            retry_after: Some(_),
                            ..
                        } => RetryReason::Throttled,
                        _ => RetryReason::SourceError,
                    };
                    self.stats.record(StreamEvent::Retry {
                        reason,
                        message: error.to_string(),
                        at: self.clock.now(),
                    });
                    self.stats
                        .record(StreamEvent::Status(StreamStatus::Retrying {
                            attempt,
                            reason: error.to_string(),
                        }));
                    tokio::select! {
                        _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                ConnectorError::Retryable { .. } => {
                    return Err(RuntimeError::RetriesExhausted {
                        connector: self.config.name.clone(),
                        stream: self.spec.name.clone(),
                        attempts: attempt,
                        last: error,
                    })
                }
                other => {
                    return Err(RuntimeError::Source {
                        connector: self.config.name.clone(),
                        stream: self.spec.name.clone(),
                        source: other,
                    })
                }
            }
        }
    }

    /// Polls one reader until End, an error, or shutdown. Source errors are
    /// returned as `Err(ConnectorError)` for `run_once` to classify; the
    /// bad-record policy `fail` is turned into a fatal error here.
    async fn read(
        &mut self,
        reader: &mut dyn StreamReader,
        attempt: &mut u32,
    ) -> Result<StreamEnd, ConnectorError> {
        let interruptible = reader.commits_interrupt_poll();
        let records_are_progress = reader.records_are_progress();
        loop {
            self.deliver_commits(reader).await?;
            let poll_started = Instant::now();
            let polled = tokio::select! {
                _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                p = reader.poll() => p?,
                // `changed` marks the commit seen: remember it is undelivered.
                Ok(()) = self.commits.changed(), if interruptible => {
                    self.commit_undelivered = true;
                    continue;
                }
            };
            let poll = poll_started.elapsed();
            match polled {
                Poll::Batch(mut batch) => {
                    // Anything handed over that moves the position is
                    // progress (records, a committed job id, an empty
                    // interval, a window advanced) and resets the retry
                    // budget; so are bad records (a page given up on and
                    // handed to the policy moved the position past it). API
                    // sources hand over an empty batch recording a failure
                    // (`retry_count`) before returning it: only its attempt
                    // keys changed, which is no progress. Records and
                    // bad records alone are none either for a reader whose
                    // records count only once a later checkpoint covers
                    // them: they are read again after a crash (a bridge's
                    // child that dies between STATEs, every time, would
                    // otherwise be restarted forever).
                    let handed_over = !batch.records.is_empty() || !batch.bad_records.is_empty();
                    if (handed_over && records_are_progress)
                        || tributary_core::checkpoint::advanced(
                            self.position.as_ref(),
                            &batch.checkpoint,
                        )
                    {
                        *attempt = 0;
                        if std::mem::take(&mut self.failed) {
                            info!(connector = %self.config.name, stream = %self.spec.name, "the stream advances again");
                        }
                    }
                    let dead_letters = self.apply_policy(&mut batch.bad_records)?;
                    let bytes = batch.records.iter().map(|r| r.value.json_len()).sum();
                    let now = self.clock.now();
                    self.transform
                        .apply(&mut batch.records, batch.load_mode, now);
                    self.stats.record(StreamEvent::BatchRead {
                        records: batch.records.len() as u64,
                        bytes,
                        poll,
                    });
                    self.note_stuck(&batch.checkpoint);
                    let envelope = Envelope {
                        stream: self.index,
                        load_mode: batch.load_mode,
                        ingested_at: now,
                        records: batch.records,
                        dead_letters,
                        checkpoint: batch.checkpoint.clone(),
                        flush_now: false,
                    };
                    tokio::select! {
                        _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                        sent = self.tx.send(envelope) => {
                            if sent.is_err() {
                                // The sink task is gone: it failed and will report why.
                                return Ok(StreamEnd::Cancelled);
                            }
                        }
                    }
                    self.position = Some(batch.checkpoint);
                }
                Poll::Idle => {
                    self.stats.record(StreamEvent::RunCompleted {
                        at: self.clock.now(),
                    });
                    self.stats.record(StreamEvent::Status(StreamStatus::Idle));
                    let wait = self.config.runtime.poll_interval;
                    tokio::select! {
                        _ = self.stop.cancelled() => return Ok(StreamEnd::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                        Ok(()) = self.commits.changed() => self.commit_undelivered = true,
                    }
                    self.stats
                        .record(StreamEvent::Status(StreamStatus::Running));
                }
                Poll::End => {
                    self.deliver_commits(reader).await?;
                    self.await_last_commit(reader).await?;
                    // A run that ended waiting on outside work (an async
                    // job past its wait) is no success.
                    let cut_short = self.position.as_ref().is_some_and(|p| {
                        self.source.run_progress(&self.spec, p) == RunProgress::InProgress
                    });
                    if !cut_short {
                        self.stats.record(StreamEvent::RunCompleted {
                            at: self.clock.now(),
                        });
                    }
                    return Ok(StreamEnd::Finished);
                }
            }
        }
    }

    /// After a shutdown the sink flushes and commits once more as it drains.
    /// A push source acknowledges upstream only what was committed, so its
    /// reader stays open for that last commit; otherwise a clean stop would
    /// leave the broker to re-deliver the last flush's messages. The sink
    /// finishes once every stream task let go of its sender: this one does
    /// so first.
    async fn deliver_final_commit(&mut self, reader: &mut dyn StreamReader) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, closed));
        let deadline = tokio::time::Instant::now() + FINAL_COMMIT_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.commits.changed()).await {
                Ok(Ok(())) => {
                    self.commit_undelivered = true;
                    if let Err(e) = self.deliver_commits(reader).await {
                        warn!(connector = %self.config.name, stream = %self.spec.name, error = %e, "acknowledging the last commit failed");
                        return;
                    }
                }
                // The sink task ended (its last commit, if any, was seen above) or took too long.
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// At the end of a run: asks the sink task to flush now and waits until
    /// the last handed-over checkpoint is committed, then tells the reader.
    /// Without this the reader would close before its last batch was
    /// acknowledged, and a push source could never acknowledge it upstream.
    async fn await_last_commit(
        &mut self,
        reader: &mut dyn StreamReader,
    ) -> Result<(), ConnectorError> {
        let Some(position) = self.position.clone() else {
            return Ok(());
        };
        if self.commits.borrow().as_ref() == Some(&position) {
            return Ok(());
        }
        let request = Envelope {
            stream: self.index,
            load_mode: LoadMode::Incremental,
            ingested_at: self.clock.now(),
            records: Vec::new(),
            dead_letters: Vec::new(),
            checkpoint: position.clone(),
            flush_now: true,
        };
        tokio::select! {
            _ = self.stop.cancelled() => return Ok(()),
            sent = self.tx.send(request) => {
                if sent.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                changed = self.commits.changed() => {
                    if changed.is_err() {
                        // The sink task is gone: it failed and will report why.
                        return Ok(());
                    }
                }
            }
            let committed = self.commits.borrow_and_update().clone();
            if let Some(cp) = committed {
                reader.committed(&cp).await?;
                if cp == position {
                    return Ok(());
                }
            }
        }
    }

    async fn deliver_commits(
        &mut self,
        reader: &mut dyn StreamReader,
    ) -> Result<(), ConnectorError> {
        if self.commit_undelivered || self.commits.has_changed().unwrap_or(false) {
            self.commit_undelivered = false;
            let committed = self.commits.borrow_and_update().clone();
            if let Some(cp) = committed {
                reader.committed(&cp).await?;
            }
        }
        Ok(())
    }

    /// Applies the bad-record policy; returns the records to dead-letter.
    fn apply_policy(&self, bad: &mut Vec<BadRecord>) -> Result<Vec<BadRecord>, ConnectorError> {
        if bad.is_empty() {
            return Ok(Vec::new());
        }
        match self.config.bad_records.policy {
            BadRecordPolicy::Fail => {
                self.stats.record(StreamEvent::BadRecord { policy: "fail" });
                let b = &bad[0];
                Err(ConnectorError::fatal(format!(
                    "bad record at {}: {} (bad-record policy is `fail`; set [bad_records] policy = \"skip\" or \"dead_letter\" to continue past it)",
                    b.location, b.error
                )))
            }
            BadRecordPolicy::Skip => {
                for b in bad.iter() {
                    warn!(connector = %self.config.name, stream = %self.spec.name, location = %b.location, error = %b.error, "skipped bad record");
                    self.stats.record(StreamEvent::BadRecord { policy: "skip" });
                }
                Ok(Vec::new())
            }
            BadRecordPolicy::DeadLetter => {
                for _ in bad.iter() {
                    self.stats.record(StreamEvent::BadRecord {
                        policy: "dead_letter",
                    });
                }
                Ok(std::mem::take(bad))
            }
        }
    }
}

struct SinkTask {
    connector: String,
    config: Arc<ConnectorConfig>,
    sink: Box<dyn Sink>,
    state: Arc<dyn StateStore>,
    dead_letters: DeadLetterFile,
    commit_watchers: Vec<watch::Sender<Option<Checkpoint>>>,
    /// Name (the state key) and stats of each stream, by stream index.
    streams: Vec<(String, Arc<StreamStats>)>,
    /// Where each stream's records go unless they name their own target.
    targets: Vec<String>,
    /// Summarizes each committed checkpoint, with the spec of its stream (by index).
    source: Arc<dyn Source>,
    specs: Vec<StreamSpec>,
    /// The last committed checkpoint of each stream, by stream index: a
    /// commit that changes it is an advance (freshness, checkpoint age).
    last_committed: Vec<Option<Checkpoint>>,
    connector_stats: Arc<ConnectorStats>,
    stop: CancellationToken,
    clock: Arc<dyn Clock>,
}

/// Checkpoints handed over since the last commit, per stream.
#[derive(Default)]
struct Pending {
    checkpoints: BTreeMap<usize, (Checkpoint, u64)>,
    records: usize,
}

/// What the sink task hands back: the sink (a rewind runs on with it), the
/// records committed per stream (by stream index) and how it ended.
struct SinkOutcome {
    sink: Box<dyn Sink>,
    committed: Vec<u64>,
    result: Result<(), RuntimeError>,
}

impl SinkTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Envelope>) -> SinkOutcome {
        let mut committed = vec![0u64; self.streams.len()];
        let mut result = self.drive(&mut rx, &mut committed).await;
        if result.is_err() {
            // Stop the streams; nothing more will be acknowledged.
            self.stop.cancel();
            rx.close();
        } else if let Err(e) = self.sink.close().await {
            result = Err(RuntimeError::Sink {
                connector: self.connector.clone(),
                source: e,
            });
        }
        SinkOutcome {
            sink: self.sink,
            committed,
            result,
        }
    }

    async fn drive(
        &mut self,
        rx: &mut mpsc::Receiver<Envelope>,
        committed: &mut [u64],
    ) -> Result<(), RuntimeError> {
        let mut pending = Pending::default();
        let mut flush_deadline: Option<tokio::time::Instant> = None;
        loop {
            let received = match flush_deadline {
                Some(deadline) => tokio::select! {
                    m = rx.recv() => Some(m),
                    _ = tokio::time::sleep_until(deadline) => None,
                },
                None => Some(rx.recv().await),
            };
            match received {
                // The flush interval passed.
                None => {
                    self.flush_and_commit(&mut pending, committed).await?;
                    flush_deadline = None;
                }
                // Every stream task ended: drain done.
                Some(None) => {
                    self.flush_and_commit(&mut pending, committed).await?;
                    return Ok(());
                }
                Some(Some(envelope)) => {
                    self.write(&envelope).await?;
                    let n = envelope.records.len();
                    match pending.checkpoints.entry(envelope.stream) {
                        Entry::Occupied(mut e) => {
                            let (checkpoint, records) = e.get_mut();
                            *checkpoint = envelope.checkpoint;
                            *records += n as u64;
                        }
                        Entry::Vacant(e) => {
                            e.insert((envelope.checkpoint, n as u64));
                        }
                    }
                    pending.records += n;
                    if envelope.flush_now || pending.records >= self.config.runtime.flush_records {
                        self.flush_and_commit(&mut pending, committed).await?;
                        flush_deadline = None;
                    } else if flush_deadline.is_none() {
                        flush_deadline =
                            Some(tokio::time::Instant::now() + self.config.runtime.flush_interval);
                    }
                }
            }
        }
    }

    async fn write(&mut self, envelope: &Envelope) -> Result<(), RuntimeError> {
        if !envelope.dead_letters.is_empty() {
            let at = timestamp(self.clock.now());
            let (stream_name, stats) = &self.streams[envelope.stream];
            self.dead_letters
                .append(&self.connector, stream_name, &envelope.dead_letters, &at)
                .map_err(|e| self.dead_letter_error(e))?;
            warn!(
                connector = %self.connector,
                stream = %stream_name,
                count = envelope.dead_letters.len(),
                total = stats.dead_letters(),
                path = %self.dead_letters.path().display(),
                first = %envelope.dead_letters[0].location,
                "bad records written to the dead-letter file"
            );
        }
        if envelope.records.is_empty() {
            return Ok(());
        }
        // Cloned (once per batch) so that retrying can borrow `self`.
        let stream_name = self.streams[envelope.stream].0.clone();
        let target = self.targets[envelope.stream].clone();
        let info = BatchInfo {
            stream: &stream_name,
            target: &target,
            load_mode: envelope.load_mode,
            ingested_at: envelope.ingested_at,
        };
        let mut attempt = 0;
        let started = Instant::now();
        loop {
            match self.sink.write_batch(info, &envelope.records).await {
                Ok(()) => break,
                Err(e) => {
                    self.retry_or_fail(e, &mut attempt, Some(envelope.stream))
                        .await?
                }
            }
        }
        // A record that names its own target goes there; the rest to the stream's.
        let mut last: Option<&str> = None;
        for r in &envelope.records {
            let t = r.target.as_deref().unwrap_or(&target);
            if last != Some(t) {
                self.connector_stats.wrote_to(t);
                last = Some(t);
            }
        }
        self.streams[envelope.stream]
            .1
            .record(StreamEvent::RecordsWritten {
                records: envelope.records.len() as u64,
                took: started.elapsed(),
            });
        Ok(())
    }

    fn dead_letter_error(&self, e: std::io::Error) -> RuntimeError {
        RuntimeError::DeadLetter {
            connector: self.connector.clone(),
            path: self.dead_letters.path().display().to_string(),
            message: e.to_string(),
        }
    }

    async fn retry_or_fail(
        &mut self,
        e: ConnectorError,
        attempt: &mut u32,
        // The stream whose batch failed, or `None` for a flush of all of them.
        stream: Option<usize>,
    ) -> Result<(), RuntimeError> {
        if matches!(e, ConnectorError::Retryable { .. })
            && *attempt < self.config.runtime.max_retries
        {
            *attempt += 1;
            let wait = retry_wait(&e, *attempt, &self.config);
            warn!(connector = %self.connector, error = %e, attempt = *attempt, ?wait, "sink error; retrying");
            if let Some((_, s)) = stream.and_then(|i| self.streams.get(i)) {
                s.record(StreamEvent::Retry {
                    reason: RetryReason::SinkError,
                    message: e.to_string(),
                    at: self.clock.now(),
                });
            }
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(RuntimeError::Sink {
            connector: self.connector.clone(),
            source: e,
        })
    }

    /// The acknowledgement point: flush the sink (durable delivery, with the
    /// checkpoints when the sink stores them), make the dead letters durable,
    /// then commit every stream's latest checkpoint in one atomic state write.
    async fn flush_and_commit(
        &mut self,
        pending: &mut Pending,
        committed: &mut [u64],
    ) -> Result<(), RuntimeError> {
        if pending.checkpoints.is_empty() {
            return Ok(());
        }
        let batch: Vec<(String, Checkpoint)> = pending
            .checkpoints
            .iter()
            .map(|(i, (c, _))| (self.streams[*i].0.clone(), c.clone()))
            .collect();
        // A Kafka source's consumer offsets, for a sink that commits them
        // in its transaction (Kafka -> Kafka exactly-once).
        let group_offsets: Vec<GroupOffsets> = pending
            .checkpoints
            .iter()
            .filter_map(|(i, (c, _))| self.source.group_offsets(&self.specs[*i], c))
            .collect();
        let mut attempt = 0;
        let started = Instant::now();
        loop {
            // A sink that stores the checkpoints with its data (exactly-once)
            // makes them authoritative here; the state store copy follows.
            match self
                .sink
                .flush_with_checkpoints(&batch, &group_offsets)
                .await
            {
                Ok(_) => break,
                Err(e) => self.retry_or_fail(e, &mut attempt, None).await?,
            }
        }
        self.connector_stats.record(ConnectorEvent::SinkFlushed {
            took: started.elapsed(),
        });
        self.dead_letters
            .sync()
            .map_err(|e| self.dead_letter_error(e))?;
        let mut attempt = 0;
        // The sink's transaction wrote them into the state topic already.
        while !self.sink.checkpoints_in_state_store() {
            match self.state.commit(&batch).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < self.config.runtime.max_retries => {
                    attempt += 1;
                    warn!(connector = %self.connector, error = %e, "committing checkpoints failed; retrying");
                    tokio::time::sleep(backoff::delay(
                        attempt,
                        self.config.runtime.backoff_initial,
                        self.config.runtime.backoff_max,
                    ))
                    .await;
                }
                Err(source) => {
                    return Err(RuntimeError::State {
                        connector: self.connector.clone(),
                        source,
                    })
                }
            }
        }
        let now = self.clock.now();
        for (index, (checkpoint, records)) in std::mem::take(&mut pending.checkpoints) {
            committed[index] += records;
            let summary = summarize(self.source.as_ref(), &self.specs[index], &checkpoint);
            let advanced = records > 0
                || tributary_core::checkpoint::advanced(
                    self.last_committed[index].as_ref(),
                    &checkpoint,
                );
            self.streams[index].1.record(StreamEvent::Committed {
                records,
                at: now,
                advanced,
                summary,
                stuck_reason: checkpoint.stuck_reason().map(str::to_string),
            });
            self.last_committed[index] = Some(checkpoint.clone());
            self.commit_watchers[index].send_replace(Some(checkpoint));
        }
        pending.records = 0;
        Ok(())
    }
}
