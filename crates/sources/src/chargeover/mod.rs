//! The ChargeOver connector (`type = "chargeover"`, seed 000): every entity
//! is a stream read in windows `[last_processed_datetime, now)` on the shared
//! API engine, with ChargeOver's `where` / `order` / `limit` query language.
//!
//! Unlike the Kafka Connect connector it replaces, pages are fetched by
//! keyset on (datetime field, id field), not by `offset`: a record modified
//! while a window is paged moves past the window end and would shift every
//! later offset, skipping a record. See `listing.rs`.

mod config;
mod listing;
mod source;

pub use config::ChargeOverConfig;
pub use source::{apply_defaults, ChargeOverSource};
