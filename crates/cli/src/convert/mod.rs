//! `tributary convert`: turns a Kafka Connect ChargeOver source connector
//! config into a tributary connector file.
//!
//! The input is Connect REST JSON (`{"name": ..., "config": {...}}`, or the
//! bare config map) or a Java `.properties` file, told apart by content: JSON
//! starts with `{`. Values are trimmed, as Kafka's `ConfigDef` trims them.
//! The output is built with `toml_edit`, so every string is escaped
//! correctly, and it loads with [`tributary_config::load_str`].
//!
//! The password is never copied: the output refers to `${CHARGEOVER_PASSWORD}`
//! and the value is registered with the redactor, so no message can show it.

mod properties;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use toml_edit::{value, Array, DocumentMut, InlineTable, Item, Table};
use tributary_config::ConfigError;
use tributary_core::schedule::{parse_timezone, ScheduleError};
use tributary_core::Schedule;

/// The result: the TOML text, and what the user should know about it
/// (`warning: ...` / `note: ...` lines for stderr).
#[derive(Debug)]
pub struct Converted {
    pub toml: String,
    pub notes: Vec<String>,
}

pub const PASSWORD_ENV: &str = "CHARGEOVER_PASSWORD";
const CONNECTOR_CLASS_SUFFIX: &str = "ChargeOverSourceConnector";
const DEFAULT_NAME: &str = "chargeover";
const DEFAULT_CRON: &str = "0 0 0 * * ?";
const DEFAULT_TIMEZONE: &str = "UTC";
const QUERY_PREFIX: &str = "chargeover.";
const QUERY_SUFFIX: &str = ".query.params";
const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Every property the converter understands, besides `chargeover.{entity}.query.params`.
const KNOWN: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "chargeover.subdomain",
    "chargeover.username",
    "chargeover.password",
    "topic.prefix",
    "poll.interval.ms",
    "batch.size",
    "incremental.schedule.cron",
    "chargeover.timezone",
    "chargeover.incremental.datetime.fields",
    "max.retries",
    "chargeover.entities",
    "chargeover.entity.id.fields",
    "initial.datetime",
];

/// The properties the Kafka Connect connector cannot start without: a
/// misspelling of one is an error, not a warning, since the converted file
/// would fail later for a reason far from the typo.
const REQUIRED: &[&str] = &[
    "chargeover.subdomain",
    "chargeover.username",
    "chargeover.password",
];

/// One input property: its (trimmed) value and, when known, its line.
#[derive(Debug, Clone)]
struct Prop {
    value: String,
    line: Option<usize>,
}

/// The input, whatever its format.
struct Input {
    /// `name` outside the config map (Connect REST JSON), which wins over `name` inside it.
    outer_name: Option<Prop>,
    props: BTreeMap<String, Prop>,
    notes: Vec<String>,
}

/// Converts the bytes of `path`. Errors name the file, the line when known,
/// and the property.
pub fn convert(path: &Path, bytes: &[u8]) -> Result<Converted, ConfigError> {
    let input = if looks_like_json(bytes) {
        read_json(path, bytes)?
    } else {
        read_properties(path, bytes)?
    };
    Converter { path, input }.run()
}

/// JSON when the first character other than whitespace (and a UTF-8 byte
/// order mark) is `{`; a properties file cannot start that way sensibly.
fn looks_like_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn error(path: &Path, line: Option<usize>, key: Option<&str>, message: String) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line,
        key: key.map(str::to_string),
        message,
        suggestion: None,
    }
}

fn read_json(path: &Path, bytes: &[u8]) -> Result<Input, ConfigError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = Some(line_at(bytes, e.valid_up_to()));
        error(path, line, None, "JSON must be UTF-8".into())
    })?;
    let root: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with its own "at line L column C".
        let full = e.to_string();
        let msg = full.rfind(" at line ").map_or(&full[..], |i| &full[..i]);
        let message = format!("invalid JSON (column {}): {msg}", e.column());
        error(path, Some(e.line()), None, message)
    })?;
    let serde_json::Value::Object(root) = root else {
        return Err(error(path, None, None, "expected a JSON object".into()));
    };
    let mut notes = Vec::new();
    let line_of = |key: &str| json_key_line(text, key);
    let (outer_name, map) = match root.get("config") {
        Some(serde_json::Value::Object(config)) => {
            let outer_name = match root.get("name") {
                Some(serde_json::Value::String(s)) => Some(Prop {
                    value: s.trim().to_string(),
                    line: line_of("name"),
                }),
                None | Some(serde_json::Value::Null) => None,
                Some(other) => {
                    let msg = format!("expected a string, found {}", json_kind(other));
                    return Err(error(path, line_of("name"), Some("name"), msg));
                }
            };
            // `tasks` and `type` come with `GET /connectors/{name}`; nothing to convert.
            for key in root.keys() {
                if !matches!(key.as_str(), "name" | "config" | "tasks" | "type") {
                    notes.push(format!(
                        "warning: {}: ignoring unknown top-level field `{key}`",
                        located(path, line_of(key))
                    ));
                }
            }
            (outer_name, config.clone())
        }
        Some(other) => {
            let msg = format!(
                "expected an object of properties, found {}",
                json_kind(other)
            );
            return Err(error(path, line_of("config"), Some("config"), msg));
        }
        None => (None, root),
    };
    let mut props = BTreeMap::new();
    for (key, v) in map {
        let value = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            // Connect treats null as "not set".
            serde_json::Value::Null => continue,
            other => {
                let msg = format!("expected a string, found {}", json_kind(&other));
                return Err(error(path, line_of(&key), Some(&key), msg));
            }
        };
        let line = line_of(&key);
        props.insert(
            key,
            Prop {
                value: value.trim().to_string(),
                line,
            },
        );
    }
    Ok(Input {
        outer_name,
        props,
        notes,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The line of the first `"key":` in the text: good enough to point at a
/// property of a config map (keys are unique in it).
fn json_key_line(text: &str, key: &str) -> Option<usize> {
    let needle = serde_json::to_string(key).ok()?;
    let mut from = 0;
    while let Some(i) = text[from..].find(&needle) {
        let at = from + i;
        let after = text[at + needle.len()..].trim_start();
        if after.starts_with(':') {
            return Some(line_at(text.as_bytes(), at));
        }
        from = at + needle.len();
    }
    None
}

fn line_at(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn read_properties(path: &Path, bytes: &[u8]) -> Result<Input, ConfigError> {
    // `Properties.load(InputStream)` reads ISO-8859-1; UTF-8 is what people
    // write today. UTF-8 when valid, else ISO-8859-1 (every byte a char).
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t).to_string(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    };
    let parsed =
        properties::parse(&text).map_err(|e| error(path, Some(e.line), None, e.message))?;
    let mut props = BTreeMap::new();
    for p in parsed {
        // As in Java, a later duplicate replaces an earlier one.
        props.insert(
            p.key,
            Prop {
                value: p.value.trim().to_string(),
                line: Some(p.line),
            },
        );
    }
    Ok(Input {
        outer_name: None,
        props,
        notes: Vec::new(),
    })
}

/// `FILE:LINE` or `FILE`.
fn located(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

struct Converter<'a> {
    path: &'a Path,
    input: Input,
}

impl Converter<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.input.props.get(key).map(|p| p.value.as_str())
    }

    fn err(&self, key: &str, message: String) -> ConfigError {
        let line = self.input.props.get(key).and_then(|p| p.line);
        error(self.path, line, Some(key), message)
    }

    fn run(mut self) -> Result<Converted, ConfigError> {
        // First, so another connector's config fails on its class rather
        // than on a screenful of unknown keys.
        if let Some(class) = self.get("connector.class") {
            if !class.ends_with(CONNECTOR_CLASS_SUFFIX) {
                return Err(self.err(
                    "connector.class",
                    format!("`{class}` is not supported: only the ChargeOver source connector (`...{CONNECTOR_CLASS_SUFFIX}`) can be converted"),
                ));
            }
        }
        if let Some(p) = self.input.props.get("chargeover.password") {
            // A backstop: nothing below prints it, and now nothing can.
            tributary_core::secret::register(&p.value);
        }
        let entities = self.get("chargeover.entities").map(split_list);
        self.warn_unknown(entities.as_deref().unwrap_or(&[]))?;
        if self.input.props.contains_key("tasks.max") {
            self.input
                .notes
                .push("note: dropped `tasks.max`: tributary runs one task per stream".into());
        }

        let mut doc = DocumentMut::new();
        doc.insert("name", value(self.name()));
        if let Some(prefix) = self.get("topic.prefix") {
            doc.insert("topic_prefix", value(literal(prefix)));
        }
        let cron = self.get("incremental.schedule.cron").map(str::to_string);
        let timezone = self.get("chargeover.timezone").map(str::to_string);
        if let Some(tz) = &timezone {
            parse_timezone(tz).map_err(|e| self.err("chargeover.timezone", e.to_string()))?;
        }
        if cron.is_some() || timezone.is_some() {
            let cron = cron.as_deref().unwrap_or(DEFAULT_CRON);
            let tz = timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE);
            Schedule::cron(cron, tz).map_err(|e| match e {
                ScheduleError::TimeZone { .. } => self.err("chargeover.timezone", e.to_string()),
                ScheduleError::Cron { .. } => self.err("incremental.schedule.cron", e.to_string()),
            })?;
            let mut schedule = InlineTable::new();
            schedule.insert("cron", cron.into());
            schedule.insert("timezone", tz.into());
            doc.insert("schedule", value(schedule));
        }

        let mut source = Table::new();
        source.insert("type", value("chargeover"));
        for (prop, key) in [
            ("chargeover.subdomain", "subdomain"),
            ("chargeover.username", "username"),
        ] {
            if let Some(v) = self.get(prop) {
                source.insert(key, value(literal(v)));
            }
        }
        if self.input.props.contains_key("chargeover.password") {
            source.insert("password", value(format!("${{{PASSWORD_ENV}}}")));
            self.input.notes.push(format!(
                "note: the password was not copied; export {PASSWORD_ENV} before running"
            ));
        }
        if let Some(tz) = timezone {
            source.insert("timezone", value(literal(&tz)));
        }
        if self.get("batch.size").is_some() {
            source.insert("batch_size", value(self.int("batch.size", 1, i64::MAX)?));
        }
        if let Some(list) = &entities {
            let array: Array = list.iter().map(|e| literal(e)).collect();
            source.insert("entities", value(array));
        }
        for (prop, key) in [
            ("chargeover.incremental.datetime.fields", "datetime_fields"),
            ("chargeover.entity.id.fields", "id_fields"),
            ("initial.datetime", "initial_datetime"),
        ] {
            if self.get(prop).is_some() {
                source.insert(key, Item::Table(self.mapping(prop)?));
            }
        }
        let query = self.query_params(entities.as_deref().unwrap_or(&[]));
        if !query.is_empty() {
            source.insert("query_params", Item::Table(section(query)));
        }
        doc.insert("source", Item::Table(with_blank_line(source)));

        // A Kafka Connect source config has no sink (Connect writes to its
        // own cluster), but a tributary connector needs one to load.
        let mut sink = Table::new();
        sink.insert("type", value("stdout"));
        doc.insert("sink", Item::Table(with_blank_line(sink)));
        self.input.notes.push(
            "note: a Kafka Connect config names no sink; wrote `[sink] type = \"stdout\"`: change it to where the records should go".into(),
        );

        let mut runtime = Table::new();
        if self.get("poll.interval.ms").is_some() {
            let ms = self.int("poll.interval.ms", 1, i64::MAX)?;
            runtime.insert("poll_interval", value(millis_to_duration(ms)));
        }
        if self.get("max.retries").is_some() {
            let retries = self.int("max.retries", 0, i64::from(u32::MAX))?;
            runtime.insert("request_retries", value(retries));
            if let Some(mut k) = runtime.key_mut("request_retries") {
                k.leaf_decor_mut().set_prefix(format!(
                    "# max.retries = {retries}: a failing ChargeOver request is retried {retries} time(s)\n\
                     # with backoff; then the entity waits for its next scheduled run and resumes\n\
                     # where it stopped, as Kafka Connect does (the other entities go on). This is\n\
                     # not `max_retries`, which bounds sink and state store retries and then stops\n\
                     # the connector.\n"
                ));
            }
        }
        if !runtime.is_empty() {
            doc.insert("runtime", Item::Table(with_blank_line(runtime)));
        }

        let header = format!(
            "# Converted from {} by `tributary convert`.\n",
            // A comment ends at a newline: keep the file name on one line.
            self.path
                .display()
                .to_string()
                .replace(char::is_control, "?")
        );
        Ok(Converted {
            toml: format!("{header}{doc}"),
            notes: self.input.notes,
        })
    }

    /// The outer JSON `name`, else `name=`, else `chargeover`, made a valid
    /// connector name (it names files and state keys).
    fn name(&mut self) -> String {
        let given = match (&self.input.outer_name, self.input.props.get("name")) {
            (Some(p), _) | (None, Some(p)) if !p.value.is_empty() => p.value.clone(),
            _ => return DEFAULT_NAME.to_string(),
        };
        let mut name: String = given
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if name.chars().all(|c| c == '.') {
            name = DEFAULT_NAME.to_string();
        }
        if name != given {
            self.input.notes.push(format!(
                "note: `{given}` is not a valid connector name (letters, digits, `_`, `.` and `-`); wrote `{name}`"
            ));
        }
        name
    }

    /// Warns about each property nothing reads; refuses a misspelled
    /// required one (its suggestion is required and absent).
    fn warn_unknown(&mut self, entities: &[String]) -> Result<(), ConfigError> {
        let mut candidates: Vec<String> = KNOWN.iter().map(|k| k.to_string()).collect();
        candidates.extend(
            entities
                .iter()
                .map(|e| format!("{QUERY_PREFIX}{e}{QUERY_SUFFIX}")),
        );
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let mut unknown: Vec<(&String, &Prop)> = self
            .input
            .props
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()) && query_entity(k).is_none())
            .collect();
        unknown.sort_by_key(|(k, p)| (p.line.is_none(), p.line, k.as_str()));
        let mut notes = Vec::new();
        for (key, p) in unknown {
            let suggestion = tributary_config::did_you_mean(key, &candidates);
            if let Some(s) = &suggestion {
                if REQUIRED.contains(&s.as_str()) && !self.input.props.contains_key(s) {
                    let mut e = error(
                        self.path,
                        p.line,
                        Some(key),
                        format!("unknown property; the required property `{s}` is missing"),
                    );
                    e.suggestion = suggestion.clone();
                    return Err(e);
                }
            }
            let hint = suggestion
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            notes.push(format!(
                "warning: {}: ignoring unknown property `{key}`{hint}",
                located(self.path, p.line)
            ));
        }
        self.input.notes.extend(notes);
        Ok(())
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        let v = self.get(key).unwrap_or_default();
        match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            Ok(_) if max == i64::MAX => Err(self.err(key, format!("`{v}` must be at least {min}"))),
            Ok(_) => Err(self.err(key, format!("`{v}` must be between {min} and {max}"))),
            Err(_) => Err(self.err(key, format!("`{v}` is not an integer"))),
        }
    }

    /// `entity:value,entity:value`, each item split at its first colon (an
    /// `initial.datetime` value has colons of its own).
    fn mapping(&self, key: &str) -> Result<Table, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut entries = Vec::new();
        for item in split_list(self.get(key).unwrap_or_default()) {
            let malformed = |expected: &str| {
                self.err(
                    key,
                    format!("malformed item `{item}`: expected `{expected}`"),
                )
            };
            let expected = if key == "initial.datetime" {
                "entity:YYYY-MM-DD HH:MM:SS"
            } else {
                "entity:field"
            };
            let Some((entity, v)) = item.split_once(':') else {
                return Err(malformed(expected));
            };
            let (entity, v) = (entity.trim(), v.trim());
            if entity.is_empty() || v.is_empty() {
                return Err(malformed(expected));
            }
            if key == "initial.datetime"
                && chrono::NaiveDateTime::parse_from_str(v, DATETIME_FORMAT).is_err()
            {
                return Err(malformed(expected));
            }
            if !seen.insert(entity.to_string()) {
                return Err(self.err(key, format!("entity `{entity}` is mapped twice")));
            }
            entries.push((entity.to_string(), v.to_string()));
        }
        Ok(section(entries))
    }

    /// `chargeover.{entity}.query.params`, in the order of `chargeover.entities`,
    /// then the others by name.
    fn query_params(&mut self, entities: &[String]) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .input
            .props
            .iter()
            .filter_map(|(k, p)| query_entity(k).map(|e| (e.to_string(), p.value.clone())))
            .collect();
        found.sort_by_key(|(e, _)| {
            let rank = entities.iter().position(|x| x == e).unwrap_or(usize::MAX);
            (rank, e.clone())
        });
        if !entities.is_empty() {
            for (e, _) in &found {
                if !entities.contains(e) {
                    let key = format!("{QUERY_PREFIX}{e}{QUERY_SUFFIX}");
                    let line = self.input.props.get(&key).and_then(|p| p.line);
                    self.input.notes.push(format!(
                        "warning: {}: `{key}`: `{e}` is not in chargeover.entities",
                        located(self.path, line)
                    ));
                }
            }
        }
        found
    }
}

/// The entity of a `chargeover.{entity}.query.params` key.
fn query_entity(key: &str) -> Option<&str> {
    let entity = key.strip_prefix(QUERY_PREFIX)?.strip_suffix(QUERY_SUFFIX)?;
    (!entity.trim().is_empty()).then_some(entity)
}

/// A comma-separated list, items trimmed, empty items dropped.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// Copied text is literal, but the loader expands `${NAME}` in every string:
/// `$${` keeps a `${` in the input a `${`.
fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

fn section(entries: Vec<(String, String)>) -> Table {
    let mut t = Table::new();
    for (k, v) in entries {
        t.insert(&k, value(literal(&v)));
    }
    with_blank_line(t)
}

fn with_blank_line(mut t: Table) -> Table {
    t.decor_mut().set_prefix("\n");
    t
}

/// `60000` → `"60s"`, `1500` → `"1500ms"`.
fn millis_to_duration(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests;
