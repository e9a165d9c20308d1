//! What differs between the supported databases when writing SQL:
//! placeholders, identifier quoting, row-value comparisons, and the bound
//! values every statement carries.

use chrono::{NaiveDate, NaiveDateTime};

/// The database behind a `url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    Sqlite,
}

impl Dialect {
    /// How stream schemas name the database (`x-sql-dialect`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Whether `(a, b) > (x, y)` is both supported and used for index range
    /// scans. MySQL parses row values but its optimizer does not turn them
    /// into ranges, so the expanded `a > x OR (a = x AND b > y)` form is
    /// written there instead.
    pub fn row_values(self) -> bool {
        !matches!(self, Dialect::MySql)
    }
}

/// A value bound to a placeholder. Values from the configuration and from
/// checkpoints only ever reach the database this way, never spliced into SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum BindValue {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl BindValue {
    /// A parameter value written in TOML (`params = { status = "active" }`).
    pub fn from_toml(v: &toml::Value) -> Result<BindValue, String> {
        Ok(match v {
            toml::Value::String(s) => BindValue::Text(s.clone()),
            toml::Value::Integer(i) => BindValue::Int(*i),
            toml::Value::Float(f) => BindValue::Float(*f),
            toml::Value::Boolean(b) => BindValue::Bool(*b),
            toml::Value::Datetime(d) => BindValue::Text(d.to_string()),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err("a parameter must be a string, number, boolean or datetime".into())
            }
        })
    }
}

/// A statement being written: its text and the values of its placeholders,
/// numbered for the dialect as they are added.
#[derive(Debug, Clone)]
pub struct Statement {
    pub dialect: Dialect,
    pub sql: String,
    pub binds: Vec<BindValue>,
    /// PostgreSQL: the statement is run inside `COPY … TO STDOUT`, which
    /// takes no parameters: values are written into its text as typed
    /// literals instead of bound.
    pub copy: bool,
}

impl Statement {
    #[cfg(test)]
    pub fn new(dialect: Dialect) -> Self {
        Statement {
            dialect,
            sql: String::new(),
            binds: Vec::new(),
            copy: false,
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`. `cast`, when given, is a
    /// type the placeholder is converted to in SQL (`CAST($1 AS int8)`):
    /// PostgreSQL keyset values travel as text and are cast to the column's
    /// type, so any key type compares exactly and index scans still apply.
    pub fn param(&mut self, value: BindValue, cast: Option<&str>) -> &mut Self {
        let placeholder = if self.copy && self.dialect == Dialect::Postgres {
            pg_literal(&value)
        } else {
            self.binds.push(value);
            match self.dialect {
                Dialect::Postgres => format!("${}", self.binds.len()),
                Dialect::MySql | Dialect::Sqlite => "?".to_string(),
            }
        };
        match cast {
            Some(t) => {
                self.sql.push_str("CAST(");
                self.sql.push_str(&placeholder);
                self.sql.push_str(" AS ");
                self.sql.push_str(t);
                self.sql.push(')');
            }
            None => self.sql.push_str(&placeholder),
        }
        self
    }
}

/// A PostgreSQL literal of exactly the type [`BindValue`] binds as (see
/// `bind_pg`), so that a comparison means the same inline as bound. Text
/// is an escape string (`E'…'`), whose meaning does not depend on
/// `standard_conforming_strings`.
fn pg_literal(v: &BindValue) -> String {
    let (text, ty) = match v {
        BindValue::Bool(b) => (b.to_string(), "bool"),
        BindValue::Int(i) => (i.to_string(), "int8"),
        BindValue::UInt(u) => match i64::try_from(*u) {
            Ok(i) => (i.to_string(), "int8"),
            Err(_) => (u.to_string(), "text"),
        },
        BindValue::Float(f) if f.is_infinite() => (
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.into(),
            "float8",
        ),
        BindValue::Float(f) => (f.to_string(), "float8"),
        BindValue::Text(s) => (s.clone(), "text"),
        BindValue::Date(d) => (d.format("%Y-%m-%d").to_string(), "date"),
        BindValue::DateTime(t) => (t.format("%Y-%m-%d %H:%M:%S%.f").to_string(), "timestamp"),
    };
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    format!("CAST(E'{escaped}' AS {ty})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_positional_elsewhere() {
        let mut s = Statement::new(Dialect::Postgres);
        s.push("a = ")
            .param(BindValue::Int(1), None)
            .push(" AND b > ")
            .param(BindValue::Text("x".into()), Some("int8"));
        assert_eq!(s.sql, "a = $1 AND b > CAST($2 AS int8)");
        let mut s = Statement::new(Dialect::MySql);
        s.push("a = ").param(BindValue::Int(1), None);
        assert_eq!(s.sql, "a = ?");
        assert_eq!(s.binds, vec![BindValue::Int(1)]);
    }

    #[test]
    fn inline_values_are_typed_literals_that_quotes_cannot_escape() {
        let mut s = Statement::new(Dialect::Postgres);
        s.copy = true;
        s.push("a > ")
            .param(BindValue::Text(r"it's \ a".into()), Some("timestamptz"))
            .push(" AND b = ")
            .param(BindValue::Int(-7), None)
            .push(" AND c = ")
            .param(BindValue::Float(f64::NEG_INFINITY), None);
        assert_eq!(
            s.sql,
            r"a > CAST(CAST(E'it''s \\ a' AS text) AS timestamptz) AND b = CAST(E'-7' AS int8) AND c = CAST(E'-Infinity' AS float8)"
        );
        assert!(s.binds.is_empty());
    }
}
