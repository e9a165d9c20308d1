//! sqlx errors turned into [`ConnectorError`]s by what the runtime should
//! do next, with secrets scrubbed.

use tributary_core::ConnectorError;

/// Classifies a database error by SQLSTATE class:
///
/// - retryable: connection exceptions (`08`), serialization failures and
///   deadlocks (`40001`, `40P01`), insufficient resources (`53`), operator
///   intervention (`57P01`–`57P03`: shutdown, restart, statement timeout
///   `57014`), lock timeouts (`55P03`), system I/O errors (`58`), and a table
///   or column that vanished under the sink (`42P01`, `42703`: re-reading
///   the catalog on the retry fixes a stale cache), plus every I/O, TLS and
///   protocol error (the connection is gone);
/// - configuration: authentication (`28`), unknown database (`3D000`),
///   missing privileges (`42501`), and sqlx configuration errors;
/// - bad record: data exceptions (`22`) and integrity violations (`23`),
///   i.e. a row the table refuses;
/// - fatal: everything else.
///
/// `context` says what the sink was doing and must already be secret-free
/// (it names the redacted URL or a table); the whole message goes through
/// the process-wide redactor as a backstop.
pub fn classify(context: &str, err: &sqlx::Error) -> ConnectorError {
    let text = |detail: &str| tributary_core::secret::redact(&format!("{context}: {detail}"));
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = text(&format!("{} (SQLSTATE {code})", db.message()));
            match sqlstate_class(&code) {
                Class::Retryable => ConnectorError::retryable(message),
                Class::Config => ConnectorError::config(message),
                Class::BadRecord => ConnectorError::bad_record(message),
                Class::Fatal => ConnectorError::fatal(message),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            let detail = match tributary_core::error::connect_cause(err) {
                Some(cause) => format!("{cause} ({err})"),
                None => err.to_string(),
            };
            ConnectorError::retryable(text(&detail))
        }
        sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ConnectorError::retryable(text(&err.to_string())),
        sqlx::Error::Configuration(_) => ConnectorError::config(text(&err.to_string())),
        _ => ConnectorError::fatal(text(&err.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Retryable,
    Config,
    BadRecord,
    Fatal,
}

fn sqlstate_class(code: &str) -> Class {
    match code {
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57014" | "42P01" | "42703" => {
            Class::Retryable
        }
        "3D000" | "42501" => Class::Config,
        _ => match code.get(..2) {
            Some("08" | "53" | "58") => Class::Retryable,
            Some("28") => Class::Config,
            Some("22" | "23") => Class::BadRecord,
            _ => Class::Fatal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_what_the_runtime_does_next() {
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "55P03",
        ] {
            assert_eq!(sqlstate_class(code), Class::Retryable, "{code}");
        }
        for code in ["28P01", "28000", "3D000", "42501"] {
            assert_eq!(sqlstate_class(code), Class::Config, "{code}");
        }
        for code in ["22P02", "22001", "23505", "23502"] {
            assert_eq!(sqlstate_class(code), Class::BadRecord, "{code}");
        }
        for code in ["42601", "XX000", ""] {
            assert_eq!(sqlstate_class(code), Class::Fatal, "{code}");
        }
    }

    #[test]
    fn io_errors_are_retryable() {
        let e = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(
            classify("writing", &e),
            ConnectorError::Retryable { .. }
        ));
    }
}
