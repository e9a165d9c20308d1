use std::time::Duration;

/// What the runtime should do about an error, the only question it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Fatal,
    BadRecord,
    Config,
    Aborted,
}

/// Errors from sources and sinks, grouped by what the caller does next
/// (as in Danube's Retryable / Fatal / skip and Kafka Connect's RetriableException).
///
/// Messages must already be free of secrets; the CLI redacts again as a backstop.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Transient (network, 429, 5xx, timeouts): back off and try again.
    #[error("{message}")]
    Retryable {
        message: String,
        /// A server-given wait (e.g. `Retry-After`) that overrides backoff.
        retry_after: Option<Duration>,
    },
    /// Permanent: stop this connector; a person has to act.
    #[error("{message}")]
    Fatal { message: String },
    /// One record cannot be processed; the connector's bad-record policy decides.
    #[error("bad record: {message}")]
    BadRecord { message: String },
    /// The configuration cannot work; nothing will until it is changed.
    #[error("configuration error: {message}")]
    Config { message: String },
    /// The sink threw away everything written since its last commit (an
    /// aborted Kafka transaction): the records are gone, not to be sent
    /// again. The runtime starts the connector's streams over from their
    /// committed checkpoints, so they are read again once, not twice.
    #[error("{message}")]
    Aborted { message: String },
}

impl ConnectorError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ConnectorError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        ConnectorError::Fatal {
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        ConnectorError::Config {
            message: message.into(),
        }
    }

    pub fn bad_record(message: impl Into<String>) -> Self {
        ConnectorError::BadRecord {
            message: message.into(),
        }
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        ConnectorError::Aborted {
            message: message.into(),
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::Retryable { .. } => ErrorClass::Retryable,
            ConnectorError::Fatal { .. } => ErrorClass::Fatal,
            ConnectorError::BadRecord { .. } => ErrorClass::BadRecord,
            ConnectorError::Config { .. } => ErrorClass::Config,
            ConnectorError::Aborted { .. } => ErrorClass::Aborted,
        }
    }

    /// Classifies an I/O error: interruptions and timeouts are worth retrying,
    /// missing files and permissions are not.
    pub fn from_io(context: &str, err: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let message = format!("{context}: {err}");
        match err.kind() {
            Interrupted | TimedOut | WouldBlock | ConnectionReset | ConnectionAborted
            | ConnectionRefused | BrokenPipe | UnexpectedEof => Self::retryable(message),
            _ => Self::fatal(message),
        }
    }
}
