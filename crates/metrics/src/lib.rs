//! Everything tributary measures, defined once: the typed events the runtime
//! ([`StreamEvent`]) and sources and sinks ([`ConnectorEvent`]) report, the
//! counters they update, and the views read from them (the progress line,
//! the admin server's status JSON, `/health`, and, with the `prometheus`
//! feature, the Prometheus exporter in [`prometheus`]).
//!
//! Counters are plain atomics so the hot path (one update per batch) costs a
//! few nanoseconds and readers never block writers. Sources get a
//! [`ConnectorStats`] handle and report events on it; they never see the
//! exporter, which reads the same counters at scrape time.

mod histogram;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
pub use tributary_core::CheckpointSummary;

/// Everything the runtime reports about a stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// The connector started this stream: freshness of a stream that never
    /// committed is measured from here.
    Started {
        at: DateTime<Utc>,
    },
    /// The stream resumes from a stored checkpoint: its age carries over a
    /// restart, and so does a stuck mark its source committed.
    Restored {
        advanced_at: DateTime<Utc>,
        committed_at: DateTime<Utc>,
        summary: CheckpointSummary,
        stuck_reason: Option<String>,
    },
    /// A batch of `records` (`bytes` of record JSON as the source produced
    /// it, before metadata fields) left the source after a poll that took `poll`.
    BatchRead {
        records: u64,
        bytes: u64,
        poll: Duration,
    },
    /// Records were handed to the sink, which took `took` to accept them.
    RecordsWritten {
        records: u64,
        took: Duration,
    },
    /// A checkpoint covering `records` more records was committed;
    /// `advanced` when its position moved (not only its attempt counters,
    /// see `Checkpoint::same_position`); `stuck_reason` when its source
    /// marked it stuck. An advance clears a failure or stuck mark; nothing
    /// else does, so those stay visible while the stream retries.
    Committed {
        records: u64,
        at: DateTime<Utc>,
        advanced: bool,
        summary: CheckpointSummary,
        stuck_reason: Option<String>,
    },
    /// A run caught up (the source said "end" or went idle): the last success.
    RunCompleted {
        at: DateTime<Utc>,
    },
    /// A run of the stream ended with an error its retries did not get
    /// past. Sticky: the stream shows `failed` until it advances again.
    Failed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// A malformed input was handled under `policy` (`skip`, `dead_letter`, `fail`).
    BadRecord {
        policy: &'static str,
    },
    /// A retryable error; the operation will be tried again.
    Retry {
        reason: RetryReason,
        message: String,
        at: DateTime<Utc>,
    },
    Status(StreamStatus),
}

/// Why a stream retried: few values, so it can be a Prometheus label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryReason {
    /// The source failed (network, timeout, 5xx, malformed page).
    SourceError,
    /// The source's server asked to wait (`Retry-After`, usually 429/503).
    Throttled,
    /// Writing to or flushing the sink failed.
    SinkError,
}

impl RetryReason {
    pub const ALL: [RetryReason; 3] = [
        RetryReason::SourceError,
        RetryReason::Throttled,
        RetryReason::SinkError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::SourceError => "source_error",
            RetryReason::Throttled => "throttled",
            RetryReason::SinkError => "sink_error",
        }
    }
}

/// What a stream is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamStatus {
    #[default]
    Starting,
    /// Reading data.
    Running,
    /// Caught up; polling for more (tailed files, push sources).
    Idle,
    /// Waiting for its next scheduled run.
    Scheduled { next_run: DateTime<Utc> },
    /// Backing off after a retryable error.
    Retrying { attempt: u32, reason: String },
    /// Done: a run-once stream that caught up.
    Finished,
    /// Stopped by an error (a run-once stream, or at shutdown).
    Failed { reason: String },
    /// Ended its run marked stuck by its source.
    Stuck { reason: String },
}

/// Why a stream needs a person, whatever it is doing meanwhile: kept until
/// its position really advances, so a stream that keeps retrying never
/// flaps back to "running" between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trouble {
    /// Its source marked it stuck (e.g. a report run that failed N times
    /// in a row); other streams keep running.
    Stuck { reason: String },
    /// A run ended with an error its retries did not get past; a
    /// long-running connector tries again at the next scheduled run.
    Failed { reason: String, at: DateTime<Utc> },
}

/// Events about a connector as a whole: its HTTP client and its sink, which
/// streams share.
#[derive(Debug, Clone)]
pub enum ConnectorEvent {
    /// An HTTP response arrived with this status.
    HttpResponse { status: u16 },
    /// An HTTP request got no response (`timeout`, `connect`).
    HttpFailure { reason: &'static str },
    /// A request waited this long for the connector's rate limiter.
    RateLimitWait { waited: Duration },
    /// The sink's flush (its durable acknowledgement) took this long.
    SinkFlushed { took: Duration },
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connector's shared counters; also the handle sources report on
/// (`SourceContext::metrics`). `Default` is a handle attached to no
/// registry, for tests and tools that do not export metrics.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    http_responses: Mutex<BTreeMap<String, u64>>,
    rate_limit_waits: AtomicU64,
    rate_limit_wait_nanos: AtomicU64,
    sink_flush: Histogram,
    max_staleness: Mutex<Option<Duration>>,
    /// Every target (topic, table, file) the sink accepted records for,
    /// as Kafka Connect tracks a connector's active topics.
    targets: Mutex<BTreeSet<String>>,
}

/// A point-in-time copy of a connector's stats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorSnapshot {
    pub connector: String,
    /// Responses by status code (`"200"`, `"429"`) and failures without one
    /// (`"timeout"`, `"connect"`).
    pub http_responses: BTreeMap<String, u64>,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_seconds: f64,
    pub sink_flush: HistogramSnapshot,
    pub max_staleness_seconds: Option<u64>,
}

impl ConnectorStats {
    pub fn record(&self, event: ConnectorEvent) {
        match event {
            ConnectorEvent::HttpResponse { status } => {
                *lock(&self.http_responses)
                    .entry(status.to_string())
                    .or_default() += 1;
            }
            ConnectorEvent::HttpFailure { reason } => {
                *lock(&self.http_responses)
                    .entry(reason.to_string())
                    .or_default() += 1;
            }
            ConnectorEvent::RateLimitWait { waited } => {
                add(&self.rate_limit_waits, 1);
                add(
                    &self.rate_limit_wait_nanos,
                    u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
                );
            }
            ConnectorEvent::SinkFlushed { took } => self.sink_flush.observe(took),
        }
    }

    /// The connector's `runtime.max_staleness`, set when it starts, so
    /// every view judges freshness the same way.
    pub fn set_max_staleness(&self, max: Option<Duration>) {
        *lock(&self.max_staleness) = max;
    }

    pub fn max_staleness(&self) -> Option<Duration> {
        *lock(&self.max_staleness)
    }

    /// Notes that the sink accepted records for `target`.
    pub fn wrote_to(&self, target: &str) {
        let mut targets = lock(&self.targets);
        if !targets.contains(target) {
            targets.insert(target.to_string());
        }
    }

    /// The targets written to since the start or the last
    /// [`ConnectorStats::reset_targets`], sorted.
    pub fn targets(&self) -> Vec<String> {
        lock(&self.targets).iter().cloned().collect()
    }

    /// Forgets the targets written so far (Kafka Connect's
    /// `PUT /connectors/{name}/topics/reset`).
    pub fn reset_targets(&self) {
        lock(&self.targets).clear();
    }

    /// A copy of the counters, labelled with the connector's name.
    pub fn snapshot(&self, connector: &str) -> ConnectorSnapshot {
        ConnectorSnapshot {
            connector: connector.to_string(),
            http_responses: lock(&self.http_responses).clone(),
            rate_limit_waits: get(&self.rate_limit_waits),
            rate_limit_wait_seconds: get(&self.rate_limit_wait_nanos) as f64 / 1e9,
            sink_flush: self.sink_flush.snapshot(),
            max_staleness_seconds: self.max_staleness().map(|d| d.as_secs()),
        }
    }
}

#[derive(Debug, Default)]
pub struct StreamStats {
    records_read: AtomicU64,
    bytes_read: AtomicU64,
    records_written: AtomicU64,
    records_committed: AtomicU64,
    batches: AtomicU64,
    commits: AtomicU64,
    bad_skipped: AtomicU64,
    bad_dead_lettered: AtomicU64,
    bad_failed: AtomicU64,
    retries: [AtomicU64; RetryReason::ALL.len()],
    poll: Histogram,
    sink_write: Histogram,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default, Clone)]
struct Detail {
    status: StreamStatus,
    started_at: Option<DateTime<Utc>>,
    last_commit_at: Option<DateTime<Utc>>,
    last_advanced_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_retry_reason: Option<String>,
    last_retry_at: Option<DateTime<Utc>>,
    trouble: Option<Trouble>,
    summary: CheckpointSummary,
}

/// A point-in-time copy of a stream's stats.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamSnapshot {
    pub connector: String,
    pub stream: String,
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_written: u64,
    pub records_committed: u64,
    pub batches: u64,
    pub commits: u64,
    pub bad_records_skipped: u64,
    pub bad_records_dead_lettered: u64,
    pub bad_records_failed: u64,
    pub retries: u64,
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    pub poll_latency: HistogramSnapshot,
    pub sink_write_latency: HistogramSnapshot,
    pub status: StreamStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub last_commit_at: Option<DateTime<Utc>>,
    /// When the committed checkpoint last changed value.
    pub last_advanced_at: Option<DateTime<Utc>>,
    /// When a run last caught up.
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_retry_reason: Option<String>,
    pub last_retry_at: Option<DateTime<Utc>>,
    /// Failed or stuck, until the position advances.
    pub trouble: Option<Trouble>,
    pub summary: CheckpointSummary,
    /// The connector's `runtime.max_staleness`.
    pub max_staleness: Option<Duration>,
}

impl StreamStats {
    pub fn record(&self, event: StreamEvent) {
        match event {
            StreamEvent::Started { at } => self.detail().started_at = Some(at),
            StreamEvent::Restored {
                advanced_at,
                committed_at,
                summary,
                stuck_reason,
            } => {
                let mut d = self.detail();
                d.last_advanced_at = Some(advanced_at);
                d.last_commit_at = Some(committed_at);
                d.summary = summary;
                d.trouble = stuck_reason.map(|reason| Trouble::Stuck { reason });
            }
            StreamEvent::BatchRead {
                records,
                bytes,
                poll,
            } => {
                add(&self.records_read, records);
                add(&self.bytes_read, bytes);
                add(&self.batches, 1);
                self.poll.observe(poll);
            }
            StreamEvent::RecordsWritten { records, took } => {
                add(&self.records_written, records);
                self.sink_write.observe(took);
            }
            StreamEvent::Committed {
                records,
                at,
                advanced,
                summary,
                stuck_reason,
            } => {
                add(&self.records_committed, records);
                add(&self.commits, 1);
                let mut d = self.detail();
                d.last_commit_at = Some(at);
                if advanced || d.last_advanced_at.is_none() {
                    d.last_advanced_at = Some(at);
                }
                d.summary = summary;
                match stuck_reason {
                    Some(reason) => d.trouble = Some(Trouble::Stuck { reason }),
                    None if advanced => d.trouble = None,
                    None => {}
                }
            }
            StreamEvent::RunCompleted { at } => {
                let mut d = self.detail();
                // A run that ended while the stream is failed or stuck is no success.
                if d.trouble.is_none() {
                    d.last_success_at = Some(at);
                }
            }
            StreamEvent::Failed { reason, at } => {
                self.detail().trouble = Some(Trouble::Failed { reason, at })
            }
            StreamEvent::BadRecord { policy } => match policy {
                "skip" => add(&self.bad_skipped, 1),
                "dead_letter" => add(&self.bad_dead_lettered, 1),
                _ => add(&self.bad_failed, 1),
            },
            StreamEvent::Retry {
                reason,
                message,
                at,
            } => {
                let i = RetryReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or(0);
                add(&self.retries[i], 1);
                let mut d = self.detail();
                d.last_retry_reason = Some(message);
                d.last_retry_at = Some(at);
            }
            StreamEvent::Status(s) => self.detail().status = s,
        }
    }

    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        lock(&self.detail)
    }

    pub fn status(&self) -> StreamStatus {
        self.detail().status.clone()
    }

    pub fn records_written(&self) -> u64 {
        get(&self.records_written)
    }

    pub fn records_committed(&self) -> u64 {
        get(&self.records_committed)
    }

    pub fn dead_letters(&self) -> u64 {
        get(&self.bad_dead_lettered)
    }

    pub fn trouble(&self) -> Option<Trouble> {
        self.detail().trouble.clone()
    }

    fn snapshot(
        &self,
        connector: &str,
        stream: &str,
        max_staleness: Option<Duration>,
    ) -> StreamSnapshot {
        let d = self.detail().clone();
        let retries_by_reason: BTreeMap<RetryReason, u64> = RetryReason::ALL
            .iter()
            .zip(&self.retries)
            .map(|(r, n)| (*r, get(n)))
            .collect();
        StreamSnapshot {
            connector: connector.to_string(),
            stream: stream.to_string(),
            records_read: get(&self.records_read),
            bytes_read: get(&self.bytes_read),
            records_written: get(&self.records_written),
            records_committed: get(&self.records_committed),
            batches: get(&self.batches),
            commits: get(&self.commits),
            bad_records_skipped: get(&self.bad_skipped),
            bad_records_dead_lettered: get(&self.bad_dead_lettered),
            bad_records_failed: get(&self.bad_failed),
            retries: retries_by_reason.values().sum(),
            retries_by_reason,
            poll_latency: self.poll.snapshot(),
            sink_write_latency: self.sink_write.snapshot(),
            status: d.status,
            started_at: d.started_at,
            last_commit_at: d.last_commit_at,
            last_advanced_at: d.last_advanced_at,
            last_success_at: d.last_success_at,
            last_retry_reason: d.last_retry_reason,
            last_retry_at: d.last_retry_at,
            trouble: d.trouble,
            summary: d.summary,
            max_staleness,
        }
    }
}

/// The coarse state operators filter on: what the status page, `tributary
/// status` and the `tributary_stream_state` metric show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Starting or reading.
    Running,
    /// Backing off after a retryable error; the budget is not spent yet.
    Retrying,
    /// Caught up: waiting for data or for its next scheduled run.
    Idle,
    /// Its position has not advanced for longer than `max_staleness`.
    Stale,
    /// Marked stuck by its source, until it advances again.
    Stuck,
    /// A run ended with an error its retries did not get past, until it
    /// advances again.
    Failed,
    /// A run-once stream that caught up.
    Finished,
}

impl StreamState {
    pub const ALL: [StreamState; 7] = [
        StreamState::Running,
        StreamState::Retrying,
        StreamState::Idle,
        StreamState::Stale,
        StreamState::Stuck,
        StreamState::Failed,
        StreamState::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Running => "running",
            StreamState::Retrying => "retrying",
            StreamState::Idle => "idle",
            StreamState::Stale => "stale",
            StreamState::Stuck => "stuck",
            StreamState::Failed => "failed",
            StreamState::Finished => "finished",
        }
    }

    /// Failed, stuck and stale streams need a person: freshness probes
    /// answer 503 naming them and `tributary status` exits non-zero.
    pub fn is_trouble(self) -> bool {
        matches!(
            self,
            StreamState::Failed | StreamState::Stuck | StreamState::Stale
        )
    }
}

fn since(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

impl StreamSnapshot {
    /// Time since the committed checkpoint last changed; `None` before the first commit.
    pub fn checkpoint_age(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.last_advanced_at.map(|t| since(now, t))
    }

    /// "Now" minus the datetime cursor, for sources that have one.
    pub fn cursor_lag(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.summary.cursor.map(|t| since(now, t))
    }

    /// How long the stream has gone without progress, when that exceeds
    /// `max_staleness`. A stream that never committed is measured from its
    /// start, so an initial load that never gets anywhere is caught too.
    pub fn staleness(&self, now: DateTime<Utc>) -> Option<Duration> {
        let max = self.max_staleness?;
        let age = since(now, self.last_advanced_at.or(self.started_at)?);
        (age > max).then_some(age)
    }

    /// The coarse state, worst first: failed, stuck, stale, then what the
    /// stream is doing. Failed and stuck come from [`Trouble`], which only
    /// an advance clears, so they hold while the stream retries.
    pub fn state(&self, now: DateTime<Utc>) -> StreamState {
        match (&self.trouble, &self.status) {
            (Some(Trouble::Failed { .. }), _) | (None, StreamStatus::Failed { .. }) => {
                StreamState::Failed
            }
            (Some(Trouble::Stuck { .. }), _) | (None, StreamStatus::Stuck { .. }) => {
                StreamState::Stuck
            }
            _ if self.staleness(now).is_some() => StreamState::Stale,
            (_, StreamStatus::Retrying { .. }) => StreamState::Retrying,
            (_, StreamStatus::Finished) => StreamState::Finished,
            (_, StreamStatus::Idle | StreamStatus::Scheduled { .. }) => StreamState::Idle,
            (_, StreamStatus::Starting | StreamStatus::Running) => StreamState::Running,
        }
    }

    /// The error that failed the stream, while it is failed.
    pub fn failed_reason(&self) -> Option<&str> {
        match (&self.trouble, &self.status) {
            (Some(Trouble::Failed { reason, .. }), _) | (None, StreamStatus::Failed { reason }) => {
                Some(reason)
            }
            _ => None,
        }
    }

    /// Why the stream is stuck or stale, in words, when it is.
    pub fn stuck_reason(&self, now: DateTime<Utc>) -> Option<String> {
        match (&self.trouble, &self.status) {
            (Some(Trouble::Stuck { reason }), _) | (None, StreamStatus::Stuck { reason }) => {
                return Some(reason.clone())
            }
            _ => {}
        }
        let age = self.staleness(now)?;
        let max = self.max_staleness?;
        let what = if self.last_advanced_at.is_some() {
            "checkpoint has not advanced for"
        } else {
            "no checkpoint committed in"
        };
        Some(format!(
            "{what} {} (max_staleness {})",
            human_duration(age),
            human_duration(max)
        ))
    }

    pub fn bad_records(&self) -> u64 {
        self.bad_records_skipped + self.bad_records_dead_lettered + self.bad_records_failed
    }
}

/// `3d04h`, `2h05m`, `4m07s`, `12s`: two units at most, for people.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Stats by (connector, stream).
type StreamMap = BTreeMap<(String, String), Arc<StreamStats>>;

/// All streams of all connectors in this process.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    streams: Arc<RwLock<StreamMap>>,
    connectors: Arc<RwLock<BTreeMap<String, Arc<ConnectorStats>>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stats of a stream, created on first use.
    pub fn stream(&self, connector: &str, stream: &str) -> Arc<StreamStats> {
        let key = (connector.to_string(), stream.to_string());
        if let Some(s) = self.read().get(&key) {
            return s.clone();
        }
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    /// The stats (and the sources' metrics handle) of a connector, created on first use.
    pub fn connector(&self, connector: &str) -> Arc<ConnectorStats> {
        if let Some(c) = self
            .connectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(connector)
        {
            return c.clone();
        }
        let mut map = self.connectors.write().unwrap_or_else(|e| e.into_inner());
        map.entry(connector.to_string()).or_default().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StreamMap> {
        self.streams.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stream, ordered by connector then stream.
    pub fn snapshot(&self) -> Vec<StreamSnapshot> {
        let connectors = self.connectors.read().unwrap_or_else(|e| e.into_inner());
        self.read()
            .iter()
            .map(|((c, s), stats)| {
                let max = connectors.get(c).and_then(|c| c.max_staleness());
                stats.snapshot(c, s, max)
            })
            .collect()
    }

    /// Every connector that reported anything, ordered by name.
    pub fn connectors(&self) -> Vec<ConnectorSnapshot> {
        self.connectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, c)| c.snapshot(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn events_accumulate_per_stream() {
        let reg = Registry::new();
        let s = reg.stream("c", "users");
        s.record(StreamEvent::BatchRead {
            records: 10,
            bytes: 300,
            poll: Duration::from_millis(3),
        });
        s.record(StreamEvent::RecordsWritten {
            records: 10,
            took: Duration::from_millis(1),
        });
        s.record(StreamEvent::BadRecord { policy: "skip" });
        s.record(StreamEvent::BadRecord {
            policy: "dead_letter",
        });
        s.record(StreamEvent::Retry {
            reason: RetryReason::Throttled,
            message: "429".into(),
            at: Utc::now(),
        });
        s.record(StreamEvent::Status(StreamStatus::Running));
        let at = Utc::now();
        s.record(StreamEvent::Committed {
            records: 10,
            at,
            advanced: true,
            summary: CheckpointSummary::default(),
            stuck_reason: None,
        });
        // Same stream again returns the same counters.
        reg.stream("c", "users").record(StreamEvent::BatchRead {
            records: 5,
            bytes: 100,
            poll: Duration::from_millis(20),
        });
        let snap = reg.snapshot();
        assert_eq!(snap.len(), 1);
        let u = &snap[0];
        assert_eq!(
            (
                u.records_read,
                u.bytes_read,
                u.batches,
                u.records_written,
                u.records_committed
            ),
            (15, 400, 2, 10, 10)
        );
        assert_eq!(
            (
                u.bad_records_skipped,
                u.bad_records_dead_lettered,
                u.retries
            ),
            (1, 1, 1)
        );
        assert_eq!(u.retries_by_reason[&RetryReason::Throttled], 1);
        assert_eq!(u.retries_by_reason[&RetryReason::SourceError], 0);
        assert_eq!(u.poll_latency.count, 2);
        assert_eq!(u.status, StreamStatus::Running);
        assert_eq!(u.last_commit_at, Some(at));
        assert_eq!(u.last_advanced_at, Some(at));
        assert_eq!(u.last_retry_reason.as_deref(), Some("429"));
    }

    #[test]
    fn a_checkpoint_older_than_max_staleness_makes_the_stream_stale() {
        let reg = Registry::new();
        let s = reg.stream("c", "orders");
        s.record(StreamEvent::Started {
            at: t("2024-01-01T00:00:00Z"),
        });
        s.record(StreamEvent::Status(StreamStatus::Scheduled {
            next_run: t("2024-01-02T00:00:00Z"),
        }));
        let now = t("2024-01-01T03:00:00Z");
        // No max_staleness: never stale.
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Idle);

        reg.connector("c")
            .set_max_staleness(Some(Duration::from_secs(3600)));
        let snap = &reg.snapshot()[0];
        assert_eq!(snap.state(now), StreamState::Stale);
        assert_eq!(
            snap.stuck_reason(now).unwrap(),
            "no checkpoint committed in 3h00m (max_staleness 1h00m)"
        );

        // Restored from an old checkpoint, then a commit that did not move it.
        s.record(StreamEvent::Restored {
            advanced_at: t("2024-01-01T01:30:00Z"),
            committed_at: t("2024-01-01T01:30:00Z"),
            summary: CheckpointSummary {
                cursor: Some(t("2024-01-01T01:00:00Z")),
                ..Default::default()
            },
            stuck_reason: None,
        });
        s.record(StreamEvent::Committed {
            records: 0,
            at: t("2024-01-01T02:50:00Z"),
            advanced: false,
            summary: CheckpointSummary {
                cursor: Some(t("2024-01-01T01:00:00Z")),
                ..Default::default()
            },
            stuck_reason: None,
        });
        let snap = &reg.snapshot()[0];
        assert_eq!(snap.checkpoint_age(now), Some(Duration::from_secs(90 * 60)));
        assert_eq!(snap.cursor_lag(now), Some(Duration::from_secs(2 * 3600)));
        assert_eq!(
            snap.stuck_reason(now).unwrap(),
            "checkpoint has not advanced for 1h30m (max_staleness 1h00m)"
        );
        // It advances: fresh again.
        s.record(StreamEvent::Committed {
            records: 3,
            at: t("2024-01-01T02:59:00Z"),
            advanced: true,
            summary: CheckpointSummary::default(),
            stuck_reason: None,
        });
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Idle);
    }

    #[test]
    fn failed_and_stuck_hold_while_retrying_until_the_position_advances() {
        let reg = Registry::new();
        let s = reg.stream("c", "reports");
        let now = t("2024-01-01T03:00:00Z");
        let commit = |advanced: bool, stuck: Option<&str>| StreamEvent::Committed {
            records: 0,
            at: now,
            advanced,
            summary: CheckpointSummary::default(),
            stuck_reason: stuck.map(str::to_string),
        };
        s.record(StreamEvent::Failed {
            reason: "gave up after 3 retries".into(),
            at: now,
        });
        for status in [
            StreamStatus::Running,
            StreamStatus::Retrying {
                attempt: 1,
                reason: "503".into(),
            },
            StreamStatus::Scheduled { next_run: now },
        ] {
            s.record(StreamEvent::Status(status));
            let snap = &reg.snapshot()[0];
            assert_eq!(snap.state(now), StreamState::Failed);
            assert_eq!(snap.failed_reason(), Some("gave up after 3 retries"));
        }
        // A run that ends while failed is no success; a commit that only
        // rewrites attempt counters is no advance.
        s.record(StreamEvent::RunCompleted { at: now });
        s.record(commit(false, None));
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Failed);
        assert_eq!(reg.snapshot()[0].last_success_at, None);
        // Its source marks it stuck: stuck, also while it runs again.
        s.record(commit(false, Some("3 report runs failed in a row")));
        s.record(StreamEvent::Status(StreamStatus::Running));
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Stuck);
        s.record(commit(false, None));
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Stuck);
        // It advances: running again.
        s.record(commit(true, None));
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Running);
        assert_eq!(reg.snapshot()[0].trouble, None);
        s.record(StreamEvent::Status(StreamStatus::Retrying {
            attempt: 1,
            reason: "503".into(),
        }));
        assert_eq!(reg.snapshot()[0].state(now), StreamState::Retrying);
    }

    #[test]
    fn connector_events_count_statuses_and_waits() {
        let reg = Registry::new();
        let c = reg.connector("api");
        for status in [200, 200, 429] {
            c.record(ConnectorEvent::HttpResponse { status });
        }
        c.record(ConnectorEvent::HttpFailure { reason: "timeout" });
        c.record(ConnectorEvent::RateLimitWait {
            waited: Duration::from_millis(250),
        });
        let snap = &reg.connectors()[0];
        assert_eq!(
            snap.http_responses,
            BTreeMap::from([
                ("200".to_string(), 2),
                ("429".to_string(), 1),
                ("timeout".to_string(), 1)
            ])
        );
        assert_eq!(snap.rate_limit_waits, 1);
        assert!((snap.rate_limit_wait_seconds - 0.25).abs() < 1e-9);
    }
}
