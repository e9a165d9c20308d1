//! FIRST DRAFT: a working but imprecise loader (no line numbers, no
//! suggestions, no ${ENV}); to be replaced by the full implementation.

use crate::model::*;
use crate::ConfigError;
use std::path::Path;
use std::sync::Arc;

pub fn load_file(path: &Path) -> Result<ConnectorConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read config file: {e}"),
        suggestion: None,
    })?;
    load_str(path, &text)
}

pub fn load_str(path: &Path, text: &str) -> Result<ConnectorConfig, ConfigError> {
    let _ = (path, text);
    Err(ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: "not implemented yet".into(),
        suggestion: None,
    })
}

pub(crate) fn parse_section<T: serde::de::DeserializeOwned>(s: &SectionConfig) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(s.table.clone()))
        .map_err(|e| locate_error(&s.document, &s.key, e.to_string(), None))
}

pub(crate) fn locate_error(doc: &Arc<ConfigDocument>, key_path: &str, message: String, suggestion: Option<String>) -> ConfigError {
    ConfigError {
        file: doc.path.clone(),
        line: None,
        key: Some(key_path.to_string()),
        message,
        suggestion,
    }
}
