//! `/metrics`: every metric of every connector, in OpenMetrics or the
//! classic Prometheus text format as the scraper's `Accept` asks;
//! docs/monitoring.md lists them.

use super::AdminState;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tributary_metrics::prometheus;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = prometheus::Format::negotiate(accept);
    let text = prometheus::render(&state.metrics, state.clock.now(), format);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        text,
    )
}
