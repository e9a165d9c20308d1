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

/// Why a connection failed, in the words a person acts on (refused, DNS,
/// unreachable, timed out, TLS), found in an error's source chain; `None`
/// when nothing there is more specific than the error's own text.
pub fn connect_cause(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("lookup address")
            || text.contains("name or service not known")
            || text.contains("nodename nor servname")
            || text.contains("no such host")
        {
            return Some("the host name does not resolve (DNS)");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let cause = match io.kind() {
                ConnectionRefused => "connection refused: nothing listens on that host and port",
                TimedOut => "timed out: no answer from that host and port",
                HostUnreachable | NetworkUnreachable => "host unreachable: no route to it",
                ConnectionReset | ConnectionAborted => "the server closed the connection",
                _ => "",
            };
            if !cause.is_empty() {
                return Some(cause);
            }
        }
        if text.contains("certificate") || text.contains("handshake") || text.contains("tls") {
            return Some("TLS failed (certificate or protocol)");
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod connect_cause_tests {
    use super::connect_cause;

    #[test]
    fn causes_are_named_in_plain_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            connect_cause(&refused),
            Some("connection refused: nothing listens on that host and port")
        );
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(
            connect_cause(&dns),
            Some("the host name does not resolve (DNS)")
        );
        assert_eq!(connect_cause(&std::io::Error::other("odd")), None);
    }
}
