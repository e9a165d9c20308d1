//! Pages whose records stay JSON text: the fast path of the `http` source.
//!
//! A page is scanned once. Everything but the records array becomes a small
//! `Value` (what pagination reads: cursors, totals, `has_more`); each record
//! becomes a zero-copy slice of the page plus the handful of top-level fields
//! the stream reads itself (key, id cursor, keyset fields). The record is
//! never turned into a tree, which was most of the source's CPU time. The
//! listing falls back to parsing whole pages when it needs more: JSONPath
//! selection, a record filter, a parent stream's templates, or a pagination
//! path that points into the records.

use super::client::{display_url, HttpResponse};
use super::engine::FetchError;
use super::json_scan::{
    checked_member_name, checked_value_end, compact, skip_whitespace, string_end, value_end, Notes,
};
use super::records::{lookup, not_records_message, RecordSelector};
use bytes::Bytes;
use serde::de::{
    self, value::MapAccessDeserializer, value::SeqAccessDeserializer, DeserializeSeed,
    Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use tributary_core::{BadRecord, Payload, RawJson};

/// A raw record's top-level fields that the stream reads, by name (see
/// [`intern`]). Inline for up to two: most streams read a key and maybe a
/// cursor, and this is built for every record.
pub type Projected = SmallVec<[(&'static str, Value); 2]>;

/// The process's copy of a field name that raw records are projected on.
/// Names come from configuration, so the set stays small; in exchange a
/// record's fields carry a plain reference, and no reference count is
/// touched per record by both the task that scans a page and the one that
/// delivers it.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let name: &'static str = Box::leak(name.into());
    names.insert(name);
    name
}

/// A record as it came off a page.
#[derive(Debug, Clone)]
pub enum PageRecord {
    Parsed(Value),
    /// The record's text, and only the top-level fields the stream reads
    /// (none when it reads none or the record is no object).
    Raw {
        json: RawJson,
        fields: Projected,
    },
}

impl PageRecord {
    /// A dotted path or JSONPath into the record. For a raw record only the
    /// fields the listing asked for are there (always by dotted path: see
    /// [`RawSelection::plan`]).
    pub fn get(&self, path: &str) -> Option<&Value> {
        match self {
            PageRecord::Parsed(v) => lookup(v, path),
            PageRecord::Raw { fields, .. } => {
                let (top, rest) = path.split_once('.').unwrap_or((path, ""));
                let (_, value) = fields.iter().find(|(name, _)| **name == *top)?;
                if rest.is_empty() {
                    Some(value)
                } else {
                    lookup(value, rest)
                }
            }
        }
    }

    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            PageRecord::Parsed(v) => Cow::Borrowed(v),
            PageRecord::Raw { json, .. } => Cow::Owned(Payload::Raw(json.clone()).into_value()),
        }
    }

    pub fn into_payload(self) -> Payload {
        match self {
            PageRecord::Parsed(v) => Payload::Json(v),
            PageRecord::Raw { json, .. } => Payload::Raw(json),
        }
    }

    /// The record as JSON text, for a bad-record report.
    pub fn to_json_string(&self) -> String {
        match self {
            PageRecord::Parsed(v) => v.to_string(),
            PageRecord::Raw { json, .. } => String::from_utf8_lossy(json.text()).into_owned(),
        }
    }
}

/// Where a listing's records are and which of their fields it reads, when
/// its records can stay text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSelection {
    pub path: Vec<String>,
    pub fields: Vec<&'static str>,
}

impl RawSelection {
    /// Records at `path` (dotted segments), reading top-level `fields`.
    pub fn new(path: Vec<String>, fields: &[&str]) -> RawSelection {
        RawSelection {
            path,
            fields: fields.iter().map(|f| intern(f)).collect(),
        }
    }

    /// `None` when the listing needs whole records: a record path that is
    /// not plain (see [`RecordSelector::raw_path`]), a parent stream (its
    /// records feed templates), a field path in JSONPath, or a pagination
    /// path that may point into the records.
    pub fn plan(
        selector: &RecordSelector,
        is_parent: bool,
        field_paths: &[&str],
        pagination_paths: &[&str],
    ) -> Option<RawSelection> {
        let path = selector.raw_path().filter(|_| !is_parent)?;
        let mut fields: Vec<&'static str> = Vec::new();
        for field in field_paths {
            if field.starts_with('$') {
                return None;
            }
            let top = field.split('.').next().unwrap_or_default();
            if !fields.contains(&top) {
                fields.push(intern(top));
            }
        }
        let into_records = |p: &&str| {
            p.starts_with('$')
                || path
                    .first()
                    .is_none_or(|first| p.split('.').next() == Some(first))
        };
        if pagination_paths.iter().any(into_records) {
            return None;
        }
        Some(RawSelection { path, fields })
    }

    /// Reads a response's page. A body that is not JSON, or that has no
    /// records where they should be (a scalar, `null`, nothing, or the
    /// records' key twice) is a bad page: retried, never the end of a
    /// listing (a proxy's error page, a half-deployed API). Records a
    /// strict parser would refuse are the page's bad records.
    pub fn read_response(&self, response: &HttpResponse) -> Result<RawPage, FetchError> {
        let mut bad_page = None;
        let mut page = response
            .parse_json(RawPage::default(), |body| {
                match read_page(body, &self.path, &self.fields) {
                    Ok(page) => Ok(page),
                    Err(RawPageError::Json(e)) => Err(e),
                    Err(RawPageError::NotRecords { at, found }) => {
                        bad_page = Some(not_records_message(&at, &found));
                        Ok(RawPage::default())
                    }
                    Err(RawPageError::Ambiguous { key }) => {
                        bad_page = Some(format!(
                            "the key `{key}` appears twice, so which records the page holds is ambiguous"
                        ));
                        Ok(RawPage::default())
                    }
                }
            })
            .map_err(|e| FetchError::bad_page(e.message, response))?;
        if let Some(message) = bad_page {
            return Err(FetchError::bad_page(
                format!(
                    "unexpected response from {}: {message}",
                    display_url(&response.url)
                ),
                response,
            ));
        }
        for bad in &mut page.bad_records {
            bad.location = format!("{} {}", display_url(&response.url), bad.location);
        }
        Ok(page)
    }
}

/// A page with its records taken out.
#[derive(Debug, Default)]
pub struct RawPage {
    /// The body with the records array replaced by `null`.
    pub body: Value,
    pub records: Vec<PageRecord>,
    /// Records at the path (an array's length, 1 for an object), bad
    /// ones included.
    pub raw_count: usize,
    /// Records a strict JSON parser would refuse (`1e999`, a lone
    /// surrogate), kept whole for the bad-record policy.
    pub bad_records: Vec<BadRecord>,
    /// The last record when it is a bad one, with the fields asked for if
    /// they can be read: the position after the page starts past it.
    pub last_bad: Option<PageRecord>,
}

/// Why a page could not be read.
#[derive(Debug)]
enum RawPageError {
    Json(serde_json::Error),
    /// Something other than records (an array or object) at the path,
    /// or nothing there.
    NotRecords {
        at: String,
        found: Value,
    },
    /// A key on the way to the records appears twice.
    Ambiguous {
        key: String,
    },
}

/// Reads the records at `path` (dotted segments; empty is the whole body)
/// from `page`, keeping each as text with only `fields` extracted.
fn read_page(
    page: &Bytes,
    path: &[String],
    fields: &[&'static str],
) -> Result<RawPage, RawPageError> {
    // The checked scan reads a valid page; anything it cannot vouch for is
    // read again by serde_json, whose verdict (and error position) stands.
    // The page's UTF-8 is checked once, which also spares serde_json a
    // check per record; a page that fails it is read from bytes so the
    // error is serde_json's.
    let (body, found) = match std::str::from_utf8(page) {
        Ok(text) => match scan_page(text, path) {
            Some(read) => Ok(read),
            None => walk(&mut serde_json::Deserializer::from_str(text), path),
        },
        Err(_) => walk(&mut serde_json::Deserializer::from_slice(page), path),
    }
    .map_err(RawPageError::Json)?;
    let at = || {
        if path.is_empty() {
            "the response body".to_string()
        } else {
            format!("`{}`", path.join("."))
        }
    };
    let mut bad_records = Vec::new();
    let mut last_bad = None;
    let (records, raw_count) = match found {
        Found::Missing => {
            return Err(RawPageError::NotRecords {
                at: at(),
                found: Value::String("nothing (the key is missing)".into()),
            })
        }
        Found::Null => {
            return Err(RawPageError::NotRecords {
                at: at(),
                found: Value::Null,
            })
        }
        Found::Ambiguous(key) => return Err(RawPageError::Ambiguous { key }),
        Found::Many(items) => {
            let mut records = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let kept = match item.kept() {
                    Ok(kept) => kept,
                    Err(problem) => {
                        bad_records.push(BadRecord {
                            location: format!("record {}", i + 1),
                            error: not_strict_message(problem),
                            raw: item.text.to_string().into(),
                        });
                        if i + 1 == items.len() {
                            last_bad =
                                project(item.text, fields)
                                    .ok()
                                    .map(|fields| PageRecord::Raw {
                                        json: RawJson::within(item.text, page),
                                        fields,
                                    });
                        }
                        continue;
                    }
                };
                let json = match kept {
                    Cow::Borrowed(text) => RawJson::within(text, page),
                    Cow::Owned(text) => RawJson::from_checked(Bytes::from(text)),
                };
                let fields = project(
                    std::str::from_utf8(json.text()).unwrap_or(item.text),
                    fields,
                )
                .map_err(RawPageError::Json)?;
                records.push(PageRecord::Raw { json, fields });
            }
            (records, items.len())
        }
        Found::One(object) => (vec![PageRecord::Parsed(object)], 1),
        Found::Other(found) => {
            return Err(RawPageError::NotRecords { at: at(), found });
        }
    };
    Ok(RawPage {
        body,
        records,
        raw_count,
        bad_records,
        last_bad,
    })
}

/// What serde_json's [`walk`] gives, read by the checked scans; `None`
/// when they cannot vouch for the page.
fn scan_page<'t>(text: &'t str, path: &[String]) -> Option<(Value, Found<'t>)> {
    let mut found = Found::Missing;
    let start = skip_whitespace(text.as_bytes(), 0);
    let (body, end) = scan_walk(text, start, 0, path, &mut found)?;
    (skip_whitespace(text.as_bytes(), end) == text.len()).then_some((body, found))
}

/// [`Walk`] for the value at `at`, inside `depth` containers: the value
/// down to `path` and where it ends.
fn scan_walk<'t>(
    text: &'t str,
    mut at: usize,
    depth: usize,
    path: &[String],
    found: &mut Found<'t>,
) -> Option<(Value, usize)> {
    let bytes = text.as_bytes();
    let Some((segment, rest)) = path.split_first() else {
        return scan_records(text, at, depth, found);
    };
    if bytes.get(at) != Some(&b'{') {
        // The path only descends through objects, as on serde_json's path.
        return scan_value(text, at, depth);
    }
    let mut out = Map::new();
    at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some((Value::Object(out), at + 1));
    }
    loop {
        let value_at = checked_member_name(bytes, at, &mut Notes::default())?;
        let name = &text[at..string_end(bytes, at)];
        let name: Cow<str> = if name.contains('\\') {
            Cow::Owned(serde_json::from_str(name).ok()?)
        } else {
            Cow::Borrowed(&name[1..name.len() - 1])
        };
        let again = *name == **segment && !matches!(found, Found::Missing);
        let (value, end) = if *name == **segment && !again {
            scan_walk(text, value_at, depth + 1, rest, found)?
        } else {
            scan_value(text, value_at, depth + 1)?
        };
        insert_member(&mut out, name.into_owned(), value, again, found);
        at = skip_whitespace(bytes, end);
        match bytes.get(at)? {
            b',' => at = skip_whitespace(bytes, at + 1),
            b'}' => return Some((Value::Object(out), at + 1)),
            _ => return None,
        }
    }
}

/// [`Records`] for the value at `at`, inside `depth` containers.
fn scan_records<'t>(
    text: &'t str,
    mut at: usize,
    depth: usize,
    found: &mut Found<'t>,
) -> Option<(Value, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'[') {
        let (value, end) = scan_value(text, at, depth)?;
        *found = match value {
            Value::Null => Found::Null,
            Value::Object(_) => Found::One(value),
            other => Found::Other(other),
        };
        return Some((Value::Null, end));
    }
    let mut items = Vec::with_capacity(1024);
    at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b']') {
        *found = Found::Many(items);
        return Some((Value::Null, at + 1));
    }
    loop {
        let mut notes = Notes::default();
        let end = checked_value_end(bytes, at, depth + 1, &mut notes)?;
        let item = &text[at..end];
        // `null` entries are no records, as on the parsed path.
        if item != "null" {
            items.push(Item { text: item, notes });
        }
        at = skip_whitespace(bytes, end);
        match bytes.get(at)? {
            b',' => at = skip_whitespace(bytes, at + 1),
            b']' => {
                *found = Found::Many(items);
                return Some((Value::Null, at + 1));
            }
            _ => return None,
        }
    }
}

/// The value at `at`, inside `depth` containers, parsed (small parts of a
/// page: cursors, totals, a single record), and where it ends.
fn scan_value(text: &str, at: usize, depth: usize) -> Option<(Value, usize)> {
    let end = checked_value_end(text.as_bytes(), at, depth, &mut Notes::default())?;
    Some((serde_json::from_str(&text[at..end]).ok()?, end))
}

/// The body down to `path`, with what is there put in `found`; the whole
/// input must be that one value.
fn walk<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    path: &[String],
) -> Result<(Value, Found<'de>), serde_json::Error> {
    let mut found = Found::Missing;
    let body = Walk {
        path,
        found: &mut found,
    }
    .deserialize(&mut *de)?;
    de.end()?;
    Ok((body, found))
}

/// Adds a member of an object on the way to the records. The records' key
/// met `again`, or any key of such an object met twice, leaves it unclear
/// which records (or which next cursor) the page holds: strict parsers
/// refuse the page, lenient ones keep the last value, and serde_json's
/// `Value` silently did.
fn insert_member(
    out: &mut Map<String, Value>,
    key: String,
    value: Value,
    again: bool,
    found: &mut Found<'_>,
) {
    if again || out.contains_key(&key) {
        *found = Found::Ambiguous(key.clone());
    }
    out.insert(key, value);
}

/// A record's text and what the checked scan noticed about it.
#[derive(Debug, PartialEq)]
struct Item<'de> {
    text: &'de str,
    notes: Notes,
}

impl<'de> Item<'de> {
    /// The text to keep for this record, by the rule every source keeps raw
    /// records by: one line (compacted when it has whitespace between its
    /// tokens: pretty-printed pages, `\r` inside a line), and only if strict
    /// parsers accept it; otherwise what they refuse in it.
    fn kept(&self) -> Result<Cow<'de, str>, &'static str> {
        if let Some(problem) = self.notes.not_strict {
            return Err(problem);
        }
        Ok(if self.notes.spaced {
            Cow::Owned(compact(self.text))
        } else {
            Cow::Borrowed(self.text)
        })
    }

    /// An item serde_json validated: the checked scan says what it is
    /// like; past the scan's nesting limit, serde_json's `Value` judges
    /// strictness and the text is compacted whatever it looks like.
    fn validated(text: &'de str) -> Item<'de> {
        let mut notes = Notes::default();
        if checked_value_end(text.as_bytes(), 0, 0, &mut notes).is_none() {
            notes = Notes {
                spaced: true,
                not_strict: serde_json::from_str::<Value>(text)
                    .err()
                    .map(|_| "a value serde_json cannot read (nested too deep, or out of range)"),
            };
        }
        Item { text, notes }
    }
}

/// What was at the records path.
#[derive(Debug, PartialEq)]
enum Found<'de> {
    Missing,
    Null,
    /// Each record's text, within the page.
    Many(Vec<Item<'de>>),
    /// A single object is one record; rare enough to parse.
    One(Value),
    Other(Value),
    /// The key named here appears twice on the way to the records.
    Ambiguous(String),
}

/// Builds the body as a `Value` down to the records path, where [`Records`]
/// takes over.
struct Walk<'a, 'de> {
    path: &'a [String],
    found: &'a mut Found<'de>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.path.is_empty() {
            *self.found = deserializer.deserialize_any(Records)?;
            return Ok(Value::Null);
        }
        deserializer.deserialize_any(self)
    }
}

/// Scalars become the `Value`s they are; shared by the visitors below.
macro_rules! scalars_as_values {
    ($wrap:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(v.to_string())))
        }
    };
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalars_as_values!(std::convert::identity);

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        // The path only descends through objects (array indexes take the
        // parsed path), so an array on the way holds no records.
        Value::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some((segment, rest)) = self.path.split_first() else {
            return Value::deserialize(MapAccessDeserializer::new(map));
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let again = key == *segment && !matches!(self.found, Found::Missing);
            let value = if key == *segment && !again {
                map.next_value_seed(Walk {
                    path: rest,
                    found: &mut *self.found,
                })?
            } else {
                map.next_value::<Value>()?
            };
            insert_member(&mut out, key, value, again, self.found);
        }
        Ok(Value::Object(out))
    }
}

/// The value at the records path.
struct Records;

impl<'de> Visitor<'de> for Records {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("records (an array or object)")
    }

    scalars_as_values!(Found::Other);

    fn visit_unit<E: de::Error>(self) -> Result<Found<'de>, E> {
        Ok(Found::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1024));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            // `null` entries are no records, as on the parsed path.
            if item.get() != "null" {
                items.push(Item::validated(item.get()));
            }
        }
        Ok(Found::Many(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Found<'de>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Found::One)
    }
}

/// The top-level `fields` of a record whose text was already validated
/// (by the checked scan or serde_json), read without building the rest and stopping once all were found (ids
/// come first in most APIs, so usually after one member).
///
/// Because the text is known to be valid JSON, finding where each member
/// ends needs only quotes, backslashes and brackets, so this is a byte scan
/// rather than a parser: a parser crate would validate the text a second
/// time (serde_json, jiter, sonic-rs' checked iterators), which was most of
/// this pass's cost, or needs `unsafe` (sonic-rs' unchecked ones).
fn project(record: &str, fields: &[&'static str]) -> Result<Projected, serde_json::Error> {
    let mut found = Projected::new();
    let text = record.as_bytes();
    if fields.is_empty() || text.first() != Some(&b'{') {
        return Ok(found);
    }
    let mut at = 1;
    loop {
        at = skip_whitespace(text, at);
        if text.get(at) != Some(&b'"') {
            // `}`: the end of the object.
            return Ok(found);
        }
        let key_end = string_end(text, at);
        let value_start = skip_whitespace(text, skip_whitespace(text, key_end) + 1);
        let value_end = value_end(text, value_start);
        let key = &record[at..key_end];
        let wanted = if key.contains('\\') {
            let key: String = serde_json::from_str(key)?;
            fields.iter().find(|f| **f == key)
        } else {
            let name = &key[1..key.len() - 1];
            fields.iter().find(|f| **f == name)
        };
        if let Some(&name) = wanted {
            if !found.iter().any(|(n, _)| *n == name) {
                found.push((name, member_value(&record[value_start..value_end])?));
                if found.len() == fields.len() {
                    return Ok(found);
                }
            }
        }
        // `,` or `}`
        at = skip_whitespace(text, value_end);
        if text.get(at) != Some(&b',') {
            return Ok(found);
        }
        at += 1;
    }
}

/// A member's validated value text as a `Value`: ids and plain strings
/// directly, anything else through serde_json (so `-0`, floats and escapes
/// come out exactly as a parse gives them).
fn member_value(text: &str) -> Result<Value, serde_json::Error> {
    let bytes = text.as_bytes();
    if bytes.len() <= 18 && bytes.iter().all(u8::is_ascii_digit) {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && !bytes.contains(&b'\\') {
        return Ok(Value::String(text[1..text.len() - 1].to_string()));
    }
    serde_json::from_str(text)
}

/// Why a source's raw JSON text cannot be kept as a record.
#[derive(Debug)]
pub(crate) enum TextProblem {
    /// Not one JSON value: serde_json's error.
    Invalid(serde_json::Error),
    /// Valid, but strict parsers refuse it: the message to report.
    NotStrict(String),
}

fn not_strict_message(problem: &str) -> String {
    format!("the record holds {problem}, which strict JSON parsers refuse")
}

/// One JSON value's text from outside a page (an NDJSON line, a Kafka
/// message), checked and kept by the same rule as a page's records
/// ([`Item::kept`]): one line, and only what strict parsers accept.
/// Whitespace around the value is dropped.
pub(crate) fn record_text(text: &str) -> Result<Cow<'_, str>, TextProblem> {
    let bytes = text.as_bytes();
    let start = skip_whitespace(bytes, 0);
    let mut notes = Notes::default();
    let item = match checked_value_end(bytes, start, 0, &mut notes) {
        Some(end) if skip_whitespace(bytes, end) == bytes.len() => Item {
            text: &text[start..end],
            notes,
        },
        // Not one the scan vouches for: serde_json's verdict stands.
        _ => {
            serde_json::from_str::<IgnoredAny>(text).map_err(TextProblem::Invalid)?;
            Item::validated(text.trim_matches([' ', '\t', '\n', '\r']))
        }
    };
    item.kept()
        .map_err(|problem| TextProblem::NotStrict(not_strict_message(problem)))
}

/// The top-level `fields` of a record text [`record_text`] kept, as an
/// object (empty when none are wanted or it is no object).
pub(crate) fn project_kept(
    text: &str,
    fields: &[&'static str],
) -> Result<Value, serde_json::Error> {
    Ok(Value::Object(
        project(text, fields)?
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    ))
}

/// Field names a stream projects raw records on, as [`project_kept`] takes them.
pub(crate) fn field_names(names: &[String]) -> Vec<&'static str> {
    names.iter().map(|n| intern(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: &str, path: &[&str], fields: &[&str]) -> Result<RawPage, RawPageError> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let fields: Vec<&'static str> = fields.iter().map(|s| intern(s)).collect();
        read_page(&Bytes::copy_from_slice(body.as_bytes()), &path, &fields)
    }

    fn texts(page: &RawPage) -> Vec<String> {
        page.records
            .iter()
            .map(PageRecord::to_json_string)
            .collect()
    }

    #[test]
    fn records_stay_text_and_the_rest_of_the_body_is_parsed() {
        let body = r#"{"meta": {"next": "c2", "total": 3}, "data": {"items": [{"id": 1, "n": {"x": "y"}}, null, {"n": 2, "id": "7\u0041"}]}, "after": true}"#;
        let page = read(body, &["data", "items"], &["id"]).unwrap();
        assert_eq!(page.raw_count, 2);
        // Written compact: one record, one line, whatever the page's layout.
        assert_eq!(
            texts(&page),
            [r#"{"id":1,"n":{"x":"y"}}"#, r#"{"n":2,"id":"7\u0041"}"#]
        );
        assert_eq!(page.records[0].get("id"), Some(&json!(1)));
        assert_eq!(page.records[1].get("id"), Some(&json!("7A")));
        assert_eq!(
            page.records[0].get("n"),
            None,
            "only asked-for fields are read"
        );
        assert_eq!(
            *page.records[0].to_value(),
            json!({"id": 1, "n": {"x": "y"}})
        );
        assert_eq!(
            page.body,
            json!({"meta": {"next": "c2", "total": 3}, "data": {"items": null}, "after": true})
        );
    }

    /// The byte scan must read exactly what a parser reads, whatever the
    /// members around the wanted ones hold.
    #[test]
    fn projection_matches_a_full_parse() {
        let records = [
            r#"{"id":1,"name":"x"}"#,
            r#"{ "name" : "a \"quoted\" }{][ name" , "id" : -12.5e3 , "n" : null }"#,
            r#"{"nested":{"id":[1,{"id":"inner"}],"s":"]}"},"id":"outer","meta":{"updated":"2026-01-01"}}"#,
            r#"{"\u0069d":7,"x":true}"#,
            r#"{"a":"back\\","id":[],"meta":{}}"#,
            "{\n\t\"meta\":\r\n{\"updated\":false},\n\"id\":{\"k\":[\"}\"]}\n}",
            r#"{"x":1}"#,
            r#"{}"#,
            r#"{"id":"é ✓","meta":false}"#,
            r#"{"id":-0,"meta":12345678901234567890}"#,
            r#"{"id":99999999999999999999,"meta":1.50}"#,
            r#"{"id":"tab\tx","meta":"\u00e9"}"#,
        ];
        let fields = vec![intern("id"), intern("meta")];
        for text in records {
            let projected = project(text, &fields).unwrap();
            let parsed: Value = serde_json::from_str(text).unwrap();
            for name in &fields {
                let got = projected.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                assert_eq!(got, parsed.get(name), "{name} in {text}");
            }
        }
        assert!(project("[1,2]", &fields).unwrap().is_empty(), "no object");
    }

    /// The checked scan reads a page exactly as serde_json does (body and
    /// records), and leaves to serde_json every page it rejects.
    #[test]
    fn the_scan_reads_pages_as_serde_json_does() {
        let pages = [
            r#"{"meta": {"next": "c2"}, "data": {"items": [{"id": 1}, null, {"id": "7\u0041"}]}, "after": [1, {"a": 2}]}"#,
            r#"{"data": {"items": {"id": 5}}, "x": 1}"#,
            r#"{"data": {"items": null}}"#,
            r#"{"data": {"items": 42}}"#,
            r#"{"data": {"items": "s"}}"#,
            r#"{"data": [1, 2], "other": {}}"#,
            r#"{"d\u0061ta": {"items": [{"n": -0.5e3}]}, "data": {"items": [{"n": 2}]}}"#,
            r#"{"data": {"items": [{"n": 1}]}, "data": {"items": [{"n": 2}]}}"#,
            r#"{"data": {"items": []}, "total": 12345678901234567890}"#,
            r#" [ {"id": 1} , {"id": 2} ] "#,
            r#"{}"#,
            r#"[]"#,
            r#"{"data": {}}"#,
        ];
        let paths: [&[String]; 2] = [&["data".into(), "items".into()], &[]];
        let mut read_by_scan = 0;
        for text in pages
            .iter()
            .map(|p| p.to_string())
            .chain(crate::http::json_scan::mutations(&pages, 20_000))
        {
            for path in paths {
                let serde = walk(&mut serde_json::Deserializer::from_str(&text), path);
                match scan_page(&text, path) {
                    Some(scanned) => {
                        read_by_scan += 1;
                        assert_eq!(Some(&scanned), serde.as_ref().ok(), "{text}");
                    }
                    None => assert!(serde.is_err(), "the scan left {text} to serde_json"),
                }
            }
        }
        assert!(read_by_scan > 4_000, "{read_by_scan}");
    }

    #[test]
    fn projected_fields_answer_dotted_paths() {
        let page = read(
            r#"{"data":[{"id":3,"meta":{"updated":"t1","tags":["a","b"]}}]}"#,
            &["data"],
            &["id", "meta"],
        )
        .unwrap();
        let record = &page.records[0];
        assert_eq!(record.get("id"), Some(&json!(3)));
        assert_eq!(record.get("meta.updated"), Some(&json!("t1")));
        assert_eq!(record.get("meta.tags.1"), Some(&json!("b")));
        assert_eq!(record.get("meta.missing"), None);
        assert_eq!(record.get("other"), None);
    }

    #[test]
    fn whole_body_single_object_null_and_missing() {
        let page = read(r#"[{"id":1},{"id":2}]"#, &[], &["id"]).unwrap();
        assert_eq!(texts(&page), [r#"{"id":1}"#, r#"{"id":2}"#]);
        let page = read(r#"{"data": {"id": 5}}"#, &["data"], &["id"]).unwrap();
        assert_eq!(page.raw_count, 1);
        assert_eq!(page.records[0].get("id"), Some(&json!(5)));
        let page = read(r#"{"data": []}"#, &["data"], &[]).unwrap();
        assert_eq!((page.raw_count, page.records.len()), (0, 0));
        // Null or nothing where the records should be is no page.
        for body in [r#"{"data": null}"#, r#"{"other": [1]}"#] {
            assert!(
                matches!(
                    read(body, &["data"], &[]),
                    Err(RawPageError::NotRecords { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn a_records_key_met_twice_makes_the_page_ambiguous() {
        for body in [
            r#"{"data": [{"id": 1}], "data": []}"#,
            r#"{"data": [], "d\u0061ta": [{"id": 1}]}"#,
            r#"{"meta": {"next": "a"}, "data": [], "meta": {"next": "b"}}"#,
            r#"{"data": 5, "data": [{"id": 1}]}"#,
        ] {
            let scanned = read(body, &["data"], &["id"]);
            assert!(
                matches!(&scanned, Err(RawPageError::Ambiguous { .. })),
                "{body}: {scanned:?}"
            );
        }
        // serde_json's reading (a page the scan leaves to it) agrees.
        let nested = format!("{}{}", "[".repeat(125), "]".repeat(125));
        let deep = format!(r#"{{"x": {nested}, "data": [], "data": [1]}}"#);
        assert!(matches!(
            read(&deep, &["data"], &[]),
            Err(RawPageError::Ambiguous { .. })
        ));
        assert!(read(r#"{"data": [{"id": 1, "id": 2}]}"#, &["data"], &[]).is_ok());
    }

    #[test]
    fn record_texts_outside_pages_follow_the_same_rule() {
        let kept = |t: &str| record_text(t).map(Cow::into_owned);
        assert_eq!(kept(r#"{"a":1}"#).unwrap(), r#"{"a":1}"#);
        assert!(matches!(record_text(r#"{"a":1}"#), Ok(Cow::Borrowed(_))));
        assert_eq!(
            kept(" {\"a\" :\r\n [1, \"x  y\"]}\n").unwrap(),
            r#"{"a":[1,"x  y"]}"#
        );
        assert_eq!(kept("[1, 2]").unwrap(), "[1,2]");
        for (text, what) in [
            (r#"{"a": 1e999}"#, "a number beyond the range of a double"),
            (r#"{"a": "\udc00"}"#, "a lone UTF-16 surrogate escape"),
        ] {
            match record_text(text) {
                Err(TextProblem::NotStrict(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in ["{\"a\":", "{} {}", "", "nul"] {
            assert!(
                matches!(record_text(text), Err(TextProblem::Invalid(_))),
                "{text}"
            );
        }
        // Past the scan's nesting limit: serde_json's verdict, compacted.
        let deep = format!("{}1{}", "[ ".repeat(125), "]".repeat(125));
        assert_eq!(
            kept(&deep).unwrap(),
            format!("{}1{}", "[".repeat(125), "]".repeat(125))
        );
    }

    #[test]
    fn records_strict_parsers_refuse_are_bad_and_positions_pass_them() {
        let body = "{\n  \"data\": [\n    {\"id\": 1, \"v\": 1e999},\n    {\"id\": 2, \"s\": \"ok\"},\n    {\"id\": 3, \"s\": \"\\ud800\"}\n  ]\n}";
        let page = read(body, &["data"], &["id"]).unwrap();
        assert_eq!(texts(&page), [r#"{"id":2,"s":"ok"}"#]);
        assert_eq!(page.raw_count, 3);
        let bad: Vec<_> = page
            .bad_records
            .iter()
            .map(|b| b.raw.text().unwrap())
            .collect();
        assert_eq!(
            bad,
            [r#"{"id": 1, "v": 1e999}"#, r#"{"id": 3, "s": "\ud800"}"#]
        );
        assert_eq!(
            page.last_bad.as_ref().and_then(|r| r.get("id")),
            Some(&json!(3))
        );
    }

    #[test]
    fn plain_listings_keep_records_as_text() {
        let plan = |records: Option<&str>,
                    filter: Option<&str>,
                    parent,
                    fields: &[&str],
                    pages: &[&str]| {
            RawSelection::plan(
                &RecordSelector::new(records, filter).unwrap(),
                parent,
                fields,
                pages,
            )
        };
        assert_eq!(
            plan(
                Some("data.items"),
                None,
                false,
                &["id", "meta.updated", "id"],
                &["meta.next"]
            ),
            Some(RawSelection {
                path: vec!["data".into(), "items".into()],
                fields: vec!["id", "meta"],
            })
        );
        assert!(plan(None, None, false, &["id"], &[]).is_some());
        assert!(
            plan(None, None, false, &["id"], &["next"]).is_none(),
            "the body is the records"
        );
        assert!(plan(Some("data"), None, false, &[], &["data.99.id"]).is_none());
        assert!(plan(Some("data"), None, false, &[], &["$.next"]).is_none());
        assert!(plan(Some("data"), None, false, &["$.id"], &[]).is_none());
        assert!(
            plan(Some("data"), None, true, &[], &[]).is_none(),
            "a parent"
        );
        assert!(plan(Some("data"), Some("@.a == 1"), false, &[], &[]).is_none());
        assert!(plan(Some("$.data[*]"), None, false, &[], &[]).is_none());
        assert!(plan(Some("pages.0.rows"), None, false, &[], &[]).is_none());
    }

    #[test]
    fn bad_pages_are_errors() {
        match read(r#"{"data": 42}"#, &["data"], &[]) {
            Err(RawPageError::NotRecords { at, found }) => {
                assert_eq!(at, "`data`");
                assert_eq!(found, json!(42));
            }
            other => panic!("{other:?}"),
        }
        let truncated = read(r#"{"data": [{"id": 1}, {"id""#, &["data"], &["id"]);
        assert!(matches!(truncated, Err(RawPageError::Json(e)) if e.is_eof()));
        let trailing = read(r#"{"data": []} x"#, &["data"], &[]);
        assert!(matches!(trailing, Err(RawPageError::Json(_))));
        let not_utf8 = read_page(
            &Bytes::from_static(b"{\"data\": [{\"id\": \"\xff\"}]}"),
            &["data".into()],
            &[intern("id")],
        );
        assert!(matches!(not_utf8, Err(RawPageError::Json(e)) if e.is_syntax()));
    }
}
