//! The connection pool of one `sql` source: read-only sessions, catalog
//! queries, statement descriptions, streamed rows, and what each database
//! error means for the runtime (retry, fix the config, or stop).

use super::config::{Settings, Target};
use super::dialect::{BindValue, Dialect, Statement};
use super::ident;
use super::mysql::MyDecoder;
use super::pg::PgColumn;
use super::row::{decode_row, DecodedRow, Shape};
use super::sqlite::LiteDecl;
use super::value;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Connection as _;
use sqlx::{Arguments, Column, ConnectOptions, Executor, Row, Statement as _, TypeInfo};
use sqlx::{MySql, Postgres, Sqlite};
use std::collections::HashMap;
use std::str::FromStr;
use tributary_core::ConnectorError;

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// A connection taken from the pool for a sequence of statements, and
/// given back with [`Conn::release`].
///
/// sqlx's pool tests a connection handed back by drop (a ping) on a task of
/// its own; a statement issued meanwhile finds no idle connection and opens
/// another, so a run's five or six catalog, clock and row statements opened
/// two or three connections, each with its TLS handshake and login (issue
/// 25). Releasing before the next statement keeps them on one.
pub enum Conn {
    Pg(PoolConnection<Postgres>),
    My(PoolConnection<MySql>),
    Lite(PoolConnection<Sqlite>),
}

impl Conn {
    /// Closes the connection when it is dropped instead of pooling it.
    fn close_on_drop(&mut self) {
        match self {
            Conn::Pg(c) => c.close_on_drop(),
            Conn::My(c) => c.close_on_drop(),
            Conn::Lite(c) => c.close_on_drop(),
        }
    }

    /// Tests the connection and puts it back in the pool, now rather than
    /// on a task, so the next statement finds it idle. A connection that
    /// fails the test is closed, as on drop.
    pub async fn release(self) {
        // `return_to_pool` is the drop handler, run eagerly (sqlx 0.8).
        match self {
            Conn::Pg(mut c) => c.return_to_pool().await,
            Conn::My(mut c) => c.return_to_pool().await,
            Conn::Lite(mut c) => c.return_to_pool().await,
        }
    }
}

/// The connection a stream's pages are read on: given back to the pool by
/// [`ReadConn::release`] after the last page; closed instead when a
/// PostgreSQL `COPY` on it was left unfinished (a run cut short, an
/// error, a timeout), since sqlx cannot resume one and the pool's test on
/// return would not notice the data still queued.
pub struct ReadConn {
    conn: Option<Conn>,
    copy_finished: bool,
}

impl ReadConn {
    pub fn new(conn: Conn) -> Self {
        ReadConn {
            conn: Some(conn),
            copy_finished: true,
        }
    }

    /// Gives the connection back to the pool; one whose `COPY` did not
    /// finish is closed by the drop instead.
    pub async fn release(mut self) {
        if self.copy_finished {
            if let Some(conn) = self.conn.take() {
                conn.release().await;
            }
        }
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if !self.copy_finished {
            if let Some(conn) = &mut self.conn {
                conn.close_on_drop();
            }
        }
    }
}

/// Per-column decoders of a statement, for the pool's database.
#[derive(Debug, Clone)]
pub enum Columns {
    Pg(Vec<PgColumn>),
    My(Vec<MyDecoder>),
    Lite(Vec<LiteDecl>),
}

/// One described result column.
#[derive(Debug, Clone)]
pub struct Described {
    pub name: String,
    /// The database's name for the type (`TIMESTAMPTZ`, `DATETIME`, ...).
    pub type_name: String,
    /// `false` when the type has no JSON mapping.
    pub supported: bool,
}

/// A table's catalog entry.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<CatalogColumn>,
    pub primary_key: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    pub nullable: bool,
    /// The declared type as the catalog spells it.
    pub declared: String,
}

pub struct Db {
    pool: Pool,
    pub dialect: Dialect,
    /// The URL with its password masked, for messages.
    pub shown: String,
    /// MySQL: the database named in the URL (the default schema).
    url_database: Option<String>,
    connect_timeout: std::time::Duration,
}

impl Db {
    /// Builds the pool without connecting: connections open on first use,
    /// so a database that is down is a retryable error of a run, not a
    /// failure to start.
    pub fn connect_lazy(s: &Settings) -> Result<Db, ConnectorError> {
        let shown = s.shown_url.clone();
        let bad_url = |e: sqlx::Error| {
            ConnectorError::config(tributary_core::secret::redact(&format!(
                "invalid url `{shown}`: {e}"
            )))
        };
        let (pool, url_database) = match &s.target {
            Target::Url(url) => match s.dialect {
                Dialect::Postgres => {
                    let opts = PgConnectOptions::from_str(url.expose())
                        .map_err(bad_url)?
                        // Every transaction of the session is read-only:
                        // the source cannot change the database even if a
                        // configured query tries to.
                        .options([("default_transaction_read_only", "on")])
                        .disable_statement_logging();
                    let pool = PgPoolOptions::new()
                        .max_connections(s.max_connections)
                        .acquire_timeout(s.connect_timeout)
                        .connect_lazy_with(opts);
                    (Pool::Pg(pool), None)
                }
                Dialect::MySql => {
                    let text = url.expose().replacen("mariadb://", "mysql://", 1);
                    let database = url::Url::parse(&text)
                        .ok()
                        .map(|u| u.path().trim_start_matches('/').to_string())
                        .filter(|d| !d.is_empty());
                    let opts = MySqlConnectOptions::from_str(&text)
                        .map_err(bad_url)?
                        // Keep MySQL's own `||` (OR) for configured queries.
                        .pipes_as_concat(false)
                        // TIMESTAMP values arrive in UTC.
                        .timezone(Some("+00:00".to_string()))
                        .disable_statement_logging();
                    let pool = MySqlPoolOptions::new()
                        .max_connections(s.max_connections)
                        .acquire_timeout(s.connect_timeout)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(opts);
                    (Pool::My(pool), database)
                }
                Dialect::Sqlite => {
                    return Err(ConnectorError::fatal("sqlite URL without a path"));
                }
            },
            Target::SqlitePath(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .create_if_missing(false)
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(s.max_connections)
                    .acquire_timeout(s.connect_timeout)
                    .connect_lazy_with(opts);
                (Pool::Lite(pool), None)
            }
        };
        Ok(Db {
            pool,
            dialect: s.dialect,
            shown: s.shown_url.clone(),
            url_database,
            connect_timeout: s.connect_timeout,
        })
    }

    /// What an error means, with context and the URL's password masked.
    pub fn error(&self, context: &str, e: sqlx::Error) -> ConnectorError {
        classify(self.dialect, &format!("{context} ({})", self.shown), e)
    }

    /// A connection for `context`'s statements (an error names it).
    pub async fn acquire(&self, context: &str) -> Result<Conn, ConnectorError> {
        let r = match &self.pool {
            Pool::Pg(p) => p.acquire().await.map(Conn::Pg),
            Pool::My(p) => p.acquire().await.map(Conn::My),
            Pool::Lite(p) => p.acquire().await.map(Conn::Lite),
        };
        r.map_err(|e| self.error(context, e))
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::My(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }

    /// Connects (or reuses a connection) and runs a trivial query. The
    /// pool retries a failing connect until its acquire timeout and then
    /// says only "pool timed out": one direct connection first reports the
    /// cause (refused, DNS, authentication) at once.
    pub async fn ping(&self) -> Result<(), ConnectorError> {
        let context = "cannot connect to the database";
        let probe = async {
            match &self.pool {
                Pool::Pg(p) => {
                    sqlx::PgConnection::connect_with(&p.connect_options())
                        .await?
                        .close()
                        .await
                }
                Pool::My(p) => {
                    sqlx::MySqlConnection::connect_with(&p.connect_options())
                        .await?
                        .close()
                        .await
                }
                Pool::Lite(_) => Ok(()),
            }
        };
        match tokio::time::timeout(self.connect_timeout, probe).await {
            Ok(r) => r.map_err(|e| self.error(context, e))?,
            Err(_) => {
                return Err(ConnectorError::retryable(format!(
                    "{context} ({}): timed out: no answer within {}s",
                    self.shown,
                    self.connect_timeout.as_secs()
                )))
            }
        }
        let r = match &self.pool {
            Pool::Pg(p) => p.execute("SELECT 1").await.map(|_| ()),
            Pool::My(p) => p.execute("SELECT 1").await.map(|_| ()),
            Pool::Lite(p) => p.execute("SELECT 1").await.map(|_| ()),
        };
        r.map_err(|e| self.error("cannot query the database", e))
    }

    /// How many connections the pool holds (tests count them).
    #[cfg(test)]
    pub fn connections(&self) -> u32 {
        match &self.pool {
            Pool::Pg(p) => p.size(),
            Pool::My(p) => p.size(),
            Pool::Lite(p) => p.size(),
        }
    }

    /// Runs a statement through the source's own sessions (tests prove
    /// they are read-only).
    #[cfg(test)]
    pub async fn execute(&self, sql: &str) -> Result<(), ConnectorError> {
        let r = match &self.pool {
            Pool::Pg(p) => p.execute(sql).await.map(|_| ()),
            Pool::My(p) => p.execute(sql).await.map(|_| ()),
            Pool::Lite(p) => p.execute(sql).await.map(|_| ()),
        };
        r.map_err(|e| self.error("executing", e))
    }

    /// The database server's clock (the lag bound is taken from it, not
    /// from this machine's, so clock skew cannot skip rows).
    pub async fn now(&self) -> Result<DateTime<Utc>, ConnectorError> {
        let ctx = "reading the database clock";
        let mut conn = self.acquire(ctx).await?;
        let text: Result<String, sqlx::Error> = match &mut conn {
            Conn::Pg(c) => {
                sqlx::query_scalar(
                    "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                )
                .fetch_one(&mut **c)
                .await
            }
            Conn::My(c) => sqlx::query("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")
                .fetch_one(&mut **c)
                .await
                .and_then(|r| r.try_get_unchecked::<String, _>(0)),
            Conn::Lite(c) => {
                sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
                    .fetch_one(&mut **c)
                    .await
            }
        };
        conn.release().await;
        let text = text.map_err(|e| self.error(ctx, e))?;
        match value::parse_time(&text) {
            Some(value::TimeValue::Instant(t)) => Ok(t),
            _ => Err(ConnectorError::fatal(format!(
                "the database clock returned `{text}`, which is not an RFC 3339 time"
            ))),
        }
    }

    /// The schema unqualified table names are looked up in.
    pub async fn default_schema(&self, configured: Option<&str>) -> Result<String, ConnectorError> {
        if let Some(s) = configured {
            return Ok(s.to_string());
        }
        match &self.pool {
            Pool::Pg(_) => Ok("public".into()),
            Pool::Lite(_) => Ok("main".into()),
            Pool::My(_) => {
                if let Some(d) = &self.url_database {
                    return Ok(d.clone());
                }
                let ctx = "reading the current database";
                let conn = self.acquire(ctx).await?;
                let Conn::My(mut c) = conn else {
                    return Err(ConnectorError::fatal(
                        "internal error: a connection of another database",
                    ));
                };
                let row = sqlx::query("SELECT DATABASE()").fetch_one(&mut *c).await;
                Conn::My(c).release().await;
                let row = row.map_err(|e| self.error(ctx, e))?;
                row.try_get_unchecked::<Option<String>, _>(0)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        ConnectorError::config(format!(
                            "no database selected: name one in the url (`{}`) or set `schema`",
                            self.shown
                        ))
                    })
            }
        }
    }

    /// Tables and views of `schema` the session can read, sorted.
    pub async fn list_tables(&self, schema: &str) -> Result<Vec<String>, ConnectorError> {
        let ctx = format!("listing the tables of `{schema}`");
        let mut conn = self.acquire(&ctx).await?;
        let r = match &mut conn {
            Conn::Pg(c) => {
                sqlx::query_scalar(
                    "SELECT c.relname::text FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                     AND has_table_privilege(c.oid, 'SELECT') ORDER BY 1",
                )
                .bind(schema)
                .fetch_all(&mut **c)
                .await
            }
            Conn::My(c) => sqlx::query(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            )
            .bind(schema)
            .fetch_all(&mut **c)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| r.try_get_unchecked::<String, _>(0))
                    .collect()
            }),
            Conn::Lite(c) => {
                let sql = format!(
                    "SELECT name FROM {}.sqlite_master WHERE type IN ('table', 'view') \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                    ident::quote(Dialect::Sqlite, schema)
                );
                sqlx::query_scalar(&sql).fetch_all(&mut **c).await
            }
        };
        conn.release().await;
        r.map_err(|e| self.error(&ctx, e))
    }

    /// The catalog entry of `schema.table`: an exact name match, else the
    /// one table whose name matches ignoring case (PostgreSQL folds
    /// unquoted names to lower case, so `Orders` in a config means `orders`).
    pub async fn table_info(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableInfo>, ConnectorError> {
        let tables = self.list_tables(schema).await?;
        let name = match tables.iter().find(|t| *t == table) {
            Some(t) => t.clone(),
            None => {
                let folded: Vec<&String> = tables
                    .iter()
                    .filter(|t| t.eq_ignore_ascii_case(table))
                    .collect();
                match folded.as_slice() {
                    [one] => (*one).clone(),
                    _ => return Ok(None),
                }
            }
        };
        let ctx = format!("reading the columns of `{schema}.{name}`");
        let mut conn = self.acquire(&ctx).await?;
        let result = self.catalog_entry(&mut conn, &ctx, schema, &name).await;
        conn.release().await;
        let (columns, primary_key) = result?;
        Ok(Some(TableInfo {
            schema: schema.to_string(),
            name,
            columns,
            primary_key,
        }))
    }

    /// The columns and primary key of `schema.name`.
    async fn catalog_entry(
        &self,
        conn: &mut Conn,
        ctx: &str,
        schema: &str,
        name: &str,
    ) -> Result<(Vec<CatalogColumn>, Vec<String>), ConnectorError> {
        let (columns, primary_key) = match conn {
            Conn::Pg(c) => {
                let qualified = ident::quote_table(Dialect::Postgres, schema, name);
                let cols: Vec<(String, bool, String)> = sqlx::query_as(
                    "SELECT a.attname::text, NOT a.attnotnull, format_type(a.atttypid, a.atttypmod) \
                     FROM pg_catalog.pg_attribute a WHERE a.attrelid = CAST($1 AS regclass) \
                     AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                )
                .bind(&qualified)
                .fetch_all(&mut **c)
                .await
                .map_err(|e| self.error(ctx, e))?;
                let pk: Vec<String> = sqlx::query_scalar(
                    "SELECT a.attname::text FROM pg_catalog.pg_index i \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = CAST($1 AS regclass) AND i.indisprimary \
                     ORDER BY array_position(i.indkey::int2[], a.attnum)",
                )
                .bind(&qualified)
                .fetch_all(&mut **c)
                .await
                .map_err(|e| self.error(ctx, e))?;
                let cols = cols
                    .into_iter()
                    .map(|(name, nullable, declared)| CatalogColumn {
                        name,
                        nullable,
                        declared,
                    })
                    .collect();
                (cols, pk)
            }
            Conn::My(c) => {
                let rows = sqlx::query(
                    "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_TYPE FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                )
                .bind(schema)
                .bind(name)
                .fetch_all(&mut **c)
                .await
                .map_err(|e| self.error(ctx, e))?;
                let mut cols = Vec::new();
                for r in rows {
                    let get = |i: usize| r.try_get_unchecked::<String, _>(i);
                    let e = |e| self.error(ctx, e);
                    cols.push(CatalogColumn {
                        name: get(0).map_err(e)?,
                        nullable: get(1).map_err(e)? == "YES",
                        declared: get(2).map_err(e)?,
                    });
                }
                let pk = sqlx::query(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                     ORDER BY ORDINAL_POSITION",
                )
                .bind(schema)
                .bind(name)
                .fetch_all(&mut **c)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| r.try_get_unchecked::<String, _>(0))
                        .collect::<Result<Vec<String>, _>>()
                })
                .map_err(|e| self.error(ctx, e))?;
                (cols, pk)
            }
            Conn::Lite(c) => {
                let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
                )
                .bind(name)
                .bind(schema)
                .fetch_all(&mut **c)
                .await
                .map_err(|e| self.error(ctx, e))?;
                let mut pk: Vec<(i64, String)> = rows
                    .iter()
                    .filter(|r| r.3 > 0)
                    .map(|r| (r.3, r.0.clone()))
                    .collect();
                pk.sort();
                let cols = rows
                    .into_iter()
                    .map(|(name, declared, notnull, pk)| CatalogColumn {
                        name,
                        nullable: notnull == 0 && pk == 0,
                        declared,
                    })
                    .collect();
                (cols, pk.into_iter().map(|(_, n)| n).collect())
            }
        };
        Ok((columns, primary_key))
    }

    /// Describes a statement's result columns without running it, and
    /// resolves a decoder for each. `as_json`: text columns to parse as
    /// JSON; `declared` (SQLite): declared types by column name.
    pub async fn describe(
        &self,
        sql: &str,
        as_json: &[String],
        declared: Option<&HashMap<String, String>>,
    ) -> Result<(Vec<Described>, Columns), ConnectorError> {
        let ctx = "describing the stream's query";
        let mut conn = self.acquire(ctx).await?;
        let result = self.describe_on(&mut conn, sql, as_json, declared).await;
        conn.release().await;
        result.map_err(|e| self.error(ctx, e))
    }

    async fn describe_on(
        &self,
        conn: &mut Conn,
        sql: &str,
        as_json: &[String],
        declared: Option<&HashMap<String, String>>,
    ) -> Result<(Vec<Described>, Columns), sqlx::Error> {
        let json = |n: &str| as_json.iter().any(|j| j == n);
        match conn {
            Conn::Pg(c) => {
                let st = (&mut **c).prepare(sql).await?;
                let mut described = Vec::new();
                let mut cols = Vec::new();
                for c in st.columns() {
                    let resolved = PgColumn::resolve(c.type_info(), json(c.name()));
                    described.push(Described {
                        name: c.name().to_string(),
                        type_name: c.type_info().name().to_string(),
                        supported: resolved.is_some(),
                    });
                    cols.push(resolved.unwrap_or(PgColumn {
                        decoder: super::pg::PgDecoder::Void,
                        cast: None,
                    }));
                }
                Ok((described, Columns::Pg(cols)))
            }
            Conn::My(c) => {
                let st = (&mut **c).prepare(sql).await?;
                let mut described = Vec::new();
                let mut cols = Vec::new();
                for c in st.columns() {
                    let decl = declared.and_then(|d| d.get(c.name())).map(String::as_str);
                    let resolved = MyDecoder::resolve(c.type_info(), decl, json(c.name()));
                    described.push(Described {
                        name: c.name().to_string(),
                        type_name: c.type_info().name().to_string(),
                        supported: resolved.is_some(),
                    });
                    cols.push(resolved.unwrap_or(MyDecoder::Null));
                }
                Ok((described, Columns::My(cols)))
            }
            Conn::Lite(c) => {
                let st = (&mut **c).prepare(sql).await?;
                let mut described = Vec::new();
                let mut cols = Vec::new();
                for c in st.columns() {
                    let (decl, type_name) = match declared.and_then(|d| d.get(c.name())) {
                        Some(d) => (LiteDecl::from_declared(d), d.clone()),
                        None => (
                            LiteDecl::from_sqlx(c.type_info().name()),
                            c.type_info().name().to_string(),
                        ),
                    };
                    let decl = if json(c.name()) { LiteDecl::Json } else { decl };
                    described.push(Described {
                        name: c.name().to_string(),
                        type_name: if type_name.is_empty() {
                            "(none)".into()
                        } else {
                            type_name
                        },
                        supported: true,
                    });
                    cols.push(decl);
                }
                Ok((described, Columns::Lite(cols)))
            }
        }
    }

    /// Streams the rows of a statement, decoded. Rows are read from the
    /// connection as the stream is polled: memory holds one row at a time
    /// beyond what the driver buffers from the socket.
    pub fn rows<'a>(
        &'a self,
        conn: &'a mut ReadConn,
        st: &'a Statement,
        columns: &'a Columns,
        shape: &'a Shape,
    ) -> BoxStream<'a, Result<DecodedRow, ConnectorError>> {
        let fail = |e: ConnectorError| futures::stream::once(async move { Err(e) }).boxed();
        let err =
            move |e: sqlx::Error| self.error(&format!("reading stream `{}`", shape.stream), e);
        let ReadConn {
            conn,
            copy_finished,
        } = conn;
        let Some(conn) = conn.as_mut() else {
            return fail(ConnectorError::fatal(
                "internal error: a released connection",
            ));
        };
        match (conn, columns, st.copy) {
            (Conn::Pg(c), Columns::Pg(cols), true) => {
                super::pg_copy::rows(c, &st.sql, cols, shape, copy_finished, err)
            }
            (Conn::Pg(c), Columns::Pg(cols), false) => {
                let mut args = PgArguments::default();
                for b in &st.binds {
                    if let Err(e) = bind_pg(&mut args, b) {
                        return fail(e);
                    }
                }
                let mut buf = BytesMut::new();
                sqlx::query_with(&st.sql, args)
                    .fetch(&mut **c)
                    .map(move |r| decode_row(&r.map_err(err)?, cols, shape, &mut buf))
                    .boxed()
            }
            (Conn::My(c), Columns::My(cols), _) => {
                let mut args = MySqlArguments::default();
                for b in &st.binds {
                    if let Err(e) = bind_my(&mut args, b) {
                        return fail(e);
                    }
                }
                let mut buf = BytesMut::new();
                sqlx::query_with(&st.sql, args)
                    .fetch(&mut **c)
                    .map(move |r| decode_row(&r.map_err(err)?, cols, shape, &mut buf))
                    .boxed()
            }
            (Conn::Lite(c), Columns::Lite(cols), _) => {
                let mut args = SqliteArguments::default();
                for b in &st.binds {
                    if let Err(e) = bind_lite(&mut args, b) {
                        return fail(e);
                    }
                }
                let mut buf = BytesMut::new();
                sqlx::query_with(&st.sql, args)
                    .fetch(&mut **c)
                    .map(move |r| decode_row(&r.map_err(err)?, cols, shape, &mut buf))
                    .boxed()
            }
            _ => fail(ConnectorError::fatal(
                "internal error: decoders of another database",
            )),
        }
    }
}

fn bind_error(e: sqlx::error::BoxDynError) -> ConnectorError {
    ConnectorError::fatal(format!("cannot bind a parameter: {e}"))
}

fn bind_pg(args: &mut PgArguments, v: &BindValue) -> Result<(), ConnectorError> {
    match v {
        BindValue::Bool(b) => args.add(*b),
        BindValue::Int(i) => args.add(*i),
        BindValue::UInt(u) => match i64::try_from(*u) {
            Ok(i) => args.add(i),
            Err(_) => args.add(u.to_string()),
        },
        BindValue::Float(f) => args.add(*f),
        BindValue::Text(s) => args.add(s.clone()),
        BindValue::Date(d) => args.add(*d),
        BindValue::DateTime(t) => args.add(*t),
    }
    .map_err(bind_error)
}

fn bind_my(args: &mut MySqlArguments, v: &BindValue) -> Result<(), ConnectorError> {
    match v {
        BindValue::Bool(b) => args.add(*b),
        BindValue::Int(i) => args.add(*i),
        BindValue::UInt(u) => args.add(*u),
        BindValue::Float(f) => args.add(*f),
        BindValue::Text(s) => args.add(s.clone()),
        BindValue::Date(d) => args.add(*d),
        BindValue::DateTime(t) => args.add(*t),
    }
    .map_err(bind_error)
}

fn bind_lite(args: &mut SqliteArguments<'_>, v: &BindValue) -> Result<(), ConnectorError> {
    match v {
        BindValue::Bool(b) => args.add(*b),
        BindValue::Int(i) => args.add(*i),
        BindValue::UInt(u) => match i64::try_from(*u) {
            Ok(i) => args.add(i),
            Err(_) => args.add(u.to_string()),
        },
        BindValue::Float(f) => args.add(*f),
        BindValue::Text(s) => args.add(s.clone()),
        BindValue::Date(d) => args.add(d.format("%Y-%m-%d").to_string()),
        BindValue::DateTime(t) => args.add(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
    }
    .map_err(bind_error)
}

/// What a database error means for the runtime:
///
/// - connection trouble, timeouts, deadlocks, serialization failures,
///   server shutdown and resource exhaustion: retryable;
/// - authentication, unknown database/table/column, syntax, permissions:
///   the configuration must change;
/// - anything else: fatal.
pub fn classify(dialect: Dialect, context: &str, e: sqlx::Error) -> ConnectorError {
    let message = match &e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            match tributary_core::error::connect_cause(&e) {
                Some(cause) => format!("{context}: {cause} ({e})"),
                None => format!("{context}: {e}"),
            }
        }
        _ => format!("{context}: {e}"),
    };
    let message = tributary_core::secret::redact(&message);
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ConnectorError::retryable(message),
        sqlx::Error::Configuration(_) => ConnectorError::config(message),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match dialect {
                Dialect::Postgres | Dialect::MySql => match code.get(..2).unwrap_or("") {
                    "08" | "40" | "53" | "57" | "58" => ConnectorError::retryable(message),
                    "28" | "3D" | "3F" | "42" | "0A" => ConnectorError::config(message),
                    // MySQL's generic state: lock wait timeout (1205) and
                    // server gone away are worth retrying.
                    "HY" if message.contains("Lock wait timeout") => {
                        ConnectorError::retryable(message)
                    }
                    _ => ConnectorError::fatal(message),
                },
                Dialect::Sqlite => {
                    // Primary result codes (the low byte of extended codes).
                    let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
                    match primary {
                        5 | 6 | 10 => ConnectorError::retryable(message), // BUSY, LOCKED, IOERR
                        1 | 8 | 14 | 23 | 26 => ConnectorError::config(message), // ERROR, READONLY, CANTOPEN, AUTH, NOTADB
                        _ => ConnectorError::fatal(message),
                    }
                }
            }
        }
        _ => ConnectorError::fatal(message),
    }
}
