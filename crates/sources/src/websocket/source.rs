//! The `websocket` [`Source`] and its [`StreamReader`].

use super::config::{self, Settings};
use super::connection::{self, Event};
use crate::push;
use crate::SourceContext;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, Batch, Checkpoint, ConnectorError, LoadMode, Poll, Source, StreamReader,
    StreamSpec,
};

/// Streams messages from a WebSocket server; see the [module docs](super).
#[derive(Debug)]
pub struct WebSocketSource {
    settings: Arc<Settings>,
}

/// A WebSocket stream's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WsCheckpoint {
    /// Messages handed to the sink so far, over every run (bad ones too):
    /// progress for `tributary state`, and the numbering of bad-record
    /// locations.
    pub messages: u64,
    /// The last resume token seen (`resume_field`), sent on reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Value>,
}

impl WebSocketSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(WebSocketSource {
            settings: Arc::new(config::resolve(section, ctx.batch_size)?),
        })
    }

    fn spec(&self) -> StreamSpec {
        let mut spec = StreamSpec::new(self.settings.stream.clone());
        if let Some(id) = &self.settings.rules.id_field {
            spec.primary_key = vec![id.clone()];
        }
        spec
    }
}

/// How long a poll waits for a first message before reporting `Idle`.

#[async_trait]
impl Source for WebSocketSource {
    /// Connects (handshake and authentication), sends nothing, closes.
    async fn check(&self) -> Result<(), ConnectorError> {
        let mut probe = (*self.settings).clone();
        probe.subscribe.clear();
        let (mut ws, _) = connection::connect(&probe, None)
            .await
            .map_err(|e| e.into_connector_error())?;
        let _ = ws.close(None).await;
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(vec![self.spec()])
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        if stream.name != self.settings.stream {
            return Err(ConnectorError::config(format!(
                "the websocket source has one stream, `{}`; there is no stream `{}`",
                self.settings.stream, stream.name
            )));
        }
        let state = match checkpoint {
            Some(c) => c.to_state::<WsCheckpoint>().map_err(|e| {
                ConnectorError::fatal(format!(
                    "stream `{}`: the stored checkpoint is not a websocket checkpoint ({e}): {}",
                    stream.name,
                    c.as_json()
                ))
            })?,
            None => WsCheckpoint::default(),
        };
        // Enough for two batches: the socket is read while a batch is written.
        let (tx, rx) = mpsc::channel(self.settings.batch_size.saturating_mul(2).max(16));
        let task = tokio::spawn(connection::run(
            self.settings.clone(),
            state.resume.clone(),
            state.messages,
            tx,
        ));
        Ok(Box::new(WsReader {
            rx,
            _task: AbortOnDropHandle::new(task),
            state,
            batch_size: self.settings.batch_size,
            failed: None,
        }))
    }
}

/// Hands the messages the connection task received to the runtime, in
/// batches of whatever arrived, up to `batch_size`.
pub struct WsReader {
    rx: mpsc::Receiver<Event>,
    /// Aborted (the connection dropped) when the reader is.
    _task: AbortOnDropHandle<()>,
    state: WsCheckpoint,
    batch_size: usize,
    /// The connection task's final error, returned after the batch before it.
    failed: Option<ConnectorError>,
}

#[async_trait]
impl StreamReader for WsReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let state = &mut self.state;
        let drained = push::drain(
            &mut self.rx,
            self.batch_size,
            &mut self.failed,
            "websocket connection task",
            |resume| {
                state.messages += 1;
                if resume.is_some() {
                    state.resume = resume;
                }
            },
        )
        .await?;
        let Some(push::Drained { records, bad }) = drained else {
            return Ok(Poll::Idle);
        };
        let mut batch = Batch::new(
            records,
            Checkpoint::from_state(&self.state),
            LoadMode::Incremental,
        );
        batch.bad_records = bad;
        Ok(Poll::Batch(batch))
    }

    /// `poll` only awaits the connection task's channel (`push::drain`),
    /// so dropping it loses nothing: the runtime may interrupt a quiet
    /// feed's poll to deliver a commit, and keeps this reader (and its
    /// connection) instead of reopening one, which for a server without a
    /// resume point would start live and miss what this one received.
    fn commits_interrupt_poll(&self) -> bool {
        true
    }
}
