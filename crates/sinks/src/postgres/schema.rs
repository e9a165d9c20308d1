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

/// A column type as the sink sees it. The sink creates only the first
/// seven; columns of any other type (made by someone else) are `Other`:
/// values go to them unchecked and PostgreSQL casts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Boolean,
    BigInt,
    Numeric,
    Timestamptz,
    Date,
    Text,
    Jsonb,
    Other(String),
}

impl PgType {
    /// The type as written in DDL.
    pub fn sql(&self) -> &str {
        match self {
            PgType::Boolean => "boolean",
            PgType::BigInt => "bigint",
            PgType::Numeric => "numeric",
            PgType::Timestamptz => "timestamptz",
            PgType::Date => "date",
            PgType::Text => "text",
            PgType::Jsonb => "jsonb",
            PgType::Other(name) => name,
        }
    }

    /// From `format_type()` output of an existing column.
    pub fn from_catalog(name: &str) -> PgType {
        match name {
            "boolean" => PgType::Boolean,
            "bigint" => PgType::BigInt,
            "numeric" => PgType::Numeric,
            "timestamp with time zone" => PgType::Timestamptz,
            "date" => PgType::Date,
            "text" => PgType::Text,
            "jsonb" => PgType::Jsonb,
            other => PgType::Other(other.to_string()),
        }
    }

    /// Whether `value` can be stored in a column of this type without loss
    /// or a cast error. `null` fits everywhere; text and jsonb take any
    /// value (text as its JSON text); `Other` is not checked.
    pub fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (PgType::Jsonb | PgType::Other(_), _) => true,
            (PgType::Boolean, Value::Bool(_)) => true,
            (PgType::BigInt, Value::Number(n)) => n.is_i64(),
            (PgType::Numeric, Value::Number(_)) => true,
            (PgType::Timestamptz, Value::String(s)) => is_timestamp(s),
            (PgType::Date, Value::String(s)) => is_date(s),
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
        match self {
            PgType::BigInt => s.parse::<i64>().is_ok_and(|n| n.to_string() == *s),
            PgType::Numeric => is_decimal(s),
            PgType::Boolean => s == "true" || s == "false",
            _ => false,
        }
    }

    /// The smallest type holding every value of `self` and of `other`
    /// (Fivetran-style promotion): equal types stay; bigint and numeric make
    /// numeric; an object or array makes jsonb (so numbers stay numbers);
    /// any other mix of scalars is text.
    pub fn widen(&self, other: &PgType) -> PgType {
        match (self, other) {
            (a, b) if a == b => a.clone(),
            (PgType::Other(_), _) => self.clone(),
            (PgType::Jsonb, _) | (_, PgType::Jsonb) => PgType::Jsonb,
            (PgType::BigInt, PgType::Numeric) | (PgType::Numeric, PgType::BigInt) => {
                PgType::Numeric
            }
            _ => PgType::Text,
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

/// The columns a stream's JSON Schema declares, in the schema's order.
pub fn schema_columns(schema: &Value) -> Vec<(String, PgType)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, p)| (ident(name).into_owned(), from_json_schema(p)))
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
