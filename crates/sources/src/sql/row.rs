//! One result row to a record value, keyset position and delete flag,
//! with per-column decoders resolved before the first row (never a type
//! name lookup per cell).

use super::dialect::BindValue;
use super::mysql::MyDecoder;
use super::pg::PgColumn;
use super::sqlite::{LiteDecl, Stored};
use super::value::{self, TimeValue, Zone};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
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

/// Decodes the cells of one database's rows.
pub trait RowDecoder {
    type Row;
    /// The JSON value of cell `i`.
    fn decode(&self, row: &Self::Row, i: usize, zone: &Zone) -> Result<Value, String>;
    /// The checkpoint form of cell `i` of a keyset column; `decoded` is
    /// what [`RowDecoder::decode`] returned for it.
    fn key(&self, row: &Self::Row, i: usize, zone: &Zone, decoded: &Value)
        -> Result<Value, String>;
    /// The instant cell `i` stands for (SQLite's cursor, compared with the
    /// lag bound in Rust because SQLite has no time type to compare in SQL).
    fn instant(&self, _row: &Self::Row, _i: usize, _zone: &Zone) -> Result<DateTime<Utc>, String> {
        Err("only SQLite cursors are compared in Rust".into())
    }
}

impl RowDecoder for PgColumn {
    type Row = PgRow;

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

    fn key(&self, row: &PgRow, i: usize, zone: &Zone, decoded: &Value) -> Result<Value, String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() || raw.format() == PgValueFormat::Text {
            return Ok(decoded.clone());
        }
        let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
        self.decoder.key(bytes, zone, decoded)
    }
}

impl RowDecoder for MyDecoder {
    type Row = MySqlRow;

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

impl RowDecoder for LiteDecl {
    type Row = SqliteRow;

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
    /// Column indices in the order of their names (JSON objects are sorted maps).
    pub by_name: Vec<usize>,
    /// The database's type name of each column, for messages.
    pub type_names: Vec<String>,
    /// Columns of the keyset (cursor first, then the primary key), by index.
    pub keyset: Vec<usize>,
    pub soft_delete: Option<usize>,
    /// SQLite only: the cursor column, whose instant is compared with the lag bound.
    pub instant_of: Option<usize>,
    pub zone: Zone,
}

/// One decoded row.
#[derive(Debug, Clone)]
pub struct DecodedRow {
    pub value: Value,
    /// The checkpoint values of the keyset columns.
    pub keyset: Vec<Value>,
    pub deleted: bool,
    /// When the row was deleted: the soft-delete column's value, when that
    /// is a timestamp.
    pub deleted_at: Option<String>,
    /// A cell that could not be decoded (its field is null in `value`): the
    /// row becomes a bad record, but the position still moves past it.
    pub bad: Option<String>,
    pub instant: Option<DateTime<Utc>>,
}

pub fn decode_row<D: RowDecoder>(
    row: &D::Row,
    columns: &[D],
    shape: &Shape,
) -> Result<DecodedRow, ConnectorError> {
    // Cells are decoded in name order and the object is bulk-built from the
    // sorted pairs: about twice as fast as inserting them one by one.
    let mut pairs = Vec::with_capacity(columns.len());
    let mut bad = None;
    for &i in &shape.by_name {
        let (col, name) = (&columns[i], &shape.names[i]);
        let v = match col.decode(row, i, &shape.zone) {
            Ok(v) => v,
            Err(e) => {
                if bad.is_none() {
                    bad = Some(format!(
                        "column `{name}` ({}): {e}",
                        shape.type_names.get(i).map_or("?", String::as_str)
                    ));
                }
                Value::Null
            }
        };
        pairs.push((name.clone(), v));
    }
    let map: Map<String, Value> = pairs.into_iter().collect();
    let mut keyset = Vec::with_capacity(shape.keyset.len());
    for &i in &shape.keyset {
        let name = &shape.names[i];
        let decoded = map.get(name).unwrap_or(&Value::Null);
        let key = columns[i].key(row, i, &shape.zone, decoded).map_err(|e| {
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
    let instant = match shape.instant_of {
        Some(i) => Some(columns[i].instant(row, i, &shape.zone).map_err(|e| {
            ConnectorError::config(format!(
                "stream `{}`: cursor column `{}` holds a value that is not a timestamp: {e}",
                shape.stream, shape.names[i]
            ))
        })?),
        None => None,
    };
    let marker = shape.soft_delete.and_then(|i| map.get(&shape.names[i]));
    let deleted = marker.is_some_and(value::is_deleted);
    let deleted_at = match marker {
        Some(Value::String(s)) if deleted && DateTime::parse_from_rfc3339(s).is_ok() => {
            Some(s.clone())
        }
        _ => None,
    };
    Ok(DecodedRow {
        value: Value::Object(map),
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
