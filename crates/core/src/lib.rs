//! The vocabulary every other tributary crate speaks: records, streams,
//! checkpoints, the `Source` and `Sink` traits, schedules, secrets, and
//! errors grouped by what the caller should do next.
//!
//! This crate does no I/O (timers aside) so that connectors, the runtime and tests can all
//! depend on it without pulling in a network stack.

pub mod backoff;
pub mod checkpoint;
pub mod clock;
pub mod error;
pub mod kafka_client;
pub mod payload;
pub mod record;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod source;
pub mod stream;
pub mod window;

pub use checkpoint::{Checkpoint, CheckpointSummary, Progress};
pub use clock::{Clock, ManualClock, ShiftedClock, SystemClock};
pub use error::{ConnectorError, ErrorClass};
pub use payload::{ExtraFields, Payload, RawJson};
pub use record::{Headers, Op, Record, DELETED_AT_HEADER, OP_HEADER, PARTIAL_UPDATE};
pub use schedule::{Schedule, ScheduleError};
pub use secret::Secret;
pub use sink::{BatchInfo, Sink, SinkStream};
pub use source::{
    BadRecord, Batch, FileSpan, GroupOffsets, Health, Poll, RawInput, ResetPosition, RunProgress,
    Source, StreamReader,
};
pub use stream::{LoadMode, StreamSpec};

/// Re-exported so connector crates implement the traits with the same macro version.
pub use async_trait::async_trait;
