//! Kafka Connect's REST API for what a Connect user scripts: listing
//! connectors (`?expand=status|info`), their info, config, status, tasks
//! and topics, `pause`, `restart`, the plugins and config validation, in
//! Connect's shapes. (Offsets, `stop` and `resume` are in [`super::offsets`].)
//!
//! The mapping: every tributary connector is a Connect *source* connector;
//! its streams are its tasks, numbered in stream-name order; its config is
//! the config file as a flat map of dotted TOML keys to strings (values
//! that are not strings in their TOML literal form), with `${VAR}`
//! references as written and literal credentials masked; its topics are the
//! targets its sink accepted records for.

use super::error::{api_error, error, ApiError};
use super::offsets::find;
use super::AdminState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tributary_metrics::StreamState;
use tributary_runtime::{ConnectorHandle, ConnectorPhase};

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/connectors", get(list))
        .route("/connectors/{name}", get(info))
        .route("/connectors/{name}/config", get(config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(task_restart),
        )
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(topics_reset))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
}

/// `GET /connectors`: the names; with `expand=status` and/or `expand=info`
/// (repeatable, as in Connect), a map of name to those documents.
async fn list(State(state): State<Arc<AdminState>>, RawQuery(query): RawQuery) -> Response {
    let mut expand = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "expand" {
            match &*v {
                "status" | "info" => expand.push(v.into_owned()),
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("unknown expand value `{other}`: use `status` or `info`"),
                    )
                }
            }
        }
    }
    if let Some(cluster) = &state.cluster {
        return crate::cluster::rest::list(&state, cluster, &expand).into_response();
    }
    if expand.is_empty() {
        let connectors = state.connectors.list();
        let names: Vec<&str> = connectors.iter().map(|c| c.name()).collect();
        return Json(names).into_response();
    }
    let mut out = Map::new();
    for c in state.connectors.list().iter() {
        let mut entry = Map::new();
        if expand.iter().any(|e| e == "status") {
            entry.insert("status".into(), status_json(c, &state));
        }
        if expand.iter().any(|e| e == "info") {
            entry.insert("info".into(), info_json(c));
        }
        out.insert(c.name().to_string(), Value::Object(entry));
    }
    Json(Value::Object(out)).into_response()
}

async fn info(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &name)?;
    Ok(Json(info_json(&c)))
}

async fn config(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let c = find(&state, &name)?;
    Ok(Json(config_map(&c)))
}

async fn status(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &name)?;
    Ok(Json(status_json(&c, &state)))
}

/// `GET /connectors/{name}/tasks`: each task's id and config (its stream).
async fn tasks(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &name)?;
    let tasks: Vec<Value> = c
        .streams()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": { "connector": c.name(), "task": i },
                "config": { "stream": s.stream },
            })
        })
        .collect();
    Ok(Json(Value::Array(tasks)))
}

async fn task_status(
    State(state): State<Arc<AdminState>>,
    Path((name, task)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &name)?;
    let tasks = tasks_json(&c, &state);
    let found = task
        .parse::<usize>()
        .ok()
        .and_then(|i| tasks.into_iter().nth(i));
    found.map(Json).ok_or_else(|| {
        api_error(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{task} not found"),
        )
    })
}

/// A task is a stream, and streams share one run: restarting one restarts
/// the connector (every stream resumes from its committed checkpoint).
async fn task_restart(
    State(state): State<Arc<AdminState>>,
    Path((name, task)): Path<(String, String)>,
) -> Response {
    let c = match find(&state, &name) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let known = task.parse::<usize>().is_ok_and(|i| i < c.streams().len());
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{task} not found"),
        );
    }
    if c.request_restart() {
        tracing::info!(connector = %name, task = %task, "restart requested through the admin server");
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn topics(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &name)?;
    Ok(Json(json!({ c.name(): { "topics": c.stats().targets() } })))
}

async fn topics_reset(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    match find(&state, &name) {
        Ok(c) => {
            c.stats().reset_targets();
            StatusCode::OK.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// 202 at once, as Kafka Connect answers: the connector drains and
/// commits, then waits PAUSED for `PUT .../resume`.
async fn pause(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    super::offsets::halt(&state, &name, "pause", ConnectorHandle::request_pause)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestartParams {
    #[serde(default)]
    include_tasks: bool,
    #[serde(default)]
    only_failed: bool,
}

/// `POST /connectors/{name}/restart[?includeTasks=&onlyFailed=]` (KIP-745):
/// 204 without parameters; with them 202 and the status, the restarted
/// instances `RESTARTING`. With `onlyFailed=true` nothing is restarted
/// unless the connector or one of its streams failed.
async fn restart(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    params: Result<Query<RestartParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let c = match find(&state, &name) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Ok(Query(params)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "includeTasks and onlyFailed must be true or false",
        );
    };
    let extended = params.include_tasks || params.only_failed;
    let mut status = status_json(&c, &state);
    let connector_failed = status["connector"]["state"] == "FAILED";
    let failed_tasks = status["tasks"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["state"] == "FAILED"));
    let wanted = !params.only_failed || connector_failed || (params.include_tasks && failed_tasks);
    if wanted {
        if connector_failed {
            // Its run has ended with the error; nothing is left in this
            // process to restart.
            return error(
                StatusCode::CONFLICT,
                format!(
                    "Connector {name} failed and its run has ended: fix the cause (see its status) and restart the process"
                ),
            );
        }
        if c.request_restart() {
            tracing::info!(connector = %name, "restart requested through the admin server");
            status["connector"]["state"] = "RESTARTING".into();
            if let Some(tasks) = status["tasks"].as_array_mut() {
                for t in tasks {
                    if params.include_tasks && (!params.only_failed || t["state"] == "FAILED") {
                        t["state"] = "RESTARTING".into();
                    }
                }
            }
        }
    }
    if extended {
        (StatusCode::ACCEPTED, Json(status)).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `GET /connector-plugins`: every source and sink type of this binary.
async fn plugins() -> Json<Value> {
    let version = env!("CARGO_PKG_VERSION");
    let sources = crate::app::registry()
        .names()
        .into_iter()
        .map(|t| json!({ "class": t, "type": "source", "version": version }));
    let sinks = tributary_sinks::SINK_TYPES
        .iter()
        .map(|t| json!({ "class": t, "type": "sink", "version": version }));
    Json(Value::Array(sources.chain(sinks).collect()))
}

/// `PUT /connector-plugins/{plugin}/config/validate`: the config in the
/// body, validated as `tributary check` validates a file before it connects
/// anywhere ([`crate::validate`]), answered in Connect's shape with each
/// error on the key it is about.
async fn validate(
    Path(plugin): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a JSON object of config keys to values: {}",
                    e.body_text()
                ),
            )
        }
    };
    let mut props = BTreeMap::new();
    for (k, v) in body {
        let text = match v {
            Value::String(s) => s,
            Value::Null => continue,
            Value::Array(_) | Value::Object(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("config value of `{k}` must be a string, as in Kafka Connect"),
                )
            }
            other => other.to_string(),
        };
        props.insert(k, text);
    }
    match crate::validate::validate(&plugin, &props) {
        Ok(result) => Json(validate_json(&plugin, &props, &result)).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

fn validate_json(
    plugin: &str,
    props: &BTreeMap<String, String>,
    result: &crate::validate::Validation,
) -> Value {
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    for e in &result.errors {
        if !keys.contains(&e.key.as_str()) {
            keys.push(&e.key);
        }
    }
    let configs: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(order, key)| {
            let errors: Vec<&str> = result
                .errors
                .iter()
                .filter(|e| e.key == *key)
                .map(|e| e.message.as_str())
                .collect();
            let value = props
                .get(*key)
                .map(|v| crate::validate::shown_value(key, v));
            json!({
                "definition": {
                    "name": key,
                    "type": "STRING",
                    "required": false,
                    "default_value": null,
                    "importance": "MEDIUM",
                    "documentation": "",
                    "group": "Common",
                    "width": "NONE",
                    "display_name": key,
                    "dependents": [],
                    "order": order,
                },
                "value": {
                    "name": key,
                    "value": value,
                    "recommended_values": [],
                    "errors": errors,
                    "visible": true,
                },
            })
        })
        .collect();
    json!({
        "name": plugin,
        "error_count": result.errors.len(),
        "groups": ["Common"],
        "configs": configs,
    })
}

pub(crate) fn info_json(c: &ConnectorHandle) -> Value {
    let tasks: Vec<Value> = (0..c.streams().len())
        .map(|i| json!({ "connector": c.name(), "task": i }))
        .collect();
    json!({
        "name": c.name(),
        "config": config_map(c),
        "tasks": tasks,
        "type": "source",
    })
}

fn config_map(c: &ConnectorHandle) -> BTreeMap<String, String> {
    crate::validate::flatten(&c.config_document().text)
}

/// Connect's state of the connector and why it failed.
fn connector_state(c: &ConnectorHandle) -> (&'static str, Option<String>) {
    match c.phase() {
        ConnectorPhase::Starting => ("UNASSIGNED", None),
        ConnectorPhase::Running if c.is_paused() => ("PAUSED", None),
        ConnectorPhase::Running => ("RUNNING", None),
        ConnectorPhase::Paused => ("PAUSED", None),
        ConnectorPhase::Stopped => ("STOPPED", None),
        ConnectorPhase::Failed { reason } => ("FAILED", Some(reason)),
    }
}

fn tasks_json(c: &ConnectorHandle, state: &AdminState) -> Vec<Value> {
    let (connector, trace) = connector_state(c);
    if connector == "STOPPED" {
        // A stopped connector has no tasks in Connect.
        return Vec::new();
    }
    let now = state.clock.now();
    c.streams()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (task_state, task_trace) = match connector {
                "FAILED" => ("FAILED", trace.clone()),
                "RUNNING" if s.state(now) == StreamState::Failed => (
                    "FAILED",
                    s.failed_reason().map(tributary_core::secret::redact),
                ),
                "RUNNING" => ("RUNNING", None),
                other => (other, None),
            };
            let mut t = json!({ "id": i, "state": task_state, "worker_id": state.worker_id });
            if let Some(trace) = task_trace {
                t["trace"] = trace.into();
            }
            t
        })
        .collect()
}

pub(crate) fn status_json(c: &ConnectorHandle, state: &AdminState) -> Value {
    let (connector, trace) = connector_state(c);
    let mut conn = json!({ "state": connector, "worker_id": state.worker_id });
    if let Some(trace) = trace {
        conn["trace"] = trace.into();
    }
    json!({
        "name": c.name(),
        "connector": conn,
        "tasks": tasks_json(c, state),
        "type": "source",
    })
}
