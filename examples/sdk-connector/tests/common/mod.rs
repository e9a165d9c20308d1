//! A local feed and queue API on 127.0.0.1 for the tests: events are a
//! pure function of their id (so a long feed costs no memory), messages
//! are deleted when acknowledged, and every mutating request is logged.

#![allow(dead_code)]

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Api {
    /// Events 1..=count.
    pub events: u64,
    /// Bytes of padding in each event.
    pub pad: usize,
    /// Every seventh event is not an object.
    pub garbage: bool,
    /// Messages 1..=messages, minus the deleted.
    pub messages: u64,
    pub deleted: BTreeSet<u64>,
    /// The next this many requests answer 503.
    pub fail_next: u32,
    pub token: Option<String>,
    /// Mutating requests, in order.
    pub writes: Vec<String>,
}

#[derive(Clone)]
pub struct Server {
    pub url: String,
    pub api: Arc<Mutex<Api>>,
}

impl Server {
    pub fn api(&self) -> std::sync::MutexGuard<'_, Api> {
        self.api.lock().unwrap()
    }
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    after: u64,
    #[serde(default = "hundred")]
    limit: u64,
}

fn hundred() -> u64 {
    100
}

pub fn event(id: u64, pad: usize) -> Value {
    let kinds = ["signup", "login", "purchase", "logout"];
    json!({ "id": id, "kind": kinds[(id % 4) as usize], "pad": "x".repeat(pad) })
}

type Shared = Arc<Mutex<Api>>;

/// The auth and fault gate in front of every route.
fn gate(api: &mut Api, headers: &HeaderMap) -> Option<Response> {
    if api.fail_next > 0 {
        api.fail_next -= 1;
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "0")],
                "busy",
            )
                .into_response(),
        );
    }
    if let Some(token) = &api.token {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(format!("Bearer {token}").as_str()) {
            return Some((StatusCode::UNAUTHORIZED, "no").into_response());
        }
    }
    None
}

async fn health(State(api): State<Shared>, headers: HeaderMap) -> Response {
    let mut api = api.lock().unwrap();
    gate(&mut api, &headers).unwrap_or_else(|| Json(json!({"ok": true})).into_response())
}

async fn events(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let mut api = api.lock().unwrap();
    if let Some(r) = gate(&mut api, &headers) {
        return r;
    }
    let last = (p.after + p.limit).min(api.events);
    let page: Vec<Value> = (p.after + 1..=last)
        .map(|id| {
            if api.garbage && id % 7 == 3 {
                json!(["not", "an", "event"])
            } else {
                event(id, api.pad)
            }
        })
        .collect();
    let next = if page.is_empty() { None } else { Some(last) };
    Json(json!({ "events": page, "next_after": next, "has_more": last < api.events }))
        .into_response()
}

async fn queue(State(api): State<Shared>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let mut api = api.lock().unwrap();
    if let Some(r) = gate(&mut api, &headers) {
        return r;
    }
    let messages: Vec<Value> = (p.after + 1..=api.messages)
        .filter(|id| !api.deleted.contains(id))
        .take(p.limit as usize)
        .map(|id| json!({ "id": id, "body": { "n": id, "text": format!("message {id}") } }))
        .collect();
    Json(json!({ "messages": messages })).into_response()
}

#[derive(Deserialize)]
struct Ack {
    ids: Vec<u64>,
}

async fn ack(State(api): State<Shared>, headers: HeaderMap, Json(ack): Json<Ack>) -> Response {
    let mut api = api.lock().unwrap();
    if let Some(r) = gate(&mut api, &headers) {
        return r;
    }
    api.writes.push(format!("ack {:?}", ack.ids));
    api.deleted.extend(ack.ids);
    StatusCode::NO_CONTENT.into_response()
}

pub async fn start(api: Api) -> Server {
    let api = Arc::new(Mutex::new(api));
    let app = Router::new()
        .route("/health", get(health))
        .route("/events", get(events))
        .route("/queue", get(queue))
        .route("/queue/ack", post(ack))
        .with_state(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, api }
}

/// A connector file for `kind` against `server`, with `extra` in `[source]`.
pub fn config(kind: &str, server: &Server, extra: &str) -> String {
    format!(
        "name = \"example\"\n\n[source]\ntype = \"{kind}\"\nurl = \"{}\"\n{extra}\n\n[sink]\ntype = \"file\"\ndir = \"out\"\n",
        server.url
    )
}
