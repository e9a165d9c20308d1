//! End to end through the binary: quickstart, resume, crash (kill -9) and
//! restart, graceful shutdown, follow mode, several connectors at once.

use tributary_testkit::cli::*;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}
use std::time::Duration;

const SINK: &str = r#"
[sink]
type = "file"
dir = "out"
"#;

#[test]
fn quickstart_runs_and_a_second_run_adds_nothing() {
    let ws = workspace();
    let text = std::fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    let cfg = ws.write("examples/quickstart.toml", &text);
    let o = ws.run(&["run", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let users = ws.output("out/quickstart", "quickstart.users");
    let orders = ws.output("out/quickstart", "quickstart.orders");
    assert_eq!(counts(&users, "id"), (1..=10_000).map(|i| (i, 1)).collect());
    assert_eq!(
        counts(&orders, "order_id"),
        (1..=10_000).map(|i| (i, 1)).collect()
    );
    assert_eq!(users[0]["_stream"], "users");
    assert_eq!(users[0]["_load_mode"], "INITIAL_LOAD");
    assert!(users[0]["_ingested_at"].is_string());

    let o = ws.run(&["run", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(
        ws.output("out/quickstart", "quickstart.users").len(),
        10_000
    );
    assert_eq!(
        ws.output("out/quickstart", "quickstart.orders").len(),
        10_000
    );

    let o = ws.run(&["state", "get", cfg.to_str().unwrap()]);
    assert_exit(&o, 0);
    let state: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        state,
        serde_json::json!({"orders": {"next": 10000}, "users": {"next": 10000}})
    );
}

fn generator_config(total: Option<u64>, rate: u64) -> String {
    let total = total.map(|t| format!("total = {t}")).unwrap_or_default();
    format!(
        r#"
name = "gen"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
rate = {rate}
{total}
[runtime]
batch_size = 100
flush_records = 1000
flush_interval = "50ms"
{SINK}"#
    )
}

#[test]
fn kill_9_at_several_points_loses_nothing_and_duplicates_only_the_uncommitted_tail() {
    let ws = workspace();
    let total = 24_000;
    let cfg = ws.write("gen.toml", &generator_config(Some(total), 12_000));
    let cfg = cfg.to_str().unwrap();
    let kills = [300u64, 650, 1100];
    for after in kills {
        let mut child = ws.spawn(&["run", cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let seen = counts(&ws.output("out", "gen.users"), "id");
    // Nothing lost.
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=total as i64).collect::<Vec<_>>()
    );
    // Duplicates only from the uncommitted tail of each crashed run:
    // at most flush_records (+ one batch in flight) per kill.
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= kills.len() * (1000 + 100),
        "{duplicates} duplicates after {} kills",
        kills.len()
    );
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap(),
        serde_json::json!({"next": total})
    );
}

#[test]
fn kill_9_during_a_file_load_then_restart_delivers_every_line() {
    let ws = workspace();
    let lines = 150_000;
    let mut data = String::with_capacity(lines * 40);
    for i in 1..=lines {
        data.push_str(&format!("{{\"event_id\": {i}, \"kind\": \"click\"}}\n"));
    }
    ws.write("data/events.ndjson", &data);
    let cfg = ws.write(
        "files.toml",
        &format!(
            r#"
name = "files"
[source]
type = "file"
[source.streams.events]
path = "data/*.ndjson"
format = "ndjson"
[runtime]
batch_size = 500
flush_records = 2000
flush_interval = "20ms"
{SINK}"#
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let kills = [150u64, 250, 400];
    for after in kills {
        let mut child = ws.spawn(&["run", cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(after));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let seen = counts(&ws.output("out", "files.events"), "event_id");
    assert_eq!(seen.len(), lines);
    assert_eq!(*seen.keys().next().unwrap(), 1);
    assert_eq!(*seen.keys().last().unwrap(), lines as i64);
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= kills.len() * (2000 + 500),
        "{duplicates} duplicates"
    );
}

#[test]
fn sigterm_drains_commits_and_exits_zero() {
    let ws = workspace();
    let cfg = ws.write("gen.toml", &generator_config(None, 5_000));
    let cfg = cfg.to_str().unwrap();
    let child = ws.spawn(&["run", cfg, "--no-progress"]);
    wait_until(Duration::from_secs(30), "some output", || {
        ws.output("out", "gen.users").len() > 1000
    });
    sigterm(&child);
    let o = wait_output(child, Duration::from_secs(30));
    assert_exit(&o, 0);
    let written = ws.output("out", "gen.users");
    // Everything written was acknowledged and committed: the checkpoint is
    // exactly the number of records delivered, and a restart continues there.
    let o = ws.run(&["state", "get", cfg, "--stream", "users"]);
    let cp: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(cp["next"].as_u64().unwrap(), written.len() as u64);
    assert_eq!(counts(&written, "id").len(), written.len());
}

#[test]
fn follow_mode_tails_growing_files_and_picks_up_new_ones() {
    let ws = workspace();
    ws.write("logs/a.ndjson", "{\"n\": 1}\n{\"n\": 2}\n");
    let cfg = ws.write(
        "tail.toml",
        &format!(
            r#"
name = "tail"
[source]
type = "file"
[source.streams.logs]
path = "logs/*.ndjson"
format = "ndjson"
follow = true
[runtime]
poll_interval = "50ms"
flush_interval = "50ms"
{SINK}"#
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let child = ws.spawn(&["run", cfg, "--no-progress"]);
    wait_until(Duration::from_secs(30), "first lines", || {
        ws.output("out", "tail.logs").len() == 2
    });
    ws.append("logs/a.ndjson", "{\"n\": 3}\n");
    ws.write("logs/b.ndjson", "{\"n\": 4}\n{\"n\": 5}\n");
    wait_until(Duration::from_secs(30), "appended and new file", || {
        ws.output("out", "tail.logs").len() == 5
    });
    // A reset is refused while the connector runs (the store is locked).
    let o = ws.run(&["state", "reset", cfg, "--all"]);
    assert_exit(&o, 4);
    assert!(
        stderr(&o).contains("in use by another tributary process"),
        "{}",
        stderr(&o)
    );
    sigterm(&child);
    let o = wait_output(child, Duration::from_secs(30));
    assert_exit(&o, 0);
    let seen = counts(&ws.output("out", "tail.logs"), "n");
    assert_eq!(seen, (1..=5).map(|i| (i, 1)).collect());
    assert!(ws
        .output("out", "tail.logs")
        .iter()
        .all(|v| v["_load_mode"].is_string()));
}

#[test]
fn several_connectors_run_in_one_process() {
    let ws = workspace();
    let a = ws.write(
        "a.toml",
        &format!("name = \"a\"\n[source]\ntype = \"generator\"\n[source.streams.s]\nrecord_type = \"sensor\"\ntotal = 50\n{SINK}"),
    );
    let b = ws.write(
        "b.toml",
        &format!("name = \"b\"\n[source]\ntype = \"generator\"\n[source.streams.s]\nrecord_type = \"event\"\ntotal = 70\n{SINK}"),
    );
    let o = ws.run(&["run", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(ws.output("out", "a.s").len(), 50);
    assert_eq!(ws.output("out", "b.s").len(), 70);
    // The same name twice is refused before anything starts.
    let o = ws.run(&["run", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("connector name `a` is also used by"),
        "{}",
        stderr(&o)
    );
}
