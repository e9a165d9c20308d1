use tributary_core::ConnectorError;
use tributary_state::StateError;

/// Why a connector stopped. Every variant names the connector and, where
/// there is one, the stream, so a person reading one line knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("connector `{connector}`: {message}")]
    Config { connector: String, message: String },
    #[error("connector `{connector}`, stream `{stream}`: {source}")]
    Source {
        connector: String,
        stream: String,
        source: ConnectorError,
    },
    #[error("connector `{connector}`, stream `{stream}`: gave up after {attempts} consecutive retryable errors; last: {last}")]
    RetriesExhausted {
        connector: String,
        stream: String,
        attempts: u32,
        last: ConnectorError,
    },
    #[error("connector `{connector}`, stream `{stream}`: bad record at {location}: {error} (bad-record policy is `fail`; set [bad_records] policy = \"skip\" or \"dead_letter\" to continue past it)")]
    BadRecord {
        connector: String,
        stream: String,
        location: String,
        error: String,
    },
    /// Several streams failed; each message names its stream.
    #[error("connector `{connector}`: {} streams failed: {}", failures.len(), failures.join("; "))]
    StreamsFailed {
        connector: String,
        failures: Vec<String>,
    },
    #[error("connector `{connector}`: sink: {source}")]
    Sink {
        connector: String,
        source: ConnectorError,
    },
    #[error("connector `{connector}`: dead-letter file {path}: {message}")]
    DeadLetter {
        connector: String,
        path: String,
        message: String,
    },
    /// A bug: a task of the runtime panicked. The connector stops; committed
    /// progress is intact.
    #[error("connector `{connector}`: internal error: {message}")]
    Internal { connector: String, message: String },
    #[error("connector `{connector}`: {source}")]
    State {
        connector: String,
        source: StateError,
    },
}
