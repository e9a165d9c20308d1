//! `type = "airbyte"`: an Airbyte-protocol source (a PyPI
//! `airbyte-source-*` entry point, or `source-declarative-manifest` from
//! `airbyte-cdk` with a manifest) run as a child process.
//!
//! ```toml
//! [source]
//! type = "airbyte"
//! command = [".venv/bin/source-faker"]
//! config = { count = 1000, seed = 1 }
//! streams = ["users"]
//! sync = { users = { mode = "incremental" } }
//! ```
//!
//! **Commands.** `tributary check` runs `spec` (required config keys are
//! checked by name) and `check` (a FAILED status is a config error);
//! discovery runs `discover`; each read of a stream runs `read` with a
//! configured catalog holding only that stream (its sync mode, cursor
//! field and primary key) and `--state` from the stream's checkpoint.
//!
//! **Messages.** RECORD → a record keyed by the primary key; STATE
//! (per-stream, global or legacy) → the checkpoint `{"state": MESSAGE}`,
//! committed once the connector sent the next state or exited with 0 and
//! the sink acknowledged every record before it; a full refresh that
//! completed starts over next time. TRACE errors become our errors:
//! `config_error` a config error, the others retryable. LOG → our log at
//! its level. A line that is no Airbyte message is a bad record.
//!
//! **The child** is the shared [`subprocess`](crate::subprocess) runner's.

mod config;
mod source;

pub use config::{AirbyteConfig, StreamSync, SyncMode};
pub use source::{checkpoint_state, AirbyteSource};
