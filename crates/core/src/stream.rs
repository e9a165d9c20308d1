use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One logical dataset inside a connector, and the unit of progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub name: String,
    /// Fields forming the record key; empty for keyless streams.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The field incremental reads advance on, when there is one.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// JSON Schema of the record values, when the source knows it.
    #[serde(default)]
    pub json_schema: Option<Value>,
}

impl StreamSpec {
    pub fn new(name: impl Into<String>) -> Self {
        StreamSpec {
            name: name.into(),
            primary_key: Vec::new(),
            cursor_field: None,
            json_schema: None,
        }
    }
}

/// Why a record was read, carried into the `_load_mode` metadata field (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadMode {
    /// First pass over existing data.
    #[serde(rename = "INITIAL_LOAD")]
    Initial,
    /// Data that appeared after the initial pass caught up.
    #[serde(rename = "INCREMENTAL_LOAD")]
    Incremental,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Initial => "INITIAL_LOAD",
            LoadMode::Incremental => "INCREMENTAL_LOAD",
        }
    }
}
