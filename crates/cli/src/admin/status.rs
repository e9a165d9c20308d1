//! `/status` (every connector and stream) and `/status/{name}` (one), as
//! JSON ([`super::view`]): tributary's own view, richer than Kafka
//! Connect's `/connectors/{name}/status` ([`super::connect`]).

use super::error::{api_error, ApiError};
use super::view::{connector_view, status_view, ConnectorView, StatusView};
use super::AdminState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/status", get(all))
        .route("/status/{name}", get(one))
}

async fn all(State(state): State<Arc<AdminState>>) -> Json<StatusView> {
    Json(status_view(&state))
}

async fn one(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<ConnectorView>, ApiError> {
    let Some(c) = state.connector(&name) else {
        let connectors = state.connectors.list();
        let known: Vec<&str> = connectors.iter().map(|c| c.name()).collect();
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("Connector {name} not found; running: {}", known.join(", ")),
        ));
    };
    Ok(Json(connector_view(&c, state.clock.now(), &state.rates)))
}
