//! The PostgreSQL sink: a Fivetran-style destination. Tables are created
//! from the stream's JSON Schema (or inferred from the records), records are
//! upserted on the primary key or appended, deletes are soft or hard,
//! columns are added as records gain fields, and type conflicts follow a
//! policy. The user guide is `docs/sinks/postgres.md`; this comment says how
//! it is built.
//!
//! # One transaction per acknowledgement
//!
//! The sink holds one connection. `write` opens a transaction (`BEGIN`) if
//! none is open and stages the records in it at once: DDL for new tables,
//! columns and widened types, then one statement per `batch_size` rows
//! (`INSERT … SELECT … FROM json_populate_recordset(NULL::table, $1::json)`:
//! a single bound parameter carries the rows, PostgreSQL converts each JSON
//! value to its column's type, and no value is ever spliced into SQL).
//! `flush` is `COMMIT`: the acknowledgement. With `exactly_once`, the
//! checkpoints are upserted into the checkpoint table in the same
//! transaction first. Nothing written since the last flush is visible before
//! it, and a crash or a dropped sink rolls it all back.
//!
//! # Surviving a lost connection
//!
//! A failure aborts the transaction, so every statement it staged since the
//! last commit is gone, not only the failing one. The sink therefore keeps a
//! journal of the statements (SQL and payload) applied in the open
//! transaction. After an error it drops the connection and forgets what it
//! knew about tables; the next `write` or `flush` (the runtime's retry)
//! reconnects, replays the journal in a new transaction and goes on. A
//! `write` that failed is removed from the journal, since the runtime passes
//! the same records again. The journal holds at most the records of one
//! flush (`flush_records`).
//!
//! When `COMMIT` itself fails without an answer, the transaction may or may
//! not have committed. Its id (`txid_current()`, taken at `BEGIN`) is kept,
//! and the retry asks `txid_status` first: committed means done (replaying
//! would duplicate appended rows), aborted means replay.
//!
//! # Files
//!
//! `config.rs` the options; `schema.rs` names and types (pure); `stage.rs`
//! records → DDL and statements; `db.rs` every sqlx call; `error.rs` what
//! the runtime does about each SQLSTATE. This file: the connection, the
//! transaction and journal, routing, and the [`Sink`] impl.

mod config;
mod db;
mod error;
mod schema;
mod stage;

pub use config::{DeleteMode, PostgresSinkConfig, TableOverride, TypeConflict, WriteMode};
pub use schema::{ident, quote, table_for_target, PgType};

use error::classify;
use schema::{qualified, split_qualified};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{BatchInfo, Checkpoint, ConnectorError, Record, Sink, SinkStream};

/// The record's value as a tree: tables need its fields, so a record kept
/// as JSON text is parsed here.
fn record_value(record: &Record) -> Cow<'_, Value> {
    record.value.to_value()
}

/// `url` for messages and `Debug`, credentials masked
/// ([`tributary_core::secret::mask_url`]).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => tributary_core::secret::mask_url(&parsed),
        Err(_) => "(invalid URL)".into(),
    }
}

/// The sink's settings, resolved from [`PostgresSinkConfig`].
#[derive(Debug, Clone)]
struct Settings {
    schema: Option<String>,
    mode: WriteMode,
    delete: DeleteMode,
    deleted_column: String,
    deleted_at_column: Option<String>,
    primary_key: Option<Vec<String>>,
    type_conflict: TypeConflict,
    exactly_once: bool,
    checkpoint_table: (String, String),
    dead_letter_table: (String, String),
    batch_size: usize,
    connect_timeout: Duration,
    tables: BTreeMap<String, TableOverride>,
}

/// One statement applied in the open transaction, kept for replay.
struct Stmt {
    sql: String,
    /// Text parameters `$1..`; none means a utility statement (DDL).
    binds: Vec<String>,
}

/// What a stream told the sink about a target.
struct StreamInfo {
    primary_key: Vec<String>,
    declared: Vec<(String, PgType)>,
}

/// A destination table and what the sink knows of it.
struct Table {
    schema: String,
    name: String,
    /// `"schema"."name"`.
    sql: String,
    /// Primary-key columns (identifiers).
    pk: Vec<String>,
    /// Columns the stream's JSON Schema declares.
    declared: Vec<(String, PgType)>,
    /// The table as seen inside the open transaction; `None` until read
    /// (and again after a rollback).
    shape: Option<Shape>,
    warned_keyless: bool,
}

#[derive(Clone)]
struct Shape {
    exists: bool,
    columns: Vec<(String, PgType)>,
    index: HashMap<String, usize>,
}

impl Shape {
    fn absent() -> Self {
        Shape {
            exists: false,
            columns: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn push(&mut self, name: String, ty: PgType) {
        if let Some(&i) = self.index.get(&name) {
            self.columns[i].1 = ty;
        } else {
            self.index.insert(name.clone(), self.columns.len());
            self.columns.push((name, ty));
        }
    }

    fn get(&self, name: &str) -> Option<&PgType> {
        self.index.get(name).map(|&i| &self.columns[i].1)
    }
}

/// Writes records into PostgreSQL tables. See the [module docs](self).
pub struct PostgresSink {
    settings: Settings,
    /// Holds the password: never printed (`PgConnectOptions`' `Debug` would).
    options: PgConnectOptions,
    /// The URL with its password masked, for messages.
    display_url: String,
    connector: String,
    conn: Option<PgConnection>,
    /// A transaction is open on `conn` with the whole journal applied.
    live: bool,
    /// `txid_current()` of the open transaction.
    xid: Option<i64>,
    /// A transaction whose `COMMIT` got no answer.
    in_doubt: Option<i64>,
    journal: Vec<Stmt>,
    streams: HashMap<String, StreamInfo>,
    routes: HashMap<String, usize>,
    tables: Vec<Table>,
    by_name: HashMap<(String, String), usize>,
    /// The checkpoint / dead-letter table exists in the open transaction's view.
    checkpoint_ready: bool,
    dead_letter_ready: bool,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("url", &self.display_url)
            .field("connector", &self.connector)
            .field("settings", &self.settings)
            .field("open_transaction", &self.live)
            .field("journal", &self.journal.len())
            .finish()
    }
}

impl PostgresSink {
    /// Types and validates a `[sink]` table with `type = "postgres"`. Nothing
    /// connects until the first use, so `tributary check` and config errors
    /// need no database.
    pub fn from_section(
        section: &SectionConfig,
        ctx: &crate::SinkContext,
    ) -> Result<Self, ConfigError> {
        let config: PostgresSinkConfig = section.parse()?;
        Self::new(config, &ctx.connector).map_err(|(key, message)| section.error(&key, message))
    }

    /// A sink from a typed config; an invalid one is `(key, message)`.
    pub fn new(config: PostgresSinkConfig, connector: &str) -> Result<Self, (String, String)> {
        let err = |key: &str, message: &str| (key.to_string(), message.to_string());
        let url = config.url.as_str();
        let is_postgres =
            url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql"));
        if !is_postgres {
            return Err(err(
                "url",
                "not a PostgreSQL URL; expected postgres://user[:password]@host[:port]/database",
            ));
        }
        // The redactor then masks the password wherever it might surface.
        tributary_core::secret::register_credentials(url);
        let mut options: PgConnectOptions = url.parse().map_err(|_| {
            err(
                "url",
                "not a valid PostgreSQL URL; expected postgres://user[:password]@host[:port]/database",
            )
        })?;
        if let Some(pw) = &config.password {
            options = options.password(pw.expose());
        }
        if options.get_application_name().is_none() {
            options = options.application_name("tributary");
        }
        // Timestamps converted to text when a column widens are then ISO
        // 8601 in UTC, whatever the server's default time zone.
        options = options.options([("TimeZone", "UTC")]);
        if config.batch_size == 0 {
            return Err(err("batch_size", "must be greater than 0"));
        }
        if config.delete == DeleteMode::Soft && config.deleted_column.is_empty() {
            return Err(err(
                "deleted_column",
                "must not be empty with delete = \"soft\"",
            ));
        }
        if !config.deleted_at_column.is_empty() && config.deleted_at_column == config.deleted_column
        {
            return Err(err("deleted_at_column", "must differ from deleted_column"));
        }
        for (key, value) in [
            ("checkpoint_table", &config.checkpoint_table),
            ("dead_letter_table", &config.dead_letter_table),
        ] {
            if value.is_empty() || value.starts_with('.') || value.ends_with('.') {
                return Err(err(key, "must be `table` or `schema.table`"));
            }
        }
        if config.schema.as_deref() == Some("") {
            return Err(err("schema", "must not be empty (leave it out instead)"));
        }
        check_key(config.primary_key.as_deref(), "primary_key")?;
        for (target, t) in &config.tables {
            let at = |k: &str| format!("tables.{}.{k}", toml_key(target));
            if t.schema.as_deref() == Some("") {
                return Err((at("schema"), "must not be empty".into()));
            }
            if t.table.as_deref() == Some("") {
                return Err((at("table"), "must not be empty".into()));
            }
            check_key(t.primary_key.as_deref(), &at("primary_key"))?;
        }
        let default_schema = config.schema.as_deref().unwrap_or("public");
        let settings = Settings {
            schema: config.schema.as_deref().map(|s| ident(s).into_owned()),
            mode: config.mode,
            delete: config.delete,
            deleted_column: ident(&config.deleted_column).into_owned(),
            deleted_at_column: (!config.deleted_at_column.is_empty())
                .then(|| ident(&config.deleted_at_column).into_owned()),
            primary_key: config
                .primary_key
                .as_ref()
                .map(|k| k.iter().map(|c| ident(c).into_owned()).collect()),
            type_conflict: config.type_conflict,
            exactly_once: config.exactly_once,
            checkpoint_table: split_qualified(&config.checkpoint_table, default_schema),
            dead_letter_table: split_qualified(&config.dead_letter_table, default_schema),
            batch_size: config.batch_size,
            connect_timeout: config.connect_timeout,
            tables: config.tables,
        };
        Ok(PostgresSink {
            settings,
            options,
            display_url: redact_url(url),
            connector: connector.to_string(),
            conn: None,
            live: false,
            xid: None,
            in_doubt: None,
            journal: Vec::new(),
            streams: HashMap::new(),
            routes: HashMap::new(),
            tables: Vec::new(),
            by_name: HashMap::new(),
            checkpoint_ready: false,
            dead_letter_ready: false,
        })
    }

    /// The URL with its password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    fn soft(&self) -> bool {
        self.settings.delete == DeleteMode::Soft
    }

    // ---- connection and transaction --------------------------------------

    async fn connection(&mut self) -> Result<&mut PgConnection, ConnectorError> {
        if self.conn.is_none() {
            let connecting = db::connect(&self.options);
            let conn = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    return Err(classify(
                        &format!("postgres sink: connecting to {}", self.display_url),
                        &e,
                    ))
                }
                Err(_) => {
                    return Err(ConnectorError::retryable(format!(
                        "postgres sink: connecting to {}: no answer within {:?}",
                        self.display_url, self.settings.connect_timeout
                    )))
                }
            };
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("postgres sink: no connection after connecting"))
    }

    /// Forgets the transaction after an error: the connection is dropped
    /// (which rolls it back on the server) and everything read inside it.
    /// The journal stays, for [`Self::begin`] to replay.
    fn abort(&mut self) {
        self.conn = None;
        self.live = false;
        self.xid = None;
        self.checkpoint_ready = false;
        self.dead_letter_ready = false;
        for t in &mut self.tables {
            t.shape = None;
        }
    }

    /// Opens the transaction if none is, replaying the journal into it.
    async fn begin(&mut self) -> Result<(), ConnectorError> {
        if self.live {
            return Ok(());
        }
        self.resolve_in_doubt().await?;
        let result = self.begin_and_replay().await;
        if result.is_err() {
            self.abort();
        }
        result
    }

    async fn begin_and_replay(&mut self) -> Result<(), ConnectorError> {
        let context = format!(
            "postgres sink: beginning a transaction on {}",
            self.display_url
        );
        let journal = std::mem::take(&mut self.journal);
        let replayed = self.replay(&context, &journal).await;
        self.journal = journal;
        let xid = replayed?;
        if !self.journal.is_empty() {
            tracing::info!(
                statements = self.journal.len(),
                "postgres sink: replayed the uncommitted batch in a new transaction"
            );
        }
        self.xid = Some(xid);
        self.live = true;
        Ok(())
    }

    /// `BEGIN`, then the journal; returns the transaction id.
    async fn replay(&mut self, context: &str, journal: &[Stmt]) -> Result<i64, ConnectorError> {
        let conn = self.connection().await?;
        db::simple(conn, "BEGIN")
            .await
            .map_err(|e| classify(context, &e))?;
        let xid = db::txid_current(conn)
            .await
            .map_err(|e| classify(context, &e))?;
        for stmt in journal {
            execute(conn, stmt).await.map_err(|e| {
                classify(
                    "postgres sink: replaying the uncommitted batch after reconnecting",
                    &e,
                )
            })?;
        }
        Ok(xid)
    }

    /// After a `COMMIT` without an answer: finds out whether it committed.
    /// `true` means it did (the journal is then done with).
    async fn resolve_in_doubt(&mut self) -> Result<bool, ConnectorError> {
        let Some(xid) = self.in_doubt else {
            return Ok(false);
        };
        let conn = self.connection().await?;
        let status = match db::txid_status(conn, xid).await {
            Ok(s) => s,
            Err(e) => {
                self.abort();
                return Err(classify(
                    "postgres sink: asking whether the last COMMIT landed",
                    &e,
                ));
            }
        };
        match status.as_deref() {
            Some("committed") => {
                tracing::info!("postgres sink: the COMMIT that lost its connection did commit");
                self.journal.clear();
                self.in_doubt = None;
                Ok(true)
            }
            Some("in progress") => Err(ConnectorError::retryable(
                "postgres sink: the COMMIT that lost its connection is still in progress",
            )),
            // Aborted (or too old to tell): replay, at worst a duplicate.
            _ => {
                self.in_doubt = None;
                Ok(false)
            }
        }
    }

    /// Runs `stmt` in the open transaction and journals it.
    async fn run(&mut self, stmt: Stmt, what: &str) -> Result<(), ConnectorError> {
        self.run_unjournaled(&stmt, what).await?;
        self.journal.push(stmt);
        Ok(())
    }

    /// Runs `stmt` in the open transaction, for statements `commit` repeats
    /// after every replay anyway (the checkpoint table and its upsert).
    async fn run_unjournaled(&mut self, stmt: &Stmt, what: &str) -> Result<(), ConnectorError> {
        let conn = self.connection().await?;
        execute(conn, stmt)
            .await
            .map_err(|e| classify(&format!("postgres sink: {what}"), &e))
    }

    /// Commits the open transaction, with `checkpoints` when given.
    async fn commit(
        &mut self,
        checkpoints: Option<&[(String, Checkpoint)]>,
    ) -> Result<(), ConnectorError> {
        if self.resolve_in_doubt().await? {
            return Ok(());
        }
        let checkpoints = checkpoints.filter(|c| !c.is_empty());
        if self.journal.is_empty() && checkpoints.is_none() && !self.live {
            return Ok(());
        }
        self.begin().await?;
        if let Some(checkpoints) = checkpoints {
            if let Err(e) = self.store_checkpoints(checkpoints).await {
                self.abort();
                return Err(e);
            }
        }
        let context = format!("postgres sink: committing on {}", self.display_url);
        let Some(conn) = self.conn.as_mut() else {
            return Err(ConnectorError::fatal(
                "postgres sink: no connection to commit on",
            ));
        };
        match db::simple(conn, "COMMIT").await {
            Ok(_) => {
                self.journal.clear();
                self.live = false;
                self.xid = None;
                Ok(())
            }
            Err(e) => {
                // A database error means it rolled back: replay. Anything
                // else (the connection died) leaves the outcome unknown.
                if !matches!(e, sqlx::Error::Database(_)) {
                    self.in_doubt = self.xid;
                }
                self.abort();
                Err(classify(&context, &e))
            }
        }
    }

    async fn store_checkpoints(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
    ) -> Result<(), ConnectorError> {
        let (schema, name) = self.settings.checkpoint_table.clone();
        let table = qualified(&schema, &name);
        if !self.checkpoint_ready {
            self.ensure_schema(&schema, false).await?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 connector text NOT NULL, stream text NOT NULL, checkpoint jsonb NOT NULL, \
                 committed_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (connector, stream))"
            );
            let stmt = Stmt {
                sql: ddl,
                binds: Vec::new(),
            };
            self.run_unjournaled(&stmt, "creating the checkpoint table")
                .await?;
            self.checkpoint_ready = true;
        }
        let map: serde_json::Map<String, Value> = checkpoints
            .iter()
            .map(|(stream, c)| (stream.clone(), c.0.clone()))
            .collect();
        let sql = format!(
            "INSERT INTO {table} (connector, stream, checkpoint, committed_at) \
             SELECT $1, e.key, e.value::jsonb, now() FROM json_each($2::json) AS e \
             ON CONFLICT (connector, stream) DO UPDATE \
             SET checkpoint = EXCLUDED.checkpoint, committed_at = EXCLUDED.committed_at"
        );
        let stmt = Stmt {
            sql,
            binds: vec![self.connector.clone(), Value::Object(map).to_string()],
        };
        self.run_unjournaled(&stmt, "storing checkpoints").await
    }

    /// Creates `schema` if it does not exist. Checked first because
    /// `CREATE SCHEMA IF NOT EXISTS` needs the CREATE privilege on the
    /// database even when the schema is there.
    async fn ensure_schema(&mut self, schema: &str, journaled: bool) -> Result<(), ConnectorError> {
        let conn = self.connection().await?;
        let sql = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
        let exists = db::boolean(conn, sql, schema)
            .await
            .map_err(|e| classify("postgres sink: looking up a schema", &e))?;
        if exists {
            return Ok(());
        }
        let stmt = Stmt {
            sql: format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)),
            binds: Vec::new(),
        };
        if journaled {
            self.run(stmt, "creating a schema").await
        } else {
            self.run_unjournaled(&stmt, "creating a schema").await
        }
    }

    /// In one transaction that is rolled back, whatever happens: creates
    /// every missing target schema and a table in every target schema, and
    /// asks whether the user may write the target tables that exist. A
    /// user without CREATE (or INSERT, UPDATE) fails here, in `check`,
    /// naming the schema or table, rather than at the first write of `run`.
    async fn check_privileges(&mut self) -> Result<(), ConnectorError> {
        let targets: Vec<String> = self.streams.keys().cloned().collect();
        let mut tables: Vec<(String, String)> = targets
            .iter()
            .map(|t| {
                let i = self.route(t);
                (self.tables[i].schema.clone(), self.tables[i].name.clone())
            })
            .collect();
        if self.settings.exactly_once {
            tables.push(self.settings.checkpoint_table.clone());
        }
        let update = self.settings.mode == WriteMode::Upsert;
        let conn = self.connection().await?;
        db::simple(conn, "BEGIN")
            .await
            .map_err(|e| classify("postgres sink: checking privileges", &e))?;
        let result = dry_run(conn, &tables, update).await;
        let rolled_back = db::simple(conn, "ROLLBACK").await;
        result?;
        rolled_back.map_err(|e| classify("postgres sink: checking privileges", &e))
    }

    // ---- routing ----------------------------------------------------------

    /// The table of `target`, registered on first sight (no I/O).
    fn route(&mut self, target: &str) -> usize {
        if let Some(&i) = self.routes.get(target) {
            return i;
        }
        let s = &self.settings;
        let (mut schema, mut name) = table_for_target(target, s.schema.as_deref());
        let over = s.tables.get(target);
        if let Some(o) = over {
            if let Some(x) = &o.schema {
                schema = ident(x).into_owned();
            }
            if let Some(x) = &o.table {
                name = ident(x).into_owned();
            }
        }
        let info = self.streams.get(target);
        let pk: Vec<String> = over
            .and_then(|o| o.primary_key.clone())
            .or_else(|| s.primary_key.clone())
            .or_else(|| info.map(|i| i.primary_key.clone()))
            .unwrap_or_default()
            .iter()
            .map(|c| ident(c).into_owned())
            .collect();
        let declared = info.map(|i| i.declared.clone()).unwrap_or_default();
        let i = match self.by_name.get(&(schema.clone(), name.clone())) {
            Some(&i) => i,
            None => {
                let i = self.tables.len();
                self.tables.push(Table {
                    sql: qualified(&schema, &name),
                    schema: schema.clone(),
                    name: name.clone(),
                    pk,
                    declared,
                    shape: None,
                    warned_keyless: false,
                });
                self.by_name.insert((schema, name), i);
                i
            }
        };
        self.routes.insert(target.to_string(), i);
        i
    }
}

/// The statements of [`PostgresSink::check_privileges`], inside its open
/// transaction.
async fn dry_run(
    conn: &mut PgConnection,
    tables: &[(String, String)],
    update: bool,
) -> Result<(), ConnectorError> {
    let mut schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    schemas.sort_unstable();
    schemas.dedup();
    for schema in schemas {
        let sql = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
        let exists = db::boolean(conn, sql, schema)
            .await
            .map_err(|e| classify("postgres sink: looking up a schema", &e))?;
        if !exists {
            let create = format!("CREATE SCHEMA {}", quote(schema));
            db::simple(conn, &create).await.map_err(|e| {
                classify(
                    &format!("postgres sink: cannot create the missing schema `{schema}`"),
                    &e,
                )
            })?;
        }
        let probe = format!(
            "CREATE TABLE {} (x int)",
            qualified(schema, "_tributary_check")
        );
        db::simple(conn, &probe).await.map_err(|e| {
            classify(
                &format!("postgres sink: cannot create tables in schema `{schema}`"),
                &e,
            )
        })?;
    }
    for (schema, name) in tables {
        let table = qualified(schema, name);
        let rights = if update { "INSERT, UPDATE" } else { "INSERT" };
        let sql = if update {
            "SELECT to_regclass($1) IS NULL OR (has_table_privilege($1, 'INSERT') AND has_table_privilege($1, 'UPDATE'))"
        } else {
            "SELECT to_regclass($1) IS NULL OR has_table_privilege($1, 'INSERT')"
        };
        let allowed = db::boolean(conn, sql, &table)
            .await
            .map_err(|e| classify("postgres sink: looking up table privileges", &e))?;
        if !allowed {
            return Err(ConnectorError::config(format!(
                "postgres sink: the user may not write table {table} (it needs {rights})"
            )));
        }
    }
    Ok(())
}

async fn execute(conn: &mut PgConnection, stmt: &Stmt) -> Result<(), sqlx::Error> {
    if stmt.binds.is_empty() {
        db::simple(conn, &stmt.sql).await
    } else {
        let binds: Vec<&str> = stmt.binds.iter().map(String::as_str).collect();
        db::execute(conn, &stmt.sql, &binds).await
    }
}

fn check_key(key: Option<&[String]>, at: &str) -> Result<(), (String, String)> {
    let Some(key) = key else { return Ok(()) };
    if key.is_empty() {
        return Err((
            at.into(),
            "must name at least one column (or be left out)".into(),
        ));
    }
    for (i, c) in key.iter().enumerate() {
        if c.is_empty() {
            return Err((format!("{at}[{i}]"), "must not be empty".into()));
        }
        if key[..i].contains(c) {
            return Err((format!("{at}[{i}]"), format!("`{c}` is listed twice")));
        }
    }
    Ok(())
}

/// A table key as written in a key path (`"shop.orders"` quoted).
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    /// Connects and runs `SELECT 1` (the URL, credentials and network),
    /// then a dry run of what writing needs, rolled back.
    async fn check(&mut self) -> Result<(), ConnectorError> {
        let context = format!("postgres sink: checking {}", self.display_url);
        let conn = self.connection().await?;
        db::simple(conn, "SELECT 1")
            .await
            .map_err(|e| classify(&context, &e))?;
        self.check_privileges().await
    }

    fn set_streams(&mut self, streams: &[SinkStream]) {
        for s in streams {
            self.streams
                .entry(s.target.clone())
                .or_insert_with(|| StreamInfo {
                    primary_key: s.spec.primary_key.clone(),
                    declared: s
                        .spec
                        .json_schema
                        .as_ref()
                        .map(schema::schema_columns)
                        .unwrap_or_default(),
                });
        }
        // Routes computed before now missed this information.
        self.routes.clear();
    }

    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        self.begin().await?;
        let mark = self.journal.len();
        let result = self.stage(records, batch.map(|b| b.target)).await;
        if result.is_err() {
            // The runtime passes these records again on a retry.
            self.journal.truncate(mark);
            self.abort();
        }
        result
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.commit(None).await
    }

    async fn flush_with_checkpoints(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
        _group_offsets: &[tributary_core::GroupOffsets],
    ) -> Result<bool, ConnectorError> {
        if self.settings.exactly_once {
            self.commit(Some(checkpoints)).await?;
            Ok(true)
        } else {
            self.commit(None).await?;
            Ok(false)
        }
    }

    async fn stored_checkpoints(&mut self) -> Result<Vec<(String, Checkpoint)>, ConnectorError> {
        if !self.settings.exactly_once {
            return Ok(Vec::new());
        }
        let (schema, name) = &self.settings.checkpoint_table;
        let table = qualified(schema, name);
        let context = format!("postgres sink: reading checkpoints from {table}");
        let connector = self.connector.clone();
        let conn = self.connection().await?;
        let select = format!(
            "SELECT stream, checkpoint::text FROM {table} WHERE connector = $1 ORDER BY stream"
        );
        let result = match db::boolean(conn, "SELECT to_regclass($1) IS NOT NULL", &table).await {
            Ok(true) => db::pairs(conn, &select, &connector).await,
            Ok(false) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                self.abort();
                return Err(classify(&context, &e));
            }
        };
        rows.into_iter()
            .map(|(stream, text)| {
                serde_json::from_str(&text)
                    .map(|v| (stream, Checkpoint(v)))
                    .map_err(|e| ConnectorError::fatal(format!("{context}: not JSON: {e}")))
            })
            .collect()
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.commit(None).await?;
        if let Some(conn) = self.conn.take() {
            // A failed goodbye loses nothing: everything is committed.
            let _ = db::close(conn).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact_url("postgres://loader:s3cret@db:5432/w?sslmode=require&sslpassword=x"),
            "postgres://loader:***@db:5432/w?sslmode=require&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("not a url"), "(invalid URL)");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let sink = PostgresSink::new(
            PostgresSinkConfig::new("postgres://u:pw-in-url-123@localhost/db"),
            "c",
        )
        .unwrap();
        let shown = format!("{sink:?}");
        assert!(!shown.contains("pw-in-url-123"), "{shown}");
        assert!(shown.contains("postgres://u:***@localhost/db"), "{shown}");
        let config = PostgresSinkConfig::new("postgres://u:pw-in-url-123@localhost/db");
        assert!(!format!("{config:?}").contains("pw-in-url-123"));
    }
}
