//! `type = "generator"`: deterministic sample data for tests, demos and
//! benchmarks (seed 002's Test Source).
//!
//! ```toml
//! [source]
//! type = "generator"
//! seed = 42                        # default 0
//! [source.streams.users]
//! record_type = "user"             # user | event | order | sensor
//! total = 10000                    # absent: endless
//! rate = 500                       # records/s; absent: as fast as possible
//! ```
//!
//! Record `i` (0-based) of a stream is a pure function of the seed, the
//! stream name and `i`, computed with a splitmix64 generator written here
//! (not the `rand` crate), so the same config produces the same data on
//! every machine and every version: a test can assert on it, and a resumed
//! stream continues exactly where the full run would have been. Sequence
//! keys (`id`, `event_id`, `order_id`, `reading_id`) are `i + 1`; timestamps
//! are 2024-01-01T00:00:00Z plus `i` seconds.
//!
//! Checkpoint: [`GeneratorCheckpoint`], `{"next": i}`: the next record to
//! produce. The stream ends after `total` records; all records are
//! `INITIAL_LOAD`.

mod config;
mod source;
#[cfg(test)]
mod tests;

pub use config::{GeneratorConfig, GeneratorStreamConfig, RecordType};
pub use source::{generate, GeneratorCheckpoint, GeneratorReader, GeneratorSource};
