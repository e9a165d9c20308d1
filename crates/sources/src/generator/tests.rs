//! Generator behaviour through the `Source` / `StreamReader` traits.

use super::*;
use crate::test_support::section;
use crate::SourceContext;
use serde_json::{json, Value};
use std::path::Path;
use tributary_core::{Checkpoint, LoadMode, Poll, Source, StreamReader, StreamSpec};

fn source(text: &str, batch_size: usize) -> GeneratorSource {
    let text = format!("[source]\ntype = \"generator\"\n{text}");
    GeneratorSource::from_section(
        &section(&text, Path::new("/tmp")),
        &SourceContext::new("t", batch_size),
    )
    .unwrap()
}

/// All records until `End` (or `limit` records), with each batch's size and checkpoint.
async fn run(
    src: &GeneratorSource,
    stream: &str,
    cp: Option<Checkpoint>,
    limit: usize,
) -> (Vec<(Option<Value>, Value)>, Vec<(usize, Value)>) {
    let mut r: Box<dyn StreamReader> = src.open(&StreamSpec::new(stream), cp).await.unwrap();
    let (mut records, mut batches) = (Vec::new(), Vec::new());
    while records.len() < limit {
        match r.poll().await.unwrap() {
            Poll::Batch(b) => {
                assert_eq!(b.load_mode, LoadMode::Initial);
                assert!(b.bad_records.is_empty());
                batches.push((b.records.len(), b.checkpoint.0));
                records.extend(b.records.into_iter().map(|r| (r.key, r.value.into_value())));
            }
            Poll::End => break,
            Poll::Idle => panic!("the generator is never idle"),
        }
    }
    (records, batches)
}

#[tokio::test]
async fn same_seed_same_records_other_seed_or_stream_differs() {
    let cfg = "[source.streams.u]\nrecord_type = \"user\"\ntotal = 200\n[source.streams.v]\nrecord_type = \"user\"\ntotal = 200\n";
    let a = run(
        &source(&format!("seed = 42\n{cfg}"), 64),
        "u",
        None,
        usize::MAX,
    )
    .await
    .0;
    let b = run(
        &source(&format!("seed = 42\n{cfg}"), 7),
        "u",
        None,
        usize::MAX,
    )
    .await
    .0;
    assert_eq!(a.len(), 200);
    assert_eq!(a, b, "batch size must not change the data");
    let c = run(
        &source(&format!("seed = 43\n{cfg}"), 64),
        "u",
        None,
        usize::MAX,
    )
    .await
    .0;
    assert_ne!(a, c);
    let v = run(
        &source(&format!("seed = 42\n{cfg}"), 64),
        "v",
        None,
        usize::MAX,
    )
    .await
    .0;
    assert_ne!(a, v);
    // Sequence keys are the same; the generated fields differ.
    assert_eq!(a[5].0, Some(json!(6)));
    assert_eq!(c[5].0, Some(json!(6)));
    // Generated values vary across records (not one value repeated).
    let names: std::collections::BTreeSet<&str> =
        a.iter().map(|(_, v)| v["name"].as_str().unwrap()).collect();
    assert!(names.len() > 50, "{}", names.len());
}

#[tokio::test]
async fn total_and_batches_and_checkpoints() {
    let src = source(
        "[source.streams.o]\nrecord_type = \"order\"\ntotal = 25\n",
        10,
    );
    let (records, batches) = run(&src, "o", None, usize::MAX).await;
    assert_eq!(records.len(), 25);
    assert_eq!(
        batches,
        vec![
            (10, json!({"next": 10})),
            (10, json!({"next": 20})),
            (5, json!({"next": 25}))
        ]
    );
    let ids: Vec<u64> = records
        .iter()
        .map(|(_, v)| v["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>());
    // Per-stream batch size override.
    let src = source(
        "[source.streams.o]\nrecord_type = \"order\"\ntotal = 5\nbatch_size = 2\n",
        10,
    );
    let sizes: Vec<usize> = run(&src, "o", None, usize::MAX)
        .await
        .1
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}

#[tokio::test]
async fn resume_gives_exactly_the_tail_of_a_full_run() {
    let src = source(
        "seed = 7\n[source.streams.e]\nrecord_type = \"event\"\ntotal = 50\n",
        8,
    );
    let (full, _) = run(&src, "e", None, usize::MAX).await;
    for k in [0u64, 1, 8, 17, 49, 50] {
        let (rest, _) = run(&src, "e", Some(Checkpoint(json!({"next": k}))), usize::MAX).await;
        assert_eq!(rest[..], full[k as usize..], "from {k}");
    }
    // Past the end: nothing.
    assert!(
        run(&src, "e", Some(Checkpoint(json!({"next": 99}))), usize::MAX)
            .await
            .0
            .is_empty()
    );
    let err = src
        .open(
            &StreamSpec::new("e"),
            Some(Checkpoint(json!({"offset": 1}))),
        )
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a generator checkpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn endless_without_total() {
    let src = source("[source.streams.s]\nrecord_type = \"sensor\"\n", 100);
    let (records, batches) = run(&src, "s", None, 1000).await;
    assert_eq!(records.len(), 1000);
    assert_eq!(batches.last().unwrap().1, json!({"next": 1000}));
}

/// Golden values: the data must never change across versions (a change
/// here breaks every test and benchmark that asserts on generated data).
#[test]
fn every_record_type_has_its_fields_and_stable_values() {
    let gold = [
        (
            "users",
            RecordType::User,
            0,
            json!({"id": 1, "name": "Trent Davis", "age": 50, "email": "trent.davis1@example.com"}),
        ),
        (
            "users",
            RecordType::User,
            86_399,
            json!({"id": 86400, "name": "Heidi Wilson", "age": 36, "email": "heidi.wilson86400@example.com"}),
        ),
        (
            "events",
            RecordType::Event,
            0,
            json!({"event_id": 1, "event_type": "signup", "user_id": 843, "timestamp": "2024-01-01T00:00:00Z"}),
        ),
        (
            "events",
            RecordType::Event,
            86_399,
            json!({"event_id": 86400, "event_type": "purchase", "user_id": 932, "timestamp": "2024-01-01T23:59:59Z"}),
        ),
        (
            "orders",
            RecordType::Order,
            0,
            json!({"order_id": 1, "product": "keyboard", "quantity": 8, "amount": 399.92}),
        ),
        (
            "orders",
            RecordType::Order,
            86_399,
            json!({"order_id": 86400, "product": "desk-lamp", "quantity": 3, "amount": 103.5}),
        ),
        (
            "sensors",
            RecordType::Sensor,
            0,
            json!({"reading_id": 1, "sensor_id": "sensor-028", "temperature": 38.4, "humidity": 52.2, "timestamp": "2024-01-01T00:00:00Z"}),
        ),
        (
            "sensors",
            RecordType::Sensor,
            86_399,
            json!({"reading_id": 86400, "sensor_id": "sensor-020", "temperature": 33.2, "humidity": 69.8, "timestamp": "2024-01-01T23:59:59Z"}),
        ),
    ];
    for (stream, t, i, want) in gold {
        let got = generate(42, stream, t, i);
        assert_eq!(got, want, "{stream} {i}");
        // The serialized form too (what NDJSON sinks write).
        assert_eq!(got.to_string(), want.to_string());
    }
    // Values stay in their documented ranges.
    for i in 0..2_000 {
        let u = generate(1, "u", RecordType::User, i);
        assert!((18..=80).contains(&u["age"].as_i64().unwrap()));
        let o = generate(1, "o", RecordType::Order, i);
        assert!((1..=10).contains(&o["quantity"].as_i64().unwrap()));
        let s = generate(1, "s", RecordType::Sensor, i);
        let t = s["temperature"].as_f64().unwrap();
        assert!((-10.0..=40.0).contains(&t));
        let h = s["humidity"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&h));
    }
    // Far indexes stay total (no panic, a valid timestamp).
    assert_eq!(
        generate(0, "e", RecordType::Event, u64::MAX)["event_id"],
        json!(u64::MAX)
    );
}

#[tokio::test]
async fn discover_reports_keys_and_typed_schemas() {
    let src = source(
        "[source.streams.a]\nrecord_type = \"user\"\n[source.streams.b]\nrecord_type = \"event\"\n\
         [source.streams.c]\nrecord_type = \"order\"\n[source.streams.d]\nrecord_type = \"sensor\"\n",
        10,
    );
    src.check().await.unwrap();
    let specs = src.discover().await.unwrap();
    let keys: Vec<(&str, &str)> = specs
        .iter()
        .map(|s| (s.name.as_str(), s.primary_key[0].as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("a", "id"),
            ("b", "event_id"),
            ("c", "order_id"),
            ("d", "reading_id")
        ]
    );
    assert_eq!(
        specs[3].json_schema,
        Some(json!({
            "type": "object",
            "properties": {
                "reading_id": {"type": "integer"},
                "sensor_id": {"type": "string"},
                "temperature": {"type": "number"},
                "humidity": {"type": "number"},
                "timestamp": {"type": "string", "format": "date-time"}
            },
            "required": ["reading_id", "sensor_id", "temperature", "humidity", "timestamp"]
        }))
    );
    // Every generated record matches its schema's property names.
    for (spec, t) in specs.iter().zip([
        RecordType::User,
        RecordType::Event,
        RecordType::Order,
        RecordType::Sensor,
    ]) {
        let props: Vec<&String> = spec.json_schema.as_ref().unwrap()["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        for i in [0, 1, 999_999] {
            let v = generate(3, &spec.name, t, i);
            let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(fields, props);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limits_records_per_second() {
    let src = source(
        "[source.streams.s]\nrecord_type = \"user\"\ntotal = 30\nrate = 10\n",
        100,
    );
    let start = tokio::time::Instant::now();
    let (records, batches) = run(&src, "s", None, usize::MAX).await;
    assert_eq!(records.len(), 30);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(2900)
            && elapsed <= std::time::Duration::from_millis(3300),
        "{elapsed:?}"
    );
    // Batches come at most every 200 ms at this rate: low latency.
    assert!(batches.len() >= 14, "{}", batches.len());
}

#[test]
fn config_errors_name_the_key() {
    let parse = |text: &str| {
        let text = format!("[source]\ntype = \"generator\"\n{text}");
        GeneratorSource::from_section(
            &section(&text, Path::new("/tmp")),
            &SourceContext::new("t", 10),
        )
        .err()
        .unwrap()
    };
    let err = parse("[source.streams.s]\nrecord_type = \"user\"\nrate = 0\n");
    assert_eq!(err.key.as_deref(), Some("source.streams.s.rate"));
    let err = parse("[source.streams.s]\nrecord_type = \"users\"\n");
    assert!(err.message.contains("users"), "{err}");
    let err = parse("[source.streams.s]\nrecord_type = \"user\"\nbatch_size = 0\n");
    assert_eq!(err.key.as_deref(), Some("source.streams.s.batch_size"));
    let err = parse("seed = 1\n");
    assert!(err.message.contains("streams"), "{err}");
}

#[test]
fn a_stream_batch_size_has_the_runtime_range() {
    let build = |n: &str| {
        let text = format!(
            "[source]\ntype = \"generator\"\n[source.streams.u]\nrecord_type = \"user\"\nbatch_size = {n}\n"
        );
        GeneratorSource::from_section(
            &section(&text, Path::new("/tmp")),
            &SourceContext::new("t", 10),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(build("1000000"), Ok(()));
    assert_eq!(
        build("1000001"),
        Err("/tmp/connector.toml:5: source.streams.u.batch_size: 1000001 is out of range: use 1 to 1000000".into())
    );
    assert_eq!(
        build("0"),
        Err(
            "/tmp/connector.toml:5: source.streams.u.batch_size: batch_size must be at least 1"
                .into()
        )
    );
}
