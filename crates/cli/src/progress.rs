//! The live progress line per stream on an interactive terminal: records
//! delivered, current rate, and what the stream is doing (its state, as
//! every other view names it). A stream whose size is known (a generator's
//! `total`) shows a bar with a percentage and an ETA; while a windowed run
//! reads (an API source's initial load of months of data, or a long
//! catch-up) the bar is how far the window being read has moved from where
//! the run started to its end. Counts have thousands separators. Each line
//! is cut to the terminal's width (`wide_msg`), so no line wraps and a
//! resized terminal is redrawn cleanly.

use chrono::{DateTime, Utc};
use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_core::Clock;
use tributary_metrics::{Registry, StreamSnapshot, StreamState, StreamStatus};

/// What the line's bar measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bar {
    None,
    /// Records done of a known total.
    Count,
    /// A window run: its end, and the first window start seen for it.
    Window(DateTime<Utc>, DateTime<Utc>),
}

struct Line {
    bar: ProgressBar,
    since_count: u64,
    since: Instant,
    rate: f64,
    bar_kind: Bar,
}

/// Resolution of the bar: ten thousand steps.
const BAR_STEPS: u64 = 10_000;

pub fn spawn(
    multi: MultiProgress,
    metrics: Registry,
    clock: Arc<dyn Clock>,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar_style = ProgressStyle::with_template(
            "{spinner} {prefix:.bold} [{bar:20}] {percent:>3}% ETA {eta} {wide_msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| style.clone());
        let mut bars: BTreeMap<(String, String), Line> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let finished = tokio::select! {
                _ = tick.tick() => false,
                _ = done.cancelled() => true,
            };
            for s in metrics.snapshot() {
                let key = (s.connector.clone(), s.stream.clone());
                let line = bars.entry(key).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{}/{}", s.connector, s.stream));
                    Line {
                        bar,
                        since_count: 0,
                        since: Instant::now(),
                        rate: 0.0,
                        bar_kind: Bar::None,
                    }
                });
                let window = match (s.summary.window_start, s.summary.window_end) {
                    (Some(start), Some(end)) if end > start => Some((start, end)),
                    _ => None,
                };
                let (kind, window_text) = match (s.summary.progress, window) {
                    (Some(p), _) if p.total > 0 => {
                        line.bar.set_length(p.total);
                        line.bar.set_position(p.done);
                        (Bar::Count, String::new())
                    }
                    (_, Some((start, end))) => {
                        let origin = match line.bar_kind {
                            Bar::Window(run_end, origin) if run_end == end && origin <= start => {
                                origin
                            }
                            _ => start,
                        };
                        let total = (end - origin).num_seconds().max(1) as f64;
                        let done = (start - origin).num_seconds().max(0) as f64;
                        line.bar.set_length(BAR_STEPS);
                        line.bar
                            .set_position(((done / total) * BAR_STEPS as f64) as u64);
                        let text = format!(
                            ", window {} → {}",
                            start.format("%Y-%m-%d %H:%M"),
                            end.format("%Y-%m-%d %H:%M")
                        );
                        (Bar::Window(end, origin), text)
                    }
                    _ => (Bar::None, String::new()),
                };
                let was_bar = line.bar_kind != Bar::None;
                let is_bar = kind != Bar::None;
                if is_bar != was_bar
                    || matches!((kind, line.bar_kind), (Bar::Window(a, _), Bar::Window(b, _)) if a != b)
                {
                    // A new run: its own bar, and an ETA measured from now.
                    line.bar.set_style(if is_bar {
                        bar_style.clone()
                    } else {
                        style.clone()
                    });
                    line.bar.reset_eta();
                }
                line.bar_kind = kind;
                // Sources deliver in batches: measure the rate over a
                // window of at least a second so it does not jump per batch.
                let elapsed = line.since.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    line.rate = s.records_written.saturating_sub(line.since_count) as f64 / elapsed;
                    line.since_count = s.records_written;
                    line.since = Instant::now();
                }
                let status = status_text(&s, clock.now());
                let bad =
                    s.bad_records_skipped + s.bad_records_dead_lettered + s.bad_records_failed;
                let bad = if bad > 0 {
                    format!(", {} bad", HumanCount(bad))
                } else {
                    String::new()
                };
                line.bar.set_message(format!(
                    "{} records ({} committed{bad}), {}/s, {status}{window_text}",
                    HumanCount(s.records_written),
                    HumanCount(s.records_committed),
                    HumanCount(line.rate.round() as u64)
                ));
                line.bar.tick();
            }
            if finished {
                for line in bars.values() {
                    line.bar.finish();
                }
                return;
            }
        }
    })
}

/// What the stream is doing, led by its state as every view names it
/// (a stream backing off says `retrying`, never `running`).
fn status_text(s: &StreamSnapshot, now: DateTime<Utc>) -> String {
    let state = s.state(now);
    match (&s.status, state) {
        (StreamStatus::Retrying { attempt, reason }, _) => {
            format!("retrying (attempt {attempt}): {reason}")
        }
        (StreamStatus::Failed { reason }, _) => format!("failed: {reason}"),
        (StreamStatus::Stuck { reason }, _) => format!("stuck: {reason}"),
        (_, StreamState::Failed) => match s.failed_reason() {
            Some(r) => format!("failed: {r}"),
            None => "failed".into(),
        },
        (StreamStatus::Scheduled { next_run }, StreamState::Idle) => {
            format!("next run {}", next_run.format("%Y-%m-%d %H:%M:%S UTC"))
        }
        (StreamStatus::Scheduled { next_run }, other) => format!(
            "{}, next run {}",
            other.as_str(),
            next_run.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        (_, other) => other.as_str().to_string(),
    }
}
