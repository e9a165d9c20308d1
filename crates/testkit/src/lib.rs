//! Test support shared across crates: fault injection for the runtime
//! (`scripted`), and end-to-end helpers for the `tributary` binary (`cli`).
//! API simulators (ChargeOver, Stripe Reporting, paginated REST) land here
//! with their connectors.

pub mod cli;
pub mod scripted;
