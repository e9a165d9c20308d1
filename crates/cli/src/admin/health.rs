//! The probes, open to callers that cannot send a token (they name
//! connectors and streams, no data), three questions kept apart so each
//! can be wired to what it should trigger (docs/monitoring.md):
//!
//! - `/live`: does the process work? 200 while it serves. A Kubernetes
//!   liveness probe: failing it restarts the process, which cures a hung
//!   process but never an API that is down, so nothing else is in it.
//! - `/ready`: did every connector get past start-up? 503 while one is
//!   starting or after one stopped with an error. A readiness probe.
//! - `/health`: is the data fresh? 503 naming every failed, stuck or stale
//!   stream (and failed connector). For alerts, not for restarts.

use super::AdminState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_metrics::{StreamState, Trouble};
use tributary_runtime::ConnectorPhase;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/health", get(health))
}

/// 200 as long as the process answers: the admin server runs on the same
/// runtime as the connectors, so an answer means that runtime is not wedged.
async fn live(State(state): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({
        "status": "alive",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

/// 200 while every stream is fresh; 503 naming failed streams (with the
/// error), stuck ones (with the reason), stale ones (position older than
/// `max_staleness`) and failed connectors. Failed and stuck hold until the
/// stream really advances, so a stream that keeps retrying stays listed.
async fn health(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Value>) {
    let now = state.clock.now();
    let (mut stale, mut stuck, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for c in state.connectors.list().iter() {
        if let ConnectorPhase::Failed { reason } = c.phase() {
            failed.push(json!({"connector": c.name(), "reason": reason}));
        }
        for s in c.streams() {
            match s.state(now) {
                StreamState::Failed => {
                    let at = match &s.trouble {
                        Some(Trouble::Failed { at, .. }) => Some(*at),
                        _ => None,
                    };
                    failed.push(json!({
                        "connector": c.name(),
                        "stream": s.stream,
                        "reason": s.failed_reason().map(tributary_core::secret::redact),
                        "at": at,
                    }));
                }
                StreamState::Stuck => stuck.push(json!({
                    "connector": c.name(),
                    "stream": s.stream,
                    "reason": s.stuck_reason(now),
                })),
                StreamState::Stale => stale.push(json!({
                    "connector": c.name(),
                    "stream": s.stream,
                    "checkpoint_age_seconds": s.staleness(now).map(|a| a.as_secs()),
                    "max_staleness_seconds": s.max_staleness.map(|m| m.as_secs()),
                    "reason": s.stuck_reason(now),
                })),
                _ => {}
            }
        }
    }
    let healthy = stale.is_empty() && stuck.is_empty() && failed.is_empty();
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "stale": stale,
        "stuck": stuck,
        "failed": failed,
    });
    (code, Json(body))
}

/// 200 once every connector got past start-up (streams discovered, sink
/// checkpoints read); 503 while one is starting or after one failed.
async fn ready(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Value>) {
    let connectors = state.connectors.list();
    let phases: serde_json::Map<String, Value> = connectors
        .iter()
        .map(|c| {
            let phase = serde_json::to_value(c.phase()).unwrap_or(Value::Null);
            (c.name().to_string(), phase["phase"].clone())
        })
        .collect();
    let ready = connectors.iter().all(|c| {
        matches!(
            c.phase(),
            ConnectorPhase::Running | ConnectorPhase::Stopped | ConnectorPhase::Paused
        )
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"ready": ready, "connectors": phases})))
}
