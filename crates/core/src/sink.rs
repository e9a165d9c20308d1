use crate::{Checkpoint, ConnectorError, GroupOffsets, LoadMode, Record, StreamSpec};
use chrono::{DateTime, Utc};

/// A stream whose records a sink is about to receive: its spec (primary key,
/// JSON Schema) and the target the runtime routes its records to.
///
/// Records carry only their target, so a sink that creates tables needs this
/// to find the schema and key columns of a target before the first write.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkStream {
    pub spec: StreamSpec,
    pub target: String,
}

/// What every record of one [`Sink::write_batch`] call shares: the stream
/// that read them, its load mode and the instant the runtime stamped them.
///
/// A record does not carry these (most sinks never need them, and a field
/// per record would cost a copy per record); a sink that writes them beside
/// the value, as Kafka headers, gets them once per batch here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchInfo<'a> {
    pub stream: &'a str,
    /// Where the batch's records go unless a record names its own
    /// [`Record::target`] (sources that route records themselves set it).
    pub target: &'a str,
    pub load_mode: LoadMode,
    pub ingested_at: DateTime<Utc>,
}

/// Where records go.
///
/// Delivery is acknowledged by [`Sink::flush`]: when it returns `Ok`, every
/// record passed to `write` before it is durable (fsynced, acknowledged by all
/// in-sync replicas, committed). The runtime commits checkpoints only after
/// that, which is what makes DESIGN.md invariant 1 hold by construction.
///
/// A sink that can store checkpoints in the same transaction as the data
/// (PostgreSQL) overrides [`Sink::flush_with_checkpoints`] and
/// [`Sink::stored_checkpoints`]: records and checkpoints then commit
/// together (exactly-once, DESIGN.md invariant 2), and the sink's copy of a
/// checkpoint is the authoritative one at startup.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Verifies configuration and connectivity without writing data.
    async fn check(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Tells the sink, once before the first write, which streams feed it.
    /// Records routed elsewhere by their source may still arrive.
    fn set_streams(&mut self, _streams: &[SinkStream]) {}

    /// Accepts records for delivery; they may be buffered until [`Sink::flush`].
    /// A record goes to its own `target`, else to `batch.target`, else (no
    /// batch) to the sink's fallback, the connector's name. The runtime
    /// routes a batch at once rather than setting a target string on every
    /// record, which cost an allocation per record on one thread and a free
    /// on another. Sinks that record the batch's stream, load mode or
    /// ingestion time with each record take them from `batch`.
    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError>;

    /// Records that route themselves (tools, tests): no batch.
    async fn write(&mut self, records: &[Record]) -> Result<(), ConnectorError> {
        self.write_records(None, records).await
    }

    /// One batch of one stream; the runtime calls this.
    async fn write_batch(
        &mut self,
        batch: BatchInfo<'_>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        self.write_records(Some(batch), records).await
    }

    /// Makes everything written so far durable: the acknowledgement.
    async fn flush(&mut self) -> Result<(), ConnectorError>;

    /// Makes everything written so far durable and, when the sink can, stores
    /// `checkpoints` (stream name, checkpoint) atomically with it, and the
    /// source's `group_offsets` too when it can commit them (Kafka → Kafka).
    /// Returns whether the checkpoints were stored. The runtime calls this
    /// instead of [`Sink::flush`] and still commits the checkpoints to the
    /// state store afterwards (so `tributary state` shows them), unless
    /// [`Sink::checkpoints_in_state_store`].
    ///
    /// [`ConnectorError::Aborted`] means everything since the last commit is
    /// gone: the runtime reads it again from the committed checkpoints.
    async fn flush_with_checkpoints(
        &mut self,
        checkpoints: &[(String, Checkpoint)],
        group_offsets: &[GroupOffsets],
    ) -> Result<bool, ConnectorError> {
        let _ = (checkpoints, group_offsets);
        self.flush().await?;
        Ok(false)
    }

    /// True when the checkpoints this sink stores are the state store's own
    /// records (the Kafka sink with `exactly_once`: its transaction writes
    /// them into the state topic). The runtime then commits nothing to the
    /// state store itself: a second write would be a second writer.
    fn checkpoints_in_state_store(&self) -> bool {
        false
    }

    /// The checkpoints the sink committed with its data (stream name,
    /// checkpoint), read at startup before any stream opens. A stream listed
    /// here resumes from this checkpoint, not the state store's: a crash
    /// between the sink's commit and the state store's must not replay.
    async fn stored_checkpoints(&mut self) -> Result<Vec<(String, Checkpoint)>, ConnectorError> {
        Ok(Vec::new())
    }

    /// Flushes and releases resources; called once at shutdown.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.flush().await
    }
}
