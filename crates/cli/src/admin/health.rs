//! `/health` (liveness, freshness) and `/ready` (readiness), open to probes
//! that cannot send a token: they name connectors and streams, no data.

use super::AdminState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_metrics::StreamStatus;
use tributary_runtime::ConnectorPhase;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// 200 while every connector is alive and every stream fresh; 503 naming
/// stale streams (checkpoint older than `max_staleness`), streams a source
/// marked stuck, and failed connectors — the alarm seed 004 lacked.
async fn health(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Value>) {
    let now = state.clock.now();
    let (mut stale, mut stuck, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for c in &state.connectors {
        if let ConnectorPhase::Failed { reason } = c.phase() {
            failed.push(json!({"connector": c.name(), "reason": reason}));
        }
        for s in c.streams() {
            if let StreamStatus::Stuck { reason } = &s.status {
                stuck.push(json!({"connector": c.name(), "stream": s.stream, "reason": reason}));
            } else if let Some(age) = s.staleness(now) {
                stale.push(json!({
                    "connector": c.name(),
                    "stream": s.stream,
                    "checkpoint_age_seconds": age.as_secs(),
                    "max_staleness_seconds": s.max_staleness.map(|m| m.as_secs()),
                    "reason": s.stuck_reason(now),
                }));
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
    let phases: serde_json::Map<String, Value> = state
        .connectors
        .iter()
        .map(|c| {
            let phase = serde_json::to_value(c.phase()).unwrap_or(Value::Null);
            (c.name().to_string(), phase["phase"].clone())
        })
        .collect();
    let ready = state
        .connectors
        .iter()
        .all(|c| matches!(c.phase(), ConnectorPhase::Running | ConnectorPhase::Stopped));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"ready": ready, "connectors": phases})))
}
