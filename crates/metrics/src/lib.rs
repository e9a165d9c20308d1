//! Per-stream counters and status, updated by the runtime and read by the
//! progress line, `tributary state list` and health endpoints.
//!
//! Counters are plain atomics so the hot path (one update per batch) costs a
//! few nanoseconds and readers never block writers. Every observation the
//! runtime makes goes through [`StreamEvent`], so the set of things we
//! measure is defined in one place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Everything the runtime reports about a stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A batch of `records` left the source (after the bad-record policy).
    BatchRead {
        records: u64,
    },
    /// Records were handed to the sink.
    RecordsWritten {
        records: u64,
    },
    /// A checkpoint covering `records` more records was committed.
    Committed {
        records: u64,
        at: DateTime<Utc>,
    },
    /// A malformed input was handled under `policy` (`skip`, `dead_letter`, `fail`).
    BadRecord {
        policy: &'static str,
    },
    /// A retryable error; the operation will be tried again.
    Retry {
        reason: String,
    },
    Status(StreamStatus),
}

/// What a stream is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
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
    /// Stopped by a fatal error.
    Failed { reason: String },
    /// Cannot make progress on its own (e.g. a report run that failed N
    /// times in a row); an operator must look. Other streams keep running.
    Stuck { reason: String },
}

#[derive(Debug, Default)]
pub struct StreamStats {
    records_read: AtomicU64,
    records_written: AtomicU64,
    records_committed: AtomicU64,
    batches: AtomicU64,
    commits: AtomicU64,
    bad_skipped: AtomicU64,
    bad_dead_lettered: AtomicU64,
    bad_failed: AtomicU64,
    retries: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default, Clone)]
struct Detail {
    status: StreamStatus,
    last_commit_at: Option<DateTime<Utc>>,
    last_retry_reason: Option<String>,
}

/// A point-in-time copy of a stream's stats.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamSnapshot {
    pub connector: String,
    pub stream: String,
    pub records_read: u64,
    pub records_written: u64,
    pub records_committed: u64,
    pub batches: u64,
    pub commits: u64,
    pub bad_records_skipped: u64,
    pub bad_records_dead_lettered: u64,
    pub bad_records_failed: u64,
    pub retries: u64,
    pub status: StreamStatus,
    pub last_commit_at: Option<DateTime<Utc>>,
    pub last_retry_reason: Option<String>,
}

impl StreamStats {
    pub fn record(&self, event: StreamEvent) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        match event {
            StreamEvent::BatchRead { records } => {
                add(&self.records_read, records);
                add(&self.batches, 1);
            }
            StreamEvent::RecordsWritten { records } => add(&self.records_written, records),
            StreamEvent::Committed { records, at } => {
                add(&self.records_committed, records);
                add(&self.commits, 1);
                self.detail().last_commit_at = Some(at);
            }
            StreamEvent::BadRecord { policy } => match policy {
                "skip" => add(&self.bad_skipped, 1),
                "dead_letter" => add(&self.bad_dead_lettered, 1),
                _ => add(&self.bad_failed, 1),
            },
            StreamEvent::Retry { reason } => {
                add(&self.retries, 1);
                self.detail().last_retry_reason = Some(reason);
            }
            StreamEvent::Status(s) => self.detail().status = s,
        }
    }

    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> StreamStatus {
        self.detail().status.clone()
    }

    pub fn records_written(&self) -> u64 {
        self.records_written.load(Ordering::Relaxed)
    }

    fn snapshot(&self, connector: &str, stream: &str) -> StreamSnapshot {
        let d = self.detail().clone();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamSnapshot {
            connector: connector.to_string(),
            stream: stream.to_string(),
            records_read: get(&self.records_read),
            records_written: get(&self.records_written),
            records_committed: get(&self.records_committed),
            batches: get(&self.batches),
            commits: get(&self.commits),
            bad_records_skipped: get(&self.bad_skipped),
            bad_records_dead_lettered: get(&self.bad_dead_lettered),
            bad_records_failed: get(&self.bad_failed),
            retries: get(&self.retries),
            status: d.status,
            last_commit_at: d.last_commit_at,
            last_retry_reason: d.last_retry_reason,
        }
    }
}

/// Stats by (connector, stream).
type StreamMap = BTreeMap<(String, String), Arc<StreamStats>>;

/// All streams of all connectors in this process.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    streams: Arc<RwLock<StreamMap>>,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StreamMap> {
        self.streams.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stream, ordered by connector then stream.
    pub fn snapshot(&self) -> Vec<StreamSnapshot> {
        self.read()
            .iter()
            .map(|((c, s), stats)| stats.snapshot(c, s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_accumulate_per_stream() {
        let reg = Registry::new();
        let s = reg.stream("c", "users");
        s.record(StreamEvent::BatchRead { records: 10 });
        s.record(StreamEvent::RecordsWritten { records: 10 });
        s.record(StreamEvent::BadRecord { policy: "skip" });
        s.record(StreamEvent::BadRecord {
            policy: "dead_letter",
        });
        s.record(StreamEvent::Retry {
            reason: "timeout".into(),
        });
        s.record(StreamEvent::Status(StreamStatus::Running));
        let at = Utc::now();
        s.record(StreamEvent::Committed { records: 10, at });
        // Same stream again returns the same counters.
        reg.stream("c", "users")
            .record(StreamEvent::BatchRead { records: 5 });
        let snap = reg.snapshot();
        assert_eq!(snap.len(), 1);
        let u = &snap[0];
        assert_eq!(
            (
                u.records_read,
                u.batches,
                u.records_written,
                u.records_committed
            ),
            (15, 2, 10, 10)
        );
        assert_eq!(
            (
                u.bad_records_skipped,
                u.bad_records_dead_lettered,
                u.retries
            ),
            (1, 1, 1)
        );
        assert_eq!(u.status, StreamStatus::Running);
        assert_eq!(u.last_commit_at, Some(at));
        assert_eq!(u.last_retry_reason.as_deref(), Some("timeout"));
    }
}
