use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tributary_config::{BadRecordPolicy, StreamOverride};
use tributary_core::{Checkpoint, Schedule};
use tributary_metrics::{Registry, StreamStatus};
use tributary_runtime::*;
use tributary_testkit::scripted::*;

struct Harness {
    sink: Arc<Mutex<SinkLog>>,
    state: Arc<CheckingState>,
    script: Arc<Mutex<ScriptState>>,
    metrics: Registry,
    shutdown: CancellationToken,
}

impl Harness {
    fn new() -> Self {
        let sink = Arc::new(Mutex::new(SinkLog::default()));
        Harness {
            state: Arc::new(CheckingState::new(sink.clone())),
            sink,
            script: Arc::new(Mutex::new(ScriptState::default())),
            metrics: Registry::new(),
            shutdown: CancellationToken::new(),
        }
    }

    fn parts(
        &self,
        config: tributary_config::ConnectorConfig,
        streams: &[(&str, u64)],
        batch: u64,
        clock: Option<Arc<ManualClock>>,
        follow: bool,
    ) -> ConnectorParts {
        ConnectorParts {
            config,
            source: Arc::new(ScriptedSource {
                streams: streams.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
                batch,
                script: self.script.clone(),
                clock: clock.map(|c| {
                    Arc::new(move || c.now()) as Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>
                }),
                follow,
            }),
            sink: Box::new(MemorySink(self.sink.clone())),
            state: self.state.clone(),
        }
    }

    fn env(&self, clock: Arc<dyn Clock>) -> RuntimeEnv {
        RuntimeEnv {
            clock,
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn written_ns(&self, stream: &str) -> Vec<u64> {
        self.sink
            .lock()
            .unwrap()
            .written
            .iter()
            .filter(|r| r.value.to_value()["_stream"] == json!(stream))
            .map(|r| r.value.to_value()["n"].as_u64().unwrap())
            .collect()
    }

    fn committed(&self, stream: &str) -> Option<serde_json::Value> {
        self.state
            .map
            .lock()
            .unwrap()
            .get(stream)
            .map(|c| c.checkpoint.0.clone())
    }
}

#[tokio::test]
async fn every_record_is_delivered_once_and_checkpoints_follow_acknowledgement() {
    let h = Harness::new();
    let dir = tempdir();
    let mut cfg = config("c", &dir);
    cfg.runtime.flush_records = 25; // several commits during the run
    let parts = h.parts(cfg, &[("a", 103), ("b", 57)], 10, None, false);
    let summary = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    assert_eq!(h.written_ns("a"), (0..103).collect::<Vec<_>>());
    assert_eq!(h.written_ns("b"), (0..57).collect::<Vec<_>>());
    assert_eq!(h.committed("a"), Some(json!({"next": 103})));
    assert_eq!(h.committed("b"), Some(json!({"next": 57})));
    assert_eq!(summary.committed.get("a"), Some(&103));
    assert_eq!(summary.committed.get("b"), Some(&57));
    assert!(
        h.state.commits.lock().unwrap().len() > 2,
        "flush_records should force intermediate commits"
    );
    let snap = h.metrics.snapshot();
    assert!(snap.iter().all(|s| s.status == StreamStatus::Finished));
    // Routing and metadata were applied.
    let first = h.sink.lock().unwrap().written[0].clone();
    assert!(first.target.as_deref() == Some("c.a") || first.target.as_deref() == Some("c.b"));
    assert_eq!(first.value.to_value()["_load_mode"], json!("INITIAL_LOAD"));
}

#[tokio::test]
async fn restart_resumes_from_the_committed_checkpoint() {
    let h = Harness::new();
    let dir = tempdir();
    h.state.map.lock().unwrap().insert(
        "a".into(),
        tributary_state::StoredCheckpoint {
            stream: "a".into(),
            checkpoint: Checkpoint(json!({"next": 40})),
            committed_at: Utc::now(),
            advanced_at: Utc::now(),
        },
    );
    let parts = h.parts(config("c", &dir), &[("a", 50)], 7, None, false);
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    assert_eq!(h.written_ns("a"), (40..50).collect::<Vec<_>>());
    assert_eq!(
        h.script.lock().unwrap().opens[0].1,
        Some(Checkpoint(json!({"next": 40})))
    );
}

#[tokio::test]
async fn retryable_errors_reopen_from_the_last_position_without_loss_or_duplicates() {
    let h = Harness::new();
    let dir = tempdir();
    {
        let mut s = h.script.lock().unwrap();
        s.faults.extend([
            Fault::Pass,
            Fault::Retryable,
            Fault::Retryable,
            Fault::Pass,
            Fault::Retryable,
        ]);
    }
    let parts = h.parts(config("c", &dir), &[("a", 30)], 10, None, false);
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    assert_eq!(h.written_ns("a"), (0..30).collect::<Vec<_>>());
    let snap = &h.metrics.snapshot()[0];
    assert_eq!(snap.retries, 3);
    assert_eq!(
        snap.last_retry_reason.as_deref(),
        Some("connection reset by peer")
    );
    assert_eq!(h.script.lock().unwrap().opens.len(), 4);
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_says_why() {
    let h = Harness::new();
    let dir = tempdir();
    h.script
        .lock()
        .unwrap()
        .faults
        .extend(std::iter::repeat_n(Fault::Retryable, 20));
    let mut cfg = config("billing", &dir);
    cfg.runtime.max_retries = 3;
    let parts = h.parts(cfg, &[("invoices", 30)], 10, None, false);
    let err = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `billing`, stream `invoices`: gave up after 3 consecutive retryable errors; last: connection reset by peer"
    );
    assert!(matches!(
        h.metrics.snapshot()[0].status,
        StreamStatus::Failed { .. }
    ));
}

#[tokio::test]
async fn fatal_source_error_stops_the_connector_but_commits_what_was_delivered() {
    let h = Harness::new();
    let dir = tempdir();
    h.script
        .lock()
        .unwrap()
        .faults
        .extend([Fault::Pass, Fault::Pass, Fault::Fatal]);
    let parts = h.parts(
        config("billing", &dir),
        &[("invoices", 30)],
        10,
        None,
        false,
    );
    let err = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `billing`, stream `invoices`: 401 Unauthorized"
    );
    // The two batches read before the failure are delivered and committed.
    assert_eq!(h.written_ns("invoices"), (0..20).collect::<Vec<_>>());
    assert_eq!(h.committed("invoices"), Some(json!({"next": 20})));
}

#[tokio::test]
async fn bad_record_policy_fail_commits_nothing_past_it() {
    let h = Harness::new();
    let dir = tempdir();
    h.script.lock().unwrap().faults.push_back(Fault::BadRecord);
    let parts = h.parts(config("c", &dir), &[("a", 30)], 10, None, false);
    let err = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `c`, stream `a`: bad record at a:0: expected value at line 1 column 1 (bad-record policy is `fail`; set [bad_records] policy = \"skip\" or \"dead_letter\" to continue past it)"
    );
    assert_eq!(h.committed("a"), None);
    assert!(h.written_ns("a").is_empty());
    assert_eq!(h.metrics.snapshot()[0].bad_records_failed, 1);
}

#[tokio::test]
async fn bad_record_policies_skip_and_dead_letter_count_and_keep() {
    for policy in [BadRecordPolicy::Skip, BadRecordPolicy::DeadLetter] {
        let h = Harness::new();
        let dir = tempdir();
        {
            let mut s = h.script.lock().unwrap();
            s.faults.extend([Fault::BadRecord, Fault::BadRecord]);
        }
        let mut cfg = config("c", &dir);
        cfg.bad_records.policy = policy;
        let parts = h.parts(cfg, &[("a", 30)], 10, None, false);
        run_connector(parts, h.env(Arc::new(SystemClock)))
            .await
            .unwrap();
        assert_eq!(h.written_ns("a"), (0..30).collect::<Vec<_>>());
        assert_eq!(h.committed("a"), Some(json!({"next": 30})));
        let snap = &h.metrics.snapshot()[0];
        let dead = std::fs::read_to_string(dir.join("dead.ndjson")).unwrap_or_default();
        match policy {
            BadRecordPolicy::Skip => {
                assert_eq!(snap.bad_records_skipped, 2);
                assert!(dead.is_empty());
            }
            _ => {
                assert_eq!(snap.bad_records_dead_lettered, 2);
                let lines: Vec<serde_json::Value> = dead
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(lines.len(), 2);
                assert_eq!(lines[0]["connector"], json!("c"));
                assert_eq!(lines[0]["stream"], json!("a"));
                assert_eq!(lines[0]["location"], json!("a:0"));
                assert_eq!(lines[1]["location"], json!("a:10"));
                assert_eq!(lines[0]["raw"], json!("{oops"));
                assert_eq!(
                    lines[0]["error"],
                    json!("expected value at line 1 column 1")
                );
            }
        }
    }
}

#[tokio::test]
async fn sink_failure_stops_the_connector_and_never_commits_unflushed_records() {
    let h = Harness::new();
    let dir = tempdir();
    h.sink.lock().unwrap().fail_flush = Some(2);
    let mut cfg = config("c", &dir);
    cfg.runtime.flush_records = 10;
    cfg.runtime.channel_capacity = 1;
    let parts = h.parts(cfg, &[("a", 100)], 10, None, false);
    let err = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connector `c`: sink: disk full");
    // Only the first flush succeeded: exactly the first batch is committed.
    assert_eq!(h.committed("a"), Some(json!({"next": 10})));
}

#[tokio::test]
async fn retryable_sink_flush_is_retried() {
    let h = Harness::new();
    let dir = tempdir();
    h.sink.lock().unwrap().retryable_flush_failures = 2;
    let parts = h.parts(config("c", &dir), &[("a", 20)], 10, None, false);
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    assert_eq!(h.committed("a"), Some(json!({"next": 20})));
}

#[tokio::test]
async fn shutdown_drains_and_commits_what_was_acknowledged() {
    let h = Harness::new();
    let dir = tempdir();
    let mut cfg = config("c", &dir);
    cfg.runtime.flush_interval = Duration::from_secs(3600); // only the drain flushes
    let parts = h.parts(cfg, &[("a", 25)], 10, None, true);
    let shutdown = h.shutdown.clone();
    let metrics = h.metrics.clone();
    let run = tokio::spawn(run_connector(parts, h.env(Arc::new(SystemClock))));
    // Wait until the follow-mode source is idle (caught up), then interrupt.
    tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.snapshot().first().map(|s| s.records_written) != Some(25) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(h.committed("a"), None, "nothing flushed yet");
    shutdown.cancel();
    let summary = run.await.unwrap().unwrap();
    assert!(summary.interrupted);
    assert_eq!(h.committed("a"), Some(json!({"next": 25})));
    assert_eq!(h.written_ns("a"), (0..25).collect::<Vec<_>>());
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Waits until `stream` is scheduled for a run later than `after`.
async fn wait_scheduled_after(
    metrics: &Registry,
    stream: &str,
    after: DateTime<Utc>,
) -> DateTime<Utc> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snap = metrics.snapshot();
            if let Some(StreamStatus::Scheduled { next_run }) = snap
                .iter()
                .find(|s| s.stream == stream)
                .map(|s| s.status.clone())
            {
                if next_run > after {
                    return next_run;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("stream never became scheduled")
}

async fn wait_scheduled(metrics: &Registry, stream: &str) -> DateTime<Utc> {
    wait_scheduled_after(metrics, stream, DateTime::<Utc>::MIN_UTC).await
}

#[tokio::test]
async fn cron_schedule_in_a_time_zone_across_dst_with_an_injected_clock() {
    let h = Harness::new();
    let dir = tempdir();
    let clock = Arc::new(ManualClock::new(utc("2026-03-07T12:00:00Z")));
    let mut cfg = config("c", &dir);
    // Daily at 02:30 New York time; on 2026-03-08 02:30 does not exist (spring forward).
    cfg.schedule = Schedule::cron("0 30 2 * * ?", "America/New_York").unwrap();
    // A second stream on its own hourly schedule in UTC.
    cfg.streams.insert(
        "hourly".into(),
        StreamOverride {
            target: Some("custom.topic".into()),
            schedule: Some(Schedule::cron("0 0 * * * ?", "UTC").unwrap()),
        },
    );
    let parts = h.parts(
        cfg,
        &[("daily", 5), ("hourly", 5)],
        10,
        Some(clock.clone()),
        false,
    );
    let run = tokio::spawn(run_connector(parts, h.env(clock.clone())));

    // 2026-03-08 02:30 EST does not exist: first run right after the gap, 03:00 EDT.
    let expected_daily = [
        "2026-03-08T07:00:00+00:00", // 2026-03-08 03:00 EDT (after the gap)
        "2026-03-09T06:30:00+00:00", // 02:30 EDT
        "2026-03-10T06:30:00+00:00",
    ];
    // A stream that never ran loads at once; the cron governs later runs.
    let start = clock.now();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !h
            .script
            .lock()
            .unwrap()
            .opens
            .iter()
            .any(|(s, _, at)| s == "daily" && *at == start)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let mut previous = DateTime::<Utc>::MIN_UTC;
    for expected in expected_daily {
        let next = wait_scheduled_after(&h.metrics, "daily", previous).await;
        previous = next;
        assert_eq!(next.to_rfc3339(), expected);
        clock.set(next);
        // The run happens at the scheduled instant.
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if h.script
                    .lock()
                    .unwrap()
                    .opens
                    .iter()
                    .any(|(s, _, at)| s == "daily" && *at == next)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap();
    }
    let hourly_next = wait_scheduled(&h.metrics, "hourly").await;
    assert_eq!(hourly_next.to_rfc3339(), "2026-03-10T07:00:00+00:00");
    h.shutdown.cancel();
    run.await.unwrap().unwrap();
    let daily_opens: Vec<String> = h
        .script
        .lock()
        .unwrap()
        .opens
        .iter()
        .filter(|(s, _, _)| s == "daily")
        .map(|(_, _, at)| at.to_rfc3339())
        .collect();
    let mut expected_opens = vec!["2026-03-07T12:00:00+00:00"];
    expected_opens.extend(expected_daily);
    assert_eq!(daily_opens, expected_opens);
    // Only the first run had data; later runs resume from the committed position.
    assert_eq!(h.written_ns("daily"), (0..5).collect::<Vec<_>>());
    let hourly_targets: Vec<String> = h
        .sink
        .lock()
        .unwrap()
        .written
        .iter()
        .filter(|r| r.value.to_value()["_stream"] == json!("hourly"))
        .map(|r| r.target.clone().unwrap())
        .collect();
    assert!(hourly_targets.iter().all(|t| t == "custom.topic"));
}

#[tokio::test]
async fn interval_schedule_runs_again_after_the_interval() {
    let h = Harness::new();
    let dir = tempdir();
    let clock = Arc::new(ManualClock::new(utc("2026-01-01T00:00:00Z")));
    let mut cfg = config("c", &dir);
    cfg.schedule = Schedule::Interval(Duration::from_secs(300));
    let parts = h.parts(cfg, &[("a", 3)], 10, Some(clock.clone()), false);
    let run = tokio::spawn(run_connector(parts, h.env(clock.clone())));
    let next = wait_scheduled(&h.metrics, "a").await;
    assert_eq!(next.to_rfc3339(), "2026-01-01T00:05:00+00:00");
    clock.set(next);
    let next = wait_scheduled_after(&h.metrics, "a", next).await;
    assert_eq!(next.to_rfc3339(), "2026-01-01T00:10:00+00:00");
    h.shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(h.script.lock().unwrap().opens.len(), 2);
}

#[tokio::test]
async fn unknown_stream_override_is_a_config_error() {
    let h = Harness::new();
    let dir = tempdir();
    let mut cfg = config("c", &dir);
    cfg.streams.insert("nope".into(), StreamOverride::default());
    let parts = h.parts(cfg, &[("a", 3), ("b", 1)], 10, None, false);
    let err = run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap_err();
    // Located in the config file, as every config error is.
    let message = err.to_string();
    assert!(
        message.starts_with("connector `c`: ")
            && message.ends_with(
                "test.toml: streams.nope: [streams.nope] names no stream of this source; it offers: a, b"
            ),
        "{message}"
    );
}

type CheckpointBatches = Arc<Mutex<Vec<Vec<(String, Checkpoint)>>>>;

/// A sink that stores checkpoints with its data, as the postgres sink does
/// with `exactly_once`: each flush_with_checkpoints is one "transaction".
struct TransactionalSink {
    inner: MemorySink,
    /// The checkpoints it holds, by stream.
    stored: Arc<Mutex<std::collections::BTreeMap<String, Checkpoint>>>,
    /// Every batch of checkpoints it committed, in order.
    commits: CheckpointBatches,
    /// Fail this many `stored_checkpoints` calls retryably first.
    failing_reads: usize,
}

#[tributary_core::async_trait]
impl tributary_core::Sink for TransactionalSink {
    async fn write_records(
        &mut self,
        batch: Option<tributary_core::BatchInfo<'_>>,
        records: &[tributary_core::Record],
    ) -> Result<(), tributary_core::ConnectorError> {
        self.inner.write_records(batch, records).await
    }
    async fn flush(&mut self) -> Result<(), tributary_core::ConnectorError> {
        self.inner.flush().await
    }
    async fn flush_with_checkpoints(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
        _group_offsets: &[tributary_core::GroupOffsets],
    ) -> Result<bool, tributary_core::ConnectorError> {
        self.inner.flush().await?;
        let mut stored = self.stored.lock().unwrap();
        for (s, c) in checkpoints {
            stored.insert(s.clone(), c.clone());
        }
        self.commits.lock().unwrap().push(checkpoints.to_vec());
        Ok(true)
    }
    async fn stored_checkpoints(
        &mut self,
    ) -> Result<Vec<(String, Checkpoint)>, tributary_core::ConnectorError> {
        if self.failing_reads > 0 {
            self.failing_reads -= 1;
            return Err(tributary_core::ConnectorError::retryable(
                "connection refused",
            ));
        }
        Ok(self
            .stored
            .lock()
            .unwrap()
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect())
    }
}

fn transactional(h: &Harness, failing_reads: usize) -> TransactionalSink {
    TransactionalSink {
        inner: MemorySink(h.sink.clone()),
        stored: Arc::new(Mutex::new(Default::default())),
        commits: Arc::new(Mutex::new(Vec::new())),
        failing_reads,
    }
}

#[tokio::test]
async fn the_sink_gets_every_checkpoint_before_the_state_store_does() {
    let h = Harness::new();
    let dir = tempdir();
    let mut cfg = config("c", &dir);
    cfg.runtime.flush_records = 10;
    let mut parts = h.parts(cfg, &[("a", 25), ("b", 7)], 10, None, false);
    let sink = transactional(&h, 0);
    let (stored, commits) = (sink.stored.clone(), sink.commits.clone());
    parts.sink = Box::new(sink);
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    // The same batches, in the same order: the sink's commit came first
    // (the state store checks at each commit that the records are durable).
    assert_eq!(*commits.lock().unwrap(), *h.state.commits.lock().unwrap());
    assert!(commits.lock().unwrap().len() >= 3);
    let stored = stored.lock().unwrap();
    assert_eq!(stored.get("a"), Some(&Checkpoint(json!({"next": 25}))));
    assert_eq!(stored.get("b"), Some(&Checkpoint(json!({"next": 7}))));
}

#[tokio::test]
async fn checkpoints_the_sink_stored_win_over_the_state_store_at_startup() {
    let h = Harness::new();
    let dir = tempdir();
    // An earlier run wrote and committed a:0..30 in the sink, then crashed
    // before its state-store commit, which is still at next=10.
    {
        let mut log = h.sink.lock().unwrap();
        log.written = (0..30)
            .map(|i| tributary_core::Record::new(json!({"n": i, "_stream": "a"})))
            .collect();
        log.durable = 30;
    }
    h.state.map.lock().unwrap().insert(
        "a".into(),
        tributary_state::StoredCheckpoint {
            stream: "a".into(),
            checkpoint: Checkpoint(json!({"next": 10})),
            committed_at: Utc::now(),
            advanced_at: Utc::now(),
        },
    );
    let mut parts = h.parts(config("c", &dir), &[("a", 50), ("b", 5)], 10, None, false);
    // Reading the sink's checkpoints fails once (the database is restarting).
    let sink = transactional(&h, 1);
    sink.stored
        .lock()
        .unwrap()
        .insert("a".into(), Checkpoint(json!({"next": 30})));
    parts.sink = Box::new(sink);
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    // Resumed at the sink's checkpoint: nothing replayed, nothing lost.
    assert_eq!(h.written_ns("a"), (0..50).collect::<Vec<_>>());
    assert_eq!(h.written_ns("b"), (0..5).collect::<Vec<_>>());
    let opens = h.script.lock().unwrap().opens.clone();
    let a_open = opens.iter().find(|(s, _, _)| s == "a").unwrap();
    assert_eq!(a_open.1, Some(Checkpoint(json!({"next": 30}))));
    let b_open = opens.iter().find(|(s, _, _)| s == "b").unwrap();
    assert_eq!(b_open.1, None, "a stream the sink has no checkpoint for");
    // The state store caught up first, then followed the run.
    assert_eq!(
        h.state.commits.lock().unwrap()[0],
        vec![("a".to_string(), Checkpoint(json!({"next": 30})))]
    );
    assert_eq!(h.committed("a"), Some(json!({"next": 50})));
}

/// A source whose only stream hands over one empty batch marked stuck
/// (as stripe_reporting does after N failed report runs), then ends.
struct StuckSource;

struct StuckReader(bool);

#[tributary_core::async_trait]
impl tributary_core::Source for StuckSource {
    async fn check(&self) -> Result<(), tributary_core::ConnectorError> {
        Ok(())
    }
    async fn discover(
        &self,
    ) -> Result<Vec<tributary_core::StreamSpec>, tributary_core::ConnectorError> {
        Ok(vec![tributary_core::StreamSpec::new("reports")])
    }
    async fn open(
        &self,
        _stream: &tributary_core::StreamSpec,
        _checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn tributary_core::StreamReader>, tributary_core::ConnectorError> {
        Ok(Box::new(StuckReader(false)))
    }
}

#[tributary_core::async_trait]
impl tributary_core::StreamReader for StuckReader {
    async fn poll(&mut self) -> Result<tributary_core::Poll, tributary_core::ConnectorError> {
        if std::mem::replace(&mut self.0, true) {
            return Ok(tributary_core::Poll::End);
        }
        Ok(tributary_core::Poll::Batch(tributary_core::Batch::new(
            Vec::new(),
            Checkpoint(json!({"next": 0, "stuck_reason": "report run failed 3 times in a row"})),
            tributary_core::LoadMode::Incremental,
        )))
    }
}

#[tokio::test]
async fn a_stream_its_source_marks_stuck_reports_stuck_and_the_mark_is_committed() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let parts = ConnectorParts {
        config: config("c", dir.path()),
        source: Arc::new(StuckSource),
        sink: Box::new(MemorySink(h.sink.clone())),
        state: h.state.clone(),
    };
    run_connector(parts, h.env(Arc::new(SystemClock)))
        .await
        .unwrap();
    let snap = h.metrics.snapshot();
    assert_eq!(
        snap[0].status,
        StreamStatus::Stuck {
            reason: "report run failed 3 times in a row".into()
        }
    );
    assert_eq!(
        h.committed("reports").unwrap()["stuck_reason"],
        "report run failed 3 times in a row"
    );
}

/// A source whose reader hands over records at the position it was opened
/// at (no newer checkpoint), then fails retryably, every time: a bridge's
/// child that prints records and dies before its next STATE. It stops
/// failing after `opens_before_end` opens.
struct RereadingSource {
    records_are_progress: bool,
    /// A line that is no message instead of a record.
    bad: bool,
    opens: Arc<Mutex<u32>>,
    opens_before_end: u32,
}

struct RereadingReader {
    records_are_progress: bool,
    bad: bool,
    polls: u32,
    end: bool,
}

#[tributary_core::async_trait]
impl tributary_core::Source for RereadingSource {
    async fn check(&self) -> Result<(), tributary_core::ConnectorError> {
        Ok(())
    }
    async fn discover(
        &self,
    ) -> Result<Vec<tributary_core::StreamSpec>, tributary_core::ConnectorError> {
        Ok(vec![tributary_core::StreamSpec::new("items")])
    }
    async fn open(
        &self,
        _stream: &tributary_core::StreamSpec,
        _checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn tributary_core::StreamReader>, tributary_core::ConnectorError> {
        let mut opens = self.opens.lock().unwrap();
        *opens += 1;
        Ok(Box::new(RereadingReader {
            records_are_progress: self.records_are_progress,
            bad: self.bad,
            polls: 0,
            end: *opens >= self.opens_before_end,
        }))
    }
}

#[tributary_core::async_trait]
impl tributary_core::StreamReader for RereadingReader {
    async fn poll(&mut self) -> Result<tributary_core::Poll, tributary_core::ConnectorError> {
        self.polls += 1;
        match self.polls {
            1 => {
                let record = tributary_core::Record::new(json!({"_stream": "items", "n": 0}));
                let mut batch = tributary_core::Batch::new(
                    if self.bad { Vec::new() } else { vec![record] },
                    Checkpoint(json!({"next": 0})),
                    tributary_core::LoadMode::Incremental,
                );
                if self.bad {
                    batch.bad_records.push(tributary_core::BadRecord {
                        location: "child stdout line 1".into(),
                        error: "not a message".into(),
                        raw: "garbage".into(),
                    });
                }
                Ok(tributary_core::Poll::Batch(batch))
            }
            _ if self.end => Ok(tributary_core::Poll::End),
            _ => Err(tributary_core::ConnectorError::retryable(
                "the child exited with status 1",
            )),
        }
    }

    fn records_are_progress(&self) -> bool {
        self.records_are_progress
    }
}

#[tokio::test]
async fn records_at_an_unmoved_checkpoint_are_no_progress_for_readers_that_say_so() {
    // Records, then bad records (a line read again after each crash too).
    for (records_are_progress, bad) in [(false, false), (false, true), (true, false)] {
        let h = Harness::new();
        let dir = tempdir();
        let mut cfg = config("c", &dir);
        cfg.bad_records.policy = BadRecordPolicy::Skip;
        cfg.runtime.max_retries = 3;
        cfg.runtime.backoff_initial = Duration::from_millis(1);
        cfg.runtime.backoff_max = Duration::from_millis(2);
        let opens = Arc::new(Mutex::new(0));
        let parts = ConnectorParts {
            config: cfg,
            source: Arc::new(RereadingSource {
                records_are_progress,
                bad,
                opens: opens.clone(),
                opens_before_end: 10,
            }),
            sink: Box::new(MemorySink(h.sink.clone())),
            state: h.state.clone(),
        };
        let result = run_connector(parts, h.env(Arc::new(SystemClock))).await;
        if records_are_progress {
            // Each batch of records renews the budget: it took ten opens
            // (forever, for a child that never stops dying).
            result.unwrap();
            assert_eq!(*opens.lock().unwrap(), 10);
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                err.to_string(),
                "connector `c`, stream `items`: gave up after 3 consecutive retryable errors; last: the child exited with status 1"
            );
            // The first open and three retries.
            assert_eq!(*opens.lock().unwrap(), 4);
        }
        assert_eq!(h.committed("items"), Some(json!({"next": 0})));
    }
}
