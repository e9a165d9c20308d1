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
}

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
}
