//! The `mqtt` [`Source`] and its [`StreamReader`].

use super::client::{self, Client, Delivery, Event, Link};
use super::config::{self, Settings};
use crate::push;
use crate::SourceContext;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, Batch, Checkpoint, ConnectorError, LoadMode, Poll, Source, StreamReader,
    StreamSpec,
};

/// Subscribes to MQTT topics; see the [module docs](super).
#[derive(Debug)]
pub struct MqttSource {
    settings: Arc<Settings>,
}

/// An MQTT stream's checkpoint. The broker's session, not this, is where
/// the stream resumes; the checkpoint only tells the reader which of the
/// messages it handed over are now durable, so it can acknowledge them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MqttCheckpoint {
    /// The reader that handed the messages over (a random id per reader):
    /// a commit reaching a later reader acknowledges nothing.
    pub reader: String,
    /// Messages that reader handed over, up to this batch.
    pub delivered: u64,
}

impl MqttSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(MqttSource {
            settings: Arc::new(config::resolve(section, &ctx.connector, ctx.batch_size)?),
        })
    }
}

/// How long `committed` waits for the broker to confirm its acknowledgements.
const ACK_FLUSH_WAIT: Duration = Duration::from_secs(5);

#[async_trait]
impl Source for MqttSource {
    /// Connects with a throw-away clean session (so the real session's
    /// queued messages stay queued) and disconnects.
    async fn check(&self) -> Result<(), ConnectorError> {
        let mut probe = (*self.settings).clone();
        probe.client_id = format!("{}-check-{}", probe.client_id, std::process::id());
        probe.clean_session = true;
        probe.mappings.clear();
        probe.reconnect.max_restarts = 0;
        let (tx, mut rx) = mpsc::channel(1);
        let link = Arc::new(Link::default());
        let (client, task) = client::start(Arc::new(probe), link.clone(), tx)?;
        let _task = AbortOnDropHandle::new(task);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if link.is_connected() {
                client.disconnect().await;
                return Ok(());
            }
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::Failed(e)) => return Err(e),
                    Some(_) => {}
                    None => return Err(ConnectorError::retryable(format!("mqtt: cannot connect to {}", self.settings.shown))),
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ConnectorError::retryable(format!("mqtt: no answer from {} within 10s", self.settings.shown)));
                }
            }
        }
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        let mut spec = StreamSpec::new(self.settings.stream.clone());
        if let Some(id) = &self.settings.rules.id_field {
            spec.primary_key = vec![id.clone()];
        }
        Ok(vec![spec])
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        _checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        if stream.name != self.settings.stream {
            return Err(ConnectorError::config(format!(
                "the mqtt source has one stream, `{}`; there is no stream `{}`",
                self.settings.stream, stream.name
            )));
        }
        // Two batches: the broker's messages are read while a batch is written.
        let (tx, rx) = mpsc::channel(self.settings.batch_size.saturating_mul(2).max(16));
        let link = Arc::new(Link::default());
        let (client, task) = client::start(self.settings.clone(), link.clone(), tx)?;
        let reader = crate::push::generated_id();
        Ok(Box::new(MqttReader {
            rx,
            _task: AbortOnDropHandle::new(task),
            client,
            link,
            // The reader id is a UUID: no `+`, `#` or `/` a client id may hold.
            barrier_filter: format!("tributary/ack-barrier/{reader}"),
            reader,
            delivered: 0,
            pending: VecDeque::new(),
            early: VecDeque::new(),
            batch_size: self.settings.batch_size,
            failed: None,
        }))
    }
}

/// Hands over what the broker sent and acknowledges it once committed.
pub struct MqttReader {
    rx: mpsc::Receiver<Event>,
    _task: AbortOnDropHandle<()>,
    client: Client,
    link: Arc<Link>,
    reader: String,
    /// What [`Client::barrier`] unsubscribes from: no one's subscription.
    barrier_filter: String,
    delivered: u64,
    /// QoS 1/2 messages handed over and not yet acknowledged: (number,
    /// connection generation, the PUBLISH), in arrival order, which is the
    /// order MQTT requires acknowledgements in.
    pending: VecDeque<(u64, u64, Delivery)>,
    /// Events taken from `rx` while `committed` waited; polled first.
    early: VecDeque<Event>,
    batch_size: usize,
    failed: Option<ConnectorError>,
}

impl MqttReader {
    /// Returns once the broker has received the acknowledgements queued
    /// before (an UNSUBACK after them: [`Client::barrier`]), not when they
    /// are merely queued or written: a crash after the commit would
    /// otherwise lose them, and the broker would deliver committed
    /// messages again. The driver runs the connection only between two
    /// events, and it waits while our channel is full, so messages are
    /// taken from the channel meanwhile (up to two batches; the next polls
    /// hand them over first). Gives up when the connection changes (the
    /// broker re-sends what was not acknowledged on it: a duplicate at
    /// worst) or after a while.
    async fn wait_acks_received(&mut self, generation: u64) {
        let target = self.link.unsubacks() + 1;
        if let Err(e) = self.client.barrier(&self.barrier_filter) {
            warn!(error = %e, "mqtt: could not queue the acknowledgements' barrier");
            return;
        }
        let link = self.link.clone();
        let deadline = tokio::time::Instant::now() + ACK_FLUSH_WAIT;
        let room = self.batch_size.saturating_mul(2).max(16);
        loop {
            let changed = link.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if link.unsubacks() >= target || link.current() != generation {
                return;
            }
            tokio::select! {
                _ = &mut changed => {}
                event = self.rx.recv(), if self.early.len() < room => match event {
                    Some(event) => self.early.push_back(event),
                    // The driver ended; the next poll says why.
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    warn!("mqtt: the broker did not confirm the acknowledgements within {ACK_FLUSH_WAIT:?}; it may deliver committed messages again");
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl StreamReader for MqttReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let (delivered, pending) = (&mut self.delivered, &mut self.pending);
        let drained = push::drain_buffered(
            &mut self.early,
            &mut self.rx,
            self.batch_size,
            &mut self.failed,
            "mqtt client task",
            |delivery| {
                *delivered += 1;
                if let Some((generation, d)) = delivery {
                    pending.push_back((*delivered, generation, d));
                }
            },
        )
        .await?;
        let Some(push::Drained { records, bad }) = drained else {
            return Ok(Poll::Idle);
        };
        let checkpoint = Checkpoint::from_state(&MqttCheckpoint {
            reader: self.reader.clone(),
            delivered: self.delivered,
        });
        let mut batch = Batch::new(records, checkpoint, LoadMode::Incremental);
        batch.bad_records = bad;
        Ok(Poll::Batch(batch))
    }

    /// Acknowledges every message up to the committed one, if it is still
    /// on the connection it came on; the broker re-sends the others.
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let Ok(cp) = checkpoint.to_state::<MqttCheckpoint>() else {
            return Ok(());
        };
        if cp.reader != self.reader {
            return Ok(());
        }
        let current = self.link.current();
        let mut queued = 0;
        while let Some((n, generation, _)) = self.pending.front() {
            if *n > cp.delivered {
                break;
            }
            let stale = *generation != current;
            let Some((_, _, delivery)) = self.pending.pop_front() else {
                break;
            };
            if stale {
                continue;
            }
            match self.client.ack(&delivery) {
                Ok(()) => queued += 1,
                // The broker re-sends what was not acknowledged: a duplicate
                // at worst, never a loss.
                Err(e) => warn!(error = %e, "mqtt: could not queue an acknowledgement"),
            }
        }
        if queued > 0 {
            self.wait_acks_received(current).await;
        }
        Ok(())
    }

    fn commits_interrupt_poll(&self) -> bool {
        true
    }

    /// A clean DISCONNECT, so the broker keeps the session without waiting
    /// for the keep-alive to expire. What arrives meanwhile is dropped
    /// unacknowledged: the broker re-sends it to the next reader.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        if !self.link.is_connected() {
            return Ok(());
        }
        self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.link.is_connected() {
                tokio::select! {
                    event = self.rx.recv() => if event.is_none() { break },
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        })
        .await;
        Ok(())
    }
}
