//! The `[source]` table of `type = "sql"`, and its validation (no I/O) into
//! the settings and stream definitions the source runs on.

use super::dialect::{BindValue, Dialect};
use super::ident::{self, TableName};
use super::params;
use super::value::Zone;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tributary_config::units::{de_duration, de_opt_duration};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::Secret;

/// `[source]` with `type = "sql"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSourceConfig {
    /// `postgres://user:${PGPASSWORD}@host:5432/db`, `mysql://...` (MariaDB
    /// too, also as `mariadb://`), or `sqlite://path/to.db` (relative to the
    /// config file's directory).
    pub url: String,
    /// Where unqualified table names and discovery look: PostgreSQL schema
    /// (default `public`), MySQL database (default: the URL's), SQLite
    /// attached schema (default `main`).
    pub schema: Option<String>,
    /// IANA zone naive `timestamp`/`DATETIME` values are interpreted in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Rows per query (keyset page); default 10,000.
    pub fetch_size: Option<usize>,
    /// Connections in the pool (streams read in parallel); default 4.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long to wait for a connection; default 30s.
    #[serde(default = "default_connect_timeout", deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// How long to wait for the next row of a query; default 5m.
    #[serde(default = "default_query_timeout", deserialize_with = "de_duration")]
    pub query_timeout: Duration,
    /// PostgreSQL: read pages with `COPY (SELECT …) TO STDOUT (FORMAT
    /// binary)` (default), or with prepared statements when `false` (for
    /// a proxy that refuses `COPY`).
    #[serde(default = "default_copy")]
    pub copy: bool,
    /// Tables to read in full-refresh mode with their catalog primary key,
    /// one stream each (named after the table).
    #[serde(default)]
    pub tables: Vec<String>,
    /// `[source.streams.NAME]`; with neither `streams` nor `tables`, every
    /// table of `schema` is a stream.
    #[serde(default)]
    pub streams: BTreeMap<String, SqlStreamConfig>,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_max_connections() -> u32 {
    4
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_copy() -> bool {
    true
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(300)
}

pub const DEFAULT_FETCH_SIZE: usize = 10_000;
/// Default safety lag of timestamp cursors.
pub const DEFAULT_LAG: Duration = Duration::from_secs(5);

/// `[source.streams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlStreamConfig {
    /// Table mode: `orders` or `schema.orders`.
    pub table: Option<String>,
    /// Query mode: one `SELECT` with `:name` parameters.
    pub query: Option<String>,
    /// Query mode: the values of the query's `:name` parameters.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Table mode: columns to read (default all). Keyset and soft-delete
    /// columns are always read.
    pub columns: Option<Vec<String>>,
    /// Columns of the record key and keyset; default (table mode) the
    /// table's primary key.
    pub primary_key: Option<Vec<String>>,
    /// `{ column = "updated_at", kind = "timestamp", lag = "5s" }` or
    /// `{ column = "id", kind = "id" }`; absent: full refresh every run.
    pub incremental: Option<IncrementalConfig>,
    /// Rows where this column is truthy (or a non-null timestamp) become
    /// `op = delete` records.
    pub soft_delete_column: Option<String>,
    /// Text columns whose values are JSON documents (MariaDB's `JSON` is a
    /// `LONGTEXT`; SQLite has no JSON type).
    #[serde(default)]
    pub json_columns: Vec<String>,
    /// Overrides the source's `fetch_size`.
    pub fetch_size: Option<usize>,
    /// Overrides the connector's `runtime.batch_size`.
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    pub column: String,
    pub kind: CursorKind,
    /// Timestamp cursors only: read rows up to the database's `now() - lag`
    /// (default 5s), so a transaction committing late with an older
    /// timestamp is not skipped.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lag: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    Timestamp,
    Id,
}

/// Where the connection goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// PostgreSQL or MySQL URL (a secret: it may hold a password).
    Url(Secret),
    SqlitePath(PathBuf),
}

/// Source-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dialect: Dialect,
    pub target: Target,
    /// The URL with its password masked.
    pub shown_url: String,
    pub schema: Option<String>,
    pub zone: Zone,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// PostgreSQL pages are read with `COPY` (see `pg_copy`).
    pub copy: bool,
    pub fetch_size: usize,
    pub batch_size: usize,
}

/// Where a stream's rows come from.
#[derive(Debug, Clone)]
pub enum Origin {
    Table(TableName),
    /// A translated query and the values of its placeholders, in order.
    Query {
        sql: String,
        binds: Vec<BindValue>,
    },
}

#[derive(Debug, Clone)]
pub struct Incremental {
    pub column: String,
    pub kind: CursorKind,
    pub lag: Duration,
}

/// One stream, validated.
#[derive(Debug, Clone)]
pub struct StreamDef {
    pub name: String,
    pub origin: Origin,
    pub columns: Option<Vec<String>>,
    pub primary_key: Option<Vec<String>>,
    pub incremental: Option<Incremental>,
    pub soft_delete: Option<String>,
    pub json_columns: Vec<String>,
    pub fetch_size: usize,
    pub batch_size: usize,
}

impl StreamDef {
    /// A full-refresh stream of a whole table (from `tables` or discovery).
    pub fn table(name: String, table: TableName, s: &Settings) -> StreamDef {
        StreamDef {
            name,
            origin: Origin::Table(table),
            columns: None,
            primary_key: None,
            incremental: None,
            soft_delete: None,
            json_columns: Vec::new(),
            fetch_size: s.fetch_size,
            batch_size: s.batch_size,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Arc<Settings>,
    pub streams: BTreeMap<String, Arc<StreamDef>>,
    /// Neither `streams` nor `tables`: every table of the schema is a stream.
    pub discover_all: bool,
}

const SCHEMES: &[&str] = &["postgres", "postgresql", "mysql", "mariadb", "sqlite"];

/// Types and validates the section. Every error names the key and line.
pub fn resolve(
    section: &SectionConfig,
    default_batch_size: usize,
) -> Result<Resolved, ConfigError> {
    let cfg: SqlSourceConfig = section.parse()?;
    let (dialect, target, shown_url) = parse_url(section, &cfg.url)?;
    let tz = tributary_core::schedule::parse_timezone(&cfg.timezone)
        .map_err(|e| section.error("timezone", e.to_string()))?;
    if let Some(s) = &cfg.schema {
        ident::validate(s).map_err(|e| section.error("schema", e))?;
    }
    if cfg.fetch_size == Some(0) {
        return Err(section.error("fetch_size", "fetch_size must be at least 1"));
    }
    if cfg.max_connections == 0 {
        return Err(section.error("max_connections", "max_connections must be at least 1"));
    }
    let settings = Arc::new(Settings {
        dialect,
        target,
        shown_url,
        schema: cfg.schema.clone(),
        zone: Zone::new(tz),
        max_connections: cfg.max_connections,
        connect_timeout: cfg.connect_timeout,
        query_timeout: cfg.query_timeout,
        copy: cfg.copy,
        fetch_size: cfg.fetch_size.unwrap_or(DEFAULT_FETCH_SIZE),
        batch_size: default_batch_size.max(1),
    });

    let mut streams = BTreeMap::new();
    for (name, s) in &cfg.streams {
        let def = stream(section, &settings, name, s)?;
        streams.insert(name.clone(), Arc::new(def));
    }
    for (i, t) in cfg.tables.iter().enumerate() {
        let key = format!("tables[{i}]");
        let table = TableName::parse(t).map_err(|e| section.error(&key, e))?;
        let name = table.name.clone();
        if streams.contains_key(&name) {
            return Err(section.error(
                &key,
                format!("a stream named `{name}` is already configured; list each table once"),
            ));
        }
        streams.insert(
            name.clone(),
            Arc::new(StreamDef::table(name, table, &settings)),
        );
    }
    Ok(Resolved {
        discover_all: streams.is_empty(),
        settings,
        streams,
    })
}

fn parse_url(section: &SectionConfig, url: &str) -> Result<(Dialect, Target, String), ConfigError> {
    let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
    let dialect = match scheme.as_str() {
        "postgres" | "postgresql" => Dialect::Postgres,
        "mysql" | "mariadb" => Dialect::MySql,
        "sqlite" => Dialect::Sqlite,
        _ => {
            let mut e = section.error(
                "url",
                format!(
                    "unsupported database URL scheme `{scheme}`; use postgres://, mysql://, mariadb:// or sqlite://"
                ),
            );
            e.suggestion =
                tributary_config::did_you_mean(&scheme, SCHEMES).map(|s| format!("{s}://"));
            return Err(e);
        }
    };
    if dialect == Dialect::Sqlite {
        let rest = url
            .get("sqlite:".len()..)
            .unwrap_or("")
            .trim_start_matches("//");
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                if !matches!(pair, "mode=ro" | "mode=readonly" | "immutable=0") {
                    return Err(section.error(
                        "url",
                        format!("unsupported SQLite URL option `{pair}`: the database is always opened read-only (`mode=ro`)"),
                    ));
                }
            }
        }
        if path.is_empty() || path == ":memory:" {
            return Err(section.error(
                "url",
                "a SQLite URL must name a database file, e.g. sqlite://data/app.db (relative to this file) or sqlite:///srv/app.db",
            ));
        }
        let path = section.resolve_path(std::path::Path::new(path));
        let shown = format!("sqlite://{}", path.display());
        return Ok((dialect, Target::SqlitePath(path), shown));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| section.error("url", format!("invalid database URL: {e}")))?;
    let socket = parsed
        .query_pairs()
        .any(|(k, _)| k == "host" || k == "socket");
    if parsed.host_str().is_none_or(str::is_empty) && !socket {
        return Err(section.error("url", "the database URL has no host"));
    }
    // Both spellings of the password are masked wherever text is redacted;
    // the rest of the URL stays readable in messages.
    tributary_core::secret::register_credentials(url);
    let shown = tributary_core::secret::mask_url(&parsed);
    // sqlx's own parsing of the URL's options (sslmode, ...), without connecting.
    let checked = match dialect {
        Dialect::Postgres => sqlx::postgres::PgConnectOptions::from_str(url).map(|_| ()),
        _ => sqlx::mysql::MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
            .map(|_| ()),
    };
    if let Err(e) = checked {
        return Err(section.error(
            "url",
            tributary_core::secret::redact(&format!("invalid database URL: {e}")),
        ));
    }
    Ok((dialect, Target::Url(Secret::credentials_of(url)), shown))
}

fn stream(
    section: &SectionConfig,
    settings: &Settings,
    name: &str,
    s: &SqlStreamConfig,
) -> Result<StreamDef, ConfigError> {
    let key = |k: &str| format!("streams.{name}.{k}");
    let name_list = |k: &str, names: &[String]| -> Result<(), ConfigError> {
        for (i, n) in names.iter().enumerate() {
            ident::validate(n).map_err(|e| section.error(&format!("{}[{i}]", key(k)), e))?;
        }
        Ok(())
    };
    let origin = match (&s.table, &s.query) {
        (Some(t), None) => {
            if !s.params.is_empty() {
                return Err(
                    section.error(&key("params"), "`params` applies only to `query` streams")
                );
            }
            Origin::Table(TableName::parse(t).map_err(|e| section.error(&key("table"), e))?)
        }
        (None, Some(q)) => {
            if s.columns.is_some() {
                return Err(section.error(
                    &key("columns"),
                    "`columns` applies only to `table` streams; select the columns in the query",
                ));
            }
            let translated = params::translate(q, settings.dialect)
                .map_err(|e| section.error(&key("query"), e))?;
            let mut binds = Vec::with_capacity(translated.names.len());
            for n in &translated.names {
                let Some(v) = s.params.get(n) else {
                    let known: Vec<&str> = s.params.keys().map(String::as_str).collect();
                    let mut e = section.error(
                        &key("query"),
                        format!(
                            "the query uses `:{n}`, which `params` does not set{}",
                            if known.is_empty() {
                                String::new()
                            } else {
                                format!(" (it sets {})", known.join(", "))
                            }
                        ),
                    );
                    e.suggestion = tributary_config::did_you_mean(n, &known);
                    return Err(e);
                };
                binds.push(
                    BindValue::from_toml(v)
                        .map_err(|e| section.error(&key(&format!("params.{n}")), e))?,
                );
            }
            if let Some(unused) = s.params.keys().find(|k| !translated.names.contains(k)) {
                return Err(section.error(
                    &key(&format!("params.{unused}")),
                    format!("the query does not use `:{unused}`"),
                ));
            }
            Origin::Query {
                sql: translated.sql,
                binds,
            }
        }
        (Some(_), Some(_)) => {
            return Err(section.error(&key("query"), "set either `table` or `query`, not both"))
        }
        (None, None) => {
            return Err(section.error(
                &format!("streams.{name}"),
                "a stream needs `table = \"...\"` or `query = \"SELECT ...\"`",
            ))
        }
    };
    if let Some(c) = &s.columns {
        name_list("columns", c)?;
    }
    if let Some(pk) = &s.primary_key {
        name_list("primary_key", pk)?;
    }
    name_list("json_columns", &s.json_columns)?;
    if let Some(c) = &s.soft_delete_column {
        ident::validate(c).map_err(|e| section.error(&key("soft_delete_column"), e))?;
    }
    let incremental = match &s.incremental {
        None => None,
        Some(i) => {
            ident::validate(&i.column).map_err(|e| section.error(&key("incremental.column"), e))?;
            let lag = match (i.kind, i.lag) {
                (CursorKind::Id, Some(_)) => {
                    return Err(section.error(
                        &key("incremental.lag"),
                        "`lag` applies only to kind = \"timestamp\"",
                    ))
                }
                (CursorKind::Id, None) => Duration::ZERO,
                (CursorKind::Timestamp, lag) => lag.unwrap_or(DEFAULT_LAG),
            };
            if i.kind == CursorKind::Timestamp
                && s.query.is_some()
                && s.primary_key.as_ref().is_none_or(Vec::is_empty)
            {
                return Err(section.error(
                    &key("primary_key"),
                    "a query with a timestamp cursor needs `primary_key`: rows sharing a timestamp are paged by (cursor, primary key)",
                ));
            }
            Some(Incremental {
                column: i.column.clone(),
                kind: i.kind,
                lag,
            })
        }
    };
    if s.fetch_size == Some(0) {
        return Err(section.error(&key("fetch_size"), "fetch_size must be at least 1"));
    }
    crate::check_batch_size(section, &key("batch_size"), s.batch_size)?;
    Ok(StreamDef {
        name: name.to_string(),
        origin,
        columns: s.columns.clone(),
        primary_key: s.primary_key.clone(),
        incremental,
        soft_delete: s.soft_delete_column.clone(),
        json_columns: s.json_columns.clone(),
        fetch_size: s.fetch_size.unwrap_or(settings.fetch_size),
        batch_size: s.batch_size.unwrap_or(settings.batch_size).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::section;
    use std::path::Path;

    fn resolve_str(text: &str) -> Result<Resolved, ConfigError> {
        resolve(
            &section(
                &format!("[source]\ntype = \"sql\"\n{text}"),
                Path::new("/cfg"),
            ),
            100,
        )
    }

    const PG: &str = "url = \"postgres://u:hunter2secret@127.0.0.1:5432/test\"\n";

    #[test]
    fn defaults_and_modes() {
        let r = resolve_str(&format!(
            "{PG}[source.streams.o]\ntable = \"sales.orders\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\" }}\n[source.streams.q]\nquery = \"SELECT * FROM t WHERE s = :s AND x > :n\"\nparams = {{ s = \"a\", n = 3 }}\n"
        ))
        .unwrap();
        assert_eq!(r.settings.dialect, Dialect::Postgres);
        assert_eq!(r.settings.fetch_size, DEFAULT_FETCH_SIZE);
        assert_eq!(r.settings.shown_url, "postgres://u:***@127.0.0.1:5432/test");
        assert!(!format!("{:?}", r.settings).contains("hunter2secret"));
        let o = &r.streams["o"];
        assert!(matches!(&o.origin, Origin::Table(t) if t.schema.as_deref() == Some("sales")));
        assert_eq!(o.incremental.as_ref().unwrap().lag, DEFAULT_LAG);
        let Origin::Query { sql, binds } = &r.streams["q"].origin else {
            panic!()
        };
        assert_eq!(sql, "SELECT * FROM t WHERE s = $1 AND x > $2");
        assert_eq!(binds, &vec![BindValue::Text("a".into()), BindValue::Int(3)]);
        assert!(!r.discover_all);

        let r = resolve_str("url = \"sqlite://data/app.db?mode=ro\"\n").unwrap();
        assert!(r.discover_all);
        assert!(
            matches!(&r.settings.target, Target::SqlitePath(p) if p == Path::new("/cfg/data/app.db"))
        );
        let r =
            resolve_str("url = \"sqlite:///srv/app.db\"\ntables = [\"a\", \"main.b\"]\n").unwrap();
        assert!(
            matches!(&r.settings.target, Target::SqlitePath(p) if p == Path::new("/srv/app.db"))
        );
        assert_eq!(r.streams.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn errors_name_the_key_and_suggest() {
        let err = resolve_str(&format!("{PG}fetch_sise = 10\n")).unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("fetch_size"));
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\ntable = \"o\"\nincremental = {{ column = \"u\", kind = \"timestamp\", lags = \"1s\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("lag"), "{err}");
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\ntable = \"o\"\nincremental = {{ column = \"u\", kind = \"timestmp\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("timestamp"), "{err}");
        let err = resolve_str("url = \"postgress://x@h/db\"\n").unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("postgres://"));
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\ntable = \"x; DROP TABLE y\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.o.table"));
        assert!(err.message.contains("';' is not allowed"), "{err}");
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\nquery = \"SELECT * FROM t WHERE a = :sinse\"\nparams = {{ since = \"x\" }}\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("uses `:sinse`"), "{err}");
        assert_eq!(err.suggestion.as_deref(), Some("since"));
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\nquery = \"SELECT * FROM t\"\nincremental = {{ column = \"u\", kind = \"timestamp\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.o.primary_key"));
        let err = resolve_str(&format!(
            "{PG}[source.streams.o]\ntable = \"t\"\nincremental = {{ column = \"id\", kind = \"id\", lag = \"1s\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.o.incremental.lag"));
        let err = resolve_str(&format!("{PG}[source.streams.o]\n")).unwrap_err();
        assert!(err.message.contains("needs `table"), "{err}");
        let err = resolve_str(&format!("{PG}timezone = \"Europe/Pariss\"\n")).unwrap_err();
        assert!(err.message.contains("Europe/Paris"), "{err}");
        let err = resolve_str("url = \"sqlite://x.db?mode=rwc\"\n").unwrap_err();
        assert!(err.message.contains("mode=rwc"), "{err}");
        // The password never shows in an error about the URL.
        let err = resolve_str("url = \"postgres://u:hunter2secret@/db\"\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2secret"), "{err}");
    }
}
