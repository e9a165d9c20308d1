//! The status of every connector and stream as one JSON document
//! (`GET /status`), read by the status page and by `tributary status`,
//! which prints it with [`table`]: one shape, three views.
//!
//! Everything here comes from counters, times and source summaries; no
//! config value is copied in, so no credential can reach it.

use super::AdminState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_metrics::{
    human_duration, RetryReason, StreamSnapshot, StreamState, StreamStatus, Trouble,
};
use tributary_runtime::{ConnectorHandle, ConnectorPhase};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// "Now" on the runtime's clock: ages and lags are measured to it.
    pub now: DateTime<Utc>,
    /// The tributary version serving this.
    #[serde(default)]
    pub version: String,
    /// Seconds since the process started.
    #[serde(default)]
    pub uptime_seconds: u64,
    pub connectors: Vec<ConnectorView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorView {
    pub name: String,
    pub source: String,
    pub sink: String,
    #[serde(flatten)]
    pub phase: ConnectorPhase,
    pub max_staleness_seconds: Option<u64>,
    /// API responses by status code (`timeout`, `connect`: none arrived).
    pub http_responses: BTreeMap<String, u64>,
    pub rate_limit_waits: u64,
    pub streams: Vec<StreamView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamView {
    pub name: String,
    /// running | retrying | idle | stale | stuck | failed | finished.
    pub state: StreamState,
    /// What it is doing in detail (scheduled, retrying, ...).
    pub status: StreamStatus,
    /// Why it is stuck: stale checkpoint or the source's own reason.
    pub stuck_reason: Option<String>,
    /// The error that failed it, while it is failed (until it advances).
    #[serde(default)]
    pub failed_reason: Option<String>,
    pub records_read: u64,
    pub records_committed: u64,
    pub bytes_read: u64,
    /// Records written per second over the last few seconds.
    pub records_per_second: f64,
    pub batches: u64,
    pub commits: u64,
    pub retries: u64,
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    pub bad_records: u64,
    /// Bad records written to the dead-letter file.
    #[serde(default)]
    pub dead_letters: u64,
    pub last_error: Option<String>,
    /// When `last_error` happened.
    #[serde(default)]
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_commit_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_advanced_at: Option<DateTime<Utc>>,
    /// Seconds since the committed checkpoint last changed.
    pub checkpoint_age_seconds: Option<u64>,
    /// Now minus the datetime cursor.
    pub cursor_lag_seconds: Option<u64>,
    pub next_run: Option<DateTime<Utc>>,
    pub cursor: Option<DateTime<Utc>>,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// The checkpoint in words (or compact, for sources that give none).
    pub position: Option<String>,
}

pub fn connector_view(c: &ConnectorHandle, now: DateTime<Utc>, rates: &Rates) -> ConnectorView {
    let stats = c.stats().snapshot(c.name());
    ConnectorView {
        name: c.name().to_string(),
        source: c.source_type().to_string(),
        sink: c.sink_type().to_string(),
        phase: c.phase(),
        max_staleness_seconds: c.max_staleness().map(|d| d.as_secs()),
        http_responses: stats.http_responses,
        rate_limit_waits: stats.rate_limit_waits,
        streams: c
            .streams()
            .iter()
            .map(|s| stream_view(s, now, rates.get(&s.connector, &s.stream)))
            .collect(),
    }
}

fn stream_view(s: &StreamSnapshot, now: DateTime<Utc>, rate: f64) -> StreamView {
    let failed_at = match &s.trouble {
        Some(Trouble::Failed { at, .. }) => Some(*at),
        _ => None,
    };
    let (last_error, last_error_at) = match (&s.status, s.failed_reason()) {
        (StreamStatus::Retrying { reason, .. }, _) => (Some(reason.clone()), s.last_retry_at),
        (_, Some(reason)) => (Some(reason.to_string()), failed_at.or(s.last_retry_at)),
        _ => (s.last_retry_reason.clone(), s.last_retry_at),
    };
    let redact = |e: &str| tributary_core::secret::redact(e);
    StreamView {
        name: s.stream.clone(),
        state: s.state(now),
        status: s.status.clone(),
        stuck_reason: s.stuck_reason(now),
        failed_reason: s.failed_reason().map(redact),
        records_read: s.records_read,
        records_committed: s.records_committed,
        bytes_read: s.bytes_read,
        records_per_second: rate,
        batches: s.batches,
        commits: s.commits,
        retries: s.retries,
        retries_by_reason: s.retries_by_reason.clone(),
        bad_records: s.bad_records(),
        dead_letters: s.bad_records_dead_lettered,
        last_error: last_error.map(|e| redact(&e)),
        last_error_at,
        last_commit_at: s.last_commit_at,
        last_success_at: s.last_success_at,
        last_advanced_at: s.last_advanced_at,
        checkpoint_age_seconds: s.checkpoint_age(now).map(|d| d.as_secs()),
        cursor_lag_seconds: s.cursor_lag(now).map(|d| d.as_secs()),
        next_run: match &s.status {
            StreamStatus::Scheduled { next_run } => Some(*next_run),
            _ => None,
        },
        cursor: s.summary.cursor,
        window_start: s.summary.window_start,
        window_end: s.summary.window_end,
        position: s.summary.position.clone(),
    }
}

pub fn status_view(state: &AdminState) -> StatusView {
    let now = state.clock.now();
    StatusView {
        now,
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs(),
        connectors: state
            .connectors
            .list()
            .iter()
            .map(|c| connector_view(c, now, &state.rates))
            .collect(),
    }
}

/// Recent records-written samples per stream, for a throughput that
/// follows the stream's current pace rather than its lifetime average.
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<HashMap<(String, String), Samples>>,
}

/// `(when, records written by then)`, oldest first.
type Samples = VecDeque<(Instant, u64)>;

/// Samples kept per stream: the rate is measured over about this many seconds.
const RATE_WINDOW: usize = 5;

impl Rates {
    fn sample(&self, streams: &[StreamSnapshot]) {
        let now = Instant::now();
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for s in streams {
            let q = all
                .entry((s.connector.clone(), s.stream.clone()))
                .or_default();
            q.push_back((now, s.records_written));
            while q.len() > RATE_WINDOW + 1 {
                q.pop_front();
            }
        }
    }

    pub fn get(&self, connector: &str, stream: &str) -> f64 {
        let all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = all.get(&(connector.to_string(), stream.to_string())) else {
            return 0.0;
        };
        match (q.front(), q.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / (*t1 - *t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

pub fn spawn_rate_sampler(state: Arc<AdminState>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => state.rates.sample(&state.metrics.snapshot()),
            }
        }
    });
}

fn age(seconds: Option<u64>) -> String {
    seconds.map_or("-".into(), |s| human_duration(Duration::from_secs(s)))
}

/// What a person reads in the DETAIL column: why it failed or is stuck,
/// else where it is.
fn detail(s: &StreamView) -> String {
    if let Some(r) = &s.failed_reason {
        return format!("failed: {r}");
    }
    if let Some(r) = &s.stuck_reason {
        return r.clone();
    }
    match &s.status {
        StreamStatus::Retrying { attempt, reason } => format!("retry #{attempt}: {reason}"),
        _ => s.position.clone().unwrap_or_default(),
    }
}

impl StatusView {
    /// `connector/stream` of every failed, stuck or stale stream.
    pub fn troubled(&self) -> Vec<String> {
        self.connectors
            .iter()
            .flat_map(|c| {
                c.streams
                    .iter()
                    .filter(|s| s.state.is_trouble())
                    .map(move |s| format!("{}/{} ({})", c.name, s.name, s.state.as_str()))
            })
            .collect()
    }
}

/// The status as a terminal table, one line per stream, in the status page's columns.
pub fn table(view: &StatusView) -> String {
    let mut rows = vec![[
        "STREAM".to_string(),
        "STATE".into(),
        "RECORDS".into(),
        "RATE".into(),
        "AGE".into(),
        "LAG".into(),
        "NEXT RUN".into(),
        "ERRORS".into(),
        "DEAD".into(),
        "DETAIL".into(),
    ]];
    for c in &view.connectors {
        for s in &c.streams {
            rows.push([
                format!("{}/{}", c.name, s.name),
                s.state.as_str().to_string(),
                s.records_committed.to_string(),
                format!("{:.0}/s", s.records_per_second),
                age(s.checkpoint_age_seconds),
                age(s.cursor_lag_seconds),
                s.next_run.map_or("-".into(), |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
                (s.retries + s.bad_records).to_string(),
                s.dead_letters.to_string(),
                detail(s),
            ]);
        }
    }
    let mut widths = [0usize; 10];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for c in &view.connectors {
        let phase = match &c.phase {
            ConnectorPhase::Failed { reason } => format!("failed: {reason}"),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v["phase"].as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        out.push_str(&format!(
            "connector `{}` ({} → {}): {phase}\n",
            c.name, c.source, c.sink
        ));
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == r.len() - 1 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
