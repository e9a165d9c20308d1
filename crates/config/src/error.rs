use std::fmt;
use std::path::PathBuf;

/// A configuration problem, located as precisely as the document allows.
///
/// Displayed as `FILE:LINE: KEY: MESSAGE (did you mean `X`?)`. An error
/// about the document as a whole (a missing top-level key) reads
/// `FILE: top level: MESSAGE`; only errors about the file itself (it cannot
/// be read) name neither. Never contains a secret value: values that came
/// from `${ENV}` are not quoted back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `source.streams.orders.delimiter`; empty for
    /// the top level of the document.
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
        match (&self.key, self.line) {
            (Some(key), None) if key.is_empty() => f.write_str("top level: ")?,
            (Some(key), _) if !key.is_empty() => write!(f, "{key}: ")?,
            _ => {}
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}
