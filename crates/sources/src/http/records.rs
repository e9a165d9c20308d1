//! Where a response's records are, and which of them to keep.
//!
//! Two path syntaxes: a dotted path (`data.items`, `results.0.rows`) for the
//! common case, and JSONPath (RFC 9535, via `serde_json_path`) when it starts
//! with `$`, for everything else. Pages can hold thousands of records, so
//! selection moves them out of the parsed body instead of cloning them.

use serde_json::Value;
use serde_json_path::JsonPath;

/// Where a response's records are, and which to keep.
#[derive(Debug, Clone)]
pub struct RecordSelector {
    path: Selection,
    filter: Option<JsonPath>,
}

#[derive(Debug, Clone)]
enum Selection {
    Whole,
    Dotted { pointer: String, text: String },
    JsonPath { path: JsonPath, text: String },
}

impl RecordSelector {
    /// `path`: JSONPath when it starts with `$`, else a dotted path
    /// (`data.items`); `None` is the whole body. `filter`: a JSONPath filter
    /// expression over one record, e.g. `@.status == 'active'`. Errors are
    /// messages for config errors.
    pub fn new(path: Option<&str>, filter: Option<&str>) -> Result<RecordSelector, String> {
        let path = match path.map(str::trim) {
            None | Some("") => Selection::Whole,
            Some(p) if p.starts_with('$') => Selection::JsonPath {
                path: parse_json_path(p)?,
                text: p.to_string(),
            },
            Some(p) => {
                check_dotted(p)?;
                Selection::Dotted {
                    pointer: dotted_to_pointer(p),
                    text: p.to_string(),
                }
            }
        };
        let filter = match filter.map(str::trim) {
            None | Some("") => None,
            Some(expr) => {
                // The filter runs over a one-element array holding the
                // record, which is how RFC 9535 filters select a value.
                let expr = expr.strip_prefix('?').unwrap_or(expr).trim();
                Some(JsonPath::parse(&format!("$[?({expr})]")).map_err(|e| {
                    format!(
                        "invalid record filter `{expr}`: {e}; write e.g. `@.status == 'active'`"
                    )
                })?)
            }
        };
        Ok(RecordSelector { path, filter })
    }

    /// The path's segments when records can stay text ([`super::raw_page`]):
    /// the whole body or a dotted path through object keys, and no filter.
    pub fn raw_path(&self) -> Option<Vec<String>> {
        if self.filter.is_some() {
            return None;
        }
        match &self.path {
            Selection::Whole => Some(Vec::new()),
            Selection::Dotted { text, .. } => {
                let segments: Vec<String> = text.split('.').map(str::to_string).collect();
                let indexes = segments.iter().any(|s| s.parse::<usize>().is_ok());
                (!indexes).then_some(segments)
            }
            Selection::JsonPath { .. } => None,
        }
    }

    /// Takes the body by value so a large page is moved, not cloned. An array
    /// at the path yields its elements; an object yields itself as one
    /// record; null or a missing path yields none (an API that omits the list
    /// on an empty page is common). A scalar at the path is an error.
    pub fn select(&self, body: Value) -> Result<Vec<Value>, String> {
        let records = match &self.path {
            Selection::Whole => explode(body, "the response body")?,
            Selection::Dotted { pointer, text } => {
                let mut body = body;
                match body.pointer_mut(pointer) {
                    Some(found) => explode(found.take(), &format!("`{text}`"))?,
                    None => Vec::new(),
                }
            }
            Selection::JsonPath { path, text } => select_json_path(path, text, body)?,
        };
        Ok(match &self.filter {
            None => records,
            Some(filter) => records
                .into_iter()
                .filter_map(|record| keep(filter, record))
                .collect(),
        })
    }
}

/// Applies the filter to one record without cloning it: the record is moved
/// into a one-element array and back out.
fn keep(filter: &JsonPath, record: Value) -> Option<Value> {
    let wrapped = Value::Array(vec![record]);
    let matched = !filter.query(&wrapped).is_empty();
    match wrapped {
        Value::Array(mut items) if matched => items.pop(),
        _ => None,
    }
}

fn explode(value: Value, what: &str) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(_) => Ok(vec![value]),
        Value::Null => Ok(Vec::new()),
        other => Err(not_records_message(what, &other)),
    }
}

/// The error for a scalar where records should be.
pub(crate) fn not_records_message(what: &str, found: &Value) -> String {
    format!(
        "expected records (an array or object) at {what}, found {}",
        describe(found)
    )
}

fn select_json_path(path: &JsonPath, text: &str, mut body: Value) -> Result<Vec<Value>, String> {
    // Locations first (borrowing), then move each node out by JSON pointer.
    let pointers: Vec<String> = path
        .query_located(&body)
        .locations()
        .map(|loc| loc.to_json_pointer())
        .collect();
    match pointers.as_slice() {
        [] => Ok(Vec::new()),
        [one] => match body.pointer_mut(one) {
            Some(found) => explode(found.take(), &format!("`{text}`")),
            None => Ok(Vec::new()),
        },
        many => {
            // Several matches (`$.data[*]`, `$..items[*]`): each is a record.
            let mut records = Vec::with_capacity(many.len());
            for pointer in many {
                // Overlapping matches (a node and its descendant) find the
                // descendant already moved out with its parent: skip it.
                let Some(found) = body.pointer_mut(pointer) else {
                    continue;
                };
                match found.take() {
                    Value::Null => {}
                    record @ (Value::Object(_) | Value::Array(_)) => records.push(record),
                    other => {
                        return Err(format!(
                            "expected records (objects) at `{text}`, found {} at `{pointer}`",
                            describe(&other)
                        ))
                    }
                }
            }
            Ok(records)
        }
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = value.to_string();
    if text.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} ({text})")
}

fn parse_json_path(path: &str) -> Result<JsonPath, String> {
    JsonPath::parse(path).map_err(|e| format!("invalid JSONPath `{path}`: {e}"))
}

fn check_dotted(path: &str) -> Result<(), String> {
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "invalid path `{path}`: empty segment; write e.g. `data.items`, or JSONPath starting with `$`"
        ));
    }
    Ok(())
}

/// `a.b.0` → `/a/b/0`, escaping per RFC 6901 so keys with `/` or `~` work.
fn dotted_to_pointer(path: &str) -> String {
    let mut pointer = String::with_capacity(path.len() + 1);
    for segment in path.split('.') {
        pointer.push('/');
        pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// Checks a path for [`lookup`] at config load, so a typo in a cursor or
/// `has_more` path is reported up front rather than silently never matching.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('$') {
        parse_json_path(path).map(|_| ())
    } else {
        check_dotted(path)
    }
}

/// Looks up a dotted path (`a.b.0.c`) or JSONPath (`$.a.b`, first match) in a
/// value; used for cursors, `has_more` flags, totals and key fields. An
/// invalid path finds nothing (validate it with [`check_path`]).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('$') {
        JsonPath::parse(path).ok()?.query(value).first()
    } else {
        lookup_dotted(value, path)
    }
}

/// Dotted-path lookup: object keys, and numeric segments as array indices.
/// The empty path is the value itself.
pub(crate) fn lookup_dotted<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.')
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(records: &[Value]) -> Vec<i64> {
        records.iter().filter_map(|r| r["id"].as_i64()).collect()
    }

    #[test]
    fn whole_body() {
        let s = RecordSelector::new(None, None).unwrap();
        assert_eq!(
            ids(&s.select(json!([{"id": 1}, {"id": 2}])).unwrap()),
            [1, 2]
        );
        assert_eq!(ids(&s.select(json!({"id": 7})).unwrap()), [7]);
        assert!(s.select(Value::Null).unwrap().is_empty());
        let err = s.select(json!("oops")).unwrap_err();
        assert!(err.contains("found a string (\"oops\")"), "{err}");
    }

    #[test]
    fn dotted_paths() {
        let s = RecordSelector::new(Some("data.items"), None).unwrap();
        let body = json!({"data": {"items": [{"id": 1}, {"id": 2}, {"id": 3}]}, "meta": {}});
        assert_eq!(ids(&s.select(body).unwrap()), [1, 2, 3]);
        // A single object is one record.
        assert_eq!(
            ids(&s.select(json!({"data": {"items": {"id": 9}}})).unwrap()),
            [9]
        );
        // Missing and null yield none.
        assert!(s.select(json!({"data": {}})).unwrap().is_empty());
        assert!(s
            .select(json!({"data": {"items": null}}))
            .unwrap()
            .is_empty());
        assert!(s.select(json!({"other": 1})).unwrap().is_empty());
        // A scalar is an error that says what was found.
        let err = s.select(json!({"data": {"items": 5}})).unwrap_err();
        assert!(
            err.contains("`data.items`") && err.contains("a number (5)"),
            "{err}"
        );
        // Numeric segments index arrays.
        let s = RecordSelector::new(Some("pages.1.rows"), None).unwrap();
        let body = json!({"pages": [{"rows": [{"id": 1}]}, {"rows": [{"id": 2}]}]});
        assert_eq!(ids(&s.select(body).unwrap()), [2]);
        assert!(RecordSelector::new(Some("data..items"), None).is_err());
    }

    #[test]
    fn json_paths() {
        let body = json!({"data": {"items": [{"id": 1}, {"id": 2}]}});
        let s = RecordSelector::new(Some("$.data.items"), None).unwrap();
        assert_eq!(ids(&s.select(body.clone()).unwrap()), [1, 2]);
        let s = RecordSelector::new(Some("$.data.items[*]"), None).unwrap();
        assert_eq!(ids(&s.select(body.clone()).unwrap()), [1, 2]);
        let s = RecordSelector::new(Some("$..items[*]"), None).unwrap();
        assert_eq!(ids(&s.select(body.clone()).unwrap()), [1, 2]);
        let s = RecordSelector::new(Some("$.nothing"), None).unwrap();
        assert!(s.select(body.clone()).unwrap().is_empty());
        let s = RecordSelector::new(Some("$.data.items[*].id"), None).unwrap();
        let err = s.select(body).unwrap_err();
        assert!(err.contains("a number (1)"), "{err}");
        let err = RecordSelector::new(Some("$.data[?"), None).unwrap_err();
        assert!(err.contains("invalid JSONPath"), "{err}");
    }

    #[test]
    fn filters() {
        let body = json!({"items": [
            {"id": 1, "status": "active", "n": 5},
            {"id": 2, "status": "deleted", "n": 50},
            {"id": 3, "status": "active", "n": 500},
        ]});
        let s = RecordSelector::new(Some("items"), Some("@.status == 'active'")).unwrap();
        assert_eq!(ids(&s.select(body.clone()).unwrap()), [1, 3]);
        let s = RecordSelector::new(Some("items"), Some("?@.n > 10 && @.n < 100")).unwrap();
        assert_eq!(ids(&s.select(body.clone()).unwrap()), [2]);
        let s = RecordSelector::new(Some("$.items"), Some("@.missing")).unwrap();
        assert!(s.select(body).unwrap().is_empty());
        let err = RecordSelector::new(None, Some("@.status ==")).unwrap_err();
        assert!(err.contains("invalid record filter"), "{err}");
    }

    #[test]
    fn lookups() {
        let v = json!({"meta": {"next": "abc", "list": [{"k": 1}]}, "a/b": {"~c": 2}});
        assert_eq!(lookup(&v, "meta.next"), Some(&json!("abc")));
        assert_eq!(lookup(&v, "meta.list.0.k"), Some(&json!(1)));
        assert_eq!(lookup(&v, "$.meta.list[0].k"), Some(&json!(1)));
        assert_eq!(lookup(&v, "meta.list.x"), None);
        assert_eq!(lookup(&v, "meta.nope"), None);
        assert_eq!(lookup(&v, "$.meta["), None);
        assert_eq!(lookup(&v, ""), Some(&v));
        // Keys with pointer metacharacters work through the dotted selector.
        let s = RecordSelector::new(Some("a/b.~c"), None).unwrap();
        let err = s.select(v).unwrap_err();
        assert!(err.contains("a number (2)"), "{err}");
        assert!(check_path("$.a[").is_err());
        assert!(check_path("a..b").is_err());
        assert!(check_path("a.b").is_ok());
    }
}
