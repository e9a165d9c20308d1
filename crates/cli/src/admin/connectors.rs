//! `/connectors` (every connector and stream) and
//! `/connectors/{name}/status` (one), as JSON ([`super::view`]).

use super::view::{connector_view, status_view, ConnectorView, StatusView};
use super::AdminState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/connectors", get(all))
        .route("/connectors/{name}/status", get(one))
}

async fn all(State(state): State<Arc<AdminState>>) -> Json<StatusView> {
    Json(status_view(&state))
}

async fn one(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<ConnectorView>, (StatusCode, Json<Value>)> {
    let Some(c) = state.connector(&name) else {
        let known: Vec<&str> = state.connectors.iter().map(|c| c.name()).collect();
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": format!("no connector `{name}` in this process; running: {}", known.join(", "))
            })),
        ));
    };
    Ok(Json(connector_view(c, state.clock.now(), &state.rates)))
}
