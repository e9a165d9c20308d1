//! A worker's admin server answers for the whole cluster, in Kafka
//! Connect's shapes: `GET /connectors[?expand=status|info]` lists every
//! deployed connector with the worker running it, `POST /connectors`,
//! `PUT /connectors/{name}/config` and `DELETE /connectors/{name}` write
//! the config topic (any worker can: Kafka orders the writes), `GET
//! /workers` lists the group's members and `GET /cluster` is what
//! `tributary status --cluster` prints. Every other request about a
//! connector that runs on another worker is forwarded there.

use super::kafka::{self, Deployed};
use super::{Cluster, ConfigEntry};
use crate::admin::error::{api_error, error};
use crate::admin::AdminState;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Marks a forwarded request, so it is answered where it lands.
const FORWARDED: &str = "x-tributary-forwarded";

/// The largest request body forwarded.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// `routes` with forwarding in front of them, and the cluster's routes.
pub fn wrap(routes: Router<Arc<AdminState>>, state: Arc<AdminState>) -> Router<Arc<AdminState>> {
    routes
        .route_layer(axum::middleware::from_fn_with_state(state, forward))
        .merge(
            Router::new()
                .route("/connectors", post(create))
                .route("/connectors/{name}", axum::routing::delete(remove))
                .route("/connectors/{name}/config", put(replace))
                .route("/workers", get(workers))
                .route("/cluster", get(cluster_view)),
        )
}

fn cluster(state: &AdminState) -> &Arc<Cluster> {
    state
        .cluster
        .as_ref()
        .expect("cluster routes are only added for a worker")
}

/// The connector a path is about: `/connectors/{name}[/...]`, `/status/{name}`.
fn connector_of(path: &str) -> Option<String> {
    let mut parts = path.trim_start_matches('/').split('/');
    let name = match (parts.next(), parts.next()) {
        (Some("connectors" | "status"), Some(name)) if !name.is_empty() => name,
        _ => return None,
    };
    percent_decode(name)
}

fn percent_decode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Requests about a connector this worker does not run: forwarded to the
/// worker that does, answered from the config topic when none does yet.
async fn forward(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let Some(name) = connector_of(request.uri().path()) else {
        return next.run(request).await;
    };
    let cluster = cluster(&state);
    let path = request.uri().path().trim_end_matches('/').to_string();
    let method = request.method().clone();
    let status = cluster.status(&name);
    let mine = status
        .as_ref()
        .is_some_and(|s| s.worker == cluster.worker_id);
    // A connector that failed here has ended its run: the worker starts
    // it again (Kafka Connect restarts failed connectors on request).
    if method == axum::http::Method::POST && path == format!("/connectors/{name}/restart") && mine {
        let failed = match state.connector(&name) {
            Some(c) => matches!(c.phase(), tributary_runtime::ConnectorPhase::Failed { .. }),
            None => status
                .as_ref()
                .is_some_and(|s| s.connect["connector"]["state"] == "FAILED"),
        };
        if failed {
            tracing::info!(connector = %name, "restart of a failed connector requested through the admin server");
            cluster.request_restart(&name);
            return StatusCode::NO_CONTENT.into_response();
        }
    }
    if state.connector(&name).is_some() || request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    let Some(entry) = cluster.config(&name) else {
        return next.run(request).await;
    };
    if mine && method == axum::http::Method::GET && path.ends_with("/status") {
        // It could not even be built here: its status says why.
        if let Some(s) = status {
            return Json(s.connect).into_response();
        }
    }
    // The worker that reported it running, else the one holding its slot.
    let mut workers = cluster.live_workers();
    let owner = status
        .and_then(|s| workers.remove(&s.worker))
        .or_else(|| {
            workers
                .into_values()
                .find(|w| w.slots.contains(&entry.slot))
        })
        .filter(|w| w.id != cluster.worker_id);
    if let Some(url) = owner.and_then(|w| w.url) {
        return proxy(&url, request).await;
    }
    // Nobody runs it (yet): what the config topic knows.
    if method == axum::http::Method::GET {
        if path.ends_with("/status") && path.starts_with("/connectors/") {
            return Json(unassigned_status(&name)).into_response();
        }
        if path == format!("/connectors/{name}") {
            return Json(entry_info(&entry)).into_response();
        }
        if path == format!("/connectors/{name}/config") {
            return Json(crate::validate::flatten(&entry.config)).into_response();
        }
    }
    error(
        StatusCode::CONFLICT,
        format!(
            "Connector {name} is deployed in cluster {} but no worker runs it yet (it is being assigned); try again in a few seconds",
            cluster.names.cluster
        ),
    )
}

async fn proxy(base: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = client
        .request(method, format!("{base}{path}"))
        .timeout(std::time::Duration::from_secs(30))
        .header(FORWARDED, "1")
        .body(body.to_vec());
    for (k, v) in &parts.headers {
        if matches!(k.as_str(), "authorization" | "content-type" | "accept") {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    match out.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = r.headers().get("content-type").cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_bytes(c.as_bytes()).ok())
            {
                response.headers_mut().insert("content-type", ct);
            }
            response
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the worker at {base} running this connector did not answer: {}",
                e.without_url()
            ),
        ),
    }
}

fn unassigned_status(name: &str) -> Value {
    json!({
        "name": name,
        "connector": { "state": "UNASSIGNED", "worker_id": "" },
        "tasks": [],
        "type": "source",
    })
}

fn entry_info(entry: &ConfigEntry) -> Value {
    json!({
        "name": entry.name,
        "config": crate::validate::flatten(&entry.config),
        "tasks": [],
        "type": "source",
    })
}

/// Connect's status of `name`: live when this worker runs it, else as its
/// worker last wrote it, else UNASSIGNED.
fn status_of(state: &AdminState, cluster: &Cluster, name: &str) -> Value {
    if let Some(c) = state.connector(name) {
        return crate::admin::connect::status_json(&c, state);
    }
    match cluster.status(name) {
        Some(record) => record.connect,
        None => unassigned_status(name),
    }
}

/// `GET /connectors` for the cluster.
pub fn list(state: &AdminState, cluster: &Cluster, expand: &[String]) -> Json<Value> {
    let configs = cluster.configs();
    if expand.is_empty() {
        return Json(json!(configs.keys().collect::<Vec<_>>()));
    }
    let mut out = Map::new();
    for (name, entry) in &configs {
        let mut e = Map::new();
        if expand.iter().any(|x| x == "status") {
            e.insert("status".into(), status_of(state, cluster, name));
        }
        if expand.iter().any(|x| x == "info") {
            let info = match state.connector(name) {
                Some(c) => crate::admin::connect::info_json(&c),
                None => entry_info(entry),
            };
            e.insert("info".into(), info);
        }
        out.insert(name.clone(), Value::Object(e));
    }
    Json(Value::Object(out))
}

/// The TOML text of a request's config: a string is the TOML file itself,
/// an object Kafka Connect's flat map of dotted keys (what `GET
/// .../config` answers). The connector's name is `name`.
fn config_text(name: &str, config: &Value) -> Result<String, String> {
    let text =
        match config {
            Value::String(text) => text.clone(),
            Value::Object(map) => {
                let mut props = BTreeMap::new();
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    props.insert(k.clone(), v);
                }
                props
                    .entry("name".into())
                    .or_insert_with(|| name.to_string());
                crate::validate::unflattened(&props)?
            }
            _ => return Err(
                "`config` must be the TOML text (a string) or an object of config keys to strings"
                    .into(),
            ),
        };
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("config is not TOML: {}", e.message()))?;
    match doc.get("name").and_then(|n| n.as_str()) {
        Some(n) if n == name => Ok(text),
        Some(n) => Err(format!(
            "the config's name `{n}` is not the connector's name `{name}`"
        )),
        None => Ok(format!("name = {}\n{text}", toml_edit::Value::from(name))),
    }
}

async fn write(
    cluster: &Cluster,
    name: &str,
    text: &str,
) -> Result<(Deployed, ConfigEntry), Response> {
    if let Err(e) = super::check_text(
        std::path::Path::new(&format!("{name}.toml")),
        &cluster.names,
        &cluster.bootstrap,
        name,
        text,
    ) {
        return Err(error(StatusCode::BAD_REQUEST, e));
    }
    kafka::deploy(&cluster.bootstrap, &cluster.names, name, text)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}

/// `POST /connectors` with `{"name": ..., "config": ...}`: 201 and the
/// connector's info; 409 when it exists.
async fn create(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let cluster = cluster(&state);
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"name\": ..., \"config\": ...}",
        );
    };
    let Some(name) = body.get("name").and_then(Value::as_str).map(str::to_string) else {
        return error(StatusCode::BAD_REQUEST, "the body has no `name`");
    };
    let Some(config) = body.get("config") else {
        return error(StatusCode::BAD_REQUEST, "the body has no `config`");
    };
    if cluster.config(&name).is_some() {
        return error(
            StatusCode::CONFLICT,
            format!("Connector {name} already exists"),
        );
    }
    let text = match config_text(&name, config) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match write(cluster, &name, &text).await {
        Ok((_, entry)) => {
            tracing::info!(connector = %name, slot = entry.slot, "deployed through the admin server");
            (StatusCode::CREATED, Json(entry_info(&entry))).into_response()
        }
        Err(r) => r,
    }
}

/// `PUT /connectors/{name}/config`: creates (201) or changes (200) it.
async fn replace(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let cluster = cluster(&state);
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "the body must be the config as JSON: an object of keys to strings, or the TOML text as a string");
    };
    let text = match config_text(&name, &body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match write(cluster, &name, &text).await {
        Ok((outcome, entry)) => {
            tracing::info!(connector = %name, version = entry.version, ?outcome, "config written through the admin server");
            let code = if outcome == Deployed::Created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, Json(entry_info(&entry))).into_response()
        }
        Err(r) => r,
    }
}

/// `DELETE /connectors/{name}`: 204; the worker running it stops it.
async fn remove(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let cluster = cluster(&state);
    if cluster.config(&name).is_none() {
        return api_error(StatusCode::NOT_FOUND, format!("Connector {name} not found"))
            .into_response();
    }
    match kafka::undeploy(&cluster.bootstrap, &cluster.names, &name).await {
        Ok(()) => {
            tracing::info!(connector = %name, "undeployed through the admin server");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// The group's members (the broker's view) with what their records say.
async fn workers_json(cluster: &Arc<Cluster>) -> Result<Vec<Value>, Response> {
    let (b, n) = (cluster.bootstrap.clone(), cluster.names.clone());
    let members = tokio::task::spawn_blocking(move || kafka::members(&b, &n))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    let records = cluster.live_workers();
    let configs = cluster.configs();
    let mut out: Vec<Value> = members
        .into_iter()
        .map(|(id, host)| {
            let record = records.get(&id);
            let slots = record.map(|r| r.slots.clone()).unwrap_or_default();
            let connectors: Vec<&str> = configs
                .values()
                .filter(|e| slots.contains(&e.slot))
                .map(|e| e.name.as_str())
                .collect();
            json!({
                "worker_id": id,
                "host": host,
                "url": record.and_then(|r| r.url.clone()),
                "pid": record.map(|r| r.pid),
                "started_at": record.map(|r| r.started_at),
                "slots": slots,
                "connectors": connectors,
            })
        })
        .collect();
    out.sort_by(|a, b| a["worker_id"].as_str().cmp(&b["worker_id"].as_str()));
    Ok(out)
}

/// `GET /workers`: the members of the cluster's consumer group.
async fn workers(State(state): State<Arc<AdminState>>) -> Response {
    match workers_json(cluster(&state)).await {
        Ok(w) => Json(Value::Array(w)).into_response(),
        Err(r) => r,
    }
}

/// `GET /cluster`: the workers, every connector with its slot, version,
/// worker and Connect state, and tributary's stream view of each running one.
async fn cluster_view(State(state): State<Arc<AdminState>>) -> Response {
    let cluster = cluster(&state);
    let workers = match workers_json(cluster).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = chrono::Utc::now();
    let mut connectors = Vec::new();
    let mut views = Vec::new();
    for (name, entry) in cluster.configs() {
        let (status, view) = match state.connector(&name) {
            Some(c) => (
                crate::admin::connect::status_json(&c, &state),
                serde_json::to_value(crate::admin::view::connector_view(
                    &c,
                    state.clock.now(),
                    &state.rates,
                ))
                .unwrap_or(Value::Null),
            ),
            None => match cluster.status(&name) {
                Some(r) => (r.connect, r.view),
                None => (unassigned_status(&name), Value::Null),
            },
        };
        if !view.is_null() {
            views.push(view);
        }
        connectors.push(json!({
            "name": name,
            "slot": entry.slot,
            "version": entry.version,
            "state": status["connector"]["state"],
            "worker_id": status["connector"]["worker_id"],
            "trace": status["connector"].get("trace"),
        }));
    }
    Json(json!({
        "cluster": cluster.names.cluster,
        "workers": workers,
        "connectors": connectors,
        "status": { "now": now, "version": env!("CARGO_PKG_VERSION"), "connectors": views },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connector_a_path_is_about() {
        assert_eq!(connector_of("/connectors/a/status"), Some("a".into()));
        assert_eq!(connector_of("/connectors/a%20b"), Some("a b".into()));
        assert_eq!(connector_of("/status/x"), Some("x".into()));
        assert_eq!(connector_of("/connectors"), None);
        assert_eq!(connector_of("/workers"), None);
    }

    #[test]
    fn a_request_config_is_toml_text_or_connects_flat_map() {
        let toml = json!("[source]\ntype = \"generator\"\n");
        assert_eq!(
            config_text("a", &toml).unwrap(),
            "name = \"a\"\n[source]\ntype = \"generator\"\n"
        );
        let flat = json!({"source.type": "generator", "runtime.batch_size": "5"});
        let text = config_text("a", &flat).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(doc["name"].as_str(), Some("a"));
        assert_eq!(doc["runtime"]["batch_size"].as_integer(), Some(5));
        let other = json!("name = \"b\"\n");
        assert_eq!(
            config_text("a", &other).unwrap_err(),
            "the config's name `b` is not the connector's name `a`"
        );
        assert!(config_text("a", &json!(5)).is_err());
    }
}
