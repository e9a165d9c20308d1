use crate::{ConnectorError, Record};

/// Where records go.
///
/// Delivery is acknowledged by [`Sink::flush`]: when it returns `Ok`, every
/// record passed to `write` before it is durable (fsynced, acknowledged by all
/// in-sync replicas, committed). The runtime commits checkpoints only after
/// that, which is what makes DESIGN.md invariant 1 hold by construction.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Verifies configuration and connectivity without writing data.
    async fn check(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Accepts records for delivery; they may be buffered until [`Sink::flush`].
    /// Every record has its `target` set by the runtime.
    async fn write(&mut self, records: &[Record]) -> Result<(), ConnectorError>;

    /// Makes everything written so far durable: the acknowledgement.
    async fn flush(&mut self) -> Result<(), ConnectorError>;

    /// Flushes and releases resources; called once at shutdown.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.flush().await
    }
}
