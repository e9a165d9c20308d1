//! `/`: the status page, one self-contained HTML file compiled into the
//! binary (no build step, no external assets). It holds no data: it fetches
//! `status` every two seconds, sending the bearer token a person typed
//! in (or put after `#token=` in the URL), so the page itself needs none.

use super::AdminState;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const PAGE: &str = include_str!("status.html");

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}
