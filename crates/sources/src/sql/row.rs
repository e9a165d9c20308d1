//! One result row to a record value, keyset position and delete flag,
//! with per-column decoders resolved before the first row (never a type
//! name lookup per cell).
//!
//! A row is written as JSON text straight from its cells into a buffer
//! shared by many rows, and travels as that text (`Payload::Raw`): building
//! a `serde_json` map per row, dropping it, and serializing it again in the
//! sink and for the byte statistic was most of the source's CPU (issue 25's
//! profile: decoding 31%, map building 9%, dropping 7%, the second
//! serialization 7%, escaping on write 9%). Only the cells the reader
//! itself needs (keyset, primary key, soft-delete marker) become values.

use super::dialect::BindValue;
use super::mysql::MyDecoder;
use super::pg::PgColumn;
use super::pg_copy::CopyRow;
use super::sqlite::{LiteDecl, Stored};
use super::value::{self, TimeValue, Zone};
use crate::object_text::ObjectFields;
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, ValueRef};
use tributary_core::ConnectorError;

/// How a keyset value read from a checkpoint is bound back so that it
/// compares exactly with the column it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyCodec {
    /// PostgreSQL: the value's text, cast in SQL to the column's type.
    PgCast(String),
    MyInt,
    MyUInt,
    MyText,
    /// Compared as `DECIMAL(65,30)`: MySQL compares a string with a
    /// decimal column as floating point otherwise.
    MyDecimal,
    MyDateTime,
    MyDate,
    /// SQLite: bound with the storage class it was read with.
    LiteRaw,
}

impl KeyCodec {
    /// The bind value (and SQL cast) for a checkpointed keyset value.
    pub fn bind(&self, v: &Value) -> Result<(BindValue, Option<String>), String> {
        let bad = || format!("checkpoint value {v} does not fit the column");
        Ok(match self {
            KeyCodec::PgCast(t) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(bad()),
                };
                (BindValue::Text(text), Some(t.clone()))
            }
            KeyCodec::MyInt => match v {
                Value::Bool(b) => (BindValue::Int(*b as i64), None),
                _ => (BindValue::Int(v.as_i64().ok_or_else(bad)?), None),
            },
            KeyCodec::MyUInt => (BindValue::UInt(v.as_u64().ok_or_else(bad)?), None),
            KeyCodec::MyText => (
                BindValue::Text(v.as_str().ok_or_else(bad)?.to_string()),
                None,
            ),
            KeyCodec::MyDecimal => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad()),
                };
                (BindValue::Text(text), Some("DECIMAL(65,30)".into()))
            }
            KeyCodec::MyDateTime => {
                let t = match value::parse_time(v.as_str().ok_or_else(bad)?) {
                    Some(TimeValue::Instant(t)) => t.naive_utc(),
                    Some(TimeValue::Naive(t)) => t,
                    None => return Err(bad()),
                };
                (BindValue::DateTime(t), None)
            }
            KeyCodec::MyDate => {
                let d = NaiveDate::parse_from_str(v.as_str().ok_or_else(bad)?, "%Y-%m-%d")
                    .map_err(|_| bad())?;
                (BindValue::Date(d), None)
            }
            KeyCodec::LiteRaw => match v {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => (BindValue::Int(i), None),
                    None => (BindValue::Float(n.as_f64().ok_or_else(bad)?), None),
                },
                Value::String(s) => (BindValue::Text(s.clone()), None),
                _ => return Err(bad()),
            },
        })
    }
}

/// Decodes the cells of one database's rows (`Row`: the driver's row, or
/// a row of PostgreSQL's binary `COPY` output).
pub trait RowDecoder<Row> {
    /// The JSON value of cell `i`.
    fn decode(&self, row: &Row, i: usize, zone: &Zone) -> Result<Value, String>;
    /// Appends the JSON text of cell `i` to `out`, exactly what
    /// [`RowDecoder::decode`] gives, serialized; nothing on error. The
    /// default goes through the value; decoders override it for the
    /// common types to skip that.
    fn write(&self, row: &Row, i: usize, zone: &Zone, out: &mut BytesMut) -> Result<(), String> {
        let v = self.decode(row, i, zone)?;
        write_value(&v, out);
        Ok(())
    }
    /// The checkpoint form of cell `i` of a keyset column; `decoded` is
    /// what [`RowDecoder::decode`] returned for it.
    fn key(&self, row: &Row, i: usize, zone: &Zone, decoded: &Value) -> Result<Value, String>;
    /// The instant cell `i` stands for (SQLite's cursor, compared with the
    /// lag bound in Rust because SQLite has no time type to compare in SQL).
    fn instant(&self, _row: &Row, _i: usize, _zone: &Zone) -> Result<DateTime<Utc>, String> {
        Err("only SQLite cursors are compared in Rust".into())
    }
}

impl RowDecoder<PgRow> for PgColumn {
    fn decode(&self, row: &PgRow, i: usize, zone: &Zone) -> Result<Value, String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
        match raw.format() {
            PgValueFormat::Binary => self.decoder.decode(bytes, zone),
            // Never chosen by sqlx for prepared statements; kept exact anyway.
            PgValueFormat::Text => Ok(Value::String(String::from_utf8_lossy(bytes).into_owned())),
        }
    }

    fn write(&self, row: &PgRow, i: usize, zone: &Zone, out: &mut BytesMut) -> Result<(), String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
        match raw.format() {
            PgValueFormat::Binary => self.decoder.write(bytes, zone, out),
            PgValueFormat::Text => {
                write_value(
                    &Value::String(String::from_utf8_lossy(bytes).into_owned()),
                    out,
                );
                Ok(())
            }
        }
    }

    fn key(&self, row: &PgRow, i: usize, zone: &Zone, decoded: &Value) -> Result<Value, String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() || raw.format() == PgValueFormat::Text {
            return Ok(decoded.clone());
        }
        let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
        self.decoder.key(bytes, zone, decoded)
    }
}

impl RowDecoder<CopyRow> for PgColumn {
    fn decode(&self, row: &CopyRow, i: usize, zone: &Zone) -> Result<Value, String> {
        match row.cell(i)? {
            None => Ok(Value::Null),
            Some(bytes) => self.decoder.decode(bytes, zone),
        }
    }

    fn write(
        &self,
        row: &CopyRow,
        i: usize,
        zone: &Zone,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        match row.cell(i)? {
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            Some(bytes) => self.decoder.write(bytes, zone, out),
        }
    }

    fn key(&self, row: &CopyRow, i: usize, zone: &Zone, decoded: &Value) -> Result<Value, String> {
        match row.cell(i)? {
            None => Ok(decoded.clone()),
            Some(bytes) => self.decoder.key(bytes, zone, decoded),
        }
    }
}

impl RowDecoder<MySqlRow> for MyDecoder {
    fn decode(&self, row: &MySqlRow, i: usize, zone: &Zone) -> Result<Value, String> {
        MyDecoder::decode(*self, row, i, zone)
    }

    fn key(
        &self,
        row: &MySqlRow,
        i: usize,
        _zone: &Zone,
        decoded: &Value,
    ) -> Result<Value, String> {
        MyDecoder::key(*self, row, i, decoded)
    }
}

impl RowDecoder<SqliteRow> for LiteDecl {
    fn decode(&self, row: &SqliteRow, i: usize, zone: &Zone) -> Result<Value, String> {
        LiteDecl::decode(*self, row, i, zone)
    }

    fn key(
        &self,
        row: &SqliteRow,
        i: usize,
        _zone: &Zone,
        _decoded: &Value,
    ) -> Result<Value, String> {
        Stored::read(row, i)?.key()
    }

    fn instant(&self, row: &SqliteRow, i: usize, zone: &Zone) -> Result<DateTime<Utc>, String> {
        Stored::read(row, i)?.instant(zone)
    }
}

/// What to take from each row of a statement.
#[derive(Debug, Clone)]
pub struct Shape {
    pub stream: String,
    /// Output field names, in column order.
    pub names: Vec<String>,
    /// How the record's text is laid out.
    pub fields: ObjectFields,
    /// The database's type name of each column, for messages.
    pub type_names: Vec<String>,
    /// Columns of the keyset (cursor first, then the primary key), by index.
    pub keyset: Vec<usize>,
    /// Columns of the record key, by index.
    pub primary_key: Vec<usize>,
    pub soft_delete: Option<usize>,
    /// SQLite only: the cursor column, whose instant is compared with the lag bound.
    pub instant_of: Option<usize>,
    /// Per column: whether the reader needs its value, not only its text.
    pub needs_value: Vec<bool>,
    /// Needed columns whose name another column holds in the record:
    /// decoded on their own.
    pub shadowed: Vec<usize>,
    pub zone: Zone,
}

/// What a [`Shape`] is made from.
pub struct ShapeParts<'a> {
    pub stream: &'a str,
    pub names: &'a [String],
    pub type_names: Vec<String>,
    pub keyset: Vec<usize>,
    pub primary_key: &'a [String],
    pub soft_delete: Option<usize>,
    pub instant_of: Option<usize>,
    pub zone: Zone,
}

impl Shape {
    pub fn new(p: ShapeParts<'_>) -> Shape {
        let names = p.names;
        let fields = ObjectFields::new(names);
        let primary_key: Vec<usize> = p
            .primary_key
            .iter()
            .filter_map(|n| fields.column(n))
            .collect();
        let mut needs_value = vec![false; names.len()];
        for &i in p.keyset.iter().chain(&primary_key).chain(&p.soft_delete) {
            needs_value[i] = true;
        }
        let shadowed = (0..names.len())
            .filter(|i| needs_value[*i] && !fields.is_written(*i))
            .collect();
        Shape {
            stream: p.stream.to_string(),
            names: names.to_vec(),
            fields,
            type_names: p.type_names,
            keyset: p.keyset,
            primary_key,
            soft_delete: p.soft_delete,
            instant_of: p.instant_of,
            needs_value,
            shadowed,
            zone: p.zone,
        }
    }
}

/// One decoded row.
#[derive(Debug, Clone)]
pub struct DecodedRow {
    /// The record value as JSON text (an object, fields sorted by name).
    pub text: Bytes,
    /// The record key: the primary key's value, an array of them when
    /// there are several; `None` without a primary key.
    pub key: Option<Value>,
    /// The checkpoint values of the keyset columns.
    pub keyset: Vec<Value>,
    pub deleted: bool,
    /// When the row was deleted: the soft-delete column's value, when that
    /// is a timestamp.
    pub deleted_at: Option<String>,
    /// A cell that could not be decoded (its field is null in `text`): the
    /// row becomes a bad record, but the position still moves past it.
    pub bad: Option<String>,
    pub instant: Option<DateTime<Utc>>,
}

fn col_value<R, D: RowDecoder<R>>(col: &D, row: &R, i: usize, zone: &Zone) -> Option<Value> {
    col.decode(row, i, zone).ok()
}

/// Appends a value as compact JSON.
pub(super) fn write_value(v: &Value, out: &mut BytesMut) {
    // Writing a `Value` to memory cannot fail.
    let _ = serde_json::to_writer(out.writer(), v);
}

/// Decodes one row; its text is written into `buf` and split off.
pub fn decode_row<R, D: RowDecoder<R>>(
    row: &R,
    columns: &[D],
    shape: &Shape,
    buf: &mut BytesMut,
) -> Result<DecodedRow, ConnectorError> {
    let mut values: Vec<Option<Value>> = Vec::new();
    let mut bad = None;
    let written = shape
        .fields
        .write::<std::convert::Infallible>(buf, |i, buf| {
            let col = &columns[i];
            let result = if shape.needs_value[i] {
                col.decode(row, i, &shape.zone).map(|v| {
                    write_value(&v, buf);
                    if values.is_empty() {
                        values.resize(columns.len(), None);
                    }
                    values[i] = Some(v);
                })
            } else {
                col.write(row, i, &shape.zone, buf)
            };
            if let Err(e) = result {
                if bad.is_none() {
                    bad = Some(format!(
                        "column `{}` ({}): {e}",
                        shape.names[i],
                        shape.type_names.get(i).map_or("?", String::as_str)
                    ));
                }
                buf.extend_from_slice(b"null");
            }
            Ok(())
        });
    let text = match written {
        Ok(text) => text,
        Err(never) => match never {},
    };
    for &i in &shape.shadowed {
        if values.is_empty() {
            values.resize(columns.len(), None);
        }
        values[i] = col_value(&columns[i], row, i, &shape.zone);
    }
    let value_of = |i: usize| {
        values
            .get(i)
            .and_then(Option::as_ref)
            .unwrap_or(&Value::Null)
    };
    let mut keyset = Vec::with_capacity(shape.keyset.len());
    for &i in &shape.keyset {
        let name = &shape.names[i];
        let key = columns[i]
            .key(row, i, &shape.zone, value_of(i))
            .map_err(|e| {
                ConnectorError::fatal(format!(
                    "stream `{}`: keyset column `{name}` cannot be read: {e}",
                    shape.stream
                ))
            })?;
        if key.is_null() {
            return Err(ConnectorError::fatal(format!(
                "stream `{}`: keyset column `{name}` is null in a row; keyset paging needs a non-null cursor and primary key",
                shape.stream
            )));
        }
        keyset.push(key);
    }
    let key = match shape.primary_key.as_slice() {
        [] => None,
        [one] => Some(value_of(*one).clone()),
        many => Some(Value::Array(
            many.iter().map(|&i| value_of(i).clone()).collect(),
        )),
    };
    let instant = match shape.instant_of {
        Some(i) => Some(columns[i].instant(row, i, &shape.zone).map_err(|e| {
            ConnectorError::config(format!(
                "stream `{}`: cursor column `{}` holds a value that is not a timestamp: {e}",
                shape.stream, shape.names[i]
            ))
        })?),
        None => None,
    };
    let marker = shape.soft_delete.map(value_of);
    let deleted = marker.is_some_and(value::is_deleted);
    let deleted_at = match marker {
        Some(Value::String(s)) if deleted && DateTime::parse_from_rfc3339(s).is_ok() => {
            Some(s.clone())
        }
        _ => None,
    };
    Ok(DecodedRow {
        text,
        key,
        keyset,
        deleted,
        deleted_at,
        bad,
        instant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checkpoint_values_bind_with_their_column_types() {
        assert_eq!(
            KeyCodec::PgCast("int8".into()).bind(&json!(42)).unwrap(),
            (BindValue::Text("42".into()), Some("int8".into()))
        );
        assert_eq!(
            KeyCodec::MyUInt
                .bind(&json!(18446744073709551615u64))
                .unwrap()
                .0,
            BindValue::UInt(u64::MAX)
        );
        assert_eq!(
            KeyCodec::MyDateTime
                .bind(&json!("2024-01-02T03:04:05.123456Z"))
                .unwrap()
                .0,
            BindValue::DateTime(
                chrono::NaiveDateTime::parse_from_str(
                    "2024-01-02 03:04:05.123456",
                    "%Y-%m-%d %H:%M:%S%.f"
                )
                .unwrap()
            )
        );
        assert_eq!(
            KeyCodec::LiteRaw.bind(&json!(1.5)).unwrap().0,
            BindValue::Float(1.5)
        );
        assert!(KeyCodec::MyInt.bind(&json!("x")).is_err());
    }
}
