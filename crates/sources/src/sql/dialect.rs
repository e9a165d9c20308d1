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
}

impl Statement {
    #[cfg(test)]
    pub fn new(dialect: Dialect) -> Self {
        Statement {
            dialect,
            sql: String::new(),
            binds: Vec::new(),
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
        self.binds.push(value);
        let placeholder = match self.dialect {
            Dialect::Postgres => format!("${}", self.binds.len()),
            Dialect::MySql | Dialect::Sqlite => "?".to_string(),
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
}
