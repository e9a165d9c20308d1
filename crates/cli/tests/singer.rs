//! The `singer` source end to end: the binary runs real taps from PyPI
//! (`meltanolabs-tap-postgres` against the local PostgreSQL,
//! `tap-rest-api-msdk` against the testkit's REST simulator), installed by
//! `scripts/setup` into virtualenvs under `$TRIBUTARY_TOOLS`, and a fake tap
//! (`fixtures/bridges/fake_connector.py`) that crashes, hangs, prints
//! garbage and sends its STATEs before the records they cover.

use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::postgres;
use tributary_testkit::sim::rest::RestSim;

/// Python connectors start slowly on a busy machine.
const SLOW: Duration = Duration::from_secs(400);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sql(statements: &str) {
    block_on(async {
        let mut c = postgres::connect().await;
        sqlx::raw_sql(statements).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    })
}

fn ids(values: &[Value]) -> Vec<i64> {
    values.iter().filter_map(|v| v["id"].as_i64()).collect()
}

fn state(ws: &Workspace, cfg: &str, stream: &str) -> Value {
    let o = ws.run(&["state", "get", cfg, "--stream", stream]);
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// A password the tap is given and no log line may show.
const PG_SECRET: &str = "Tap-S3cret-9f2c";

#[test]
fn tap_postgres_reads_by_replication_key_and_resumes_after_kill_9() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let schema = postgres::unique_schema("singer");
    sql(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL);
         INSERT INTO {schema}.items
           SELECT i, 'item ' || i, '2024-01-01T00:00:00Z'::timestamptz + i * interval '1 second'
           FROM generate_series(1, 60000) i;"
    ));
    let stream = format!("{schema}-items");
    let tap = tool("tap-postgres/bin/tap-postgres");
    let cfg = ws.write(
        "pg.toml",
        &format!(
            r#"name = "pgtap"
[source]
type = "singer"
command = ["{tap}"]
config = {{ host = "127.0.0.1", port = 5432, user = "postgres", password = "${{PGPASSWORD}}", database = "test", filter_schemas = ["{schema}"] }}
streams = ["{stream}"]
replication = {{ "{stream}" = {{ method = "INCREMENTAL", key = "updated_at" }} }}

[sink]
type = "file"
dir = "out"

[runtime]
batch_size = 2000
"#,
            tap = tap.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let target = format!("pgtap.{stream}");

    // Discovery: the table's key and JSON Schema.
    let mut c = ws.cmd(&["discover", cfg]);
    c.env("PGPASSWORD", PG_SECRET);
    let o = wait_output(
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        SLOW,
    );
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains(&stream) && out.contains("updated_at"), "{out}");

    // Kill -9 once the tap has sent a few STATEs.
    let mut c = ws.cmd(&["run", cfg]);
    // Nobody reads its log: a full stderr pipe would block it.
    c.env("PGPASSWORD", PG_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_until(SLOW, "part of the table", || {
        ws.written_lines("out", &target) >= 32_000
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = ws.written_lines("out", &target);
    assert!(
        at_kill < 60_000,
        "the run ended before the kill ({at_kill} lines)"
    );
    let committed = state(&ws, cfg, &stream);
    let bookmark = &committed["state"]["bookmarks"][&stream];
    assert_eq!(bookmark["replication_key"], "updated_at", "{committed}");

    // Restart: everything arrives; only what followed the last commit twice.
    let mut c = ws.cmd(&["run", "--once", cfg]);
    c.env("PGPASSWORD", PG_SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = wait_output(c.spawn().unwrap(), SLOW);
    assert_exit(&o, 0);
    let log = stderr(&o);
    assert!(!log.contains(PG_SECRET), "{log}");
    let got = ids(&ws.output("out", &target));
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct, (1..=60_000).collect::<BTreeSet<_>>());
    let duplicates = got.len() - distinct.len();
    assert!(duplicates <= at_kill, "{duplicates} duplicates");
    let done = state(&ws, cfg, &stream);
    assert_eq!(
        done,
        json!({"state": {"bookmarks": {stream.clone(): {
            "replication_key": "updated_at",
            "replication_key_value": "2024-01-01T16:40:00.000000+00:00"
        }}}})
    );

    // Incremental: changed and new rows, and the boundary row again
    // (the tap reads `updated_at >= bookmark`), nothing else.
    let before = got.len();
    sql(&format!(
        "UPDATE {schema}.items SET name = 'changed', updated_at = '2024-06-01T00:00:00Z' WHERE id IN (7, 70);
         INSERT INTO {schema}.items VALUES (60001, 'new', '2024-06-02T00:00:00Z');"
    ));
    let mut c = ws.cmd(&["run", "--once", cfg]);
    c.env("PGPASSWORD", PG_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let o = wait_output(c.spawn().unwrap(), SLOW);
    assert_exit(&o, 0);
    let all = ws.output("out", &target);
    let new: BTreeSet<i64> = ids(&all[before..]).into_iter().collect();
    assert_eq!(new, BTreeSet::from([7, 70, 60000, 60001]));
    assert!(all[before..]
        .iter()
        .any(|v| v["id"] == 7 && v["name"] == "changed"));
    postgres::drop_schema(&schema);
}

#[test]
fn tap_rest_api_msdk_reads_the_rest_simulator_incrementally() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start(120));
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let tap = tool("tap-rest-api-msdk/bin/tap-rest-api-msdk");
    let cfg = ws.write(
        "rest.toml",
        &format!(
            r#"name = "resttap"
[source]
type = "singer"
command = ["{tap}"]
streams = ["items"]

[source.config]
api_url = "{url}"
pagination_request_style = "jsonpath_paginator"
next_page_token_path = "$.next_cursor"
pagination_next_page_param = "cursor"
streams = [{{ name = "items", path = "/items/cursor", params = {{ limit = 25 }}, records_path = "$.data[*]", primary_keys = ["id"], replication_key = "updated_at", source_search_field = "updated_since", source_search_query = "$last_run_date", start_date = "2020-01-01T00:00:00Z" }}]

[sink]
type = "file"
dir = "out"
"#,
            tap = tap.display(),
            url = sim.base_url()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let o = ws.run_for(&["run", "--once", cfg], SLOW);
    assert_exit(&o, 0);
    let first = ws.output("out", "resttap.items");
    assert_eq!(ids(&first), (1..=120).collect::<Vec<_>>());
    assert_eq!(first[0]["name"], "item 1");
    let committed = state(&ws, cfg, "items");
    let last = sim.item(120).unwrap()["updated_at"].clone();
    assert_eq!(
        committed["state"]["bookmarks"]["items"]["replication_key_value"], last,
        "{committed}"
    );

    // The next run asks from the bookmark on: the boundary item and the
    // changed ones.
    sim.set_now("2025-01-01T00:00:00Z".parse().unwrap());
    assert!(sim.modify(5) && sim.modify(60));
    let o = ws.run_for(&["run", "--once", cfg], SLOW);
    assert_exit(&o, 0);
    let all = ws.output("out", "resttap.items");
    assert_eq!(ids(&all[120..]), vec![120, 5, 60]);
    assert_eq!(all[121]["version"], 2);
}

/// `fake_connector.py` as a tap, with a plan of runs.
fn fake(ws: &Workspace, plan: &str, total: u32, extra: &str) -> String {
    ws.write("plan", plan);
    let script = repo_root().join("crates/cli/tests/fixtures/bridges/fake_connector.py");
    let cfg = ws.write(
        "fake.toml",
        &format!(
            r#"name = "fake"
[source]
type = "singer"
command = ["python3", "{script}"]
config = {{ plan = "{plan}", total = {total}, chunk = 10 }}
silence_timeout = "2s"
{extra}

[sink]
type = "file"
dir = "out"

[runtime]
batch_size = 7
backoff_initial = "50ms"
backoff_max = "100ms"

[bad_records]
policy = "dead_letter"
"#,
            script = script.display(),
            plan = ws.path("plan").display()
        ),
    );
    cfg.to_str().unwrap().to_string()
}

#[test]
fn a_tap_that_crashes_hangs_and_prints_garbage_loses_nothing() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    // Every run sends STATE before the records it covers.
    let cfg = fake(&ws, "crash 15\nhang 12\ngarbage 3\n", 60, "");
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    let log = stderr(&o);
    // The crash, with the tap's last stderr lines.
    assert!(
        log.contains(
            "singer fake_connector.py (items) exited with status 1; its last stderr lines:"
        ),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: the upstream API went away"),
        "{log}"
    );
    // The hang, detected by the silence timeout.
    assert!(
        log.contains(
            "singer fake_connector.py (items) wrote nothing for 2s (silence_timeout): killed it"
        ),
        "{log}"
    );
    let got = ids(&ws.output("out", "fake.items"));
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct, (1..=60).collect::<BTreeSet<_>>(), "{got:?}");
    // The garbage line went to the dead-letter file with its location.
    let dead = std::fs::read_to_string(ws.path(".tributary/dead_letter/fake.ndjson")).unwrap();
    assert!(dead.contains("this is not a message"), "{dead}");
    assert!(dead.contains("(items) stdout line"), "{dead}");
    assert!(
        dead.contains("not a Singer message: invalid JSON"),
        "{dead}"
    );
    assert_eq!(
        state(&ws, &cfg, "items"),
        json!({"state": {"bookmarks": {"items": {"id": 60}}}})
    );
}

/// A tap that prints records and dies before its next STATE, every time,
/// makes no progress: the records it re-reads are no advance, so the
/// retries run out (instead of restarting it forever, duplicating those
/// records each time) and the run fails with the tap's last words, the
/// committed checkpoint where the last real progress left it.
#[test]
fn a_tap_that_dies_between_states_every_time_exhausts_its_retries() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    // Run 1 commits state 10 (ids 1..10), reads 11..15 and dies. Every
    // later run hands over a batch of 11..17 (batch_size 7), reads 18 and
    // 19 and dies before the STATE that would confirm state 20.
    let cfg = fake(&ws, "crash 15\ncrash 9\n", 60, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[runtime]\n", "[runtime]\nmax_retries = 2\n");
    ws.write("fake.toml", &text);
    let started = std::time::Instant::now();
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("connector `fake`, stream `items`: gave up after 2 consecutive retryable errors; last: singer fake_connector.py (items) exited with status 1; its last stderr lines:"),
        "{err}"
    );
    assert!(
        err.contains("RuntimeError: the upstream API went away"),
        "{err}"
    );
    // The first run and two retries, no more.
    assert_eq!(std::fs::read_to_string(ws.path("plan.n")).unwrap(), "3");
    assert!(started.elapsed() < SLOW, "{:?}", started.elapsed());
    assert_eq!(
        state(&ws, &cfg, "items"),
        json!({"state": {"bookmarks": {"items": {"id": 10}}}})
    );
    // 1..10 once, then 11..17 from each of the two runs that died: the
    // duplicates stop with the retries.
    let got = ids(&ws.output("out", "fake.items"));
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct, (1..=17).collect::<BTreeSet<_>>(), "{got:?}");
    assert_eq!(got.len(), 10 + 2 * 7, "{got:?}");
}

#[test]
fn config_errors_name_the_key() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = ws.write(
        "bad.toml",
        r#"name = "bad"
[source]
type = "singer"
command = [".venv/bin/tap-nothing"]

[sink]
type = "stdout"
"#,
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("bad.toml:4: source.command:"), "{err}");
    assert!(
        err.contains(".venv/bin/tap-nothing` is not an executable file"),
        "{err}"
    );

    let cfg = fake(&ws, "ok\n", 5, "streams = [\"itemz\"]");
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    let err = stderr(&o);
    assert!(
        err.contains("source.streams: the tap offers no stream `itemz`; it offers: items"),
        "{err}"
    );
}
