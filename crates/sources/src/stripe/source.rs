//! The `stripe_reporting` source: one stream per report type × timezone,
//! read in rounds. A round asks the report type how far data is available,
//! creates a report run for `[interval_start, data_available_end)`, hands
//! the run id over in a checkpoint (committed before any waiting), waits
//! for the run with backoff, downloads its CSV to a temporary file and
//! emits its rows, then advances the interval.
//!
//! What seed 004's connector got wrong, and what this one does instead:
//! - A wait longer than `max_wait` ended the poll with an exception and no
//!   offset: the same expired wait forever. Here the run id is already
//!   committed, the round simply ends, and the next round waits on the
//!   same run. A crash between creating the run and committing its id is
//!   covered by the `Idempotency-Key` the run is created with (derived from
//!   stream, interval and attempt, [`crate::async_job`]): the next round
//!   creates it again with the same key and Stripe answers the same run,
//!   never a foreign one with the same parameters.
//! - A failed run, a run or file that is gone (404: files expire) or a run
//!   an operator reset the stream away from is abandoned: listed in the
//!   checkpoint, never adopted again, and the next attempt gets a new key.
//!   After `max_consecutive_failures` in a row the checkpoint is marked
//!   stuck (`stuck_reason`), which every view shows, and the stream keeps
//!   trying once per scheduled round while the other streams go on.

use super::api::{from_unix, ReportRun, RunRequest, StripeApi};
use super::config::{StripeReportingConfig, DEFAULT_CRON};
use crate::async_job::{JobLedger, Verdict};
use crate::http::auth::{AuthConfig, Authenticator};
use crate::http::client::{ClientOptions, HttpClient, HttpError, HttpErrorKind};
use crate::SourceContext;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Seek;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};
use tributary_config::{ConfigError, ConnectorConfig, SectionConfig};
use tributary_core::{
    BadRecord, Batch, Checkpoint, CheckpointSummary, Clock, ConnectorError, LoadMode, Poll, Record,
    ResetPosition, RunProgress, Schedule, Source, StreamReader, StreamSpec,
};
use url::Url;

/// The longest wait between two attempts after failed runs.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(3600);

/// A stream's checkpoint. Field names follow seed 004's connector so an
/// operator who knew its offsets reads these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StripeCheckpoint {
    pub report_type: String,
    pub timezone: String,
    /// Everything before it was delivered; while a run is in progress, the
    /// start of its interval. Absent: the stream never ran (`start`, else
    /// `data_available_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_start: Option<DateTime<Utc>>,
    /// The end of the interval in progress, or of the last one delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_end: Option<DateTime<Utc>>,
    /// Completed rounds.
    #[serde(default)]
    pub round_id: u64,
    /// The report run being waited on or read; kept across rounds and
    /// restarts until its rows are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_report_run_id: Option<String>,
    /// Rows of that run's file already handed over (a restart skips them).
    #[serde(default)]
    pub rows_emitted: u64,
    /// Attempts, failures, the stuck mark and abandoned runs.
    #[serde(flatten)]
    pub ledger: JobLedger,
    /// When the last delivered round started (the source's clock): the
    /// schedule's reference for missed cron fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round_at: Option<DateTime<Utc>>,
}

impl StripeCheckpoint {
    fn parse(checkpoint: Option<&Checkpoint>, plan: &StreamPlan) -> Result<Self, ConnectorError> {
        match checkpoint {
            None => Ok(StripeCheckpoint {
                report_type: plan.report_type.clone(),
                timezone: plan.timezone.clone(),
                ..StripeCheckpoint::default()
            }),
            Some(c) => c.to_state().map_err(|e| {
                ConnectorError::fatal(format!(
                    "stream `{}`: the stored checkpoint is not one this source wrote ({e}); inspect it with `tributary state get` and fix it with `tributary state set` or `state reset`",
                    plan.stream
                ))
            }),
        }
    }
}

/// Everything a stream's reader needs.
struct StreamPlan {
    connector: String,
    stream: String,
    report_type: String,
    timezone: String,
    columns: Option<Vec<String>>,
    key_columns: Vec<String>,
    start: Option<DateTime<Utc>>,
    max_interval: Option<chrono::Duration>,
    max_wait: Duration,
    poll_interval: Duration,
    poll_interval_max: Duration,
    max_failures: u32,
    failure_backoff: Duration,
    batch_size: usize,
    clock: Arc<dyn Clock>,
    api: StripeApi,
}

pub struct StripeReportingSource {
    api: StripeApi,
    plans: BTreeMap<String, Arc<StreamPlan>>,
    specs: Vec<StreamSpec>,
}

/// The default schedule when the file sets none: hourly in UTC.
pub fn apply_defaults(config: &mut ConnectorConfig) -> Result<(), ConfigError> {
    if !config.schedule_configured {
        config.schedule = Schedule::cron(DEFAULT_CRON, "UTC")
            .map_err(|e| config.document.error("schedule", e.to_string()))?;
    }
    Ok(())
}

/// `balance.summary.1` × `America/New_York` → `balance.summary.1.America_New_York`:
/// a name that is also a valid file name and topic suffix.
pub fn stream_name(report_type: &str, timezone: &str) -> String {
    format!("{report_type}.{}", timezone.replace('/', "_"))
}

/// `start` and `state reset --to`: RFC 3339, or a date (midnight UTC).
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn parse_url(section: &SectionConfig, key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(&format!("{}/", text.trim_end_matches('/')))
        .map_err(|e| section.error(key, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(section.error(key, format!("`{text}` is not an http(s) URL")));
    }
    Ok(url)
}

impl StripeReportingSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let cfg: StripeReportingConfig = section.parse()?;
        let base = parse_url(section, "base_url", &cfg.base_url)?;
        let files = parse_url(section, "files_url", &cfg.files_url)?;
        if cfg.report_types.is_empty() {
            return Err(section.error(
                "report_types",
                "list at least one report type, e.g. [\"balance.summary.1\"]",
            ));
        }
        if cfg.timezones.is_empty() {
            return Err(section.error("timezones", "list at least one timezone, e.g. [\"UTC\"]"));
        }
        for (i, tz) in cfg.timezones.iter().enumerate() {
            tributary_core::schedule::parse_timezone(tz)
                .map_err(|e| section.error(&format!("timezones[{i}]"), e.to_string()))?;
        }
        let known: Vec<&str> = cfg.report_types.iter().map(String::as_str).collect();
        for (table, keys) in [("columns", &cfg.columns), ("key_columns", &cfg.key_columns)] {
            for (report_type, list) in keys {
                if !cfg.report_types.contains(report_type) {
                    let mut e = section.error(
                        &format!("{table}.\"{report_type}\""),
                        format!(
                            "`{report_type}` is not in `report_types` ({})",
                            cfg.report_types.join(", ")
                        ),
                    );
                    e.suggestion = tributary_config::did_you_mean(report_type, &known);
                    return Err(e);
                }
                if list.is_empty() {
                    return Err(section.error(
                        &format!("{table}.\"{report_type}\""),
                        "list at least one column",
                    ));
                }
            }
        }
        for (report_type, keys) in &cfg.key_columns {
            if let Some(columns) = cfg.columns.get(report_type) {
                if let Some(missing) = keys.iter().find(|k| !columns.contains(k)) {
                    return Err(section.error(
                        &format!("key_columns.\"{report_type}\""),
                        format!(
                            "`{missing}` is not one of the `columns` requested for `{report_type}`"
                        ),
                    ));
                }
            }
        }
        let start = match &cfg.start {
            Some(text) => Some(parse_instant(text).ok_or_else(|| {
                section.error(
                    "start",
                    format!("`{text}` is not a time: use RFC 3339 (2024-01-01T00:00:00Z) or a date (2024-01-01)"),
                )
            })?),
            None => None,
        };
        let max_interval = match cfg.max_interval {
            Some(d) if d < Duration::from_secs(1) => {
                return Err(section.error("max_interval", "must be at least 1s"))
            }
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .map_err(|_| section.error("max_interval", "is too long"))?,
            ),
            None => None,
        };
        if cfg.max_consecutive_failures == 0 {
            return Err(section.error("max_consecutive_failures", "must be at least 1"));
        }
        if cfg.poll_interval.is_zero() {
            return Err(section.error("poll_interval", "must be more than 0s"));
        }
        if cfg.max_concurrency == 0 {
            return Err(section.error("max_concurrency", "must be at least 1"));
        }
        // Redirects follow the rule `result.url` does: only to the hosts
        // the key may be sent to.
        let client = HttpClient::with_redirect_hosts(
            ClientOptions {
                timeout: cfg.timeout,
                rate_limit: cfg.rate_limit,
                max_concurrency: cfg.max_concurrency,
                user_agent: format!("tributary/{}", env!("CARGO_PKG_VERSION")),
            },
            Authenticator::new(AuthConfig::Bearer {
                token: cfg.api_key.clone(),
            }),
            vec![files.clone(), base.clone()],
        )
        .map_err(|e| section.error("api_key", e.to_string()))?
        .with_metrics(ctx.metrics.clone());
        let api = StripeApi {
            client,
            base,
            files,
            stripe_version: cfg.stripe_version.clone(),
            download_timeout: cfg.download_timeout,
        };
        let mut plans = BTreeMap::new();
        let mut specs = Vec::new();
        for report_type in &cfg.report_types {
            for timezone in &cfg.timezones {
                let stream = stream_name(report_type, timezone);
                if plans.contains_key(&stream) {
                    return Err(section.error(
                        "report_types",
                        format!("`{report_type}` × `{timezone}` is listed twice"),
                    ));
                }
                let key_columns = cfg
                    .key_columns
                    .get(report_type)
                    .cloned()
                    .unwrap_or_default();
                specs.push(StreamSpec {
                    primary_key: key_columns.clone(),
                    ..StreamSpec::new(stream.clone())
                });
                let batch_size = ctx.batch_size.max(1);
                plans.insert(
                    stream.clone(),
                    Arc::new(StreamPlan {
                        connector: ctx.connector.clone(),
                        stream,
                        report_type: report_type.clone(),
                        timezone: timezone.clone(),
                        columns: cfg.columns.get(report_type).cloned(),
                        key_columns,
                        start,
                        max_interval,
                        max_wait: cfg.max_wait,
                        poll_interval: cfg.poll_interval,
                        poll_interval_max: cfg.poll_interval_max.max(cfg.poll_interval),
                        max_failures: cfg.max_consecutive_failures,
                        failure_backoff: cfg.failure_backoff,
                        batch_size,
                        clock: ctx.clock.clone(),
                        api: api.clone(),
                    }),
                );
            }
        }
        Ok(StripeReportingSource { api, plans, specs })
    }

    fn plan(&self, stream: &StreamSpec) -> Result<&Arc<StreamPlan>, ConnectorError> {
        self.plans.get(&stream.name).ok_or_else(|| {
            ConnectorError::config(format!(
                "no stream `{}`; streams are report type × timezone: {}",
                stream.name,
                self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

#[async_trait::async_trait]
impl Source for StripeReportingSource {
    /// Reads the first report type: proves the host, the key and its
    /// Reporting permission, and that the type exists.
    async fn check(&self) -> Result<(), ConnectorError> {
        let Some(plan) = self.plans.values().next() else {
            return Ok(());
        };
        self.api
            .report_type(&plan.report_type)
            .await
            .map_err(HttpError::into_connector_error)?;
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(self.specs.clone())
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let plan = self.plan(stream)?.clone();
        let state = StripeCheckpoint::parse(checkpoint.as_ref(), &plan)?;
        Ok(Box::new(StripeReader {
            plan,
            state,
            phase: Phase::Start,
            round_started: None,
            attempted: false,
        }))
    }

    fn summarize(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        let Ok(cp) = checkpoint.to_state::<StripeCheckpoint>() else {
            return CheckpointSummary::default();
        };
        let waiting = cp.in_progress_report_run_id.as_deref();
        let position = match waiting {
            Some(run) => format!("round {}, report run {run}", cp.round_id + 1),
            None => format!("{} rounds delivered", cp.round_id),
        };
        CheckpointSummary {
            // Everything before `interval_start` was delivered, and nothing
            // more: `interval_end` may be a run that failed.
            cursor: cp.interval_start,
            window_start: waiting.and(cp.interval_start),
            window_end: waiting.and(cp.interval_end),
            position: Some(position),
            progress: None,
        }
    }

    fn run_progress(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> RunProgress {
        let Ok(cp) = checkpoint.to_state::<StripeCheckpoint>() else {
            return RunProgress::Unknown;
        };
        if cp.in_progress_report_run_id.is_some() {
            return RunProgress::InProgress;
        }
        match cp.last_round_at {
            Some(t) => RunProgress::CompletedAt(t),
            None => RunProgress::Unknown,
        }
    }

    /// The next round starts its interval at the position; failures and
    /// the stuck mark are dropped, `round_id` is kept. An in-flight run is
    /// abandoned: listed, never adopted again, and the next run gets a new
    /// idempotency key, so a hung run is gone for good.
    async fn checkpoint_at(
        &self,
        stream: &StreamSpec,
        current: Option<&Checkpoint>,
        position: ResetPosition,
    ) -> Result<Checkpoint, ConnectorError> {
        let plan = self.plan(stream)?;
        let at = match position {
            ResetPosition::Now => plan.clock.now(),
            ResetPosition::At(t) => t,
            ResetPosition::AvailableEnd => {
                let rt = self
                    .api
                    .report_type(&plan.report_type)
                    .await
                    .map_err(HttpError::into_connector_error)?;
                from_unix(rt.data_available_end).ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "data_available_end {} of `{}` is not a time",
                        rt.data_available_end, plan.report_type
                    ))
                })?
            }
        };
        // Stripe intervals are whole seconds.
        let at = DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at);
        let previous = current
            .and_then(|c| c.to_state::<StripeCheckpoint>().ok())
            .unwrap_or_default();
        let mut ledger = previous.ledger.clone();
        ledger.delivered();
        // The attempt number carries on: a reset back to the same interval
        // must not hand out a key (and so a run) used before.
        ledger.attempt = previous.ledger.attempt;
        if let Some(id) = &previous.in_progress_report_run_id {
            ledger.forget(id, &format!("abandoned by `state reset` ({position})"));
        }
        Ok(Checkpoint::from_state(&StripeCheckpoint {
            report_type: plan.report_type.clone(),
            timezone: plan.timezone.clone(),
            interval_start: Some(at),
            interval_end: Some(at),
            round_id: previous.round_id,
            last_round_at: previous.last_round_at,
            ledger,
            ..StripeCheckpoint::default()
        }))
    }
}

enum Phase {
    /// Begin a round, or resume the run in the checkpoint.
    Start,
    /// Wait before the next attempt after a failed run.
    Backoff(Duration),
    /// Emitting the rows of a downloaded report.
    Emitting(Box<CsvCursor>),
    /// This run of the stream is over.
    Done,
}

struct CsvCursor {
    reader: csv::Reader<std::fs::File>,
    headers: Vec<String>,
    run_id: String,
    /// Rows consumed so far (bad ones included).
    row: u64,
}

/// Reads one stream's rounds until caught up (or waiting / stuck).
pub struct StripeReader {
    plan: Arc<StreamPlan>,
    state: StripeCheckpoint,
    phase: Phase,
    /// When this reader began its first round (the source's clock).
    round_started: Option<DateTime<Utc>>,
    /// A run was created or adopted in this reader: a stuck stream tries once per round.
    attempted: bool,
}

impl StripeReader {
    fn batch(&self, records: Vec<Record>, bad_records: Vec<BadRecord>) -> Poll {
        let load_mode = if self.state.round_id == 0 {
            LoadMode::Initial
        } else {
            LoadMode::Incremental
        };
        Poll::Batch(Batch {
            records,
            bad_records,
            checkpoint: Checkpoint::from_state(&self.state),
            load_mode,
        })
    }

    /// What an API error does: transient ones go back to the runtime, which
    /// reopens from the last checkpoint (the run id included); a rejected
    /// key stops the connector; anything else Stripe refuses (an unknown
    /// report type, a bad column) will be refused again, so it marks this
    /// stream stuck and leaves the others running.
    fn api_error(&mut self, what: &str, e: HttpError) -> Result<Option<Poll>, ConnectorError> {
        if e.is_retryable() || e.kind == HttpErrorKind::Auth || e.kind == HttpErrorKind::Invalid {
            return Err(e.into_connector_error());
        }
        let reason = format!("{what}: {}", e.message);
        self.state.ledger.refuse(format!("Stripe {reason}"));
        error!(stream = %self.plan.stream, error = %reason, "Stripe refused a request; the stream is marked stuck, the other streams go on");
        self.phase = Phase::Done;
        Ok(Some(self.batch(Vec::new(), Vec::new())))
    }

    /// Gives up run `id` (never adopted again) and hands the checkpoint
    /// over; the next attempt follows a doubling backoff, or, after
    /// `max_consecutive_failures` in a row, the stream is stuck until its
    /// next scheduled round.
    fn abandon(&mut self, id: &str, reason: &str) -> Poll {
        let plan = self.plan.clone();
        self.forget_run();
        match self.state.ledger.abandon(id, reason, plan.max_failures) {
            Verdict::Stuck { reason } => {
                error!(stream = %plan.stream, reason = %reason, "stream is stuck; it tries again once per scheduled round, the other streams go on");
                self.phase = Phase::Done;
            }
            Verdict::Retry { failures } => {
                let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
                let wait = plan
                    .failure_backoff
                    .saturating_mul(factor)
                    .min(MAX_FAILURE_BACKOFF);
                warn!(stream = %plan.stream, run = %id, reason, failures, ?wait, "gave up on the report run; creating a new one (with a new idempotency key) after a backoff");
                self.phase = Phase::Backoff(wait);
            }
        }
        self.batch(Vec::new(), Vec::new())
    }

    async fn step(&mut self) -> Result<Option<Poll>, ConnectorError> {
        match self.state.in_progress_report_run_id.clone() {
            Some(id) => self.wait(&id).await,
            None => self.begin_round().await,
        }
    }

    async fn begin_round(&mut self) -> Result<Option<Poll>, ConnectorError> {
        if self.state.ledger.stuck_reason.is_some() && self.attempted {
            self.phase = Phase::Done;
            return Ok(None);
        }
        let plan = self.plan.clone();
        if self.round_started.is_none() {
            self.round_started = Some(plan.clock.now());
        }
        let rt = match plan.api.report_type(&plan.report_type).await {
            Ok(rt) => rt,
            Err(e) => return self.api_error("reading the report type", e),
        };
        let bad_time = |field: &str, v: i64| {
            ConnectorError::fatal(format!(
                "{field} {v} of report type `{}` is not a time",
                plan.report_type
            ))
        };
        let available_start = from_unix(rt.data_available_start)
            .ok_or_else(|| bad_time("data_available_start", rt.data_available_start))?;
        let available_end = from_unix(rt.data_available_end)
            .ok_or_else(|| bad_time("data_available_end", rt.data_available_end))?;
        let start = self
            .state
            .interval_start
            .or(plan.start)
            .unwrap_or(available_start);
        let mut end = available_end;
        if let Some(max) = plan.max_interval {
            end = end.min(start + max);
        }
        if end <= start {
            info!(stream = %plan.stream, interval_start = %start, data_available_end = %available_end, "caught up: no new data available");
            self.phase = Phase::Done;
            return Ok(None);
        }
        let wanted = RunRequest {
            report_type: &plan.report_type,
            interval_start: start,
            interval_end: end,
            timezone: &plan.timezone,
            columns: plan.columns.as_deref(),
        };
        self.attempted = true;
        let key = self
            .state
            .ledger
            .idempotency_key(&plan.connector, &plan.stream, start, end);
        let (run, replayed) = match plan.api.create_run(&wanted, &key).await {
            Ok(created) => created,
            Err(e) => return self.api_error("creating a report run", e),
        };
        if self.state.ledger.is_abandoned(&run.id) {
            // Only a checkpoint edited by hand gets here: give the run up
            // again, which moves to a key never used.
            return Ok(Some(self.abandon(
                &run.id.clone(),
                "Stripe answered a run this stream had abandoned",
            )));
        }
        if replayed {
            info!(stream = %plan.stream, run = %run.id, interval_start = %start, interval_end = %end, "found the report run this stream created before a crash (same idempotency key); waiting on it instead of creating another");
        } else {
            info!(stream = %plan.stream, run = %run.id, interval_start = %start, interval_end = %end, "report run created; committing its id before waiting");
        }
        self.state.interval_start = Some(start);
        self.state.interval_end = Some(end);
        self.state.in_progress_report_run_id = Some(run.id);
        self.state.rows_emitted = 0;
        // Handing the id over first is what makes a timeout or a crash
        // while waiting resume this run rather than create another.
        Ok(Some(self.batch(Vec::new(), Vec::new())))
    }

    async fn wait(&mut self, id: &str) -> Result<Option<Poll>, ConnectorError> {
        let plan = self.plan.clone();
        let deadline = tokio::time::Instant::now() + plan.max_wait;
        let mut delay = plan.poll_interval;
        loop {
            let run = match plan.api.report_run(id).await {
                Ok(run) => run,
                Err(e) if e.kind == HttpErrorKind::Status(404) => {
                    return Ok(Some(
                        self.abandon(id, "the report run no longer exists (404)"),
                    ));
                }
                Err(e) => return self.api_error("checking the report run", e),
            };
            match run.status.as_str() {
                "succeeded" => return self.download(run).await,
                "failed" => return Ok(Some(self.run_failed(run))),
                status => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        warn!(stream = %plan.stream, run = %id, status, max_wait = ?plan.max_wait, "report run not finished within max_wait; its id stays in the checkpoint and the next round waits on it");
                        self.phase = Phase::Done;
                        return Ok(None);
                    }
                    tokio::time::sleep(delay.min(deadline - now)).await;
                    delay = (delay * 2).min(plan.poll_interval_max);
                }
            }
        }
    }

    fn forget_run(&mut self) {
        self.state.in_progress_report_run_id = None;
        self.state.rows_emitted = 0;
    }

    fn run_failed(&mut self, run: ReportRun) -> Poll {
        let reason = format!(
            "the report run failed: {}",
            run.error
                .as_deref()
                .unwrap_or("Stripe gave no error message")
        );
        self.abandon(&run.id, &reason)
    }

    /// Downloads the run's file to an anonymous temporary file (memory
    /// stays flat whatever the report's size, and a slow sink does not hold
    /// the HTTP transfer open) and positions a CSV reader after the rows
    /// already handed over.
    async fn download(&mut self, run: ReportRun) -> Result<Option<Poll>, ConnectorError> {
        let plan = self.plan.clone();
        let Some(url_text) = run.result.as_ref().and_then(|f| f.url.clone()) else {
            return Ok(Some(self.run_failed(ReportRun {
                error: Some("it succeeded without a result file".into()),
                ..run
            })));
        };
        let url = Url::parse(&url_text).map_err(|e| {
            ConnectorError::fatal(format!(
                "report run {}: result.url is not a URL: {e}",
                run.id
            ))
        })?;
        if !plan.api.trusted_file_url(&url) {
            return self.api_error(
                "downloading the report",
                HttpError::new(
                    HttpErrorKind::Status(400),
                    format!(
                        "result.url {} is neither on files_url nor on base_url; the API key is not sent elsewhere",
                        crate::http::client::display_url(&url)
                    ),
                ),
            );
        }
        let shown = crate::http::client::display_url(&url);
        let mut file = tempfile::tempfile()
            .map_err(|e| ConnectorError::from_io("creating a temporary file for the report", &e))?;
        match plan.api.download(url, &mut file).await {
            Ok(bytes) => {
                info!(stream = %plan.stream, run = %run.id, bytes, "downloaded the report")
            }
            Err(e) if e.kind == HttpErrorKind::Status(404) => {
                return Ok(Some(
                    self.abandon(&run.id, "the report file is gone (404, expired)"),
                ));
            }
            Err(e) if matches!(e.kind, HttpErrorKind::Status(300..=399)) => {
                return self.api_error(
                    "downloading the report",
                    HttpError::new(
                        HttpErrorKind::Status(400),
                        format!(
                            "{shown} redirected to a host that is neither files_url's nor base_url's; the redirect is not followed, as a result.url there would not be"
                        ),
                    ),
                );
            }
            Err(e) => return self.api_error("downloading the report", e),
        }
        file.rewind()
            .map_err(|e| ConnectorError::from_io("reading the downloaded report", &e))?;
        let mut reader = csv::ReaderBuilder::new().from_reader(file);
        let headers = reader
            .headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .map_err(|e| csv_error(&run.id, 0, e))?;
        let mut cursor = CsvCursor {
            reader,
            headers,
            run_id: run.id,
            row: 0,
        };
        let mut skip = csv::ByteRecord::new();
        while cursor.row < self.state.rows_emitted {
            match cursor.reader.read_byte_record(&mut skip) {
                Ok(true) => cursor.row += 1,
                Ok(false) => break,
                Err(e) if e.is_io_error() => return Err(csv_error(&cursor.run_id, cursor.row, e)),
                Err(_) => cursor.row += 1,
            }
        }
        self.phase = Phase::Emitting(Box::new(cursor));
        Ok(None)
    }

    /// Up to `batch_size` rows; the round completes with the last of them.
    fn emit(&mut self, mut cursor: Box<CsvCursor>) -> Result<Poll, ConnectorError> {
        let plan = self.plan.clone();
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let mut row = csv::StringRecord::new();
        let mut finished = false;
        while records.len() + bad.len() < plan.batch_size {
            match cursor.reader.read_record(&mut row) {
                Ok(true) => {
                    cursor.row += 1;
                    match self.record(&cursor, &row) {
                        Ok(r) => records.push(r),
                        Err(b) => bad.push(b),
                    }
                }
                Ok(false) => {
                    finished = true;
                    break;
                }
                Err(e) if e.is_io_error() => return Err(csv_error(&cursor.run_id, cursor.row, e)),
                Err(e) => {
                    cursor.row += 1;
                    bad.push(BadRecord {
                        location: format!("report run {} row {}", cursor.run_id, cursor.row),
                        error: e.to_string(),
                        raw: String::new().into(),
                    });
                }
            }
        }
        self.state.rows_emitted = cursor.row;
        if finished {
            self.complete_round(&cursor);
            self.phase = Phase::Start;
        } else {
            self.phase = Phase::Emitting(cursor);
        }
        Ok(self.batch(records, bad))
    }

    fn record(&self, cursor: &CsvCursor, row: &csv::StringRecord) -> Result<Record, BadRecord> {
        let plan = &self.plan;
        let mut value = Map::new();
        for (name, cell) in cursor.headers.iter().zip(row.iter()) {
            value.insert(name.clone(), Value::String(cell.to_string()));
        }
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                .unwrap_or(Value::Null)
        };
        value.insert(
            "_report_type".into(),
            Value::String(plan.report_type.clone()),
        );
        value.insert("_timezone".into(), Value::String(plan.timezone.clone()));
        value.insert("_interval_start".into(), time(self.state.interval_start));
        value.insert("_interval_end".into(), time(self.state.interval_end));
        value.insert(
            "_report_run_id".into(),
            Value::String(cursor.run_id.clone()),
        );
        let value = Value::Object(value);
        let key = if plan.key_columns.is_empty() {
            Some(Value::String(format!(
                "{}|{}|{}|{}|{}",
                plan.report_type,
                plan.timezone,
                self.state.interval_start.map_or(0, |t| t.timestamp()),
                self.state.interval_end.map_or(0, |t| t.timestamp()),
                cursor.row
            )))
        } else {
            Record::key_from_fields(&value, &plan.key_columns)
        };
        match key {
            Some(key) => Ok(Record::new(value).with_key(key)),
            None => Err(BadRecord {
                location: format!("report run {} row {}", cursor.run_id, cursor.row),
                error: format!("missing key column(s) {}", plan.key_columns.join(", ")),
                raw: row.iter().collect::<Vec<_>>().join(",").into(),
            }),
        }
    }

    fn complete_round(&mut self, cursor: &CsvCursor) {
        let plan = &self.plan;
        info!(stream = %plan.stream, run = %cursor.run_id, rows = cursor.row, round = self.state.round_id + 1, interval_start = ?self.state.interval_start, interval_end = ?self.state.interval_end, "round complete");
        if self.state.ledger.stuck_reason.is_some() {
            info!(stream = %plan.stream, "the stream is no longer stuck");
        }
        self.state.interval_start = self.state.interval_end;
        self.state.round_id += 1;
        self.state.in_progress_report_run_id = None;
        self.state.rows_emitted = 0;
        self.state.ledger.delivered();
        self.state.last_round_at = self.round_started.or(Some(plan.clock.now()));
    }
}

fn csv_error(run: &str, row: u64, e: csv::Error) -> ConnectorError {
    let message = format!("report run {run}: reading the downloaded CSV after row {row}: {e}");
    if e.is_io_error() {
        ConnectorError::retryable(message)
    } else {
        ConnectorError::fatal(message)
    }
}

#[async_trait::async_trait]
impl StreamReader for StripeReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Start) {
                Phase::Done => {
                    self.phase = Phase::Done;
                    return Ok(Poll::End);
                }

                Phase::Backoff(wait) => tokio::time::sleep(wait).await,
                Phase::Emitting(cursor) => return self.emit(cursor),
                Phase::Start => {
                    if let Some(out) = self.step().await? {
                        return Ok(out);
                    }
                }
            }
        }
    }
}
