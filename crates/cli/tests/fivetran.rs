//! The `fivetran` source end to end through the binary: connectors written
//! for the real Fivetran Connector SDK (`fivetran-connector-sdk` 3.0.0 from
//! PyPI, in the virtualenv `scripts/setup` makes under `$TRIBUTARY_TOOLS`),
//! run unchanged. The example connector (`examples/fivetran`, seed 001's
//! shape) reads the REST simulator into a real PostgreSQL with
//! `exactly_once`; small connectors crash, hang, raise, report errors and
//! checkpoint too early.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::postgres::Scratch;
use tributary_testkit::sim::rest::{RestAuth, RestSim, RestSimConfig};

const TOKEN: &str = "tok-5e1f9a7c3b2d";

fn python() -> PathBuf {
    tool("fivetran/bin/python")
}

struct Env {
    ws: Workspace,
    sim: RestSim,
    _rt: tokio::runtime::Runtime,
}

impl Env {
    fn new(items: usize) -> Env {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sim = rt.block_on(RestSim::start_with(RestSimConfig {
            items,
            auth: RestAuth::Bearer {
                token: TOKEN.into(),
            },
            ..RestSimConfig::default()
        }));
        Env {
            ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
            sim,
            _rt: rt,
        }
    }

    /// `crm.toml`: the example connector into `sink`.
    fn config(&self, sink: &str) -> String {
        self.config_for("crm", &repo_root().join("examples/fivetran"), sink)
    }

    /// `NAME.toml`: the connector in `project` against the simulator, into `sink`.
    fn config_for(&self, name: &str, project: &std::path::Path, sink: &str) -> String {
        let text = format!(
            r#"
name = "{name}"

[source]
type = "fivetran"
python = "{python}"
project = "{project}"
configuration = {{ base_url = "{base}", bearer_token = "${{ITEMS_TOKEN}}" }}

[metadata]
enabled = false

[runtime]
backoff_initial = "10ms"
backoff_max = "50ms"

{sink}"#,
            python = python().display(),
            project = project.display(),
            base = self.sim.base_url(),
        );
        self.ws
            .write(&format!("{name}.toml"), &text)
            .to_string_lossy()
            .into_owned()
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.ws.cmd(args);
        cmd.env("ITEMS_TOKEN", TOKEN);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        wait_output(cmd.spawn().unwrap(), Duration::from_secs(180))
    }

    fn state(&self, cfg: &str) -> Value {
        let o = self.run(&["state", "get", cfg, "--stream", "sync"]);
        assert_exit(&o, 0);
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    /// The API's live items as the `items` table should hold them.
    fn live(&self) -> Vec<Value> {
        self.sim
            .items()
            .iter()
            .map(|i| {
                let at: DateTime<Utc> = i["updated_at"].as_str().unwrap().parse().unwrap();
                json!({
                    "id": i["id"], "name": i["name"], "amount": i["amount"],
                    "version": i["version"], "ms": at.timestamp_millis(), "_deleted": false,
                })
            })
            .collect()
    }
}

/// The `items` rows still alive, as [`Env::live`] writes them.
fn alive(db: &Scratch) -> Vec<Value> {
    db.rows(&format!(
        "SELECT id, name, amount, version, (extract(epoch FROM updated_at) * 1000)::bigint AS ms, _deleted \
         FROM {} WHERE NOT _deleted ORDER BY id",
        db.table("crm_items")
    ))
}

#[test]
fn example_connector_keeps_postgres_equal_to_the_live_api_across_updates_and_deletes() {
    let env = Env::new(1200);
    // Pages over 250 rows time out: the connector shrinks 1000 → 500 → 250.
    env.sim.fail_when_limit_above(250, 504);
    let db = Scratch::new("t_fivetran");
    let cfg = env.config(&db.sink("exactly_once = true"));

    let o = env.run(&["check", &cfg]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("source   ok: type `fivetran` with 1 stream(s): sync"),
        "{}",
        stdout(&o)
    );

    let o = env.run(&["discover", &cfg]);
    assert_exit(&o, 0);
    let found: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(found["streams"][0]["name"], "sync");
    assert_eq!(
        found["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| json!([t["name"], t["primary_key"], t["target"]]))
            .collect::<Vec<_>>(),
        vec![
            json!(["items", ["id"], "crm.items"]),
            json!(["errors", ["query"], "crm.errors"])
        ]
    );
    assert_eq!(
        found["tables"][0]["json_schema"]["properties"]["amount"]["x-sql-type"],
        "numeric(12,2)"
    );

    let o = env.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert!(
        !stderr(&o).contains(TOKEN),
        "the token leaked:\n{}",
        stderr(&o)
    );
    assert_eq!(alive(&db), env.live());
    // The declared types, not what the values suggest.
    assert_eq!(
        db.rows(&format!(
            "SELECT column_name AS c, data_type AS t FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'crm_items' AND column_name IN ('amount', 'version', 'updated_at') ORDER BY 1",
            db.schema
        )),
        vec![
            json!({"c": "amount", "t": "numeric"}),
            json!({"c": "updated_at", "t": "timestamp with time zone"}),
            json!({"c": "version", "t": "integer"}),
        ]
    );
    // Each failed page size left its query in the errors table.
    assert_eq!(
        db.rows(&format!(
            "SELECT query, take FROM {} ORDER BY take DESC",
            db.table("crm_errors")
        )),
        vec![
            json!({"query": "/items/deleted?after=0&limit=1000", "take": 1000}),
            json!({"query": "/items/deleted?after=0&limit=500", "take": 500}),
        ]
    );
    // The state committed with the rows is the state store's too.
    let state = env.state(&cfg);
    assert_eq!(
        state["state"]["items"],
        json!({"last_id": 1200, "total_synced": 1200})
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT stream, checkpoint FROM {} WHERE connector = 'crm'",
            db.table("tributary_checkpoints")
        )),
        vec![json!({"stream": "sync", "checkpoint": state})]
    );

    // Changes, deletions and new items: the next sync reads only those.
    for id in [5, 600, 1200] {
        assert!(env.sim.modify(id));
    }
    for id in [7, 800] {
        assert!(env.sim.remove(id));
    }
    env.sim
        .insert(json!({"id": 1201, "name": "new one", "amount": 12.5}));
    env.sim
        .insert(json!({"id": 1202, "name": "new two", "amount": 0.25}));
    env.sim.clear_requests();
    let o = env.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(alive(&db), env.live());
    assert_eq!(
        db.rows(&format!(
            "SELECT id, name FROM {} WHERE _deleted ORDER BY id",
            db.table("crm_items")
        )),
        vec![
            json!({"id": 7, "name": "item 7"}),
            json!({"id": 800, "name": "item 800"})
        ]
    );
    let first_new = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/items/keyset" && !r.has_param("updated_since"))
        .unwrap();
    assert_eq!(
        first_new.param("after_id"),
        Some("1200"),
        "the ID cursor resumed"
    );
    let state = env.state(&cfg);
    assert_eq!(
        state["state"]["items"],
        json!({"last_id": 1202, "total_synced": 1202})
    );
    assert_eq!(state["state"]["deletes"], json!({"after": 2}));
}

/// A connector that upserts whole rows on its first sync and, on the next,
/// sends `op.update` with only some columns: Fivetran changes only the
/// columns an update names and creates no row for a key it has not got.
const UPDATES: &str = r#"
from fivetran_connector_sdk import Connector, Operations as op
import api

def schema(configuration):
    return [{"table": "items", "primary_key": ["id"], "columns": {
        "id": "LONG", "name": "STRING", "amount": {"type": "DECIMAL", "precision": 12, "scale": 2}, "version": "INT"}}]

def items(configuration):
    after = 0
    while True:
        rows = api.get(configuration, "/items/keyset", {"after_id": after, "limit": 7})["data"]
        if not rows:
            return
        yield from rows
        after = rows[-1]["id"]

def update(configuration, state):
    sync = state.get("sync", 0) + 1
    for item in items(configuration):
        if sync == 1:
            amount = None if item.get("amount") is None else f"{item['amount']:.2f}"
            op.upsert("items", {"id": item["id"], "name": item["name"], "amount": amount, "version": item["version"]})
        else:
            # Only the version: name and amount stay what the table holds.
            op.update("items", {"id": item["id"], "version": item["version"]})
    if sync > 1:
        op.update("items", {"id": 2, "name": "two, renamed"})
        op.update("items", {"id": 2, "amount": None})
        op.update("items", {"id": 4242, "name": "never upserted"})
    yield op.checkpoint({"sync": sync})

connector = Connector(update=update, schema=schema)
"#;

#[test]
fn op_update_changes_only_the_columns_it_names_and_creates_no_row() {
    let env = Env::new(20);
    let project = env.ws.write("updates/connector.py", UPDATES);
    let project = project.parent().unwrap().to_path_buf();
    std::fs::copy(
        repo_root().join("examples/fivetran/api.py"),
        project.join("api.py"),
    )
    .unwrap();
    let db = Scratch::new("t_fivetran_upd");
    let cfg = env.config_for("upd", &project, &db.sink("exactly_once = true"));
    let table = db.table("upd_items");
    let rows = || {
        db.rows(&format!(
            "SELECT id, name, amount::text AS amount, version, _deleted FROM {table} ORDER BY id"
        ))
    };

    let o = env.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let first = rows();
    assert_eq!(first.len(), 20);
    assert!(first
        .iter()
        .all(|r| r["version"] == 1 && !r["name"].is_null()));

    // The API changes: versions move, item 7 is renamed there (the
    // connector's updates do not send names, so the table keeps the old).
    for id in [3, 5] {
        assert!(env.sim.modify(id));
    }
    env.sim
        .insert(json!({"id": 7, "name": "seven, renamed", "amount": 1.5, "version": 4}));
    let o = env.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);

    let mut want = first.clone();
    for row in &mut want {
        let id = row["id"].as_i64().unwrap();
        row["version"] = env.sim.item(id).unwrap()["version"].clone();
        if id == 2 {
            row["name"] = json!("two, renamed");
            row["amount"] = Value::Null;
        }
    }
    assert_eq!(want[2]["version"], 2);
    assert_eq!(want[6]["version"], 4);
    assert_eq!(rows(), want);
    // The update of a key the table does not have created no row.
    assert_eq!(
        db.rows(&format!(
            "SELECT count(*) AS n FROM {table} WHERE id = 4242"
        ))[0]["n"],
        0
    );
    // The state committed with the rows, exactly once.
    assert_eq!(
        db.rows(&format!(
            "SELECT checkpoint FROM {} WHERE connector = 'upd'",
            db.table("tributary_checkpoints")
        )),
        vec![json!({"checkpoint": {"state": {"sync": 2}}})]
    );
}

#[test]
fn kill_9_mid_sync_then_restart_leaves_exactly_the_live_set() {
    let total = 6000;
    let env = Env::new(total);
    env.sim.fail_when_limit_above(50, 503);
    env.sim.slow_next(1_000_000, Duration::from_millis(5));
    let db = Scratch::new("t_fivetran");
    let cfg = env.config(&db.sink("exactly_once = true"));
    let count = || {
        let exists = db.rows(&format!(
            "SELECT to_regclass('{}') IS NOT NULL AS e",
            db.table("crm_items")
        ));
        if exists[0]["e"] != json!(true) {
            return 0;
        }
        db.rows(&format!(
            "SELECT count(*) AS n FROM {}",
            db.table("crm_items")
        ))[0]["n"]
            .as_u64()
            .unwrap()
    };
    let mut child = env.cmd(&["run", &cfg, "--no-progress"]);
    let mut child = child
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(120), "rows to commit", || {
        std::thread::sleep(Duration::from_millis(20));
        count() >= 1500
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = count();
    assert!(
        committed < total as u64,
        "the kill landed after the sync ({committed} rows)"
    );
    // Where the restart must resume: the checkpoint committed with the rows
    // (the state store's may be one commit behind).
    let before = db.rows(&format!(
        "SELECT checkpoint FROM {} WHERE connector = 'crm' AND stream = 'sync'",
        db.table("tributary_checkpoints")
    ));
    let resumed_at = before[0]["checkpoint"]["state"]["items"]["last_id"]
        .as_u64()
        .unwrap();
    assert!(resumed_at > 0, "{before:?}");

    env.sim.clear_requests();
    let o = env.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(alive(&db), env.live());
    assert_eq!(count(), total as u64);
    // The restart went on from the committed ID cursor, not from the start.
    let first = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/items/keyset" && !r.has_param("updated_since"))
        .unwrap();
    assert_eq!(
        first.param("after_id"),
        Some(resumed_at.to_string().as_str())
    );
}

/// A connector of the test's own, `NAME/connector.py`, and a config (the
/// connector `NAME`) that writes its tables to NDJSON files under `out/`.
fn fake(ws: &Workspace, name: &str, code: &str, source_extra: &str) -> String {
    ws.write(&format!("{name}/connector.py"), code);
    let text = format!(
        r#"
name = "{name}"

[source]
type = "fivetran"
python = "{python}"
project = "{name}"
{source_extra}

[sink]
type = "file"
dir = "out"

[metadata]
enabled = false

[runtime]
backoff_initial = "10ms"
backoff_max = "50ms"
max_retries = 2
"#,
        python = python().display(),
    );
    ws.write(&format!("{name}.toml"), &text)
        .to_string_lossy()
        .into_owned()
}

/// How often each id reached table `t` of connector `name`.
fn ids(ws: &Workspace, name: &str) -> std::collections::BTreeMap<i64, usize> {
    counts(&ws.output("out", &format!("{name}.t")), "id")
}

fn state(ws: &Workspace, cfg: &str) -> Value {
    let o = ws.run(&["state", "get", cfg, "--stream", "sync"]);
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn a_crash_mid_sync_is_retried_from_the_last_checkpoint_and_stray_output_is_only_logged() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(
        &ws,
        "crashy",
        r#"
import os
from fivetran_connector_sdk import Connector, Operations as op

def update(configuration, state):
    for i in range(state.get("next", 1), 21):
        op.upsert("t", {"id": i})
        if i % 5 == 0:
            yield op.checkpoint({"next": i + 1})
        if i == 12 and not os.path.exists("crashed"):
            open("crashed", "w").close()
            print("garbage {not json")
            os.write(1, b"raw bytes on fd 1\n")
            os._exit(3)

connector = Connector(update=update, schema=lambda c: [{"table": "t", "primary_key": ["id"]}])
"#,
        "",
    );
    let o = ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let log = stderr(&o);
    assert!(log.contains("exited with status 3"), "{log}");
    assert!(
        log.contains("garbage {not json") && log.contains("raw bytes on fd 1"),
        "{log}"
    );
    let seen = ids(&ws, "crashy");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    // Re-read after the crash: only what followed the committed checkpoint.
    assert!(seen.range(1..=5).all(|(_, n)| *n == 1), "{seen:?}");
    assert_eq!(state(&ws, &cfg), json!({"state": {"next": 21}}));
}

/// Checkpoints before the rows they cover (a bug Fivetran itself would
/// lose rows to), then a crash in the middle of those rows.
const EARLY_CHECKPOINTS: &str = r#"
import os
from fivetran_connector_sdk import Connector, Operations as op

def update(configuration, state):
    page = state.get("page", 0)
    while page < 4:
        page += 1
        yield op.checkpoint({"page": page})
        for i in range(1, 6):
            op.upsert("t", {"id": page * 10 + i})
            if page == 3 and i == 2 and not os.path.exists("crashed"):
                open("crashed", "w").close()
                os._exit(1)

connector = Connector(update=update, schema=lambda c: [{"table": "t", "primary_key": ["id"]}])
"#;

#[test]
fn a_checkpoint_sent_before_its_rows_loses_nothing_unless_checkpoints_are_trusted() {
    let all: Vec<i64> = (1..=4)
        .flat_map(|p| (1..=5).map(move |i| p * 10 + i))
        .collect();

    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(&ws, "early", EARLY_CHECKPOINTS, "");
    let o = ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(ids(&ws, "early").keys().copied().collect::<Vec<_>>(), all);
    assert_eq!(state(&ws, &cfg), json!({"state": {"page": 4}}));

    // As Fivetran does: page 3's checkpoint is committed before its rows,
    // so the rows the crash cut off are never read again.
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let cfg = fake(&ws, "early", EARLY_CHECKPOINTS, "trust_checkpoints = true");
    let o = ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let seen: Vec<i64> = ids(&ws, "early").keys().copied().collect();
    assert!(
        !seen.contains(&33) && !seen.contains(&34) && !seen.contains(&35),
        "{seen:?}"
    );
    assert!(seen.contains(&41), "{seen:?}");
}

/// Runs `cfg`, which must fail (exit 1) saying `message`; its log.
fn fails_with(ws: &Workspace, cfg: &str, message: &str) -> String {
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 1);
    let log = stderr(&o);
    assert!(log.contains(message), "no `{message}` in:\n{log}");
    log
}

#[test]
fn raises_hangs_errors_and_truncates_fail_with_clear_messages() {
    let ws = Workspace::new(env!("CARGO_BIN_EXE_tributary"));
    let head = "import time\nfrom fivetran_connector_sdk import Connector, Operations as op\n";
    let tail = "connector = Connector(update=update, schema=lambda c: [{\"table\": \"t\", \"primary_key\": [\"id\"]}])\n";

    // update() raises: retried, then the run fails with the exception and
    // its traceback; the state is the last one the connector went past.
    // (Rows read again after a restart are no progress: only a newer
    // checkpoint renews the retry budget.)
    let cfg = fake(
        &ws,
        "raises",
        &format!(
            "{head}def update(configuration, state):\n    if not state:\n        op.upsert('t', {{'id': 1}})\n        yield op.checkpoint({{'n': 1}})\n        op.upsert('t', {{'id': 2}})\n        yield op.checkpoint({{'n': 2}})\n    raise RuntimeError('boom 42: the API said no')\n{tail}"
        ),
        "",
    );
    let log = fails_with(
        &ws,
        &cfg,
        "failed while executing update() error: boom 42: the API said no",
    );
    assert!(log.contains("RuntimeError"), "{log}");
    assert_eq!(state(&ws, &cfg), json!({"state": {"n": 1}}));

    // A connector that stops writing anything is killed after silence_timeout.
    let cfg = fake(
        &ws,
        "hangs",
        &format!(
            "{head}def update(configuration, state):\n    if not state:\n        op.upsert('t', {{'id': 1}})\n        yield op.checkpoint({{'n': 1}})\n        yield op.checkpoint({{'n': 2}})\n    time.sleep(3600)\n{tail}"
        ),
        "silence_timeout = \"2s\"",
    );
    let started = std::time::Instant::now();
    fails_with(
        &ws,
        &cfg,
        "wrote nothing for 2s (silence_timeout): killed it",
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(state(&ws, &cfg), json!({"state": {"n": 1}}));

    // op.error() is the connector saying a person must act: no retries.
    let cfg = fake(
        &ws,
        "reports",
        &format!(
            "{head}def update(configuration, state):\n    open('attempts', 'a').write('x')\n    op.error('the account is locked: call support')\n    yield op.checkpoint({{}})\n{tail}"
        ),
        "",
    );
    fails_with(
        &ws,
        &cfg,
        "reported an error with op.error(): the account is locked: call support",
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("reports/attempts")).unwrap(),
        "x"
    );

    // A truncate no sink can honour stops the sync unless told to skip it.
    let code = format!(
        "{head}def update(configuration, state):\n    op.truncate('t')\n    op.upsert('t', {{'id': 9}})\n    yield op.checkpoint({{'n': 9}})\n{tail}"
    );
    let cfg = fake(&ws, "truncates", &code, "");
    fails_with(&ws, &cfg, "called op.truncate(\"t\")");
    let cfg = fake(&ws, "truncates", &code, "truncate = \"ignore\"");
    let o = ws.run(&["run", &cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(state(&ws, &cfg), json!({"state": {"n": 9}}));

    // A Python without the SDK is a check failure saying what to install.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &python().display().to_string(),
        &tool("venv/bin/python").display().to_string(),
    );
    let cfg = ws.write("nosdk.toml", &text);
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("cannot import the Fivetran Connector SDK")
            && stderr(&o).contains("pip install fivetran-connector-sdk==3.0.0"),
        "{}",
        stderr(&o)
    );
}
