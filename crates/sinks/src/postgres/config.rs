//! `[sink] type = "postgres"`: the typed table, validated.
//!
//! ```toml
//! [sink]
//! type = "postgres"
//! url = "postgres://loader:${PGPASSWORD}@db:5432/warehouse?sslmode=require"
//! # password = "${PGPASSWORD}"     # alternative to a password inside `url`
//! schema = "analytics"             # absent: the target's first dot-separated part
//! mode = "upsert"                  # upsert | append
//! delete = "soft"                  # soft | hard
//! deleted_column = "_deleted"      # soft deletes: boolean flag column
//! deleted_at_column = "_deleted_at" # soft deletes: when; "" leaves it out
//! primary_key = ["id"]             # every table; default: the stream's key
//! type_conflict = "widen"          # widen | fail | dead_letter
//! exactly_once = false             # store checkpoints in the data's transaction
//! checkpoint_table = "tributary_checkpoints"
//! dead_letter_table = "tributary_dead_letters"
//! batch_size = 5000                # rows per statement
//! connect_timeout = "10s"
//! [sink.tables."shop.orders"]      # per-target overrides
//! schema = "shop"
//! table = "orders"
//! primary_key = ["order_id"]
//! ```
//!
//! Every option is described in `docs/sinks/postgres.md`. Unknown keys are
//! errors with a did-you-mean suggestion.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::de_duration;
use tributary_core::Secret;

/// Whether records replace rows by primary key or are added as new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `INSERT … ON CONFLICT (pk) DO UPDATE`: one row per key, the latest wins.
    #[default]
    Upsert,
    /// Plain `INSERT`: every record is a new row (an event log, history).
    Append,
}

/// What `op = delete` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Keep the row, set `deleted_column = true` and `deleted_at_column`:
    /// what Fivetran destinations do (`_fivetran_deleted`).
    #[default]
    Soft,
    /// `DELETE` the rows with the key.
    Hard,
}

/// What happens when a value does not fit its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeConflict {
    /// Change the column to a type holding both (bigint → numeric → text →
    /// jsonb), as Fivetran's type promotion does. No record is lost.
    #[default]
    Widen,
    /// Stop the connector; nothing of the batch is committed.
    Fail,
    /// Write the whole record to the dead-letter table instead, in the same
    /// transaction, and go on.
    DeadLetter,
}

/// `[sink.tables."TARGET"]`: where one target goes and its key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOverride {
    /// Schema of the table; default: the sink's `schema`, else `public`.
    pub schema: Option<String>,
    /// Table name, used as is (quoted); default: the naming rule.
    pub table: Option<String>,
    /// Primary-key columns; default: the sink's `primary_key`, else the stream's.
    pub primary_key: Option<Vec<String>>,
}

/// The `[sink]` table of `type = "postgres"`, as written.
///
/// `Debug` is written by hand: `url` may hold a password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]`.
    /// A plain string, not a [`Secret`]: registering the whole URL with the
    /// redactor would mask it in every message; its password is registered
    /// instead, and messages show [`super::redact_url`].
    pub url: String,
    /// Overrides the password of `url` (keeps it out of the URL).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The schema of every table (targets' dots become `_`). Absent: the
    /// target's first dot-separated part is the schema (`public` without a dot).
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub mode: WriteMode,
    #[serde(default)]
    pub delete: DeleteMode,
    #[serde(default = "default_deleted_column")]
    pub deleted_column: String,
    #[serde(default = "default_deleted_at_column")]
    pub deleted_at_column: String,
    /// Primary-key columns of every table without its own `primary_key`.
    #[serde(default)]
    pub primary_key: Option<Vec<String>>,
    #[serde(default)]
    pub type_conflict: TypeConflict,
    #[serde(default)]
    pub exactly_once: bool,
    #[serde(default = "default_checkpoint_table")]
    pub checkpoint_table: String,
    #[serde(default = "default_dead_letter_table")]
    pub dead_letter_table: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_connect_timeout", deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    #[serde(default)]
    pub tables: BTreeMap<String, TableOverride>,
}

impl PostgresSinkConfig {
    /// A config with every default, for `url`.
    pub fn new(url: &str) -> Self {
        PostgresSinkConfig {
            url: url.to_string(),
            password: None,
            schema: None,
            mode: WriteMode::default(),
            delete: DeleteMode::default(),
            deleted_column: default_deleted_column(),
            deleted_at_column: default_deleted_at_column(),
            primary_key: None,
            type_conflict: TypeConflict::default(),
            exactly_once: false,
            checkpoint_table: default_checkpoint_table(),
            dead_letter_table: default_dead_letter_table(),
            batch_size: default_batch_size(),
            connect_timeout: default_connect_timeout(),
            tables: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &super::redact_url(&self.url))
            .field("password", &self.password)
            .field("schema", &self.schema)
            .field("mode", &self.mode)
            .field("delete", &self.delete)
            .field("deleted_column", &self.deleted_column)
            .field("deleted_at_column", &self.deleted_at_column)
            .field("primary_key", &self.primary_key)
            .field("type_conflict", &self.type_conflict)
            .field("exactly_once", &self.exactly_once)
            .field("checkpoint_table", &self.checkpoint_table)
            .field("dead_letter_table", &self.dead_letter_table)
            .field("batch_size", &self.batch_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("tables", &self.tables)
            .finish()
    }
}

fn default_deleted_column() -> String {
    "_deleted".into()
}

fn default_deleted_at_column() -> String {
    "_deleted_at".into()
}

fn default_checkpoint_table() -> String {
    "tributary_checkpoints".into()
}

fn default_dead_letter_table() -> String {
    "tributary_dead_letters".into()
}

fn default_batch_size() -> usize {
    5000
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
