//! What the bridges to other ecosystems' connectors (`singer`, `airbyte`,
//! `fivetran`) share: running the connector as a child process under our
//! runtime's guarantees.
//!
//! - **Lifetime.** A reader starts its child ([`Child::spawn`]) when the
//!   runtime opens it and kills it when dropped or closed (shutdown, a
//!   finished run). A child that dies is a retryable error: the runtime
//!   reopens the stream from its committed checkpoint after its usual
//!   backoff, which restarts the child; `runtime.max_retries` bounds it.
//!   Only a confirmed state is progress (the reader's
//!   `records_are_progress` is false): a child that prints records and
//!   dies before its next state, every time, uses up the retries instead
//!   of being restarted forever.
//!   The child runs under `setpriv --pdeathsig KILL` where util-linux has
//!   it, so `kill -9` of tributary takes the child along.
//! - **Backpressure.** Stdout is read only when the reader polls
//!   ([`Child::next`]); while the runtime's channel is full the pipe fills
//!   and the child blocks on write. Memory holds one line at most
//!   (`max_line_bytes`, then the line is a bad record).
//! - **Bad output.** A line that is not UTF-8 or too long comes back as a
//!   [`BadRecord`](tributary_core::BadRecord) located `LABEL stdout line N`
//!   with the line as its raw input; a bridge does the same for lines its
//!   protocol cannot parse. The connector's bad-record policy decides.
//! - **Death and hangs.** Exit status other than 0, or death by a signal:
//!   retryable, the message quoting its last stderr lines. No stdout for
//!   `silence_timeout`: the child is killed, retryable.
//! - **Logs.** Stderr lines go to our log at the level they name
//!   ([`StderrLevel`]), redacted, and the last [`STDERR_TAIL_LINES`] are
//!   kept for errors.
//! - **Files.** Config, catalog and state go to the child as 0600 temporary
//!   files ([`JsonFile`]) removed after the run; a config's secrets are
//!   resolved into it and never logged.
//! - **Checkpoints.** [`Pending`] holds what was read since the last batch
//!   and decides which state a batch may carry ([`StatePolicy`]).
//! - **Line protocols.** [`LineReader`] is the stream reader of a child
//!   that speaks JSON lines (Singer, Airbyte); the bridge supplies the
//!   [`LineProtocol`].

mod batch;
mod child;
mod files;
mod logs;
mod reader;
mod settings;

pub use batch::{Pending, StatePolicy};
pub use child::{
    collect, resolve_program, Child, ChildCommand, Output, StdoutLine, DEFAULT_MAX_LINE_BYTES,
    STDERR_TAIL_LINES,
};
pub use files::JsonFile;
pub use logs::StderrLevel;
pub use reader::{bad_line, LineProtocol, LineReader};
pub use settings::{child_command, config_json, register_secrets, DEFAULT_SILENCE_TIMEOUT};

#[cfg(test)]
mod tests;
