//! Staging records in the open transaction: records become rows, rows
//! group into segments (same table and action, in order), a segment evolves
//! its table (create, add columns, widen or reject per `type_conflict`) and
//! is written in statements of `batch_size` rows, each carrying its rows as
//! one bound JSON parameter.

use super::error::classify;
use super::schema::{self, ident, qualified, quote, PgType};
use super::{db, record_value, PostgresSink, Shape, Stmt, TypeConflict, WriteMode};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use tributary_core::{ConnectorError, Op, Record};

/// What one record does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `INSERT … ON CONFLICT (pk) DO UPDATE`: replace the row.
    Upsert,
    /// Plain `INSERT` (append mode, or a table without a key).
    Insert,
    /// Upsert mode, a partial update ([`Record::is_partial_update`],
    /// Fivetran's `op.update`): `UPDATE` the columns the record names of
    /// the row with its key; the others keep their values, and no row is
    /// created when none has the key (Fivetran: "updates existing row by
    /// primary key without creating new record").
    Update,
    /// Hard delete by key.
    Delete,
    /// Upsert mode, soft delete of a record without values: flag the row
    /// with the key, keeping what it holds.
    SoftDelete,
    /// Upsert mode, soft delete of a record with the row's last values
    /// (a source that soft-deletes): replace the row, flagged.
    SoftDeleteRow,
    /// Append mode, soft delete: append the record flagged as deleted.
    Tombstone,
}

/// One record as columns.
struct Row<'a> {
    /// Index of the record in the `write` call.
    record: usize,
    /// Column name and value; the key's columns included.
    fields: Vec<(Cow<'a, str>, &'a Value)>,
    /// Primary-key values in key order (empty when the table has no key).
    key: Vec<&'a Value>,
    /// Deletes: when the source deleted the row ([`Record::deleted_at`]).
    deleted_at: Option<&'a str>,
}

/// Consecutive records with the same table and action: one group of
/// statements, in order (an upsert followed by a delete of the same key
/// must stay in that order).
struct Segment<'a> {
    table: usize,
    /// The records' target (several may share a table), for dead letters.
    target: &'a str,
    action: Action,
    rows: Vec<Row<'a>>,
}

impl PostgresSink {
    // ---- staging ----------------------------------------------------------

    /// Stages `records` in the open transaction (see the module docs); a
    /// record without its own target goes to `default_target`, else to the
    /// connector's name.
    pub(super) async fn stage(
        &mut self,
        records: &[Record],
        default_target: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let values: Vec<Cow<'_, Value>> = records.iter().map(record_value).collect();
        let fallback = self.connector.clone();
        let mut segments: Vec<Segment<'_>> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let target = record
                .target
                .as_deref()
                .or(default_target)
                .unwrap_or(&fallback);
            let t = self.route(target);
            let action = self.action(t, record.op, record.is_partial_update(), &values[i])?;
            let row = self.row(t, action, i, record, &values[i])?;
            match segments.last_mut() {
                Some(s) if s.table == t && s.target == target && s.action == action => {
                    s.rows.push(row)
                }
                _ => segments.push(Segment {
                    table: t,
                    target,
                    action,
                    rows: vec![row],
                }),
            }
        }
        for segment in segments {
            self.apply(segment, records, &values).await?;
        }
        Ok(())
    }

    fn action(
        &mut self,
        t: usize,
        op: Op,
        partial: bool,
        value: &Value,
    ) -> Result<Action, ConnectorError> {
        let (mode, soft) = (self.settings.mode, self.soft());
        let table = &mut self.tables[t];
        let keyless = table.pk.is_empty();
        Ok(match op {
            Op::Upsert if mode == WriteMode::Upsert && keyless => {
                if !table.warned_keyless {
                    table.warned_keyless = true;
                    tracing::warn!(
                        table = %table.sql,
                        "postgres sink: the table has no primary key (set primary_key, or give \
                         the stream one); its records are appended"
                    );
                }
                Action::Insert
            }
            Op::Upsert if mode == WriteMode::Upsert && partial => Action::Update,
            Op::Upsert if mode == WriteMode::Upsert => Action::Upsert,
            Op::Upsert => Action::Insert,
            Op::Delete if keyless => {
                return Err(ConnectorError::config(format!(
                    "postgres sink: a record deletes from {} but the table has no primary key; \
                     set primary_key for it (in [sink] or [sink.tables.\"TARGET\"])",
                    table.sql
                )))
            }
            Op::Delete if !soft => Action::Delete,
            Op::Delete if mode == WriteMode::Upsert => match value {
                Value::Object(m) if !m.is_empty() => Action::SoftDeleteRow,
                _ => Action::SoftDelete,
            },
            Op::Delete => Action::Tombstone,
        })
    }

    /// The columns of one record. Object fields become columns (sink-owned
    /// soft-delete columns excepted); another non-null value becomes the
    /// column `value`. The key's parts, when the table has a key, set the
    /// key columns, over same-named fields unless those hold the same value
    /// in another JSON type.
    fn row<'a>(
        &self,
        t: usize,
        action: Action,
        index: usize,
        record: &'a Record,
        value: &'a Value,
    ) -> Result<Row<'a>, ConnectorError> {
        let table = &self.tables[t];
        let soft_columns = [
            Some(self.settings.deleted_column.as_str()).filter(|_| self.soft()),
            self.settings
                .deleted_at_column
                .as_deref()
                .filter(|_| self.soft()),
        ];
        let mut fields: Vec<(Cow<'a, str>, &'a Value)> = match (action, value) {
            (Action::Delete | Action::SoftDelete, _) | (_, Value::Null) => Vec::new(),
            (_, Value::Object(map)) => {
                let mut fields: Vec<(Cow<'a, str>, &'a Value)> = map
                    .iter()
                    .map(|(k, v)| (ident(k), v))
                    .filter(|(k, _)| !soft_columns.contains(&Some(k.as_ref())))
                    .collect();
                if fields.iter().any(|(k, _)| matches!(k, Cow::Owned(_))) {
                    // Two fields mapped to one column: the last one wins.
                    let mut seen = std::collections::HashSet::new();
                    let mut kept: Vec<_> = fields
                        .into_iter()
                        .rev()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .collect();
                    kept.reverse();
                    fields = kept;
                }
                fields
            }
            (_, other) => vec![(Cow::Borrowed("value"), other)],
        };
        if table.pk.is_empty() {
            return Ok(Row {
                record: index,
                fields,
                key: Vec::new(),
                deleted_at: record.deleted_at(),
            });
        }
        let bad = |what: String| {
            ConnectorError::bad_record(format!(
                "postgres sink: record for {} (primary key {}): {what}",
                table.sql,
                table.pk.join(", ")
            ))
        };
        let key: Option<Vec<&'a Value>> = match &record.key {
            Some(k) if table.pk.len() == 1 => Some(vec![k]),
            Some(Value::Array(parts)) if parts.len() == table.pk.len() => {
                Some(parts.iter().collect())
            }
            Some(_) => {
                return Err(bad(format!(
                    "the key must be an array of {} values",
                    table.pk.len()
                )))
            }
            None => table
                .pk
                .iter()
                .map(|c| {
                    fields
                        .iter()
                        .find(|(f, _)| f == c)
                        .map(|(_, v)| *v)
                        .or_else(|| value.get(c.as_str()))
                })
                .collect(),
        };
        let needs_key = action != Action::Insert;
        let key = match key {
            Some(k) if !needs_key || k.iter().all(|v| !v.is_null()) => k,
            Some(_) => return Err(bad("a key value is null".into())),
            None if needs_key => {
                return Err(bad(
                    "no key: the record has no key and lacks a key field".into()
                ))
            }
            None => Vec::new(),
        };
        for (column, v) in table.pk.iter().zip(&key) {
            match fields.iter_mut().find(|(f, _)| f == column) {
                // The field stays when it is the key in another JSON type
                // (`1` for the key `"1"`): its type is the column's.
                Some(slot) if slot.1.is_null() || key_text(&[slot.1]) != key_text(&[v]) => {
                    slot.1 = v
                }
                Some(_) => {}
                None => fields.push((Cow::Owned(column.clone()), v)),
            }
        }
        Ok(Row {
            record: index,
            fields,
            key,
            deleted_at: record.deleted_at(),
        })
    }

    /// Makes sure the table's shape is known inside the open transaction.
    async fn load_shape(&mut self, t: usize) -> Result<(), ConnectorError> {
        if self.tables[t].shape.is_some() {
            return Ok(());
        }
        let table = &self.tables[t];
        let regclass = table.sql.clone();
        let check_key = (self.settings.mode == WriteMode::Upsert && !table.pk.is_empty())
            .then(|| table.pk.clone());
        let context = format!("postgres sink: reading the columns of {regclass}");
        let conn = self.connection().await?;
        let exists = db::boolean(conn, "SELECT to_regclass($1) IS NOT NULL", &regclass)
            .await
            .map_err(|e| classify(&context, &e))?;
        let mut shape = Shape::absent();
        if exists {
            shape.exists = true;
            let columns = db::pairs(
                conn,
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &regclass,
            )
            .await
            .map_err(|e| classify(&context, &e))?;
            for (name, ty) in columns {
                shape.push(name, PgType::from_catalog(&ty));
            }
            if let Some(mut want) = check_key {
                let unique = db::arrays(
                    conn,
                    "SELECT array_agg(a.attname::text ORDER BY k.ord) \
                     FROM pg_index i \
                     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                     WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
                     GROUP BY i.indexrelid",
                    &regclass,
                )
                .await
                .map_err(|e| classify(&context, &e))?;
                let key = want.join(", ");
                want.sort();
                let found = unique.into_iter().any(|mut cols| {
                    cols.sort();
                    cols == want
                });
                if !found {
                    return Err(ConnectorError::config(format!(
                        "postgres sink: upsert into {regclass} needs a primary key or unique \
                         index on ({key}), and the existing table has none; add one, fix \
                         primary_key, or set mode = \"append\""
                    )));
                }
            }
        }
        self.tables[t].shape = Some(shape);
        Ok(())
    }

    /// Stages one segment: evolves the table, dead-letters rejected rows,
    /// then writes the rest in statements of `batch_size` rows.
    async fn apply(
        &mut self,
        segment: Segment<'_>,
        records: &[Record],
        values: &[Cow<'_, Value>],
    ) -> Result<(), ConnectorError> {
        let t = segment.table;
        self.load_shape(t).await?;
        let mut rows = segment.rows;
        if segment.action == Action::Delete {
            let table = &self.tables[t];
            let Some(shape) = table.shape.as_ref().filter(|s| s.exists) else {
                return Ok(()); // no table: nothing to delete
            };
            // A key that does not fit the key column's type matches no row.
            let pk = &table.pk;
            rows.retain(|r| {
                pk.iter()
                    .zip(&r.key)
                    .all(|(c, v)| shape.get(c).is_some_and(|ty| ty.accepts_key(v)))
            });
        } else {
            let rejected = self.evolve(t, &mut rows).await?;
            if !rejected.is_empty() {
                self.dead_letter(t, segment.target, &rejected, records, values)
                    .await?;
            }
        }
        if matches!(
            segment.action,
            Action::Upsert | Action::SoftDelete | Action::SoftDeleteRow
        ) {
            rows = last_per_key(rows);
        } else if segment.action == Action::Update {
            rows = merged_per_key(rows);
        }
        for chunk in rows.chunks(self.settings.batch_size) {
            let (sql, payload) = self.statement(t, segment.action, chunk)?;
            if sql.is_empty() {
                continue; // an update naming only key columns changes nothing
            }
            let what = format!("writing into {}", self.tables[t].sql);
            self.run(
                Stmt {
                    sql,
                    binds: vec![payload],
                },
                &what,
            )
            .await?;
        }
        Ok(())
    }

    /// Brings the table's columns up to what `rows` need: creates the table,
    /// adds columns, widens types (or rejects rows, per `type_conflict`).
    /// Returns the rejected rows with the reason; they are removed from `rows`.
    async fn evolve<'a>(
        &mut self,
        t: usize,
        rows: &mut Vec<Row<'a>>,
    ) -> Result<Vec<(Row<'a>, String)>, ConnectorError> {
        let policy = self.settings.type_conflict;
        let soft = self.soft();
        let table = &self.tables[t];
        let Some(shape) = &table.shape else {
            return Ok(Vec::new());
        };
        let mut work = shape.clone();
        // Columns created by this call, in order; existing ones retyped.
        let mut added: Vec<String> = Vec::new();
        let mut widened: Vec<(String, PgType, PgType)> = Vec::new();
        fn add(work: &mut Shape, added: &mut Vec<String>, name: &str, ty: PgType) {
            if work.get(name).is_none() {
                work.push(name.to_string(), ty);
                added.push(name.to_string());
            }
        }
        for (name, ty) in &table.declared {
            if !(soft && self.is_soft_column(name)) {
                add(&mut work, &mut added, name, ty.clone());
            }
        }
        let mut rejected = Vec::new();
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows.drain(..) {
            // Changes of this row, applied only if it has no conflict.
            let mut changes: Vec<(&str, PgType)> = Vec::new();
            let mut conflict = None;
            for (column, value) in &row.fields {
                let column: &str = column;
                if value.is_null() {
                    continue;
                }
                let current = changes
                    .iter()
                    .rev()
                    .find(|(c, _)| *c == column)
                    .map(|(_, ty)| ty)
                    .or_else(|| work.get(column));
                let fits = |ty: &PgType| {
                    if table.pk.iter().any(|k| k == column) {
                        ty.accepts_key(value)
                    } else {
                        ty.accepts(value)
                    }
                };
                let Some(inferred) = (match current {
                    Some(ty) if fits(ty) => continue,
                    _ => schema::infer(value),
                }) else {
                    continue;
                };
                let next = match current {
                    None => inferred,
                    Some(ty) => match policy {
                        TypeConflict::Widen => ty.widen(&inferred),
                        TypeConflict::Fail | TypeConflict::DeadLetter => {
                            conflict = Some(format!(
                                "column {} of {} is {} but the record has {}",
                                quote(column),
                                table.sql,
                                ty.sql(),
                                schema::describe(value)
                            ));
                            break;
                        }
                    },
                };
                changes.push((column, next));
            }
            match conflict {
                Some(reason) if policy == TypeConflict::Fail => {
                    return Err(ConnectorError::bad_record(format!(
                        "postgres sink: {reason} (type_conflict = \"fail\"; \"widen\" would \
                         change the column's type, \"dead_letter\" would set the record aside)"
                    )));
                }
                Some(reason) => rejected.push((row, reason)),
                None => {
                    for (column, ty) in changes {
                        match work.get(column) {
                            None => add(&mut work, &mut added, column, ty),
                            Some(old) => {
                                if !added.iter().any(|a| a == column)
                                    && !widened.iter().any(|(c, _, _)| c == column)
                                {
                                    widened.push((column.to_string(), old.clone(), ty.clone()));
                                }
                                work.push(column.to_string(), ty);
                            }
                        }
                    }
                    kept.push(row);
                }
            }
        }
        *rows = kept;
        if rows.is_empty() && !shape.exists {
            // Only rejected rows: no key types to create the table with.
            return Ok(rejected);
        }
        if soft {
            let bool_column = self.settings.deleted_column.clone();
            add(&mut work, &mut added, &bool_column, PgType::Boolean);
            if let Some(at) = self.settings.deleted_at_column.clone() {
                add(&mut work, &mut added, &at, PgType::Timestamptz);
            }
        }
        // Final types of widened columns.
        let widened: Vec<(String, PgType, PgType)> = widened
            .into_iter()
            .filter_map(|(c, old, _)| {
                let new = work.get(&c)?.clone();
                (new != old).then_some((c, old, new))
            })
            .collect();
        if added.is_empty() && widened.is_empty() {
            return Ok(rejected);
        }
        let exists = shape.exists;
        let (schema_name, sql_name) = (table.schema.clone(), table.sql.clone());
        let pk = table.pk.clone();
        let column_def = |name: &str| -> String {
            let ty = work.get(name).map_or(Cow::Borrowed("text"), PgType::sql);
            if soft && name == self.settings.deleted_column {
                format!("{} boolean NOT NULL DEFAULT false", quote(name))
            } else {
                format!("{} {ty}", quote(name))
            }
        };
        let sql = if !exists {
            // Key columns first, then in order of appearance.
            let mut order: Vec<&String> = pk.iter().filter(|c| added.contains(c)).collect();
            order.extend(added.iter().filter(|c| !pk.contains(c)));
            let mut defs: Vec<String> = order.iter().map(|c| column_def(c)).collect();
            let all_keys_typed = pk.iter().all(|c| work.get(c).is_some());
            if self.settings.mode == WriteMode::Upsert && !pk.is_empty() && all_keys_typed {
                let cols: Vec<String> = pk.iter().map(|c| quote(c)).collect();
                defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
            }
            format!(
                "CREATE TABLE IF NOT EXISTS {sql_name} ({})",
                defs.join(", ")
            )
        } else {
            let mut parts: Vec<String> = added
                .iter()
                .map(|c| format!("ADD COLUMN IF NOT EXISTS {}", column_def(c)))
                .collect();
            for (c, _, new) in &widened {
                let q = quote(c);
                parts.push(format!(
                    "ALTER COLUMN {q} TYPE {} USING {}",
                    new.sql(),
                    new.using(&q)
                ));
            }
            format!("ALTER TABLE {sql_name} {}", parts.join(", "))
        };
        if !exists {
            self.ensure_schema(&schema_name, true).await?;
        }
        let what = format!("changing the columns of {sql_name}");
        self.run(
            Stmt {
                sql,
                binds: Vec::new(),
            },
            &what,
        )
        .await?;
        if !exists {
            tracing::info!(table = %sql_name, columns = added.len(), "postgres sink: created table");
        } else if !added.is_empty() {
            tracing::info!(table = %sql_name, columns = %added.join(", "), "postgres sink: added columns");
        }
        for (c, old, new) in &widened {
            tracing::warn!(table = %sql_name, column = %c, from = %old.sql(), to = %new.sql(), "postgres sink: widened a column for a value of another type (type_conflict = \"widen\")");
        }
        work.exists = true;
        self.tables[t].shape = Some(work);
        Ok(rejected)
    }

    fn is_soft_column(&self, name: &str) -> bool {
        name == self.settings.deleted_column
            || self.settings.deleted_at_column.as_deref() == Some(name)
    }

    /// Writes rejected records, with the reason, into the dead-letter table.
    async fn dead_letter(
        &mut self,
        t: usize,
        target: &str,
        rejected: &[(Row<'_>, String)],
        records: &[Record],
        values: &[Cow<'_, Value>],
    ) -> Result<(), ConnectorError> {
        let (schema, name) = self.settings.dead_letter_table.clone();
        let table = qualified(&schema, &name);
        if !self.dead_letter_ready {
            self.ensure_schema(&schema, true).await?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 connector text NOT NULL, target text, table_name text NOT NULL, \
                 key jsonb, record jsonb, error text NOT NULL, \
                 rejected_at timestamptz NOT NULL DEFAULT now())"
            );
            self.run(
                Stmt {
                    sql: ddl,
                    binds: Vec::new(),
                },
                "creating the dead-letter table",
            )
            .await?;
            self.dead_letter_ready = true;
        }
        let target_table = format!("{}.{}", self.tables[t].schema, self.tables[t].name);
        let rows: Vec<Value> = rejected
            .iter()
            .map(|(row, error)| {
                let record = &records[row.record];
                serde_json::json!({
                    "connector": self.connector,
                    "target": target,
                    "table_name": target_table,
                    "key": record.key,
                    "record": values[row.record],
                    "error": error,
                })
            })
            .collect();
        tracing::warn!(
            table = %self.tables[t].sql,
            records = rejected.len(),
            dead_letter_table = %table,
            "postgres sink: records with values that do not fit their columns were dead-lettered (type_conflict = \"dead_letter\")"
        );
        let sql = format!(
            "INSERT INTO {table} (connector, target, table_name, key, record, error) \
             SELECT connector, target, table_name, key, record, error \
             FROM json_populate_recordset(NULL::{table}, $1::json)"
        );
        self.run(
            Stmt {
                sql,
                binds: vec![Value::Array(rows).to_string()],
            },
            "writing into the dead-letter table",
        )
        .await
    }

    /// The SQL and JSON payload for one chunk of rows.
    fn statement(
        &self,
        t: usize,
        action: Action,
        rows: &[Row<'_>],
    ) -> Result<(String, String), ConnectorError> {
        let table = &self.tables[t];
        let Some(shape) = &table.shape else {
            return Err(ConnectorError::fatal(
                "postgres sink: writing into a table not read first",
            ));
        };
        // Columns of the chunk, in table order; fields without a column
        // (only nulls so far) are left out.
        let mut used = vec![false; shape.columns.len()];
        for row in rows {
            for (c, _) in &row.fields {
                if let Some(&i) = shape.index.get(c.as_ref()) {
                    used[i] = true;
                }
            }
        }
        let columns: Vec<String> = shape
            .columns
            .iter()
            .zip(&used)
            .filter(|(_, u)| **u)
            .map(|((c, _), _)| quote(c))
            .collect();
        let deleted_at_column = self.settings.deleted_at_column.clone().filter(|_| {
            matches!(
                action,
                Action::SoftDelete | Action::SoftDeleteRow | Action::Tombstone
            )
        });
        let mut payload: Vec<u8> = Vec::with_capacity(rows.len() * 64);
        payload.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                payload.push(b',');
            }
            payload.push(b'{');
            let mut first = true;
            // The source's deletion time travels in the deleted-at column
            // of the row type, so the statement can prefer it to now().
            let deleted_at = match (&deleted_at_column, row.deleted_at) {
                (Some(c), Some(at)) if shape.index.contains_key(c.as_str()) => {
                    Some((c.as_str(), Value::String(at.to_string())))
                }
                _ => None,
            };
            let extra = deleted_at.as_ref().map(|(c, v)| (Cow::Borrowed(*c), v));
            for (c, v) in row.fields.iter().map(|(c, v)| (c.clone(), *v)).chain(extra) {
                // A partial update's null is a value: the column it names
                // becomes NULL; elsewhere a null is the column's default.
                let skip_null = v.is_null() && action != Action::Update;
                if skip_null || !shape.index.contains_key(c.as_ref()) {
                    continue;
                }
                if !first {
                    payload.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut payload, c.as_ref())
                    .and_then(|()| {
                        payload.push(b':');
                        serde_json::to_writer(&mut payload, v)
                    })
                    .map_err(|e| {
                        ConnectorError::fatal(format!("postgres sink: encoding a row: {e}"))
                    })?;
            }
            payload.push(b'}');
        }
        payload.push(b']');
        let payload = String::from_utf8(payload)
            .map_err(|e| ConnectorError::fatal(format!("postgres sink: encoding a row: {e}")))?;

        let t_sql = &table.sql;
        let source = format!("json_populate_recordset(NULL::{t_sql}, $1::json)");
        let cols = columns.join(", ");
        let flag = quote(&self.settings.deleted_column);
        let at = self.settings.deleted_at_column.as_deref().map(quote);
        let pk: Vec<String> = table.pk.iter().map(|c| quote(c)).collect();
        let pk_list = pk.join(", ");
        let soft = self.soft();
        let sql = match action {
            Action::Insert => format!("INSERT INTO {t_sql} ({cols}) SELECT {cols} FROM {source}"),
            Action::Upsert | Action::SoftDeleteRow => {
                // Replace the whole row: every other column takes the new
                // value, or NULL (its default) when the record lacks it. A
                // soft-deleted row keeps the values the source last had.
                let deleted = action == Action::SoftDeleteRow;
                let (mut ins, mut sel) = (cols.clone(), cols.clone());
                if soft {
                    ins.push_str(&format!(", {flag}"));
                    sel.push_str(if deleted { ", true" } else { ", false" });
                    if let Some(at) = &at {
                        ins.push_str(&format!(", {at}"));
                        if deleted {
                            let _ = write!(sel, ", COALESCE({at}, now())");
                        } else {
                            sel.push_str(", NULL::timestamptz");
                        }
                    }
                }
                let sets: Vec<String> = shape
                    .columns
                    .iter()
                    .map(|(c, _)| quote(c))
                    .filter(|c| !pk.contains(c))
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                let conflict = if sets.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", sets.join(", "))
                };
                format!(
                    "INSERT INTO {t_sql} ({ins}) SELECT {sel} FROM {source} \
                     ON CONFLICT ({pk_list}) {conflict}"
                )
            }
            Action::Update => {
                // Each row sets the columns it names (`d.j ? 'c'`, a null
                // included) and keeps the others; a key no row has matches
                // nothing. Key columns are matched, never set.
                let sets: Vec<String> = shape
                    .columns
                    .iter()
                    .zip(&used)
                    .filter(|((c, _), u)| **u && !table.pk.contains(c))
                    .map(|((c, _), _)| {
                        let q = quote(c);
                        let name = c.replace('\'', "''");
                        format!("{q} = CASE WHEN d.j ? '{name}' THEN (d.r).{q} ELSE x.{q} END")
                    })
                    .collect();
                if sets.is_empty() {
                    return Ok((String::new(), payload));
                }
                let on: Vec<String> = pk.iter().map(|c| format!("x.{c} = (d.r).{c}")).collect();
                format!(
                    "UPDATE {t_sql} AS x SET {} FROM (SELECT e.j, \
                     jsonb_populate_record(NULL::{t_sql}, e.j) AS r \
                     FROM jsonb_array_elements($1::jsonb) AS e(j)) AS d WHERE {}",
                    sets.join(", "),
                    on.join(" AND ")
                )
            }
            Action::Delete => {
                let on: Vec<String> = pk.iter().map(|c| format!("x.{c} = d.{c}")).collect();
                format!(
                    "DELETE FROM {t_sql} AS x USING {source} AS d WHERE {}",
                    on.join(" AND ")
                )
            }
            Action::SoftDelete | Action::Tombstone => {
                let (mut ins, mut sel) = (cols.clone(), cols.clone());
                ins.push_str(&format!(", {flag}"));
                sel.push_str(", true");
                let mut sets = vec![format!("{flag} = true")];
                if let Some(at) = &at {
                    // The source's deletion time when it sent one.
                    ins.push_str(&format!(", {at}"));
                    let _ = write!(sel, ", COALESCE({at}, now())");
                    sets.push(format!("{at} = EXCLUDED.{at}"));
                }
                let mut sql = format!("INSERT INTO {t_sql} ({ins}) SELECT {sel} FROM {source}");
                if action == Action::SoftDelete {
                    let _ = write!(
                        sql,
                        " ON CONFLICT ({pk_list}) DO UPDATE SET {}",
                        sets.join(", ")
                    );
                }
                sql
            }
        };
        Ok((sql, payload))
    }
}

/// Keeps the last row of every key, in order: one `INSERT … ON CONFLICT`
/// statement may not touch a row twice.
fn last_per_key(rows: Vec<Row<'_>>) -> Vec<Row<'_>> {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(key_text(&row.key), i);
    }
    if last.len() == rows.len() {
        return rows;
    }
    rows.into_iter()
        .enumerate()
        .filter(|(i, row)| last.get(&key_text(&row.key)) == Some(i))
        .map(|(_, row)| row)
        .collect()
}

/// Partial updates of one key merged into one row, in order: a later
/// update's columns over an earlier one's, the union of what they name (one
/// `UPDATE … FROM` may not change a row twice either).
fn merged_per_key(rows: Vec<Row<'_>>) -> Vec<Row<'_>> {
    let mut at: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    let mut merged: Vec<Row<'_>> = Vec::with_capacity(rows.len());
    for row in rows {
        match at.get(&key_text(&row.key)) {
            Some(&i) => {
                let into = &mut merged[i];
                for (column, value) in row.fields {
                    match into.fields.iter_mut().find(|(c, _)| *c == column) {
                        Some(slot) => slot.1 = value,
                        None => into.fields.push((column, value)),
                    }
                }
                into.record = row.record;
            }
            None => {
                at.insert(key_text(&row.key), merged.len());
                merged.push(row);
            }
        }
    }
    merged
}

/// A key as PostgreSQL compares it after conversion: strings unquoted, so
/// `1` and `"1"` (both `'1'` in a text column) are one key.
fn key_text(key: &[&Value]) -> String {
    let mut s = String::new();
    for v in key {
        match v {
            Value::String(x) => s.push_str(x),
            other => {
                let _ = write!(s, "{other}");
            }
        }
        s.push('\u{1f}');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_postgres_sees_them() {
        let one = Value::from(1);
        let one_text = Value::from("1");
        assert_eq!(key_text(&[&one]), key_text(&[&one_text]));
        assert_ne!(
            key_text(&[&Value::from("a"), &Value::from("b")]),
            key_text(&[&Value::from("ab"), &Value::from("")])
        );
    }

    fn row<'a>(record: usize, key: &'a Value, fields: &[(&'a str, &'a Value)]) -> Row<'a> {
        Row {
            record,
            fields: fields
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), *v))
                .collect(),
            key: vec![key],
            deleted_at: None,
        }
    }

    fn fields(row: &Row<'_>) -> Vec<(String, Value)> {
        row.fields
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect()
    }

    #[test]
    fn partial_updates_of_one_key_merge_in_order() {
        let (one, two) = (Value::from(1), Value::from(2));
        let (a, b, null) = (Value::from("a"), Value::from("b"), Value::Null);
        let merged = merged_per_key(vec![
            row(0, &one, &[("id", &one), ("name", &a)]),
            row(1, &two, &[("id", &two), ("name", &b)]),
            row(2, &one, &[("id", &one), ("amount", &null), ("name", &b)]),
        ]);
        assert_eq!(merged.len(), 2);
        // The later update's columns over the earlier's, the union of both.
        assert_eq!(
            fields(&merged[0]),
            vec![
                ("id".into(), one.clone()),
                ("name".into(), b.clone()),
                ("amount".into(), Value::Null)
            ]
        );
        assert_eq!(merged[0].record, 2);
        assert_eq!(
            fields(&merged[1]),
            vec![("id".into(), two.clone()), ("name".into(), b.clone())]
        );
    }
}
