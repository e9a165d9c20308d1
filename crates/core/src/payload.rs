//! A record's value: a parsed JSON tree, or the JSON text it arrived in.
//!
//! Most records travel from an API page to a file or topic unchanged but for
//! a few metadata fields. Parsing each one into a `serde_json::Value` tree and
//! serializing it again was most of the HTTP source's CPU time (issue 3's
//! benchmark: three quarters of it in allocation, map inserts and string
//! escaping). Keeping the text, a zero-copy slice of the page, and splicing
//! the metadata in when the record is written does the same job at a
//! fraction of the cost. Sinks that need the fields (tables) parse on demand
//! with [`Payload::to_value`].

use bytes::Bytes;
use memchr::memmem::Finder;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A record's value.
#[derive(Clone)]
pub enum Payload {
    Json(Value),
    Raw(RawJson),
}

/// One valid JSON value as text, plus fields to add to it if it is an object.
#[derive(Clone)]
pub struct RawJson {
    /// Exactly one JSON value without surrounding whitespace; guaranteed by
    /// the constructors, which only take text serde_json has validated.
    text: Bytes,
    extra: Option<Arc<ExtraFields>>,
}

/// Fields added to every object record of a batch (the runtime's metadata),
/// rendered once per batch rather than once per record.
#[derive(Debug)]
pub struct ExtraFields {
    fields: Vec<(String, Value)>,
    /// `"k1":v1,"k2":v2`: what goes before a raw object's closing brace.
    rendered: Vec<u8>,
    /// Each name as a JSON string (`"k1"`), to spot a raw record that may
    /// already have the field: those take the parsed path, where the added
    /// field replaces the record's own, as it does for parsed records.
    quoted_names: Vec<Finder<'static>>,
    /// What all quoted names start with (`"_` for the defaults), when that
    /// is more than the quote: a record without it needs no other search.
    common_prefix: Option<Finder<'static>>,
}

impl PartialEq for ExtraFields {
    fn eq(&self, other: &ExtraFields) -> bool {
        self.fields == other.fields
    }
}

impl ExtraFields {
    pub fn new(fields: Vec<(String, Value)>) -> Arc<ExtraFields> {
        let mut rendered = Vec::new();
        let mut quoted_names = Vec::with_capacity(fields.len());
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                rendered.push(b',');
            }
            let quoted = Value::String(name.clone()).to_string();
            rendered.extend_from_slice(quoted.as_bytes());
            rendered.push(b':');
            rendered.extend_from_slice(value.to_string().as_bytes());
            quoted_names.push(Finder::new(quoted.as_bytes()).into_owned());
        }
        let common_prefix = fields
            .iter()
            .map(|(name, _)| name.as_bytes())
            .reduce(|a, b| &a[..a.iter().zip(b).take_while(|(x, y)| x == y).count()])
            // Bytes JSON writes as themselves, so the quoted prefix is literal.
            .filter(|prefix| {
                !prefix.is_empty()
                    && prefix
                        .iter()
                        .all(|b| *b >= 0x20 && *b != b'"' && *b != b'\\')
            })
            .map(|prefix| Finder::new(&[b"\"", prefix].concat()).into_owned());
        Arc::new(ExtraFields {
            fields,
            rendered,
            quoted_names,
            common_prefix,
        })
    }

    pub fn fields(&self) -> &[(String, Value)] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn insert_into(&self, map: &mut serde_json::Map<String, Value>) {
        for (name, value) in &self.fields {
            map.insert(name.clone(), value.clone());
        }
    }
}

impl RawJson {
    /// Takes `text`, one validated JSON value without surrounding
    /// whitespace (as serde_json's raw values are), as a slice of `page` (no
    /// copy) when it lies inside it, as it does when it was read from
    /// `page`; copies it otherwise.
    pub fn within(text: &str, page: &Bytes) -> RawJson {
        // No whitespace to trim, so the slice is taken once (each slice is
        // an atomic count on the page).
        let text = text.as_bytes();
        let start = (text.as_ptr() as usize).wrapping_sub(page.as_ptr() as usize);
        let text = if start <= page.len() && text.len() <= page.len() - start {
            page.slice(start..start + text.len())
        } else {
            Bytes::copy_from_slice(text)
        };
        RawJson { text, extra: None }
    }

    /// Validates `text` as one JSON value.
    pub fn parse(text: Bytes) -> Result<RawJson, serde_json::Error> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&text)?;
        Ok(RawJson::trimmed(text))
    }

    /// Takes `text` as it is, already checked by the caller to be exactly
    /// one JSON value (as a projecting parse of it does): the fast path of
    /// sources that validate while reading the few fields they need.
    pub fn from_checked(text: Bytes) -> RawJson {
        RawJson::trimmed(text)
    }

    fn trimmed(text: Bytes) -> RawJson {
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(text.len());
        let end = text
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |i| i + 1);
        RawJson {
            text: text.slice(start..end),
            extra: None,
        }
    }

    /// The record's own text, without the added fields.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    fn is_object(&self) -> bool {
        self.text.first() == Some(&b'{')
    }

    fn parse_tree(&self) -> Value {
        // The constructors only accept validated JSON, so this cannot fail;
        // `Null` is the unreachable fallback rather than a panic.
        let mut value: Value = serde_json::from_slice(&self.text).unwrap_or(Value::Null);
        if let (Some(extra), Value::Object(map)) = (&self.extra, &mut value) {
            extra.insert_into(map);
        }
        value
    }

    fn write(&self, out: &mut Vec<u8>) {
        match &self.extra {
            Some(extra) if !extra.is_empty() && self.is_object() => {
                // `{...}` → `{...,"k":v}`; `{}` → `{"k":v}`.
                let body = &self.text[..self.text.len() - 1];
                out.extend_from_slice(body);
                if body[1..].iter().any(|b| !b.is_ascii_whitespace()) {
                    out.push(b',');
                }
                out.extend_from_slice(&extra.rendered);
                out.push(b'}');
            }
            _ => out.extend_from_slice(&self.text),
        }
    }
}

impl Payload {
    /// The value as a tree: borrowed when parsed, parsed when raw.
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            Payload::Json(v) => Cow::Borrowed(v),
            Payload::Raw(raw) => Cow::Owned(raw.parse_tree()),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Payload::Json(v) => v,
            Payload::Raw(raw) => raw.parse_tree(),
        }
    }

    pub fn is_object(&self) -> bool {
        match self {
            Payload::Json(v) => v.is_object(),
            Payload::Raw(raw) => raw.is_object(),
        }
    }

    /// Adds `extra` to an object value, replacing fields of the same name;
    /// anything else is left alone.
    pub fn add_fields(&mut self, extra: &Arc<ExtraFields>) {
        match self {
            Payload::Json(Value::Object(map)) => extra.insert_into(map),
            Payload::Json(_) => {}
            Payload::Raw(raw) if !raw.is_object() => {}
            Payload::Raw(raw) => {
                let may_clash = raw.extra.is_some()
                    || (extra
                        .common_prefix
                        .as_ref()
                        .is_none_or(|prefix| prefix.find(&raw.text).is_some())
                        && extra
                            .quoted_names
                            .iter()
                            .any(|name| name.find(&raw.text).is_some()));
                if may_clash {
                    let mut value = raw.parse_tree();
                    if let Value::Object(map) = &mut value {
                        extra.insert_into(map);
                    }
                    *self = Payload::Json(value);
                } else {
                    raw.extra = Some(Arc::clone(extra));
                }
            }
        }
    }

    /// The length of the value as compact JSON, without added fields: the
    /// bytes the source produced, for the `bytes_read` metric. Free for raw
    /// records; parsed ones are serialized into a counter (no allocation).
    pub fn json_len(&self) -> u64 {
        struct Count(u64);
        impl std::io::Write for Count {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0 += b.len() as u64;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        match self {
            Payload::Raw(raw) => raw.text.len() as u64,
            Payload::Json(v) => {
                let mut c = Count(0);
                // A `Value` always serializes.
                let _ = serde_json::to_writer(&mut c, v);
                c.0
            }
        }
    }

    /// Appends the value as compact JSON (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Payload::Json(v) => serde_json::to_writer(out, v),
            Payload::Raw(raw) => {
                raw.write(out);
                Ok(())
            }
        }
    }

    /// The value as compact JSON text.
    pub fn to_json_string(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec fails only for a map with non-string keys, which
        // a `Value` cannot hold.
        let _ = self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Json(Value::Null)
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload::Json(value)
    }
}

impl From<RawJson> for Payload {
    fn from(raw: RawJson) -> Self {
        Payload::Raw(raw)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        *self.to_value() == *other
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawJson")
            .field("text", &String::from_utf8_lossy(&self.text))
            .field("extra", &self.extra)
            .finish()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(v) => v.fmt(f),
            Payload::Raw(_) => write!(f, "Raw({})", self.to_json_string()),
        }
    }
}

/// With serde_json's serializer a raw value is written as is; other
/// serializers see it as serde_json's raw-value token, so they should use
/// [`Payload::to_value`] instead.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Json(v) => v.serialize(serializer),
            Payload::Raw(raw) => {
                let mut text = Vec::with_capacity(raw.text.len());
                raw.write(&mut text);
                let text = String::from_utf8(text).map_err(serde::ser::Error::custom)?;
                RawValue::from_string(text)
                    .map_err(serde::ser::Error::custom)?
                    .serialize(serializer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Payload {
        Payload::Raw(RawJson::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap())
    }

    fn metadata() -> Arc<ExtraFields> {
        ExtraFields::new(vec![
            ("_stream".into(), json!("items")),
            ("_at".into(), json!(1767225600000i64)),
        ])
    }

    #[test]
    fn json_len_is_the_compact_text_without_added_fields() {
        let mut p = raw(" {\"id\": 1} ");
        p.add_fields(&metadata());
        assert_eq!(p.json_len(), 9);
        assert_eq!(Payload::Json(json!({"id": 1, "s": "é"})).json_len(), 17);
    }

    #[test]
    fn raw_objects_get_the_fields_spliced_in() {
        let mut p = raw(" {\"id\": 1, \"s\": \"a}\"} \n");
        p.add_fields(&metadata());
        assert_eq!(
            p.to_json_string(),
            r#"{"id": 1, "s": "a}","_stream":"items","_at":1767225600000}"#
        );
        assert_eq!(
            p,
            json!({"id": 1, "s": "a}", "_stream": "items", "_at": 1767225600000i64})
        );

        let mut empty = raw("{ }");
        empty.add_fields(&metadata());
        assert_eq!(
            empty.to_json_string(),
            r#"{ "_stream":"items","_at":1767225600000}"#
        );
        assert_eq!(empty, json!({"_stream": "items", "_at": 1767225600000i64}));
    }

    #[test]
    fn a_raw_record_with_a_field_of_the_same_name_has_it_replaced_once() {
        let mut p = raw(r#"{"_stream":"mine","id":2}"#);
        p.add_fields(&metadata());
        let line = p.to_json_string();
        assert_eq!(line.matches("_stream").count(), 1, "{line}");
        assert_eq!(
            p,
            json!({"id": 2, "_stream": "items", "_at": 1767225600000i64})
        );
        // A second set of fields also goes through the tree.
        p.add_fields(&ExtraFields::new(vec![("_x".into(), json!(true))]));
        assert_eq!(p.to_value()["_x"], json!(true));
        assert_eq!(p.to_value()["_stream"], json!("items"));

        // Names sharing only the quote, and a record sharing only their prefix.
        let unrelated = ExtraFields::new(vec![
            ("stream".into(), json!("items")),
            ("at".into(), json!(1)),
        ]);
        let mut p = raw(r#"{"id":3,"at":0}"#);
        p.add_fields(&unrelated);
        assert_eq!(p, json!({"id": 3, "stream": "items", "at": 1}));
        let mut p = raw(r#"{"_other":"x","id":4}"#);
        p.add_fields(&metadata());
        assert!(matches!(&p, Payload::Raw(_)), "stays text: {p:?}");
        assert_eq!(
            p,
            json!({"_other": "x", "id": 4, "_stream": "items", "_at": 1767225600000i64})
        );
    }

    #[test]
    fn non_objects_are_left_alone() {
        for text in ["[1,2]", "\"s\"", "null", "3.5"] {
            let mut p = raw(text);
            p.add_fields(&metadata());
            assert_eq!(p.to_json_string(), text);
        }
        let mut p = Payload::from(json!([1]));
        p.add_fields(&metadata());
        assert_eq!(p, json!([1]));
    }

    #[test]
    fn parsed_and_raw_serialize_the_same_way() {
        let mut a = raw(r#"{"b":1,"a":[true,null]}"#);
        let mut b = Payload::from(json!({"b": 1, "a": [true, null]}));
        a.add_fields(&metadata());
        b.add_fields(&metadata());
        assert_eq!(a, b);
        let wrapped_a = serde_json::to_value(json!({"v": a.to_value()})).unwrap();
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), *b.to_value());
        assert_eq!(wrapped_a["v"], *b.to_value());
        assert!(RawJson::parse(Bytes::from_static(b"{\"a\":")).is_err());
    }

    #[test]
    fn within_slices_the_page_without_copying() {
        let page = Bytes::from_static(br#"{"data":[{"id":1},{"id":2}]}"#);
        #[derive(serde::Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            data: Vec<&'a RawValue>,
        }
        let parsed: Page<'_> = serde_json::from_slice(&page).unwrap();
        let second = RawJson::within(parsed.data[1].get(), &page);
        assert_eq!(second.text(), br#"{"id":2}"#);
        let range = second.text().as_ptr() as usize - page.as_ptr() as usize;
        assert_eq!(range, 18);
        // Text from elsewhere is copied.
        let other: Box<RawValue> = serde_json::from_str("[3]").unwrap();
        assert_eq!(RawJson::within(other.get(), &page).text(), b"[3]");
    }
}
