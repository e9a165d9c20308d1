//! Names and types: how targets and fields become quoted PostgreSQL
//! identifiers, and how JSON values and JSON Schema types become column
//! types, including which type a column widens to on a conflict.
//!
//! Everything here is pure (no I/O), so the rules are unit-tested directly.

use serde_json::Value;
use std::borrow::Cow;

/// PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1).
pub const MAX_IDENT: usize = 63;

/// An identifier PostgreSQL accepts unchanged, and unique for distinct
/// inputs as far as practical:
///
/// - NUL (which PostgreSQL cannot store) becomes `_`; an empty name becomes `_`;
/// - a name longer than 63 bytes is cut to 54 bytes (at a character
///   boundary) followed by `_` and 8 hex digits of a hash of the whole
///   name, so two long names sharing a prefix stay distinct instead of
///   being silently truncated to the same column by PostgreSQL.
///
/// Case and every other character are kept: identifiers are always quoted.
pub fn ident(name: &str) -> Cow<'_, str> {
    if !name.is_empty() && name.len() <= MAX_IDENT && !name.contains('\0') {
        return Cow::Borrowed(name);
    }
    let clean: String = if name.is_empty() {
        "_".into()
    } else {
        name.replace('\0', "_")
    };
    if clean.len() <= MAX_IDENT {
        return Cow::Owned(clean);
    }
    let mut cut = MAX_IDENT - 9;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!(
        "{}_{:08x}",
        &clean[..cut],
        fnv1a32(name.as_bytes())
    ))
}

/// `"name"` with embedded quotes doubled: the only quoting PostgreSQL needs
/// for a delimited identifier, so no field name can end the identifier and
/// inject SQL. `name` must already be an [`ident`].
pub fn quote(name: &str) -> String {
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        if c == '"' {
            q.push('"');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// The (schema, table) of a target under the naming rule:
///
/// - with `schema` set, every table goes there and the target's dots become
///   `_` (`shop.orders` → `"analytics"."shop_orders"`);
/// - without it, the target's first dot-separated part is the schema and the
///   rest, dots made `_`, the table (`shop.orders` → `"shop"."orders"`,
///   matching the default target `{topic_prefix}.{stream}`); a target
///   without a dot goes to `public`.
///
/// Both parts then go through [`ident`].
pub fn table_for_target(target: &str, schema: Option<&str>) -> (String, String) {
    let (schema, table) = match schema {
        Some(s) => (s.to_string(), target.replace('.', "_")),
        None => match target.split_once('.') {
            Some((s, rest)) => (s.to_string(), rest.replace('.', "_")),
            None => ("public".to_string(), target.to_string()),
        },
    };
    (ident(&schema).into_owned(), ident(&table).into_owned())
}

/// `schema.table` or `table` (in `default_schema`), as the checkpoint and
/// dead-letter table options are written.
pub fn split_qualified(name: &str, default_schema: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (ident(s).into_owned(), ident(t).into_owned()),
        None => (ident(default_schema).into_owned(), ident(name).into_owned()),
    }
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A column type as the sink sees it. The sink creates these; columns of
/// any other type (made by someone else) are `Other`: values go to them
/// unchecked and PostgreSQL casts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Numeric,
    /// `numeric(precision, scale)`.
    Decimal(u32, u32),
    Real,
    Double,
    Timestamptz,
    /// `timestamp without time zone`.
    Timestamp,
    Date,
    Time,
    Interval,
    Uuid,
    Text,
    /// `character varying(n)`.
    Varchar(u32),
    Jsonb,
    /// A one-dimensional array of a scalar type.
    Array(Box<PgType>),
    Other(String),
}

impl PgType {
    /// The type as written in DDL (and as `format_type()` spells it).
    pub fn sql(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            PgType::Boolean => "boolean",
            PgType::SmallInt => "smallint",
            PgType::Integer => "integer",
            PgType::BigInt => "bigint",
            PgType::Numeric => "numeric",
            PgType::Decimal(p, s) => return Cow::Owned(format!("numeric({p},{s})")),
            PgType::Real => "real",
            PgType::Double => "double precision",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Date => "date",
            PgType::Time => "time without time zone",
            PgType::Interval => "interval",
            PgType::Uuid => "uuid",
            PgType::Text => "text",
            PgType::Varchar(n) => return Cow::Owned(format!("character varying({n})")),
            PgType::Jsonb => "jsonb",
            PgType::Array(e) => return Cow::Owned(format!("{}[]", e.sql())),
            PgType::Other(name) => name,
        })
    }

    /// From `format_type()` output of an existing column, or a source
    /// PostgreSQL's own type name (`numeric(12,2)`, `int4`, `text[]`,
    /// `TIMESTAMPTZ`). Anything else is `Other`.
    pub fn from_catalog(name: &str) -> PgType {
        let lower = name.trim().to_ascii_lowercase();
        if let Some(elem) = lower.strip_suffix("[]") {
            return match PgType::from_catalog(elem) {
                PgType::Array(_) | PgType::Other(_) => PgType::Other(name.to_string()),
                e => PgType::Array(Box::new(e)),
            };
        }
        let args = |prefix: &str| -> Option<Vec<u32>> {
            let inner = lower
                .strip_prefix(prefix)?
                .strip_prefix('(')?
                .strip_suffix(')')?;
            inner.split(',').map(|a| a.trim().parse().ok()).collect()
        };
        match lower.as_str() {
            "boolean" | "bool" => PgType::Boolean,
            "smallint" | "int2" => PgType::SmallInt,
            "integer" | "int" | "int4" => PgType::Integer,
            "bigint" | "int8" => PgType::BigInt,
            "numeric" | "decimal" => PgType::Numeric,
            "real" | "float4" => PgType::Real,
            "double precision" | "float8" => PgType::Double,
            "timestamp with time zone" | "timestamptz" => PgType::Timestamptz,
            "timestamp without time zone" | "timestamp" => PgType::Timestamp,
            "date" => PgType::Date,
            "time without time zone" | "time" => PgType::Time,
            "interval" => PgType::Interval,
            "uuid" => PgType::Uuid,
            "text" => PgType::Text,
            "jsonb" => PgType::Jsonb,
            _ => match (
                args("numeric"),
                args("character varying").or_else(|| args("varchar")),
            ) {
                (Some(a), _) if a.len() == 2 && a[0] >= 1 && a[1] <= a[0] && a[0] <= 1000 => {
                    PgType::Decimal(a[0], a[1])
                }
                (Some(a), _) if a.len() == 1 && a[0] >= 1 && a[0] <= 1000 => {
                    PgType::Decimal(a[0], 0)
                }
                (_, Some(a)) if a.len() == 1 && a[0] >= 1 => PgType::Varchar(a[0]),
                _ => PgType::Other(name.to_string()),
            },
        }
    }

    /// Whether `value` can be stored in a column of this type without loss
    /// or a cast error. `null` fits everywhere; text and jsonb take any
    /// value (text as its JSON text); `Other` is not checked. Decimal and
    /// float columns also take the strings sources use for values JSON
    /// numbers cannot hold exactly (`"12.50"`, `"NaN"`).
    pub fn accepts(&self, value: &Value) -> bool {
        let int_in = |n: &serde_json::Number, lo: i64, hi: i64| {
            n.as_i64().is_some_and(|i| (lo..=hi).contains(&i))
        };
        match (self, value) {
            (_, Value::Null) | (PgType::Jsonb | PgType::Other(_), _) => true,
            (PgType::Boolean, Value::Bool(_)) => true,
            (PgType::SmallInt, Value::Number(n)) => int_in(n, i16::MIN.into(), i16::MAX.into()),
            (PgType::Integer, Value::Number(n)) => int_in(n, i32::MIN.into(), i32::MAX.into()),
            (PgType::BigInt, Value::Number(n)) => n.is_i64(),
            (PgType::Numeric, Value::Number(_)) => true,
            (PgType::Numeric, Value::String(s)) => is_decimal(s) || s == "NaN",
            (PgType::Decimal(p, sc), Value::Number(n)) => fits_decimal(&n.to_string(), *p, *sc),
            (PgType::Decimal(p, sc), Value::String(s)) => is_decimal(s) && fits_decimal(s, *p, *sc),
            (PgType::Double, Value::Number(_)) => true,
            (PgType::Real, Value::Number(n)) => {
                n.as_f64().is_some_and(|f| f64::from(f as f32) == f)
            }
            (PgType::Real | PgType::Double, Value::String(s)) => {
                matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity")
            }
            (PgType::Timestamptz, Value::String(s)) => is_timestamp(s),
            (PgType::Timestamp, Value::String(s)) => is_timestamp(s) || is_naive_timestamp(s),
            (PgType::Date, Value::String(s)) => is_date(s),
            (PgType::Time, Value::String(s)) => is_time(s),
            (PgType::Interval, Value::String(s)) => {
                s.trim_start_matches('-').starts_with('P') && s.len() > 1
            }
            (PgType::Uuid, Value::String(s)) => uuid_like(s),
            (PgType::Varchar(n), Value::String(s)) => s.chars().count() <= *n as usize,
            (PgType::Array(elem), Value::Array(items)) => items
                .iter()
                .all(|v| !v.is_array() && !v.is_object() && elem.accepts(v)),
            // Anything else as its JSON text (`1.5`, `true`, `{"a":1}`).
            (PgType::Text, _) => true,
            _ => false,
        }
    }

    /// [`PgType::accepts`] for a key column, which also takes a string that
    /// PostgreSQL converts exactly: record keys are often strings (a Kafka
    /// key `"42"` for an integer id column) and must match the typed rows.
    pub fn accepts_key(&self, value: &Value) -> bool {
        if self.accepts(value) {
            return true;
        }
        let Value::String(s) = value else {
            return false;
        };
        let int = |lo: i64, hi: i64| {
            s.parse::<i64>()
                .is_ok_and(|n| n.to_string() == *s && (lo..=hi).contains(&n))
        };
        match self {
            PgType::SmallInt => int(i16::MIN.into(), i16::MAX.into()),
            PgType::Integer => int(i32::MIN.into(), i32::MAX.into()),
            PgType::BigInt => int(i64::MIN, i64::MAX),
            PgType::Boolean => s == "true" || s == "false",
            _ => false,
        }
    }

    /// Integer widths and decimal types in order of what they hold.
    fn numeric_rank(&self) -> Option<u8> {
        match self {
            PgType::SmallInt => Some(1),
            PgType::Integer => Some(2),
            PgType::BigInt => Some(3),
            PgType::Decimal(..) | PgType::Numeric => Some(4),
            _ => None,
        }
    }

    /// The smallest type holding every value of `self` and of `other`
    /// (Fivetran-style promotion): equal types stay; integers widen to the
    /// wider integer, then numeric (a `numeric(p,s)` to plain numeric);
    /// floats to double precision, with integers or decimals numeric; a
    /// longer varchar or text to text; arrays by their elements; an object
    /// or array with anything else makes jsonb (so numbers stay numbers);
    /// any other mix of scalars is text.
    pub fn widen(&self, other: &PgType) -> PgType {
        use PgType::*;
        match (self, other) {
            (a, b) if a == b => a.clone(),
            (Other(_), _) => self.clone(),
            (Array(a), Array(b)) => match a.widen(b) {
                Jsonb | Other(_) => Jsonb,
                e => Array(Box::new(e)),
            },
            (Jsonb | Array(_), _) | (_, Jsonb | Array(_)) => Jsonb,
            (Real, Double) | (Double, Real) => Double,
            (Real | Double, b) | (b, Real | Double) if b.numeric_rank().is_some() => Numeric,
            (Timestamp, Timestamptz) | (Timestamptz, Timestamp) => Timestamptz,
            (Varchar(a), Varchar(b)) => Varchar(*a.max(b)),
            (a, b) => match (a.numeric_rank(), b.numeric_rank()) {
                (Some(4), Some(_)) | (Some(_), Some(4)) => Numeric,
                (Some(x), Some(y)) => {
                    if x >= y {
                        a.clone()
                    } else {
                        b.clone()
                    }
                }
                _ => Text,
            },
        }
    }

    /// The `USING` expression converting `column` (quoted) to this type in
    /// `ALTER COLUMN … TYPE`: text takes the value's JSON text (so a
    /// timestamp stays ISO 8601, independent of the session's DateStyle);
    /// jsonb the value as JSON (text becomes a JSON string).
    pub fn using(&self, column: &str) -> String {
        match self {
            PgType::Text => format!("to_json({column}) #>> '{{}}'"),
            PgType::Jsonb => format!("to_jsonb({column})"),
            other => format!("{column}::{}", other.sql()),
        }
    }
}

/// The type a column gets from its first non-null value: booleans, integers
/// (bigint; beyond its range numeric), other numbers (numeric, exact),
/// RFC 3339 date-times with an offset (timestamptz), other strings (text),
/// objects and arrays (jsonb). `None` for null: no column is created until a
/// value says what it holds.
pub fn infer(value: &Value) -> Option<PgType> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => PgType::Boolean,
        Value::Number(n) if n.is_i64() => PgType::BigInt,
        Value::Number(_) => PgType::Numeric,
        Value::String(s) if is_timestamp(s) => PgType::Timestamptz,
        Value::String(_) => PgType::Text,
        Value::Array(_) | Value::Object(_) => PgType::Jsonb,
    })
}

/// A column type from a JSON Schema property: `integer` → bigint,
/// `number` → numeric, `boolean`, `string` (`format: date-time` →
/// timestamptz, `date` → date, else text), `object`/`array` → jsonb. A list
/// of types (`["integer", "null"]`) or `anyOf`/`oneOf` widens its members;
/// anything else (no type, `$ref`) is jsonb, which holds any value.
pub fn from_json_schema(property: &Value) -> PgType {
    schema_type(property).unwrap_or(PgType::Jsonb)
}

/// [`from_json_schema`], with `None` for a property that only allows null.
fn schema_type(property: &Value) -> Option<PgType> {
    let one = |t: &str| match t {
        "integer" => Some(PgType::BigInt),
        "number" => Some(PgType::Numeric),
        "boolean" => Some(PgType::Boolean),
        "string" => Some(match property.get("format").and_then(Value::as_str) {
            Some("date-time") => PgType::Timestamptz,
            Some("date") => PgType::Date,
            _ => PgType::Text,
        }),
        "object" | "array" => Some(PgType::Jsonb),
        "null" => None,
        _ => Some(PgType::Jsonb),
    };
    let joined = |types: &mut dyn Iterator<Item = Option<PgType>>| -> Option<PgType> {
        let mut all_null = true;
        let widened = types
            .inspect(|t| all_null &= t.is_none())
            .flatten()
            .reduce(|a, b| a.widen(&b));
        match widened {
            Some(t) => Some(t),
            None if all_null => None,
            None => Some(PgType::Jsonb),
        }
    };
    match property.get("type") {
        Some(Value::String(t)) => one(t),
        Some(Value::Array(ts)) => joined(&mut ts.iter().map(|t| match t.as_str() {
            Some(t) => one(t),
            None => Some(PgType::Jsonb),
        })),
        _ => {
            let alternatives = property
                .get("anyOf")
                .or_else(|| property.get("oneOf"))
                .and_then(Value::as_array);
            match alternatives {
                Some(alts) if !alts.is_empty() => joined(&mut alts.iter().map(schema_type)),
                _ => Some(PgType::Jsonb),
            }
        }
    }
}

/// The columns a stream's JSON Schema declares, in the schema's order. A
/// schema from a PostgreSQL source (`"x-sql-dialect": "postgres"`) gives
/// each column's own type as `x-sql-type`: a type this sink knows is kept
/// as it is (`numeric(12,2)`, `integer`, `text[]`); any other falls back to
/// the JSON Schema type. Type names are parsed, never copied into DDL.
pub fn schema_columns(schema: &Value) -> Vec<(String, PgType)> {
    let from_postgres = schema.get("x-sql-dialect").and_then(Value::as_str) == Some("postgres");
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, p)| {
                    let own = p
                        .get("x-sql-type")
                        .and_then(Value::as_str)
                        .filter(|_| from_postgres)
                        .map(PgType::from_catalog)
                        .filter(|t| !matches!(t, PgType::Other(_)));
                    (
                        ident(name).into_owned(),
                        own.unwrap_or_else(|| from_json_schema(p)),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON value described for a conflict message, without quoting it
/// (values may be personal data and belong in the dead-letter table only).
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(n) if n.is_u64() => "an integer beyond bigint",
        Value::Number(_) => "a decimal number",
        Value::String(s) if is_timestamp(s) => "a date-time string",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 3339 with a `T` (or space) and an offset: what PostgreSQL parses as
/// timestamptz without depending on the session's DateStyle or TimeZone.
fn is_timestamp(s: &str) -> bool {
    // Cheap shape test first: most strings are not dates.
    // Year 0000 is valid RFC 3339 but out of PostgreSQL's range.
    s.len() >= 20
        && s.as_bytes()[4] == b'-'
        && !s.starts_with("0000")
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// `-?digits(.digits)?`: a decimal PostgreSQL's numeric input reads exactly.
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

/// Whether the decimal text `s` (`-12.50`, `1e3` is not one) has at most
/// `p - scale` integer digits and `scale` fraction digits: what
/// `numeric(p, scale)` stores without rounding or an overflow error.
fn fits_decimal(s: &str, p: u32, scale: u32) -> bool {
    if !is_decimal(s) {
        return false;
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    int.len() as u32 <= p - scale && frac.len() as u32 <= scale
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f]` without an offset.
fn is_naive_timestamp(s: &str) -> bool {
    s.len() >= 19
        && !s.starts_with("0000")
        && (chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
            || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok())
}

fn is_time(s: &str) -> bool {
    chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f").is_ok()
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn is_date(s: &str) -> bool {
    s.len() == 10
        && !s.starts_with("0000")
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_keep_their_case_and_characters_and_quote_safely() {
        assert_eq!(ident("userId"), "userId");
        assert_eq!(ident(""), "_");
        assert_eq!(ident("a\0b"), "a_b");
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(
            quote("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(qualified("s\"", "t"), "\"s\"\"\".\"t\"");
    }

    #[test]
    fn long_identifiers_are_cut_with_a_hash_and_stay_distinct() {
        let a = format!("{}a", "x".repeat(70));
        let b = format!("{}b", "x".repeat(70));
        let (ia, ib) = (ident(&a), ident(&b));
        assert_eq!(ia.len(), MAX_IDENT);
        assert_ne!(ia, ib);
        assert!(ia.starts_with(&"x".repeat(54)));
        assert_eq!(ident(&a), ia, "deterministic");
        // Multi-byte characters are never split.
        let wide = "é".repeat(40);
        assert!(ident(&wide).len() <= MAX_IDENT);
        assert_eq!(ident(&"y".repeat(63)).len(), 63);
    }

    #[test]
    fn targets_map_to_schema_and_table() {
        let t = |target, schema| table_for_target(target, schema);
        assert_eq!(t("shop.orders", None), ("shop".into(), "orders".into()));
        assert_eq!(t("a.b.c", None), ("a".into(), "b_c".into()));
        assert_eq!(t("orders", None), ("public".into(), "orders".into()));
        assert_eq!(
            t("shop.orders", Some("analytics")),
            ("analytics".into(), "shop_orders".into())
        );
        assert_eq!(
            split_qualified("tributary_checkpoints", "x"),
            ("x".into(), "tributary_checkpoints".into())
        );
        assert_eq!(split_qualified("ops.ck", "x"), ("ops".into(), "ck".into()));
    }

    #[test]
    fn inference_from_values() {
        assert_eq!(infer(&json!(true)), Some(PgType::Boolean));
        assert_eq!(infer(&json!(-3)), Some(PgType::BigInt));
        assert_eq!(infer(&json!(u64::MAX)), Some(PgType::Numeric));
        assert_eq!(infer(&json!(1.5)), Some(PgType::Numeric));
        assert_eq!(infer(&json!("x")), Some(PgType::Text));
        assert_eq!(
            infer(&json!("2024-01-01T00:00:00Z")),
            Some(PgType::Timestamptz)
        );
        assert_eq!(infer(&json!("2024-01-01")), Some(PgType::Text));
        assert_eq!(infer(&json!({"a": 1})), Some(PgType::Jsonb));
        assert_eq!(infer(&json!([1])), Some(PgType::Jsonb));
        assert_eq!(infer(&Value::Null), None);
    }

    #[test]
    fn acceptance_and_widening() {
        assert!(PgType::BigInt.accepts(&json!(5)));
        assert!(!PgType::BigInt.accepts(&json!(5.5)));
        assert!(!PgType::BigInt.accepts(&json!(u64::MAX)));
        assert!(!PgType::BigInt.accepts(&json!("5")));
        assert!(PgType::Text.accepts(&json!(5)));
        assert!(PgType::Text.accepts(&json!({"a": 1})));
        assert!(!PgType::Numeric.accepts(&json!({"a": 1})));
        assert!(PgType::Timestamptz.accepts(&json!("2024-01-01T00:00:00+02:00")));
        assert!(!PgType::Timestamptz.accepts(&json!("yesterday")));
        assert!(PgType::Date.accepts(&json!("2024-02-29")));
        assert!(!PgType::Date.accepts(&json!("2023-02-29")));
        assert!(PgType::Jsonb.accepts(&json!("anything")));
        assert!(PgType::Other("uuid".into()).accepts(&json!(1)));
        assert!(PgType::Boolean.accepts(&Value::Null));
        assert!(PgType::BigInt.accepts_key(&json!("42")));
        assert!(PgType::BigInt.accepts_key(&json!("-42")));
        assert!(!PgType::BigInt.accepts_key(&json!("042")));
        assert!(!PgType::BigInt.accepts_key(&json!("4x")));
        assert!(PgType::Numeric.accepts_key(&json!("-1.50")));
        assert!(!PgType::Numeric.accepts_key(&json!("1e5")));
        assert!(!PgType::Numeric.accepts_key(&json!("1.")));
        assert!(PgType::Boolean.accepts_key(&json!("true")));
        assert!(!PgType::Date.accepts_key(&json!(5)));

        use PgType::*;
        assert_eq!(BigInt.widen(&Numeric), Numeric);
        assert_eq!(Numeric.widen(&BigInt), Numeric);
        assert_eq!(BigInt.widen(&Text), Text);
        assert_eq!(Boolean.widen(&BigInt), Text);
        assert_eq!(Timestamptz.widen(&Text), Text);
        assert_eq!(Text.widen(&Jsonb), Jsonb);
        assert_eq!(Jsonb.widen(&BigInt), Jsonb);
        assert_eq!(Date.widen(&Date), Date);
        assert_eq!(Numeric.using("\"c\""), "\"c\"::numeric");
        assert_eq!(Text.using("\"c\""), "to_json(\"c\") #>> '{}'");
    }

    #[test]
    fn source_types_round_trip_through_the_catalog_spelling() {
        use PgType::*;
        for (name, ty) in [
            ("numeric(12,2)", Decimal(12, 2)),
            ("integer", Integer),
            ("smallint", SmallInt),
            ("bigint", BigInt),
            ("text[]", Array(Box::new(Text))),
            ("integer[]", Array(Box::new(Integer))),
            ("timestamp with time zone", Timestamptz),
            ("timestamp without time zone", Timestamp),
            ("double precision", Double),
            ("character varying(8)", Varchar(8)),
            ("uuid", Uuid),
        ] {
            assert_eq!(PgType::from_catalog(name), ty, "{name}");
            assert_eq!(ty.sql(), name);
        }
        // sqlx's names for query columns.
        assert_eq!(PgType::from_catalog("INT4"), Integer);
        assert_eq!(PgType::from_catalog("TEXT[]"), Array(Box::new(Text)));
        // Never copied into DDL: unknown names stay `Other`.
        assert_eq!(
            PgType::from_catalog("int); DROP TABLE x; --"),
            Other("int); DROP TABLE x; --".into())
        );
        assert_eq!(
            PgType::from_catalog("integer[][]"),
            Other("integer[][]".into())
        );
        let schema = json!({"x-sql-dialect": "postgres", "properties": {
            "a": {"type": ["string", "null"], "format": "decimal", "x-sql-type": "numeric(12,2)"},
            "b": {"type": "integer", "x-sql-type": "some_domain"},
        }});
        assert_eq!(
            schema_columns(&schema),
            vec![("a".into(), Decimal(12, 2)), ("b".into(), BigInt)]
        );
        // From another database, the hint is not PostgreSQL's.
        let mysql = json!({"x-sql-dialect": "mysql", "properties": {"a": {"type": "integer", "x-sql-type": "int"}}});
        assert_eq!(schema_columns(&mysql), vec![("a".into(), BigInt)]);
    }

    #[test]
    fn typed_columns_accept_what_fits_and_widen_only_on_a_conflict() {
        use PgType::*;
        assert!(Decimal(12, 2).accepts(&json!("1234567890.12")));
        assert!(Decimal(12, 2).accepts(&json!("-0.10")));
        assert!(!Decimal(12, 2).accepts(&json!("12345678901.00")));
        assert!(!Decimal(12, 2).accepts(&json!("1.005")));
        assert!(Decimal(12, 2).accepts(&json!(7.5)));
        assert!(Numeric.accepts(&json!("0.333333333333333333333")));
        assert!(Integer.accepts(&json!(2147483647)));
        assert!(!Integer.accepts(&json!(2147483648u64)));
        assert!(!SmallInt.accepts(&json!(40000)));
        assert!(Array(Box::new(Text)).accepts(&json!(["a", null])));
        assert!(!Array(Box::new(Integer)).accepts(&json!([[1]])));
        assert!(Double.accepts(&json!("NaN")));
        assert!(Real.accepts(&json!(0.5)));
        assert!(!Real.accepts(&json!(0.1)));
        assert!(Timestamp.accepts(&json!("2024-06-01T12:30:00.25Z")));
        assert!(Varchar(3).accepts(&json!("zoë")));
        assert!(!Varchar(3).accepts(&json!("abcd")));
        assert_eq!(Integer.widen(&BigInt), BigInt);
        assert_eq!(SmallInt.widen(&Integer), Integer);
        assert_eq!(Decimal(12, 2).widen(&Numeric), Numeric);
        assert_eq!(Integer.widen(&Numeric), Numeric);
        assert_eq!(Real.widen(&Double), Double);
        assert_eq!(Double.widen(&BigInt), Numeric);
        assert_eq!(Varchar(3).widen(&Text), Text);
        assert_eq!(Array(Box::new(Text)).widen(&Jsonb), Jsonb);
        assert_eq!(
            Array(Box::new(SmallInt)).widen(&Array(Box::new(BigInt))),
            Array(Box::new(BigInt))
        );
        assert!(Integer.accepts_key(&json!("42")));
        assert!(!SmallInt.accepts_key(&json!("40000")));
    }

    #[test]
    fn json_schema_types() {
        let t = |v: Value| from_json_schema(&v);
        assert_eq!(t(json!({"type": "integer"})), PgType::BigInt);
        assert_eq!(t(json!({"type": "number"})), PgType::Numeric);
        assert_eq!(t(json!({"type": "boolean"})), PgType::Boolean);
        assert_eq!(t(json!({"type": "string"})), PgType::Text);
        assert_eq!(
            t(json!({"type": "string", "format": "date-time"})),
            PgType::Timestamptz
        );
        assert_eq!(t(json!({"type": "string", "format": "date"})), PgType::Date);
        assert_eq!(t(json!({"type": "object"})), PgType::Jsonb);
        assert_eq!(t(json!({"type": ["integer", "null"]})), PgType::BigInt);
        assert_eq!(t(json!({"type": ["integer", "number"]})), PgType::Numeric);
        assert_eq!(t(json!({"type": ["integer", "string"]})), PgType::Text);
        assert_eq!(
            t(json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})),
            PgType::BigInt
        );
        assert_eq!(t(json!({"$ref": "#/defs/x"})), PgType::Jsonb);
        assert_eq!(
            schema_columns(&json!({"properties": {"id": {"type": "integer"}, "n": {}}})),
            vec![("id".into(), PgType::BigInt), ("n".into(), PgType::Jsonb)]
        );
    }
}
