//! Test support shared across crates: the assertions every windowed
//! source's conformance suite makes (`conformance`), fault injection for the runtime
//! (`scripted`), end-to-end helpers for the `tributary` binary (`cli`), and
//! headless Chromium over WebDriver for pages (`browser`), API simulators
//! (`sim`: ChargeOver, paginated REST, Stripe Reporting, a WebSocket feed),
//! scratch schemas in the test PostgreSQL (`postgres`), publishing to the
//! test MQTT broker (`mqtt`), and a real Kafka-protocol broker (`kafka`:
//! Apache Kafka: one shared broker per test run, or one of a test's own).

/// `prefix`, this process's id, a counter and the clock's nanoseconds,
/// joined by `separator`: a name no other test, in this or another process
/// of the run, uses for a shared server's schema, topic or group.
pub fn unique_name(prefix: &str, separator: char) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let s = separator;
    format!(
        "{prefix}{s}{}{s}{}{s}{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub mod browser;
pub mod cli;
pub mod conformance;
pub mod docs;
pub mod kafka;
pub mod mqtt;
pub mod postgres;
pub mod scripted;
pub mod sim;
