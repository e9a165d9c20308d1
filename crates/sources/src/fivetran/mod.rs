//! `type = "fivetran"`: a connector written for the Fivetran Connector SDK
//! (`fivetran-connector-sdk` 3.x on PyPI, seed 001) run unchanged, as a
//! child process, under tributary's delivery guarantees.
//!
//! The SDK 3.x has no server: its `Connector` runs `schema()` and
//! `update()` in process and hands every operation to a sink of the SDK's
//! core (`fivetran_connector_sdk_core.Sink`), which `fivetran debug` points
//! at DuckDB. `driver.py`, started with the connector's virtualenv Python,
//! loads `connector.py` with the SDK's own loader and gives it a sink that
//! writes one JSON line per operation (see `protocol.rs`); the shared
//! subprocess runner reads them with backpressure and a silence timeout.
//!
//! A Fivetran connector has one state for all its tables, so it is one
//! stream here (`stream`, default `sync`) whose checkpoint is
//! `{"state": <the connector's state>}`; its records route themselves to a
//! target per table, and [`Source::routed_targets`](tributary_core::Source::routed_targets)
//! tells the sink each table's key and column types from `schema()`.

mod config;
mod protocol;
mod source;

pub use config::{FivetranConfig, Truncate};
pub use protocol::FIVETRAN_ID;
pub use source::{FivetranSource, OP_HEADER};
