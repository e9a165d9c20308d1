//! check, discover, read and state through the binary.

use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

/// `users` runs once; `readings` waits for a nightly cron, so `run` keeps going.
const CFG: &str = include_str!("fixtures/demo.toml");

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

/// `CFG` plus a staleness limit, run once so both streams have checkpoints.
fn ran(ws: &Workspace) -> String {
    let cfg = ws.write(
        "demo.toml",
        &run_once_config().replace("[sink]", "[runtime]\nmax_staleness = \"7d\"\n[sink]"),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    assert_exit(&ws.run(&["run", &cfg, "--no-progress"]), 0);
    cfg
}

#[test]
fn state_set_with_dry_run_diff_and_export_import_round_trip() {
    let ws = workspace();
    let cfg = ran(&ws);
    let cfg = cfg.as_str();
    let o = ws.run(&["state", "export", cfg]);
    assert_exit(&o, 0);
    ws.write("backup.json", &stdout(&o));
    let backup: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(backup["connector"], "demo");
    assert_eq!(backup["streams"].as_array().unwrap().len(), 2);

    let o = ws.run(&[
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        "{\"next\": 10}",
        "--dry-run",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "dry run: nothing is changed in connector `demo`\nstream `users`:\n  next: 25 -> 10\n"
    );
    let o = ws.run(&[
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        "{\"next\": 10}",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "set stream `users` of connector `demo`\nstream `users`:\n  next: 25 -> 10\n"
    );
    let o = ws.run(&["state", "set", cfg, "--stream", "users", "--json", "{next"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--json is not valid JSON"),
        "{}",
        stderr(&o)
    );

    // Import: dry run shows the rollback, then the store is exactly the backup.
    let o = ws.run(&["state", "import", cfg, "backup.json", "--dry-run"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("stream `users`:\n  next: 10 -> 25\nstream `readings`: no change")
            || stdout(&o)
                .contains("stream `readings`: no change\nstream `users`:\n  next: 10 -> 25"),
        "{}",
        stdout(&o)
    );
    let o = ws.run(&["state", "import", cfg, "backup.json"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).starts_with("imported 2 stream(s) into connector `demo`"),
        "{}",
        stdout(&o)
    );
    let o = ws.run(&["state", "export", cfg]);
    let again: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        again["streams"], backup["streams"],
        "round trip is exact, times included"
    );

    // A backup of another connector or version is refused with the reason.
    ws.write(
        "other.json",
        &stdout(&o).replace("\"connector\": \"demo\"", "\"connector\": \"billing\""),
    );
    let o = ws.run(&["state", "import", cfg, "other.json"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("the export is of connector `billing`, not `demo`"),
        "{}",
        stderr(&o)
    );
    ws.write(
        "v9.json",
        &stdout(&ws.run(&["state", "export", cfg])).replace("\"version\": 1", "\"version\": 9"),
    );
    let o = ws.run(&["state", "import", cfg, "v9.json"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("state export version 9 is not supported"),
        "{}",
        stderr(&o)
    );

    // Positions in time need a source that has them.
    let o = ws.run(&["state", "reset", cfg, "--stream", "users", "--to-now"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("this source cannot build a checkpoint for --to-now"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stuck_streams_by_age_with_an_injected_clock_and_exit_codes() {
    let ws = workspace();
    let cfg = ran(&ws);
    let cfg = cfg.as_str();
    let o = ws.run(&["state", "stuck", cfg]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).starts_with("no stuck streams in connector `demo` (advanced within 7d00h)"),
        "{}",
        stdout(&o)
    );
    // Eight days later (the process clock moved, nothing slept).
    let later = (chrono::Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let at = |args: &[&str]| {
        let mut c = ws.cmd(args);
        c.env("TRIBUTARY_CLOCK_START", &later);
        c.output().unwrap()
    };
    let o = at(&["state", "stuck", cfg]);
    assert_exit(&o, 5);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("users\tstuck for 8d00h: checkpoint has not advanced for 8d00h (limit 7d00h)"),
        "{out}"
    );
    // --older-than overrides the config.
    assert_exit(&at(&["state", "stuck", cfg, "--older-than", "9d"]), 0);
    let o = at(&["state", "list", cfg, "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["status"] == "stuck" && r["running"] == false),
        "{rows:?}"
    );
    let o = ws.run(&["state", "stuck", cfg, "--older-than", "soon"]);
    assert_exit(&o, 2);
}

#[test]
fn while_running_state_reads_the_snapshot_and_every_change_is_refused() {
    let ws = workspace();
    // `readings` is on a cron schedule: the process keeps running.
    let cfg = ws.write("demo.toml", CFG);
    let cfg = cfg.to_str().unwrap();
    let child = ws.spawn(&["run", cfg, "--no-progress"]);
    wait_until(
        std::time::Duration::from_secs(30),
        "both streams committed",
        || {
            let o = ws.run(&["state", "list", cfg, "--json"]);
            o.status.success()
                && serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o))
                    .map(|r| r.len() == 2)
                    .unwrap_or(false)
        },
    );
    let o = ws.run(&["state", "list", cfg]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("the connector is running"), "{out}");
    let users = out.lines().find(|l| l.starts_with("users")).unwrap();
    assert!(
        users.contains(" running ") && users.contains("{\"next\":25}"),
        "{out}"
    );
    let o = ws.run(&["state", "export", cfg]);
    assert_exit(&o, 0);
    ws.write("backup.json", &stdout(&o));
    for args in [
        vec![
            "state",
            "set",
            cfg,
            "--stream",
            "users",
            "--json",
            "{\"next\": 1}",
        ],
        vec!["state", "reset", cfg, "--stream", "users"],
        vec!["state", "import", cfg, "backup.json"],
    ] {
        let o = ws.run(&args);
        assert_exit(&o, 4);
        assert!(
            stderr(&o).contains("connector `demo` is running") && stderr(&o).contains("STOPPED"),
            "{}",
            stderr(&o)
        );
    }
    // A dry run is allowed and says it would be refused.
    let o = ws.run(&[
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        "{\"next\": 1}",
        "--dry-run",
    ]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("applying this is refused until it is stopped"),
        "{}",
        stdout(&o)
    );
    sigterm(&child);
    assert_exit(&wait_output(child, std::time::Duration::from_secs(30)), 0);
    let o = ws.run(&[
        "state",
        "set",
        cfg,
        "--stream",
        "users",
        "--json",
        "{\"next\": 1}",
    ]);
    assert_exit(&o, 0);
}
