//! `/metrics`: every metric of every connector in the Prometheus
//! (OpenMetrics) text format; docs/monitoring.md lists them.

use super::AdminState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tributary_metrics::prometheus;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let text = prometheus::render(&state.metrics, state.clock.now());
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text)
}
