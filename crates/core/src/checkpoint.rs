use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

/// The JSON state of one stream: alone enough to resume with no gap.
///
/// Opaque to the runtime and state stores; each source defines its own shape
/// and (de)serializes it with [`Checkpoint::from_state`] / [`Checkpoint::to_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checkpoint(pub Value);

impl Checkpoint {
    pub fn from_state<T: Serialize>(state: &T) -> Self {
        // Serializing a plain struct to a Value cannot fail unless a map key is
        // not a string; sources' state types never do that.
        Checkpoint(serde_json::to_value(state).unwrap_or(Value::Null))
    }

    pub fn to_state<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// Why the stream cannot make progress on its own, when its source
    /// said so by writing [`STUCK_REASON`] at the top level of the
    /// checkpoint. A convention rather than a field of the state store so
    /// that the mark is committed with the position it describes, survives
    /// restarts, and reads the same from every backend, the CLI and the
    /// admin server without building the source.
    pub fn stuck_reason(&self) -> Option<&str> {
        self.0.get(STUCK_REASON).and_then(Value::as_str)
    }

    /// Whether `self` and `other` hold the same position, ignoring the
    /// [`ATTEMPT_KEYS`] a source rewrites after every failed attempt.
    /// Progress is a position that moved: a failure that only bumps a retry
    /// counter must neither reset the runtime's retry budget nor make a
    /// stream look fresh (its checkpoint is rewritten, its data is not).
    pub fn same_position(&self, other: &Checkpoint) -> bool {
        match (&self.0, &other.0) {
            (Value::Object(a), Value::Object(b)) => {
                let position = |m: &'_ serde_json::Map<String, Value>| {
                    m.iter()
                        .filter(|(k, _)| !ATTEMPT_KEYS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<std::collections::BTreeMap<_, _>>()
                };
                position(a) == position(b)
            }
            (a, b) => a == b,
        }
    }
}

/// Whether `next` moved the position of `previous` (none yet: any checkpoint does).
pub fn advanced(previous: Option<&Checkpoint>, next: &Checkpoint) -> bool {
    previous.is_none_or(|p| !p.same_position(next))
}

/// The top-level checkpoint key a source sets to mark its stream stuck
/// (DESIGN.md invariant 4: "or marks the stream stuck, visibly, with the
/// reason") and removes once it makes progress again.
pub const STUCK_REASON: &str = "stuck_reason";

/// Top-level checkpoint keys that record attempts rather than a position:
/// the stuck mark, failure counters and the last error, the idempotency
/// attempt and abandoned jobs of async-job sources ([`STUCK_REASON`],
/// `consecutive_failures`, `last_error`, `attempt`, `abandoned_runs`), and
/// the retry count and shrunk sizes of API sources (`retry_count`,
/// `page_size`, `step_seconds`). A source that records a failure writes
/// only these, so the runtime and the state store can tell progress from
/// a retry without knowing the source (see [`Checkpoint::same_position`]).
pub const ATTEMPT_KEYS: &[&str] = &[
    STUCK_REASON,
    "consecutive_failures",
    "last_error",
    "attempt",
    "abandoned_runs",
    "retry_count",
    "page_size",
    "step_seconds",
];

/// What a checkpoint means, as its source reads it: the part of an opaque
/// checkpoint that status pages, `tributary status` and the cursor-lag metric
/// can show without knowing each source's state shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Everything modified before this instant has been read (datetime
    /// cursors); "now" minus this is the stream's cursor lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<DateTime<Utc>>,
    /// The window `[start, end)` the current run reads, while one is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<DateTime<Utc>>,
    /// A short position for people (`byte 1234 of orders.csv`, `id 5000`); no secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// How much of a bounded stream is done, when the source knows its
    /// total (a generator's `total`): the progress line shows a percentage
    /// and an ETA from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// `done` of `total` records of a stream whose size is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct S {
        offset: u64,
    }

    #[test]
    fn round_trips_a_source_state() {
        let c = Checkpoint::from_state(&S { offset: 7 });
        assert_eq!(c.0, serde_json::json!({"offset": 7}));
        assert_eq!(c.to_state::<S>().unwrap(), S { offset: 7 });
        assert!(Checkpoint(serde_json::json!("x")).to_state::<S>().is_err());
    }

    #[test]
    fn attempt_keys_are_not_progress() {
        let a = Checkpoint(serde_json::json!({"next": 5, "retry_count": 0}));
        let retried = Checkpoint(
            serde_json::json!({"next": 5, "retry_count": 3, "stuck_reason": "x", "page_size": 50}),
        );
        let moved = Checkpoint(serde_json::json!({"next": 6, "retry_count": 3}));
        assert!(a.same_position(&retried));
        assert!(!a.same_position(&moved));
        assert!(!advanced(Some(&a), &retried));
        assert!(advanced(Some(&a), &moved));
        assert!(advanced(None, &a));
        assert!(!Checkpoint(serde_json::json!(1)).same_position(&Checkpoint(serde_json::json!(2))));
    }

    #[test]
    fn stuck_reason_is_a_top_level_string() {
        let c = Checkpoint(serde_json::json!({"stuck_reason": "failed 5 times", "a": 1}));
        assert_eq!(c.stuck_reason(), Some("failed 5 times"));
        assert_eq!(Checkpoint(serde_json::json!({"a": 1})).stuck_reason(), None);
        assert_eq!(
            Checkpoint(serde_json::json!({"stuck_reason": null})).stuck_reason(),
            None
        );
    }
}
