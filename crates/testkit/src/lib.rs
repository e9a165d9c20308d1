//! Test support shared across crates: fault injection for the runtime
//! (`scripted`), end-to-end helpers for the `tributary` binary (`cli`), and
//! headless Chromium over WebDriver for pages (`browser`), HTTP API simulators (`sim`: ChargeOver, paginated REST), and scratch schemas
//! in the test PostgreSQL (`postgres`).

pub mod browser;
pub mod cli;
pub mod postgres;
pub mod scripted;
pub mod sim;
