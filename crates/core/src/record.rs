use crate::Payload;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Record headers in arrival order. A `Vec` rather than a map because most
/// records carry none or a handful, and Kafka headers may repeat a name.
pub type Headers = Vec<(String, String)>;

/// The header of a delete record that says when the source deleted the row
/// (RFC 3339), e.g. a soft-delete column's timestamp: a sink that keeps
/// deleted rows records that time rather than its own clock's.
pub const DELETED_AT_HEADER: &str = "tributary.deleted_at";

/// The header of an upsert record that changes only the columns it names
/// (Fivetran's `op.update`), with the value [`PARTIAL_UPDATE`]. A sink that
/// keeps one row per key (the PostgreSQL sink in upsert mode) sets those
/// columns of the row with the record's key, leaves the others as they are
/// and creates no row when there is none; other sinks write it as they
/// write an upsert, header included.
pub const OP_HEADER: &str = "tributary.op";

/// The value of [`OP_HEADER`] that marks a partial update.
pub const PARTIAL_UPDATE: &str = "update";

impl Record {
    /// Whether this upsert names only the columns it changes
    /// ([`OP_HEADER`]: [`PARTIAL_UPDATE`]).
    pub fn is_partial_update(&self) -> bool {
        self.op == Op::Upsert
            && self
                .headers
                .iter()
                .any(|(k, v)| k == OP_HEADER && v == PARTIAL_UPDATE)
    }

    /// The source's deletion time ([`DELETED_AT_HEADER`]), if it sent one.
    pub fn deleted_at(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == DELETED_AT_HEADER)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a record adds/replaces a row or removes it (Fivetran's upsert/delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[default]
    Upsert,
    Delete,
}

/// One unit of data on its way to a sink.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The primary key: a single value, or an array for composite keys.
    /// `None` when the stream has no key (append-only data).
    pub key: Option<Value>,
    pub value: Payload,
    pub headers: Headers,
    /// Where the record goes (topic, table, file). `None` lets the runtime
    /// route it: the stream's configured target, else `{topic_prefix}.{stream}`.
    pub target: Option<String>,
    pub op: Op,
}

impl Record {
    pub fn new(value: impl Into<Payload>) -> Self {
        Record {
            value: value.into(),
            ..Record::default()
        }
    }

    pub fn with_key(mut self, key: Value) -> Self {
        self.key = Some(key);
        self
    }

    /// Builds the key from `fields` of the value: the field itself for one,
    /// an array for several, `None` when the list is empty or a field is absent.
    pub fn key_from_fields(value: &Value, fields: &[String]) -> Option<Value> {
        match fields {
            [] => None,
            [one] => value.get(one).cloned(),
            many => many
                .iter()
                .map(|f| value.get(f).cloned())
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn composite_keys_are_arrays_and_missing_fields_give_none() {
        let v = json!({"a": 1, "b": "x"});
        assert_eq!(Record::key_from_fields(&v, &["a".into()]), Some(json!(1)));
        assert_eq!(
            Record::key_from_fields(&v, &["a".into(), "b".into()]),
            Some(json!([1, "x"]))
        );
        assert_eq!(Record::key_from_fields(&v, &["a".into(), "c".into()]), None);
        assert_eq!(Record::key_from_fields(&v, &[]), None);
    }
}
