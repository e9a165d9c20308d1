//! The postgres sink against a real PostgreSQL (`TRIBUTARY_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Every test works in
//! its own schema, created here and dropped when the test ends. A missing
//! server fails the tests: they never skip.

use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::path::Path;
use std::sync::Arc;
use tributary_config::{ConfigDocument, SectionConfig};
use tributary_core::{
    BatchInfo, Checkpoint, ConnectorError, ErrorClass, LoadMode, Op, Record, Sink, SinkStream,
    StreamSpec,
};
use tributary_sinks::{build, SinkContext};
use tributary_testkit::postgres as pg;

/// A scratch schema, dropped on drop.
struct Db {
    pool: PgPool,
    schema: String,
}

impl Db {
    async fn new() -> Db {
        let schema = pg::unique_schema("t");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(pg::options())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be running at {}: {e}", pg::url()));
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&pool)
            .await
            .unwrap();
        Db { pool, schema }
    }

    /// The rows of a query as JSON objects (timestamps as ISO 8601 text).
    async fn rows(&self, sql: &str) -> Vec<Value> {
        pg::rows(&mut self.pool.acquire().await.unwrap(), sql).await
    }

    /// `[name, type]` of a table's columns, in order.
    async fn columns(&self, table: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind(self.table(table))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn primary_key(&self, table: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
        )
        .bind(self.table(table))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn exists(&self, table: &str) -> bool {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(self.table(table))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `"schema"."table"`, quotes doubled.
    fn table(&self, table: &str) -> String {
        format!("\"{}\".\"{}\"", self.schema, table.replace('"', "\"\""))
    }

    /// The sink for `[sink]` keys `extra`, writing into this schema.
    fn sink(&self, extra: &str) -> Box<dyn Sink> {
        let text = format!(
            "url = \"{}?application_name={}\"\nschema = \"{}\"\n{extra}",
            pg::url(),
            self.schema,
            self.schema
        );
        build(&section(&text, &std::env::temp_dir()), &ctx()).unwrap()
    }

    /// Kills the sink's connection from the server side.
    async fn kill_sink_connection(&self) {
        // With a timeout, pg_terminate_backend waits until the backend is gone.
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE application_name = $1",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(
            !killed.is_empty() && killed.iter().all(|k| *k),
            "a sink connection to kill: {killed:?}"
        );
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        pg::drop_schema(&self.schema);
    }
}

/// A `[sink]` section as the loader would build it from
/// `[sink]\ntype = "postgres"\n{toml_text}` (so its keys start on line 3).
fn section(toml_text: &str, base_dir: &Path) -> SectionConfig {
    SectionConfig {
        kind: "postgres".into(),
        key: "sink".into(),
        table: toml::from_str(toml_text).unwrap(),
        base_dir: base_dir.to_path_buf(),
        document: Arc::new(ConfigDocument {
            path: base_dir.join("connector.toml"),
            // As the loader sees it: sub-tables under `[sink.…]`.
            text: format!(
                "[sink]\ntype = \"postgres\"\n{}\n",
                toml_text.replace("\n[", "\n[sink.")
            ),
            substitutions: Vec::new(),
        }),
    }
}

fn ctx() -> SinkContext {
    SinkContext {
        connector: "conn".into(),
        ..SinkContext::default()
    }
}

fn rec(target: &str, value: Value) -> Record {
    Record {
        target: Some(target.into()),
        ..Record::new(value)
    }
}

fn keyed(target: &str, key: Value, value: Value) -> Record {
    Record {
        key: Some(key),
        ..rec(target, value)
    }
}

fn delete(target: &str, key: Value) -> Record {
    Record {
        op: Op::Delete,
        ..keyed(target, key, Value::Null)
    }
}

fn cols(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---- tables -----------------------------------------------------------------

#[tokio::test]
async fn tables_are_created_from_the_stream_json_schema() {
    let db = Db::new().await;
    let mut sink = db.sink("");
    let mut spec = StreamSpec::new("orders");
    spec.primary_key = vec!["order_id".into()];
    spec.json_schema = Some(json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "integer"},
            "product": {"type": "string"},
            "amount": {"type": "number"},
            "placed_at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "paid": {"type": "boolean"},
            "meta": {"type": "object"},
            "note": {"type": ["string", "null"]}
        }
    }));
    sink.set_streams(&[SinkStream {
        spec,
        target: "shop.orders".into(),
    }]);
    sink.write(&[keyed(
        "shop.orders",
        json!(1),
        json!({"order_id": 1, "product": "tea", "amount": 9.99,
               "placed_at": "2024-01-01T10:00:00Z", "day": "2024-01-01",
               "paid": true, "meta": {"gift": [1, 2]}}),
    )])
    .await
    .unwrap();
    sink.flush().await.unwrap();

    // Key first, then the schema's properties (in its key order), then the
    // soft-delete columns.
    assert_eq!(
        db.columns("shop_orders").await,
        cols(&[
            ("order_id", "bigint"),
            ("amount", "numeric"),
            ("day", "date"),
            ("meta", "jsonb"),
            ("note", "text"),
            ("paid", "boolean"),
            ("placed_at", "timestamp with time zone"),
            ("product", "text"),
            ("_deleted", "boolean"),
            ("_deleted_at", "timestamp with time zone"),
        ])
    );
    assert_eq!(db.primary_key("shop_orders").await, vec!["order_id"]);
    let t = db.table("shop_orders");
    assert_eq!(
        db.rows(&format!("SELECT * FROM {t}")).await,
        vec![json!({"order_id": 1, "amount": 9.99, "day": "2024-01-01",
                    "meta": {"gift": [1, 2]}, "note": null, "paid": true,
                    "placed_at": "2024-01-01T10:00:00+00:00", "product": "tea",
                    "_deleted": false, "_deleted_at": null})]
    );
}

#[tokio::test]
async fn tables_are_inferred_from_the_first_records() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ndelete = \"hard\"");
    sink.write(&[rec(
        "events",
        json!({"id": 1, "name": "a", "score": 1.5, "big": u64::MAX,
               "at": "2024-05-01T12:00:00.250+02:00", "tags": ["x"], "ok": false,
               "nothing": null}),
    )])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    // A field that was only ever null gets no column (its type is unknown).
    assert_eq!(
        db.columns("events").await,
        cols(&[
            ("id", "bigint"),
            ("at", "timestamp with time zone"),
            ("big", "numeric"),
            ("name", "text"),
            ("ok", "boolean"),
            ("score", "numeric"),
            ("tags", "jsonb"),
        ])
    );
    assert_eq!(db.primary_key("events").await, vec!["id"]);
    let t = db.table("events");
    assert_eq!(
        db.rows(&format!("SELECT id, big::text, at FROM {t}")).await,
        vec![json!({"id": 1, "big": "18446744073709551615", "at": "2024-05-01T10:00:00.25+00:00"})]
    );
}

#[tokio::test]
async fn records_route_by_target_to_schema_and_table() {
    let db = Db::new().await;
    // Without `schema`, the target's first part is the schema.
    let text = format!(
        "url = \"{}\"\n[tables.\"{s}.renamed\"]\ntable = \"other\"\nprimary_key = [\"k\"]\n",
        pg::url(),
        s = db.schema
    );
    let mut sink = build(&section(&text, &std::env::temp_dir()), &ctx()).unwrap();
    let s = &db.schema;
    sink.write(&[
        keyed(&format!("{s}.orders"), json!(1), json!({"id": 1})),
        rec(&format!("{s}.renamed"), json!({"k": "a"})),
        rec(&format!("{s}.a.b"), json!({"x": 1})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert!(db.exists("orders").await);
    assert!(db.exists("other").await);
    assert!(db.exists("a_b").await);
    assert_eq!(db.primary_key("other").await, vec!["k"]);
}

// ---- upsert, append, delete ---------------------------------------------------

#[tokio::test]
async fn upsert_replaces_rows_and_append_appends() {
    let db = Db::new().await;
    let batch = |target: &str| {
        vec![
            keyed(target, json!(1), json!({"id": 1, "name": "a", "age": 1})),
            keyed(target, json!(2), json!({"id": 2, "name": "b"})),
            // The same key twice in one statement: the last one wins.
            keyed(target, json!(1), json!({"id": 1, "name": "c"})),
        ]
    };
    let mut upsert = db.sink("primary_key = [\"id\"]");
    upsert.write(&batch("up")).await.unwrap();
    upsert.flush().await.unwrap();
    upsert
        .write(&[keyed(
            "up",
            json!(2),
            json!({"id": 2, "name": "b2", "age": 5}),
        )])
        .await
        .unwrap();
    upsert.flush().await.unwrap();
    let t = db.table("up");
    // A record replaces the whole row: `age` of id 1 is gone with it.
    assert_eq!(
        db.rows(&format!("SELECT id, name, age FROM {t} ORDER BY id"))
            .await,
        vec![
            json!({"id": 1, "name": "c", "age": null}),
            json!({"id": 2, "name": "b2", "age": 5})
        ]
    );

    let mut append = db.sink("primary_key = [\"id\"]\nmode = \"append\"");
    append.write(&batch("log")).await.unwrap();
    append.write(&batch("log")).await.unwrap();
    append.flush().await.unwrap();
    let t = db.table("log");
    assert_eq!(
        db.rows(&format!("SELECT id, name FROM {t} ORDER BY id, name"))
            .await
            .len(),
        6
    );
    assert_eq!(
        db.primary_key("log").await,
        Vec::<String>::new(),
        "append tables have no key constraint"
    );
}

/// A partial update (`tributary.op: update`, Fivetran's `op.update`).
fn update(target: &str, key: Value, value: Value) -> Record {
    Record {
        headers: vec![(
            tributary_core::OP_HEADER.into(),
            tributary_core::PARTIAL_UPDATE.into(),
        )],
        ..keyed(target, key, value)
    }
}

#[tokio::test]
async fn partial_updates_change_only_the_columns_they_name() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"a\", \"b\"]");
    sink.write(&[
        keyed(
            "t",
            json!([1, "x"]),
            json!({"n": 1, "a'b": "q", "s": "one"}),
        ),
        keyed(
            "t",
            json!([1, "y"]),
            json!({"n": 2, "a'b": "r", "s": "two"}),
        ),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    sink.write(&[
        // Two updates of one key in one write: both apply, in order.
        update("t", json!([1, "x"]), json!({"a'b": "q2"})),
        update("t", json!([1, "x"]), json!({"s": null, "added": true})),
        // A key no row has: no row.
        update("t", json!([9, "z"]), json!({"s": "ghost"})),
        // Only key columns: nothing to change.
        update("t", json!([1, "y"]), json!({"a": 1, "b": "y"})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("t");
    let query = format!("SELECT a, b, n, \"a'b\", s, added, _deleted FROM {t} ORDER BY b");
    let rows = || db.rows(&query);
    assert_eq!(
        rows().await,
        vec![
            json!({"a": 1, "b": "x", "n": 1, "a'b": "q2", "s": null, "added": true, "_deleted": false}),
            json!({"a": 1, "b": "y", "n": 2, "a'b": "r", "s": "two", "added": null, "_deleted": false}),
        ]
    );
    // An upsert after an update of the same key replaces the row, in order.
    sink.write(&[
        update("t", json!([1, "y"]), json!({"n": 20})),
        keyed("t", json!([1, "y"]), json!({"s": "whole"})),
        update("t", json!([1, "y"]), json!({"n": 21})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        rows().await[1],
        json!({"a": 1, "b": "y", "n": 21, "a'b": null, "s": "whole", "added": null, "_deleted": false})
    );

    // Append mode keeps history: an update is a new row of what it names.
    let mut append = db.sink("primary_key = [\"id\"]\nmode = \"append\"");
    append
        .write(&[
            keyed("log", json!(1), json!({"id": 1, "s": "a"})),
            update("log", json!(1), json!({"id": 1, "n": 5})),
        ])
        .await
        .unwrap();
    append.flush().await.unwrap();
    assert_eq!(
        db.rows(&format!(
            "SELECT id, s, n FROM {} ORDER BY n NULLS FIRST",
            db.table("log")
        ))
        .await,
        vec![
            json!({"id": 1, "s": "a", "n": null}),
            json!({"id": 1, "s": null, "n": 5})
        ]
    );
}

#[tokio::test]
async fn hard_delete_removes_rows_in_record_order() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ndelete = \"hard\"");
    sink.write(&[
        keyed("t", json!(1), json!({"id": 1, "v": "a"})),
        keyed("t", json!(2), json!({"id": 2, "v": "b"})),
        delete("t", json!(2)),
        keyed("t", json!(3), json!({"id": 3, "v": "c"})),
        delete("t", json!(3)),
        keyed("t", json!(3), json!({"id": 3, "v": "c2"})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    // A key as a string (a Kafka key) matches the integer column; a key that
    // cannot be an integer matches nothing.
    sink.write(&[delete("t", json!("1")), delete("t", json!("nope"))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT * FROM {t} ORDER BY id")).await,
        vec![json!({"id": 3, "v": "c2"})]
    );
    // Deleting from a table that does not exist yet is a no-op.
    sink.write(&[delete("never", json!(1))]).await.unwrap();
    sink.flush().await.unwrap();
    assert!(!db.exists("never").await);
}

#[tokio::test]
async fn soft_delete_marks_rows_and_an_upsert_revives_them() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]");
    sink.write(&[
        keyed("t", json!(1), json!({"id": 1, "v": "a"})),
        keyed("t", json!(2), json!({"id": 2, "v": "b"})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    sink.write(&[delete("t", json!(2)), delete("t", json!(9))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("t");
    let q =
        format!("SELECT id, v, _deleted, _deleted_at IS NOT NULL AS stamped FROM {t} ORDER BY id");
    // The deleted row keeps its last values; an unknown key leaves a tombstone.
    assert_eq!(
        db.rows(&q).await,
        vec![
            json!({"id": 1, "v": "a", "_deleted": false, "stamped": false}),
            json!({"id": 2, "v": "b", "_deleted": true, "stamped": true}),
            json!({"id": 9, "v": null, "_deleted": true, "stamped": true}),
        ]
    );
    sink.write(&[keyed("t", json!(2), json!({"id": 2, "v": "back"}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        db.rows(&q).await[1],
        json!({"id": 2, "v": "back", "_deleted": false, "stamped": false})
    );

    // Append mode: a delete appends the record flagged as deleted.
    let mut log = db.sink("primary_key = [\"id\"]\nmode = \"append\"\ndeleted_column = \"gone\"\ndeleted_at_column = \"\"");
    log.write(&[
        keyed("log", json!(1), json!({"id": 1, "v": "a"})),
        Record {
            op: Op::Delete,
            ..keyed("log", json!(1), json!({"id": 1, "v": "a"}))
        },
    ])
    .await
    .unwrap();
    log.flush().await.unwrap();
    let t = db.table("log");
    assert_eq!(
        db.rows(&format!("SELECT * FROM {t} ORDER BY gone")).await,
        vec![
            json!({"id": 1, "v": "a", "gone": false}),
            json!({"id": 1, "v": "a", "gone": true})
        ]
    );
}

#[tokio::test]
async fn composite_keys_come_from_the_record_key() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"a\", \"b\"]\ndelete = \"hard\"");
    sink.write(&[
        keyed("t", json!([1, "x"]), json!({"v": 1})),
        keyed("t", json!([1, "y"]), json!({"v": 2})),
        keyed("t", json!([1, "x"]), json!({"v": 3})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(db.primary_key("t").await, vec!["a", "b"]);
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT a, b, v FROM {t} ORDER BY b"))
            .await,
        vec![
            json!({"a": 1, "b": "x", "v": 3}),
            json!({"a": 1, "b": "y", "v": 2})
        ]
    );
    sink.write(&[delete("t", json!([1, "y"]))]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        db.rows(&format!("SELECT b FROM {t}")).await,
        vec![json!({"b": "x"})]
    );

    // A key of the wrong shape, or none at all, is a bad record.
    let err = sink
        .write(&[keyed("t", json!(1), json!({"v": 1}))])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRecord, "{err}");
    assert!(err.to_string().contains("array of 2 values"), "{err}");
    let err = sink.write(&[rec("t", json!({"a": 1}))]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRecord, "{err}");
}

// ---- schema evolution and type conflicts ---------------------------------------

#[tokio::test]
async fn a_record_gaining_a_field_adds_a_column() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ndelete = \"hard\"");
    sink.write(&[rec("t", json!({"id": 1, "a": "x", "c": null}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    sink.write(&[rec("t", json!({"id": 2, "a": "y", "b": 5, "c": true}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        db.columns("t").await,
        cols(&[
            ("id", "bigint"),
            ("a", "text"),
            ("b", "bigint"),
            ("c", "boolean")
        ])
    );
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT * FROM {t} ORDER BY id")).await,
        vec![
            json!({"id": 1, "a": "x", "b": null, "c": null}),
            json!({"id": 2, "a": "y", "b": 5, "c": true})
        ]
    );
}

#[tokio::test]
async fn type_conflicts_widen_by_default_and_keep_every_value() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ndelete = \"hard\"");
    let t = db.table("t");
    let steps = [
        (
            json!({"id": 1, "n": 1, "at": "2024-01-01T00:00:00Z", "m": 5}),
            ["timestamp with time zone", "bigint", "bigint"],
        ),
        (
            json!({"id": 2, "n": 1.5}),
            ["timestamp with time zone", "bigint", "numeric"],
        ),
        (
            json!({"id": 3, "n": "x", "at": "soon", "m": {"a": 1}}),
            ["text", "jsonb", "text"],
        ),
        // A text column takes an object as its JSON text.
        (json!({"id": 4, "n": {"b": [1]}}), ["text", "jsonb", "text"]),
    ];
    for (value, types) in steps {
        sink.write(&[rec("t", value)]).await.unwrap();
        sink.flush().await.unwrap();
        let columns = db.columns("t").await;
        let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let got: Vec<&str> = columns.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(names, ["id", "at", "m", "n"]);
        assert_eq!(got[1..], types);
    }
    assert_eq!(
        db.rows(&format!("SELECT id, n, at, m FROM {t} ORDER BY id"))
            .await,
        vec![
            json!({"id": 1, "n": "1", "at": "2024-01-01T00:00:00+00:00", "m": 5}),
            json!({"id": 2, "n": "1.5", "at": null, "m": null}),
            json!({"id": 3, "n": "x", "at": "soon", "m": {"a": 1}}),
            json!({"id": 4, "n": "{\"b\":[1]}", "at": null, "m": null}),
        ]
    );
    // Conflicting values inside one batch widen before the insert.
    sink.write(&[
        rec("u", json!({"id": 1, "v": true})),
        rec("u", json!({"id": 2, "v": 7})),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let u = db.table("u");
    assert_eq!(
        db.rows(&format!("SELECT v FROM {u} ORDER BY id")).await,
        vec![json!({"v": "true"}), json!({"v": "7"})]
    );
}

#[tokio::test]
async fn type_conflict_fail_stops_and_commits_nothing_of_the_batch() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ntype_conflict = \"fail\"");
    sink.write(&[rec("t", json!({"id": 1, "n": 1}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    sink.write(&[rec("t", json!({"id": 2, "n": 2}))])
        .await
        .unwrap();
    let err = sink
        .write(&[rec("t", json!({"id": 3, "n": "three"}))])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRecord);
    let t = db.table("t");
    assert_eq!(
        err.to_string(),
        format!(
            "bad record: postgres sink: column \"n\" of {t} is bigint but the record has a \
             string (type_conflict = \"fail\"; \"widen\" would change the column's type, \
             \"dead_letter\" would set the record aside)"
        )
    );
    drop(sink); // the connector stops
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t}")).await,
        vec![json!({"id": 1})]
    );
    assert_eq!(db.columns("t").await[1].1, "bigint");
}

#[tokio::test]
async fn type_conflict_dead_letter_sets_records_aside_in_the_same_transaction() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ntype_conflict = \"dead_letter\"");
    // As the runtime writes them: routed by the batch, not each record.
    let batch = BatchInfo {
        stream: "t",
        target: "shop.t",
        load_mode: LoadMode::Initial,
        ingested_at: chrono::Utc::now(),
    };
    let unrouted = |key, value| Record {
        target: None,
        ..keyed("", key, value)
    };
    sink.write_batch(
        batch,
        &[
            unrouted(json!(1), json!({"id": 1, "n": 1})),
            unrouted(json!(2), json!({"id": 2, "n": "x", "extra": true})),
            unrouted(json!(3), json!({"id": 3, "n": 3})),
        ],
    )
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("shop_t");
    assert_eq!(
        db.rows(&format!("SELECT id, n FROM {t} ORDER BY id")).await,
        vec![json!({"id": 1, "n": 1}), json!({"id": 3, "n": 3})]
    );
    // The rejected record's new field made no column.
    assert!(!db.columns("shop_t").await.iter().any(|(c, _)| c == "extra"));
    let dl = db.table("tributary_dead_letters");
    assert_eq!(
        db.rows(&format!(
            "SELECT connector, target, table_name, key, record, error FROM {dl}"
        ))
        .await,
        vec![json!({
            "connector": "conn",
            "target": "shop.t",
            "table_name": format!("{}.shop_t", db.schema),
            "key": 2,
            "record": {"id": 2, "n": "x", "extra": true},
            "error": format!("column \"n\" of {t} is bigint but the record has a string"),
        })]
    );
}

// ---- transactions -----------------------------------------------------------------

#[tokio::test]
async fn writes_without_a_flush_leave_nothing() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]");
    sink.write(&[rec("t", json!({"id": 1}))]).await.unwrap();
    drop(sink); // as a crash would: no flush
    assert!(!db.exists("t").await, "not even the table");

    let mut sink = db.sink("primary_key = [\"id\"]");
    sink.write(&[rec("t", json!({"id": 1}))]).await.unwrap();
    sink.flush().await.unwrap();
    sink.write(&[rec("t", json!({"id": 2, "late": "column"}))])
        .await
        .unwrap();
    drop(sink);
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t}")).await,
        vec![json!({"id": 1})]
    );
    assert_eq!(db.columns("t").await.len(), 3, "id, _deleted, _deleted_at");
}

#[tokio::test]
async fn a_lost_connection_is_retried_without_losing_staged_rows() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\nmode = \"append\"");
    sink.write(&[rec("t", json!({"id": 1})), rec("t", json!({"id": 2}))])
        .await
        .unwrap();
    db.kill_sink_connection().await;
    // The write that finds the connection gone fails retryably; the
    // runtime's retry replays the earlier staged rows, then these.
    let second = [rec("t", json!({"id": 3}))];
    let err = sink.write(&second).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    sink.write(&second).await.unwrap();
    // Lost between the last write and the flush: the flush retries the same way.
    db.kill_sink_connection().await;
    let err = sink.flush().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    sink.flush().await.unwrap();
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t} ORDER BY id")).await,
        vec![json!({"id": 1}), json!({"id": 2}), json!({"id": 3})],
        "every row exactly once"
    );
}

#[tokio::test]
async fn exactly_once_stores_checkpoints_in_the_data_transaction() {
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\nexactly_once = true");
    assert_eq!(sink.stored_checkpoints().await.unwrap(), vec![]);
    sink.write(&[rec("t", json!({"id": 1}))]).await.unwrap();
    let checkpoints = vec![
        ("orders".to_string(), Checkpoint(json!({"next": 1}))),
        (
            "users".to_string(),
            Checkpoint(json!({"offset": 7, "file": "a"})),
        ),
    ];
    assert!(sink
        .flush_with_checkpoints(&checkpoints, &[])
        .await
        .unwrap());
    let ck = db.table("tributary_checkpoints");
    assert_eq!(
        db.rows(&format!(
            "SELECT connector, stream, checkpoint FROM {ck} ORDER BY stream"
        ))
        .await,
        vec![
            json!({"connector": "conn", "stream": "orders", "checkpoint": {"next": 1}}),
            json!({"connector": "conn", "stream": "users", "checkpoint": {"offset": 7, "file": "a"}}),
        ]
    );

    // Data staged with a newer checkpoint but never committed changes neither.
    sink.write(&[rec("t", json!({"id": 2}))]).await.unwrap();
    drop(sink);
    let mut sink = db.sink("primary_key = [\"id\"]\nexactly_once = true");
    assert_eq!(sink.stored_checkpoints().await.unwrap(), checkpoints);
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t}")).await,
        vec![json!({"id": 1})]
    );

    // A checkpoint alone (a batch with no records) still commits.
    let next = vec![("orders".to_string(), Checkpoint(json!({"next": 5})))];
    assert!(sink.flush_with_checkpoints(&next, &[]).await.unwrap());
    assert_eq!(sink.stored_checkpoints().await.unwrap()[0], next[0].clone());

    // Without exactly_once the sink stores none and reports so.
    let mut plain = db.sink("primary_key = [\"id\"]");
    plain.write(&[rec("t", json!({"id": 3}))]).await.unwrap();
    assert!(!plain.flush_with_checkpoints(&next, &[]).await.unwrap());
    assert_eq!(plain.stored_checkpoints().await.unwrap(), vec![]);
}

// ---- safety -------------------------------------------------------------------------

#[tokio::test]
async fn hostile_identifiers_are_quoted_not_executed() {
    let db = Db::new().await;
    db.exec(&format!("CREATE TABLE {} (x int)", db.table("victim")))
        .await;
    let evil = "x\"; DROP TABLE victim; --";
    let mut sink = db.sink("mode = \"append\"");
    sink.write(&[rec(
        evil,
        json!({ evil: 1, "a'b": "it's", "": 2, "Mixed Case": true }),
    )])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert!(db.exists("victim").await, "the victim table survived");
    assert_eq!(
        db.columns(evil).await,
        cols(&[
            ("_", "bigint"),
            ("Mixed Case", "boolean"),
            ("a'b", "text"),
            (evil, "bigint"),
            ("_deleted", "boolean"),
            ("_deleted_at", "timestamp with time zone"),
        ])
    );
    let t = db.table(evil);
    assert_eq!(
        db.rows(&format!("SELECT \"a'b\" FROM {t}")).await,
        vec![json!({"a'b": "it's"})]
    );
}

#[tokio::test]
async fn upsert_into_an_existing_table_without_a_key_is_a_config_error() {
    let db = Db::new().await;
    db.exec(&format!(
        "CREATE TABLE {} (id bigint, v text)",
        db.table("t")
    ))
    .await;
    let mut sink = db.sink("primary_key = [\"id\"]");
    let err = sink
        .write(&[rec("t", json!({"id": 1, "v": "a"}))])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config, "{err}");
    assert!(
        err.to_string()
            .contains("needs a primary key or unique index on (id)"),
        "{err}"
    );
    // Append mode writes into it.
    let mut sink = db.sink("primary_key = [\"id\"]\nmode = \"append\"\ndelete = \"hard\"");
    sink.write(&[rec("t", json!({"id": 1, "v": "a"}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT * FROM {t}")).await,
        vec![json!({"id": 1, "v": "a"})]
    );
}

#[tokio::test]
async fn passwords_never_appear_in_errors_or_debug() {
    let password = "hunter2-pg-secret";
    // Nothing listens on port 1.
    let text = format!(
        "url = \"postgres://postgres:{password}@127.0.0.1:1/test\"\nconnect_timeout = \"2s\"\n"
    );
    let mut sink = build(&section(&text, &std::env::temp_dir()), &ctx()).unwrap();
    let err = sink.check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    let shown = err.to_string();
    assert!(!shown.contains(password), "{shown}");
    assert!(
        shown.contains("postgres://postgres:***@127.0.0.1:1/test"),
        "{shown}"
    );
    let err = sink.write(&[rec("t", json!({"id": 1}))]).await.unwrap_err();
    assert!(!err.to_string().contains(password));
    let sink = tributary_sinks::PostgresSink::new(
        tributary_sinks::PostgresSinkConfig::new(&format!(
            "postgres://postgres:{password}@127.0.0.1:1/test"
        )),
        "c",
    )
    .unwrap();
    assert!(!format!("{sink:?}").contains(password));
}

#[test]
fn config_errors_name_the_key_and_never_echo_the_url() {
    let dir = std::env::temp_dir();
    let err = |text: &str| match build(&section(text, &dir), &ctx()) {
        Ok(_) => panic!("{text}: accepted"),
        Err(e) => e,
    };
    let e = err("url = \"mysql://u:topsecret@h/db\"");
    assert_eq!(e.key.as_deref(), Some("sink.url"));
    assert_eq!(e.line, Some(3));
    assert!(!e.to_string().contains("topsecret"), "{e}");

    let e = err("url = \"postgres://h/db\"\nbatchsize = 10");
    assert_eq!(e.key.as_deref(), Some("sink.batchsize"));
    assert_eq!(e.suggestion.as_deref(), Some("batch_size"));

    let e = err("url = \"postgres://h/db\"\nmode = \"upsrt\"");
    assert_eq!(e.key.as_deref(), Some("sink.mode"));
    assert_eq!(e.suggestion.as_deref(), Some("upsert"));

    let e = err("url = \"postgres://h/db\"\nbatch_size = 0");
    assert_eq!(e.key.as_deref(), Some("sink.batch_size"));

    let e =
        err("url = \"postgres://h/db\"\n[tables.\"shop.orders\"]\nprimary_key = [\"id\", \"id\"]");
    assert_eq!(
        e.key.as_deref(),
        Some("sink.tables.\"shop.orders\".primary_key[1]")
    );
    assert_eq!(e.line, Some(5));

    let e = err("url = \"postgres://h/db\"\n[tables.x]\ntabel = \"y\"");
    assert_eq!(e.suggestion.as_deref(), Some("table"));

    let e = err("schema = \"x\"");
    assert!(e.message.contains("missing key `url`"), "{e}");
}

#[tokio::test]
async fn a_failed_write_drops_only_its_own_records() {
    // The runtime stops after a bad record, but the sink itself never
    // wedges: the failed write's records leave the journal, the records
    // staged before it are replayed into a new transaction.
    let db = Db::new().await;
    let mut sink = db.sink("primary_key = [\"id\"]\ntype_conflict = \"fail\"");
    sink.write(&[rec("t", json!({"id": 1, "n": 1}))])
        .await
        .unwrap();
    let err: ConnectorError = sink
        .write(&[rec("t", json!({"id": 2, "n": "x"}))])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRecord);
    sink.write(&[rec("t", json!({"id": 3, "n": 3}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let t = db.table("t");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t} ORDER BY id")).await,
        vec![json!({"id": 1}), json!({"id": 3})]
    );
}
