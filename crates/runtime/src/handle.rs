//! A running connector as seen from outside the runtime (the admin server,
//! `tributary status`): its stats, freshness setting, lifecycle and state
//! store, and a switch to stop it alone.
//!
//! One handle per connector, created before it starts so the admin server
//! can report "starting" while a slow source discovers its streams. The
//! state store and the stop token are here so operations on one connector
//! (offsets, stop/resume) need nothing but its handle.

use crate::connector::{ConnectorParts, RuntimeEnv};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tributary_config::ConfigDocument;
use tributary_core::Clock;
use tributary_metrics::{ConnectorStats, Registry, StreamSnapshot};
use tributary_state::StateStore;

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum ConnectorPhase {
    /// Discovering streams, reading the sink's stored checkpoints.
    Starting,
    /// Its streams are running (or waiting for their schedules).
    Running,
    /// Ended without error: every stream finished, or it was stopped.
    Stopped,
    /// Stopped by an operator's pause (Kafka Connect's PAUSED): it drained
    /// and committed and waits for a resume; unlike a stop, its offsets
    /// stay locked.
    Paused,
    /// Ended by an error; the message is free of secrets.
    Failed { reason: String },
}

pub struct ConnectorHandle {
    name: String,
    source_type: String,
    sink_type: String,
    max_staleness: Option<Duration>,
    metrics: Registry,
    stats: Arc<ConnectorStats>,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    /// The whole process's shutdown: every run's stop token is its child.
    shutdown: CancellationToken,
    control: Mutex<Control>,
    resumed: Notify,
    phase: Mutex<ConnectorPhase>,
    /// The config file the current run was built from, as written (its
    /// `${VAR}` references unresolved), for the config the admin server shows.
    document: Mutex<Arc<ConfigDocument>>,
}

/// The operator's switch (`PUT /connectors/{name}/stop|pause|resume`,
/// `POST /connectors/{name}/restart`).
struct Control {
    /// Stops the current run; replaced by a fresh one on resume or restart,
    /// since a cancelled token stays cancelled.
    stop: CancellationToken,
    /// What an operator asked the current run's end to lead to; `None`
    /// when it ends for its own reasons.
    request: Option<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// Wait, STOPPED, for a resume; offsets may change meanwhile.
    Stop,
    /// Wait, PAUSED, for a resume.
    Pause,
    /// Run again at once from the committed checkpoints.
    Restart,
}

impl std::fmt::Debug for ConnectorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorHandle")
            .field("name", &self.name)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl ConnectorHandle {
    pub fn new(parts: &ConnectorParts, env: &RuntimeEnv) -> Arc<ConnectorHandle> {
        let config = &parts.config;
        let stats = env.metrics.connector(&config.name);
        stats.set_max_staleness(config.runtime.max_staleness);
        Arc::new(ConnectorHandle {
            name: config.name.clone(),
            source_type: config.source.kind.clone(),
            sink_type: config.sink.kind.clone(),
            max_staleness: config.runtime.max_staleness,
            metrics: env.metrics.clone(),
            stats,
            state: parts.state.clone(),
            clock: env.clock.clone(),
            shutdown: env.shutdown.clone(),
            control: Mutex::new(Control {
                stop: env.shutdown.child_token(),
                request: None,
            }),
            resumed: Notify::new(),
            phase: Mutex::new(ConnectorPhase::Starting),
            document: Mutex::new(config.document.clone()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `[source] type`.
    pub fn source_type(&self) -> &str {
        &self.source_type
    }

    /// The `[sink] type`.
    pub fn sink_type(&self) -> &str {
        &self.sink_type
    }

    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    pub fn phase(&self) -> ConnectorPhase {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match phase {
            ConnectorPhase::Stopped if self.control().request == Some(Request::Pause) => {
                ConnectorPhase::Paused
            }
            other => other,
        }
    }

    pub(crate) fn set_phase(&self, phase: ConnectorPhase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// The config file of the current run, as written.
    pub fn config_document(&self) -> Arc<ConfigDocument> {
        self.document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_config_document(&self, document: Arc<ConfigDocument>) {
        *self.document.lock().unwrap_or_else(|e| e.into_inner()) = document;
    }

    /// Its streams' stats, ordered by stream name.
    pub fn streams(&self) -> Vec<StreamSnapshot> {
        self.metrics
            .snapshot()
            .into_iter()
            .filter(|s| s.connector == self.name)
            .collect()
    }

    /// The connector-wide counters, also the sources' metrics handle.
    pub fn stats(&self) -> &Arc<ConnectorStats> {
        &self.stats
    }

    /// The store its checkpoints are committed to (held open, and locked,
    /// by this process while the connector runs).
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// "Now" on the runtime's clock, which freshness is judged against.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancelling it stops this connector's current run alone, as a shutdown
    /// would: its streams stop reading and the sink drains and commits.
    pub fn stop_token(&self) -> CancellationToken {
        self.control().stop.clone()
    }

    /// An operator's stop (Kafka Connect's `PUT /connectors/{name}/stop`):
    /// the run drains and commits, then the connector waits, STOPPED, for
    /// [`ConnectorHandle::request_resume`], so its offsets can be changed
    /// with nothing writing them. Returns false when the process is
    /// shutting down anyway.
    pub fn request_stop(&self) -> bool {
        self.request(Request::Stop)
    }

    /// An operator's pause (`PUT /connectors/{name}/pause`): as a stop, but
    /// the connector is PAUSED and its offsets may not be changed.
    pub fn request_pause(&self) -> bool {
        self.request(Request::Pause)
    }

    /// An operator's restart (`POST /connectors/{name}/restart`): the run
    /// drains and commits, and the connector runs again at once from its
    /// committed checkpoints (re-reading its config file), which retries
    /// failed streams now rather than at their next schedule. A stopped or
    /// paused connector stays so, as in Kafka Connect. Returns false when
    /// nothing was restarted.
    pub fn request_restart(&self) -> bool {
        if matches!(self.control().request, Some(Request::Stop | Request::Pause)) {
            return false;
        }
        self.request(Request::Restart)
    }

    fn request(&self, request: Request) -> bool {
        if self.shutdown.is_cancelled() {
            return false;
        }
        let mut control = self.control();
        control.request = Some(request);
        control.stop.cancel();
        true
    }

    /// Undoes [`ConnectorHandle::request_stop`] or
    /// [`ConnectorHandle::request_pause`]: the connector runs again from its
    /// committed checkpoints (including any the operator wrote). Returns
    /// false when it was not stopped or paused by an operator.
    pub fn request_resume(&self) -> bool {
        let mut control = self.control();
        if !matches!(control.request, Some(Request::Stop | Request::Pause))
            || self.shutdown.is_cancelled()
        {
            return false;
        }
        control.request = None;
        control.stop = self.shutdown.child_token();
        drop(control);
        // A stored permit: a resume that lands before the waiter waits is not lost.
        self.resumed.notify_one();
        true
    }

    /// Whether the run that just ended was ended by a restart request;
    /// if so, the next run gets a fresh stop token.
    pub fn take_restart(&self) -> bool {
        let mut control = self.control();
        if control.request != Some(Request::Restart) || self.shutdown.is_cancelled() {
            return false;
        }
        control.request = None;
        control.stop = self.shutdown.child_token();
        true
    }

    /// Whether an operator paused it (it may still be draining).
    pub fn is_paused(&self) -> bool {
        self.control().request == Some(Request::Pause)
    }

    /// Returns once an operator resumed the connector (at once when it is
    /// not stopped or paused by one, or was resumed already).
    pub async fn resumed(&self) {
        while matches!(self.control().request, Some(Request::Stop | Request::Pause)) {
            self.resumed.notified().await;
        }
    }

    /// Whether nothing is running that could commit checkpoints: Kafka
    /// Connect's condition for changing offsets (STOPPED; a failed
    /// connector writes nothing either).
    pub fn is_halted(&self) -> bool {
        matches!(
            self.phase(),
            ConnectorPhase::Stopped | ConnectorPhase::Failed { .. }
        )
    }
}
