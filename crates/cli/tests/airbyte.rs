//! The `airbyte` source end to end: the binary runs real connectors from
//! PyPI (`airbyte-source-faker` with a fixed seed, and airbyte-cdk's
//! `source-declarative-manifest` with a manifest for the testkit's REST
//! simulator), installed by `scripts/setup` into virtualenvs under
//! `$TRIBUTARY_TOOLS`, and a fake source (`fixtures/bridges/fake_connector.py`)
//! that crashes, hangs, prints garbage, reports errors and sends its STATEs
//! before the records they cover.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::RestSim;

/// Python connectors start slowly on a busy machine.
const SLOW: Duration = Duration::from_secs(400);

fn ids(values: &[Value]) -> Vec<i64> {
    values.iter().filter_map(|v| v["id"].as_i64()).collect()
}

fn state(ws: &Workspace, cfg: &str, stream: &str) -> Value {
    let o = ws.run(&["state", "get", cfg, "--stream", stream]);
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn source_faker_resumes_after_kill_9_and_full_refreshes_start_over() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let faker = tool("source-faker/bin/source-faker");
    // source-faker regenerates every user when a state says it has read
    // before, unless `always_updated = false`, when it reads none.
    let write = |always_updated: bool| {
        let path = ws.write(
            "faker.toml",
            &format!(
                r#"name = "faker"
[source]
type = "airbyte"
command = ["{faker}"]
config = {{ count = 8000, seed = 1, records_per_slice = 250, always_updated = {always_updated}, parallelism = 1 }}
streams = ["users", "products"]
sync = {{ products = {{ mode = "full_refresh" }} }}

[sink]
type = "file"
dir = "out"
"#,
                faker = faker.display()
            ),
        );
        path.to_str().unwrap().to_string()
    };
    let cfg = write(true);
    // Nobody reads its log: a full stderr pipe would block it.
    let mut child = ws
        .cmd(&["run", &cfg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once part of the users arrived and a STATE covering some of
    // them was committed (the running connector's snapshot answers
    // `state get`): lines in the file alone do not mean a commit yet.
    wait_until(SLOW, "part of the users and a committed STATE", || {
        ws.written_lines("out", "faker.users") >= 2_500 && {
            let o = ws.run(&["state", "get", &cfg, "--stream", "users"]);
            o.status.success() && stdout(&o).contains("loop_offset")
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = ws.written_lines("out", "faker.users");
    assert!(at_kill < 8_000, "the run ended before the kill ({at_kill})");
    let committed = state(&ws, &cfg, "users");
    assert_eq!(committed["state"]["type"], "STREAM", "{committed}");
    let offset = committed["state"]["stream"]["stream_state"]["loop_offset"]
        .as_i64()
        .unwrap();
    assert!(offset > 0 && offset < 8_000, "{committed}");

    // The restart hands the committed STATE back; nothing is missing.
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    let log = stderr(&o);
    assert!(
        log.contains(&format!(
            "Setting state of SourceFaker stream to {{'loop_offset': {offset}"
        )),
        "{log}"
    );
    let users = ids(&ws.output("out", "faker.users"));
    let distinct: BTreeSet<i64> = users.iter().copied().collect();
    assert_eq!(distinct, (1..=8_000).collect::<BTreeSet<_>>());
    let done = state(&ws, &cfg, "users");
    assert_eq!(
        done["state"]["stream"]["stream_state"]["loop_offset"],
        8_000
    );
    assert_eq!(
        done["state"]["stream"]["stream_descriptor"],
        json!({"name": "users"})
    );
    // A completed full refresh leaves no position: the next one starts over.
    assert_eq!(state(&ws, &cfg, "products"), json!({"state": null}));
    let products = ids(&ws.output("out", "faker.products"));
    assert_eq!(
        products.iter().copied().collect::<BTreeSet<_>>(),
        (1..=100).collect::<BTreeSet<_>>()
    );

    // Incremental with nothing new: no user; every product once more.
    let cfg = write(false);
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    assert_eq!(ws.output("out", "faker.users").len(), users.len());
    let again = ids(&ws.output("out", "faker.products"));
    assert_eq!(again.len(), products.len() + 100);
    assert_eq!(
        again[products.len()..]
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        (1..=100).collect::<BTreeSet<_>>()
    );
}

#[test]
fn a_declarative_manifest_reads_the_rest_simulator_full_then_incremental() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start(120));
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let sdm = tool("airbyte-cdk/bin/source-declarative-manifest");
    let manifest = repo_root().join("crates/cli/tests/fixtures/bridges/rest_sim_manifest.yaml");
    let write = |config: &str| {
        let path = ws.write(
            "rest.toml",
            &format!(
                r#"name = "restab"
[source]
type = "airbyte"
command = ["{sdm}"]
manifest = "{manifest}"
config = {{ {config} }}

[sink]
type = "file"
dir = "out"
"#,
                sdm = sdm.display(),
                manifest = manifest.display()
            ),
        );
        path.to_str().unwrap().to_string()
    };
    let cfg = write(&format!(
        "base_url = \"{}\", start_date = \"2020-01-01T00:00:00Z\"",
        sim.base_url()
    ));
    let o = ws.run_for(&["check", &cfg], SLOW);
    assert_exit(&o, 0);

    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    let first = ws.output("out", "restab.items");
    assert_eq!(ids(&first), (1..=120).collect::<Vec<_>>());
    let last = sim.item(120).unwrap()["updated_at"].clone();
    assert_eq!(
        state(&ws, &cfg, "items"),
        json!({"state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "items"},
            "stream_state": {"updated_at": last}
        }}})
    );

    // Incremental: the changed items and the boundary one (inclusive).
    sim.set_now("2025-01-01T00:00:00Z".parse().unwrap());
    assert!(sim.modify(5) && sim.modify(60));
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    let all = ws.output("out", "restab.items");
    assert_eq!(ids(&all[120..]), vec![120, 5, 60]);
    assert_eq!(all[121]["version"], 2);
}

/// The manifest read in hourly slices (the simulator's items are a minute
/// apart), so airbyte-cdk sends a STATE after each slice: kill -9 between
/// two of them, restart, and the committed STATE is where it resumes.
#[test]
fn a_declarative_manifest_resumes_after_kill_9_from_the_committed_state() {
    let total = 3000; // 50 hours of items, 2024-01-01T00:00Z on
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start(total));
    // Slow enough that the kill lands mid-run.
    sim.slow_next(1_000_000, Duration::from_millis(40));
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let sdm = tool("airbyte-cdk/bin/source-declarative-manifest");
    let manifest = std::fs::read_to_string(
        repo_root().join("crates/cli/tests/fixtures/bridges/rest_sim_manifest.yaml"),
    )
    .unwrap()
    .replace(
        "      cursor_field: updated_at\n",
        "      cursor_field: updated_at\n      step: PT1H\n      cursor_granularity: PT1S\n      end_datetime:\n        type: MinMaxDatetime\n        datetime: \"2024-01-03T06:00:00Z\"\n        datetime_format: \"%Y-%m-%dT%H:%M:%SZ\"\n",
    );
    assert!(manifest.contains("step: PT1H"));
    let manifest = ws.write("sliced.yaml", &manifest);
    let cfg = ws.write(
        "rest.toml",
        &format!(
            r#"name = "restab"
[source]
type = "airbyte"
command = ["{sdm}"]
manifest = "{manifest}"
config = {{ base_url = "{base}", start_date = "2024-01-01T00:00:00Z" }}

[sink]
type = "file"
dir = "out"
"#,
            sdm = sdm.display(),
            manifest = manifest.display(),
            base = sim.base_url(),
        ),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let cursor = |v: &Value| {
        v["state"]["stream"]["stream_state"]["updated_at"]
            .as_str()
            .map(str::to_string)
    };
    let mut child = ws
        .cmd(&["run", &cfg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed only once a STATE was committed (the running connector's
    // snapshot answers `state get`), and a few slices past the start.
    wait_until(SLOW, "a committed STATE past the first slices", || {
        let o = ws.run(&["state", "get", &cfg, "--stream", "items"]);
        o.status.success()
            && serde_json::from_str::<Value>(&stdout(&o))
                .ok()
                .and_then(|v| cursor(&v))
                .is_some_and(|c| c.as_str() >= "2024-01-01T03:00:00Z")
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: Vec<Value> = ws
        .output_lines("out", "restab.items")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        before.len() < total,
        "the run ended before the kill ({})",
        before.len()
    );
    let committed = cursor(&state(&ws, &cfg, "items")).expect("a committed cursor");
    assert!(committed.as_str() < "2024-01-03T02:00:00Z", "{committed}");

    sim.clear_requests();
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    // The restart asked only from the committed cursor on.
    let first = sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/items/offset")
        .expect("a request");
    let since = first.param("updated_since").unwrap_or_default().to_string();
    assert!(since >= committed, "{since} < {committed}");

    // Every item, exactly the simulator's set.
    let all = ws.output("out", "restab.items");
    let got: BTreeSet<i64> = ids(&all).into_iter().collect();
    let want: BTreeSet<i64> = sim
        .items()
        .iter()
        .filter_map(|i| i["id"].as_i64())
        .collect();
    assert_eq!(got, want);
    // Duplicates only among what was delivered after the committed STATE
    // before the kill: nothing older than it was read twice.
    let mut seen = std::collections::BTreeMap::<i64, usize>::new();
    for id in ids(&all) {
        *seen.entry(id).or_default() += 1;
    }
    let uncommitted: BTreeSet<i64> = before
        .iter()
        .filter(|r| {
            r["updated_at"]
                .as_str()
                .is_some_and(|u| u >= committed.as_str())
        })
        .filter_map(|r| r["id"].as_i64())
        .collect();
    eprintln!(
        "killed with {} lines written, committed cursor {committed}; {} ids twice",
        before.len(),
        seen.values().filter(|n| **n > 1).count()
    );
    for (id, n) in &seen {
        assert!(
            *n == 1 || (*n == 2 && uncommitted.contains(id)),
            "id {id} arrived {n} times (committed cursor {committed})"
        );
    }
    assert_eq!(
        cursor(&state(&ws, &cfg, "items")).as_deref(),
        sim.item(total as i64).unwrap()["updated_at"].as_str()
    );
}

/// `fake_connector.py` as an Airbyte source, with a plan of runs.
fn fake(ws: &Workspace, plan: &str) -> String {
    ws.write("plan", plan);
    let script = repo_root().join("crates/cli/tests/fixtures/bridges/fake_connector.py");
    let cfg = ws.write(
        "fake.toml",
        &format!(
            r#"name = "fake"
[source]
type = "airbyte"
command = ["python3", "{script}"]
config = {{ plan = "{plan}", total = 60, chunk = 10 }}
silence_timeout = "2s"

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
fn a_source_that_crashes_hangs_and_prints_garbage_loses_nothing() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(&ws, "crash 15\nhang 12\ngarbage 3\n");
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    let log = stderr(&o);
    assert!(
        log.contains(
            "airbyte fake_connector.py (items) exited with status 1; its last stderr lines:"
        ),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: the upstream API went away"),
        "{log}"
    );
    assert!(
        log.contains(
            "airbyte fake_connector.py (items) wrote nothing for 2s (silence_timeout): killed it"
        ),
        "{log}"
    );
    let got = ids(&ws.output("out", "fake.items"));
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct, (1..=60).collect::<BTreeSet<_>>(), "{got:?}");
    let dead = std::fs::read_to_string(ws.path(".tributary/dead_letter/fake.ndjson")).unwrap();
    assert!(dead.contains("this is not a message"), "{dead}");
    assert!(
        dead.contains("not an Airbyte message: invalid JSON"),
        "{dead}"
    );
    assert_eq!(
        state(&ws, &cfg, "items"),
        json!({"state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "items"}, "stream_state": {"id": 60}
        }}})
    );
}

/// `catalog = FILE` stands in for `discover` (as a saved connection's
/// catalog does in Airbyte): `run` and `discover` never start it, and the
/// file's streams are what is read.
#[test]
fn a_catalog_file_replaces_discover() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(&ws, "ok\n");
    let catalog = ws.write(
        "catalog.json",
        &json!({"type": "CATALOG", "catalog": {"streams": [{
            "name": "items", "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": true, "default_cursor_field": ["id"],
            "source_defined_primary_key": [["id"]]}]}})
        .to_string(),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "silence_timeout = \"2s\"\n",
        &format!(
            "silence_timeout = \"2s\"\ncatalog = \"{}\"\nenv = {{ FAKE_NO_DISCOVER = \"1\" }}\n",
            catalog.display()
        ),
    );
    std::fs::write(&cfg, &text).unwrap();
    let o = ws.run(&["discover", &cfg]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("items"), "{}", stdout(&o));
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 0);
    assert_eq!(
        ids(&ws.output("out", "fake.items")),
        (1..=60).collect::<Vec<_>>()
    );
    // The same connector without the file runs `discover`, which fails.
    std::fs::write(
        &cfg,
        text.replace(&format!("catalog = \"{}\"\n", catalog.display()), ""),
    )
    .unwrap();
    let o = ws.run(&["discover", &cfg]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("discover was run although a catalog file was given"),
        "{}",
        stderr(&o)
    );
    // A catalog file that is not there is a config error naming the key.
    std::fs::write(
        &cfg,
        text.replace(&catalog.display().to_string(), "/nonexistent/catalog.json"),
    )
    .unwrap();
    let o = ws.run(&["check", &cfg]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("catalog") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
}

/// A source that prints records and dies before its next STATE, every
/// time: its re-read records are no progress, the retries run out and the
/// run fails with its last stderr, the committed state unchanged.
#[test]
fn a_source_that_dies_between_states_every_time_exhausts_its_retries() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    // As in the Singer test: run 1 commits state 10; later runs hand over
    // 11..17 and die before state 20 is confirmed.
    let cfg = fake(&ws, "crash 15\ncrash 9\n");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[runtime]\n", "[runtime]\nmax_retries = 2\n");
    ws.write("fake.toml", &text);
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("connector `fake`, stream `items`: gave up after 2 consecutive retryable errors; last: airbyte fake_connector.py (items) exited with status 1; its last stderr lines:"),
        "{err}"
    );
    assert!(
        err.contains("RuntimeError: the upstream API went away"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(ws.path("plan.n")).unwrap(), "3");
    assert_eq!(
        state(&ws, &cfg, "items"),
        json!({"state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "items"}, "stream_state": {"id": 10}
        }}})
    );
    let got = ids(&ws.output("out", "fake.items"));
    assert_eq!(got.len(), 10 + 2 * 7, "{got:?}");
}

#[test]
fn a_trace_config_error_stops_without_retrying() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(&ws, "config_error\n");
    let o = ws.run_for(&["run", "--once", &cfg], SLOW);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains(
            "airbyte fake_connector.py (items) reported a config_error: The API key is invalid."
        ),
        "{err}"
    );
    // One read, no retries.
    assert_eq!(std::fs::read_to_string(ws.path("plan.n")).unwrap(), "1");

    // `check` runs spec: a key it requires is missing by name.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("plan = ", "plan_file = ");
    ws.write("fake.toml", &text);
    let o = ws.run_for(&["check", &cfg], SLOW);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("source.config: missing `plan` (required by the connector's spec)"),
        "{err}"
    );
}
