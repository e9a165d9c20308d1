//! SQLite values to JSON.
//!
//! SQLite stores each value as INTEGER, REAL, TEXT or BLOB whatever the
//! column was declared as, so a column's decoder is chosen from its
//! declared type (read from `pragma_table_info` in table mode, or sqlx's
//! reading of it in query mode) and then applied to each value by its
//! storage class: a `BOOLEAN` column's integer becomes `true`/`false`, a
//! `DATETIME` column's text or number becomes an RFC 3339 instant, a value
//! that does not fit its declaration comes out as what it is.

use super::value::{self, Kind, TimeValue, Zone};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, TypeInfo, ValueRef};

/// What a column was declared as, by SQLite's affinity rules plus the
/// names applications use for booleans, times and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteDecl {
    /// No declared type (or `BLOB`): each value as stored.
    Any,
    Bool,
    Integer,
    Real,
    Decimal,
    Text,
    Json,
    Date,
    Time,
    Timestamp,
}

impl LiteDecl {
    /// From a declared type as written in `CREATE TABLE` (`VARCHAR(20)`, `DATETIME`).
    pub fn from_declared(decl: &str) -> LiteDecl {
        let d = decl.to_ascii_uppercase();
        if d.contains("BOOL") {
            LiteDecl::Bool
        } else if d.contains("TIMESTAMP") || d.contains("DATETIME") {
            LiteDecl::Timestamp
        } else if d.contains("JSON") {
            LiteDecl::Json
        } else if d.contains("INT") {
            LiteDecl::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            LiteDecl::Text
        } else if d.contains("DATE") {
            LiteDecl::Date
        } else if d.contains("TIME") {
            LiteDecl::Time
        } else if d.is_empty() || d.contains("BLOB") {
            LiteDecl::Any
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            LiteDecl::Real
        } else if d.contains("DEC") || d.contains("NUM") {
            LiteDecl::Decimal
        } else {
            LiteDecl::Any
        }
    }

    /// From sqlx's type of a result column (query mode).
    pub fn from_sqlx(name: &str) -> LiteDecl {
        match name {
            "BOOLEAN" => LiteDecl::Bool,
            "DATETIME" => LiteDecl::Timestamp,
            "DATE" => LiteDecl::Date,
            "TIME" => LiteDecl::Time,
            "INTEGER" => LiteDecl::Integer,
            "REAL" => LiteDecl::Real,
            "TEXT" => LiteDecl::Text,
            "NUMERIC" => LiteDecl::Decimal,
            _ => LiteDecl::Any,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            LiteDecl::Any => Kind::Dynamic,
            LiteDecl::Bool => Kind::Bool,
            LiteDecl::Integer => Kind::Integer,
            LiteDecl::Real => Kind::Float,
            LiteDecl::Decimal => Kind::Decimal,
            LiteDecl::Text => Kind::Text,
            LiteDecl::Json => Kind::Json,
            LiteDecl::Date => Kind::Date,
            LiteDecl::Time => Kind::Time,
            LiteDecl::Timestamp => Kind::Timestamp { naive: true },
        }
    }

    pub fn decode(self, row: &SqliteRow, i: usize, zone: &Zone) -> Result<Value, String> {
        let stored = Stored::read(row, i)?;
        Ok(match (self, stored) {
            (_, Stored::Null) => Value::Null,
            (LiteDecl::Bool, Stored::Int(v)) => Value::Bool(v != 0),
            (LiteDecl::Bool, Stored::Real(v)) => Value::Bool(v != 0.0),
            (LiteDecl::Bool, Stored::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" => Value::Bool(true),
                "0" | "false" | "f" => Value::Bool(false),
                _ => return Err(format!("`{s}` is not a boolean")),
            },
            (LiteDecl::Timestamp, s @ (Stored::Int(_) | Stored::Real(_) | Stored::Text(_))) => {
                Value::String(value::fmt_utc(s.instant(zone)?))
            }
            (LiteDecl::Date, Stored::Text(s)) => Value::String(
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            (LiteDecl::Time, Stored::Text(s)) => {
                let t = s.trim();
                NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                    .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
                    .map_err(|_| format!("`{s}` is not a time of day (HH:MM:SS)"))?;
                Value::String(t.to_string())
            }
            (LiteDecl::Json, Stored::Text(s)) => {
                serde_json::from_str(&s).map_err(|e| format!("invalid JSON: {e}"))?
            }
            (LiteDecl::Decimal, Stored::Int(v)) => Value::String(v.to_string()),
            (LiteDecl::Decimal, Stored::Real(v)) if v.is_finite() => Value::String(v.to_string()),
            (_, Stored::Int(v)) => Value::from(v),
            (_, Stored::Real(v)) => value::float(v),
            (_, Stored::Text(s)) => Value::String(s),
            (_, Stored::Blob(b)) => value::base64(&b),
        })
    }
}

/// One value as SQLite stored it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Stored {
    pub fn read(row: &SqliteRow, i: usize) -> Result<Stored, String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            return Ok(Stored::Null);
        }
        let class = raw.type_info().name().to_string();
        let e = |e: sqlx::Error| e.to_string();
        Ok(match class.as_str() {
            "INTEGER" => Stored::Int(row.try_get_unchecked::<i64, _>(i).map_err(e)?),
            "REAL" => Stored::Real(row.try_get_unchecked::<f64, _>(i).map_err(e)?),
            "TEXT" => Stored::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?),
            _ => Stored::Blob(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?),
        })
    }

    /// The checkpoint form of a keyset value: the value as stored, so it
    /// binds back with the same storage class and compares exactly.
    pub fn key(self) -> Result<Value, String> {
        Ok(match self {
            Stored::Null => Value::Null,
            Stored::Int(v) => Value::from(v),
            Stored::Real(v) => value::float(v),
            Stored::Text(s) => Value::String(s),
            Stored::Blob(_) => return Err("a BLOB cannot be part of a keyset".into()),
        })
    }

    /// The instant a stored time stands for: text in ISO 8601 (with or
    /// without offset; without, in the source's `timezone`), an integer of
    /// Unix seconds (milliseconds when its magnitude is 10^11 or more), or a
    /// real Julian day number (SQLite's `julianday()`).
    pub fn instant(&self, zone: &Zone) -> Result<DateTime<Utc>, String> {
        match self {
            Stored::Text(s) => match parse_text_time(s) {
                Some(TimeValue::Instant(t)) => Ok(t),
                Some(TimeValue::Naive(t)) => Ok(zone.to_utc(t)),
                None => Err(format!("`{s}` is not a timestamp")),
            },
            Stored::Int(v) => {
                let t = if v.unsigned_abs() >= 100_000_000_000 {
                    DateTime::from_timestamp_millis(*v)
                } else {
                    DateTime::from_timestamp(*v, 0)
                };
                t.ok_or_else(|| format!("{v} is out of range as Unix time"))
            }
            Stored::Real(jd) => {
                let us = ((jd - 2_440_587.5) * 86_400_000_000.0).round();
                if !us.is_finite() || us.abs() > 9.0e18 {
                    return Err(format!("{jd} is out of range as a Julian day"));
                }
                DateTime::from_timestamp_micros(us as i64)
                    .ok_or_else(|| format!("{jd} is out of range as a Julian day"))
            }
            Stored::Null => Err("null is not a timestamp".into()),
            Stored::Blob(_) => Err("a BLOB is not a timestamp".into()),
        }
    }
}

/// SQLite's time strings: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fff]]` with
/// `T` or a space, optionally ending in `Z` or `±HH:MM`.
pub fn parse_text_time(s: &str) -> Option<TimeValue> {
    let s = s.trim();
    let mut t = s.to_string();
    if t.len() > 10 && t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    if let Some(rest) = t.strip_suffix(['Z', 'z']) {
        t = format!("{rest}+00:00");
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(v) = DateTime::parse_from_str(&t, f) {
            return Some(TimeValue::Instant(v.with_timezone(&Utc)));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(v) = NaiveDateTime::parse_from_str(&t, f) {
            return Some(TimeValue::Naive(v));
        }
    }
    NaiveDate::parse_from_str(&t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(TimeValue::Naive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_follow_affinity_rules() {
        for (decl, want) in [
            ("INTEGER", LiteDecl::Integer),
            ("BIGINT", LiteDecl::Integer),
            ("VARCHAR(20)", LiteDecl::Text),
            ("BOOLEAN", LiteDecl::Bool),
            ("DATETIME", LiteDecl::Timestamp),
            ("TIMESTAMP", LiteDecl::Timestamp),
            ("DATE", LiteDecl::Date),
            ("TIME", LiteDecl::Time),
            ("JSON", LiteDecl::Json),
            ("DECIMAL(10,2)", LiteDecl::Decimal),
            ("DOUBLE PRECISION", LiteDecl::Real),
            ("", LiteDecl::Any),
            ("BLOB", LiteDecl::Any),
        ] {
            assert_eq!(LiteDecl::from_declared(decl), want, "{decl}");
        }
    }

    #[test]
    fn stored_times_become_instants() {
        let utc = Zone::new(chrono_tz::UTC);
        let at = |s: Stored| value::fmt_utc(s.instant(&utc).unwrap());
        assert_eq!(
            at(Stored::Text("2024-01-02 03:04:05".into())),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            at(Stored::Text("2024-01-02T03:04:05.250+02:00".into())),
            "2024-01-02T01:04:05.250Z"
        );
        assert_eq!(
            at(Stored::Text("2024-01-02T03:04Z".into())),
            "2024-01-02T03:04:00Z"
        );
        assert_eq!(
            at(Stored::Text("2024-01-02".into())),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(at(Stored::Int(1_704_164_645)), "2024-01-02T03:04:05Z");
        assert_eq!(
            at(Stored::Int(1_704_164_645_123)),
            "2024-01-02T03:04:05.123Z"
        );
        assert_eq!(at(Stored::Real(2_460_311.5)), "2024-01-02T00:00:00Z");
        assert!(Stored::Text("soon".into()).instant(&utc).is_err());
        let paris = Zone::new(chrono_tz::Europe::Paris);
        assert_eq!(
            value::fmt_utc(
                Stored::Text("2024-01-02 03:04:05".into())
                    .instant(&paris)
                    .unwrap()
            ),
            "2024-01-02T02:04:05Z"
        );
    }
}
