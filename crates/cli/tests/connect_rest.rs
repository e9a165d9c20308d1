//! Kafka Connect's REST API on the admin server, replayed in the shapes of
//! Connect's documented examples (the Connect REST interface reference):
//! listing with `?expand=`, info, config, status, tasks, topics, pause and
//! resume, restart (KIP-745's `includeTasks`/`onlyFailed`), the plugins,
//! config validation, and Connect's error bodies. Two connectors in one
//! process: `demo` (the generator) and `api` (the http source against the
//! REST simulator, whose stream fails with a 401 until the API accepts the
//! token again).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::{RestAuth, RestSim, RestSimConfig};

const TOKEN: &str = "connect-admin-3e9";
const API_TOKEN: &str = "tok-connect-9f2";
const DEMO: &str = include_str!("fixtures/demo.toml");

fn call(admin: &AdminProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin.call(method, path, Some(TOKEN), body)
}

fn get(admin: &AdminProcess, path: &str) -> Value {
    let (status, body) = call(admin, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn wait_for(admin: &AdminProcess, path: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(90), what, || {
        last = get(admin, path);
        cond(&last)
    });
    last
}

fn states(status: &Value) -> (String, Vec<String>) {
    let tasks = status["tasks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    (
        status["connector"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        tasks,
    )
}

#[test]
fn connect_rest_requests_get_connect_shaped_answers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The API wants another token than the config's: `api/items` fails (401).
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items: 300,
        auth: RestAuth::Bearer {
            token: "not-yet".into(),
        },
        ..RestSimConfig::default()
    }));
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let demo = ws.write("demo.toml", DEMO);
    let api = ws.write(
        "api.toml",
        &format!(
            r#"name = "api"
schedule = {{ interval = "1h" }}
[source]
type = "http"
base_url = "{}"
auth = {{ type = "bearer", token = "{API_TOKEN}" }}
[source.streams.items]
path = "/items/offset"
records = "data"
pagination = {{ type = "offset", page_size = 100 }}
[sink]
type = "file"
dir = "out"
[runtime]
max_retries = 0
"#,
            sim.base_url()
        ),
    );
    let token = ws.write("token", TOKEN);
    let cmd = ws.cmd(&[
        "run",
        demo.to_str().unwrap(),
        api.to_str().unwrap(),
        "--no-progress",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    let admin = AdminProcess::spawn(cmd);
    let worker = admin.url.trim_start_matches("http://").to_string();

    // GET /connectors: the names.
    assert_eq!(get(&admin, "/connectors"), json!(["demo", "api"]));

    // GET /connectors?expand=status once both settled: demo's tasks (its
    // streams, by name) run; api's one task failed with the API's refusal.
    let expanded = wait_for(
        &admin,
        "/connectors?expand=status",
        "demo running and api/items failed",
        |v| {
            states(&v["demo"]["status"]) == ("RUNNING".into(), vec!["RUNNING".into(); 2])
                && states(&v["api"]["status"]) == ("RUNNING".into(), vec!["FAILED".into()])
        },
    );
    assert_eq!(
        expanded["demo"],
        json!({"status": {
            "name": "demo",
            "connector": {"state": "RUNNING", "worker_id": worker},
            "tasks": [
                {"id": 0, "state": "RUNNING", "worker_id": worker},
                {"id": 1, "state": "RUNNING", "worker_id": worker},
            ],
            "type": "source",
        }})
    );
    let failed = &expanded["api"]["status"]["tasks"][0];
    assert_eq!(
        (&failed["id"], &failed["worker_id"]),
        (&json!(0), &json!(worker))
    );
    assert!(
        failed["trace"].as_str().is_some_and(|t| t.contains("401")),
        "{failed}"
    );
    assert_eq!(
        get(&admin, "/connectors/api/status"),
        expanded["api"]["status"]
    );
    assert_eq!(
        get(&admin, "/connectors/api/tasks/0/status"),
        expanded["api"]["status"]["tasks"][0]
    );

    // GET /connectors/{name} and /config: the file as a flat string map,
    // the literal token hidden.
    let info = get(&admin, "/connectors/api");
    let config: BTreeMap<String, String> = [
        ("name", "api"),
        ("schedule.interval", "1h"),
        ("source.type", "http"),
        ("source.base_url", sim.base_url().as_str()),
        ("source.auth.type", "bearer"),
        ("source.auth.token", "[hidden]"),
        ("source.streams.items.path", "/items/offset"),
        ("source.streams.items.records", "data"),
        ("source.streams.items.pagination.type", "offset"),
        ("source.streams.items.pagination.page_size", "100"),
        ("sink.type", "file"),
        ("sink.dir", "out"),
        ("runtime.max_retries", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        info,
        json!({
            "name": "api",
            "config": config,
            "tasks": [{"connector": "api", "task": 0}],
            "type": "source",
        })
    );
    assert_eq!(get(&admin, "/connectors/api/config"), json!(config));
    let both = get(&admin, "/connectors?expand=info&expand=status");
    assert_eq!(both["api"]["info"], info);
    assert_eq!(both["demo"]["status"], expanded["demo"]["status"]);
    assert_eq!(
        get(&admin, "/connectors/demo/tasks"),
        json!([
            {"id": {"connector": "demo", "task": 0}, "config": {"stream": "readings"}},
            {"id": {"connector": "demo", "task": 1}, "config": {"stream": "users"}},
        ])
    );

    // Topics: where demo's records went; reset forgets them.
    assert_eq!(
        get(&admin, "/connectors/demo/topics"),
        json!({"demo": {"topics": ["iot.readings", "shop.users"]}})
    );
    assert_eq!(
        call(&admin, "PUT", "/connectors/demo/topics/reset", None).0,
        200
    );
    assert_eq!(
        get(&admin, "/connectors/demo/topics"),
        json!({"demo": {"topics": []}})
    );
    assert_eq!(
        get(&admin, "/connectors/api/topics"),
        json!({"api": {"topics": []}})
    );

    // Pause: PAUSED, offsets still locked; resume: RUNNING again.
    assert_eq!(
        call(&admin, "PUT", "/connectors/demo/pause", None),
        (202, Value::Null)
    );
    wait_for(&admin, "/connectors/demo/status", "demo paused", |v| {
        states(v) == ("PAUSED".into(), vec!["PAUSED".into(); 2])
    });
    let (status, body) = call(&admin, "DELETE", "/connectors/demo/offsets", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Connectors must be in the STOPPED state")),
        "{body}"
    );
    assert_eq!(
        call(&admin, "PUT", "/connectors/demo/resume", None),
        (202, Value::Null)
    );
    wait_for(&admin, "/connectors/demo/status", "demo resumed", |v| {
        states(v) == ("RUNNING".into(), vec!["RUNNING".into(); 2])
    });

    // onlyFailed with nothing failed: nothing restarts, the status is returned.
    let (status, body) = call(
        &admin,
        "POST",
        "/connectors/demo/restart?includeTasks=true&onlyFailed=true",
        None,
    );
    assert_eq!(
        (status, states(&body)),
        (202, ("RUNNING".into(), vec!["RUNNING".into(); 2]))
    );

    // The API takes the token now: restarting the failed task reads everything.
    sim.set_auth(RestAuth::Bearer {
        token: API_TOKEN.into(),
    });
    let (status, body) = call(
        &admin,
        "POST",
        "/connectors/api/restart?includeTasks=true&onlyFailed=true",
        None,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        states(&body),
        ("RESTARTING".into(), vec!["RESTARTING".into()])
    );
    wait_until(
        Duration::from_secs(90),
        "api/items read after the restart",
        || ws.written_lines("out", "api.items") == 300,
    );
    wait_for(&admin, "/connectors/api/status", "api running", |v| {
        states(v) == ("RUNNING".into(), vec!["RUNNING".into()])
    });
    let ids = counts(&ws.output("out", "api.items"), "id");
    assert_eq!(ids, (1..=300).map(|i| (i, 1)).collect());

    // A plain restart: 204; demo runs on from its checkpoints, nothing re-read.
    assert_eq!(
        call(&admin, "POST", "/connectors/demo/restart", None),
        (204, Value::Null)
    );
    wait_for(
        &admin,
        "/connectors/demo/status",
        "demo running after restart",
        |v| states(v) == ("RUNNING".into(), vec!["RUNNING".into(); 2]),
    );
    assert_eq!(
        counts(&ws.output("out", "shop.users"), "id"),
        (1..=25).map(|i| (i, 1)).collect()
    );

    // GET /connector-plugins: every source and sink type.
    let plugins = get(&admin, "/connector-plugins");
    let version = env!("CARGO_PKG_VERSION");
    for (class, kind) in [
        ("http", "source"),
        ("chargeover", "source"),
        ("postgres", "sink"),
    ] {
        assert!(
            plugins
                .as_array()
                .unwrap()
                .contains(&json!({"class": class, "type": kind, "version": version})),
            "{plugins}"
        );
    }

    // PUT /connector-plugins/{plugin}/config/validate: a flat map like the
    // one GET .../config returns.
    let good = json!({
        "name": "v",
        "source.base_url": "http://127.0.0.1:9/",
        "source.streams.items.path": "/items",
        "source.streams.items.pagination.type": "offset",
        "source.streams.items.pagination.page_size": "100",
        "sink.type": "stdout",
    });
    let (status, body) = call(
        &admin,
        "PUT",
        "/connector-plugins/http/config/validate",
        Some(good.clone()),
    );
    assert_eq!(
        (status, &body["name"], &body["error_count"]),
        (200, &json!("http"), &json!(0)),
        "{body}"
    );
    let names: Vec<&str> = body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{body}");
    assert_eq!(body["groups"], json!(["Common"]));

    let mut bad = good.clone();
    bad["source.streams.items.pagination.page_size"] = json!("lots");
    let (status, body) = call(
        &admin,
        "PUT",
        "/connector-plugins/http/config/validate",
        Some(bad),
    );
    assert_eq!((status, &body["error_count"]), (200, &json!(1)), "{body}");
    let with_errors: Vec<(&str, &Value)> = body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["value"]["errors"] != json!([]))
        .map(|c| (c["value"]["name"].as_str().unwrap(), &c["value"]["errors"]))
        .collect();
    assert_eq!(with_errors.len(), 1, "{body}");
    assert_eq!(
        with_errors[0].0, "source.streams.items.pagination.page_size",
        "{body}"
    );

    let (status, body) = call(
        &admin,
        "PUT",
        "/connector-plugins/chargeover/config/validate",
        Some(json!({"source.type": "http", "sink.type": "stdout"})),
    );
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error_code": 400, "message": "Included connector type http does not match request type chargeover"})
        )
    );

    // A Kafka Connect config (with `connector.class`), as Connect users
    // validate theirs: converted as `tributary convert` converts it.
    let connect: Value =
        serde_json::from_str(include_str!("fixtures/convert/chargeover-source.json")).unwrap();
    let class = "com.mykaarma.connect.chargeover.ChargeOverSourceConnector";
    let (status, body) = call(
        &admin,
        "PUT",
        "/connector-plugins/ChargeOverSourceConnector/config/validate",
        Some(connect["config"].clone()),
    );
    assert_eq!((status, &body["error_count"]), (200, &json!(0)), "{body}");
    let password = body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["value"]["name"] == "chargeover.password")
        .unwrap();
    assert_eq!(password["value"]["value"], "[hidden]");
    let mut wrong = connect["config"].clone();
    wrong["chargeover.timezone"] = json!("Mars/Olympus");
    let (status, body) = call(
        &admin,
        "PUT",
        &format!("/connector-plugins/{class}/config/validate"),
        Some(wrong),
    );
    assert_eq!((status, &body["error_count"]), (200, &json!(1)), "{body}");
    let tz = body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["value"]["name"] == "chargeover.timezone")
        .unwrap();
    assert_eq!(
        tz["value"]["errors"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    // Connect's error bodies, everywhere.
    for (method, path, code, message) in [
        ("GET", "/connectors/nope", 404, "Connector nope not found"),
        (
            "GET",
            "/connectors/nope/status",
            404,
            "Connector nope not found",
        ),
        (
            "PUT",
            "/connectors/nope/pause",
            404,
            "Connector nope not found",
        ),
        (
            "POST",
            "/connectors/nope/restart",
            404,
            "Connector nope not found",
        ),
        (
            "GET",
            "/connectors/demo/tasks/7/status",
            404,
            "Task demo-7 not found",
        ),
        ("GET", "/nope", 404, "HTTP 404 Not Found"),
        (
            "DELETE",
            "/connectors/demo",
            405,
            "HTTP 405 Method Not Allowed",
        ),
    ] {
        assert_eq!(
            call(&admin, method, path, None),
            (code, json!({"error_code": code, "message": message})),
            "{method} {path}"
        );
    }
    let (status, body) = http_request("GET", &format!("{}/connectors", admin.url), None, None);
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error_code"], 401, "{body}");

    // Nothing shows the literal API token.
    for path in [
        "/connectors?expand=info&expand=status",
        "/connectors/api",
        "/status",
    ] {
        let (_, body) = http_request("GET", &format!("{}{path}", admin.url), Some(TOKEN), None);
        assert!(!body.contains(API_TOKEN), "{path}: {body}");
    }
    let log = admin.log();
    assert!(!log.contains(API_TOKEN), "{log}");
    assert_eq!(admin.stop(), Some(0), "{log}");
}
