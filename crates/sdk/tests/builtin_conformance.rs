//! The built-in sources pass the same conformance kit a connector author
//! runs: each built from the `tributary` binary's own registry, against
//! the real thing (files on disk, the REST simulator on 127.0.0.1, the
//! test PostgreSQL).

use tributary_sdk::conformance::Kit;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};

fn builtin(name: &str) -> tributary_sdk::SourceType {
    tributary_sdk::internals::sources::builtin()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no built-in source type `{name}`"))
}

#[tokio::test]
async fn generator_passes() {
    let config = r#"name = "gen"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
total = 45
batch_size = 10
[sink]
type = "stdout"
"#;
    Kit::new(builtin("generator"), config)
        .stream("users")
        .assert_all()
        .await;
}

#[tokio::test]
async fn file_passes_for_ndjson_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut ndjson = String::new();
    let mut csv = String::from("id,name\n");
    for i in 0..47 {
        ndjson.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"));
        csv.push_str(&format!("{i},n{i}\n"));
    }
    // One malformed line: a bad record, not a panic.
    ndjson.push_str("{not json\n");
    std::fs::write(dir.path().join("a.ndjson"), &ndjson).unwrap();
    std::fs::write(dir.path().join("b.ndjson"), &ndjson).unwrap();
    std::fs::write(dir.path().join("c.csv"), &csv).unwrap();
    let config = format!(
        r#"name = "files"
[source]
type = "file"
[source.streams.events]
path = "{dir}/*.ndjson"
format = "ndjson"
primary_key = ["id"]
batch_size = 9
[source.streams.rows]
path = "{dir}/c.csv"
primary_key = ["id"]
batch_size = 9
[sink]
type = "stdout"
"#,
        dir = dir.path().display()
    );
    Kit::new(builtin("file"), config.clone())
        .stream("events")
        .assert_all()
        .await;
    Kit::new(builtin("file"), config)
        .stream("rows")
        .assert_all()
        .await;
}

#[tokio::test]
async fn http_with_an_id_cursor_passes_against_the_rest_simulator() {
    let sim = RestSim::start_with(RestSimConfig {
        items: 55,
        ..RestSimConfig::default()
    })
    .await;
    let config = format!(
        r#"name = "api"
[source]
type = "http"
base_url = "{}"
[source.streams.items]
path = "/items/keyset"
params = {{ after_id = "{{{{ last_id }}}}", limit = "10" }}
records = "data"
primary_key = ["id"]
incremental = {{ type = "id", cursor_field = "id" }}
[sink]
type = "stdout"
"#,
        sim.base_url()
    );
    Kit::new(builtin("http"), config)
        .stream("items")
        .assert_all()
        .await;
}

#[tokio::test]
async fn sql_with_an_id_cursor_passes_against_postgres() {
    use tributary_testkit::postgres;
    let schema = postgres::unique_schema("sdk_conf");
    let mut conn = postgres::connect().await;
    for sql in [
        format!("CREATE SCHEMA \"{schema}\""),
        format!("CREATE TABLE \"{schema}\".items (id bigint PRIMARY KEY, name text NOT NULL)"),
        format!(
            "INSERT INTO \"{schema}\".items SELECT i, 'item ' || i FROM generate_series(1, 57) i"
        ),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    let config = format!(
        r#"name = "db"
[source]
type = "sql"
url = "{url}"
fetch_size = 10
[source.streams.items]
table = "{schema}.items"
incremental = {{ column = "id", kind = "id" }}
[runtime]
batch_size = 10
[sink]
type = "stdout"
"#,
        url = postgres::url()
    );
    let result = Kit::new(builtin("sql"), config)
        .stream("items")
        .run_all()
        .await;
    postgres::drop_schema(&schema);
    if let Err(v) = result {
        panic!("{v:#?}");
    }
}
