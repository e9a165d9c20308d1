//! Bad input through the binary: configs that cannot work, and malformed
//! records under each bad-record policy.

use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

fn check_config_error(toml: &str, expected: &str) {
    let ws = workspace();
    let cfg = ws.write("bad.toml", toml);
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    let path = cfg.display().to_string();
    let expected = format!("error: {path}:{}\n", expected.replace("{path}", &path));
    assert_eq!(stderr(&o), expected);
}

const GEN: &str = "name = \"g\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecord_type = \"user\"\ntotal = 5\n[sink]\ntype = \"stdout\"\n";

#[test]
fn unknown_key_names_file_line_and_suggests() {
    check_config_error(
        "name = \"g\"\n[source]\ntype = \"generator\"\n[source.streams.users]\nrecod_type = \"user\"\n[sink]\ntype = \"stdout\"\n",
        "4: source.streams.users: missing key `record_type`\nerror: {path}:5: source.streams.users.recod_type: unknown key `recod_type` (did you mean `record_type`?)",
    );
    check_config_error(
        &format!("{GEN}[runtime]\nbatch_sise = 10\n"),
        "10: runtime.batch_sise: unknown key `batch_sise` (did you mean `batch_size`?)",
    );
}

#[test]
fn unknown_source_type_suggests_the_closest() {
    check_config_error(
        "name = \"g\"\n[source]\ntype = \"generatr\"\n[sink]\ntype = \"stdout\"\n",
        "3: source.type: unknown source type `generatr`; known types: airbyte, chargeover, file, fivetran, generator, http, kafka, mqtt, singer, sql, stripe_reporting, websocket (did you mean `generator`?)",
    );
}

#[test]
fn wrong_type_names_the_key() {
    check_config_error(
        &format!("{GEN}[runtime]\nbatch_size = \"ten\"\n"),
        "10: runtime.batch_size: invalid type: string \"ten\", expected a whole number (0 or more)",
    );
}

#[test]
fn missing_env_var_is_named_and_never_guessed() {
    let ws = workspace();
    let cfg = ws.write(
        "env.toml",
        "name = \"g\"\n[source]\ntype = \"file\"\n[source.streams.s]\npath = \"${TRIBUTARY_TEST_SURELY_UNSET_VAR}/x.csv\"\nformat = \"csv\"\n[sink]\ntype = \"stdout\"\n",
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}:5: source.streams.s.path: environment variable TRIBUTARY_TEST_SURELY_UNSET_VAR is not set\n",
            cfg.display()
        )
    );
}

#[test]
fn env_values_are_substituted_and_secret_values_never_printed() {
    let ws = workspace();
    ws.write("data/x.ndjson", "{\"a\": 1}\n");
    let cfg = ws.write(
        "env.toml",
        "name = \"g\"\n[source]\ntype = \"file\"\n[source.streams.s]\npath = \"${DATA_DIR}/x.ndjson\"\nformat = \"${FORMAT_NAME}\"\n[sink]\ntype = \"stdout\"\n",
    );
    let o = ws
        .cmd(&[
            "read",
            cfg.to_str().unwrap(),
            "--stream",
            "s",
            "--from-start",
        ])
        .env("DATA_DIR", ws.path("data"))
        .env("FORMAT_NAME", "ndjson")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["a"], 1);
    // A value from the environment is not echoed back in errors.
    let o = ws
        .cmd(&["check", cfg.to_str().unwrap()])
        .env("DATA_DIR", ws.path("data"))
        .env("FORMAT_NAME", "s3cr3t-format-value")
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        !stderr(&o).contains("s3cr3t-format-value"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(":6: source.streams.s.format:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn invalid_cron_and_time_zone_are_rejected_at_load() {
    check_config_error(
        &format!("schedule = {{ cron = \"0 0 25 * * ?\" }}\n{GEN}"),
        "1: schedule: invalid cron expression `0 0 25 * * ?`: HOUR (3rd field) is `25`, but 25 is outside 0-23. Quartz format with seconds: `SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK [YEAR]`, e.g. `0 0 2 * * ?`",
    );
    check_config_error(
        &format!("schedule = {{ cron = \"0 0 2 * * ?\", timezone = \"Europe/Pariss\" }}\n{GEN}"),
        "1: schedule: unknown time zone `Europe/Pariss` (did you mean `Europe/Paris`?); use an IANA name such as `America/New_York` or `UTC`",
    );
}

#[test]
fn missing_config_file() {
    let ws = workspace();
    let o = ws.run(&["run", "nope.toml"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: nope.toml: cannot read config file: No such file or directory (os error 2)\n"
    );
}

fn bad_input_config(ws: &Workspace, policy: &str) -> std::path::PathBuf {
    ws.write(
        "data/orders.csv",
        "id,item\n1,apple\n2,pear,EXTRA\n3,plum\n",
    );
    ws.write(
        "data/events.ndjson",
        "{\"id\": 1}\n{\"id\": 2\n{\"id\": 3}\n",
    );
    ws.write(
        "bad.toml",
        &format!(
            r#"
name = "bad"
[source]
type = "file"
[source.streams.orders]
path = "data/orders.csv"
format = "csv"
[source.streams.events]
path = "data/events.ndjson"
format = "ndjson"
[sink]
type = "file"
dir = "out"
[bad_records]
policy = "{policy}"
dead_letter_path = "dlq.ndjson"
"#
        ),
    )
}

#[test]
fn bad_records_policy_fail_stops_with_file_and_line_and_commits_nothing_past_them() {
    let ws = workspace();
    let cfg = bad_input_config(&ws, "fail");
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    // The location is the path as configured, and the line number.
    assert!(
        err.contains("stream `orders`: bad record at data/orders.csv:3: ")
            || err.contains("stream `events`: bad record at data/events.ndjson:2: "),
        "{err}"
    );
    assert!(err.contains("bad-record policy is `fail`"), "{err}");
    // Nothing from the failing stream's batch is committed.
    let o = ws.run(&["state", "list", cfg.to_str().unwrap(), "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn bad_records_policy_skip_counts_and_continues() {
    let ws = workspace();
    let cfg = bad_input_config(&ws, "skip");
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let ids = |t: &str| {
        counts(&ws.output("out", t), "id")
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("bad.orders"), vec![1, 3]);
    assert_eq!(ids("bad.events"), vec![1, 3]);
    assert!(stderr(&o).contains("skipped bad record"), "{}", stderr(&o));
    assert!(!ws.path("dlq.ndjson").exists());
}

#[test]
fn bad_records_policy_dead_letter_keeps_them_with_their_error() {
    let ws = workspace();
    let cfg = bad_input_config(&ws, "dead_letter");
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    let dlq: Vec<serde_json::Value> = std::fs::read_to_string(ws.path("dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dlq.len(), 2);
    let mut locations: Vec<String> = dlq
        .iter()
        .map(|d| d["location"].as_str().unwrap().to_string())
        .collect();
    locations.sort();
    let expected = vec![
        "data/events.ndjson:2".to_string(),
        "data/orders.csv:3".to_string(),
    ];
    assert_eq!(locations, expected);
    for d in &dlq {
        assert_eq!(d["connector"], "bad");
        assert!(d["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let raw: Vec<&str> = dlq.iter().map(|d| d["raw"].as_str().unwrap()).collect();
    assert!(raw.contains(&"{\"id\": 2"), "{raw:?}");
    assert!(raw.iter().any(|r| r.contains("2,pear,EXTRA")), "{raw:?}");
    // Loud: logged per batch and in the final summary, per stream.
    let err = stderr(&o);
    for stream in ["orders", "events"] {
        let logged = |what: &str, count: &str| {
            err.lines().any(|l| {
                l.contains(what) && l.contains(&format!("stream={stream} ")) && l.contains(count)
            })
        };
        assert!(
            logged("bad records written to the dead-letter file", "count=1"),
            "{err}"
        );
        assert!(
            logged(
                "stream summary: bad records went to the dead-letter file",
                "dead_letters=1"
            ),
            "{err}"
        );
    }
    // Both streams still committed past the bad lines.
    let o = ws.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(ws.output("out", "bad.orders").len(), 2);
}

#[test]
fn values_from_the_environment_are_redacted_in_errors_and_logs() {
    let ws = workspace();
    let cfg = ws.write(
        "s.toml",
        "name = \"s\"\n[source]\ntype = \"file\"\n[source.streams.s]\npath = \"${DATA_DIR}/x.ndjson\"\nformat = \"ndjson\"\n[sink]\ntype = \"stdout\"\n",
    );
    let secret = "/tmp/s3cr3t-token-value";
    let o = ws
        .cmd(&["check", cfg.to_str().unwrap()])
        .env("DATA_DIR", secret)
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert_eq!(
        stderr(&o),
        "error: source: configuration error: stream `s`: no file matches path `***/x.ndjson` (looked for `***/x.ndjson`)\n"
    );
    for format in ["text", "json"] {
        let o = ws
            .cmd(&["--log-format", format, "run", cfg.to_str().unwrap()])
            .env("DATA_DIR", secret)
            .output()
            .unwrap();
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("no file matches `***/x.ndjson`"), "{err}");
    }
}
