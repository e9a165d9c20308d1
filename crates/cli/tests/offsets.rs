//! Kafka Connect's offsets API (KIP-875) on the admin server, end to end:
//! read offsets while running, refused changes while running, stop, alter
//! and reset, resume, and the records the resumed connector then delivers.

use serde_json::{json, Value};
use std::time::Duration;
use tributary_testkit::cli::*;

const TOKEN: &str = "offsets-token-7d41";

/// `users` runs once until caught up; `readings` waits for a nightly cron,
/// so the process keeps running (and serving) after both caught up.
const CFG: &str = include_str!("fixtures/demo.toml");

fn call(admin: &AdminProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin.call(method, path, Some(TOKEN), body)
}

fn offsets(admin: &AdminProcess) -> Value {
    let (status, body) = call(admin, "GET", "/connectors/demo/offsets", None);
    assert_eq!(status, 200, "{body}");
    body
}

fn phase(admin: &AdminProcess) -> String {
    let (status, body) = call(admin, "GET", "/status/demo", None);
    assert_eq!(status, 200, "{body}");
    body["phase"].as_str().unwrap_or_default().to_string()
}

fn running_refusal() -> Value {
    json!({
        "error_code": 400,
        "message": "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/demo/stop' endpoint"
    })
}

#[test]
fn offsets_are_read_while_running_and_changed_only_while_stopped_then_resumed_from() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write("demo.toml", CFG);
    let token = ws.write("token", TOKEN);
    let mut cmd = ws.cmd(&[
        "run",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    cmd.env("RUST_LOG", "info");
    let admin = AdminProcess::spawn(cmd);

    let caught_up = json!({"offsets": [
        {"partition": {"stream": "readings"}, "offset": {"next": 5}},
        {"partition": {"stream": "users"}, "offset": {"next": 25}},
    ]});
    wait_until(Duration::from_secs(60), "both streams committed", || {
        offsets(&admin) == caught_up
    });

    // The token guards these routes like the rest of the API.
    let (status, _) = http_request(
        "GET",
        &format!("{}/connectors/demo/offsets", admin.url),
        None,
        None,
    );
    assert_eq!(status, 401);
    let (status, body) = call(&admin, "GET", "/connectors/nope/offsets", None);
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error_code": 404, "message": "Connector nope not found"})
        )
    );

    // Running: every change is refused, and nothing changed.
    let alter = json!({"offsets": [
        {"partition": {"stream": "users"}, "offset": {"next": 10}},
        {"partition": {"stream": "readings"}, "offset": null},
    ]});
    assert_eq!(
        call(
            &admin,
            "PATCH",
            "/connectors/demo/offsets",
            Some(alter.clone())
        ),
        (400, running_refusal())
    );
    assert_eq!(
        call(&admin, "DELETE", "/connectors/demo/offsets", None),
        (400, running_refusal())
    );
    assert_eq!(offsets(&admin), caught_up);

    // Stop: accepted at once, STOPPED once the sink drained and committed.
    assert_eq!(
        call(&admin, "PUT", "/connectors/demo/stop", None),
        (202, Value::Null)
    );
    wait_until(Duration::from_secs(30), "the connector stopped", || {
        phase(&admin) == "stopped"
    });

    // Bad requests name what is wrong and change nothing.
    let (status, body) = call(
        &admin,
        "PATCH",
        "/connectors/demo/offsets",
        Some(json!({"offsets": [{"partition": {"stream": "userz"}, "offset": {"next": 1}}]})),
    );
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (
            400,
            "connector demo has no stream `userz`; its streams: readings, users"
        )
    );
    let (status, body) = call(
        &admin,
        "PATCH",
        "/connectors/demo/offsets",
        Some(json!({"offsets": [{"partition": {"table": "users"}, "offset": {"next": 1}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the body must be {\"offsets\": [{\"partition\": {\"stream\": NAME}"),
        "{body}"
    );
    assert_eq!(offsets(&admin), caught_up);

    // Stopped: rewind users to record 10, forget readings.
    assert_eq!(
        call(&admin, "PATCH", "/connectors/demo/offsets", Some(alter)),
        (
            200,
            json!({"message": "The offsets for this connector have been altered successfully"})
        )
    );
    assert_eq!(
        offsets(&admin),
        json!({"offsets": [{"partition": {"stream": "users"}, "offset": {"next": 10}}]})
    );
    let listed = ws.run(&["state", "list", cfg.to_str().unwrap(), "--json"]);
    assert_exit(&listed, 0);
    let rows: Vec<Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["checkpoint"], json!({"next": 10}));

    // Resume: users re-reads ids 11..=25, readings starts over; then both
    // are caught up again.
    assert_eq!(
        call(&admin, "PUT", "/connectors/demo/resume", None),
        (202, Value::Null)
    );
    wait_until(Duration::from_secs(60), "caught up after resume", || {
        offsets(&admin) == caught_up
    });
    let users = counts(&ws.output("out", "shop.users"), "id");
    let expected_users: std::collections::BTreeMap<i64, usize> = (1..=25)
        .map(|id| (id, if id <= 10 { 1 } else { 2 }))
        .collect();
    assert_eq!(users, expected_users);
    let readings = ws.output("out", "iot.readings");
    assert_eq!(readings.len(), 10, "5 before the reset, 5 after");

    // DELETE while stopped removes every offset.
    assert_eq!(call(&admin, "PUT", "/connectors/demo/stop", None).0, 202);
    wait_until(Duration::from_secs(30), "stopped again", || {
        phase(&admin) == "stopped"
    });
    assert_eq!(
        call(&admin, "DELETE", "/connectors/demo/offsets", None),
        (
            200,
            json!({"message": "The offsets for this connector have been reset successfully"})
        )
    );
    assert_eq!(offsets(&admin), json!({"offsets": []}));
    let log = admin.log();
    assert_eq!(admin.stop(), Some(0), "{log}");
}
