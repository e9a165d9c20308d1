//! The NDJSON line encodings shared by the stdout and file sinks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_core::{ConnectorError, Op, Payload, Record};

/// How a record becomes one NDJSON line.
///
/// - `value` (default): the record's `value`, as is.
/// - `envelope`: `{"target":..,"key":..,"op":"upsert"|"delete","headers":[[name,value],..],"value":..}`.
///   `key` is `null` for keyless records. Headers are an array of
///   `[name, value]` pairs, not an object, because they keep their order and
///   a name may repeat (Kafka headers); an object would silently drop both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Value,
    Envelope,
}

/// Borrows everything from the record: serializing it allocates nothing.
#[derive(Serialize)]
struct Envelope<'a> {
    target: Option<&'a str>,
    key: Option<&'a Value>,
    op: Op,
    headers: &'a [(String, String)],
    value: &'a Payload,
}

/// Appends the line of `record` (with its `'\n'`) to `out`.
///
/// `target` is the one shown in the envelope (the file sink passes the target
/// it actually routed the record to). Compact JSON escapes every control
/// character inside strings, so a line never contains a raw newline.
pub(crate) fn encode_line(
    format: Format,
    record: &Record,
    target: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), ConnectorError> {
    let result = match format {
        Format::Value => record.value.write_json(out),
        Format::Envelope => serde_json::to_writer(
            &mut *out,
            &Envelope {
                target,
                key: record.key.as_ref(),
                op: record.op,
                headers: &record.headers,
                value: &record.value,
            },
        ),
    };
    // Serializing into memory cannot fail (map keys are strings, raw text is valid JSON);
    // reported per record all the same rather than unwrapped.
    result.map_err(|e| ConnectorError::bad_record(format!("cannot encode record as JSON: {e}")))?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_is_exact() {
        let mut r = Record::new(json!({"id": 1, "s": "a\nb"})).with_key(json!([1, "x"]));
        r.headers = vec![("h".into(), "1".into()), ("h".into(), "2".into())];
        r.op = Op::Delete;
        let mut out = Vec::new();
        encode_line(Format::Envelope, &r, Some("t.orders"), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"target\":\"t.orders\",\"key\":[1,\"x\"],\"op\":\"delete\",\"headers\":[[\"h\",\"1\"],[\"h\",\"2\"]],\"value\":{\"id\":1,\"s\":\"a\\nb\"}}\n"
        );
        let mut out = Vec::new();
        encode_line(Format::Envelope, &Record::new(json!(null)), None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"target\":null,\"key\":null,\"op\":\"upsert\",\"headers\":[],\"value\":null}\n"
        );
        let mut out = Vec::new();
        encode_line(Format::Value, &r, Some("t"), &mut out).unwrap();
        assert_eq!(out, b"{\"id\":1,\"s\":\"a\\nb\"}\n");
    }
}
