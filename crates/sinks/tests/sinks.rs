//! The registry and the file sink, end to end through `[sink]` tables.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tributary_config::units::ByteSize;
use tributary_config::{ConfigDocument, SectionConfig};
use tributary_core::{ConnectorError, ErrorClass, Op, Record, Sink};
use tributary_sinks::{build, FileSink, FileSinkConfig, Format, SinkContext, SINK_TYPES};

/// A `[sink]` section as the loader would build it from
/// `[sink]\ntype = KIND\n{toml_text}` (so its keys start on line 3).
fn section(kind: &str, toml_text: &str, base_dir: &Path) -> SectionConfig {
    SectionConfig {
        kind: kind.into(),
        key: "sink".into(),
        table: toml::from_str(toml_text).unwrap(),
        base_dir: base_dir.to_path_buf(),
        document: Arc::new(ConfigDocument {
            path: base_dir.join("connector.toml"),
            text: format!("[sink]\ntype = \"{kind}\"\n{toml_text}\n"),
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

fn rec(target: &str, value: serde_json::Value) -> Record {
    Record {
        target: Some(target.into()),
        ..Record::new(value)
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// File names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn file_sink(dir: &Path, max: u64) -> FileSink {
    let mut config = FileSinkConfig::new(dir);
    config.max_file_size = ByteSize(max);
    FileSink::new(config, "conn")
}

// ---- registry -------------------------------------------------------------

#[test]
fn unknown_sink_type_names_the_key_and_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let err = build(&section("stdot", "", dir.path()), &ctx())
        .err()
        .expect("unknown type is an error");
    assert_eq!(err.key.as_deref(), Some("sink.type"));
    assert_eq!(err.line, Some(2));
    assert_eq!(err.suggestion.as_deref(), Some("stdout"));
    assert!(
        err.message.contains("unknown sink type `stdot`"),
        "{}",
        err.message
    );
    assert_eq!(err.file, dir.path().join("connector.toml"));

    let err = build(&section("kafkaa", "", dir.path()), &ctx())
        .err()
        .unwrap();
    assert_eq!(err.suggestion.as_deref(), Some("kafka"));
    let err = build(&section("elasticsearch", "", dir.path()), &ctx())
        .err()
        .unwrap();
    assert_eq!(err.suggestion, None);
    assert_eq!(SINK_TYPES, ["stdout", "file", "postgres", "kafka"]);
}

#[test]
fn known_types_build_without_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    build(
        &section("stdout", "format = \"envelope\"", dir.path()),
        &ctx(),
    )
    .unwrap();
    build(&section("file", "dir = \"out/x\"", dir.path()), &ctx()).unwrap();
    assert!(!dir.path().join("out").exists());
    // Nothing listens on port 1: building must not connect.
    build(
        &section("kafka", "brokers = \"127.0.0.1:1\"", dir.path()),
        &ctx(),
    )
    .unwrap();
}

#[test]
fn kafka_config_defaults_lists_secrets_and_refused_keys() {
    use tributary_sinks::kafka::{Brokers, Compression, KafkaSinkConfig};
    let dir = tempfile::tempdir().unwrap();
    let c: KafkaSinkConfig = section(
        "kafka",
        "brokers = [\"a:9092\", \" b:9092\"]\ncompression = \"zstd\"\n[properties]\n\"sasl.password\" = \"pw-kafka-7d1e\"\n\"linger.ms\" = 20\n",
        dir.path(),
    )
    .parse()
    .unwrap();
    assert_eq!(c.brokers.joined(), "a:9092,b:9092");
    assert_eq!(c.compression, Compression::Zstd);
    assert!(c.idempotent && c.headers && c.create_topics);
    assert_eq!((c.partitions, c.replication_factor), (1, 1));
    assert_eq!(c.message_timeout, std::time::Duration::from_secs(60));
    assert_eq!(c.properties.get("linger.ms"), Some("20"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("pw-kafka-7d1e") && shown.contains("\"sasl.password\": \"***\""),
        "{shown}"
    );
    assert_eq!(
        KafkaSinkConfig::new("k:1").brokers,
        Brokers::One("k:1".into())
    );

    let err = build(
        &section(
            "kafka",
            "brokers = \"k:1\"\nproperties = { \"enable.idempotence\" = false }\n",
            dir.path(),
        ),
        &ctx(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.key.as_deref(),
        Some("sink.properties.\"enable.idempotence\"")
    );
    assert_eq!(err.line, Some(4));
    assert!(err.message.contains("use `idempotent`"), "{}", err.message);
    let err = build(
        &section("kafka", "brokers = \"k:1\"\npartitions = 0", dir.path()),
        &ctx(),
    )
    .err()
    .unwrap();
    assert_eq!(err.key.as_deref(), Some("sink.partitions"));
    let err = build(
        &section(
            "kafka",
            "brokers = \"k:1\"\ncompresion = \"lz4\"",
            dir.path(),
        ),
        &ctx(),
    )
    .err()
    .unwrap();
    assert_eq!(err.suggestion.as_deref(), Some("compression"));
}

// ---- config ---------------------------------------------------------------

#[test]
fn file_config_defaults_units_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let c: FileSinkConfig = section("file", "dir = \"out\"", dir.path())
        .parse()
        .unwrap();
    assert_eq!(c, FileSinkConfig::new("out"));
    assert_eq!(c.max_file_size, ByteSize(256 << 20));
    assert!(c.fsync);
    assert_eq!(c.format, Format::Value);

    let c: FileSinkConfig = section(
        "file",
        "dir = \"/abs\"\nformat = \"envelope\"\nmax_file_size = \"1KiB\"\nfsync = false",
        dir.path(),
    )
    .parse()
    .unwrap();
    assert_eq!(c.max_file_size, ByteSize(1024));
    assert_eq!(c.format, Format::Envelope);
    assert!(!c.fsync);
    let c: FileSinkConfig = section("file", "dir = \"d\"\nmax_file_size = 4096", dir.path())
        .parse()
        .unwrap();
    assert_eq!(c.max_file_size, ByteSize(4096));

    let err = section(
        "file",
        "dir = \"out\"\nmax_file_sise = \"1MiB\"",
        dir.path(),
    )
    .parse::<FileSinkConfig>()
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("sink.max_file_sise"));
    assert_eq!(err.line, Some(4));
    assert_eq!(err.suggestion.as_deref(), Some("max_file_size"));
    assert!(err.message.contains("max_file_sise"), "{}", err.message);
    assert_eq!(err.file, dir.path().join("connector.toml"));

    let err = build(&section("stdout", "formt = \"value\"", dir.path()), &ctx())
        .err()
        .unwrap();
    assert!(err.message.contains("formt"), "{}", err.message);

    let err = build(&section("file", "format = \"value\"", dir.path()), &ctx())
        .err()
        .unwrap();
    assert!(err.message.contains("dir"), "missing dir: {}", err.message);

    let err = build(
        &section("file", "dir = \"o\"\nformat = \"xml\"", dir.path()),
        &ctx(),
    )
    .err()
    .unwrap();
    assert!(err.message.contains("xml"), "{}", err.message);

    let err = build(
        &section("file", "dir = \"o\"\nmax_file_size = 0", dir.path()),
        &ctx(),
    )
    .err()
    .unwrap();
    assert_eq!(err.key.as_deref(), Some("sink.max_file_size"));
    assert_eq!(err.line, Some(4));
}

#[tokio::test]
async fn relative_dir_resolves_against_the_config_directory() {
    let base = tempfile::tempdir().unwrap();
    let mut sink = build(
        &section("file", "dir = \"out/nested\"", base.path()),
        &ctx(),
    )
    .unwrap();
    sink.write(&[rec("t", json!(1))]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(read(base.path().join("out/nested/t-000001.ndjson")), "1\n");
}

// ---- file sink ------------------------------------------------------------

#[tokio::test]
async fn records_go_to_one_file_per_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = file_sink(dir.path(), 1 << 20);
    sink.write(&[
        rec("conn.orders", json!({"id": 1})),
        rec("conn.users", json!({"name": "ann"})),
        rec("conn.orders", json!({"id": 2})),
        Record::new(json!("no target")),
    ])
    .await
    .unwrap();
    sink.write(&[rec("conn.orders", json!({"id": 3}))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        listing(dir.path()),
        [
            "conn-000001.ndjson",
            "conn.orders-000001.ndjson",
            "conn.users-000001.ndjson"
        ]
    );
    assert_eq!(
        read(dir.path().join("conn.orders-000001.ndjson")),
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"
    );
    assert_eq!(
        read(dir.path().join("conn.users-000001.ndjson")),
        "{\"name\":\"ann\"}\n"
    );
    // Records without a target go to the connector's own file.
    assert_eq!(
        read(dir.path().join("conn-000001.ndjson")),
        "\"no target\"\n"
    );
    sink.close().await.unwrap();
}

#[tokio::test]
async fn nothing_reaches_the_file_before_flush_for_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = file_sink(dir.path(), 1 << 20);
    sink.write(&[rec("t", json!(1))]).await.unwrap();
    assert_eq!(read(dir.path().join("t-000001.ndjson")), "");
    sink.flush().await.unwrap();
    assert_eq!(read(dir.path().join("t-000001.ndjson")), "1\n");
}

/// A 25-byte line: `{"i":D,"p":"xxxxxxxxxx"}\n`.
fn line25(i: u32) -> Record {
    assert!(i < 10);
    rec("t", json!({"i": i, "p": "xxxxxxxxxx"}))
}

#[tokio::test]
async fn rotation_never_splits_a_line_and_respects_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = file_sink(dir.path(), 100);
    // 10 lines of 25 bytes: 4 fit exactly in 100 bytes.
    let first: Vec<_> = (0..6).map(line25).collect();
    let second: Vec<_> = (6..10).map(line25).collect();
    sink.write(&first).await.unwrap();
    sink.flush().await.unwrap();
    sink.write(&second).await.unwrap();
    // A line bigger than the limit gets a file of its own...
    let big = rec("t", json!({"big": "y".repeat(240)}));
    sink.write(std::slice::from_ref(&big)).await.unwrap();
    // ...and the next line starts another.
    sink.write(&[line25(0)]).await.unwrap();
    sink.flush().await.unwrap();

    assert_eq!(
        listing(dir.path()),
        [
            "t-000001.ndjson",
            "t-000002.ndjson",
            "t-000003.ndjson",
            "t-000004.ndjson",
            "t-000005.ndjson"
        ]
    );
    let l = |i: u32| format!("{{\"i\":{i},\"p\":\"xxxxxxxxxx\"}}\n");
    assert_eq!(l(0).len(), 25);
    let file = |seq: u32| read(dir.path().join(format!("t-{seq:06}.ndjson")));
    assert_eq!(file(1), [l(0), l(1), l(2), l(3)].concat());
    assert_eq!(file(2), [l(4), l(5), l(6), l(7)].concat());
    assert_eq!(file(3), [l(8), l(9)].concat());
    let big_line = format!("{{\"big\":\"{}\"}}\n", "y".repeat(240));
    assert_eq!(file(4), big_line);
    assert_eq!(file(5), l(0));
    for seq in [1, 2, 3, 5] {
        assert!(file(seq).len() <= 100);
        assert!(file(seq).ends_with('\n'));
    }
}

#[tokio::test]
async fn reopening_continues_the_highest_seq() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t-000001.ndjson"), "old1\n").unwrap();
    std::fs::write(dir.path().join("t-000003.ndjson"), "old3\n").unwrap();
    // Not files of target `t`'s series:
    std::fs::write(dir.path().join("t-x-000009.ndjson"), "").unwrap();
    std::fs::write(dir.path().join("t-000007.ndjson.tmp"), "").unwrap();
    std::fs::write(dir.path().join("u-000008.ndjson"), "").unwrap();

    let mut sink = file_sink(dir.path(), 12);
    sink.write(&[rec("t", json!("a"))]).await.unwrap();
    sink.write(&[rec("t", json!("b"))]).await.unwrap();
    sink.close().await.unwrap();
    assert_eq!(read(dir.path().join("t-000003.ndjson")), "old3\n\"a\"\n");
    assert_eq!(read(dir.path().join("t-000004.ndjson")), "\"b\"\n");
    assert_eq!(read(dir.path().join("t-000001.ndjson")), "old1\n");

    // A new sink (a restart) appends to the newest file.
    let mut sink = file_sink(dir.path(), 12);
    sink.write(&[rec("t", json!("c"))]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(read(dir.path().join("t-000004.ndjson")), "\"b\"\n\"c\"\n");
    assert!(!dir.path().join("t-000005.ndjson").exists());
}

#[tokio::test]
async fn a_torn_tail_is_truncated_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t-000002.ndjson"),
        "{\"a\":1}\n{\"a\":2}\n{\"a\":",
    )
    .unwrap();
    std::fs::write(dir.path().join("u-000001.ndjson"), "no newline at all").unwrap();
    // Longer than the repair's read chunk, with the only newline at the start.
    let long = format!("{{\"k\":1}}\n{}", "z".repeat(200_000));
    std::fs::write(dir.path().join("v-000001.ndjson"), long).unwrap();

    let mut sink = file_sink(dir.path(), 1 << 20);
    sink.write(&[
        rec("t", json!({"a": 3})),
        rec("u", json!(1)),
        rec("v", json!(2)),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        read(dir.path().join("t-000002.ndjson")),
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
    );
    assert_eq!(read(dir.path().join("u-000001.ndjson")), "1\n");
    assert_eq!(read(dir.path().join("v-000001.ndjson")), "{\"k\":1}\n2\n");
}

#[tokio::test]
async fn envelope_format_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = build(
        &section("file", "dir = \"out\"\nformat = \"envelope\"", dir.path()),
        &ctx(),
    )
    .unwrap();
    let mut deleted = rec("conn.orders", json!({"id": 9})).with_key(json!(9));
    deleted.op = Op::Delete;
    deleted.headers = vec![
        ("trace".into(), "abc".into()),
        ("trace".into(), "def".into()),
    ];
    sink.write(&[
        rec("conn.orders", json!({"id": 1, "s": "é\n"})),
        deleted,
        Record::new(json!([1, 2])).with_key(json!(["a", 1])),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        read(dir.path().join("out/conn.orders-000001.ndjson")),
        concat!(
            "{\"target\":\"conn.orders\",\"key\":null,\"op\":\"upsert\",\"headers\":[],\"value\":{\"id\":1,\"s\":\"é\\n\"}}\n",
            "{\"target\":\"conn.orders\",\"key\":9,\"op\":\"delete\",\"headers\":[[\"trace\",\"abc\"],[\"trace\",\"def\"]],\"value\":{\"id\":9}}\n",
        )
    );
    assert_eq!(
        read(dir.path().join("out/conn-000001.ndjson")),
        "{\"target\":\"conn\",\"key\":[\"a\",1],\"op\":\"upsert\",\"headers\":[],\"value\":[1,2]}\n"
    );
}

#[tokio::test]
async fn targets_are_sanitized_and_cannot_escape_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let mut sink = file_sink(&dir, 1 << 20);
    sink.write(&[
        rec("../evil/x", json!(1)),
        rec("a/b", json!(2)),
        rec("a_b", json!(3)),
        rec("..", json!(4)),
        rec("nul\0\\x", json!(5)),
        rec("", json!(6)),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(listing(root.path()), ["out"]);
    assert_eq!(
        listing(&dir),
        [
            "_-000001.ndjson",
            "_.-000001.ndjson",
            "_._evil_x-000001.ndjson",
            "a_b-000001.ndjson",
            "nul__x-000001.ndjson"
        ]
    );
    assert_eq!(read(dir.join("_._evil_x-000001.ndjson")), "1\n");
    // Targets with the same stem share a series, lines intact and in order.
    assert_eq!(read(dir.join("a_b-000001.ndjson")), "2\n3\n");
    assert_eq!(read(dir.join("_.-000001.ndjson")), "4\n");
    assert_eq!(read(dir.join("nul__x-000001.ndjson")), "5\n");
    assert_eq!(read(dir.join("_-000001.ndjson")), "6\n");
}

#[tokio::test]
async fn io_error_without_pending_records_is_not_sticky() {
    let root = tempfile::tempdir().unwrap();
    let dir: PathBuf = root.path().join("out");
    std::fs::write(&dir, "a file where the directory should be").unwrap();
    let mut sink = file_sink(&dir, 1 << 20);
    assert_eq!(sink.check().await.unwrap_err().class(), ErrorClass::Config);
    let err = sink.write(&[rec("t", json!(1))]).await.unwrap_err();
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(&dir).unwrap();
    sink.write(&[rec("t", json!(2))]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(read(dir.join("t-000001.ndjson")), "2\n");
}

#[tokio::test]
async fn io_error_after_accepting_records_refuses_to_acknowledge() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let mut sink = file_sink(&dir, 10);
    sink.write(&[rec("t", json!("first"))]).await.unwrap();
    // The directory vanishes; the next rotation cannot create its file.
    std::fs::remove_dir_all(&dir).unwrap();
    let err = sink.write(&[rec("t", json!("second"))]).await.unwrap_err();
    assert!(err.to_string().contains("t-000002.ndjson"), "{err}");
    // "first" was accepted and is now lost: no later flush may succeed.
    let err: ConnectorError = sink.flush().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(
        err.to_string()
            .contains("resume from the last committed checkpoint"),
        "{err}"
    );
    assert!(sink.write(&[rec("t", json!(3))]).await.is_err());
    assert!(sink.flush().await.is_err());
}
