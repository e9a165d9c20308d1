//! Logs on stderr, through the secret redactor, and around the progress bars
//! so the two never interleave on a terminal.
//!
//! librdkafka retries a dead broker every second and logs each attempt
//! (and its `AllBrokersDown` summary) at ERROR: an unreachable cluster
//! would bury everything else. Its lines are folded by cause: the first of
//! a cause is printed, repeats are counted, and the cause is printed again
//! with the count at most once a minute while it lasts.

use crate::cli::LogFormat;
use indicatif::MultiProgress;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How often a repeating client-library cause is printed again.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

thread_local! {
    /// Repeats folded into the event being written on this thread.
    static FOLDED: Cell<u64> = const { Cell::new(0) };
}

#[derive(Clone)]
struct Stderr {
    progress: Option<MultiProgress>,
    format: LogFormat,
}

/// Buffers one log event and writes it, redacted, when dropped.
struct EventWriter {
    buf: Vec<u8>,
    progress: Option<MultiProgress>,
    format: LogFormat,
}

impl Write for EventWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let mut text = tributary_core::secret::redact(&String::from_utf8_lossy(&self.buf));
        let folded = FOLDED.with(|f| f.replace(0));
        if folded > 0 {
            let body = text.trim_end_matches('\n').len();
            let note = match self.format {
                LogFormat::Text => format!(" ({folded} more like it since it was last shown)"),
                LogFormat::Json => format!(",\"repeated\":{folded}"),
            };
            let at = match self.format {
                LogFormat::Json if text[..body].ends_with('}') => body - 1,
                _ => body,
            };
            text.insert_str(at, &note);
        }
        let emit = || {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        };
        match &self.progress {
            Some(p) => p.suspend(emit),
            None => emit(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            buf: Vec::with_capacity(256),
            progress: self.progress.clone(),
            format: self.format,
        }
    }
}

/// Folds the Kafka client library's log lines by cause (see the module
/// docs); `quiet` drops them all, for commands that report the failure
/// themselves.
struct KafkaClientFold {
    quiet: bool,
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    printed: Instant,
    since: u64,
}

fn is_kafka_client(target: &str) -> bool {
    target == "librdkafka" || target.starts_with("rdkafka")
}

/// What makes two client lines the same cause: the text without its
/// parenthesized details and numbers ("after 3ms in state CONNECT",
/// "4 identical error(s) suppressed", ports of the same broker list).
fn cause_key(message: &str) -> String {
    let mut key = String::with_capacity(message.len());
    let mut depth = 0usize;
    let mut last_digit = false;
    for c in message.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !last_digit {
                    key.push('#');
                }
                last_digit = true;
                continue;
            }
            c => key.push(c),
        }
        last_digit = false;
    }
    key
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S> Filter<S> for KafkaClientFold {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        if !is_kafka_client(event.metadata().target()) {
            return true;
        }
        if self.quiet {
            return false;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let key = cause_key(&message.0);
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = seen.get_mut(&key) else {
            seen.insert(
                key,
                Seen {
                    printed: now,
                    since: 0,
                },
            );
            return true;
        };
        s.since += 1;
        if now.duration_since(s.printed) < REPEAT_EVERY {
            return false;
        }
        FOLDED.with(|f| f.set(s.since - 1));
        s.since = 0;
        s.printed = now;
        true
    }
}

pub fn init(format: LogFormat, level: &str, progress: Option<MultiProgress>, quiet_kafka: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = Stderr { progress, format };
    let fold = KafkaClientFold {
        quiet: quiet_kafka,
        seen: Mutex::default(),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_filter(fold))
            .try_init(),
        LogFormat::Text => registry
            .with(layer.with_ansi(false).with_filter(fold))
            .try_init(),
    };
    if let Err(e) = result {
        err!("warning: logging not initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::cause_key;

    #[test]
    fn repeats_of_one_cause_share_a_key() {
        let a = "librdkafka: FAIL [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)";
        let b = "librdkafka: FAIL [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 12ms in state CONNECT, 4 identical error(s) suppressed)";
        assert_eq!(cause_key(a), cause_key(b));
        assert_ne!(
            cause_key(a),
            cause_key("librdkafka: Global error: AllBrokersDown")
        );
    }
}
