//! A child's stderr in our logs, at the level its own logger gave the line.

/// The level of one stderr line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl StderrLevel {
    /// The level a line names near its start (`2024-01-01 12:00:00 | WARNING | ...`,
    /// `INFO:root:...`, `[ERROR] ...`); `None` when it names none, e.g. a
    /// traceback's frames, which then keep the level of the line before.
    pub fn of(line: &str) -> Option<StderrLevel> {
        let head: String = line.chars().take(80).collect();
        head.split(|c: char| !c.is_ascii_alphabetic())
            .find_map(StderrLevel::named)
    }

    /// The level a protocol message names (`"level": "WARN"` in Airbyte's LOG).
    pub fn named(word: &str) -> Option<StderrLevel> {
        match word {
            "CRITICAL" | "FATAL" | "ERROR" | "EXCEPTION" => Some(StderrLevel::Error),
            "WARNING" | "WARN" => Some(StderrLevel::Warn),
            "INFO" => Some(StderrLevel::Info),
            "DEBUG" | "TRACE" => Some(StderrLevel::Debug),
            _ => None,
        }
    }

    /// Logs `text` from `child` at this level.
    pub fn log(self, child: &str, text: &str) {
        match self {
            StderrLevel::Error => tracing::error!(child, "{text}"),
            StderrLevel::Warn => tracing::warn!(child, "{text}"),
            StderrLevel::Info => tracing::info!(child, "{text}"),
            StderrLevel::Debug => tracing::debug!(child, "{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_the_words_near_the_start() {
        assert_eq!(
            StderrLevel::of("2024-05-01 10:00:00,123 | WARNING  | tap-postgres | slow"),
            Some(StderrLevel::Warn)
        );
        assert_eq!(
            StderrLevel::of("INFO:root:starting"),
            Some(StderrLevel::Info)
        );
        assert_eq!(StderrLevel::of("[ERROR] boom"), Some(StderrLevel::Error));
        assert_eq!(StderrLevel::of("CRITICAL failed"), Some(StderrLevel::Error));
        assert_eq!(StderrLevel::of("  File \"tap.py\", line 3"), None);
        // Words, not substrings: "INFORMATION" is no level.
        assert_eq!(StderrLevel::of("INFORMATION about debugging"), None);
    }
}
