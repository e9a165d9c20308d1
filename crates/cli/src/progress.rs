//! The live progress line per stream on an interactive terminal: records
//! delivered, current rate, and what the stream is doing.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_metrics::{Registry, StreamStatus};

pub fn spawn(
    multi: MultiProgress,
    metrics: Registry,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars: BTreeMap<(String, String), (ProgressBar, u64, Instant)> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let finished = tokio::select! {
                _ = tick.tick() => false,
                _ = done.cancelled() => true,
            };
            for s in metrics.snapshot() {
                let key = (s.connector.clone(), s.stream.clone());
                let entry = bars.entry(key).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{}/{}", s.connector, s.stream));
                    (bar, 0, Instant::now())
                });
                let elapsed = entry.2.elapsed().as_secs_f64().max(0.001);
                let rate = (s.records_written.saturating_sub(entry.1)) as f64 / elapsed;
                entry.1 = s.records_written;
                entry.2 = Instant::now();
                let status = match &s.status {
                    StreamStatus::Scheduled { next_run } => {
                        format!("next run {}", next_run.format("%Y-%m-%d %H:%M:%S UTC"))
                    }
                    StreamStatus::Retrying { attempt, reason } => {
                        format!("retry #{attempt}: {reason}")
                    }
                    StreamStatus::Failed { reason } => format!("failed: {reason}"),
                    other => format!("{other:?}").to_lowercase(),
                };
                let bad =
                    s.bad_records_skipped + s.bad_records_dead_lettered + s.bad_records_failed;
                let bad = if bad > 0 {
                    format!(", {bad} bad")
                } else {
                    String::new()
                };
                entry.0.set_message(format!(
                    "{} records ({} committed{bad}), {:.0}/s, {status}",
                    s.records_written, s.records_committed, rate
                ));
                entry.0.tick();
            }
            if finished {
                for (bar, _, _) in bars.values() {
                    bar.finish();
                }
                return;
            }
        }
    })
}
