//! The `mqtt` source end to end: the real binary against the Mosquitto
//! broker on 127.0.0.1:1883 (`scripts/services` starts it). Every test uses
//! its own topic prefix and client id, so tests run in parallel.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::mqtt::{publish_blocking, unique, Message};

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

/// Writes `mq.toml` and returns its path.
fn config(ws: &Workspace, source: &str, extra: &str) -> String {
    let text = format!(
        r#"
name = "mq"

[source]
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
reconnect = {{ min_backoff = "20ms", max_backoff = "200ms" }}
{source}

[sink]
type = "file"
dir = "out"

{extra}
"#
    );
    ws.write("mq.toml", &text);
    ws.path("mq.toml").to_string_lossy().into_owned()
}

fn numbered(prefix: &str, range: std::ops::RangeInclusive<u64>, pad: usize) -> Vec<Message> {
    range
        .map(|n| {
            let v = json!({"n": n, "id": n, "pad": "x".repeat(pad)});
            Message::new(format!("{prefix}/data"), v.to_string())
        })
        .collect()
}

/// Waits until the connector has subscribed: a probe message comes through.
fn wait_subscribed(ws: &Workspace, prefix: &str, target: &str) {
    let mut probe = Message::new(format!("{prefix}/data"), r#"{"n": 0, "id": 0}"#);
    probe.qos = 1;
    let start = std::time::Instant::now();
    while ws.written_lines("out", target) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the connector never subscribed"
        );
        publish_blocking(std::slice::from_ref(&probe));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn qos1_messages_published_while_stopped_arrive_after_restart_exactly_once() {
    for protocol in ["3.1.1", "5"] {
        let ws = workspace();
        let prefix = unique("restart");
        let cfg = config(
            &ws,
            &format!(
                r#"protocol = "{protocol}"
client_id = "{prefix}"
[[source.topic_mappings]]
source_pattern = "{prefix}/#"
target = "mq.data""#
            ),
            "[runtime]\nflush_interval = \"20ms\"\n",
        );
        // The first run creates the persistent session.
        let child = ws.spawn(&["run", &cfg, "--no-progress"]);
        wait_subscribed(&ws, &prefix, "mq.data");
        sigterm(&child);
        assert_exit(&wait_output(child, Duration::from_secs(20)), 0);
        let probes = ws.output("out", "mq.data").len();

        // Published while tributary is down: the broker keeps them.
        publish_blocking(&numbered(&prefix, 1..=100, 0));

        let child = ws.spawn(&["run", &cfg, "--no-progress"]);
        wait_until(Duration::from_secs(20), "100 messages", || {
            ws.written_lines("out", "mq.data") >= probes + 100
        });
        sigterm(&child);
        assert_exit(&wait_output(child, Duration::from_secs(20)), 0);

        // A third run: everything was acknowledged after its commit, so
        // nothing comes again.
        let child = ws.spawn(&["run", &cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(1500));
        sigterm(&child);
        assert_exit(&wait_output(child, Duration::from_secs(20)), 0);

        let out = ws.output("out", "mq.data");
        let seen = counts(&out, "n");
        let expected: BTreeMap<i64, usize> = (1..=100).map(|n| (n, 1)).collect();
        let seen_data: BTreeMap<i64, usize> = seen.into_iter().filter(|(n, _)| *n > 0).collect();
        assert_eq!(seen_data, expected, "protocol {protocol}");
    }
}

#[test]
fn kill_9_after_delivery_before_commit_loses_nothing() {
    let ws = workspace();
    let prefix = unique("kill");
    let source = format!(
        r#"client_id = "{prefix}"
[[source.topic_mappings]]
source_pattern = "{prefix}/+"
target = "mq.data""#
    );
    // Create the persistent session (and its subscription) first, so the
    // 400 messages below are queued for it whatever the machine's load.
    let committing = config(&ws, &source, "[runtime]\nflush_interval = \"20ms\"\n");
    let setup = ws.spawn(&["run", &committing, "--no-progress"]);
    wait_subscribed(&ws, &prefix, "mq.data");
    sigterm(&setup);
    assert_exit(&wait_output(setup, Duration::from_secs(20)), 0);
    let committed_by_setup =
        stdout(&ws.run(&["state", "get", &committing, "--stream", "messages"]));
    publish_blocking(&numbered(&prefix, 1..=400, 1000));
    let probes = ws.written_lines("out", "mq.data");

    // Then a run that writes to the sink's file but never flushes or commits.
    let cfg = config(
        &ws,
        &source,
        "[runtime]\nflush_interval = \"1h\"\nflush_records = 1000000\n",
    );
    let mut child = ws.spawn(&["run", &cfg, "--no-progress"]);
    // 400 messages of ~1 KiB overflow the sink's 256 KiB buffer, so some
    // reach the file: proof they were delivered.
    wait_until(Duration::from_secs(30), "messages delivered", || {
        ws.written_lines("out", "mq.data") > probes
    });
    child.kill().unwrap(); // SIGKILL: delivered, not acknowledged
    child.wait().unwrap();
    let o = ws.run(&["state", "get", &cfg, "--stream", "messages"]);
    assert_eq!(
        stdout(&o),
        committed_by_setup,
        "the killed run committed nothing"
    );
    let before_restart = ws.output("out", "mq.data");

    // Restart with commits: the broker re-delivers every unacknowledged message.
    let cfg = config(&ws, &source, "[runtime]\nflush_interval = \"20ms\"\n");
    let child = ws.spawn(&["run", &cfg, "--no-progress"]);
    let start = std::time::Instant::now();
    loop {
        let out = ws.output("out", "mq.data");
        let mut after = counts(&out[before_restart.len()..], "n");
        after.remove(&0); // probes
        if after.len() == 400 {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let before = counts(&before_restart, "n");
            let missing: Vec<i64> = (1..=400).filter(|n| !after.contains_key(n)).collect();
            panic!(
                "after the restart {} of 400 arrived; missing {missing:?}; before the kill {} distinct arrived",
                after.len(),
                before.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&child);
    assert_exit(&wait_output(child, Duration::from_secs(20)), 0);
    let out = ws.output("out", "mq.data");
    let after: Vec<Value> = out[before_restart.len()..].to_vec();
    let mut after = counts(&after, "n");
    after.remove(&0);
    assert_eq!(
        after.into_keys().collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
}

#[test]
fn wildcards_route_to_targets_with_mqtt_headers_and_bad_records_are_counted() {
    let ws = workspace();
    let p = unique("route");
    let cfg = config(
        &ws,
        &format!(
            r#"client_id = "{p}"
[[source.topic_mappings]]
source_pattern = "{p}/sensors/+/temp"
target = "iot.temp"
qos = 0
[[source.topic_mappings]]
source_pattern = "{p}/events/#"
target = "iot.events"
qos = 2
[[source.topic_mappings]]
source_pattern = "{p}/probe"
target = "iot.probe""#
        ),
        "[sink.format]\n[runtime]\nflush_interval = \"20ms\"\n[bad_records]\npolicy = \"dead_letter\"\ndead_letter_path = \"dlq.ndjson\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "dir = \"out\"\n\n[sink.format]\n",
        "dir = \"out\"\nformat = \"envelope\"\n",
    );
    std::fs::write(&cfg, text).unwrap();

    // Retained before the connector exists: delivered on its first subscribe.
    let mut retained = Message::new(format!("{p}/sensors/r/temp"), r#"{"id": "r", "c": 1}"#);
    retained.retain = true;
    publish_blocking(&[retained.clone()]);

    let child = ws.spawn(&["run", &cfg, "--no-progress"]);
    let start = std::time::Instant::now();
    while ws.written_lines("out", "iot.probe") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never subscribed"
        );
        publish_blocking(&[Message::new(format!("{p}/probe"), r#"{"id": "probe"}"#)]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut with_props = Message::new(format!("{p}/events/a/b"), r#"{"id": "e1", "kind": "x"}"#);
    with_props.qos = 2;
    with_props.user_properties = vec![("origin".into(), "plant-7".into())];
    with_props.content_type = Some("application/json".into());
    publish_blocking(&[
        Message::new(format!("{p}/sensors/a/temp"), r#"{"id": "a", "c": 20}"#),
        Message::new(format!("{p}/sensors/a/b/temp"), r#"{"id": "nope"}"#),
        Message::new(format!("{p}/other"), r#"{"id": "nope"}"#),
        with_props,
        Message::new(format!("{p}/events/bad"), "{not json"),
        Message::new(format!("{p}/events"), r#"{"id": "e2"}"#),
    ]);
    wait_until(Duration::from_secs(20), "routed messages", || {
        ws.written_lines("out", "iot.temp") >= 2 && ws.written_lines("out", "iot.events") >= 2
    });
    sigterm(&child);
    assert_exit(&wait_output(child, Duration::from_secs(20)), 0);
    // Clear the retained message for later runs.
    let mut clear = retained;
    clear.payload = Vec::new();
    publish_blocking(&[clear]);

    let by_id = |target: &str| -> BTreeMap<String, Value> {
        ws.output("out", target)
            .into_iter()
            .map(|e| (e["key"].as_str().unwrap().to_string(), e))
            .collect()
    };
    let temp = by_id("iot.temp");
    assert_eq!(temp.keys().collect::<Vec<_>>(), vec!["a", "r"]);
    let header = |e: &Value| -> Vec<(String, String)> {
        serde_json::from_value(e["headers"].clone()).unwrap()
    };
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // Subscribed with QoS 0: delivered at QoS 0.
    assert_eq!(
        header(&temp["a"]),
        h(&[
            ("mqtt_topic", &format!("{p}/sensors/a/temp")),
            ("mqtt_qos", "0"),
            ("mqtt_retain", "false")
        ])
    );
    assert_eq!(
        header(&temp["r"])[2],
        ("mqtt_retain".to_string(), "true".to_string())
    );
    assert_eq!(temp["a"]["value"]["c"], 20);

    let events = by_id("iot.events");
    assert_eq!(events.keys().collect::<Vec<_>>(), vec!["e1", "e2"]);
    assert_eq!(
        header(&events["e1"]),
        h(&[
            ("mqtt_topic", &format!("{p}/events/a/b")),
            ("mqtt_qos", "2"),
            ("mqtt_retain", "false"),
            ("mqtt_content_type", "application/json"),
            ("origin", "plant-7"),
        ])
    );

    let dlq: Vec<Value> = std::fs::read_to_string(ws.path("dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0]["location"],
        format!("mqtt://127.0.0.1:1883 topic {p}/events/bad")
    );
    assert_eq!(dlq[0]["raw"], "{not json");
}

#[test]
fn config_errors_name_the_key_and_line() {
    let ws = workspace();
    let cfg = config(
        &ws,
        r#"[[source.topic_mappings]]
source_pattern = "a/#/b""#,
        "",
    );
    let o = ws.run(&["check", &cfg]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("source.topic_mappings[0].source_pattern"),
        "{err}"
    );
    assert!(
        err.contains("`#` must be a whole level and the last one"),
        "{err}"
    );

    let cfg = config(
        &ws,
        r#"qos = 1
[[source.topic_mappings]]
source_pattern = "a/b""#,
        "",
    );
    let o = ws.run(&["check", &cfg]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("qos"), "{}", stderr(&o));
}
