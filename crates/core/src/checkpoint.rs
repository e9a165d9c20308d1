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
