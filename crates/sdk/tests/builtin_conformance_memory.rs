//! The bounded-memory check on built-in sources, in a test binary of its
//! own (it measures the process's resident memory; under `cargo nextest`
//! each test is a process of its own too): about 24 MiB or more of
//! records read against a 12 MiB budget.

use tributary_sdk::conformance::Kit;

fn builtin(name: &str) -> tributary_sdk::SourceType {
    tributary_sdk::internals::sources::builtin()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no built-in source type `{name}`"))
}

#[tokio::test]
async fn generator_reads_in_bounded_memory() {
    let config = r#"name = "gen"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
total = 400000
batch_size = 500
[sink]
type = "stdout"
"#;
    Kit::new(builtin("generator"), config)
        .stream("users")
        .memory_budget(12 << 20)
        .bounded_memory()
        .await
        .unwrap();
}

#[tokio::test]
async fn file_reads_a_large_ndjson_file_in_bounded_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let pad = "x".repeat(1000);
    for i in 0..30_000 {
        writeln!(out, "{{\"id\": {i}, \"pad\": \"{pad}\"}}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let config = format!(
        r#"name = "files"
[source]
type = "file"
[source.streams.events]
path = "{}"
format = "ndjson"
batch_size = 200
[sink]
type = "stdout"
"#,
        path.display()
    );
    Kit::new(builtin("file"), config)
        .stream("events")
        .memory_budget(12 << 20)
        .bounded_memory()
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_reads_a_long_feed_in_bounded_memory() {
    use tributary_testkit::sim::websocket::{WsSim, WsSimConfig};
    let sim = WsSim::start(WsSimConfig {
        total: 30_000,
        message_bytes: 1000,
        ..WsSimConfig::default()
    })
    .await;
    let config = format!(
        r#"name = "ticks"
[source]
type = "websocket"
url = "{}"
id_field = "id"
batch_size = 200
[sink]
type = "stdout"
"#,
        sim.url()
    );
    Kit::new(builtin("websocket"), config)
        .stream("messages")
        .memory_budget(12 << 20)
        .bounded_memory()
        .await
        .unwrap();
}
