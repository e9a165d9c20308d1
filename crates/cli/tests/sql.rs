//! The `sql` source end to end: the real binary against the PostgreSQL and
//! MariaDB servers on 127.0.0.1 (started by `scripts/services`; a missing
//! server fails these tests) and SQLite files. Every test uses tables named
//! with its own id, so tests run in parallel.

use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::conformance::{self, Background};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A scratch workspace, an async runtime for the test's own SQL, and a
/// name unique to this test process.
struct Env {
    ws: Workspace,
    rt: tokio::runtime::Runtime,
    id: String,
}

fn env(name: &str) -> Env {
    Env {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        rt: tokio::runtime::Runtime::new().unwrap(),
        id: format!("tt_{name}_{}", std::process::id()),
    }
}

impl Env {
    /// Runs statements on PostgreSQL (simple protocol: several per call).
    fn pg(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(PG_URL)
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/services)");
            c.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// `(id, name, amount)` rows of a PostgreSQL query.
    fn pg_rows(&self, sql: &str) -> Vec<(i64, Option<String>, Option<String>)> {
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(PG_URL).await.unwrap();
            sqlx::query_as(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    fn my(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = sqlx::MySqlConnection::connect(MY_URL)
                .await
                .expect("MariaDB on 127.0.0.1:3306 (run scripts/services)");
            c.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// Writes `db.toml` (source `url`, then `source`, a file sink, `extra`).
    fn config(&self, url: &str, source: &str, extra: &str) -> String {
        let text = format!(
            r#"name = "db"

[source]
type = "sql"
url = "{url}"
{source}

[sink]
type = "file"
dir = "out"
{extra}
"#
        );
        self.ws.write("db.toml", &text);
        self.ws.path("db.toml").to_string_lossy().into_owned()
    }

    fn run_once(&self, cfg: &str) {
        let o = self.ws.run(&["run", "--once", "--no-progress", cfg]);
        assert_exit(&o, 0);
    }

    fn state(&self, cfg: &str, stream: &str) -> Value {
        let o = self.ws.run(&["state", "get", cfg, "--stream", stream]);
        assert_exit(&o, 0);
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    fn ids(&self, stream: &str) -> BTreeMap<i64, usize> {
        counts(&self.ws.output("out", &format!("db.{stream}")), "id")
    }
}

fn once(ids: impl IntoIterator<Item = i64>) -> BTreeMap<i64, usize> {
    ids.into_iter().map(|i| (i, 1)).collect()
}

#[test]
fn postgres_initial_and_incremental_loads_of_100k_rows() {
    let e = env("pg100k");
    let t = &e.id;
    // 50 rows per timestamp; pages of 7,777 rows end inside such groups.
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, amount numeric(12,2), note text);
         INSERT INTO {t} SELECT i, timestamptz '2024-01-01 00:00:00+00' + (i / 50) * interval '1 second',
             i * 1.25, 'n' || i FROM generate_series(1, 100000) i;
         CREATE INDEX ON {t} (updated_at, id);"
    ));
    let cfg = e.config(
        PG_URL,
        &format!(
            "fetch_size = 7777\n[source.streams.orders]\ntable = \"{t}\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\" }}\n"
        ),
        "",
    );
    e.run_once(&cfg);
    assert_eq!(e.ids("orders"), once(1..=100_000));
    let out = e.ws.output("out", "db.orders");
    assert_eq!(out[0]["amount"], json!("1.25"));
    assert_eq!(out[0]["_load_mode"], json!("INITIAL_LOAD"));
    assert_eq!(
        e.state(&cfg, "orders"),
        json!({"mode": "incremental", "after": {"updated_at": "2024-01-01T00:33:20Z", "id": 100000}, "initial_done": true})
    );

    // 1,000 new rows and 10 updated ones: exactly those are read next.
    e.pg(&format!(
        "INSERT INTO {t} SELECT i, timestamptz '2024-02-01 00:00:00+00' + (i % 7) * interval '1 microsecond', 0, 'new'
             FROM generate_series(100001, 101000) i;
         UPDATE {t} SET note = 'changed', updated_at = '2024-03-01T00:00:00.000001Z' WHERE id % 10000 = 0;"
    ));
    e.run_once(&cfg);
    let all = e.ws.output("out", "db.orders");
    let second: Vec<&Value> = all[100_000..].iter().collect();
    let ids = counts(&all[100_000..], "id");
    let mut want = once(100_001..=101_000);
    want.extend(once((1..=10).map(|k| k * 10_000)));
    assert_eq!(ids, want);
    assert!(second.iter().all(|v| v["_load_mode"] == "INCREMENTAL_LOAD"));
    assert_eq!(
        e.state(&cfg, "orders"),
        json!({"mode": "incremental", "after": {"updated_at": "2024-03-01T00:00:00.000001Z", "id": 100000}, "initial_done": true})
    );
    // Caught up: a third run adds nothing.
    e.run_once(&cfg);
    assert_eq!(e.ws.output("out", "db.orders").len(), 101_010);
    e.pg(&format!("DROP TABLE {t}"));
}

#[test]
fn a_late_committing_transaction_within_the_lag_is_read_by_the_next_run() {
    let e = env("pglate");
    let t = &e.id;
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int8 PRIMARY KEY, ts timestamptz NOT NULL);
         INSERT INTO {t} SELECT i, now() - interval '1 hour' FROM generate_series(1, 10) i;"
    ));
    // Two streams over the same table: with a lag and without.
    let cfg = e.config(
        PG_URL,
        &format!(
            "[source.streams.lagged]\ntable = \"{t}\"\nincremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"10s\" }}\n\
             [source.streams.eager]\ntable = \"{t}\"\nincremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"0s\" }}\n"
        ),
        "",
    );
    // The first run must take its bound within the lag of the late row's
    // stamp (10 s: under load a process start alone took more than the 3 s
    // this test had), the second after it.
    let stamped = std::time::Instant::now();
    e.rt.block_on(async {
        let mut late = sqlx::PgConnection::connect(PG_URL).await.unwrap();
        let mut tx = late.begin().await.unwrap();
        // The late row takes its timestamp now but commits after the first run.
        tx.execute(format!("INSERT INTO {t} VALUES (100, clock_timestamp())").as_str())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut other = sqlx::PgConnection::connect(PG_URL).await.unwrap();
        other
            .execute(format!("INSERT INTO {t} VALUES (101, clock_timestamp())").as_str())
            .await
            .unwrap();
        e.run_once(&cfg);
        tx.commit().await.unwrap();
    });
    assert_eq!(e.ids("lagged"), once(1..=10));
    // Without a lag, the committed row 101 is read and the checkpoint passes
    // the late row's timestamp before it commits...
    assert_eq!(e.ids("eager"), once((1..=10).chain([101])));
    std::thread::sleep(
        (stamped + Duration::from_millis(10_500))
            .saturating_duration_since(std::time::Instant::now()),
    );
    e.run_once(&cfg);
    // ...so it is skipped forever; with the lag both are read.
    assert_eq!(e.ids("lagged"), once((1..=10).chain([100, 101])));
    assert_eq!(e.ids("eager"), once((1..=10).chain([101])));
    e.pg(&format!("DROP TABLE {t}"));
}

#[test]
fn updates_and_soft_deletes_arrive_as_upserts_and_deletes() {
    let e = env("pgsoft");
    let t = &e.id;
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, name text, deleted_at timestamptz);
         INSERT INTO {t} SELECT i, '2024-01-01T00:00:00Z', 'n' || i, NULL FROM generate_series(1, 5) i;"
    ));
    let cfg = e.config(
        PG_URL,
        &format!(
            "[source.streams.c]\ntable = \"{t}\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\" }}\nsoft_delete_column = \"deleted_at\"\n"
        ),
        "format = \"envelope\"\n[metadata]\nenabled = false\n",
    );
    e.run_once(&cfg);
    e.pg(&format!(
        "UPDATE {t} SET name = 'renamed', updated_at = '2024-01-02T00:00:00Z' WHERE id = 3;
         UPDATE {t} SET deleted_at = '2024-01-03T00:00:00Z', updated_at = '2024-01-03T00:00:00Z' WHERE id = 2;"
    ));
    e.run_once(&cfg);
    let out = e.ws.output("out", "db.c");
    assert_eq!(out.len(), 7);
    assert!(out[..5].iter().all(|l| l["op"] == "upsert"));
    assert_eq!(
        out[5],
        json!({"target": "db.c", "key": 3, "op": "upsert", "headers": [], "value":
            {"id": 3, "updated_at": "2024-01-02T00:00:00Z", "name": "renamed", "deleted_at": null}})
    );
    assert_eq!(
        out[6],
        json!({"target": "db.c", "key": 2, "op": "delete",
            "headers": [["tributary.deleted_at", "2024-01-03T00:00:00Z"]], "value":
            {"id": 2, "updated_at": "2024-01-03T00:00:00Z", "name": "n2", "deleted_at": "2024-01-03T00:00:00Z"}})
    );
    e.pg(&format!("DROP TABLE {t}"));
}

/// The whole of issue 4 in one pipeline: a PostgreSQL table read
/// incrementally by the `sql` source into the `postgres` sink (upsert, hard
/// delete), with updates, soft deletes and new rows between runs. The
/// target ends with exactly the source's live rows.
#[test]
fn postgres_to_postgres_upsert_pipeline_ends_with_the_source_state() {
    let e = env("pg2pg");
    let t = &e.id;
    let dst = format!("{t}_dst");
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t}; DROP SCHEMA IF EXISTS {dst} CASCADE;
         CREATE TABLE {t} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, name text,
                           amount numeric(12,2), deleted_at timestamptz);
         INSERT INTO {t} SELECT i, '2024-01-01T00:00:00Z'::timestamptz + (i / 10) * interval '1 second',
                                'n' || i, i * 1.25, NULL FROM generate_series(1, 3000) i;"
    ));
    let text = format!(
        r#"name = "db"

[source]
type = "sql"
url = "{PG_URL}"
fetch_size = 700

[source.streams.orders]
table = "{t}"
incremental = {{ column = "updated_at", kind = "timestamp", lag = "0s" }}
soft_delete_column = "deleted_at"

[sink]
type = "postgres"
url = "{PG_URL}"
schema = "{dst}"
mode = "upsert"
delete = "hard"
exactly_once = true
"#
    );
    e.ws.write("pipeline.toml", &text);
    let cfg = e.ws.path("pipeline.toml").to_string_lossy().into_owned();
    let source_rows = || {
        e.pg_rows(&format!(
            "SELECT id, name, amount::text FROM {t} WHERE deleted_at IS NULL ORDER BY id"
        ))
    };
    let target_rows = || {
        e.pg_rows(&format!(
            "SELECT id, name, amount::text FROM {dst}.db_orders ORDER BY id"
        ))
    };

    e.run_once(&cfg);
    assert_eq!(target_rows().len(), 3000);
    assert_eq!(target_rows(), source_rows());

    e.pg(&format!(
        "UPDATE {t} SET name = 'renamed', amount = 0.01, updated_at = now() - interval '1 hour' WHERE id % 100 = 0;
         UPDATE {t} SET deleted_at = now(), updated_at = now() - interval '1 hour' WHERE id % 7 = 0;
         INSERT INTO {t} SELECT i, now() - interval '1 hour', 'new' || i, 2.5, NULL FROM generate_series(3001, 3100) i;"
    ));
    e.run_once(&cfg);
    let expected = source_rows();
    assert_eq!(expected.len(), 3100 - 3000 / 7);
    assert_eq!(target_rows(), expected);
    assert!(expected.contains(&(300, Some("renamed".into()), Some("0.01".into()))));

    // A third run reads nothing new and changes nothing.
    e.run_once(&cfg);
    assert_eq!(target_rows(), expected);
    e.pg(&format!("DROP TABLE {t}; DROP SCHEMA {dst} CASCADE;"));
}

#[test]
fn typed_columns_of_all_three_databases_through_the_binary() {
    let e = env("types3");
    let t = &e.id;
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int4 PRIMARY KEY, n numeric(8,3), ts timestamp, tz timestamptz, j jsonb, a text[], b bytea, u uuid, d date, f float8, ok bool);
         INSERT INTO {t} VALUES (1, 2.5, '2024-06-01 12:00:00', '2024-06-01 12:00:00.5+00', '{{\"x\": [1]}}',
             '{{a,NULL}}', '\\x0102', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-06-01', 0.5, false);"
    ));
    e.my(&format!("DROP TABLE IF EXISTS {t}"));
    e.my(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, n DECIMAL(8,3), ts DATETIME(3), tz TIMESTAMP(3) NULL, j JSON, b VARBINARY(4), d DATE, f DOUBLE, ok BOOLEAN)"
    ));
    e.my(&format!(
        "INSERT INTO {t} VALUES (1, 2.5, '2024-06-01 12:00:00', '2024-06-01 12:00:00.5', '{{\"x\": [1]}}', X'0102', '2024-06-01', 0.5, false)"
    ));
    let sqlite = e.ws.path("app.db");
    e.rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&sqlite)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        c.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n DECIMAL(8,3), ts DATETIME, tz TIMESTAMP, j JSON, b BLOB, d DATE, f REAL, ok BOOLEAN);
             INSERT INTO t VALUES (1, 2.5, '2024-06-01 12:00:00', '2024-06-01T12:00:00.5Z', '{\"x\": [1]}', X'0102', '2024-06-01', 0.5, 0);",
        )
        .await
        .unwrap();
    });
    let common = json!({
        "id": 1, "n": "2.500", "ts": "2024-06-01T10:00:00Z", "tz": "2024-06-01T12:00:00.500Z",
        "j": {"x": [1]}, "b": "AQI=", "d": "2024-06-01", "f": 0.5, "ok": false
    });
    // Naive timestamps in Europe/Berlin (UTC+2 in June).
    let extra = "[metadata]\nenabled = false\n";
    let source = |table: &str, json: &str| {
        format!("timezone = \"Europe/Berlin\"\n[source.streams.s]\ntable = \"{table}\"\n{json}")
    };
    let cfg = e.config(PG_URL, &source(t, ""), extra);
    e.run_once(&cfg);
    let mut pg = common.clone();
    pg["n"] = json!("2.500");
    pg["a"] = json!(["a", null]);
    pg["u"] = json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(e.ws.output("out", "db.s"), vec![pg]);

    std::fs::remove_dir_all(e.ws.path("out")).unwrap();
    std::fs::remove_dir_all(e.ws.path(".tributary")).unwrap();
    let cfg = e.config(MY_URL, &source(t, "json_columns = [\"j\"]\n"), extra);
    e.run_once(&cfg);
    assert_eq!(e.ws.output("out", "db.s"), vec![common.clone()]);

    std::fs::remove_dir_all(e.ws.path("out")).unwrap();
    std::fs::remove_dir_all(e.ws.path(".tributary")).unwrap();
    let cfg = e.config("sqlite://app.db", &source("t", ""), extra);
    e.run_once(&cfg);
    let mut lite = common.clone();
    lite["n"] = json!("2.5"); // SQLite stores 2.5 as a REAL: no scale to keep.
    assert_eq!(e.ws.output("out", "db.s"), vec![lite]);

    // discover prints keys and JSON Schemas, with the column's declared
    // type (SQLite's, here).
    let o = e.ws.run(&["discover", &cfg]);
    assert_exit(&o, 0);
    let d: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["streams"][0]["primary_key"], json!(["id"]));
    assert_eq!(
        d["streams"][0]["json_schema"]["properties"]["ts"],
        json!({"type": ["string", "null"], "format": "date-time", "x-sql-type": "DATETIME"})
    );
    e.pg(&format!("DROP TABLE {t}"));
    e.my(&format!("DROP TABLE {t}"));
}

#[test]
fn kill_9_mid_load_resumes_without_loss() {
    let e = env("pgkill");
    let t = &e.id;
    let total = 300_000;
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, payload text);
         INSERT INTO {t} SELECT i, timestamptz '2024-01-01 00:00:00+00' + (i / 20) * interval '1 millisecond', repeat('x', 50)
             FROM generate_series(1, {total}) i;
         CREATE INDEX ON {t} (updated_at, id);"
    ));
    let cfg = e.config(
        PG_URL,
        &format!(
            "fetch_size = 5000\n[source.streams.big]\ntable = \"{t}\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\" }}\n"
        ),
        "[runtime]\nbatch_size = 500\nflush_records = 2000\nflush_interval = \"50ms\"\n",
    );
    let kills = [40_000usize, 120_000];
    for at in kills {
        let mut child = e.ws.spawn(&["run", "--no-progress", &cfg]);
        wait_until(Duration::from_secs(120), "part of the load", || {
            e.ws.written_lines("out", "db.big") >= at
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let state = e.state(&cfg, "big");
        assert_eq!(state["initial_done"], json!(false), "{state}");
    }
    e.run_once(&cfg);
    let seen = e.ids("big");
    assert_eq!(seen.len(), total as usize);
    assert_eq!(*seen.keys().next().unwrap(), 1);
    assert_eq!(*seen.keys().last().unwrap(), total);
    // Duplicates only from each killed run's uncommitted tail: at most
    // flush_records plus a batch written but not yet committed.
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= kills.len() * (2_000 + 500),
        "{duplicates} duplicates"
    );
    assert_eq!(e.state(&cfg, "big")["after"]["id"], json!(total));
    e.pg(&format!("DROP TABLE {t}"));
}

#[test]
fn injection_attempts_in_config_values_are_harmless() {
    let e = env("inject");
    let t = &e.id;
    let victim = format!("{t}_victim");
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {victim};
         CREATE TABLE {t} (id int PRIMARY KEY, name text);
         INSERT INTO {t} VALUES (1, 'a'), (2, 'b');
         CREATE TABLE {victim} (x int);"
    ));
    // A table name that is a statement: a config error, nothing runs.
    let cfg = e.config(
        PG_URL,
        &format!("[source.streams.s]\ntable = \"x; DROP TABLE {victim}\"\n"),
        "",
    );
    let o = e.ws.run(&["run", "--once", &cfg]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("db.toml:7: source.streams.s.table:") && err.contains("';' is not allowed"),
        "{err}"
    );
    // A parameter that would be an injection if spliced is data.
    let cfg = e.config(
        PG_URL,
        &format!(
            "[source.streams.s]\nquery = \"SELECT id, name FROM {t} WHERE name = :name\"\nparams = {{ name = \"' OR 1=1; DROP TABLE {victim}; --\" }}\n"
        ),
        "",
    );
    e.run_once(&cfg);
    assert!(e.ws.output("out", "db.s").is_empty());
    e.pg(&format!("SELECT * FROM {victim}")); // still there
    e.pg(&format!("DROP TABLE {t}; DROP TABLE {victim}"));
}

#[test]
fn config_errors_suggest_keys_and_secrets_stay_hidden() {
    let e = env("cfgerr");
    let cfg = e.config(PG_URL, "fetch_sise = 10\n", "");
    let o = e.ws.run(&["check", &cfg]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(
            "db.toml:6: source.fetch_sise: unknown key `fetch_sise` (did you mean `fetch_size`?)"
        ),
        "{err}"
    );
    let cfg = e.config(
        PG_URL,
        "[source.streams.s]\ntable = \"t\"\nincremental = { column = \"id\", knd = \"id\" }\n",
        "",
    );
    let o = e.ws.run(&["check", &cfg]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("did you mean `kind`?"),
        "{}",
        stderr(&o)
    );

    // Unknown columns are found by `check`, with a suggestion.
    let t = &e.id;
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, updated_at timestamptz)"
    ));
    let cfg = e.config(
        PG_URL,
        &format!("[source.streams.s]\ntable = \"{t}\"\nincremental = {{ column = \"updatedat\", kind = \"timestamp\" }}\n"),
        "",
    );
    let o = e.ws.run(&["check", &cfg]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("has no column `updatedat` (did you mean `updated_at`?)"),
        "{}",
        stderr(&o)
    );
    e.pg(&format!("DROP TABLE {t}"));

    // A password from the environment never shows, even when connecting fails.
    let cfg = e.config(
        "postgres://postgres:${TT_SQL_PASSWORD}@127.0.0.1:1/test",
        "connect_timeout = \"1s\"\ntables = [\"t\"]\n",
        "",
    );
    let mut cmd = e.ws.cmd(&["check", &cfg]);
    cmd.env("TT_SQL_PASSWORD", "s3cret-Passw0rd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = wait_output(cmd.spawn().unwrap(), Duration::from_secs(60));
    assert_exit(&o, 3);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("s3cret-Passw0rd"), "{all}");
    assert!(
        all.contains("postgres://postgres:***@127.0.0.1:1/test"),
        "{all}"
    );
}

impl Env {
    /// Rows of a query as text columns: `(c1, c2, ...)` joined with `|`.
    fn pg_text(&self, sql: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(PG_URL).await.unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.into_iter().map(|r| r.0).collect()
        })
    }

    /// `column type` of every column of `schema.table`, in order.
    fn pg_columns(&self, schema: &str, table: &str) -> Vec<String> {
        self.pg_text(&format!(
            "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = '{schema}.{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum"
        ))
    }
}

fn pg_to_pg_config(t: &str, dst: &str, delete: &str) -> String {
    format!(
        r#"name = "db"

[source]
type = "sql"
url = "{PG_URL}"

[source.streams.items]
table = "{t}"
incremental = {{ column = "updated_at", kind = "timestamp", lag = "0s" }}
soft_delete_column = "deleted_at"

[sink]
type = "postgres"
url = "{PG_URL}"
schema = "{dst}"
mode = "upsert"
delete = "{delete}"
"#
    )
}

/// Reported: source row 1000 with `deleted_at` set arrived with every
/// column NULL, `_deleted = true` and `_deleted_at` from the sink's clock.
#[test]
fn postgres_to_postgres_soft_deleted_rows_keep_their_values_and_deletion_time() {
    let e = env("pgsoft");
    let t = &e.id;
    let dst = format!("{t}_dst");
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t}; DROP SCHEMA IF EXISTS {dst} CASCADE;
         CREATE TABLE {t} (id int4 PRIMARY KEY, updated_at timestamptz NOT NULL, name text,
                           amount numeric(12,2), deleted_at timestamptz);
         INSERT INTO {t} SELECT i, '2024-01-01T00:00:00Z'::timestamptz, 'n' || i, i * 1.25, NULL
           FROM generate_series(1, 999) i;
         INSERT INTO {t} VALUES (1000, '2024-01-01T00:00:00Z', 'gone', 7.50, '2023-12-24T10:00:00Z');"
    ));
    e.ws.write("soft.toml", &pg_to_pg_config(t, &dst, "soft"));
    let cfg = e.ws.path("soft.toml").to_string_lossy().into_owned();
    e.run_once(&cfg);
    let row = |id: i32| {
        e.pg_text(&format!(
            "SELECT concat_ws('|', name, amount, _deleted, \
             to_char(_deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')) \
             FROM {dst}.db_items WHERE id = {id}"
        ))
    };
    // Deleted before the first run: its last values and the source's time.
    assert_eq!(row(1000), ["gone|7.50|t|2023-12-24 10:00:00"]);
    assert_eq!(row(5), ["n5|6.25|f"]);

    // Deleted between runs: the values it had, and when the source says.
    e.pg(&format!(
        "UPDATE {t} SET deleted_at = '2024-02-02T02:02:02Z', name = 'last', updated_at = '2024-02-02T02:02:02Z' WHERE id = 5"
    ));
    e.run_once(&cfg);
    assert_eq!(row(5), ["last|6.25|t|2024-02-02 02:02:02"]);
    let count = e.pg_text(&format!(
        "SELECT count(*)::text || '|' || count(*) FILTER (WHERE _deleted) FROM {dst}.db_items"
    ));
    assert_eq!(count, ["1000|2"]);
    e.pg(&format!("DROP TABLE {t}; DROP SCHEMA {dst} CASCADE;"));
}

/// Reported: `numeric(12,2)` became text, `integer` bigint, `text[]` jsonb.
#[test]
fn postgres_to_postgres_columns_keep_the_source_types() {
    let e = env("pgtypes");
    let t = &e.id;
    let dst = format!("{t}_dst");
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t}; DROP SCHEMA IF EXISTS {dst} CASCADE;
         CREATE TABLE {t} (id integer PRIMARY KEY, updated_at timestamptz NOT NULL,
             amount numeric(12,2), ratio numeric, qty smallint, big bigint, tags text[], nums integer[],
             at_local timestamp, flag boolean, day date, doc jsonb, code varchar(8), f8 double precision,
             u uuid, deleted_at timestamptz);
         INSERT INTO {t} VALUES
           (1, '2024-01-01T00:00:00Z', 1234567890.12, 0.333333333333333333333, 7, 9007199254740993,
            '{{a,\"b c\",NULL}}', '{{1,2,3}}', '2024-06-01 12:30:00.25', true, '2024-02-29',
            '{{\"k\": [1, 2.5]}}', 'abc', 0.1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL),
           (2, '2024-01-01T00:00:00Z', -0.01, NULL, -32768, NULL, '{{}}', NULL, NULL, false, NULL,
            '[]', NULL, 'NaN', NULL, NULL);"
    ));
    e.ws.write("types.toml", &pg_to_pg_config(t, &dst, "soft"));
    let cfg = e.ws.path("types.toml").to_string_lossy().into_owned();
    e.run_once(&cfg);
    let mut want = e.pg_columns("public", t);
    // The sink's soft-delete columns and the runtime's metadata fields.
    want.extend(
        [
            "_deleted boolean",
            "_deleted_at timestamp with time zone",
            "_ingested_at timestamp with time zone",
            "_load_mode text",
            "_stream text",
        ]
        .map(String::from),
    );
    let mut got = e.pg_columns(&dst, "db_items");
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // And the values are the source's.
    let cols = "id, amount, ratio, qty, big, tags, nums, at_local, flag, day, doc, code, f8, u";
    let dump = |table: &str| {
        e.pg_text(&format!(
            "SELECT concat_ws('|', {}) FROM {table} ORDER BY id",
            cols.split(", ")
                .map(|c| format!("coalesce({c}::text, '-')"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    assert_eq!(dump(&format!("{dst}.db_items")), dump(t));
    e.pg(&format!("DROP TABLE {t}; DROP SCHEMA {dst} CASCADE;"));
}

/// The date of the latest America/New_York fall-back that is over (the
/// first Sunday of November), as `YYYY-MM-DD`.
fn latest_new_york_fall_back() -> String {
    use chrono::Datelike;
    let first_sunday_of_november = |year: i32| {
        let first = chrono::NaiveDate::from_ymd_opt(year, 11, 1).unwrap();
        first + chrono::Days::new(u64::from((7 - first.weekday().num_days_from_sunday()) % 7))
    };
    let today = chrono::Utc::now().date_naive();
    let this_year = first_sunday_of_november(today.year());
    let day = if this_year < today {
        this_year
    } else {
        first_sunday_of_november(today.year() - 1)
    };
    day.format("%Y-%m-%d").to_string()
}

/// A naive (`timestamp` / `DATETIME`) cursor in America/New_York across
/// the latest fall-back (the first Sunday of November; the latest so that
/// the lag below stays within a year, the longest duration a config takes): rows written in the repeated hour's second
/// pass carry earlier wall-clock times than the first pass's last rows.
/// The database's clock cannot be moved, so each run's bound (`now() -
/// lag`) is put where wanted by its lag.
fn naive_cursor_across_a_fall_back(name: &str, url: &str, exec: &dyn Fn(&str), column_type: &str) {
    let e = env(name);
    let t = &e.id;
    let day = latest_new_york_fall_back();
    exec(&format!("DROP TABLE IF EXISTS {t}"));
    exec(&format!(
        "CREATE TABLE {t} (id BIGINT PRIMARY KEY, ts {column_type} NOT NULL)"
    ));
    let insert = |rows: &[(i64, &str)]| {
        for (id, wall) in rows {
            exec(&format!("INSERT INTO {t} VALUES ({id}, '{day} {wall}')"));
        }
    };
    // Each run's bound is this instant (plus the seconds the run takes).
    let run_at = |bound_utc: &str| {
        let bound: chrono::DateTime<chrono::Utc> = bound_utc.parse().unwrap();
        let lag = (chrono::Utc::now() - bound).num_seconds();
        let cfg = e.config(
            url,
            &format!(
                "timezone = \"America/New_York\"\n[source.streams.s]\ntable = \"{t}\"\n\
                 incremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"{lag}s\" }}\n"
            ),
            "",
        );
        e.run_once(&cfg);
        e.state(&cfg, "s")
    };
    // First pass (EDT): 00:30, 01:10, 01:40, 01:50.
    insert(&[
        (1, "00:30:00"),
        (2, "01:10:00"),
        (3, "01:40:00"),
        (4, "01:50:00"),
    ]);
    // Bound 01:55 EDT.
    let cp1 = run_at(&format!("{day}T05:55:00Z"));
    assert_eq!(cp1["after"]["ts"], format!("{day}T01:50:00"), "{cp1}");
    assert_eq!(cp1["reread_from"], format!("{day}T01:00:00"), "{cp1}");
    // Second pass (EST): 01:05 and 01:20 sort before the position 01:50.
    insert(&[(5, "01:05:00"), (6, "01:20:00")]);
    let cp2 = run_at(&format!("{day}T06:30:00Z")); // 01:30 EST
    assert_eq!(cp2["after"], cp1["after"], "the position never moves back");
    assert_eq!(cp2["reread_from"], format!("{day}T01:00:00"));
    insert(&[(7, "01:45:00"), (8, "02:05:00")]);
    let cp3 = run_at(&format!("{day}T07:10:00Z")); // 02:10 EST: the hour is over
    assert_eq!(cp3["after"]["ts"], format!("{day}T02:05:00"), "{cp3}");
    assert_eq!(cp3.get("reread_from"), None, "{cp3}");
    let seen = e.ids("s");
    // The suite's promises, with each row at the instant it was written:
    // rows 1-4 in the hour's first pass (EDT), 5-8 after the change (EST).
    use chrono::TimeZone;
    let ny = chrono_tz::America::New_York;
    let instant = |wall: &str, second_pass: bool| {
        let naive = chrono::NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
        let t = ny.from_local_datetime(&naive);
        let t = if second_pass {
            t.latest()
        } else {
            t.earliest()
        };
        t.unwrap().with_timezone(&chrono::Utc)
    };
    let walls = [
        "00:30", "01:10", "01:40", "01:50", "01:05", "01:20", "01:45", "02:05",
    ];
    let written: Vec<conformance::Written> = walls
        .iter()
        .enumerate()
        .map(|(i, wall)| conformance::Written {
            key: (i + 1).to_string(),
            version: 1,
            at: instant(&format!("{day}T{wall}:00"), i >= 4),
        })
        .collect();
    // A position is the cursor's, or the start of the hour read again.
    let position = |cp: &Value| {
        let at = instant(cp["after"]["ts"].as_str().unwrap(), false);
        cp["reread_from"]
            .as_str()
            .map_or(at, |from| at.min(instant(from, false)))
    };
    let trail: Vec<_> = [&cp1, &cp2, &cp3].into_iter().map(position).collect();
    conformance::assert_monotonic(&trail);
    let delivered: Vec<(String, i64)> = seen.keys().map(|id| (id.to_string(), 1)).collect();
    conformance::assert_no_gaps(&written, &delivered, trail[2]);
    // Duplicates only from the re-read hour; nothing is read again after it.
    let cp4 = run_at(&format!("{day}T07:30:00Z"));
    assert_eq!(cp4, cp3);
    assert_eq!(e.ids("s"), seen);
    assert_eq!(seen[&1], 1);
    assert_eq!(seen[&8], 1);
    exec(&format!("DROP TABLE {t}"));
}

#[test]
fn postgres_naive_timestamp_cursor_rereads_a_fall_back_hour() {
    let e = env("pgdstx");
    naive_cursor_across_a_fall_back("pgdst", PG_URL, &|sql| e.pg(sql), "timestamp");
}

#[test]
fn mariadb_naive_datetime_cursor_rereads_a_fall_back_hour() {
    let e = env("mydstx");
    naive_cursor_across_a_fall_back("mydst", MY_URL, &|sql| e.my(sql), "DATETIME(6)");
}

// ------------------------------------------------- the conformance suite

/// One of the databases with a cursor column type, as the suite of
/// windowed sources drives it.
struct Table<'a> {
    e: &'a Env,
    url: &'static str,
    /// The column type of `ts`.
    column: &'static str,
    /// What a write stamps `ts` with (the database's clock).
    stamp: &'static str,
    /// Run on every connection first (a session zone), or `""`.
    session: &'static str,
    /// `ts` as text: RFC 3339, or a wall-clock time in `zone`.
    ts_text: &'static str,
    /// The source's `timezone` (naive columns' zone).
    zone: chrono_tz::Tz,
    /// Our clock minus the database's.
    skew: chrono::Duration,
}

impl Table<'_> {
    /// Writes stamp with the database's clock, whatever the session's
    /// zone, except PostgreSQL's `localtimestamp`: its session is set.
    fn exec(&self, sql: &str) {
        if self.url != PG_URL {
            self.e.my(sql)
        } else if self.session.is_empty() {
            self.e.pg(sql)
        } else {
            self.e.pg(&format!("{}; {sql}", self.session))
        }
    }

    fn instant(&self, text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&chrono::Utc));
        }
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        self.zone
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

impl conformance::Harness for Table<'_> {
    fn command(&self, args: &[&str]) -> std::process::Command {
        self.e.ws.cmd(args)
    }

    fn our_clock(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(chrono::Utc::now() + self.skew)
    }

    fn stream(&self) -> &str {
        "s"
    }

    /// The cursor's position, or the start of a fall-back hour it reads
    /// again, whichever is earlier.
    fn position(&self, state: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
        let at = self.instant(state["after"]["ts"].as_str()?)?;
        match state["reread_from"].as_str().and_then(|t| self.instant(t)) {
            Some(from) => Some(at.min(from)),
            None => Some(at),
        }
    }

    fn written(&self) -> Vec<conformance::Written> {
        let sql = format!("SELECT id, version, {} FROM {}", self.ts_text, self.e.id);
        let rows: Result<Vec<(i64, i64, String)>, sqlx::Error> = self.e.rt.block_on(async {
            if self.url == PG_URL {
                let mut c = sqlx::PgConnection::connect(PG_URL).await.unwrap();
                sqlx::query_as(&sql).fetch_all(&mut c).await
            } else {
                let mut c = sqlx::MySqlConnection::connect(MY_URL).await.unwrap();
                if !self.session.is_empty() {
                    c.execute(self.session).await.unwrap();
                }
                sqlx::query_as(&sql).fetch_all(&mut c).await
            }
        });
        let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter()
            .map(|(id, version, ts)| conformance::Written {
                key: id.to_string(),
                version,
                at: self.instant(&ts).unwrap_or_else(|| panic!("ts {ts}")),
            })
            .collect()
    }

    fn delivered(&self) -> Vec<(String, i64)> {
        self.e
            .ws
            .output("out", "db.s")
            .iter()
            .map(|v| {
                let number = |f: &Value| match f {
                    Value::String(s) => s.parse::<i64>().unwrap(),
                    other => other.as_i64().unwrap(),
                };
                (number(&v["id"]).to_string(), number(&v["version"]))
            })
            .collect()
    }

    fn output_lines(&self) -> Vec<String> {
        self.e.ws.output_lines("out", "db.s")
    }
}

async fn write_steadily<C>(mut c: C, table: &str, stamp: &str, stop: &AtomicBool)
where
    for<'c> &'c mut C: Executor<'c>,
{
    let mut n = 0i64;
    while !stop.load(Relaxed) {
        n += 1;
        let k = 1_000_000 + n * 10;
        let sql = format!(
            "INSERT INTO {table} VALUES ({k}, 1, {stamp}), ({}, 1, {stamp}), ({}, 1, {stamp})",
            k + 1,
            k + 2
        );
        c.execute(sql.as_str()).await.unwrap();
        let sql = format!(
            "UPDATE {table} SET version = version + 1, ts = {stamp} WHERE id = {}",
            n % 30 + 1
        );
        c.execute(sql.as_str()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn commit_late<C>(mut c: C, table: &str, stamp: &str, stop: &AtomicBool)
where
    for<'c> &'c mut C: Executor<'c>,
{
    let mut n = 0i64;
    while !stop.load(Relaxed) {
        n += 1;
        c.execute("BEGIN").await.unwrap();
        let sql = format!("INSERT INTO {table} VALUES ({}, 1, {stamp})", 2_000_000 + n);
        c.execute(sql.as_str()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.execute("COMMIT").await.unwrap();
    }
}

/// Two connections of `C` to `url`, each set up with `session`.
async fn two<C: Connection>(url: &str, session: &str) -> (C, C)
where
    for<'c> &'c mut C: Executor<'c>,
{
    let mut out = Vec::new();
    for _ in 0..2 {
        let mut c = C::connect(url).await.unwrap();
        if !session.is_empty() {
            c.execute(session).await.unwrap();
        }
        out.push(c);
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

impl Table<'_> {
    /// Writes on their own connections until dropped: every 15 ms three
    /// new rows in one statement (one timestamp: equal cursor values that
    /// pages of 4 cut through) and one update; beside them, transactions
    /// that take their timestamp and commit 500 ms later.
    fn write_continuously(&self) -> Background {
        let (url, stamp, session, table) = (self.url, self.stamp, self.session, self.e.id.clone());
        Background::spawn(move |stop| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if url == PG_URL {
                    let (a, b) = two::<sqlx::PgConnection>(url, session).await;
                    tokio::join!(
                        write_steadily(a, &table, stamp, stop),
                        commit_late(b, &table, stamp, stop)
                    );
                } else {
                    let (a, b) = two::<sqlx::MySqlConnection>(url, session).await;
                    tokio::join!(
                        write_steadily(a, &table, stamp, stop),
                        commit_late(b, &table, stamp, stop)
                    );
                }
            });
        })
    }
}

/// Runs `--once` with rows written all the time (late commits, equal
/// timestamps across pages), our clock `skew` off the database's, with
/// `lag`: what the suite's promises came to (positions monotonic, one
/// record per line, checked on the way).
fn sql_conformance(t: &Table, lag: &str) -> conformance::GapReport {
    let id = &t.e.id;
    t.exec(&format!("DROP TABLE IF EXISTS {id}"));
    t.exec(&format!(
        "CREATE TABLE {id} (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, ts {} NOT NULL)",
        t.column
    ));
    for k in 1..=30 {
        t.exec(&format!("INSERT INTO {id} VALUES ({k}, 1, {})", t.stamp));
    }
    let cfg = t.e.config(
        t.url,
        &format!(
            "timezone = \"{}\"\nfetch_size = 4\n[source.streams.s]\ntable = \"{id}\"\n\
             incremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"{lag}\" }}\n",
            t.zone.name()
        ),
        "",
    );
    let writes = t.write_continuously();
    let until = chrono::Utc::now() + chrono::Duration::seconds(6);
    let trail = conformance::run_until(t, &cfg, conformance::Runs::Once, until, None);
    drop(writes);
    let report = conformance::report(t, &trail);
    eprintln!(
        "sql {} {}, our clock off by {}, lag {lag}: {report}",
        t.url, t.column, t.skew
    );
    t.exec(&format!("DROP TABLE {id}"));
    report
}

/// The lag of 2 s covers the late commits: nothing lost.
fn sql_conforms(t: &Table) {
    let report = sql_conformance(t, "2s");
    assert!(report.is_clean(), "{} {}: {report}", t.url, t.column);
    assert!(report.below > 100, "{report}");
}

/// A PostgreSQL `timestamptz` cursor stamped by `now()`.
fn pg_timestamptz(e: &Env, skew: chrono::Duration) -> Table<'_> {
    Table {
        e,
        url: PG_URL,
        column: "timestamptz",
        stamp: "now()",
        session: "",
        ts_text: "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        zone: chrono_tz::UTC,
        skew,
    }
}

#[test]
fn postgres_timestamptz_and_naive_cursors_lose_nothing_to_skew_late_commits_or_page_cuts() {
    let e = env("pgconf");
    sql_conforms(&pg_timestamptz(&e, chrono::Duration::minutes(-3)));
    let e = env("pgconfn");
    sql_conforms(&Table {
        e: &e,
        url: PG_URL,
        column: "timestamp",
        stamp: "localtimestamp",
        session: "SET TIME ZONE 'America/New_York'",
        ts_text: "to_char(ts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
        zone: chrono_tz::America::New_York,
        skew: chrono::Duration::minutes(3),
    });
    // Without a lag, runs pass the late transactions' timestamps before
    // they commit, and those rows are lost: the lag is what saves them.
    let e = env("pgconf0");
    let report = sql_conformance(&pg_timestamptz(&e, chrono::Duration::zero()), "0s");
    assert!(!report.is_clean(), "{report}");
}

#[test]
fn mariadb_datetime_and_timestamp_cursors_lose_nothing_to_skew_late_commits_or_page_cuts() {
    let e = env("myconf");
    sql_conforms(&Table {
        e: &e,
        url: MY_URL,
        column: "DATETIME(6)",
        stamp: "UTC_TIMESTAMP(6)",
        session: "SET time_zone = '+00:00'",
        ts_text: "CAST(DATE_FORMAT(ts, '%Y-%m-%dT%H:%i:%s.%f') AS CHAR)",
        zone: chrono_tz::UTC,
        skew: chrono::Duration::minutes(-3),
    });
    let e = env("myconft");
    sql_conforms(&Table {
        e: &e,
        url: MY_URL,
        column: "TIMESTAMP(6)",
        stamp: "NOW(6)",
        session: "SET time_zone = '+00:00'",
        ts_text: "CAST(DATE_FORMAT(ts, '%Y-%m-%dT%H:%i:%s.%fZ') AS CHAR)",
        zone: chrono_tz::UTC,
        skew: chrono::Duration::minutes(3),
    });
}

/// TLS to PostgreSQL: `sslmode=require` encrypts without verifying, and
/// `verify-ca` still verifies against the system's roots, now read from
/// OpenSSL's hashed directory when a chain is verified rather than parsed
/// whole for every connection (the server's certificate is Debian's
/// snakeoil, which `/etc/ssl/certs` holds under its hash). `verify-full`
/// fails (the certificate names the machine, not 127.0.0.1), so
/// verification really happens.
#[test]
fn tls_connections_verify_with_system_roots_read_on_demand() {
    let e = env("pgtls");
    let t = &e.id;
    let hashed = std::fs::read_dir("/etc/ssl/certs")
        .expect("/etc/ssl/certs (ca-certificates)")
        .flatten()
        .any(|f| {
            std::fs::canonicalize(f.path()).ok()
                == std::fs::canonicalize("/etc/ssl/certs/ssl-cert-snakeoil.pem").ok()
                && f.file_name().to_string_lossy().ends_with(".0")
        });
    assert!(
        hashed,
        "PostgreSQL's snakeoil certificate is not in /etc/ssl/certs under its hash (scripts/services sets up ssl-cert)"
    );
    e.pg(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int8 PRIMARY KEY, note text);
         INSERT INTO {t} SELECT i, 'n' || i FROM generate_series(1, 3) i;"
    ));
    let stream = format!("[source.streams.s]\ntable = \"{t}\"\n");
    for mode in ["require", "verify-ca"] {
        let cfg = e.config(&format!("{PG_URL}?sslmode={mode}"), &stream, "");
        let mut c = e.ws.cmd(&["run", "--once", "--no-progress", &cfg]);
        // As on a bare machine: the system store, loaded on demand.
        c.env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let o = wait_output(c.spawn().unwrap(), Duration::from_secs(120));
        assert_exit(&o, 0);
    }
    assert_eq!(e.ids("s"), [(1, 2), (2, 2), (3, 2)].into_iter().collect());

    let cfg = e.config(
        &format!("{PG_URL}?sslmode=verify-full"),
        &format!("connect_timeout = \"5s\"\n{stream}"),
        "[runtime]\nmax_retries = 0\nrequest_retries = 0\n",
    );
    let mut c = e.ws.cmd(&["run", "--once", "--no-progress", &cfg]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let o = wait_output(c.spawn().unwrap(), Duration::from_secs(120));
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("certificate verify failed"),
        "{}",
        stderr(&o)
    );
    e.pg(&format!("DROP TABLE {t}"));
}
