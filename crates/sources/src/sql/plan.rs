//! A stream's plan: its configuration checked against the live catalog
//! (names resolved, primary key found, types described and decoders
//! chosen), and the keyset page statements built from it.

use super::config::{CursorKind, Origin, Settings, StreamDef};
use super::db::{Columns, Db, Described};
use super::dialect::{BindValue, Dialect, Statement};
use super::ident;
use super::row::{KeyCodec, Shape, ShapeParts};
use super::sqlite::LiteDecl;
use super::value::Kind;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use tributary_core::{ConnectorError, StreamSpec};

/// A stream's source described: the statement without conditions and
/// what the catalog and the statement's description say about it.
struct SourceFacts {
    select: String,
    user_binds: Vec<BindValue>,
    described: Vec<Described>,
    columns: Columns,
    /// Nullability by column (table mode; query columns are all nullable).
    nullable: HashMap<String, bool>,
    /// The catalog's type of each column (table mode), e.g. `numeric(12,2)`.
    declared: HashMap<String, String>,
    primary_key: Vec<String>,
    /// Names for did-you-mean suggestions.
    lookup: Vec<String>,
}

/// The cursor of an incremental stream.
#[derive(Debug, Clone)]
pub struct CursorPlan {
    pub name: String,
    pub kind: CursorKind,
    pub lag: Duration,
    /// A timestamp without time zone: its lag bound is a wall-clock time
    /// in the source's `timezone`.
    pub naive: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub dialect: Dialect,
    /// `SELECT <columns> FROM <table or (query)>`, without conditions.
    select: String,
    /// Values of the query's own parameters, bound first.
    user_binds: Vec<BindValue>,
    pub columns: Columns,
    pub shape: Shape,
    /// Keyset columns: the cursor (if any), then the primary key.
    pub keyset: Vec<String>,
    keyset_sql: Vec<String>,
    codecs: Vec<KeyCodec>,
    pub cursor: Option<CursorPlan>,
    pub spec: StreamSpec,
    pub fetch_size: usize,
    pub batch_size: usize,
    /// PostgreSQL, no parameters of the query's own: pages are read with
    /// `COPY` ([`super::pg_copy`]).
    copy: bool,
}

fn config_error(stream: &str, message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::config(format!("stream `{stream}`: {message}"))
}

/// Finds `wanted` among `names`: exactly, else ignoring case when that is unambiguous.
fn find_name<'a>(names: &'a [String], wanted: &str) -> Option<&'a String> {
    names.iter().find(|n| *n == wanted).or_else(|| {
        let mut folded = names.iter().filter(|n| n.eq_ignore_ascii_case(wanted));
        match (folded.next(), folded.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    })
}

fn suggest(names: &[String], wanted: &str) -> String {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    tributary_config::did_you_mean(wanted, &refs)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl Plan {
    /// Resolves a stream against the database. Called at every `open`, so
    /// a changed table (a new column, a new type) is picked up by the next run.
    pub async fn resolve(
        db: &Db,
        settings: &Settings,
        def: &StreamDef,
    ) -> Result<Plan, ConnectorError> {
        let stream = def.name.as_str();
        let dialect = db.dialect;
        let q = |n: &str| ident::quote(dialect, n);
        // Column names of the source, what is selected, catalog facts.
        let SourceFacts {
            select,
            user_binds,
            described,
            columns,
            nullable,
            declared: sql_types,
            primary_key,
            lookup,
        } = match &def.origin {
            Origin::Table(t) => {
                let schema = match &t.schema {
                    Some(s) => s.clone(),
                    None => db.default_schema(settings.schema.as_deref()).await?,
                };
                let Some(info) = db.table_info(&schema, &t.name).await? else {
                    let tables = db.list_tables(&schema).await?;
                    return Err(config_error(
                        stream,
                        format!(
                            "table `{}` not found in schema `{schema}` (or not readable){}",
                            t.name,
                            suggest(&tables, &t.name)
                        ),
                    ));
                };
                let all: Vec<String> = info.columns.iter().map(|c| c.name.clone()).collect();
                let actual = |n: &str, key: &str| -> Result<String, ConnectorError> {
                    find_name(&all, n).cloned().ok_or_else(|| {
                        config_error(
                            stream,
                            format!(
                                "`{key}`: table `{}` has no column `{n}`{}",
                                info.name,
                                suggest(&all, n)
                            ),
                        )
                    })
                };
                let mut selected = match &def.columns {
                    Some(cs) => cs
                        .iter()
                        .map(|c| actual(c, "columns"))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => all.clone(),
                };
                let pk = match &def.primary_key {
                    Some(pk) => pk
                        .iter()
                        .map(|c| actual(c, "primary_key"))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => info.primary_key.clone(),
                };
                let mut required = pk.clone();
                if let Some(i) = &def.incremental {
                    required.push(actual(&i.column, "incremental.column")?);
                }
                if let Some(c) = &def.soft_delete {
                    required.push(actual(c, "soft_delete_column")?);
                }
                for r in required {
                    if !selected.contains(&r) {
                        selected.push(r);
                    }
                }
                let mut seen = std::collections::HashSet::new();
                selected.retain(|c| seen.insert(c.clone()));
                let json_cols = def
                    .json_columns
                    .iter()
                    .map(|c| actual(c, "json_columns"))
                    .collect::<Result<Vec<_>, _>>()?;
                let select = format!(
                    "SELECT {} FROM {}",
                    selected.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
                    ident::quote_table(dialect, &info.schema, &info.name)
                );
                let declared: HashMap<String, String> = info
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.declared.clone()))
                    .collect();
                let nullable = info
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.nullable))
                    .collect();
                let (described, columns) = db
                    .describe(
                        &select,
                        &json_cols,
                        (dialect != Dialect::Postgres).then_some(&declared),
                    )
                    .await?;
                SourceFacts {
                    select,
                    user_binds: Vec::new(),
                    described,
                    columns,
                    nullable,
                    declared,
                    primary_key: pk,
                    lookup: all,
                }
            }
            Origin::Query { sql, binds } => {
                let select = format!("SELECT * FROM ({sql}) tributary_q");
                let (described, columns) = db.describe(&select, &def.json_columns, None).await?;
                let names: Vec<String> = described.iter().map(|d| d.name.clone()).collect();
                for (i, n) in names.iter().enumerate() {
                    if names[..i].contains(n) {
                        return Err(config_error(
                            stream,
                            format!("the query returns two columns named `{n}`; give them distinct aliases"),
                        ));
                    }
                }
                let pk = def.primary_key.clone().unwrap_or_default();
                SourceFacts {
                    select,
                    user_binds: binds.clone(),
                    described,
                    columns,
                    nullable: HashMap::new(),
                    declared: HashMap::new(),
                    primary_key: pk,
                    lookup: names,
                }
            }
        };
        let names: Vec<String> = described.iter().map(|d| d.name.clone()).collect();
        if let Some(d) = described.iter().find(|d| !d.supported) {
            return Err(config_error(
                stream,
                format!(
                    "column `{}` has type `{}`, which the sql source cannot map to JSON; leave it out of `columns`, or read it through a `query` that converts it (e.g. `{}::text`)",
                    d.name, d.type_name, d.name
                ),
            ));
        }
        let index = |n: &str, key: &str| -> Result<usize, ConnectorError> {
            names.iter().position(|x| x == n).ok_or_else(|| {
                config_error(
                    stream,
                    format!(
                        "`{key}`: the query returns no column `{n}`{}",
                        suggest(&lookup, n)
                    ),
                )
            })
        };
        for j in &def.json_columns {
            if matches!(def.origin, Origin::Query { .. }) {
                index(j, "json_columns")?;
            }
        }

        let mut cursor = None;
        let mut keyset: Vec<String> = Vec::new();
        if let Some(inc) = &def.incremental {
            let name = match &def.origin {
                Origin::Table(_) => find_name(&names, &inc.column)
                    .cloned()
                    .unwrap_or_else(|| inc.column.clone()),
                Origin::Query { .. } => inc.column.clone(),
            };
            let i = index(&name, "incremental.column")?;
            let kind = columns.kind(i);
            let ok = match (inc.kind, dialect) {
                (CursorKind::Timestamp, Dialect::Sqlite) => {
                    !matches!(kind, Kind::Bool | Kind::Json | Kind::Time)
                }
                (CursorKind::Timestamp, _) => matches!(kind, Kind::Timestamp { .. }),
                (CursorKind::Id, Dialect::Sqlite) => {
                    matches!(kind, Kind::Integer | Kind::Decimal | Kind::Dynamic)
                }
                (CursorKind::Id, _) => matches!(kind, Kind::Integer | Kind::Decimal),
            };
            if !ok {
                let want = match inc.kind {
                    CursorKind::Timestamp => "a timestamp column (kind = \"timestamp\")",
                    CursorKind::Id => "an integer column (kind = \"id\")",
                };
                return Err(config_error(
                    stream,
                    format!(
                        "`incremental.column`: `{name}` has type `{}`; the cursor must be {want}",
                        described[i].type_name
                    ),
                ));
            }
            if inc.kind == CursorKind::Timestamp && primary_key.is_empty() {
                return Err(config_error(
                    stream,
                    "a timestamp cursor needs a primary key to page rows that share a timestamp, and the table has none: set `primary_key`",
                ));
            }
            cursor = Some(CursorPlan {
                name: name.clone(),
                kind: inc.kind,
                lag: inc.lag,
                naive: matches!(kind, Kind::Timestamp { naive: true })
                    || dialect == Dialect::Sqlite,
            });
            keyset.push(name);
        }
        for p in &primary_key {
            index(p, "primary_key")?;
            if !keyset.contains(p) {
                keyset.push(p.clone());
            }
        }
        let keyset_idx: Vec<usize> = keyset
            .iter()
            .map(|k| index(k, "primary_key"))
            .collect::<Result<_, _>>()?;
        let mut codecs = Vec::new();
        for (&i, k) in keyset_idx.iter().zip(&keyset) {
            codecs.push(columns.key_codec(i).ok_or_else(|| {
                config_error(
                    stream,
                    format!(
                        "column `{k}` has type `{}`, which cannot be part of a keyset (cursor or primary key)",
                        described[i].type_name
                    ),
                )
            })?);
        }
        let soft_delete = match &def.soft_delete {
            Some(c) => {
                let n = match &def.origin {
                    Origin::Table(_) => find_name(&names, c).cloned().unwrap_or_else(|| c.clone()),
                    Origin::Query { .. } => c.clone(),
                };
                Some(index(&n, "soft_delete_column")?)
            }
            None => None,
        };

        let mut properties = Map::new();
        for (i, n) in names.iter().enumerate() {
            let kind = columns.kind(i);
            let mut schema = if nullable.get(n).copied().unwrap_or(true) {
                kind.nullable_schema()
            } else {
                kind.json_schema()
            };
            // The column's own type, for sinks that create typed columns
            // (the postgres sink keeps `numeric(12,2)`, `integer`, `text[]`).
            // Not for a column read as JSON (`json_columns`): its values
            // are no longer of that type.
            let sql_type = sql_types
                .get(n)
                .cloned()
                .unwrap_or_else(|| described[i].type_name.to_lowercase());
            let read_as_json = kind == Kind::Json && !sql_type.starts_with("json");
            if let (Some(obj), false) =
                (schema.as_object_mut(), read_as_json || sql_type.is_empty())
            {
                obj.insert("x-sql-type".into(), Value::String(sql_type));
            }
            properties.insert(n.clone(), schema);
        }
        let spec = StreamSpec {
            name: def.name.clone(),
            primary_key: primary_key.clone(),
            cursor_field: cursor.as_ref().map(|c| c.name.clone()),
            json_schema: Some(json!({
                "type": "object",
                "properties": properties,
                "required": names,
                "x-sql-dialect": dialect.name(),
            })),
        };
        let shape = Shape::new(ShapeParts {
            stream: &def.name,
            names: &names,
            type_names: described.iter().map(|d| d.type_name.clone()).collect(),
            keyset: keyset_idx.clone(),
            primary_key: &primary_key,
            soft_delete,
            instant_of: match (&cursor, dialect) {
                (Some(c), Dialect::Sqlite) if c.kind == CursorKind::Timestamp => {
                    Some(keyset_idx[0])
                }
                _ => None,
            },
            zone: settings.zone,
        });
        let copy = settings.copy && dialect == Dialect::Postgres && user_binds.is_empty();
        Ok(Plan {
            dialect,
            keyset_sql: keyset.iter().map(|k| q(k)).collect(),
            select,
            user_binds,
            columns,
            shape,
            keyset,
            codecs,
            cursor,
            spec,
            fetch_size: def.fetch_size,
            batch_size: def.batch_size,
            copy,
        })
    }

    /// Whether the stream is read in keyset pages (it has a cursor or a
    /// primary key); otherwise one streamed query per run.
    pub fn paged(&self) -> bool {
        !self.keyset.is_empty()
    }

    /// The statement of one page: rows after `after` (a keyset position),
    /// with the cursor at least `from` and at most `bound` (checkpoint-form
    /// values), in keyset order, at most `limit` of them.
    pub fn page(
        &self,
        after: Option<&[Value]>,
        from: Option<&Value>,
        bound: Option<&Value>,
        limit: Option<usize>,
    ) -> Result<Statement, ConnectorError> {
        let mut st = Statement {
            dialect: self.dialect,
            sql: self.select.clone(),
            binds: self.user_binds.clone(),
            copy: self.copy,
        };
        let mut first = true;
        let mut and = |st: &mut Statement| {
            st.push(if first { " WHERE " } else { " AND " });
            first = false;
        };
        let bind = |codec: &KeyCodec, v: &Value, col: &str| {
            codec.bind(v).map_err(|e| {
                ConnectorError::fatal(format!(
                    "stream `{}`: checkpointed value of `{col}`: {e}; reset the stream's state if the column's type changed",
                    self.spec.name
                ))
            })
        };
        if self.cursor.is_some() {
            and(&mut st);
            st.push(&self.keyset_sql[0]).push(" IS NOT NULL");
            for (op, limit) in [(" >= ", from), (" <= ", bound)] {
                if let Some(limit) = limit {
                    and(&mut st);
                    let (v, cast) = bind(&self.codecs[0], limit, &self.keyset[0])?;
                    st.push(&self.keyset_sql[0])
                        .push(op)
                        .param(v, cast.as_deref());
                }
            }
        }
        if let Some(after) = after.filter(|a| !a.is_empty()) {
            if after.len() != self.keyset.len() {
                return Err(ConnectorError::fatal("keyset position of the wrong length"));
            }
            and(&mut st);
            let mut values = Vec::with_capacity(after.len());
            for ((codec, v), col) in self.codecs.iter().zip(after).zip(&self.keyset) {
                values.push(bind(codec, v, col)?);
            }
            if after.len() == 1 {
                let (v, cast) = values.swap_remove(0);
                st.push(&self.keyset_sql[0])
                    .push(" > ")
                    .param(v, cast.as_deref());
            } else if self.dialect.row_values() {
                st.push("(").push(&self.keyset_sql.join(", ")).push(") > (");
                for (i, (v, cast)) in values.into_iter().enumerate() {
                    if i > 0 {
                        st.push(", ");
                    }
                    st.param(v, cast.as_deref());
                }
                st.push(")");
            } else {
                expanded(&mut st, &self.keyset_sql, &values);
            }
        }
        if self.paged() {
            st.push(" ORDER BY ").push(&self.keyset_sql.join(", "));
        }
        if let Some(n) = limit {
            st.push(&format!(" LIMIT {n}"));
        }
        if st.copy {
            st.sql = super::pg_copy::copy_statement(&st.sql);
        }
        Ok(st)
    }

    /// The start of the repeated wall-clock hour a naive timestamp cursor's
    /// bound `at` lies in (see [`tributary_core::window::repeated_interval`]),
    /// in checkpoint form; `None` for other cursors and outside such hours.
    pub fn repeated_from(&self, at: chrono::DateTime<chrono::Utc>) -> Option<Value> {
        let c = self.cursor.as_ref()?;
        if c.kind != CursorKind::Timestamp || !c.naive || self.dialect == Dialect::Sqlite {
            return None;
        }
        let (start, _) = tributary_core::window::repeated_interval(self.shape.zone.tz, at)?;
        Some(Value::String(super::value::fmt_naive(start)))
    }

    /// The checkpoint-form lag bound for an instant, for SQL comparison.
    pub fn bound_value(&self, at: chrono::DateTime<chrono::Utc>) -> Option<Value> {
        let c = self.cursor.as_ref()?;
        if c.kind != CursorKind::Timestamp || self.dialect == Dialect::Sqlite {
            return None;
        }
        Some(Value::String(if c.naive {
            super::value::fmt_naive(self.shape.zone.to_local(at))
        } else {
            super::value::fmt_utc(at)
        }))
    }
}

/// `a > x OR (a = x AND (b > y OR (b = y AND c > z)))`, for MySQL.
fn expanded(st: &mut Statement, cols: &[String], values: &[(BindValue, Option<String>)]) {
    st.push("(");
    st.push(&cols[0]).push(" > ");
    st.param(values[0].0.clone(), values[0].1.as_deref());
    if cols.len() > 1 {
        st.push(" OR (").push(&cols[0]).push(" = ");
        st.param(values[0].0.clone(), values[0].1.as_deref());
        st.push(" AND ");
        expanded(st, &cols[1..], &values[1..]);
        st.push(")");
    }
    st.push(")");
}

impl Columns {
    pub fn kind(&self, i: usize) -> Kind {
        match self {
            Columns::Pg(c) => c[i].decoder.kind(),
            Columns::My(c) => c[i].kind(),
            Columns::Lite(c) => c[i].kind(),
        }
    }

    pub fn key_codec(&self, i: usize) -> Option<KeyCodec> {
        match self {
            Columns::Pg(c) => c[i].cast.clone().map(KeyCodec::PgCast),
            Columns::My(c) => c[i].key_codec(),
            Columns::Lite(c) => match c[i] {
                LiteDecl::Json => None,
                _ => Some(KeyCodec::LiteRaw),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_keysets_are_expanded() {
        let mut st = Statement::new(Dialect::MySql);
        let cols = vec!["`a`".to_string(), "`b`".to_string(), "`c`".to_string()];
        let vals: Vec<(BindValue, Option<String>)> =
            (1..=3).map(|i| (BindValue::Int(i), None)).collect();
        expanded(&mut st, &cols, &vals);
        assert_eq!(
            st.sql,
            "(`a` > ? OR (`a` = ? AND (`b` > ? OR (`b` = ? AND (`c` > ?)))))"
        );
        assert_eq!(st.binds, [1, 1, 2, 2, 3].map(BindValue::Int).to_vec());
    }
}
