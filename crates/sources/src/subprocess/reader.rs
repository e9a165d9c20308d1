//! A stream reader over a child that speaks a line protocol on stdout
//! (Singer, Airbyte): the loop both bridges share.

use super::{Child, JsonFile, Output, Pending, StdoutLine};
use std::time::Duration;
use tributary_core::{BadRecord, Batch, Checkpoint, ConnectorError, LoadMode, Poll, StreamReader};

/// How long records wait for more before they go to the sink without a new
/// state (a tap that sends its only state at the end still delivers as it reads).
const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// What a bridge's protocol does with the child's output.
pub trait LineProtocol: Send {
    /// One stdout line: records, states, logs into `pending`. An error ends
    /// the run (a message the bridge cannot honour).
    fn line(&mut self, line: StdoutLine, pending: &mut Pending) -> Result<(), ConnectorError>;

    /// The child exited with status 0. The default confirms the last state.
    fn finished(&mut self, pending: &mut Pending) -> Result<(), ConnectorError> {
        pending.finished();
        Ok(())
    }

    /// The child died with `error`; a protocol that knows better (an
    /// error the child reported before dying) says so.
    fn died(&mut self, error: ConnectorError) -> ConnectorError {
        error
    }
}

/// A line the protocol cannot read, for the bad-record policy.
pub fn bad_line(label: &str, line: &StdoutLine, error: impl Into<String>) -> BadRecord {
    BadRecord {
        location: format!("{label} stdout line {}", line.number),
        error: error.into(),
        raw: line.text.clone().into(),
    }
}

/// One run of a child, read as batches.
pub struct LineReader<P> {
    child: Child,
    protocol: P,
    pending: Pending,
    batch_size: usize,
    load_mode: LoadMode,
    done: bool,
    /// Config, catalog and state files: removed when the run ends.
    _files: Vec<JsonFile>,
}

impl<P: LineProtocol> LineReader<P> {
    pub fn new(
        child: Child,
        protocol: P,
        pending: Pending,
        batch_size: usize,
        load_mode: LoadMode,
        files: Vec<JsonFile>,
    ) -> Self {
        LineReader {
            child,
            protocol,
            pending,
            batch_size: batch_size.max(1),
            load_mode,
            done: false,
            _files: files,
        }
    }

    fn batch(&mut self) -> Poll {
        let (records, bad_records, state) = self.pending.take();
        Poll::Batch(Batch {
            records,
            bad_records,
            checkpoint: Checkpoint(state),
            load_mode: self.load_mode,
        })
    }
}

#[async_trait::async_trait]
impl<P: LineProtocol> StreamReader for LineReader<P> {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        loop {
            if self.done {
                if self.pending.has_news() {
                    return Ok(self.batch());
                }
                return Ok(Poll::End);
            }
            if self.pending.ready(self.batch_size) {
                return Ok(self.batch());
            }
            // `Child::next` is cancel-safe, and everything read is in
            // `self.pending`: a dropped poll loses nothing.
            let next = if !self.pending.is_empty() {
                let waited = tokio::time::timeout(FLUSH_AFTER, self.child.next()).await;
                match waited {
                    Err(_) => return Ok(self.batch()),
                    Ok(next) => next,
                }
            } else {
                self.child.next().await
            };
            match next {
                Ok(Output::Line(line)) => {
                    if !line.text.trim().is_empty() {
                        self.protocol.line(line, &mut self.pending)?;
                    }
                }
                Ok(Output::Bad(bad)) => self.pending.bad(bad),
                Ok(Output::Finished) => {
                    self.done = true;
                    self.protocol.finished(&mut self.pending)?;
                }
                Err(e) => return Err(self.protocol.died(e)),
            }
        }
    }

    /// A child's records are progress only once a STATE after them is
    /// confirmed: one that dies before its next STATE every time makes
    /// none, and the runtime's retries run out instead of going on forever.
    fn records_are_progress(&self) -> bool {
        false
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.child.kill().await;
        Ok(())
    }
}
