//! Test support shared across crates: fault injection for the runtime
//! (`scripted`), end-to-end helpers for the `tributary` binary (`cli`), and
//! HTTP API simulators (`sim`: ChargeOver, paginated REST), and scratch schemas
//! in the test PostgreSQL (`postgres`), and a real Kafka-protocol broker
//! (`kafka`: tansu, one process per test).

pub mod cli;
pub mod kafka;
pub mod postgres;
pub mod scripted;
pub mod sim;
