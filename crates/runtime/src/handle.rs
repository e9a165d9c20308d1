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
use tokio_util::sync::CancellationToken;
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
    stop: CancellationToken,
    phase: Mutex<ConnectorPhase>,
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
            stop: env.shutdown.child_token(),
            phase: Mutex::new(ConnectorPhase::Starting),
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
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_phase(&self, phase: ConnectorPhase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
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

    /// Cancelling it stops this connector alone, as a shutdown would: its
    /// streams stop reading and the sink drains and commits.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }
}
