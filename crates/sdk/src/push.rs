//! The small trait for sources that are pushed to: a socket, a
//! subscription, a webhook queue. Messages are acknowledged upstream only
//! after the records they became are committed.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tributary_core::{
    async_trait, BadRecord, Batch, Checkpoint, ConnectorError, Health, LoadMode, Poll, Record,
    Source, StreamReader, StreamSpec,
};

/// How long a reader waits for a message before telling the runtime the
/// stream is idle, so commits and shutdown are not held up by a quiet feed.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// A source that fills a channel. [`Push`] turns it into a full [`Source`].
///
/// | you handle | the runtime handles |
/// |---|---|
/// | `run`: connect, subscribe, send each message with what acknowledges it | batching, backpressure (the channel is bounded), publishing |
/// | reconnecting inside `run` while the upstream is worth waiting for | stopping the stream on an `Err` from `run`, retrying a retryable one |
/// | `ack`: tell upstream the messages are safe (a PUBACK, an offset commit, a DELETE) | calling `ack` only after the sink acknowledged and the checkpoint is committed |
///
/// A crash before a commit means those messages were never acknowledged:
/// the upstream delivers them again (at-least-once, duplicates only after
/// the last commit).
#[async_trait]
pub trait PushSource: Send + Sync + 'static {
    /// What acknowledges one message upstream (a delivery tag, an offset).
    type Ack: Send + 'static;

    /// Verifies configuration and connectivity without consuming or
    /// acknowledging anything (`tributary check`).
    async fn check(&self) -> Result<(), ConnectorError>;

    /// The streams this source offers.
    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError>;

    /// Delivers the stream's messages into `tx` until [`Pusher::send`]
    /// says the reader is gone (return `Ok(())` then) or the upstream is
    /// finished (`Ok(())`: the run ends once what was sent is read) or
    /// failed (`Err`: reported after the messages sent before it).
    async fn run(&self, stream: &StreamSpec, tx: Pusher<Self::Ack>) -> Result<(), ConnectorError>;

    /// Every message up to and including these is durable downstream;
    /// acknowledge them upstream. Called in delivery order.
    async fn ack(&self, stream: &StreamSpec, acks: Vec<Self::Ack>) -> Result<(), ConnectorError>;

    /// A cheap, non-blocking view of the source's condition for `/health`.
    fn health(&self) -> Health {
        Health::Healthy
    }
}

enum Event<A> {
    Message(Result<Record, BadRecord>, A),
    Done(Result<(), ConnectorError>),
}

/// The sending half a [`PushSource::run`] fills; bounded, so a slow sink
/// slows `run` down instead of growing memory.
pub struct Pusher<A> {
    tx: mpsc::Sender<Event<A>>,
}

/// The reader is gone (shutdown, or the runtime reopens the stream):
/// [`PushSource::run`] should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's reader is closed")]
pub struct PushClosed;

impl<A: Send> Pusher<A> {
    /// Sends a record and what acknowledges it; waits while the channel is full.
    pub async fn send(&self, record: Record, ack: A) -> Result<(), PushClosed> {
        self.tx
            .send(Event::Message(Ok(record), ack))
            .await
            .map_err(|_| PushClosed)
    }

    /// Sends input that could not become a record (the bad-record policy
    /// decides); it is acknowledged like a record once handled.
    pub async fn send_bad(&self, bad: BadRecord, ack: A) -> Result<(), PushClosed> {
        self.tx
            .send(Event::Message(Err(bad), ack))
            .await
            .map_err(|_| PushClosed)
    }

    /// True once the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A push stream's checkpoint: how many messages were delivered in all.
/// The position is the upstream's (what it has not had acknowledged); the
/// count only tells commits apart.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Delivered {
    delivered: u64,
}

/// A [`PushSource`] as a full [`Source`]; see [`crate::push_type`].
pub struct Push<P> {
    inner: Arc<P>,
    batch_size: usize,
}

impl<P: PushSource> Push<P> {
    pub fn new(source: P, batch_size: usize) -> Self {
        Push {
            inner: Arc::new(source),
            batch_size: batch_size.max(1),
        }
    }
}

#[async_trait]
impl<P: PushSource> Source for Push<P> {
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
        // A checkpoint that is not ours only costs the count, not data.
        let delivered = checkpoint
            .and_then(|c| c.to_state::<Delivered>().ok())
            .unwrap_or_default()
            .delivered;
        let (tx, rx) = mpsc::channel(self.batch_size);
        let source = Arc::clone(&self.inner);
        let spec = stream.clone();
        let task = tokio::spawn(async move {
            let done_tx = tx.clone();
            let result = source.run(&spec, Pusher { tx }).await;
            let _ = done_tx.send(Event::Done(result)).await;
        });
        Ok(Box::new(PushReader {
            source: Arc::clone(&self.inner),
            stream: stream.clone(),
            rx,
            task,
            delivered,
            pending: VecDeque::new(),
            batch_size: self.batch_size,
            done: None,
        }))
    }

    fn health(&self) -> Health {
        self.inner.health()
    }
}

struct PushReader<P: PushSource> {
    source: Arc<P>,
    stream: StreamSpec,
    rx: mpsc::Receiver<Event<P::Ack>>,
    task: tokio::task::JoinHandle<()>,
    delivered: u64,
    /// Acknowledgements of delivered, not yet committed messages, by count.
    pending: VecDeque<(u64, P::Ack)>,
    batch_size: usize,
    /// `run` returned: its result, handed out after the messages before it.
    done: Option<Result<(), ConnectorError>>,
}

impl<P: PushSource> Drop for PushReader<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl<P: PushSource> StreamReader for PushReader<P> {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        match self.done.take() {
            Some(Ok(())) => {
                self.done = Some(Ok(()));
                return Ok(Poll::End);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
        // `recv` is cancel-safe and nothing after it awaits, so a poll
        // dropped by the runtime (a commit came in, or shutdown) loses nothing.
        let first = match tokio::time::timeout(IDLE_AFTER, self.rx.recv()).await {
            Err(_) => return Ok(Poll::Idle),
            Ok(None) => {
                return Err(ConnectorError::fatal(format!(
                    "stream `{}`: the push task ended without a result",
                    self.stream.name
                )))
            }
            Ok(Some(event)) => event,
        };
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                Event::Message(message, ack) => {
                    self.delivered += 1;
                    self.pending.push_back((self.delivered, ack));
                    match message {
                        Ok(r) => records.push(r),
                        Err(b) => bad.push(b),
                    }
                }
                Event::Done(result) => {
                    self.done = Some(result);
                    break;
                }
            }
            if records.len() + bad.len() < self.batch_size {
                next = self.rx.try_recv().ok();
            }
        }
        if records.is_empty() && bad.is_empty() {
            return match self.done.take() {
                Some(Err(e)) => Err(e),
                _ => {
                    self.done = Some(Ok(()));
                    Ok(Poll::End)
                }
            };
        }
        let checkpoint = Checkpoint::from_state(&Delivered {
            delivered: self.delivered,
        });
        let mut batch = Batch::new(records, checkpoint, LoadMode::Incremental);
        batch.bad_records = bad;
        Ok(Poll::Batch(batch))
    }

    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let Ok(upto) = checkpoint.to_state::<Delivered>() else {
            return Ok(());
        };
        let mut acks = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|(n, _)| *n <= upto.delivered)
        {
            if let Some((_, ack)) = self.pending.pop_front() {
                acks.push(ack);
            }
        }
        if acks.is_empty() {
            return Ok(());
        }
        self.source.ack(&self.stream, acks).await
    }

    fn commits_interrupt_poll(&self) -> bool {
        true
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.task.abort();
        Ok(())
    }
}
