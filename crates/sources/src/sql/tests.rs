//! The `sql` source against the real servers (PostgreSQL and MariaDB on
//! 127.0.0.1, SQLite files), through the `Source` / `StreamReader` traits.
//! A missing server fails these tests: start them with `scripts/services`.
//! Each test works in tables (or a schema, or a database) of its own, named
//! with the process id, so tests run in parallel.

use super::*;
use crate::test_support::section;
use crate::SourceContext;
use serde_json::{json, Value};
use sqlx::{Executor, MySqlPool, PgPool, SqlitePool};
use std::path::Path;
use tributary_core::{
    Checkpoint, ConnectorError, ErrorClass, LoadMode, Op, Poll, Record, Source, StreamSpec,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A name unique to this test process.
fn unique(base: &str) -> String {
    format!("tt_{base}_{}", std::process::id())
}

async fn pg() -> PgPool {
    PgPool::connect(PG_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/services)")
}

async fn my() -> MySqlPool {
    MySqlPool::connect(MY_URL)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (run scripts/services)")
}

async fn lite(path: &Path) -> SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    SqlitePool::connect_with(opts).await.unwrap()
}

fn source(url: &str, rest: &str, batch_size: usize) -> SqlSource {
    let text = format!("[source]\ntype = \"sql\"\nurl = \"{url}\"\n{rest}");
    SqlSource::from_section(
        &section(&text, Path::new("/tmp")),
        &SourceContext::new("t", batch_size),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// One run of a stream: every record, every batch's checkpoint, the load modes.
struct Read {
    records: Vec<Record>,
    bad: Vec<tributary_core::BadRecord>,
    checkpoints: Vec<Value>,
    modes: Vec<LoadMode>,
}

impl Read {
    fn values(&self) -> Vec<Value> {
        self.records
            .iter()
            .map(|r| r.value.to_value().into_owned())
            .collect()
    }

    fn ids(&self, field: &str) -> Vec<i64> {
        self.records
            .iter()
            .map(|r| r.value.to_value()[field].as_i64().unwrap())
            .collect()
    }

    fn last(&self) -> Option<Checkpoint> {
        self.checkpoints.last().cloned().map(Checkpoint)
    }
}

async fn read(
    src: &SqlSource,
    stream: &str,
    cp: Option<Checkpoint>,
) -> Result<Read, ConnectorError> {
    let mut r = src.open(&StreamSpec::new(stream), cp).await?;
    let mut out = Read {
        records: Vec::new(),
        bad: Vec::new(),
        checkpoints: Vec::new(),
        modes: Vec::new(),
    };
    loop {
        match r.poll().await? {
            Poll::Batch(b) => {
                out.records.extend(b.records);
                out.bad.extend(b.bad_records);
                out.checkpoints.push(b.checkpoint.0);
                out.modes.push(b.load_mode);
            }
            Poll::End => return Ok(out),
            Poll::Idle => panic!("a sql reader is never idle"),
        }
    }
}

#[tokio::test]
async fn postgres_types_round_trip() {
    let db = pg().await;
    let t = unique("pg_types");
    let mood = format!("{t}_mood");
    db.execute(format!("DROP TABLE IF EXISTS {t}; DROP TYPE IF EXISTS {mood}; CREATE TYPE {mood} AS ENUM ('happy', 'sad');").as_str())
        .await
        .unwrap();
    db.execute(
        format!(
            "CREATE TABLE {t} (
                id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
                n numeric(10,2), nbig numeric, nnan numeric, m money, tx text, vc varchar(10), c char(3),
                js json, jb jsonb, u uuid, by bytea, d date, tm time, ttz timetz, ts timestamp,
                tstz timestamptz, tsinf timestamptz, iv interval, ip inet, net cidr, mac macaddr,
                bits bit(4), vb varbit, ai int4[], atx text[], a2 int4[], an numeric[], e {mood}, o oid
            );
            INSERT INTO {t} VALUES (
                1, true, -2, 40000, 9007199254740993, 0.1, 1.5e300,
                1.50, 123456789012345678901234567890.000000001, 'NaN', 12.34, 'héllo', 'v', 'ab',
                '{{\"b\": [1, 2], \"a\": null}}', '{{\"k\": 1.25}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                '\\x00ff10', '2024-02-29', '13:14:15.5', '01:02:03+05:30', '2024-01-15 10:00:00.123456',
                '2024-01-15 10:00:00.123456+02', 'infinity', '1 year 2 months 3 days 04:05:06.5', '192.168.1.5',
                '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101', '{{1,NULL,3}}', '{{\"a\",\"b c\"}}',
                '{{{{1,2}},{{3,4}}}}', '{{1.10,2}}', 'sad', 42
            );
            INSERT INTO {t} (id) VALUES (2);"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let src = source(
        PG_URL,
        &format!("timezone = \"Europe/Paris\"\n[source.streams.s]\ntable = \"{t}\"\n"),
        100,
    );
    let r = read(&src, "s", None).await.unwrap();
    assert!(r.bad.is_empty(), "{:?}", r.bad);
    // Pages are read with COPY by default; prepared statements (`copy =
    // false`) give the same text and checkpoints.
    let prepared = source(
        PG_URL,
        &format!(
            "timezone = \"Europe/Paris\"\ncopy = false\n[source.streams.s]\ntable = \"{t}\"\n"
        ),
        100,
    );
    let p = read(&prepared, "s", None).await.unwrap();
    let texts =
        |r: &Read| -> Vec<String> { r.records.iter().map(|r| r.value.to_json_string()).collect() };
    assert_eq!(texts(&p), texts(&r));
    assert_eq!(p.checkpoints, r.checkpoints);
    let v = r.values();
    assert_eq!(
        v[0],
        json!({
            "id": 1, "b": true, "i2": -2, "i4": 40000, "i8": 9007199254740993i64, "f4": 0.1, "f8": 1.5e300,
            "n": "1.50", "nbig": "123456789012345678901234567890.000000001", "nnan": "NaN", "m": "12.34",
            "tx": "héllo", "vc": "v", "c": "ab ",
            "js": {"a": null, "b": [1, 2]}, "jb": {"k": 1.25},
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "by": "AP8Q",
            "d": "2024-02-29", "tm": "13:14:15.5", "ttz": "01:02:03+05:30",
            // Naive timestamps are wall-clock times in `timezone` (Paris, UTC+1 in January).
            "ts": "2024-01-15T09:00:00.123456Z",
            "tstz": "2024-01-15T08:00:00.123456Z", "tsinf": "infinity",
            "iv": "P1Y2M3DT4H5M6.5S", "ip": "192.168.1.5", "net": "10.0.0.0/8",
            "mac": "08:00:2b:01:02:03", "bits": "1010", "vb": "101",
            "ai": [1, null, 3], "atx": ["a", "b c"], "a2": [[1, 2], [3, 4]], "an": ["1.10", "2"],
            "e": "sad", "o": 42
        })
    );
    let nulls = v[1].as_object().unwrap();
    assert_eq!(nulls["id"], json!(2));
    assert!(
        nulls.iter().all(|(k, v)| k == "id" || v.is_null()),
        "{nulls:?}"
    );
    assert_eq!(r.records[0].key, Some(json!(1)));

    let specs = src.discover().await.unwrap();
    let schema = specs[0].json_schema.as_ref().unwrap();
    assert_eq!(specs[0].primary_key, vec!["id"]);
    assert_eq!(
        portable(&schema["properties"]["id"]),
        json!({"type": "integer"})
    );
    assert_eq!(
        portable(&schema["properties"]["n"]),
        json!({"type": ["string", "null"], "format": "decimal"})
    );
    assert_eq!(
        portable(&schema["properties"]["tstz"]),
        json!({"type": ["string", "null"], "format": "date-time"})
    );
    assert_eq!(
        portable(&schema["properties"]["ai"]),
        json!({"type": ["array", "null"], "items": {"type": "integer"}})
    );
    // Each column's own type, for sinks that create typed columns.
    assert_eq!(schema["x-sql-dialect"], "postgres");
    for (column, ty) in [
        ("n", "numeric(10,2)"),
        ("i2", "smallint"),
        ("vc", "character varying(10)"),
        ("ts", "timestamp without time zone"),
        ("ai", "integer[]"),
    ] {
        assert_eq!(schema["properties"][column]["x-sql-type"], ty, "{column}");
    }
    db.execute(format!("DROP TABLE {t}; DROP TYPE {mood}").as_str())
        .await
        .unwrap();
}

/// PostgreSQL pages are read with `COPY`; a run cut short in the middle of
/// one (its reader dropped) closes that connection, so the next run on the
/// same pool finds it in order and reads every row.
#[tokio::test]
async fn postgres_pages_are_copied_and_a_copy_cut_short_closes_its_connection() {
    let db = pg().await;
    let t = unique("pg_copy");
    db.execute(
        format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id int8 PRIMARY KEY, note text);
             INSERT INTO {t} SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i;"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let src = source(
        PG_URL,
        &format!("fetch_size = 10000\nmax_connections = 1\n[source.streams.s]\ntable = \"{t}\"\n"),
        100,
    );
    let mut reader = src.open(&StreamSpec::new("s"), None).await.unwrap();
    let Poll::Batch(first) = reader.poll().await.unwrap() else {
        panic!("expected a batch");
    };
    assert_eq!(first.records.len(), 100);
    drop(reader); // mid-COPY: most of the page is still on its way
    let r = read(&src, "s", None).await.unwrap();
    assert_eq!(r.ids("id"), (1..=20000).collect::<Vec<i64>>());
    assert!(r.bad.is_empty());
    // The pooled connection's last statement was the last page's COPY.
    let copies: Vec<String> =
        sqlx::query_scalar("SELECT query FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT %'")
            .fetch_all(&db)
            .await
            .unwrap();
    let last_page = format!(
        "FROM \"public\".\"{t}\" WHERE \"id\" > CAST(CAST(E'20000' AS text) AS int8) ORDER BY \"id\" LIMIT 10000) TO STDOUT (FORMAT binary)"
    );
    assert!(copies.iter().any(|q| q.ends_with(&last_page)), "{copies:?}");
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

/// Rows travel as their JSON text, written cell by cell: it must be exactly
/// what the value's compact serialization is (fields sorted), escapes and
/// all, and a whole run, catalog to last page,
/// uses one connection of the pool.
#[tokio::test]
async fn rows_are_written_as_exact_json_text_over_one_connection() {
    let db = pg().await;
    let t = unique("pg_text");
    db.execute(
        format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id int8 PRIMARY KEY, \"we\"\"ird\" text, at timestamptz, n numeric(6,3), ok bool);
             INSERT INTO {t} VALUES
               (1, E'quo\"te \\\\ tab\\t nl\\n ctl\\x01 é 😀', '2024-01-15 10:00:00+00', 1.5, true),
               (2, NULL, '2024-01-15 10:00:00.5+00', -0.001, false),
               (3, '', '0001-01-01 00:00:00.000001+00', 0, NULL);"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let src = source(
        PG_URL,
        &format!(
            "fetch_size = 2\n[source.streams.s]\ntable = \"{t}\"\nincremental = {{ column = \"id\", kind = \"id\" }}\n\
             [source.streams.q]\nquery = \"SELECT id, n AS dup, 'x' AS \\\"_stream\\\" FROM {t}\"\nprimary_key = [\"id\"]\n"
        ),
        100,
    );
    assert_eq!(src.discover().await.unwrap().len(), 2);
    let r = read(&src, "s", None).await.unwrap();
    assert_eq!(r.ids("id"), vec![1, 2, 3]);
    let texts: Vec<String> = r.records.iter().map(|r| r.value.to_json_string()).collect();
    assert_eq!(
        texts,
        vec![
            r#"{"at":"2024-01-15T10:00:00Z","id":1,"n":"1.500","ok":true,"we\"ird":"quo\"te \\ tab\t nl\n ctl\u0001 é 😀"}"#,
            r#"{"at":"2024-01-15T10:00:00.500Z","id":2,"n":"-0.001","ok":false,"we\"ird":null}"#,
            r#"{"at":"0001-01-01T00:00:00.000001Z","id":3,"n":"0.000","ok":null,"we\"ird":""}"#,
        ]
    );
    for (text, record) in texts.iter().zip(&r.records) {
        assert!(matches!(record.value, tributary_core::Payload::Raw(_)));
        assert_eq!(*text, record.value.to_value().to_string());
    }
    assert_eq!(r.records[2].key, Some(json!(3)));
    assert_eq!(src.db().unwrap().connections(), 1);

    // A query's column named like a metadata field is an ordinary field.
    let q = read(&src, "q", None).await.unwrap();
    assert_eq!(
        q.records[0].value.to_json_string(),
        r#"{"_stream":"x","dup":"1.500","id":1}"#
    );
    assert_eq!(src.db().unwrap().connections(), 1);
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb_types_round_trip() {
    let db = my().await;
    let t = unique("my_types");
    db.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await
        .unwrap();
    db.execute(
        format!(
            "CREATE TABLE {t} (
                id BIGINT PRIMARY KEY, b BOOLEAN, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT,
                bi BIGINT, ubi BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(10,2), c CHAR(3),
                vc VARCHAR(10), tx TEXT, bin VARBINARY(4), bl BLOB, dt DATE, tm TIME(6),
                dtt DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR, bt BIT(4), e ENUM('a','b'),
                st SET('x','y'), js JSON, js_text JSON, u UUID
            )"
        )
        .as_str(),
    )
    .await
    .unwrap();
    db.execute(
        format!(
            "INSERT INTO {t} VALUES (
                1, true, -5, -300, 70000, -2000000000, 9007199254740993, 18446744073709551615,
                0.1, 1.5e300, 12.50, 'ab', 'v', 'héllo', X'00FF', X'10', '2024-02-29',
                '-838:59:58.5', '2024-01-15 10:00:00.123456', '2024-01-15 10:00:00.654321',
                2024, b'1010', 'b', 'x,y', '{{\"b\": [1, 2]}}', '{{\"b\": 1}}',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'
            ), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let src = source(
        MY_URL,
        &format!(
            "timezone = \"America/New_York\"\n[source.streams.s]\ntable = \"{t}\"\njson_columns = [\"js\"]\n"
        ),
        100,
    );
    let r = read(&src, "s", None).await.unwrap();
    assert!(r.bad.is_empty(), "{:?}", r.bad);
    let v = r.values();
    assert_eq!(
        v[0],
        json!({
            "id": 1, "b": true, "ti": -5, "si": -300, "mi": 70000, "i": -2000000000,
            "bi": 9007199254740993i64, "ubi": 18446744073709551615u64, "f": 0.1, "d": 1.5e300,
            "de": "12.50", "c": "ab", "vc": "v", "tx": "héllo", "bin": "AP8=", "bl": "EA==",
            "dt": "2024-02-29", "tm": "-838:59:58.5",
            // DATETIME is a wall-clock time in `timezone` (New York, UTC-5 in January).
            "dtt": "2024-01-15T15:00:00.123456Z",
            // TIMESTAMP is an instant (the session's time zone is UTC).
            "ts": "2024-01-15T10:00:00.654321Z",
            "y": 2024, "bt": 10, "e": "b", "st": "x,y",
            // MariaDB's JSON is LONGTEXT: parsed only when listed in json_columns.
            "js": {"b": [1, 2]}, "js_text": "{\"b\": 1}",
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        })
    );
    let nulls = v[1].as_object().unwrap();
    assert!(
        nulls.iter().all(|(k, v)| k == "id" || v.is_null()),
        "{nulls:?}"
    );
    let specs = src.discover().await.unwrap();
    let schema = specs[0].json_schema.as_ref().unwrap();
    assert_eq!(specs[0].primary_key, vec!["id"]);
    assert_eq!(
        portable(&schema["properties"]["ubi"]),
        json!({"type": ["integer", "null"]})
    );
    assert_eq!(
        portable(&schema["properties"]["bin"]),
        json!({"type": ["string", "null"], "contentEncoding": "base64"})
    );
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_types_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let db = lite(&path).await;
    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, b BOOLEAN, i BIGINT, r REAL, n DECIMAL(10,2),
            tx VARCHAR(10), bl BLOB, d DATE, tm TIME, dt DATETIME, dt_tz TIMESTAMP, dt_int DATETIME,
            js JSON, anything, mixed INTEGER);
         INSERT INTO t VALUES (1, 1, 9007199254740993, 1.5, 12.5, 'héllo', X'00FF', '2024-02-29',
            '13:14:15', '2024-01-15 10:00:00.123', '2024-01-15T10:00:00+02:00', 1705312800,
            '{\"a\": [1]}', 'free', 'not a number');
         INSERT INTO t (id) VALUES (2);",
    )
    .await
    .unwrap();
    db.close().await;
    let url = format!("sqlite://{}", path.display());
    let src = source(
        &url,
        "timezone = \"Europe/Paris\"\n[source.streams.s]\ntable = \"t\"\n",
        100,
    );
    let r = read(&src, "s", None).await.unwrap();
    assert!(r.bad.is_empty(), "{:?}", r.bad);
    let v = r.values();
    assert_eq!(
        v[0],
        json!({
            "id": 1, "b": true, "i": 9007199254740993i64, "r": 1.5, "n": "12.5", "tx": "héllo",
            "bl": "AP8=", "d": "2024-02-29", "tm": "13:14:15",
            "dt": "2024-01-15T09:00:00.123Z", "dt_tz": "2024-01-15T08:00:00Z",
            "dt_int": "2024-01-15T10:00:00Z", "js": {"a": [1]}, "anything": "free",
            "mixed": "not a number"
        })
    );
    assert!(v[1]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| k == "id" || v.is_null()));
    let specs = src.discover().await.unwrap();
    assert_eq!(specs[0].primary_key, vec!["id"]);
    let schema = specs[0].json_schema.as_ref().unwrap();
    assert_eq!(
        portable(&schema["properties"]["id"]),
        json!({"type": "integer"})
    );
    assert_eq!(portable(&schema["properties"]["anything"]), json!({}));
}

/// A property's schema without the database's own type name
/// (`x-sql-type`), which differs between server versions.
fn portable(property: &Value) -> Value {
    let mut p = property.clone();
    if let Some(obj) = p.as_object_mut() {
        obj.remove("x-sql-type");
    }
    p
}

/// The keyset test table: `n` rows, `per_ts` of them sharing each timestamp.
async fn pg_events(db: &PgPool, t: &str, n: i64, per_ts: i64) {
    db.execute(
        format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, v text, deleted_at timestamptz);
             INSERT INTO {t} SELECT i, timestamptz '2024-01-01 00:00:00+00' + ((i - 1) / {per_ts}) * interval '1 second', 'v' || i, NULL
             FROM generate_series(1, {n}) i;"
        )
        .as_str(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn rows_sharing_a_timestamp_across_pages_are_all_read_once() {
    let db = pg().await;
    let t = unique("pg_keyset");
    pg_events(&db, &t, 100, 13).await;
    // Pages of 7 and batches of 5: page and batch boundaries fall inside
    // groups of 13 rows sharing a timestamp.
    let src = source(
        PG_URL,
        &format!(
            "fetch_size = 7\n[source.streams.e]\ntable = \"{t}\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\", lag = \"0s\" }}\n"
        ),
        5,
    );
    let r = read(&src, "e", None).await.unwrap();
    assert_eq!(r.ids("id"), (1..=100).collect::<Vec<_>>());
    assert!(r.modes.iter().all(|m| *m == LoadMode::Initial));
    assert_eq!(
        r.last().unwrap().0,
        json!({"mode": "incremental", "after": {"updated_at": "2024-01-01T00:00:07Z", "id": 100}, "initial_done": true})
    );
    // Resuming from a checkpoint in the middle of a group of equal timestamps.
    let mid = Checkpoint(r.checkpoints[4].clone());
    assert_eq!(
        mid.0,
        json!({"mode": "incremental", "after": {"updated_at": "2024-01-01T00:00:01Z", "id": 25}, "initial_done": false})
    );
    let rest = read(&src, "e", Some(mid)).await.unwrap();
    assert_eq!(rest.ids("id"), (26..=100).collect::<Vec<_>>());

    // An update moves a row past the checkpoint; a soft delete is an op = delete.
    let src = source(
        PG_URL,
        &format!(
            "[source.streams.e]\ntable = \"{t}\"\nincremental = {{ column = \"updated_at\", kind = \"timestamp\", lag = \"0s\" }}\nsoft_delete_column = \"deleted_at\"\n"
        ),
        1000,
    );
    db.execute(
        format!(
            "UPDATE {t} SET v = 'changed', updated_at = '2024-02-01T00:00:00.000001Z' WHERE id = 3;
             UPDATE {t} SET deleted_at = now(), updated_at = '2024-02-01T00:00:00.000002Z' WHERE id = 4;
             INSERT INTO {t} VALUES (101, '2024-02-01T00:00:00.000001Z', 'new', NULL);"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let inc = read(&src, "e", r.last()).await.unwrap();
    assert_eq!(inc.ids("id"), vec![3, 101, 4]);
    assert_eq!(inc.modes, vec![LoadMode::Incremental]);
    assert_eq!(inc.records[0].value.to_value()["v"], json!("changed"));
    assert_eq!(
        inc.records.iter().map(|r| r.op).collect::<Vec<_>>(),
        vec![Op::Upsert, Op::Upsert, Op::Delete]
    );
    assert_eq!(
        inc.last().unwrap().0["after"],
        json!({"updated_at": "2024-02-01T00:00:00.000002Z", "id": 4})
    );
    // Caught up: nothing more, and no checkpoint to write.
    let again = read(&src, "e", inc.last()).await.unwrap();
    assert!(again.records.is_empty() && again.checkpoints.is_empty());
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_lag_bound_comes_from_the_database_clock() {
    let db = pg().await;
    let t = unique("pg_lag");
    db.execute(
        format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id int8 PRIMARY KEY, ts timestamp NOT NULL);
             INSERT INTO {t} VALUES (1, (now() AT TIME ZONE 'UTC') - interval '1 hour'),
                                    (2, (now() AT TIME ZONE 'UTC') - interval '10 seconds'),
                                    (3, (now() AT TIME ZONE 'UTC') + interval '1 hour');"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let stream = |lag: &str| {
        source(
            PG_URL,
            &format!("[source.streams.e]\ntable = \"{t}\"\nincremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"{lag}\" }}\n"),
            100,
        )
    };
    assert_eq!(
        read(&stream("1m"), "e", None).await.unwrap().ids("id"),
        vec![1]
    );
    assert_eq!(
        read(&stream("1s"), "e", None).await.unwrap().ids("id"),
        vec![1, 2]
    );
    // A naive `timestamp` checkpoint stays a wall-clock time, exactly.
    let r = read(&stream("0s"), "e", None).await.unwrap();
    let after = &r.last().unwrap().0["after"]["ts"];
    assert!(!after.as_str().unwrap().ends_with('Z'), "{after}");
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb_and_sqlite_keysets_with_shared_timestamps_and_composite_keys() {
    // MariaDB: composite primary key, expanded keyset predicate, DATETIME cursor.
    let db = my().await;
    let t = unique("my_keyset");
    db.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await
        .unwrap();
    db.execute(
        format!(
            "CREATE TABLE {t} (a INT NOT NULL, b VARCHAR(5) NOT NULL, ts DATETIME(6) NOT NULL, PRIMARY KEY (a, b))"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let mut values = Vec::new();
    for i in 0..60 {
        values.push(format!(
            "({}, '{}', '2024-01-01 00:00:{:02}.5')",
            i % 7,
            i,
            i / 9
        ));
    }
    db.execute(format!("INSERT INTO {t} VALUES {}", values.join(",")).as_str())
        .await
        .unwrap();
    let src = source(
        MY_URL,
        &format!("fetch_size = 4\n[source.streams.e]\ntable = \"{t}\"\nincremental = {{ column = \"ts\", kind = \"timestamp\", lag = \"0s\" }}\n"),
        3,
    );
    let r = read(&src, "e", None).await.unwrap();
    let mut got: Vec<String> = r
        .records
        .iter()
        .map(|r| r.value.to_value()["b"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 60);
    got.sort_by_key(|b| b.parse::<i64>().unwrap());
    assert_eq!(got, (0..60).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(r.records[0].key, Some(json!([0, "0"])));
    let last = r.last().unwrap().0;
    assert_eq!(last["after"]["ts"], json!("2024-01-01T00:00:06.500"));
    let mid = read(&src, "e", Some(Checkpoint(r.checkpoints[6].clone())))
        .await
        .unwrap();
    assert_eq!(mid.records.len(), 60 - 21);
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();

    // SQLite: text timestamps, the lag cut in Rust.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let lite_db = lite(&path).await;
    lite_db
        .execute("CREATE TABLE e (id INTEGER PRIMARY KEY, ts TEXT NOT NULL)")
        .await
        .unwrap();
    for i in 1..=50 {
        sqlx::query("INSERT INTO e VALUES (?, ?)")
            .bind(i)
            .bind(format!("2024-01-01 00:00:{:02}", (i - 1) / 6))
            .execute(&lite_db)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO e VALUES (51, strftime('%Y-%m-%d %H:%M:%S', 'now', '+1 hour'))")
        .execute(&lite_db)
        .await
        .unwrap();
    lite_db.close().await;
    let src = source(
        &format!("sqlite://{}", path.display()),
        "fetch_size = 4\n[source.streams.e]\ntable = \"e\"\nincremental = { column = \"ts\", kind = \"timestamp\", lag = \"1m\" }\n",
        3,
    );
    let r = read(&src, "e", None).await.unwrap();
    assert_eq!(r.ids("id"), (1..=50).collect::<Vec<_>>());
    assert_eq!(
        r.last().unwrap().0["after"],
        json!({"ts": "2024-01-01 00:00:08", "id": 50})
    );
}

#[tokio::test]
async fn full_refresh_pages_by_primary_key_and_resumes_a_cut_pass() {
    let db = pg().await;
    let t = unique("pg_full");
    pg_events(&db, &t, 30, 1).await;
    let src = source(
        PG_URL,
        &format!("fetch_size = 8\n[source.streams.f]\ntable = \"{t}\"\ncolumns = [\"v\"]\n"),
        10,
    );
    let r = read(&src, "f", None).await.unwrap();
    assert_eq!(r.records.len(), 30);
    // The key column is read even though `columns` leaves it out.
    assert_eq!(r.records[0].value, json!({"v": "v1", "id": 1}));
    assert_eq!(
        r.checkpoints[0],
        json!({"mode": "full_refresh", "after": {"id": 10}, "initial_done": false, "in_progress": true})
    );
    assert_eq!(
        r.last().unwrap().0,
        json!({"mode": "full_refresh", "initial_done": true})
    );
    // A pass cut after the first batch resumes after it...
    let rest = read(&src, "f", Some(Checkpoint(r.checkpoints[0].clone())))
        .await
        .unwrap();
    assert_eq!(rest.ids("id"), (11..=30).collect::<Vec<_>>());
    // ...and a finished pass starts over.
    let again = read(&src, "f", r.last()).await.unwrap();
    assert_eq!(again.records.len(), 30);
    assert!(again.modes.iter().all(|m| *m == LoadMode::Initial));
    // Its rows filled its last batch exactly: it still ends finished, so
    // the pass after it reads the table again too.
    assert_eq!(again.last(), r.last());
    let third = read(&src, "f", again.last()).await.unwrap();
    assert_eq!(third.records.len(), 30);
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn query_mode_binds_parameters_and_injection_is_data() {
    let db = pg().await;
    let t = unique("pg_query");
    let victim = unique("pg_victim");
    pg_events(&db, &t, 20, 1).await;
    db.execute(format!("DROP TABLE IF EXISTS {victim}; CREATE TABLE {victim} (x int)").as_str())
        .await
        .unwrap();
    let q = |param: &str| {
        source(
            PG_URL,
            &format!(
                "[source.streams.q]\nquery = \"SELECT id, v AS label FROM {t} WHERE v <> :skip AND id <= :max\"\nparams = {{ skip = \"{param}\", max = 10 }}\nprimary_key = [\"id\"]\nincremental = {{ column = \"id\", kind = \"id\" }}\n"
            ),
            4,
        )
    };
    let r = read(&q("v3"), "q", None).await.unwrap();
    assert_eq!(r.ids("id"), vec![1, 2, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(r.records[0].value, json!({"id": 1, "label": "v1"}));
    assert_eq!(r.last().unwrap().0["after"], json!({"id": 10}));
    // A value that would change the query if spliced is compared as data.
    let r = read(&q(&format!("' OR 1=1; DROP TABLE {victim}; --")), "q", None)
        .await
        .unwrap();
    assert_eq!(r.records.len(), 10);
    db.execute(format!("SELECT * FROM {victim}").as_str())
        .await
        .expect("the other table still exists");
    db.execute(format!("DROP TABLE {t}; DROP TABLE {victim}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn sessions_are_read_only() {
    let pg_db = pg().await;
    let t = unique("pg_ro");
    pg_db
        .execute(format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (x int)").as_str())
        .await
        .unwrap();
    let src = source(PG_URL, &format!("tables = [\"{t}\"]\n"), 10);
    let err = src
        .db()
        .unwrap()
        .execute(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    pg_db
        .execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();

    let my_db = my().await;
    let t = unique("my_ro");
    my_db
        .execute(format!("CREATE TABLE IF NOT EXISTS {t} (x int)").as_str())
        .await
        .unwrap();
    let src = source(MY_URL, &format!("tables = [\"{t}\"]\n"), 10);
    let err = src
        .db()
        .unwrap()
        .execute(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("READ ONLY"), "{err}");
    my_db
        .execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    let l = lite(&path).await;
    l.execute("CREATE TABLE t (x int)").await.unwrap();
    l.close().await;
    let src = source(
        &format!("sqlite://{}", path.display()),
        "tables = [\"t\"]\n",
        10,
    );
    let err = src
        .db()
        .unwrap()
        .execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
}

#[tokio::test]
async fn catalog_errors_name_the_stream_table_column_and_type() {
    let db = pg().await;
    let t = unique("pg_errs");
    db.execute(
        format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, p point, updated_at timestamptz, d date)")
            .as_str(),
    )
    .await
    .unwrap();
    let err = |rest: String| async move {
        let src = source(PG_URL, &rest, 10);
        let e = src.check().await.unwrap_err();
        (e.class(), e.to_string())
    };
    let (class, msg) = err(format!("[source.streams.s]\ntable = \"{t}\"\n")).await;
    assert_eq!(class, ErrorClass::Config);
    assert!(msg.contains("column `p` has type `POINT`"), "{msg}");
    let (_, msg) = err(format!(
        "[source.streams.s]\ntable = \"{t}\"\ncolumns = [\"id\", \"updatd_at\"]\n"
    ))
    .await;
    assert!(
        msg.contains("has no column `updatd_at` (did you mean `updated_at`?)"),
        "{msg}"
    );
    let (_, msg) = err(format!("[source.streams.s]\ntable = \"{t}x\"\n")).await;
    assert!(msg.contains("not found in schema `public`"), "{msg}");
    assert!(msg.contains(&format!("did you mean `{t}`")), "{msg}");
    let (_, msg) = err(format!(
        "[source.streams.s]\ntable = \"{t}\"\ncolumns = [\"id\"]\nincremental = {{ column = \"d\", kind = \"timestamp\" }}\n"
    ))
    .await;
    assert!(msg.contains("`d` has type `DATE`"), "{msg}");
    // Table names in any case resolve to the catalog's.
    let src = source(
        PG_URL,
        &format!(
            "[source.streams.s]\ntable = \"{}\"\ncolumns = [\"ID\", \"updated_at\"]\n",
            t.to_uppercase()
        ),
        10,
    );
    src.check().await.unwrap();
    // A checkpoint of another keyset is refused, not misread.
    let cp = Checkpoint(json!({"mode": "incremental", "after": {"other": 1}}));
    let src = source(
        PG_URL,
        &format!("[source.streams.s]\ntable = \"{t}\"\ncolumns = [\"id\"]\nincremental = {{ column = \"id\", kind = \"id\" }}\n"),
        10,
    );
    let e = read(&src, "s", Some(cp)).await.err().unwrap();
    assert!(e.to_string().contains("state reset"), "{e}");
    db.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn discovery_lists_every_table_of_a_schema() {
    let db = pg().await;
    let s = unique("pg_disc");
    db.execute(
        format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};
             CREATE TABLE {s}.a (id int8 PRIMARY KEY, name text NOT NULL);
             CREATE TABLE {s}.b (k1 int, k2 text, PRIMARY KEY (k2, k1));
             INSERT INTO {s}.b VALUES (1, 'x'), (2, 'x');"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let src = source(PG_URL, &format!("schema = \"{s}\"\n"), 10);
    let specs = src.discover().await.unwrap();
    assert_eq!(
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(specs[1].primary_key, vec!["k2", "k1"]);
    assert_eq!(
        specs[0].json_schema,
        Some(json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer", "x-sql-type": "bigint"},
                "name": {"type": "string", "x-sql-type": "text"}
            },
            "required": ["id", "name"],
            "x-sql-dialect": "postgres"
        }))
    );
    let r = read(&src, "b", None).await.unwrap();
    assert_eq!(
        r.records
            .iter()
            .map(|r| r.key.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![json!(["x", 1]), json!(["x", 2])]
    );
    db.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_value_is_a_bad_record_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    let l = lite(&path).await;
    l.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, js JSON);
         INSERT INTO t VALUES (1, '{}'), (2, 'not json'), (3, '[1]');",
    )
    .await
    .unwrap();
    l.close().await;
    let src = source(
        &format!("sqlite://{}", path.display()),
        "[source.streams.t]\ntable = \"t\"\n",
        10,
    );
    let r = read(&src, "t", None).await.unwrap();
    assert_eq!(r.ids("id"), vec![1, 3]);
    assert_eq!(r.bad.len(), 1);
    assert!(
        r.bad[0].error.contains("column `js` (JSON): invalid JSON"),
        "{:?}",
        r.bad
    );
    assert!(r.bad[0].location.contains("[2]"), "{:?}", r.bad);
}

#[tokio::test]
async fn an_unreachable_database_is_retryable_and_hides_the_password() {
    let src = source(
        "postgres://u:hunter2-secret-pw@127.0.0.1:1/db",
        "connect_timeout = \"2s\"\ntables = [\"t\"]\n",
        10,
    );
    let e = src.check().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    let msg = e.to_string();
    assert!(!msg.contains("hunter2-secret-pw"), "{msg}");
    assert!(msg.contains("postgres://u:***@127.0.0.1:1/db"), "{msg}");
    assert!(!format!("{src:?}").contains("hunter2-secret-pw"));
}
