//! `type = "singer"`: a Singer tap (any `tap-*` from PyPI, Meltano SDK or
//! singer-python) run as a child process.
//!
//! ```toml
//! [source]
//! type = "singer"
//! command = [".venv/bin/tap-postgres"]
//! config = { host = "127.0.0.1", user = "postgres", password = "${PGPASSWORD}", database = "app" }
//! streams = ["public-orders"]
//! replication = { public-orders = { method = "INCREMENTAL", key = "updated_at" } }
//! ```
//!
//! **Streams.** The tap's catalog (`--discover`, or `catalog = FILE`)
//! gives the streams, their key properties and JSON Schemas. Each selected
//! stream is one tributary stream with its own checkpoint: reading it runs
//! the tap with a catalog that selects only that stream, so streams make
//! progress, fail and resume independently.
//!
//! **Messages.** RECORD → a record keyed by the stream's key properties
//! (the latest SCHEMA's); STATE → the checkpoint `{"state": VALUE}`,
//! committed only once the tap has sent the next STATE or exited with 0
//! and the sink has acknowledged every record before it
//! ([`StatePolicy::AfterNext`](crate::subprocess::StatePolicy)); the next
//! run gets it as `--state`. ACTIVATE_VERSION is logged and the version
//! travels in the `singer.version` header. BATCH is a config error. A line
//! that is not a Singer message is a bad record located
//! `singer TAP (STREAM) stdout line N`.
//!
//! **The child** (start, kill, crashes, hangs, stderr) is the shared
//! [`subprocess`](crate::subprocess) runner's.

mod config;
mod source;

pub use config::{Replication, SingerConfig};
pub use source::{checkpoint_state, SingerSource};
