//! The live progress line per stream on an interactive terminal: records
//! delivered, current rate, and what the stream is doing.

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
}

pub fn spawn(
    multi: MultiProgress,
    metrics: Registry,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
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
                    }
                });
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
                    "{} records ({} committed{bad}), {:.0}/s, {status}",
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
