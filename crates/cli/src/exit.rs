//! Exit codes, documented in docs/cli.md; scripts and supervisors rely on them.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

/// Set when a write to stdout found the pipe closed (`| head`): a command
/// that otherwise succeeded then exits with [`Code::BrokenPipe`].
pub static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything finished (or was interrupted once and drained cleanly).
    Success = 0,
    /// A connector stopped with an error while running.
    Failure = 1,
    /// Bad command line or configuration: nothing was started.
    Config = 2,
    /// `check` or `discover` could not reach or use the source or sink.
    CheckFailed = 3,
    /// The state store is in use by another process (the connector is running).
    StateLocked = 4,
    /// `state stuck` found stuck streams, or `status` found failed, stuck or
    /// stale ones (listed on stdout).
    Stuck = 5,
    /// The reader of stdout went away (`| head`): 128 + SIGPIPE, the status
    /// a shell reports for a program SIGPIPE ended.
    BrokenPipe = 141,
    /// A second interrupt forced an immediate stop; uncommitted work is re-read next run.
    Forced = 130,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// An error to report and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub error: anyhow::Error,
    /// Further errors of the same kind, reported after `error` (`check`
    /// lists every config error of a file at once).
    pub more: Vec<anyhow::Error>,
}

impl Failure {
    pub fn new(code: Code, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
            more: Vec::new(),
        }
    }
}

pub type CmdResult = Result<Code, Failure>;

/// A source's error in a command that only uses the source (`read`,
/// `state reset --to`), by docs/cli.md: what the config or command line
/// asks cannot work (an unsupported reset) is 2; the source could not be
/// used (refused, 401, timeout) is 3.
pub fn source_failure(e: tributary_core::ConnectorError) -> Failure {
    let code = match e.class() {
        tributary_core::ErrorClass::Config => Code::Config,
        _ => Code::CheckFailed,
    };
    Failure::new(code, e)
}
