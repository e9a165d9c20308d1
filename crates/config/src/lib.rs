//! Connector configuration: one TOML file per connector.
//!
//! The envelope (name, schedule, routing, state, runtime, metadata, bad-record
//! policy, per-stream overrides) is typed here. The `[source]` and `[sink]`
//! tables are kept raw ([`SectionConfig`]) and typed by the connector that
//! owns them (`crates/sources/src/<type>/config.rs`), through
//! [`SectionConfig::parse`], so every connector's errors still name the file,
//! the key and the line, with a did-you-mean suggestion.

mod error;
mod load;
mod model;
mod properties;
pub mod units;

pub use error::ConfigError;
pub use load::{
    blank_key, did_you_mean, load_file, load_file_for, load_file_with_env, load_str, load_str_for,
    load_str_with_env, EnvLookup, Needs, MAX_BATCH_SIZE, MAX_RETRY_WAIT, RUNTIME_COUNT_RANGES,
};
pub use model::*;
pub use properties::{Brokers, ClientProperties};
