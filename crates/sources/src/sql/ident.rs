//! SQL identifiers from configuration (table, column, schema names): checked
//! when the config is loaded, and always quoted when written into SQL, so a
//! name can never change the shape of a statement.
//!
//! Names from the configuration are restricted to what real schemas use
//! (letters, digits, `_`, `$`, `-`, spaces): a name like `x; DROP TABLE y`
//! is a config error before any connection is made. Names read from the
//! database catalog are quoted without restriction.

use super::dialect::Dialect;

/// Longest identifier accepted (MySQL's limit; PostgreSQL truncates at 63 bytes).
const MAX_LEN: usize = 64;

/// Checks one identifier written in the configuration.
pub fn validate(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a name must not be empty".into());
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "`{name}` is longer than {MAX_LEN} bytes, which no supported database accepts"
        ));
    }
    if name != name.trim() {
        return Err(format!("`{name}` starts or ends with a space"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '-' | ' ')))
    {
        return Err(format!(
            "`{name}` is not a valid name: {c:?} is not allowed (letters, digits, `_`, `$`, `-` and spaces only)"
        ));
    }
    Ok(())
}

/// A table name, optionally qualified by its schema (`sales.orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table` from the configuration.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            [name] => {
                validate(name)?;
                Ok(TableName {
                    schema: None,
                    name: name.to_string(),
                })
            }
            [schema, name] => {
                validate(schema)?;
                validate(name)?;
                Ok(TableName {
                    schema: Some(schema.to_string()),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "`{text}` is not a table name: write `table` or `schema.table`"
            )),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Quotes one identifier for `dialect`, doubling the quote character, so
/// any name (including ones read from the catalog) is taken literally.
pub fn quote(dialect: Dialect, name: &str) -> String {
    let q = match dialect {
        Dialect::MySql => '`',
        Dialect::Postgres | Dialect::Sqlite => '"',
    };
    let mut out = String::with_capacity(name.len() + 2);
    out.push(q);
    for c in name.chars() {
        if c == q {
            out.push(q);
        }
        out.push(c);
    }
    out.push(q);
    out
}

/// `schema.table`, both quoted.
pub fn quote_table(dialect: Dialect, schema: &str, table: &str) -> String {
    format!("{}.{}", quote(dialect, schema), quote(dialect, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_are_restricted_and_injection_is_rejected() {
        assert!(validate("orders").is_ok());
        assert!(validate("Order Items").is_ok());
        assert!(validate("bestellung_ä$1").is_ok());
        let err = validate("x; DROP TABLE y").unwrap_err();
        assert!(err.contains("';' is not allowed"), "{err}");
        assert!(validate("a\"b").is_err());
        assert!(validate("a`b").is_err());
        assert!(validate("").is_err());
        assert!(validate(" a").is_err());
        assert!(validate(&"x".repeat(65)).is_err());
    }

    #[test]
    fn tables_may_be_qualified_once() {
        assert_eq!(
            TableName::parse("sales.orders").unwrap(),
            TableName {
                schema: Some("sales".into()),
                name: "orders".into()
            }
        );
        assert_eq!(TableName::parse("orders").unwrap().schema, None);
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("a.").is_err());
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote(Dialect::Postgres, "a\"b"), "\"a\"\"b\"");
        assert_eq!(quote(Dialect::MySql, "a`b"), "`a``b`");
        assert_eq!(quote(Dialect::Sqlite, "x; DROP"), "\"x; DROP\"");
        assert_eq!(
            quote_table(Dialect::Postgres, "public", "t"),
            "\"public\".\"t\""
        );
    }
}
