use crate::{
    Checkpoint, CheckpointSummary, ConnectorError, LoadMode, Record, SinkStream, StreamSpec,
};

/// The consumer-group offsets a checkpoint of a Kafka stream stands for:
/// what the source would commit to its group once the checkpoint is
/// committed. A sink that writes to the same cluster in transactions (Kafka,
/// exactly-once) commits them inside its transaction instead, so the copied
/// records, the checkpoint and the group's offsets move together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group: String,
    pub topic: String,
    /// Partition and the next offset to read.
    pub partitions: Vec<(i32, i64)>,
}

/// A configured connection to an outside system.
///
/// A source only turns the outside system into batches and checkpoints. The
/// runtime owns everything else: scheduling, retries, publishing, committing.
/// Implementations are shared across the connector's stream tasks, hence `&self`
/// and `Sync`; per-stream state lives in the [`StreamReader`] they open.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Verifies configuration and connectivity without reading data
    /// (`tributary check`). Must not change anything outside.
    async fn check(&self) -> Result<(), ConnectorError>;

    /// The streams this source offers, with keys, cursors and schemas.
    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError>;

    /// Opens a reader positioned just after `checkpoint` (`None`: from the
    /// beginning). The runtime calls this at every scheduled run and after
    /// every retryable error, so it must be cheap to call again.
    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError>;

    /// Where a stream stood when its checkpoint was committed, as far as the
    /// schedule is concerned. The runtime asks at start-up so that unfinished
    /// work resumes at once and a cron fire missed while the process was down
    /// runs at once (Quartz's "fire once now" misfire rule), instead of
    /// waiting for the next fire time.
    fn run_progress(&self, _stream: &StreamSpec, _checkpoint: &Checkpoint) -> RunProgress {
        RunProgress::Unknown
    }

    /// The checkpoint that makes `stream` resume from `position`
    /// (`tributary state reset --to-now | --to DATETIME | --to-available-end`).
    /// `current` is the committed checkpoint, if any, for fields a source
    /// wants to keep (counters, load mode). Only sources with a time cursor
    /// can answer; the default says so, and the operator can still remove
    /// the checkpoint or write one with `state set`.
    async fn checkpoint_at(
        &self,
        stream: &StreamSpec,
        current: Option<&Checkpoint>,
        position: ResetPosition,
    ) -> Result<Checkpoint, ConnectorError> {
        let _ = current;
        Err(ConnectorError::config(format!(
            "stream `{}`: this source cannot build a checkpoint for {position}; reset the stream to its beginning (without --to...) or write a checkpoint with `tributary state set`",
            stream.name
        )))
    }

    /// What a committed checkpoint means (cursor, window, position) for the
    /// admin server's status, `tributary status` and the cursor-lag metric.
    /// Called once per commit, so it must be cheap; the default knows nothing.
    fn summarize(&self, _stream: &StreamSpec, _checkpoint: &Checkpoint) -> CheckpointSummary {
        CheckpointSummary::default()
    }

    /// The consumer-group offsets `checkpoint` stands for, for a sink that
    /// commits them in its own transaction (see [`GroupOffsets`]). Only the
    /// Kafka source has any.
    fn group_offsets(
        &self,
        _stream: &StreamSpec,
        _checkpoint: &Checkpoint,
    ) -> Option<GroupOffsets> {
        None
    }

    /// The targets a source routes records to itself ([`Record::target`]),
    /// each with the key and schema of its records, for sinks that create
    /// tables ([`crate::Sink::set_streams`]). A bridged connector's one
    /// stream (one state, as a Fivetran connector has) feeds several
    /// tables of different keys. Known once [`Source::discover`] returned;
    /// the default routes nothing.
    fn routed_targets(&self) -> Vec<SinkStream> {
        Vec::new()
    }

    /// A cheap, non-blocking view of the source's condition for health endpoints.
    fn health(&self) -> Health {
        Health::Healthy
    }

    /// Releases shared resources (connection pools, sessions).
    async fn close(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Reads one stream from a position, one batch at a time.
#[async_trait::async_trait]
pub trait StreamReader: Send {
    /// The next batch and the checkpoint just after it.
    ///
    /// Cancel-safe by contract: the runtime may drop this future at any await
    /// point (shutdown). Nothing is lost because nothing counts as read until
    /// the checkpoint of a returned batch is committed. Push sources should
    /// return [`Poll::Idle`] at least every second so commit notifications and
    /// shutdown are handled promptly.
    async fn poll(&mut self) -> Result<Poll, ConnectorError>;

    /// Told after `checkpoint` (one this reader returned) was committed, i.e.
    /// every record before it is durable. Push sources acknowledge upstream here
    /// (an MQTT PUBACK, a Kafka consumer offset commit).
    async fn committed(&mut self, _checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// True for push sources whose `poll` waits for data to arrive (and
    /// that may acknowledge upstream in [`StreamReader::committed`]): the
    /// runtime then drops a waiting poll as soon as a commit comes in,
    /// delivers it and polls again on the same reader. Without this an MQTT
    /// broker that stopped sending because every message in its window
    /// awaits our acknowledgement would wait for the poll's idle timeout.
    /// Only for readers whose `poll` loses nothing when dropped at an await
    /// point (the contract above).
    fn commits_interrupt_poll(&self) -> bool {
        false
    }

    /// Whether handing over records (and bad records) is progress on its
    /// own, resetting the runtime's retry budget (`runtime.max_retries`).
    /// True for sources whose every batch checkpoint moves past its records
    /// (a file offset, a keyset position). False for readers whose records become durable
    /// progress only once a later checkpoint covers them: the bridges'
    /// children (a Singer tap, an Airbyte source, a Fivetran connector)
    /// send records between STATEs, and a child that prints records and
    /// dies before its next STATE, every time, re-reads the same records
    /// forever. For those only an advanced checkpoint is progress: bad
    /// records at an unmoved checkpoint are read again after a crash just
    /// like records, so they are none either. Such a child ends the run
    /// once the retries are used up (DESIGN.md invariant 4).
    fn records_are_progress(&self) -> bool {
        true
    }

    /// Releases the reader's resources; called once, after the last poll.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// See [`Source::run_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunProgress {
    /// The source cannot tell: the stream waits for its next scheduled run.
    Unknown,
    /// A run was cut short (mid-window, mid-initial-load): resume now.
    InProgress,
    /// The last run finished; it started (its window was captured) at this instant.
    CompletedAt(chrono::DateTime<chrono::Utc>),
}

/// Where `tributary state reset --to...` moves a stream: see [`Source::checkpoint_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPosition {
    /// Skip everything before the current time (the source's clock).
    Now,
    /// Read again (or skip) from this instant.
    At(chrono::DateTime<chrono::Utc>),
    /// The newest data the outside system says is ready (Stripe's
    /// `data_available_end`).
    AvailableEnd,
}

impl std::fmt::Display for ResetPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetPosition::Now => f.write_str("--to-now"),
            ResetPosition::At(t) => write!(
                f,
                "--to {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            ResetPosition::AvailableEnd => f.write_str("--to-available-end"),
        }
    }
}

/// The outcome of one [`StreamReader::poll`].
#[derive(Debug)]
pub enum Poll {
    /// Records (possibly none) and the position after them.
    Batch(Batch),
    /// Nothing right now, more may come (a tailed file, a quiet socket):
    /// the runtime polls again after the connector's poll interval.
    Idle,
    /// Caught up: this run of the stream is over until its next scheduled run.
    ///
    /// A stream whose checkpoint still says a run is in progress
    /// ([`Source::run_progress`]: an async job past its wait) or that is
    /// marked stuck ended without success: its `last_success_at` does not move.
    End,
}

/// Records read together and the checkpoint that follows the last of them.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Input that could not be turned into records; the runtime applies the
    /// bad-record policy (`fail` | `skip` | `dead_letter`) and counts them.
    pub bad_records: Vec<BadRecord>,
    pub checkpoint: Checkpoint,
    pub load_mode: LoadMode,
}

impl Batch {
    pub fn new(records: Vec<Record>, checkpoint: Checkpoint, load_mode: LoadMode) -> Self {
        Batch {
            records,
            bad_records: Vec::new(),
            checkpoint,
            load_mode,
        }
    }
}

/// Input that could not become a record, with enough context for a person to find it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Where it came from, e.g. `data/orders.csv:17`.
    pub location: String,
    /// Why it was rejected.
    pub error: String,
    /// The raw input, whole.
    pub raw: RawInput,
}

/// A bad record's raw input. Kept whole for the person who fixes it, however
/// long: a record over the source's size cap is not held in memory but
/// named by where it lies, and copied from there into the dead-letter file.
#[derive(Debug, Clone, PartialEq)]
pub enum RawInput {
    /// The input as text (invalid UTF-8 replaced).
    Text(String),
    /// `len` bytes at `offset` of a file the source holds open (an open
    /// handle, not a path, so a file renamed by rotation is still read).
    File(FileSpan),
}

impl RawInput {
    /// The text when it is held; `None` for a span of a file.
    pub fn text(&self) -> Option<&str> {
        match self {
            RawInput::Text(t) => Some(t),
            RawInput::File(_) => None,
        }
    }

    /// The input's size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            RawInput::Text(t) => t.len() as u64,
            RawInput::File(span) => span.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for RawInput {
    fn from(text: String) -> Self {
        RawInput::Text(text)
    }
}

impl From<&str> for RawInput {
    fn from(text: &str) -> Self {
        RawInput::Text(text.to_string())
    }
}

impl PartialEq<str> for RawInput {
    fn eq(&self, other: &str) -> bool {
        self.text() == Some(other)
    }
}

impl PartialEq<&str> for RawInput {
    fn eq(&self, other: &&str) -> bool {
        self.text() == Some(*other)
    }
}

/// Bytes of an open file.
#[derive(Debug, Clone)]
pub struct FileSpan {
    pub file: std::sync::Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

impl PartialEq for FileSpan {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.file, &other.file)
            && self.offset == other.offset
            && self.len == other.len
    }
}

/// What a source reports to health endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded(String),
    Unhealthy(String),
}
