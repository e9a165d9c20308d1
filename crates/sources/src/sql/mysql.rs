//! MySQL and MariaDB values to JSON, one decoder per column resolved from
//! its type name (`type_info().name()`), decoding through sqlx's own
//! MySQL decoders (the wire format is simple and sqlx's decoding of it is
//! exact: `DECIMAL` arrives as text).

use super::value::{self, Kind, Zone};
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySqlRow, MySqlTypeInfo};
use sqlx::{Row, TypeInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MyDecoder {
    Null,
    /// `TINYINT(1)` / `BOOLEAN`: any non-zero value is `true`.
    Bool,
    Int,
    UInt,
    Float,
    Double,
    Decimal,
    Text,
    /// A text column listed in `json_columns` (MariaDB stores `JSON` as `LONGTEXT`).
    TextJson,
    Bytes,
    Json,
    Date,
    Time,
    /// `DATETIME`: a wall-clock time in the source's `timezone`.
    DateTime,
    /// `TIMESTAMP`: an instant (the session's `time_zone` is `+00:00`).
    Timestamp,
    Bit,
}

impl MyDecoder {
    /// `None` for types without a JSON mapping (`GEOMETRY`).
    ///
    /// `declared` is the catalog's `COLUMN_TYPE` (table mode): the wire
    /// protocol flags text with a binary collation (`utf8mb4_bin`, which
    /// MariaDB uses for `JSON` and `UUID`) like binary strings, and sqlx
    /// names both `BLOB`; the declaration tells them apart.
    pub fn resolve(t: &MySqlTypeInfo, declared: Option<&str>, as_json: bool) -> Option<MyDecoder> {
        let declared = declared.map(str::to_ascii_lowercase);
        let declared_text = declared.as_deref().is_some_and(|d| {
            [
                "char",
                "varchar",
                "tinytext",
                "text",
                "mediumtext",
                "longtext",
                "enum",
                "set",
                "json",
                "uuid",
                "inet4",
                "inet6",
            ]
            .iter()
            .any(|p| d == *p || d.starts_with(&format!("{p}(")) || d.starts_with(&format!("{p} ")))
        });
        let name = t.name();
        let d = match name {
            "NULL" => MyDecoder::Null,
            "BOOLEAN" => MyDecoder::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => MyDecoder::Int,
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => MyDecoder::UInt,
            "FLOAT" => MyDecoder::Float,
            "DOUBLE" => MyDecoder::Double,
            "DECIMAL" => MyDecoder::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => {
                if as_json {
                    MyDecoder::TextJson
                } else {
                    MyDecoder::Text
                }
            }
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                if declared.as_deref().is_some_and(|d| d.starts_with("json")) || as_json {
                    MyDecoder::TextJson
                } else if declared_text {
                    MyDecoder::Text
                } else if as_json {
                    MyDecoder::TextJson
                } else {
                    MyDecoder::Bytes
                }
            }
            "JSON" => MyDecoder::Json,
            "DATE" => MyDecoder::Date,
            "TIME" => MyDecoder::Time,
            "DATETIME" => MyDecoder::DateTime,
            "TIMESTAMP" => MyDecoder::Timestamp,
            "BIT" => MyDecoder::Bit,
            _ => return None,
        };
        Some(d)
    }

    pub fn kind(self) -> Kind {
        match self {
            MyDecoder::Null => Kind::Null,
            MyDecoder::Bool => Kind::Bool,
            MyDecoder::Int | MyDecoder::UInt | MyDecoder::Bit => Kind::Integer,
            MyDecoder::Float | MyDecoder::Double => Kind::Float,
            MyDecoder::Decimal => Kind::Decimal,
            MyDecoder::Text => Kind::Text,
            MyDecoder::TextJson | MyDecoder::Json => Kind::Json,
            MyDecoder::Bytes => Kind::Bytes,
            MyDecoder::Date => Kind::Date,
            MyDecoder::Time => Kind::Time,
            MyDecoder::DateTime => Kind::Timestamp { naive: true },
            MyDecoder::Timestamp => Kind::Timestamp { naive: false },
        }
    }

    /// How a keyset value of this column is bound; `None`: not keyable.
    pub fn key_codec(self) -> Option<super::row::KeyCodec> {
        use super::row::KeyCodec;
        Some(match self {
            MyDecoder::Bool | MyDecoder::Int => KeyCodec::MyInt,
            MyDecoder::UInt | MyDecoder::Bit => KeyCodec::MyUInt,
            MyDecoder::Decimal => KeyCodec::MyDecimal,
            MyDecoder::Text => KeyCodec::MyText,
            MyDecoder::Date => KeyCodec::MyDate,
            MyDecoder::DateTime | MyDecoder::Timestamp => KeyCodec::MyDateTime,
            _ => return None,
        })
    }

    pub fn decode(self, row: &MySqlRow, i: usize, zone: &Zone) -> Result<Value, String> {
        let e = |err: sqlx::Error| err.to_string();
        Ok(match self {
            MyDecoder::Null => Value::Null,
            MyDecoder::Bool => opt(
                row.try_get_unchecked::<Option<i64>, _>(i).map_err(e)?,
                |v| Value::Bool(v != 0),
            ),
            MyDecoder::Int => opt(
                row.try_get_unchecked::<Option<i64>, _>(i).map_err(e)?,
                Value::from,
            ),
            MyDecoder::UInt | MyDecoder::Bit => opt(
                row.try_get_unchecked::<Option<u64>, _>(i).map_err(e)?,
                Value::from,
            ),
            MyDecoder::Float => opt(
                row.try_get_unchecked::<Option<f32>, _>(i).map_err(e)?,
                value::float4,
            ),
            MyDecoder::Double => opt(
                row.try_get_unchecked::<Option<f64>, _>(i).map_err(e)?,
                value::float,
            ),
            MyDecoder::Decimal | MyDecoder::Text => opt(
                row.try_get_unchecked::<Option<String>, _>(i).map_err(e)?,
                Value::String,
            ),
            MyDecoder::TextJson | MyDecoder::Json => {
                match row.try_get_unchecked::<Option<&[u8]>, _>(i).map_err(e)? {
                    None => Value::Null,
                    Some(b) => {
                        serde_json::from_slice(b).map_err(|e| format!("invalid JSON: {e}"))?
                    }
                }
            }
            MyDecoder::Bytes => opt(
                row.try_get_unchecked::<Option<&[u8]>, _>(i).map_err(e)?,
                value::base64,
            ),
            MyDecoder::Date => opt(
                zero_date(row.try_get_unchecked::<Option<NaiveDate>, _>(i))?,
                |d| Value::String(d.format("%Y-%m-%d").to_string()),
            ),
            MyDecoder::Time => opt(
                row.try_get_unchecked::<Option<MySqlTime>, _>(i)
                    .map_err(e)?,
                |t| Value::String(time(&t)),
            ),
            MyDecoder::DateTime => opt(
                zero_date(row.try_get_unchecked::<Option<NaiveDateTime>, _>(i))?,
                |t| Value::String(value::fmt_utc(zone.to_utc(t))),
            ),
            MyDecoder::Timestamp => opt(
                zero_date(row.try_get_unchecked::<Option<NaiveDateTime>, _>(i))?,
                |t| Value::String(value::fmt_utc(t.and_utc())),
            ),
        })
    }

    /// The checkpoint form of a keyset value: a `DATETIME` stays a
    /// wall-clock time; everything else is its JSON.
    pub fn key(self, row: &MySqlRow, i: usize, decoded: &Value) -> Result<Value, String> {
        match self {
            MyDecoder::DateTime => Ok(
                match zero_date(row.try_get_unchecked::<Option<NaiveDateTime>, _>(i))? {
                    Some(t) => Value::String(value::fmt_naive(t)),
                    None => Value::Null,
                },
            ),
            _ => Ok(decoded.clone()),
        }
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

/// MySQL's "zero" dates (`0000-00-00`) have no calendar value: null, as
/// MySQL Connector/J's `zeroDateTimeBehavior=CONVERT_TO_NULL` does.
fn zero_date<T>(r: Result<Option<T>, sqlx::Error>) -> Result<Option<T>, String> {
    match r {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { source, .. })
            if source.is::<sqlx::error::UnexpectedNullError>() =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `[-]H:MM:SS[.ffffff]` with at least two hour digits (MySQL's own form).
fn time(t: &MySqlTime) -> String {
    // Not `is_negative()`: sqlx 0.8.6's returns the opposite.
    let sign = if t.sign().is_negative() { "-" } else { "" };
    let mut s = format!(
        "{sign}{:02}:{:02}:{:02}",
        t.hours(),
        t.minutes(),
        t.seconds()
    );
    if t.microseconds() != 0 {
        let f = format!("{:06}", t.microseconds());
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}
