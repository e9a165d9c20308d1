//! Test support shared across crates: fault injection for the runtime
//! (`scripted`), end-to-end helpers for the `tributary` binary (`cli`), and
//! HTTP API simulators (`sim`: ChargeOver, paginated REST).

pub mod cli;
pub mod scripted;
pub mod sim;
