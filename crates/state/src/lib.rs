//! Where checkpoints live.
//!
//! A store is opened for one connector; keys are that connector's stream
//! names. Every backend commits atomically: after a crash at any instant a
//! stream has its old checkpoint or its new one, never a torn mix, and a
//! multi-stream commit lands whole or not at all.

mod embedded;
pub mod kafka;
pub mod ops;

pub use embedded::{EmbeddedStore, SnapshotStore, StoreAccess};
pub use kafka::KafkaStore;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tributary_core::Checkpoint;

/// A checkpoint as stored, with the times operators ask about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    pub stream: String,
    pub checkpoint: Checkpoint,
    /// When a commit last wrote this stream (even with an unchanged value).
    pub committed_at: DateTime<Utc>,
    /// When the checkpoint value last changed: the age seed 004 needed to
    /// notice a stream stuck in the past.
    pub advanced_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the store (a running connector). Stop it first.
    #[error(
        "state store {path} is in use by another tributary process (is the connector running?)"
    )]
    Locked { path: String },
    /// The store could not be read or written; retrying may help.
    #[error("state store {path}: {message}")]
    Storage { path: String, message: String },
    /// Another instance of the connector claimed the store after this one
    /// (see the Kafka backend's fencing): this one must stop writing.
    #[error("state store {path}: {message}")]
    Fenced { path: String, message: String },
    /// A stored value is not valid JSON, or the store is not a tributary store.
    #[error("state store {path}: corrupt entry for stream `{stream}`: {message}")]
    Corrupt {
        path: String,
        stream: String,
        message: String,
    },
}

impl StateError {
    /// Whether trying the same operation again may succeed: only storage
    /// errors (a lost connection, a full disk being freed) can; a lock, a
    /// fence or a corrupt entry will not go away by waiting.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Storage { .. })
    }
}

/// Checkpoints of one connector.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The committed checkpoint of `stream`, if any.
    async fn load(&self, stream: &str) -> Result<Option<StoredCheckpoint>, StateError>;

    /// Every stream's committed checkpoint, ordered by stream name.
    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError>;

    /// Commits several streams' checkpoints atomically and durably (fsynced
    /// before returning): all of them or, after a crash, none.
    async fn commit(&self, checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError>;

    /// Removes the checkpoint of `stream`, or of every stream when `None`;
    /// the stream then starts from the beginning. Returns how many were removed.
    async fn reset(&self, stream: Option<&str>) -> Result<usize, StateError>;

    /// Writes `entries` exactly as given, times included, in one atomic
    /// write; other streams are untouched. The operator's path
    /// (`state set`, `state reset --to...`, the admin server's offsets
    /// API): unlike [`StateStore::commit`] it does not stamp the times, so
    /// a restored backup is exact.
    async fn put(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError>;

    /// Makes the store hold exactly `entries` (`state import`): streams not
    /// in `entries` lose their checkpoint. Backends that can should do it in
    /// one atomic write; this default is two writes (remove all, then put),
    /// so a crash in between leaves an empty store that a second import fixes.
    async fn replace_all(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        self.reset(None).await?;
        self.put(entries).await
    }

    /// Called once by a connector about to run, before it loads anything.
    /// A backend that several processes can reach (Kafka) takes ownership
    /// of the connector's checkpoints here, so that a second instance is
    /// detected ([`StateError::Fenced`]) instead of both writing. The
    /// embedded store's file lock already does this when it is opened.
    async fn claim(&self) -> Result<(), StateError> {
        Ok(())
    }

    /// A human-readable location for messages (`/path/to/state/billing.redb`).
    fn describe(&self) -> String;

    /// The Kafka store behind this one, if it is one: the Kafka sink with
    /// `exactly_once` writes the checkpoints through the connector's own
    /// store, so that the topic is read once and both see the same
    /// commits.
    fn kafka(self: Arc<Self>) -> Option<Arc<KafkaStore>> {
        None
    }
}
