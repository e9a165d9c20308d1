//! The lines `driver.py` writes, one JSON object each, and what a table
//! the connector's `schema()` declares becomes for a sink.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The version of the line protocol `driver.py` speaks (its `hello`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The column a table without a primary key is keyed by, as on Fivetran:
/// a hash of the row's columns, added by the driver.
pub const FIVETRAN_ID: &str = "_fivetran_id";

/// One line of the driver.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello {
        protocol: u32,
        sdk: String,
    },
    /// What `schema()` returned; `not_supported` when the connector has none.
    Schema {
        #[serde(default)]
        not_supported: bool,
        #[serde(default)]
        tables: Vec<Table>,
    },
    Upsert(Row),
    /// `op.update`: only the columns it names.
    Update(Row),
    /// `op.delete`: the key columns.
    Delete(Row),
    Truncate {
        table: String,
        #[serde(default)]
        schema: Option<String>,
        #[serde(default)]
        deferred: bool,
    },
    /// `op.checkpoint(state)`.
    Checkpoint {
        state: Value,
    },
    /// The SDK's `Logging` and `op.warning`, at their level.
    Log {
        level: String,
        message: String,
    },
    /// `op.error(message, trace)`: the connector ended its sync.
    Error {
        message: String,
        #[serde(default)]
        trace: String,
    },
    /// `schema()` or `update()` raised; the message holds the traceback.
    Failed {
        message: String,
    },
    /// The driver could not start the connector (no SDK, no `connector`).
    ConfigError {
        message: String,
    },
    /// `update()` returned.
    Done,
}

/// A row operation.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Row {
    pub table: String,
    #[serde(default)]
    pub schema: Option<String>,
    pub data: Map<String, Value>,
}

/// A table `schema()` declares.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Table {
    pub table: String,
    /// The schema the connector names for it (SDK 3's `"schema"` key).
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Typed columns; untyped ones are typed by their values.
    #[serde(default)]
    pub columns: BTreeMap<String, Column>,
}

/// A typed column: Fivetran's type name, and a decimal's precision and scale.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Column {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub precision: Option<u32>,
    #[serde(default)]
    pub scale: Option<u32>,
}

impl Table {
    /// The record key's columns: the declared key, else the row hash.
    pub fn key(&self) -> Vec<String> {
        if self.primary_key.is_empty() {
            vec![FIVETRAN_ID.to_string()]
        } else {
            self.primary_key.clone()
        }
    }

    /// A JSON Schema of the rows, with each column's type as Fivetran's
    /// PostgreSQL destination would create it (`x-sql-type`), so a sink
    /// creates `numeric(12,2)` for a `DECIMAL(12,2)`, not `text`.
    pub fn json_schema(&self) -> Value {
        let mut properties = Map::new();
        for (name, column) in &self.columns {
            if let Some(p) = column.json_schema() {
                properties.insert(name.clone(), p);
            }
        }
        if self.primary_key.is_empty() {
            properties.insert(
                FIVETRAN_ID.into(),
                json!({"type": "string", "x-sql-type": "text"}),
            );
        }
        json!({
            "type": "object",
            "x-sql-dialect": "postgres",
            "properties": properties,
        })
    }
}

impl Column {
    fn json_schema(&self) -> Option<Value> {
        let (kind, format, sql) = match self.kind.as_str() {
            "BOOLEAN" => ("boolean", None, "boolean".to_string()),
            "SHORT" => ("integer", None, "smallint".into()),
            "INT" => ("integer", None, "integer".into()),
            "LONG" => ("integer", None, "bigint".into()),
            // Sent as text, exactly as the connector gave it.
            "DECIMAL" => (
                "string",
                Some("decimal"),
                match (self.precision, self.scale) {
                    (Some(p), Some(s)) if (1..=1000).contains(&p) && s <= p => {
                        format!("numeric({p},{s})")
                    }
                    _ => "numeric".into(),
                },
            ),
            "FLOAT" => ("number", None, "real".into()),
            "DOUBLE" => ("number", None, "double precision".into()),
            "NAIVE_DATE" => ("string", Some("date"), "date".into()),
            "NAIVE_DATETIME" => ("string", None, "timestamp without time zone".into()),
            "UTC_DATETIME" => (
                "string",
                Some("date-time"),
                "timestamp with time zone".into(),
            ),
            "NAIVE_TIME" => ("string", None, "time".into()),
            "JSON" => return Some(json!({"x-sql-type": "jsonb"})),
            // STRING, XML, BINARY (base64)
            "STRING" | "XML" | "BINARY" => ("string", None, "text".into()),
            _ => return None,
        };
        let mut p = json!({"type": [kind, "null"], "x-sql-type": sql});
        if let Some(f) = format {
            p["format"] = json!(f);
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_messages() {
        let m: Message = serde_json::from_str(
            r#"{"type":"upsert","table":"items","schema":null,"data":{"id":6,"amount":"1.50"}}"#,
        )
        .unwrap();
        let Message::Upsert(row) = m else {
            panic!("{m:?}")
        };
        assert_eq!(row.table, "items");
        assert_eq!(row.data["amount"], "1.50");
        let m: Message = serde_json::from_str(r#"{"type":"checkpoint","state":{"n":8}}"#).unwrap();
        assert_eq!(
            m,
            Message::Checkpoint {
                state: json!({"n": 8})
            }
        );
        assert_eq!(
            serde_json::from_str::<Message>(r#"{"type":"done"}"#).unwrap(),
            Message::Done
        );
        assert!(serde_json::from_str::<Message>(r#"{"type":"upsert","table":"t"}"#).is_err());
        assert!(serde_json::from_str::<Message>(r#"{"type":"mystery"}"#).is_err());
    }

    #[test]
    fn declared_types_become_column_types() {
        let t: Table = serde_json::from_value(json!({
            "table": "items", "primary_key": ["id"],
            "columns": {"id": {"type": "LONG"}, "amount": {"type": "DECIMAL", "precision": 12, "scale": 2},
                        "at": {"type": "UTC_DATETIME"}, "doc": {"type": "JSON"}, "odd": {"type": "UNSPECIFIED"}}
        }))
        .unwrap();
        assert_eq!(t.key(), vec!["id".to_string()]);
        let s = t.json_schema();
        assert_eq!(s["x-sql-dialect"], "postgres");
        assert_eq!(s["properties"]["id"]["x-sql-type"], "bigint");
        assert_eq!(s["properties"]["amount"]["x-sql-type"], "numeric(12,2)");
        assert_eq!(s["properties"]["at"]["format"], "date-time");
        assert_eq!(s["properties"]["doc"], json!({"x-sql-type": "jsonb"}));
        assert!(s["properties"].get("odd").is_none());
        let keyless: Table = serde_json::from_value(json!({"table": "log"})).unwrap();
        assert_eq!(keyless.key(), vec![FIVETRAN_ID.to_string()]);
        assert_eq!(
            keyless.json_schema()["properties"][FIVETRAN_ID]["type"],
            "string"
        );
    }
}
