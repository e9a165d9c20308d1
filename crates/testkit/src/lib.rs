//! Test support shared across crates: the assertions every windowed
//! source's conformance suite makes (`conformance`), fault injection for the runtime
//! (`scripted`), end-to-end helpers for the `tributary` binary (`cli`), and
//! headless Chromium over WebDriver for pages (`browser`), API simulators
//! (`sim`: ChargeOver, paginated REST, Stripe Reporting, a WebSocket feed),
//! scratch schemas in the test PostgreSQL (`postgres`), publishing to the
//! test MQTT broker (`mqtt`), and a real Kafka-protocol broker (`kafka`:
//! Apache Kafka: one shared broker per test run, or one of a test's own).

pub mod browser;
pub mod cli;
pub mod conformance;
pub mod kafka;
pub mod mqtt;
pub mod postgres;
pub mod scripted;
pub mod sim;
