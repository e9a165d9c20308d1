//! The postgres sink end to end through the binary, against a real
//! PostgreSQL (`TRIBUTARY_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): exact table contents, the
//! committed checkpoint, and exactly-once across kill -9. Each test uses its
//! own schema, dropped at the end. A missing server fails the tests.

use serde_json::{json, Value};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::postgres as pg;

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

/// A scratch schema of this test's own.
type Db = pg::Scratch;

fn state_get(ws: &Workspace, cfg: &str, stream: &str) -> Value {
    let o = ws.run(&["state", "get", cfg, "--stream", stream]);
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn file_source_to_postgres_upserts_exact_rows_and_commits_the_checkpoint() {
    let ws = workspace();
    let db = Db::new("t_cli");
    ws.write(
        "data/orders.ndjson",
        concat!(
            "{\"id\": 1, \"item\": \"tea\", \"qty\": 2}\n",
            "{\"id\": 2, \"item\": \"cake\", \"qty\": 1, \"price\": 3.5}\n",
            "{\"id\": 1, \"item\": \"tea\", \"qty\": 5}\n",
            "{\"id\": 3, \"item\": \"jam\", \"qty\": 1, \"note\": \"gift\"}\n",
        ),
    );
    let cfg = ws.write(
        "shop.toml",
        &format!(
            r#"
name = "shop"
[source]
type = "file"
[source.streams.orders]
path = "data/orders.ndjson"
format = "ndjson"
primary_key = ["id"]
[metadata]
enabled = false
{}"#,
            db.sink("exactly_once = true")
        ),
    );
    let cfg = cfg.to_str().unwrap();

    let o = ws.run(&["check", cfg]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("sink     ok: type `postgres`"));

    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    let t = db.table("shop_orders");
    let contents = format!("SELECT id, item, qty, price, note, _deleted FROM {t} ORDER BY id");
    let expected = vec![
        json!({"id": 1, "item": "tea", "qty": 5, "price": null, "note": null, "_deleted": false}),
        json!({"id": 2, "item": "cake", "qty": 1, "price": 3.5, "note": null, "_deleted": false}),
        json!({"id": 3, "item": "jam", "qty": 1, "price": null, "note": "gift", "_deleted": false}),
    ];
    assert_eq!(db.rows(&contents), expected);

    // The checkpoint committed with the rows is the one the state store shows.
    let ck = db.table("tributary_checkpoints");
    let in_sink = db.rows(&format!(
        "SELECT stream, checkpoint FROM {ck} WHERE connector = 'shop'"
    ));
    let state = state_get(&ws, cfg, "orders");
    assert_eq!(
        in_sink,
        vec![json!({"stream": "orders", "checkpoint": state})]
    );
    let size = std::fs::metadata(ws.path("data/orders.ndjson"))
        .unwrap()
        .len();
    let positions: Vec<&Value> = state["files"].as_object().unwrap().values().collect();
    assert_eq!(
        positions,
        vec![&json!({"offset": size, "line": 4})],
        "{state}"
    );

    // A second run resumes there: nothing new, nothing rewritten.
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(db.rows(&contents), expected);

    // An appended line is picked up by the next run.
    ws.append(
        "data/orders.ndjson",
        "{\"id\": 2, \"item\": \"cake\", \"qty\": 9}\n",
    );
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);
    assert_eq!(db.rows(&contents)[1]["qty"], json!(9));
}

#[test]
fn kill_9_with_exactly_once_then_restart_holds_every_record_exactly_once() {
    let ws = workspace();
    let db = Db::new("t_cli");
    let total = 24_000u64;
    let cfg = ws.write(
        "gen.toml",
        &format!(
            r#"
name = "gen"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
rate = 8000
total = {total}
[runtime]
batch_size = 100
flush_records = 1000
flush_interval = "50ms"
{}"#,
            // Append mode: a replayed record would be a second row.
            db.sink("mode = \"append\"\nexactly_once = true")
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let t = db.table("gen_users");
    let count = || {
        let exists = db.rows(&format!("SELECT to_regclass('{t}') IS NOT NULL AS e"));
        if exists[0]["e"] != json!(true) {
            return 0;
        }
        db.rows(&format!("SELECT count(*) AS n FROM {t}"))[0]["n"]
            .as_u64()
            .unwrap()
    };
    // Kill once a run has committed past each mark (so every kill lands
    // mid-run, however fast the machine), a little later each time.
    let mut committed = 0;
    for (i, mark) in [3_000u64, 9_000, 15_000].into_iter().enumerate() {
        let mut child = ws.spawn(&["run", cfg, "--no-progress"]);
        wait_until(Duration::from_secs(60), "rows to commit", || {
            std::thread::sleep(Duration::from_millis(10));
            count() >= mark
        });
        std::thread::sleep(Duration::from_millis(7 * i as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let n = count();
        assert!(n >= committed && n < total, "{n} rows after kill {i}");
        committed = n;
    }
    // A kill between the sink's COMMIT and the state store's commit leaves
    // the state store behind the table. Its extreme, forced here: the state
    // store lost the stream entirely. The checkpoint committed with the rows
    // must win, or the restart would append everything again.
    let o = ws.run(&["state", "reset", cfg, "--stream", "users"]);
    assert_exit(&o, 0);
    let o = ws.run(&["run", cfg, "--no-progress"]);
    assert_exit(&o, 0);

    assert_eq!(
        db.rows(&format!(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM {t}"
        )),
        vec![json!({"n": total, "ids": total, "lo": 1, "hi": total})]
    );
    let ck = db.table("tributary_checkpoints");
    assert_eq!(
        db.rows(&format!("SELECT stream, checkpoint FROM {ck}")),
        vec![json!({"stream": "users", "checkpoint": {"next": total}})]
    );
    assert_eq!(state_get(&ws, cfg, "users"), json!({"next": total}));
    // The runtime's metadata fields became columns too.
    let first = &db.rows(&format!(
        "SELECT id, _stream, _load_mode FROM {t} WHERE id = 1"
    ))[0];
    assert_eq!(
        *first,
        json!({"id": 1, "_stream": "users", "_load_mode": "INITIAL_LOAD"})
    );
}

#[test]
fn a_bad_password_is_reported_without_showing_it() {
    let ws = workspace();
    let password = "hunter2-cli-secret";
    let cfg = ws.write(
        "bad.toml",
        &format!(
            r#"
name = "bad"
[source]
type = "generator"
[source.streams.users]
record_type = "user"
total = 1
[sink]
type = "postgres"
url = "postgres://postgres:{password}@127.0.0.1:1/test"
connect_timeout = "2s"
"#
        ),
    );
    let o = ws.run(&["check", cfg.to_str().unwrap()]);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(!err.contains(password), "{err}");
    assert!(
        err.contains("postgres://postgres:***@127.0.0.1:1/test"),
        "{err}"
    );
}
