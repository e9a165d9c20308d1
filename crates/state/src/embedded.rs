//! The default state store: one [redb] database file per connector,
//! `{dir}/{connector}.redb`.
//!
//! Why redb:
//! - **Pure Rust.** The obvious alternative, SQLite, links a C library through
//!   `libsqlite3-sys`; sqlx (PostgreSQL sink and state) pulls its own copy of
//!   that crate, and Cargo allows one package per `links` key in a build, so
//!   two SQLite bindings would clash. redb has no native dependency at all.
//! - **Crash safety by construction.** redb is a copy-on-write B-tree: a commit
//!   writes new pages, then flips one of two checksummed commit slots in the
//!   header. A `kill -9` (or power loss, with immediate durability) at any
//!   instant leaves either the previous committed transaction or the new one,
//!   never a mix, so a multi-stream commit lands whole or not at all.
//! - **An exclusive file lock.** A second process (a second `tributary run`, or
//!   a `state reset` against a running connector) gets [`StateError::Locked`]
//!   instead of corrupting the checkpoints under a live connector.
//!
//! Layout: one table, `checkpoints`, keyed by stream name, whose values are the
//! JSON of [`StoredCheckpoint`]. JSON rather than a binary encoding so that a
//! checkpoint stays readable and stays decodable when sources evolve their
//! state shapes.

use crate::{StateError, StateStore, StoredCheckpoint};
use chrono::Utc;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tributary_core::Checkpoint;

/// stream name -> JSON of [`StoredCheckpoint`].
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");

/// Checkpoints of one connector in a local redb file.
///
/// Cheap to share: the database handle is reference-counted, and every
/// operation runs on tokio's blocking pool because commits fsync.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating `dir` and the file if needed) the store of `connector`:
    /// `{dir}/{connector}.redb`.
    ///
    /// Fails with [`StateError::Locked`] while another handle (in this or any
    /// other process) has the file open: redb holds an exclusive lock on it.
    /// After a crash, opening repairs the file back to the last committed
    /// transaction, which can take a moment on large files.
    pub fn open(dir: &Path, connector: &str) -> Result<EmbeddedStore, StateError> {
        let path = dir.join(format!("{connector}.redb"));
        let shown = path.display().to_string();
        if connector.is_empty()
            || connector.contains(['/', '\\', '\0'])
            || connector == "."
            || connector == ".."
        {
            return Err(StateError::Storage {
                path: shown,
                message: format!("invalid connector name `{connector}` for a state file"),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| StateError::Storage {
            path: dir.display().to_string(),
            message: format!("cannot create state directory: {e}"),
        })?;
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                StateError::Locked {
                    path: shown.clone(),
                }
            }
            other => storage(&shown, other),
        })?;
        // Create the table up front so readers never see "table does not exist".
        let txn = db.begin_write().map_err(|e| storage(&shown, e))?;
        txn.open_table(CHECKPOINTS)
            .map_err(|e| storage(&shown, e))?;
        txn.commit().map_err(|e| storage(&shown, e))?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async runtime's worker threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &str) -> Result<T, StateError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let path = self.describe();
        let shown = path.clone();
        tokio::task::spawn_blocking(move || f(&db, &path))
            .await
            .map_err(|e| storage(&shown, format!("state store task failed: {e}")))?
    }
}

fn storage(path: &str, e: impl Display) -> StateError {
    StateError::Storage {
        path: path.to_string(),
        message: e.to_string(),
    }
}

fn decode(path: &str, stream: &str, bytes: &[u8]) -> Result<StoredCheckpoint, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        path: path.to_string(),
        stream: stream.to_string(),
        message: e.to_string(),
    })
}

#[async_trait::async_trait]
impl StateStore for EmbeddedStore {
    async fn load(&self, stream: &str) -> Result<Option<StoredCheckpoint>, StateError> {
        let stream = stream.to_string();
        self.blocking(move |db, path| {
            let txn = db.begin_read().map_err(|e| storage(path, e))?;
            let table = txn.open_table(CHECKPOINTS).map_err(|e| storage(path, e))?;
            match table.get(stream.as_str()).map_err(|e| storage(path, e))? {
                Some(v) => decode(path, &stream, v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError> {
        self.blocking(|db, path| {
            let txn = db.begin_read().map_err(|e| storage(path, e))?;
            let table = txn.open_table(CHECKPOINTS).map_err(|e| storage(path, e))?;
            // redb iterates `&str` keys in byte order: already sorted by stream name.
            let mut out = Vec::new();
            for entry in table.iter().map_err(|e| storage(path, e))? {
                let (k, v) = entry.map_err(|e| storage(path, e))?;
                out.push(decode(path, k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let checkpoints = checkpoints.to_vec();
        self.blocking(move |db, path| {
            let now = Utc::now();
            let mut txn = db.begin_write().map_err(|e| storage(path, e))?;
            // Immediate is redb's default; set it explicitly because the whole
            // no-gap guarantee rests on this commit being fsynced.
            txn.set_durability(Durability::Immediate)
                .map_err(|e| storage(path, e))?;
            {
                let mut table = txn.open_table(CHECKPOINTS).map_err(|e| storage(path, e))?;
                let mut buf = Vec::with_capacity(256);
                for (stream, checkpoint) in checkpoints {
                    // A corrupt previous entry must not wedge the stream: the
                    // new checkpoint replaces it and counts as an advance.
                    let previous = table
                        .get(stream.as_str())
                        .map_err(|e| storage(path, e))?
                        .and_then(|v| serde_json::from_slice::<StoredCheckpoint>(v.value()).ok());
                    let advanced_at = match previous {
                        Some(p) if p.checkpoint == checkpoint => p.advanced_at,
                        _ => now,
                    };
                    let stored = StoredCheckpoint {
                        stream,
                        checkpoint,
                        committed_at: now,
                        advanced_at,
                    };
                    buf.clear();
                    serde_json::to_writer(&mut buf, &stored).map_err(|e| storage(path, e))?;
                    table
                        .insert(stored.stream.as_str(), buf.as_slice())
                        .map_err(|e| storage(path, e))?;
                }
            }
            txn.commit().map_err(|e| storage(path, e))
        })
        .await
    }

    async fn reset(&self, stream: Option<&str>) -> Result<usize, StateError> {
        let stream = stream.map(str::to_string);
        self.blocking(move |db, path| {
            let mut txn = db.begin_write().map_err(|e| storage(path, e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| storage(path, e))?;
            let removed = {
                let mut table = txn.open_table(CHECKPOINTS).map_err(|e| storage(path, e))?;
                match &stream {
                    Some(s) => usize::from(
                        table
                            .remove(s.as_str())
                            .map_err(|e| storage(path, e))?
                            .is_some(),
                    ),
                    None => {
                        let n = table.len().map_err(|e| storage(path, e))?;
                        table.retain(|_, _| false).map_err(|e| storage(path, e))?;
                        usize::try_from(n).unwrap_or(usize::MAX)
                    }
                }
            };
            txn.commit().map_err(|e| storage(path, e))?;
            Ok(removed)
        })
        .await
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
