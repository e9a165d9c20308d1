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
//!
//! The lock also keeps every other process out while the connector runs,
//! yet operators need `state list` and `state stuck` most on a live
//! connector (seed 004's step 2). So after every write the holder also
//! writes a read-only snapshot, `{dir}/{connector}.snapshot.json` (the
//! `state export` format, replaced by rename so readers never see half a
//! file); [`EmbeddedStore::open_or_snapshot`] falls back to it while the
//! store is locked. It is informational: redb stays the only source of
//! truth, and the snapshot is never read when the lock is free.

use crate::ops::StateExport;
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
    snapshot: Arc<Snapshot>,
}

/// Where and for whom the read-only snapshot is written.
#[derive(Debug)]
struct Snapshot {
    path: PathBuf,
    connector: String,
}

/// An embedded store opened by `state` commands: the store itself, or,
/// while a running connector holds it, its read-only snapshot.
pub enum StoreAccess {
    Exclusive(EmbeddedStore),
    /// The connector is running: reads come from the snapshot it keeps,
    /// writes fail with [`StateError::Locked`].
    Running(SnapshotStore),
}

fn snapshot_path(dir: &Path, connector: &str) -> PathBuf {
    dir.join(format!("{connector}.snapshot.json"))
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
        let entries = {
            let table = txn
                .open_table(CHECKPOINTS)
                .map_err(|e| storage(&shown, e))?;
            all_entries(&table, &shown)?
        };
        txn.commit().map_err(|e| storage(&shown, e))?;
        let snapshot = Snapshot {
            path: snapshot_path(dir, connector),
            connector: connector.to_string(),
        };
        snapshot.write(&entries);
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path),
            snapshot: Arc::new(snapshot),
        })
    }

    /// [`EmbeddedStore::open`], waiting up to `patience` while the lock is
    /// held. A connector starting at the moment an operator runs `state list`
    /// must not fail: those commands hold the lock for milliseconds. A
    /// running connector holds it for good, so the wait ends in
    /// [`StateError::Locked`].
    pub fn open_waiting(
        dir: &Path,
        connector: &str,
        patience: std::time::Duration,
    ) -> Result<EmbeddedStore, StateError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match EmbeddedStore::open(dir, connector) {
                Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Opens the store, or its snapshot while a running connector holds the
    /// lock; [`StateError::Locked`] when it is locked and has no snapshot
    /// (a connector started by an older tributary).
    pub fn open_or_snapshot(dir: &Path, connector: &str) -> Result<StoreAccess, StateError> {
        match EmbeddedStore::open(dir, connector) {
            Ok(store) => Ok(StoreAccess::Exclusive(store)),
            Err(StateError::Locked { path }) => {
                let snapshot = snapshot_path(dir, connector);
                if !snapshot.exists() {
                    return Err(StateError::Locked { path });
                }
                Ok(StoreAccess::Running(SnapshotStore {
                    store_path: PathBuf::from(path),
                    snapshot,
                }))
            }
            Err(e) => Err(e),
        }
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

    /// One durable write transaction over the table; the snapshot follows
    /// once it committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut redb::Table<'_, &'static str, &'static [u8]>, &str) -> Result<T, StateError>
            + Send
            + 'static,
    {
        let snapshot = Arc::clone(&self.snapshot);
        self.blocking(move |db, path| {
            let mut txn = db.begin_write().map_err(|e| storage(path, e))?;
            // Immediate is redb's default; set it explicitly because the whole
            // no-gap guarantee rests on this commit being fsynced.
            txn.set_durability(Durability::Immediate)
                .map_err(|e| storage(path, e))?;
            let (out, entries) = {
                let mut table = txn.open_table(CHECKPOINTS).map_err(|e| storage(path, e))?;
                let out = f(&mut table, path)?;
                (out, all_entries(&table, path)?)
            };
            txn.commit().map_err(|e| storage(path, e))?;
            snapshot.write(&entries);
            Ok(out)
        })
        .await
    }
}

impl Snapshot {
    /// Best effort: a failure is logged, never fails the commit it follows
    /// (the checkpoints are safe in redb; only the view is stale).
    fn write(&self, entries: &[StoredCheckpoint]) {
        let export = StateExport::new(&self.connector, Utc::now(), entries.to_vec());
        let tmp = self.path.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(&export)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the state snapshot; `tributary state list` may show older checkpoints while the connector runs");
        }
    }
}

fn all_entries(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &str,
) -> Result<Vec<StoredCheckpoint>, StateError> {
    // redb iterates `&str` keys in byte order: already sorted by stream name.
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| storage(path, e))? {
        let (k, v) = entry.map_err(|e| storage(path, e))?;
        out.push(decode(path, k.value(), v.value())?);
    }
    Ok(out)
}

fn insert(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    path: &str,
    stored: &StoredCheckpoint,
    buf: &mut Vec<u8>,
) -> Result<(), StateError> {
    buf.clear();
    serde_json::to_writer(&mut *buf, stored).map_err(|e| storage(path, e))?;
    table
        .insert(stored.stream.as_str(), buf.as_slice())
        .map_err(|e| storage(path, e))?;
    Ok(())
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
            all_entries(&table, path)
        })
        .await
    }

    async fn commit(&self, checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let checkpoints = checkpoints.to_vec();
        self.write(move |table, path| {
            let now = Utc::now();
            let mut buf = Vec::with_capacity(256);
            for (stream, checkpoint) in checkpoints {
                // A corrupt previous entry must not wedge the stream: the
                // new checkpoint replaces it and counts as an advance.
                let previous = table
                    .get(stream.as_str())
                    .map_err(|e| storage(path, e))?
                    .and_then(|v| serde_json::from_slice::<StoredCheckpoint>(v.value()).ok());
                // Only a moved position is an advance: a rewritten retry
                // counter or stuck mark keeps the stream's age.
                let advanced_at = match previous {
                    Some(p) if p.checkpoint.same_position(&checkpoint) => p.advanced_at,
                    _ => now,
                };
                let stored = StoredCheckpoint {
                    stream,
                    checkpoint,
                    committed_at: now,
                    advanced_at,
                };
                insert(table, path, &stored, &mut buf)?;
            }
            Ok(())
        })
        .await
    }

    async fn reset(&self, stream: Option<&str>) -> Result<usize, StateError> {
        let stream = stream.map(str::to_string);
        self.write(move |table, path| match &stream {
            Some(s) => Ok(usize::from(
                table
                    .remove(s.as_str())
                    .map_err(|e| storage(path, e))?
                    .is_some(),
            )),
            None => {
                let n = table.len().map_err(|e| storage(path, e))?;
                table.retain(|_, _| false).map_err(|e| storage(path, e))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        })
        .await
    }

    async fn put(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        let entries = entries.to_vec();
        self.write(move |table, path| {
            let mut buf = Vec::with_capacity(256);
            for stored in &entries {
                insert(table, path, stored, &mut buf)?;
            }
            Ok(())
        })
        .await
    }

    async fn replace_all(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        let entries = entries.to_vec();
        self.write(move |table, path| {
            table.retain(|_, _| false).map_err(|e| storage(path, e))?;
            let mut buf = Vec::with_capacity(256);
            for stored in &entries {
                insert(table, path, stored, &mut buf)?;
            }
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// The checkpoints of a running connector, as its last write left them
/// (see the module docs). Every write is refused with
/// [`StateError::Locked`]: changing state under a live connector is what
/// seed 004's recovery must never do.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    store_path: PathBuf,
    snapshot: PathBuf,
}

impl SnapshotStore {
    fn read(&self) -> Result<StateExport, StateError> {
        let shown = self.snapshot.display().to_string();
        let text = std::fs::read_to_string(&self.snapshot).map_err(|e| storage(&shown, e))?;
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: shown,
            stream: "*".into(),
            message: e.to_string(),
        })
    }

    fn locked(&self) -> StateError {
        StateError::Locked {
            path: self.store_path.display().to_string(),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for SnapshotStore {
    async fn load(&self, stream: &str) -> Result<Option<StoredCheckpoint>, StateError> {
        Ok(self
            .read()?
            .streams
            .into_iter()
            .find(|c| c.stream == stream))
    }

    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError> {
        Ok(self.read()?.streams)
    }

    async fn commit(&self, _checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError> {
        Err(self.locked())
    }

    async fn reset(&self, _stream: Option<&str>) -> Result<usize, StateError> {
        Err(self.locked())
    }

    async fn put(&self, _entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        Err(self.locked())
    }

    async fn replace_all(&self, _entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        Err(self.locked())
    }

    fn describe(&self) -> String {
        format!(
            "{} (read from {}: the connector is running)",
            self.store_path.display(),
            self.snapshot.display()
        )
    }
}
