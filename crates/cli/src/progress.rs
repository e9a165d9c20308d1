//! The live progress line per stream on an interactive terminal: records
//! delivered, current rate, and what the stream is doing. While a windowed
//! run reads (an API source's initial load of months of data, or a long
//! catch-up) the line becomes a bar: how far the window being read has moved
//! from where the run started to its end.

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_metrics::{Registry, StreamStatus};

struct Line {
    bar: ProgressBar,
    since_count: u64,
    since: Instant,
    rate: f64,
    /// The run being shown as a bar: its window's end, and the first window
    /// start seen for it (where the run started, as far as we saw).
    run: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Resolution of the bar: ten thousand steps.
const BAR_STEPS: u64 = 10_000;

pub fn spawn(
    multi: MultiProgress,
    metrics: Registry,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar_style =
            ProgressStyle::with_template("{spinner} {prefix:.bold} [{bar:24}] {percent:>3}% {msg}")
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
                        run: None,
                    }
                });
                let window = match (s.summary.window_start, s.summary.window_end) {
                    (Some(start), Some(end)) if end > start => Some((start, end)),
                    _ => None,
                };
                let window_text = match window {
                    Some((start, end)) => {
                        let origin = match line.run {
                            Some((run_end, origin)) if run_end == end && origin <= start => origin,
                            _ => {
                                line.bar.set_style(bar_style.clone());
                                line.bar.set_length(BAR_STEPS);
                                start
                            }
                        };
                        line.run = Some((end, origin));
                        let total = (end - origin).num_seconds().max(1) as f64;
                        let done = (start - origin).num_seconds().max(0) as f64;
                        line.bar
                            .set_position(((done / total) * BAR_STEPS as f64) as u64);
                        format!(
                            ", window {} → {}",
                            start.format("%Y-%m-%d %H:%M"),
                            end.format("%Y-%m-%d %H:%M")
                        )
                    }
                    None => {
                        if line.run.take().is_some() {
                            line.bar.set_style(style.clone());
                        }
                        String::new()
                    }
                };
                // Sources deliver in batches: measure the rate over a
                // window of at least a second so it does not jump per batch.
                let elapsed = line.since.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    line.rate = s.records_written.saturating_sub(line.since_count) as f64 / elapsed;
                    line.since_count = s.records_written;
                    line.since = Instant::now();
                }
                let status = match &s.status {
                    StreamStatus::Scheduled { next_run } => {
                        format!("next run {}", next_run.format("%Y-%m-%d %H:%M:%S UTC"))
                    }
                    StreamStatus::Retrying { attempt, reason } => {
                        format!("retry #{attempt}: {reason}")
                    }
                    StreamStatus::Failed { reason } => format!("failed: {reason}"),
                    StreamStatus::Stuck { reason } => format!("stuck: {reason}"),
                    other => format!("{other:?}").to_lowercase(),
                };
                let bad =
                    s.bad_records_skipped + s.bad_records_dead_lettered + s.bad_records_failed;
                let bad = if bad > 0 {
                    format!(", {bad} bad")
                } else {
                    String::new()
                };
                line.bar.set_message(format!(
                    "{} records ({} committed{bad}), {:.0}/s, {status}{window_text}",
                    s.records_written, s.records_committed, line.rate
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
