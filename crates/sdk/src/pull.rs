//! The small trait for sources that answer "what comes after this
//! checkpoint?": REST APIs with a cursor, tables read by id, feeds.

use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use tributary_core::{
    async_trait, BadRecord, Batch, Checkpoint, CheckpointSummary, ConnectorError, Health, LoadMode,
    Poll, Record, Source, StreamReader, StreamSpec,
};

/// A source that reads a stream one batch at a time from a checkpoint it
/// defines. [`Pull`] turns it into a full [`Source`].
///
/// | you handle | the runtime handles |
/// |---|---|
/// | `check`: can the system be reached with this config? Change nothing. | when a stream runs (its schedule), `tributary check` output |
/// | `discover`: the streams, keys and schemas | `tributary discover`, the sink's tables |
/// | `poll`: the records after a checkpoint and the checkpoint after them | committing that checkpoint once the sink acknowledged the records; resuming from it after a crash |
/// | classifying errors ([`ConnectorError`]) | retrying with backoff, stopping on fatal, the bad-record policy |
///
/// `poll` takes the checkpoint and returns the next one rather than
/// keeping a position in `self`: the runtime may drop a poll at any await
/// (shutdown) or call it again from an older checkpoint (after a retryable
/// error, after a restart), and a position in `self` would then be wrong.
#[async_trait]
pub trait PullSource: Send + Sync + 'static {
    /// The position in a stream: alone enough to resume with no gap (a
    /// cursor and the id of the last record read, not only a timestamp).
    /// Stored as JSON, so it must serialize to JSON and back unchanged.
    type Checkpoint: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static;

    /// Verifies configuration and connectivity without reading or changing
    /// anything (`tributary check`).
    async fn check(&self) -> Result<(), ConnectorError>;

    /// The streams this source offers.
    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError>;

    /// The records that follow `checkpoint` (`None`: from the beginning)
    /// and the checkpoint just after the last of them. Return at most a
    /// batch (the connector's `runtime.batch_size` is in [`SourceContext`](crate::SourceContext)).
    async fn poll(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<&Self::Checkpoint>,
    ) -> Result<Pulled<Self::Checkpoint>, ConnectorError>;

    /// What a checkpoint means (cursor, position) for `tributary status`
    /// and the admin server; cheap, called once per commit.
    fn summarize(&self, _stream: &StreamSpec, _checkpoint: &Self::Checkpoint) -> CheckpointSummary {
        CheckpointSummary::default()
    }

    /// A cheap, non-blocking view of the source's condition for `/health`.
    fn health(&self) -> Health {
        Health::Healthy
    }

    /// Releases shared resources at shutdown (after the last poll).
    async fn close(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// What one [`PullSource::poll`] read.
#[derive(Debug)]
pub struct Pulled<C> {
    pub records: Vec<Record>,
    /// Input that could not become records (the runtime applies the
    /// connector's bad-record policy and counts them).
    pub bad_records: Vec<BadRecord>,
    /// The checkpoint just after these records.
    pub next: C,
    /// Nothing more right now: this run of the stream ends after these
    /// records, and the next scheduled run polls from `next` again.
    pub caught_up: bool,
}

impl<C> Pulled<C> {
    /// A batch with more to come: the runtime polls again at once.
    pub fn more(records: Vec<Record>, next: C) -> Self {
        Pulled {
            records,
            bad_records: Vec::new(),
            next,
            caught_up: false,
        }
    }

    /// The last batch of this run (possibly empty).
    pub fn caught_up(records: Vec<Record>, next: C) -> Self {
        Pulled {
            caught_up: true,
            ..Pulled::more(records, next)
        }
    }

    /// Adds input that could not become records.
    pub fn with_bad_records(mut self, bad: Vec<BadRecord>) -> Self {
        self.bad_records = bad;
        self
    }
}

/// A [`PullSource`] as a full [`Source`]; see [`crate::pull_type`].
pub struct Pull<P> {
    inner: Arc<P>,
}

impl<P: PullSource> Pull<P> {
    pub fn new(source: P) -> Self {
        Pull {
            inner: Arc::new(source),
        }
    }

    fn state(
        stream: &StreamSpec,
        checkpoint: &Checkpoint,
    ) -> Result<P::Checkpoint, ConnectorError> {
        checkpoint.to_state().map_err(|e| {
            ConnectorError::fatal(format!(
                "stream `{}`: the committed checkpoint {} is not one this source writes ({e}); reset the stream (`state reset --stream {}`) or write a valid one with `state set`",
                stream.name,
                checkpoint.as_json(),
                stream.name
            ))
        })
    }
}

#[async_trait]
impl<P: PullSource> Source for Pull<P> {
    async fn check(&self) -> Result<(), ConnectorError> {
        self.inner.check().await
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        self.inner.discover().await
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let position = checkpoint
            .as_ref()
            .map(|c| Self::state(stream, c))
            .transpose()?;
        Ok(Box::new(PullReader {
            source: Arc::clone(&self.inner),
            stream: stream.clone(),
            position,
            caught_up: false,
            load_mode: if checkpoint.is_none() {
                LoadMode::Initial
            } else {
                LoadMode::Incremental
            },
        }))
    }

    fn summarize(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        match checkpoint.to_state() {
            Ok(c) => self.inner.summarize(stream, &c),
            Err(_) => CheckpointSummary::default(),
        }
    }

    fn health(&self) -> Health {
        self.inner.health()
    }

    async fn close(&self) -> Result<(), ConnectorError> {
        self.inner.close().await
    }
}

struct PullReader<P: PullSource> {
    source: Arc<P>,
    stream: StreamSpec,
    position: Option<P::Checkpoint>,
    caught_up: bool,
    load_mode: LoadMode,
}

#[async_trait]
impl<P: PullSource> StreamReader for PullReader<P> {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        if self.caught_up {
            return Ok(Poll::End);
        }
        // The one await; the reader changes only after it, so a poll
        // dropped there (shutdown) leaves the reader where it was.
        let pulled = self
            .source
            .poll(&self.stream, self.position.as_ref())
            .await?;
        let moved = self.position.as_ref() != Some(&pulled.next);
        let empty = pulled.records.is_empty() && pulled.bad_records.is_empty();
        self.caught_up = pulled.caught_up;
        if empty && !moved {
            // Nothing read and nowhere to go: the run is over, or (more
            // promised) the runtime waits its poll interval before asking.
            return Ok(if pulled.caught_up {
                Poll::End
            } else {
                Poll::Idle
            });
        }
        let checkpoint = Checkpoint::from_state(&pulled.next);
        if checkpoint.as_json().is_null() {
            return Err(ConnectorError::fatal(format!(
                "stream `{}`: the source's checkpoint does not serialize to JSON (a map with non-string keys?)",
                self.stream.name
            )));
        }
        self.position = Some(pulled.next);
        let load_mode = self.load_mode;
        if pulled.caught_up {
            self.load_mode = LoadMode::Incremental;
        }
        let mut batch = Batch::new(pulled.records, checkpoint, load_mode);
        batch.bad_records = pulled.bad_records;
        Ok(Poll::Batch(batch))
    }
}
