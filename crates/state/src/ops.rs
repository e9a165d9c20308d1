//! Operations on state that every backend shares, written against
//! [`StateStore`] so the CLI (`tributary state ...`) and the admin server's
//! offsets API give the same answers from the embedded store, Kafka or
//! PostgreSQL: what each stream's status is (ok, running, stuck and why),
//! the before/after diff of a change, and the versioned export format that
//! seed 004's rollback plan ("restore offsets from backup") needs.

use crate::{StateError, StateStore, StoredCheckpoint};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tributary_core::Checkpoint;

/// The `format` field of an export: tells a backup apart from any other JSON.
pub const EXPORT_FORMAT: &str = "tributary-state";
/// The export version this build writes and reads. Bumped on any change a
/// reader of the previous version could misread.
pub const EXPORT_VERSION: u32 = 1;

/// A connector's checkpoints as `state export` writes them and
/// `state import` reads them. Times are kept so a restore is exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateExport {
    pub format: String,
    pub version: u32,
    pub connector: String,
    pub exported_at: DateTime<Utc>,
    pub streams: Vec<StoredCheckpoint>,
}

/// Why a file cannot be imported. Each message says what to do.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    #[error("not a tributary state export: {0}")]
    NotJson(String),
    #[error("not a tributary state export: `format` is `{0}`, expected `{EXPORT_FORMAT}`")]
    WrongFormat(String),
    #[error("state export version {0} is not supported by this tributary (it reads version {EXPORT_VERSION}); export again with this version")]
    UnsupportedVersion(u32),
    #[error("the export is of connector `{found}`, not `{expected}`; import it with the config of `{found}`")]
    OtherConnector { found: String, expected: String },
    #[error("stream `{0}` appears more than once in the export")]
    DuplicateStream(String),
    #[error("stream entry {0} has an empty name")]
    EmptyStream(usize),
}

impl StateExport {
    pub fn new(
        connector: &str,
        exported_at: DateTime<Utc>,
        streams: Vec<StoredCheckpoint>,
    ) -> Self {
        StateExport {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            connector: connector.into(),
            exported_at,
            streams,
        }
    }

    /// Reads and validates an export for `connector`. The version is
    /// checked before the rest of the shape, so a newer file gets the
    /// version message rather than a field error.
    pub fn parse(text: &str, connector: &str) -> Result<StateExport, ImportError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ImportError::NotJson(e.to_string()))?;
        let format = value.get("format").and_then(Value::as_str).unwrap_or("");
        if format != EXPORT_FORMAT {
            return Err(ImportError::WrongFormat(format.to_string()));
        }
        match value.get("version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(EXPORT_VERSION) => {}
            Some(v) => {
                return Err(ImportError::UnsupportedVersion(
                    u32::try_from(v).unwrap_or(u32::MAX),
                ))
            }
            None => return Err(ImportError::NotJson("`version` is missing".into())),
        }
        let export: StateExport =
            serde_json::from_value(value).map_err(|e| ImportError::NotJson(e.to_string()))?;
        if export.connector != connector {
            return Err(ImportError::OtherConnector {
                found: export.connector,
                expected: connector.to_string(),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, s) in export.streams.iter().enumerate() {
            if s.stream.is_empty() {
                return Err(ImportError::EmptyStream(i));
            }
            if !seen.insert(s.stream.as_str()) {
                return Err(ImportError::DuplicateStream(s.stream.clone()));
            }
        }
        Ok(export)
    }
}

/// Reads every checkpoint of a store into an export.
pub async fn export(
    store: &dyn StateStore,
    connector: &str,
    now: DateTime<Utc>,
) -> Result<StateExport, StateError> {
    Ok(StateExport::new(connector, now, store.load_all().await?))
}

/// The stored form of an operator's checkpoint for `stream`: written now;
/// advanced now unless the value is unchanged (so `set` with the same
/// value does not hide a stale stream).
pub fn operator_entry(
    stream: &str,
    checkpoint: Checkpoint,
    previous: Option<&StoredCheckpoint>,
    now: DateTime<Utc>,
) -> StoredCheckpoint {
    let advanced_at = match previous {
        Some(p) if p.checkpoint.same_position(&checkpoint) => p.advanced_at,
        _ => now,
    };
    StoredCheckpoint {
        stream: stream.to_string(),
        checkpoint,
        committed_at: now,
        advanced_at,
    }
}

/// What `state list` says of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamHealth {
    /// Advancing (or no staleness limit set), and not marked.
    Ok,
    /// The connector holds the store right now; the stream is not stuck.
    Running,
    /// Marked stuck by its source, or not advanced for longer than the limit.
    Stuck,
}

/// One stream's row of `state list` / `state stuck`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    pub stream: String,
    pub checkpoint: Checkpoint,
    pub committed_at: DateTime<Utc>,
    pub advanced_at: DateTime<Utc>,
    /// Since `advanced_at`, at the time of the report.
    pub age_seconds: i64,
    pub status: StreamHealth,
    /// Why it is stuck; `None` otherwise.
    pub reason: Option<String>,
    /// Whether the connector is running (it holds the store).
    pub running: bool,
}

/// Classifies a stored checkpoint. A stream is stuck when its source
/// marked it (`stuck_reason` in the checkpoint, see
/// [`Checkpoint::stuck_reason`]) or when it has not advanced for longer than
/// `older_than` (`--older-than`, else `runtime.max_staleness`): seed 004's
/// "`interval_start` ... more than 7 days old".
pub fn assess(
    entry: &StoredCheckpoint,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
    running: bool,
) -> StreamReport {
    let age = now - entry.advanced_at;
    let mut reasons = Vec::new();
    if let Some(marked) = entry.checkpoint.stuck_reason() {
        reasons.push(marked.to_string());
    }
    if let Some(limit) = older_than {
        let limit_c = chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
        if age > limit_c {
            reasons.push(format!(
                "checkpoint has not advanced for {} (limit {})",
                human_age(age.num_seconds()),
                human_age(i64::try_from(limit.as_secs()).unwrap_or(i64::MAX))
            ));
        }
    }
    let (status, reason) = if reasons.is_empty() {
        let s = if running {
            StreamHealth::Running
        } else {
            StreamHealth::Ok
        };
        (s, None)
    } else {
        (StreamHealth::Stuck, Some(reasons.join("; ")))
    };
    StreamReport {
        stream: entry.stream.clone(),
        checkpoint: entry.checkpoint.clone(),
        committed_at: entry.committed_at,
        advanced_at: entry.advanced_at,
        age_seconds: age.num_seconds(),
        status,
        reason,
        running,
    }
}

/// Every stream of a store, assessed.
pub async fn report(
    store: &dyn StateStore,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
    running: bool,
) -> Result<Vec<StreamReport>, StateError> {
    Ok(store
        .load_all()
        .await?
        .iter()
        .map(|e| assess(e, now, older_than, running))
        .collect())
}

/// An age for people: `42s`, `5m07s`, `3h12m`, `8d02h`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// One changed value of a checkpoint, by its JSON path (`a.b`, `files[0]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    /// `None`: the path did not exist before.
    pub before: Option<Value>,
    /// `None`: the path is removed.
    pub after: Option<Value>,
}

/// The leaf-level differences between two checkpoints (`None`: no
/// checkpoint), in path order. Objects are compared key by key; arrays
/// element by element; anything else as a whole.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    if let Some(v) = before {
        flatten("", v, &mut a);
    }
    if let Some(v) = after {
        flatten("", v, &mut b);
    }
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (a.get(p), b.get(p));
            (x != y).then(|| Change {
                path: p.clone(),
                before: x.cloned(),
                after: y.cloned(),
            })
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, child, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), child, out);
            }
        }
        other => {
            let path = if prefix.is_empty() {
                "(checkpoint)"
            } else {
                prefix
            };
            out.insert(path.to_string(), other.clone());
        }
    }
}

/// A diff as text, one line per change:
/// `  interval_start: "2024-01-01T00:00:00Z" -> "2024-11-01T00:00:00Z"`.
pub fn render_diff(stream: &str, changes: &[Change]) -> String {
    let mut out = format!("stream `{stream}`:");
    if changes.is_empty() {
        out.push_str(" no change");
        return out;
    }
    let show = |v: &Option<Value>| match v {
        Some(v) => v.to_string(),
        None => "(absent)".to_string(),
    };
    for c in changes {
        out.push_str(&format!(
            "\n  {}: {} -> {}",
            c.path,
            show(&c.before),
            show(&c.after)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn entry(stream: &str, cp: Value, advanced: i64) -> StoredCheckpoint {
        StoredCheckpoint {
            stream: stream.into(),
            checkpoint: Checkpoint(cp),
            committed_at: at(advanced),
            advanced_at: at(advanced),
        }
    }

    #[test]
    fn diff_lists_changed_added_and_removed_leaves() {
        let before = json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "gone": true});
        let after = json!({"a": 1, "b": {"c": "y", "d": [1, 3]}, "new": null});
        let changes = diff(Some(&before), Some(&after));
        let text = render_diff("s", &changes);
        assert_eq!(
            text,
            "stream `s`:\n  b.c: \"x\" -> \"y\"\n  b.d[1]: 2 -> 3\n  gone: true -> (absent)\n  new: (absent) -> null"
        );
        assert_eq!(
            render_diff("s", &diff(Some(&before), Some(&before))),
            "stream `s`: no change"
        );
        let removed = diff(Some(&json!({"n": 5})), None);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].after, None);
        assert_eq!(diff(None, Some(&json!(7)))[0].path, "(checkpoint)");
    }

    #[test]
    fn stuck_by_mark_or_by_age_running_otherwise() {
        let now = at(8 * 86_400);
        let week = Some(Duration::from_secs(7 * 86_400));
        let fresh = entry("fresh", json!({"n": 1}), 8 * 86_400 - 60);
        let old = entry("old", json!({"n": 1}), 0);
        let marked = entry(
            "marked",
            json!({"stuck_reason": "failed 3 times"}),
            8 * 86_400,
        );
        let r = assess(&fresh, now, week, false);
        assert_eq!(
            (r.status, r.reason, r.age_seconds),
            (StreamHealth::Ok, None, 60)
        );
        assert_eq!(
            assess(&fresh, now, week, true).status,
            StreamHealth::Running
        );
        let r = assess(&old, now, week, true);
        assert_eq!(r.status, StreamHealth::Stuck);
        assert_eq!(
            r.reason.as_deref(),
            Some("checkpoint has not advanced for 8d00h (limit 7d00h)")
        );
        // Without a limit, only the source's mark counts.
        assert_eq!(assess(&old, now, None, false).status, StreamHealth::Ok);
        let r = assess(&marked, now, None, false);
        assert_eq!(
            (r.status, r.reason.as_deref()),
            (StreamHealth::Stuck, Some("failed 3 times"))
        );
    }

    #[test]
    fn exports_are_validated_before_import() {
        let export = StateExport::new("billing", at(0), vec![entry("a", json!({"n": 1}), 0)]);
        let text = serde_json::to_string(&export).unwrap();
        assert_eq!(StateExport::parse(&text, "billing").unwrap(), export);
        assert_eq!(
            StateExport::parse(&text, "other"),
            Err(ImportError::OtherConnector {
                found: "billing".into(),
                expected: "other".into()
            })
        );
        let v2 = text.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            StateExport::parse(&v2, "billing"),
            Err(ImportError::UnsupportedVersion(2))
        );
        assert!(matches!(
            StateExport::parse("{\"streams\": []}", "billing"),
            Err(ImportError::WrongFormat(f)) if f.is_empty()
        ));
        assert!(matches!(
            StateExport::parse("{", "billing"),
            Err(ImportError::NotJson(_))
        ));
        let mut dup = export.clone();
        dup.streams.push(dup.streams[0].clone());
        let text = serde_json::to_string(&dup).unwrap();
        assert_eq!(
            StateExport::parse(&text, "billing"),
            Err(ImportError::DuplicateStream("a".into()))
        );
    }
}
