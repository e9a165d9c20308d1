//! The Kafka state store against Apache Kafka (the test run's shared
//! broker; each test writes a state topic of its own).

use serde_json::json;
use tributary_core::Checkpoint;
use tributary_state::{KafkaStore, StateError, StateStore};
use tributary_testkit::kafka::{unique, Kafka};

fn cp(v: serde_json::Value) -> Checkpoint {
    Checkpoint(v)
}

fn store(broker: &Kafka, topic: &str, connector: &str) -> KafkaStore {
    KafkaStore::open(&format!("kafka://{}/{topic}", broker.brokers()), connector).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_read_back_by_a_new_instance_and_connectors_are_kept_apart() {
    let broker = Kafka::shared();
    let topic = unique("offsets");
    let a = store(&broker, &topic, "billing");
    a.claim().await.unwrap();
    a.commit(&[
        ("invoices".into(), cp(json!({"offset": 1}))),
        ("customers".into(), cp(json!({"offset": 2}))),
    ])
    .await
    .unwrap();
    a.commit(&[("invoices".into(), cp(json!({"offset": 3})))])
        .await
        .unwrap();
    let other = store(&broker, &topic, "shipping");
    other
        .commit(&[("invoices".into(), cp(json!({"offset": 99})))])
        .await
        .unwrap();

    // A new process: reads the topic to its end.
    let b = store(&broker, &topic, "billing");
    let all = b.load_all().await.unwrap();
    let got: Vec<(String, serde_json::Value)> = all
        .iter()
        .map(|c| (c.stream.clone(), c.checkpoint.0.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("customers".to_string(), json!({"offset": 2})),
            ("invoices".to_string(), json!({"offset": 3})),
        ]
    );
    let inv = b.load("invoices").await.unwrap().unwrap();
    assert!(inv.advanced_at >= inv.committed_at - chrono::Duration::seconds(60));
    assert_eq!(b.load("nope").await.unwrap(), None);

    // Reset: a tombstone per stream; other connectors untouched.
    assert_eq!(b.reset(Some("invoices")).await.unwrap(), 1);
    assert_eq!(b.reset(Some("invoices")).await.unwrap(), 0);
    let c = store(&broker, &topic, "billing");
    assert_eq!(c.load("invoices").await.unwrap(), None);
    assert!(c.load("customers").await.unwrap().is_some());
    assert_eq!(
        store(&broker, &topic, "shipping")
            .load("invoices")
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        cp(json!({"offset": 99}))
    );
    let messages = broker.read_all(&topic);
    let tombstone = messages
        .iter()
        .rev()
        .find(|m| m.key.as_deref() == Some(r#"["billing","invoices"]"#))
        .unwrap();
    assert_eq!(tombstone.value, None);
    // Compacted, one partition.
    assert_eq!(broker.watermarks(&topic).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_fences_the_first_which_can_no_longer_commit() {
    let broker = Kafka::shared();
    let topic = unique("offsets");
    let first = store(&broker, &topic, "billing");
    first.claim().await.unwrap();
    first.commit(&[("s".into(), cp(json!(1)))]).await.unwrap();

    let second = store(&broker, &topic, "billing");
    second.claim().await.unwrap();
    assert_eq!(
        second.load("s").await.unwrap().unwrap().checkpoint,
        cp(json!(1))
    );

    match first.commit(&[("s".into(), cp(json!(2)))]).await {
        Err(e @ StateError::Fenced { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("connector `billing` was claimed by another instance")
                    && m.contains(&format!("pid {}", std::process::id())),
                "{m}"
            );
            assert!(!e.is_retryable());
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    second.commit(&[("s".into(), cp(json!(3)))]).await.unwrap();
    assert_eq!(
        store(&broker, &topic, "billing")
            .load("s")
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        cp(json!(3))
    );
    // Another connector's claim is no concern of this one.
    let other = store(&broker, &topic, "shipping");
    other.claim().await.unwrap();
    second.commit(&[("s".into(), cp(json!(4)))]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_is_reported_for_its_stream_and_replaced_by_the_next_commit() {
    let broker = Kafka::shared();
    let topic = unique("offsets");
    let s = store(&broker, &topic, "billing");
    s.commit(&[("good".into(), cp(json!(1)))]).await.unwrap();
    broker.produce(
        &topic,
        &[(Some(r#"["billing","bad"]"#), Some("{not json"), &[])],
    );
    let fresh = store(&broker, &topic, "billing");
    match fresh.load("bad").await {
        Err(StateError::Corrupt { stream, .. }) => assert_eq!(stream, "bad"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(fresh.load("good").await.unwrap().is_some());
    fresh.commit(&[("bad".into(), cp(json!(2)))]).await.unwrap();
    assert_eq!(
        store(&broker, &topic, "billing")
            .load("bad")
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        cp(json!(2))
    );
}
