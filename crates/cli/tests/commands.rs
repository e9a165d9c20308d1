//! check, discover, read and state through the binary.

use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

const CFG: &str = r#"
name = "demo"
topic_prefix = "shop"
[source]
type = "generator"
seed = 1
[source.streams.users]
record_type = "user"
total = 25
[source.streams.readings]
record_type = "sensor"
total = 5
[sink]
type = "file"
dir = "out"
[streams.readings]
target = "iot.readings"
schedule = { cron = "0 0 2 * * ?", timezone = "America/New_York" }
"#;

/// `CFG` without the cron override, so `run` finishes once both streams caught up.
fn run_once_config() -> String {
    CFG.replace(
        "schedule = { cron = \"0 0 2 * * ?\", timezone = \"America/New_York\" }",
        "",
    )
}

#[test]
fn check_reports_each_part() {
    let ws = workspace();
    let cfg = ws.write("demo.toml", CFG);
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("config   ok: connector `demo`"), "{out}");
    assert!(
        out.contains("with 2 stream(s): users, readings")
            || out.contains("with 2 stream(s): readings, users"),
        "{out}"
    );
    assert!(out.contains("sink     ok: type `file`"), "{out}");
}

#[test]
fn discover_lists_streams_with_keys_schema_target_and_schedule() {
    let ws = workspace();
    let cfg = ws.write("demo.toml", CFG);
    let o = ws.run(&["discover", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["connector"], "demo");
    let streams = v["streams"].as_array().unwrap();
    let users = streams.iter().find(|s| s["name"] == "users").unwrap();
    assert_eq!(users["primary_key"], serde_json::json!(["id"]));
    assert_eq!(users["target"], "shop.users");
    assert_eq!(users["schedule"], "once");
    assert!(users["json_schema"]["properties"]["email"].is_object());
    let readings = streams.iter().find(|s| s["name"] == "readings").unwrap();
    assert_eq!(readings["target"], "iot.readings");
    assert_eq!(
        readings["schedule"],
        serde_json::json!({"cron": "0 0 2 * * ?", "timezone": "America/New_York"})
    );
}

#[test]
fn read_previews_and_commits_nothing() {
    let ws = workspace();
    let cfg = ws.write("demo.toml", CFG);
    let cfg = cfg.to_str().unwrap();
    let o = ws.run(&["read", cfg, "--stream", "users", "--limit", "3"]);
    assert_exit(&o, 0);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(lines[0]["_stream"], "users");
    let o = ws.run(&["state", "list", cfg]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("no checkpoints committed yet"),
        "{}",
        stdout(&o)
    );
    assert!(!ws.path("out").exists());

    let o = ws.run(&["read", cfg, "--stream", "usres"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("no stream `usres` in connector `demo` (did you mean `users`?)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn state_list_get_and_reset() {
    let ws = workspace();
    let cfg = ws.write("demo.toml", &run_once_config());
    let cfg = cfg.to_str().unwrap();
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);

    let o = ws.run(&["state", "list", cfg]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("users") && out.contains("{\"next\":25}"),
        "{out}"
    );
    assert!(
        out.contains("readings") && out.contains("{\"next\":5}"),
        "{out}"
    );

    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap(),
        serde_json::json!({"next": 25})
    );

    let o = ws.run(&["state", "reset", cfg, "--stream", "users"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("reset stream `users` of connector `demo`"),
        "{}",
        stdout(&o)
    );
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no checkpoint committed for stream `users`"));

    // After the reset the stream is delivered again from the start; the other is not.
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(ws.output("out", "shop.users").len(), 50);
    assert_eq!(ws.output("out", "iot.readings").len(), 5);

    let o = ws.run(&["state", "reset", cfg]);
    assert_exit(&o, 2); // --stream or --all is required
}

#[test]
fn json_logs_on_request() {
    let ws = workspace();
    let cfg = ws.write("demo.toml", &run_once_config());
    let o = ws.run(&["--log-format", "json", "run", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json log line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "connector stopped" && l["committed"] == 30),
        "{lines:?}"
    );
}
