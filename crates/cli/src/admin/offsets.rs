//! Kafka Connect's offsets API (KIP-875) over our checkpoints, so the tools
//! and runbooks written for it work here: `GET|PATCH|DELETE
//! /connectors/{name}/offsets` and `PUT /connectors/{name}/stop|resume`.
//!
//! A checkpoint is one offset whose partition is `{"stream": NAME}`. Changes
//! are refused unless the connector is stopped (Kafka Connect's STOPPED),
//! so nothing commits over them; they take effect when it resumes. Request
//! and error bodies have Kafka Connect's shapes (`{"error_code", "message"}`).

use super::error::{api_error, error, ApiError};
use super::AdminState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_core::Checkpoint;
use tributary_runtime::ConnectorHandle;
use tributary_state::ops;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route(
            "/connectors/{name}/offsets",
            get(list).patch(alter).delete(reset),
        )
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/resume", put(resume))
}

/// One entry of Kafka Connect's `{"offsets": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectOffset {
    partition: Partition,
    /// `null` in a PATCH removes the stream's checkpoint.
    offset: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partition {
    stream: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectOffsets {
    offsets: Vec<ConnectOffset>,
}

fn message(text: &str) -> Response {
    (StatusCode::OK, Json(json!({ "message": text }))).into_response()
}

pub(super) fn find(state: &AdminState, name: &str) -> Result<Arc<ConnectorHandle>, ApiError> {
    state
        .connector(name)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, format!("Connector {name} not found")))
}

/// Kafka Connect's refusal, word for word but for the endpoint's host.
fn require_halted(handle: &ConnectorHandle) -> Result<(), ApiError> {
    if handle.is_halted() {
        return Ok(());
    }
    let name = handle.name();
    Err(api_error(
        StatusCode::BAD_REQUEST,
        format!(
            "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
        ),
    ))
}

fn storage_error(e: tributary_state::StateError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        tributary_core::secret::redact(&e.to_string()),
    )
}

async fn list(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let handle = match find(&state, &name) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    match handle.state_store().load_all().await {
        Ok(all) => Json(ConnectOffsets {
            offsets: all
                .into_iter()
                .map(|c| ConnectOffset {
                    partition: Partition { stream: c.stream },
                    offset: Some(c.checkpoint.0),
                })
                .collect(),
        })
        .into_response(),
        Err(e) => storage_error(e),
    }
}

async fn alter(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Result<Json<ConnectOffsets>, JsonRejection>,
) -> Response {
    let handle = match find(&state, &name) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be {{\"offsets\": [{{\"partition\": {{\"stream\": NAME}}, \"offset\": CHECKPOINT or null}}]}}: {}",
                    e.body_text()
                ),
            )
        }
    };
    if let Err(r) = require_halted(&handle) {
        return r.into_response();
    }
    if request.offsets.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the offsets list is empty; nothing to alter",
        );
    }
    // Streams the connector ran: a typo must not plant a checkpoint nobody reads.
    let known: Vec<String> = handle.streams().into_iter().map(|s| s.stream).collect();
    if let Some(unknown) = request
        .offsets
        .iter()
        .find(|o| !known.is_empty() && !known.contains(&o.partition.stream))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "connector {name} has no stream `{}`; its streams: {}",
                unknown.partition.stream,
                known.join(", ")
            ),
        );
    }
    let store = handle.state_store();
    let current = match store.load_all().await {
        Ok(all) => all,
        Err(e) => return storage_error(e),
    };
    let now = handle.now();
    let mut writes = Vec::new();
    let mut removals = Vec::new();
    for o in request.offsets {
        match o.offset {
            Some(value) => {
                let previous = current.iter().find(|c| c.stream == o.partition.stream);
                writes.push(ops::operator_entry(
                    &o.partition.stream,
                    Checkpoint(value),
                    previous,
                    now,
                ));
            }
            None => removals.push(o.partition.stream),
        }
    }
    if !writes.is_empty() {
        if let Err(e) = store.put(&writes).await {
            return storage_error(e);
        }
    }
    for stream in &removals {
        if let Err(e) = store.reset(Some(stream)).await {
            return storage_error(e);
        }
    }
    tracing::info!(connector = %name, altered = writes.len(), removed = removals.len(), "offsets altered through the admin server");
    message("The offsets for this connector have been altered successfully")
}

async fn reset(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let handle = match find(&state, &name) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = require_halted(&handle) {
        return r.into_response();
    }
    match handle.state_store().reset(None).await {
        Ok(removed) => {
            tracing::info!(connector = %name, removed, "offsets reset through the admin server");
            message("The offsets for this connector have been reset successfully")
        }
        Err(e) => storage_error(e),
    }
}

/// 202 at once, as Kafka Connect answers: the connector drains and commits
/// in the background; its status says `STOPPED` when offsets may change.
async fn stop(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    halt(&state, &name, "stop", ConnectorHandle::request_stop)
}

/// An operator's stop or pause (`request`), answered 202 at once.
pub(super) fn halt(
    state: &AdminState,
    name: &str,
    what: &str,
    request: fn(&ConnectorHandle) -> bool,
) -> Response {
    let handle = match find(state, name) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    if !request(&handle) {
        return error(
            StatusCode::CONFLICT,
            "the process is shutting down; the connector is stopping anyway",
        );
    }
    tracing::info!(connector = %name, "{what} requested through the admin server");
    StatusCode::ACCEPTED.into_response()
}

async fn resume(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let handle = match find(&state, &name) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    if handle.request_resume() {
        tracing::info!(connector = %name, "resume requested through the admin server");
    }
    // Resuming a connector that runs is a no-op in Kafka Connect too.
    StatusCode::ACCEPTED.into_response()
}
