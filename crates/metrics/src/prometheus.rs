//! The Prometheus exporter: renders the [`Registry`] in the OpenMetrics text
//! format with `prometheus-client`, or in Prometheus' classic text format
//! (0.0.4) for scrapers and parsers that ask for it.
//!
//! The counters live in the registry, not in `prometheus-client` metric
//! objects: a collector reads a snapshot at scrape time. So the runtime's
//! hot path stays plain atomics, the progress line and status API read the
//! same numbers the exporter shows, and gauges that depend on "now"
//! (checkpoint age, cursor lag, staleness) are computed against the
//! runtime's clock when scraped. docs/monitoring.md lists every metric.

use crate::{ConnectorSnapshot, HistogramSnapshot, Registry, StreamSnapshot, StreamState};
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::collections::HashSet;
use std::fmt::Error;

/// The two text formats a scraper can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0: what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus' classic text format 0.0.4: what older scrapers, parsers
    /// and `curl` without an `Accept` header get.
    Text,
}

impl Format {
    /// The format an `Accept` header prefers, by its quality values.
    /// OpenMetrics only when asked for, as the reference client libraries
    /// answer: a request without a preference gets the classic format every
    /// Prometheus parser reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut openmetrics = 0.0_f32;
        let mut text = 0.0_f32;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0_f32;
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of [`render`]'s output in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// The `Content-Type` of OpenMetrics output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the classic text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of every connector in this process, as of `now`, plus the
/// process' own (`process_*`) and the build's (`tributary_build_info`).
pub fn render(registry: &Registry, now: DateTime<Utc>, format: Format) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register_collector(Box::new(Snapshot {
        streams: registry.snapshot(),
        connectors: registry.connectors(),
        now,
    }));
    reg.register_collector(Box::new(Process));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    match format {
        Format::OpenMetrics => out,
        Format::Text => to_text_format(&out),
    }
}

/// OpenMetrics as the classic format: a counter's family is named after its
/// samples (`x_total`), there is no `# UNIT` or `# EOF`, and `HELP` does not
/// escape quotes. Nothing else differs for the metric types rendered here
/// (no exemplars, no `_created` samples, no info or state-set types).
fn to_text_format(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if counters.contains(name) {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            let tail = if *prefix == "# HELP " {
                tail.replace("\\\"", "\"")
            } else {
                tail.to_string()
            };
            Some(format!("{prefix}{name} {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The process' CPU, memory, threads and file descriptors, under the names
/// every Prometheus client library uses, read from /proc at scrape time.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let none = || Vec::<(Labels<'static>, f64)>::new();
        let one = |v: f64| vec![(Labels::new(), v)];
        gauge(
            &mut e,
            "tributary_build_info",
            "Always 1; the labels say which tributary build is running.",
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("arch", std::env::consts::ARCH),
                    ("os", std::env::consts::OS),
                ],
                1.0,
            )],
        )?;
        // Another OS or a /proc we may not read: no process metrics, not an error.
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            counter_f64(
                &mut e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                one((stat.utime + stat.stime) as f64 / ticks),
            )?;
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                one(stat.vsize as f64),
            )?;
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                one((stat.rss * procfs::page_size()) as f64),
            )?;
            gauge(
                &mut e,
                "process_threads",
                "Number of OS threads in the process.",
                one(stat.num_threads as f64),
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                gauge(
                    &mut e,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    one(boot as f64 + stat.starttime as f64 / ticks),
                )?;
            }
        }
        gauge(
            &mut e,
            "process_open_fds",
            "Number of open file descriptors.",
            me.fd_count().map_or_else(|_| none(), |n| one(n as f64)),
        )?;
        let max_fds = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(n) => Some(n as f64),
                procfs::process::LimitValue::Unlimited => None,
            });
        gauge(
            &mut e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max_fds.map_or_else(none, one),
        )?;
        Ok(())
    }
}

#[derive(Debug)]
struct Snapshot {
    streams: Vec<StreamSnapshot>,
    connectors: Vec<ConnectorSnapshot>,
    now: DateTime<Utc>,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn conn(x: &ConnectorSnapshot) -> Labels<'_> {
    vec![("connector", &x.connector)]
}

fn stream_labels(s: &StreamSnapshot) -> Labels<'_> {
    vec![("connector", &s.connector), ("stream", &s.stream)]
}

/// One metric family: its descriptor once, then one sample per label set.
fn family<'a, T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, T)>,
    mut encode: impl FnMut(&mut prometheus_client::encoding::MetricEncoder, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let mut m = metric.encode_family(&labels)?;
        encode(&mut m, &value)?;
    }
    Ok(())
}

fn counter<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), Error> {
    family(encoder, name, help, MetricType::Counter, samples, |m, v| {
        m.encode_counter::<NoLabelSet, _, u64>(v, None)
    })
}

fn counter_f64<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result<(), Error> {
    family(encoder, name, help, MetricType::Counter, samples, |m, v| {
        m.encode_counter::<NoLabelSet, _, f64>(v, None)
    })
}

fn gauge<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result<(), Error> {
    family(encoder, name, help, MetricType::Gauge, samples, |m, v| {
        m.encode_gauge(v)
    })
}

fn histogram<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, &'a HistogramSnapshot)>,
) -> Result<(), Error> {
    family(
        encoder,
        name,
        help,
        MetricType::Histogram,
        samples,
        |m, h| m.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None),
    )
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let s = &self.streams;
        let now = self.now;
        let per_stream = |f: fn(&StreamSnapshot) -> u64| {
            s.iter()
                .map(move |x| (stream_labels(x), f(x)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut e,
            "tributary_records_read",
            "Records that left the source (after the bad-record policy).",
            per_stream(|x| x.records_read),
        )?;
        counter(
            &mut e,
            "tributary_bytes_read",
            "Bytes of record JSON as the source produced it, before metadata fields.",
            per_stream(|x| x.bytes_read),
        )?;
        counter(
            &mut e,
            "tributary_records_written",
            "Records the sink accepted (not yet necessarily durable).",
            per_stream(|x| x.records_written),
        )?;
        counter(
            &mut e,
            "tributary_records_committed",
            "Records the sink acknowledged as durable and covered by a committed checkpoint.",
            per_stream(|x| x.records_committed),
        )?;
        counter(
            &mut e,
            "tributary_batches",
            "Batches read from the source.",
            per_stream(|x| x.batches),
        )?;
        counter(
            &mut e,
            "tributary_checkpoint_commits",
            "Checkpoint commits to the state store.",
            per_stream(|x| x.commits),
        )?;
        let bad = s.iter().flat_map(|x| {
            [
                ("skip", x.bad_records_skipped),
                ("dead_letter", x.bad_records_dead_lettered),
                ("fail", x.bad_records_failed),
            ]
            .into_iter()
            .map(move |(policy, n)| {
                let mut l = stream_labels(x);
                l.push(("policy", policy));
                (l, n)
            })
        });
        counter(
            &mut e,
            "tributary_bad_records",
            "Malformed inputs, by the bad-record policy that handled them.",
            bad,
        )?;
        let retries = s.iter().flat_map(|x| {
            x.retries_by_reason.iter().map(move |(reason, n)| {
                let mut l = stream_labels(x);
                l.push(("reason", reason.as_str()));
                (l, *n)
            })
        });
        counter(
            &mut e,
            "tributary_retries",
            "Retryable errors the stream backed off from, by reason.",
            retries,
        )?;
        histogram(
            &mut e,
            "tributary_poll_duration_seconds",
            "Time the source took to return a batch.",
            s.iter().map(|x| (stream_labels(x), &x.poll_latency)),
        )?;
        histogram(
            &mut e,
            "tributary_sink_write_duration_seconds",
            "Time the sink took to accept a batch of the stream.",
            s.iter().map(|x| (stream_labels(x), &x.sink_write_latency)),
        )?;
        gauge(
            &mut e,
            "tributary_checkpoint_age_seconds",
            "Seconds since the stream's committed checkpoint last changed.",
            s.iter().filter_map(|x| {
                x.checkpoint_age(now)
                    .map(|a| (stream_labels(x), a.as_secs_f64()))
            }),
        )?;
        gauge(
            &mut e,
            "tributary_cursor_lag_seconds",
            "Now minus the stream's datetime cursor (sources with a datetime cursor only).",
            s.iter().filter_map(|x| {
                x.cursor_lag(now)
                    .map(|a| (stream_labels(x), a.as_secs_f64()))
            }),
        )?;
        gauge(
            &mut e,
            "tributary_stream_stale",
            "1 when the stream's checkpoint is older than the connector's max_staleness.",
            s.iter().filter(|x| x.max_staleness.is_some()).map(|x| {
                let stale = if x.staleness(now).is_some() { 1.0 } else { 0.0 };
                (stream_labels(x), stale)
            }),
        )?;
        let states = s.iter().flat_map(|x| {
            let current = x.state(now);
            StreamState::ALL.into_iter().map(move |state| {
                let mut l = stream_labels(x);
                l.push(("state", state.as_str()));
                (l, if state == current { 1.0 } else { 0.0 })
            })
        });
        gauge(
            &mut e,
            "tributary_stream_state",
            "1 for the stream's current state (running, retrying, idle, stale, stuck, failed, finished), 0 for the others.",
            states,
        )?;

        let c = &self.connectors;
        gauge(
            &mut e,
            "tributary_max_staleness_seconds",
            "The connector's runtime.max_staleness.",
            c.iter()
                .filter_map(|x| x.max_staleness_seconds.map(|m| (conn(x), m as f64))),
        )?;
        let http = c.iter().flat_map(|x| {
            x.http_responses.iter().map(move |(status, n)| {
                let mut l = conn(x);
                l.push(("status", status.as_str()));
                (l, *n)
            })
        });
        counter(
            &mut e,
            "tributary_http_responses",
            "HTTP responses of the connector's API client by status code; `timeout` and `connect` for requests that got none.",
            http,
        )?;
        let limited: Vec<&ConnectorSnapshot> =
            c.iter().filter(|x| x.rate_limit_waits > 0).collect();
        counter(
            &mut e,
            "tributary_rate_limit_waits",
            "Requests that waited for the connector's rate limiter.",
            limited.iter().map(|x| (conn(x), x.rate_limit_waits)),
        )?;
        counter_f64(
            &mut e,
            "tributary_rate_limit_wait_seconds",
            "Total time requests waited for the connector's rate limiter.",
            limited.iter().map(|x| (conn(x), x.rate_limit_wait_seconds)),
        )?;
        histogram(
            &mut e,
            "tributary_sink_flush_duration_seconds",
            "Time the sink's flush (its durable acknowledgement, before each checkpoint commit) took.",
            c.iter()
                .filter(|x| x.sink_flush.count > 0)
                .map(|x| (conn(x), &x.sink_flush)),
        )?;
        Ok(())
    }
}

// Labels are plain `(&str, &str)` pairs; make sure that stays a label set.
const _: fn() = || {
    fn is_label_set<T: EncodeLabelSet>() {}
    is_label_set::<Labels<'static>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectorEvent, RetryReason, StreamEvent};
    use std::time::Duration;

    #[test]
    fn renders_counters_gauges_and_histograms_with_labels() {
        let reg = Registry::new();
        let now = DateTime::parse_from_rfc3339("2024-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = reg.stream("shop", "orders");
        s.record(StreamEvent::BatchRead {
            records: 3,
            bytes: 120,
            poll: Duration::from_millis(2),
        });
        s.record(StreamEvent::Retry {
            reason: RetryReason::SourceError,
            message: "x".into(),
            at: Utc::now(),
        });
        s.record(StreamEvent::Committed {
            records: 3,
            at: now - chrono::Duration::seconds(90),
            advanced: true,
            summary: crate::CheckpointSummary {
                cursor: Some(now - chrono::Duration::seconds(600)),
                ..Default::default()
            },
            stuck_reason: None,
        });
        reg.connector("shop")
            .record(ConnectorEvent::HttpResponse { status: 503 });
        let text = render(&reg, now, Format::OpenMetrics);
        for line in [
            "# TYPE tributary_records_read counter",
            "tributary_records_read_total{connector=\"shop\",stream=\"orders\"} 3",
            "tributary_bytes_read_total{connector=\"shop\",stream=\"orders\"} 120",
            "tributary_retries_total{connector=\"shop\",stream=\"orders\",reason=\"source_error\"} 1",
            "tributary_retries_total{connector=\"shop\",stream=\"orders\",reason=\"throttled\"} 0",
            "tributary_checkpoint_age_seconds{connector=\"shop\",stream=\"orders\"} 90.0",
            "tributary_cursor_lag_seconds{connector=\"shop\",stream=\"orders\"} 600.0",
            "tributary_poll_duration_seconds_count{connector=\"shop\",stream=\"orders\"} 1",
            "tributary_poll_duration_seconds_bucket{le=\"0.0025\",connector=\"shop\",stream=\"orders\"} 1",
            "tributary_stream_state{connector=\"shop\",stream=\"orders\",state=\"running\"} 1.0",
            "tributary_http_responses_total{connector=\"shop\",status=\"503\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn accept_picks_the_format_by_quality() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn the_classic_format_names_counter_families_after_their_samples() {
        let om = "# HELP x_read Records \\\"read\\\".\n# TYPE x_read counter\nx_read_total{a=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1.0\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP x_read_total Records \"read\".\n# TYPE x_read_total counter\nx_read_total{a=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1.0\n"
        );
    }
}
