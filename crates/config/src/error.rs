use std::fmt;
use std::path::PathBuf;

/// A configuration problem, located as precisely as the document allows.
///
/// Displayed as `FILE:LINE: KEY: MESSAGE (did you mean `X`?)`; the parts that
/// are unknown are left out. Never contains a secret value: values that came
/// from `${ENV}` are not quoted back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `source.streams.orders.delimiter`.
    pub key: Option<String>,
    pub message: String,
    /// The closest valid key or value, for typos.
    pub suggestion: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}
