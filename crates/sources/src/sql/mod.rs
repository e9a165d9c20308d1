//! `type = "sql"`: tables and queries of PostgreSQL, MySQL/MariaDB and
//! SQLite (seed 002's Database Source), read in keyset pages.
//!
//! ```toml
//! [source]
//! type = "sql"
//! url = "postgres://etl:${PGPASSWORD}@db:5432/shop"   # mysql://, mariadb://, sqlite://path.db
//! timezone = "UTC"            # zone of naive timestamp/DATETIME columns
//! fetch_size = 10000          # rows per page query
//! [source.streams.orders]
//! table = "orders"            # or query = "SELECT ... WHERE status = :status" + params = { status = "paid" }
//! columns = ["id", "updated_at", "amount"]   # default: all
//! primary_key = ["id"]        # default: the table's primary key
//! incremental = { column = "updated_at", kind = "timestamp", lag = "5s" }   # or kind = "id"; absent: full refresh
//! soft_delete_column = "deleted_at"
//! ```
//!
//! **Reading.** Every run reads pages of `fetch_size` rows ordered by the
//! keyset (cursor, then primary key), each page starting strictly after the
//! last row of the previous one: `WHERE (cursor, pk) > (:c, :pk) ORDER BY
//! cursor, pk LIMIT n`. Rows sharing a cursor value are never skipped at a
//! page boundary, and rows changed while a table is paged are read once
//! they have a later cursor. A timestamp cursor is read only up to the
//! database clock's `now() - lag` taken when the run starts, so a
//! transaction that commits late with an older timestamp (within `lag`) is
//! still read by the next run. Full-refresh streams (no `incremental`) read
//! the whole table every run, paged by primary key; without a key, one
//! streamed query.
//!
//! **Checkpoints** ([`SqlCheckpoint`]) hold the exact keyset position of
//! the last delivered row; a killed process resumes after the last
//! committed one. A full-refresh pass cut short resumes where it stopped.
//!
//! **Sessions** are read-only where the database allows it
//! (`default_transaction_read_only` in PostgreSQL, `SET SESSION TRANSACTION
//! READ ONLY` in MySQL, `SQLITE_OPEN_READONLY`). Table, column and schema
//! names from the config are validated and quoted; query parameters are
//! always bound.
//!
//! **Types** map to JSON per database (docs/sources/sql.md has the table):
//! exact decimal strings, RFC 3339 UTC timestamps, base64 bytes, JSON
//! columns as JSON, PostgreSQL arrays as arrays. A type without a mapping
//! is a config error naming the column and type; a value that cannot be
//! decoded makes its row a bad record.

mod config;
mod db;
mod dialect;
mod ident;
mod mysql;
mod params;
mod pg;
mod pg_copy;
mod plan;
mod reader;
mod row;
mod source;
mod sqlite;
#[cfg(test)]
mod tests;
mod value;

pub use config::{CursorKind, IncrementalConfig, SqlSourceConfig, SqlStreamConfig};
pub use reader::{SqlCheckpoint, SqlReader};
pub use source::SqlSource;
