//! Loading a connector file: TOML → `${ENV}` substitution → typed envelope,
//! with every error located as `FILE:LINE: KEY: MESSAGE`.
//!
//! Values are parsed with `toml` (into `toml::Value`, which serde types from)
//! and errors are located afterwards by re-parsing the kept text with
//! `toml_edit`, which preserves spans. Errors are rare, so paying for a second
//! parse only on the error path keeps the happy path simple and lets a
//! connector locate its own errors long after loading
//! ([`SectionConfig::parse`], [`SectionConfig::error`]).

use crate::model::*;
use crate::ConfigError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tributary_core::secret::Secret;
use tributary_core::Schedule;

/// How `${NAME}` is looked up; injectable so tests need not mutate the
/// process environment (which is `unsafe` and racy across parallel tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads a connector file, looking `${NAME}` up in the process environment.
pub fn load_file(path: &Path) -> Result<ConnectorConfig, ConfigError> {
    load_file_with_env(path, &process_env)
}

/// [`load_file`] with an explicit environment.
pub fn load_file_with_env(path: &Path, env: EnvLookup<'_>) -> Result<ConnectorConfig, ConfigError> {
    let text = read_text(path)?;
    load_str_with_env(path, &text, env)
}

/// The file as UTF-8; a byte that is not is located by line, and by the key
/// being written there.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read config file: {e}"),
        suggestion: None,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // Valid by construction: the prefix `from_utf8` accepted.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        ConfigError {
            file: path.to_path_buf(),
            line: Some(line_at(before, valid)),
            key: Some(key_at(before, valid)),
            message: format!(
                "the file is not valid UTF-8 (byte 0x{:02X}); save it as UTF-8",
                bytes[valid]
            ),
            suggestion: None,
        }
    })
}

/// Loads a connector from text; `path` names the file in errors and its
/// directory is the base of relative paths.
pub fn load_str(path: &Path, text: &str) -> Result<ConnectorConfig, ConfigError> {
    load_str_with_env(path, text, &process_env)
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What a command needs resolved from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Needs {
    /// Everything: the connector will run.
    #[default]
    All,
    /// Only what reaches the state store (`name`, `[state]`, `[runtime]`):
    /// `tributary state` commands work while an unrelated `${API_TOKEN}` is
    /// unset. References elsewhere that cannot be resolved are left as
    /// written, so the source and sink of such a config must not be built.
    State,
}

/// The top-level keys [`Needs::State`] resolves.
const STATE_KEYS: &[&str] = &["name", "topic_prefix", "state", "runtime"];

/// [`load_file`] resolving only what `needs` says.
pub fn load_file_for(path: &Path, needs: Needs) -> Result<ConnectorConfig, ConfigError> {
    let text = read_text(path)?;
    load_str_for(path, &text, &process_env, needs)
}

/// [`load_str`] with an explicit environment.
pub fn load_str_with_env(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<ConnectorConfig, ConfigError> {
    load_str_for(path, text, env, Needs::All)
}

/// [`load_str_with_env`] resolving only what `needs` says.
pub fn load_str_for(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
    needs: Needs,
) -> Result<ConnectorConfig, ConfigError> {
    let mut doc = ConfigDocument {
        path: path.to_path_buf(),
        text: text.to_string(),
        substitutions: Vec::new(),
    };
    let mut root: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        ConfigError {
            file: path.to_path_buf(),
            line: Some(line_at(text, at)),
            key: Some(key_at(text, at)),
            message: toml_message(e.message()),
            suggestion: None,
        }
    })?;

    let base_dir = base_dir_of(path);
    let mut subst = Substituter {
        env,
        base_dir: &base_dir,
        needs,
        subs: Vec::new(),
        notes: Vec::new(),
        path: Vec::new(),
    };
    if let Err((at, message)) = subst.table(&mut root) {
        return Err(located(&doc, &at, message, None));
    }
    let notes = std::mem::take(&mut subst.notes);
    doc.substitutions = subst.subs;
    let doc = Arc::new(doc);

    let envelope: EnvelopeToml = deserialize_at(&doc, &[], toml::Value::Table(root))?;
    let mut config = build(&doc, envelope, base_dir)?;
    config.warnings = notes
        .into_iter()
        .map(|(at, message)| located(&doc, &at, message, None))
        .collect();
    config.warnings.sort_by_key(|w| w.line);
    Ok(config)
}

// ---------------------------------------------------------------------------
// The envelope as written. Private: the public types are the resolved ones.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeToml {
    name: String,
    topic_prefix: Option<String>,
    schedule: Option<ScheduleToml>,
    source: toml::Table,
    sink: toml::Table,
    #[serde(default)]
    state: StateToml,
    #[serde(default)]
    runtime: RuntimeConfig,
    metadata: Option<MetadataConfig>,
    #[serde(default)]
    bad_records: BadRecordsToml,
    #[serde(default)]
    streams: BTreeMap<String, StreamToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StateToml {
    dir: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BadRecordsToml {
    #[serde(default)]
    policy: BadRecordPolicy,
    dead_letter_path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamToml {
    target: Option<String>,
    schedule: Option<ScheduleToml>,
}

const DEFAULT_STATE_DIR: &str = ".tributary/state";
const STATE_URL_SCHEMES: &[&str] = &["kafka", "postgres", "postgresql"];

fn build(
    doc: &Arc<ConfigDocument>,
    env: EnvelopeToml,
    base_dir: PathBuf,
) -> Result<ConnectorConfig, ConfigError> {
    check_name(doc, &env.name)?;
    let topic_prefix = env.topic_prefix.unwrap_or_else(|| env.name.clone());
    let schedule_configured = env.schedule.is_some();
    let schedule = match env.schedule {
        Some(s) => to_schedule(doc, &[key("schedule")], s)?,
        None => Schedule::Once,
    };
    let metadata_configured = env.metadata.is_some();
    let source = section(doc, "source", env.source, &base_dir)?;
    let sink = section(doc, "sink", env.sink, &base_dir)?;
    let state = state(doc, env.state, &base_dir)?;
    check_runtime(doc, &env.runtime)?;
    let bad_records = BadRecordConfig {
        policy: env.bad_records.policy,
        dead_letter_path: match env.bad_records.dead_letter_path {
            Some(p) => crate::model::resolve(&base_dir, &p),
            None => base_dir.join(format!(".tributary/dead_letter/{}.ndjson", env.name)),
        },
    };
    let mut streams = BTreeMap::new();
    for (stream, o) in env.streams {
        let schedule = match o.schedule {
            Some(s) => Some(to_schedule(
                doc,
                &[key("streams"), key(&stream), key("schedule")],
                s,
            )?),
            None => None,
        };
        streams.insert(
            stream,
            StreamOverride {
                target: o.target,
                schedule,
            },
        );
    }
    Ok(ConnectorConfig {
        name: env.name,
        topic_prefix,
        schedule,
        schedule_configured,
        source,
        sink,
        state,
        runtime: env.runtime,
        metadata: env.metadata.unwrap_or_default(),
        metadata_configured,
        bad_records,
        streams,
        base_dir,
        document: Arc::clone(doc),
        warnings: Vec::new(),
    })
}

/// The name becomes a file name and a state key, so anything that could
/// escape a directory or need quoting is refused up front.
fn check_name(doc: &ConfigDocument, name: &str) -> Result<(), ConfigError> {
    let valid_chars = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid_chars && name.chars().any(|c| c != '.') {
        return Ok(());
    }
    Err(located(
        doc,
        &[key("name")],
        format!("invalid connector name `{name}`: use letters, digits, `_`, `.` and `-` only (it names files and state keys)"),
        None,
    ))
}

fn section(
    doc: &Arc<ConfigDocument>,
    name: &str,
    mut table: toml::Table,
    base_dir: &Path,
) -> Result<SectionConfig, ConfigError> {
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
        Some(toml::Value::String(_)) => {
            return Err(located(
                doc,
                &[key(name), key("type")],
                "must not be empty".into(),
                None,
            ));
        }
        Some(other) => {
            let msg = format!("invalid type: {}, expected a string", other.type_str());
            return Err(located(doc, &[key(name), key("type")], msg, None));
        }
        None => {
            return Err(located(
                doc,
                &[key(name)],
                "missing key `type`".into(),
                None,
            ))
        }
    };
    Ok(SectionConfig {
        kind,
        key: name.to_string(),
        table,
        base_dir: base_dir.to_path_buf(),
        document: Arc::clone(doc),
    })
}

fn state(doc: &ConfigDocument, s: StateToml, base_dir: &Path) -> Result<StateConfig, ConfigError> {
    match (s.dir, s.url) {
        (Some(_), Some(_)) => Err(located(
            doc,
            &[key("state"), key("url")],
            "set either `dir` (embedded store) or `url`, not both".into(),
            None,
        )),
        (Some(dir), None) => Ok(StateConfig::Embedded {
            dir: crate::model::resolve(base_dir, &dir),
        }),
        (None, None) => Ok(StateConfig::Embedded {
            dir: base_dir.join(DEFAULT_STATE_DIR),
        }),
        (None, Some(url)) => {
            let at = [key("state"), key("url")];
            let Some((scheme, rest)) = url.split_once("://") else {
                // The URL may carry a password from ${ENV}: don't quote it.
                let msg = "expected a URL such as `kafka://host:9092/topic`, `postgres://host/db` or `file:///dir`";
                return Err(located(doc, &at, msg.into(), None));
            };
            if scheme.eq_ignore_ascii_case("file") {
                if rest.is_empty() {
                    return Err(located(
                        doc,
                        &at,
                        "`file://` URL without a directory".into(),
                        None,
                    ));
                }
                return Ok(StateConfig::Embedded {
                    dir: crate::model::resolve(base_dir, Path::new(rest)),
                });
            }
            if STATE_URL_SCHEMES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
            {
                return Ok(StateConfig::Url(url));
            }
            let mut all = STATE_URL_SCHEMES.to_vec();
            all.push("file");
            let msg = format!(
                "unsupported state URL scheme `{scheme}`; use `file`, `kafka` or `postgres`"
            );
            Err(located(doc, &at, msg, did_you_mean(scheme, &all)))
        }
    }
}

/// The largest batch a source may be asked for, in `[runtime]` or a stream.
pub const MAX_BATCH_SIZE: usize = 1_000_000;

/// The documented range of each runtime count and wait. Zero sizes would make
/// a bounded channel panic or a poll loop spin, huge ones allocate or wait
/// for ever, so they are refused here, where the error can still name the
/// line.
pub const RUNTIME_COUNT_RANGES: &[(&str, usize, usize)] = &[
    ("batch_size", 1, MAX_BATCH_SIZE),
    ("channel_capacity", 1, 10_000),
    ("flush_records", 1, 100_000_000),
];

/// The longest retry wait a config may ask for: a stream that should wait
/// longer than a day between attempts is down, and a wait that long only
/// hides it.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(86_400);

fn check_runtime(doc: &ConfigDocument, r: &RuntimeConfig) -> Result<(), ConfigError> {
    let counts = [r.batch_size, r.channel_capacity, r.flush_records];
    for (&(field, min, max), value) in RUNTIME_COUNT_RANGES.iter().zip(counts) {
        if !(min..=max).contains(&value) {
            return Err(located(
                doc,
                &[key("runtime"), key(field)],
                format!("{value} is out of range: use {min} to {max}"),
                None,
            ));
        }
    }
    let waits = [
        ("backoff_initial", r.backoff_initial),
        ("backoff_max", r.backoff_max),
        ("max_retry_after", r.max_retry_after),
    ];
    for (field, value) in waits {
        if value > MAX_RETRY_WAIT {
            return Err(located(
                doc,
                &[key("runtime"), key(field)],
                "too long for a retry wait: at most 1 day (`24h`, `P1D`)".into(),
                None,
            ));
        }
    }
    if r.backoff_initial > r.backoff_max {
        return Err(located(
            doc,
            &[key("runtime"), key("backoff_initial")],
            "must not exceed `backoff_max`".into(),
            None,
        ));
    }
    Ok(())
}

fn to_schedule(doc: &ConfigDocument, at: &[Seg], s: ScheduleToml) -> Result<Schedule, ConfigError> {
    let shown = display_path(at);
    // The line of the offending inner key, the key path of the schedule:
    // `[schedule]` may span lines while the message is about the whole value.
    let err = |inner: Option<&str>, message: String| {
        let mut segs = at.to_vec();
        segs.extend(inner.map(key));
        // Masked for the inner key, where any `${ENV}` value would be.
        let mut e = located(doc, &segs, message, None);
        e.key = Some(shown.clone());
        e
    };
    match (s.interval, s.cron) {
        (Some(_), Some(_)) => Err(err(
            None,
            "set exactly one of `interval` or `cron`, not both".into(),
        )),
        (None, None) => Err(err(
            None,
            "set one of `interval` (e.g. \"30s\") or `cron`".into(),
        )),
        (Some(every), None) => {
            if s.timezone.is_some() {
                return Err(err(
                    Some("timezone"),
                    "`timezone` applies only to `cron` schedules".into(),
                ));
            }
            if every == Duration::ZERO {
                return Err(err(
                    Some("interval"),
                    "interval must be greater than zero".into(),
                ));
            }
            Ok(Schedule::Interval(every))
        }
        (None, Some(expr)) => {
            let tz = s.timezone.as_deref().unwrap_or("UTC");
            Schedule::cron(&expr, tz).map_err(|e| {
                let inner = match e {
                    tributary_core::schedule::ScheduleError::TimeZone { .. } => "timezone",
                    _ => "cron",
                };
                err(Some(inner), e.to_string())
            })
        }
    }
}

fn base_dir_of(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new(""));
    let abs = if parent.is_absolute() {
        parent.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) if parent.as_os_str().is_empty() => cwd,
            Ok(cwd) => cwd.join(parent),
            Err(_) => parent.to_path_buf(),
        }
    };
    abs.canonicalize().unwrap_or(abs)
}

// ---------------------------------------------------------------------------
// ${ENV} substitution, on parsed values so a value can never change syntax.

type SubstError = (Vec<Seg>, String);

/// Walks the parsed document replacing references in strings:
///
/// - `${NAME}`: the environment variable; an error when unset.
/// - `${NAME:-default}`: the variable, or `default` when it is unset or
///   empty (as in a shell).
/// - `${file:PATH}`: the content of a file (Docker and Kubernetes secrets),
///   one trailing newline trimmed; relative paths start at the config's
///   directory.
/// - `$${` is a literal `${`; any other `$` is kept as is, with a warning
///   when it looks like a forgotten `${NAME}`.
///
/// Values from the environment and from files are registered as secrets
/// (redacted everywhere); defaults are written in the file and are not.
struct Substituter<'a> {
    env: EnvLookup<'a>,
    base_dir: &'a Path,
    needs: Needs,
    subs: Vec<Substitution>,
    /// Warnings: (key path, message).
    notes: Vec<(Vec<Seg>, String)>,
    path: Vec<Seg>,
}

impl Substituter<'_> {
    fn table(&mut self, table: &mut toml::Table) -> Result<(), SubstError> {
        for (k, v) in table.iter_mut() {
            self.path.push(key(k));
            let r = self.value(v);
            self.path.pop();
            r?;
        }
        Ok(())
    }

    fn value(&mut self, value: &mut toml::Value) -> Result<(), SubstError> {
        match value {
            toml::Value::String(s) if s.contains('$') => match self.expand(s) {
                Ok(expanded) => *s = expanded,
                Err(_) if !self.needed() => {}
                Err(m) => return Err((self.path.clone(), m)),
            },
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.path.push(Seg::Index(i));
                    let r = self.value(item);
                    self.path.pop();
                    r?;
                }
            }
            toml::Value::Table(t) => self.table(t)?,
            _ => {}
        }
        Ok(())
    }

    /// Whether the key being walked must resolve for this command.
    fn needed(&self) -> bool {
        match (self.needs, self.path.first()) {
            (Needs::All, _) => true,
            (Needs::State, Some(Seg::Key(k))) => STATE_KEYS.contains(&k.as_str()),
            (Needs::State, _) => true,
        }
    }

    fn expand(&mut self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut found = Vec::new();
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    return Err("unterminated `${` (write `$${` for a literal `${`)".into());
                };
                let (value, secret) = self.reference(&after[..end])?;
                out.push_str(&value);
                if let Some(name) = secret {
                    found.push((name, value));
                }
                rest = &after[end + 1..];
            } else {
                let name_len = tail[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len() - 1);
                let name = &tail[1..1 + name_len];
                if self.looks_like_reference(s, name) {
                    self.notes.push((
                        self.path.clone(),
                        format!(
                            "`${name}` is taken literally; write `${{{name}}}` to use the environment variable {name}"
                        ),
                    ));
                }
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        let shown = display_path(&self.path);
        for (variable, v) in found {
            self.subs.push(Substitution {
                key: shown.clone(),
                variable,
                // Registers the value (a URL's password only) with
                // the process-wide redactor.
                value: Secret::credentials_of(v),
            });
        }
        Ok(out)
    }

    /// A bare `$NAME` is most likely a forgotten `${NAME}` when it is the
    /// whole value or the variable exists; a `$` inside a literal password
    /// usually is neither, and the warning must not quote such a value.
    fn looks_like_reference(&self, whole: &str, name: &str) -> bool {
        let shaped = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        shaped && (whole.trim() == format!("${name}") || (self.env)(name).is_some())
    }

    /// The value of the reference inside `${...}`, and the name to record
    /// it under when it is secret (from the environment or a file).
    fn reference(&self, inner: &str) -> Result<(String, Option<String>), String> {
        if let Some(file) = inner.strip_prefix("file:") {
            let file = file.trim();
            if file.is_empty() {
                return Err(
                    "`${file:}` needs a path, e.g. `${file:/run/secrets/api_token}`".into(),
                );
            }
            let path = crate::model::resolve(self.base_dir, Path::new(file));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
            let text = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text)
                .to_string();
            return Ok((text, Some(format!("file:{file}"))));
        }
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "invalid environment variable name `{name}` in `${{...}}`: use letters, digits and `_`, `${{NAME:-default}}` or `${{file:PATH}}` (write `$${{` for a literal `${{`)"
            ));
        }
        match ((self.env)(name), default) {
            (Some(v), Some(d)) if v.is_empty() => Ok((d.to_string(), None)),
            (Some(v), _) => Ok((v, Some(name.to_string()))),
            (None, Some(d)) => Ok((d.to_string(), None)),
            (None, None) => Err(format!("environment variable {name} is not set")),
        }
    }
}

// ---------------------------------------------------------------------------
// Typing raw tables with located errors.

pub(crate) fn parse_section<T: DeserializeOwned>(s: &SectionConfig) -> Result<T, ConfigError> {
    deserialize_at(
        &s.document,
        &[key(&s.key)],
        toml::Value::Table(s.table.clone()),
    )
}

fn deserialize_at<T: DeserializeOwned>(
    doc: &ConfigDocument,
    prefix: &[Seg],
    value: toml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut segs = prefix.to_vec();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key: k } => segs.push(key(k)),
                serde_path_to_error::Segment::Enum { variant } => segs.push(key(variant)),
                serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                // Buffered (untagged, flattened) content loses its path:
                // the ancestor known so far is the best location left.
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        serde_error(doc, &segs, e.into_inner().message())
    })
}

/// Rewrites serde's wording into the config's (`key` rather than `field`)
/// and turns its "expected one of" list into a single suggestion.
fn serde_error(doc: &ConfigDocument, at: &[Seg], message: &str) -> ConfigError {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let quoted = backticked(rest);
        if let Some((field, candidates)) = quoted.split_first() {
            let message = format!("unknown key `{field}`");
            return located(doc, at, message, did_you_mean(field, candidates));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let quoted = backticked(rest);
        if let Some((variant, candidates)) = quoted.split_first() {
            return located(
                doc,
                at,
                message.to_string(),
                did_you_mean(variant, candidates),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return located(doc, at, format!("missing key {rest}"), None);
    }
    located(doc, at, plain_words(message), None)
}

/// serde names Rust types (`expected usize`); a config's reader knows TOML
/// values, so those words are replaced by the value's kind (and range).
fn plain_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("usize", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("isize", "a whole number"),
        ("i64", "a whole number"),
        ("i32", "a whole number from -2147483648 to 2147483647"),
        ("i16", "a whole number from -32768 to 32767"),
        ("i8", "a whole number from -128 to 127"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("a sequence", "an array"),
        ("a map", "a table"),
        ("a boolean", "`true` or `false`"),
        ("a character", "a single character"),
    ];
    let Some(pos) = message.rfind("expected ") else {
        return message.to_string();
    };
    let (head, tail) = message.split_at(pos + "expected ".len());
    for (word, plain) in WORDS {
        if tail == *word
            || tail
                .strip_prefix(word)
                .is_some_and(|r| r.starts_with([' ', ',']))
        {
            return format!("{head}{plain}{}", &tail[word.len()..]);
        }
    }
    if let Some(rest) = tail.strip_prefix("struct ") {
        let end = rest.find([' ', ',']).unwrap_or(rest.len());
        return format!("{head}a table{}", &rest[end..]);
    }
    message.to_string()
}

/// The TOML parser's message, in the words of the file's author.
fn toml_message(message: &str) -> String {
    let m = message.trim_end();
    if m.contains("recursion") || m.contains("recurse") {
        return "tables or arrays nested too deeply; flatten the structure".into();
    }
    if m.contains("value was too large") || m.contains("number too large") {
        return "number too large: integers are at most 9223372036854775807".into();
    }
    m.to_string()
}

/// The dotted key being written at `offset`, read from the text as far as a
/// line-oriented reading allows: the last `[table]` header before it, and
/// the `key =` on its own line. Used where the document does not parse, so
/// there is no tree to ask; empty at the top level.
fn key_at(text: &str, offset: usize) -> String {
    let end = offset.min(text.len());
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let header = |line: &str| -> Option<String> {
        let t = line.trim();
        let inner = t.strip_prefix("[[").or_else(|| t.strip_prefix('['))?;
        let close = inner.find(']').unwrap_or(inner.len());
        Some(inner[..close].trim().to_string())
    };
    let current = &text[line_start..line_end];
    if let Some(h) = header(current) {
        return h;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(header)
        .unwrap_or_default();
    let own = current
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.contains(['[', '{', '"', '#']))
        .unwrap_or("");
    match (table.is_empty(), own.is_empty()) {
        (_, true) => table,
        (true, false) => own.to_string(),
        (false, false) => format!("{table}.{own}"),
    }
}

/// The `quoted` parts of serde's messages, in order.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The closest candidate, if any is close enough to be a plausible typo.
/// Jaro-Winkler favours a shared prefix, which is how key typos look
/// (`delimitr`, `batch_sise`); 0.8 keeps unrelated short keys apart.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    let w = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_ascii_lowercase()), *c))
        .filter(|(score, c)| *score >= 0.8 && *c != word)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

// ---------------------------------------------------------------------------
// Locating key paths.

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

pub(crate) fn locate_error(
    doc: &Arc<ConfigDocument>,
    key_path: &str,
    message: String,
    suggestion: Option<String>,
) -> ConfigError {
    error_at_path(doc, key_path, message, suggestion)
}

pub(crate) fn error_at_path(
    doc: &ConfigDocument,
    key_path: &str,
    message: String,
    suggestion: Option<String>,
) -> ConfigError {
    located(doc, &parse_path(key_path), message, suggestion)
}

pub(crate) fn line_of_path(doc: &ConfigDocument, key_path: &str) -> Option<usize> {
    line_of(&doc.text, &parse_path(key_path))
}

/// Builds the error for a path; the single place messages are masked.
fn located(
    doc: &ConfigDocument,
    at: &[Seg],
    message: String,
    suggestion: Option<String>,
) -> ConfigError {
    let shown = display_path(at);
    ConfigError {
        file: doc.path.clone(),
        line: line_of(&doc.text, at),
        message: mask(doc, &shown, message),
        suggestion: suggestion.map(|s| mask(doc, &shown, s)),
        key: Some(shown),
    }
}

/// Masks `${ENV}` values in a message about `key_path`.
///
/// Distinctive values are masked wherever they appear, as the process-wide
/// redactor does. Short or word-like ones would mangle ordinary words
/// (masking every `t` in "invalid type", every `postgres`), so they are
/// masked only where serde and our messages quote the offending value of
/// that very key: `"v"` (Debug-escaped) and `` `v` ``. A whole URL is not
/// masked as such: the redactor masks its password.
fn mask(doc: &ConfigDocument, key_path: &str, mut message: String) -> String {
    for sub in &doc.substitutions {
        let v = sub.value.expose();
        if v.is_empty() {
            continue;
        }
        if tributary_core::secret::is_distinctive(v) {
            message = message.replace(v, "***");
            let escaped = format!("{v:?}");
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != v {
                message = message.replace(escaped, "***");
            }
        } else if sub.key == key_path {
            message = message
                .replace(&format!("{v:?}"), "\"***\"")
                .replace(&format!("`{v}`"), "`***`");
        }
    }
    tributary_core::secret::redact(&message)
}

/// A section's table for `Debug`, with every string that came from `${ENV}`
/// replaced by `***`.
pub(crate) fn masked_table(s: &SectionConfig) -> toml::Table {
    fn walk(v: &mut toml::Value, path: &mut Vec<Seg>, secret_paths: &[&str]) {
        match v {
            toml::Value::String(s) if secret_paths.contains(&display_path(path).as_str()) => {
                *s = "***".into();
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    walk(item, path, secret_paths);
                    path.pop();
                }
            }
            toml::Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    path.push(key(k));
                    walk(item, path, secret_paths);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let secret_paths: Vec<&str> = s
        .document
        .substitutions
        .iter()
        .map(|x| x.key.as_str())
        .collect();
    let mut v = toml::Value::Table(s.table.clone());
    if !secret_paths.is_empty() {
        walk(&mut v, &mut vec![key(&s.key)], &secret_paths);
    }
    match v {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    }
}

/// One key as [`display_path`] writes it (quoted unless bare).
pub(crate) fn quoted_key(k: &str) -> String {
    display_path(&[key(k)])
}

/// The text with the `key = value` at `key_path` replaced by spaces (and a
/// comma that separated it from an inline-table neighbour), so the rest of
/// the file parses again with every line where it was: how `check` goes on
/// after an error to report the next one. `None` when the key is not a
/// plain `key = value` of the text (a table, a missing key, a value inside
/// an array), where going on could only report follow-on errors.
pub fn blank_key(text: &str, key_path: &str) -> Option<String> {
    let segs = parse_path(key_path);
    let (last, parents) = segs.split_last()?;
    let Seg::Key(last) = last else { return None };
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut node = Node::Table(doc.as_table());
    for seg in parents {
        node = match seg {
            Seg::Key(k) => Node::Item(node.table_like()?.get(k)?),
            Seg::Index(i) => node.index(*i)?.0,
        };
    }
    let (k, item) = node.table_like()?.get_key_value(last)?;
    let value = item.as_value()?;
    let mut start = k.span()?.start;
    let mut end = value.span()?.end;
    let bytes = text.as_bytes();
    // A dotted key (`a.b = 1`) starts before the span of its last part.
    while start > 0 && !matches!(bytes[start - 1], b'\n' | b'{' | b',' | b' ' | b'\t') {
        start -= 1;
    }
    // An inline table's separator: the comma after the pair, else before it.
    let mut start_blank = start;
    let after = text[end..].trim_start_matches([' ', '\t']);
    if after.starts_with(',') {
        end = text.len() - after.len() + 1;
    } else {
        let before = text[..start].trim_end_matches([' ', '\t']);
        if before.ends_with(',') {
            start_blank = before.len() - 1;
        }
    }
    let blanked: String = text[start_blank..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    Some(format!("{}{blanked}{}", &text[..start_blank], &text[end..]))
}

/// `a.b[0]."odd key"`: keys that are not bare TOML keys are quoted, so the
/// path reads back unambiguously (see [`parse_path`]).
fn display_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a path written as [`display_path`] writes it. Lenient: anything
/// unparsable ends the path, and locating falls back to the ancestor.
fn parse_path(s: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '.' => {
                chars.next();
            }
            '[' => {
                chars.next();
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match digits.trim().parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => break,
                }
            }
            '"' => {
                chars.next();
                let mut k = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => k.extend(chars.next()),
                        c => k.push(c),
                    }
                }
                segs.push(Seg::Key(k));
            }
            _ => {
                let mut k = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    k.push(c);
                    chars.next();
                }
                segs.push(Seg::Key(k));
            }
        }
    }
    segs
}

/// A node of the span-preserving document: tables hold items, arrays hold
/// values, arrays of tables hold tables.
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn table_like(&self) -> Option<&'a dyn toml_edit::TableLike> {
        match *self {
            Node::Item(i) => i.as_table_like(),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
            Node::Table(t) => Some(t as &dyn toml_edit::TableLike),
        }
    }

    fn index(&self, i: usize) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match *self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => {
                a.get(i).map(|t| (Node::Table(t), t.span()))
            }
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => {
                a.get(i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        }
    }
}

/// The line of the deepest segment of `segs` that exists in the text: the
/// key's own line for keys (so `[source]` for `source`), the value's line
/// for array elements.
fn line_of(text: &str, segs: &[Seg]) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut best: Option<usize> = None;
    for seg in segs {
        let (next, span) = match seg {
            Seg::Key(k) => {
                let Some((k, item)) = node.table_like().and_then(|t| t.get_key_value(k)) else {
                    break;
                };
                (Node::Item(item), k.span().or_else(|| item.span()))
            }
            Seg::Index(i) => match node.index(*i) {
                Some(found) => found,
                None => break,
            },
        };
        if let Some(span) = span {
            best = Some(span.start);
        }
        node = next;
    }
    best.map(|offset| line_at(text, offset))
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
