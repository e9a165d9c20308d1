//! The tributary runtime: it owns scheduling, the poll loop, retries with
//! backoff, the bad-record policy, publishing to the sink and committing
//! checkpoints after the sink acknowledged, and graceful shutdown. Connectors
//! only turn an outside system into batches and checkpoints.

mod connector;
mod dead_letter;
mod error;
mod handle;
mod transform;

pub use connector::{run_connector, run_connector_with, ConnectorParts, RunSummary, RuntimeEnv};
pub use error::RuntimeError;
pub use handle::{ConnectorHandle, ConnectorPhase};
pub use transform::Transform;
pub use tributary_core::clock::{self, Clock, ManualClock, ShiftedClock, SystemClock};
