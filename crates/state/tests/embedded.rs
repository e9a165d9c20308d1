//! The embedded (redb) store: round trips, atomic multi-stream commits, the
//! `advanced_at` rule, resets, the exclusive lock, and kill -9 safety.

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_core::Checkpoint;
use tributary_state::{EmbeddedStore, StateError, StateStore};

fn cp(v: serde_json::Value) -> Checkpoint {
    Checkpoint(v)
}

#[tokio::test]
async fn round_trip_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("state"), "billing").unwrap();
    let expected_path = dir.path().join("state").join("billing.redb");
    assert_eq!(store.describe(), expected_path.display().to_string());
    assert!(expected_path.is_file());

    assert_eq!(store.load("orders").await.unwrap(), None);
    assert!(store.load_all().await.unwrap().is_empty());

    store
        .commit(&[("orders".into(), cp(json!({"offset": 42, "file": "a.csv"})))])
        .await
        .unwrap();
    let got = store.load("orders").await.unwrap().unwrap();
    assert_eq!(got.stream, "orders");
    assert_eq!(got.checkpoint, cp(json!({"offset": 42, "file": "a.csv"})));
    assert_eq!(got.committed_at, got.advanced_at);

    // An empty commit is a no-op, not an error.
    store.commit(&[]).await.unwrap();
    assert_eq!(store.load_all().await.unwrap().len(), 1);
}

#[tokio::test]
async fn multi_stream_commit_survives_reopen_and_is_sorted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path(), "c").unwrap();
        store
            .commit(&[
                ("zeta".into(), cp(json!({"n": 1}))),
                ("alpha".into(), cp(json!({"n": 2}))),
            ])
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), "c").unwrap();
    let all = store.load_all().await.unwrap();
    let names: Vec<_> = all.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(all[0].checkpoint, cp(json!({"n": 2})));
    assert_eq!(all[1].checkpoint, cp(json!({"n": 1})));
    // Both streams were written by one transaction: one commit time.
    assert_eq!(all[0].committed_at, all[1].committed_at);
}

#[tokio::test]
async fn advanced_at_changes_only_when_the_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), "c").unwrap();
    store
        .commit(&[("s".into(), cp(json!({"a": 1, "b": 2})))])
        .await
        .unwrap();
    let first = store.load("s").await.unwrap().unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    // Same value (keys in another order is the same JSON value).
    store
        .commit(&[("s".into(), cp(json!({"b": 2, "a": 1})))])
        .await
        .unwrap();
    let second = store.load("s").await.unwrap().unwrap();
    assert_eq!(second.advanced_at, first.advanced_at);
    assert!(second.committed_at > first.committed_at);

    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .commit(&[("s".into(), cp(json!({"a": 2, "b": 2})))])
        .await
        .unwrap();
    let third = store.load("s").await.unwrap().unwrap();
    assert!(third.advanced_at > second.advanced_at);
    assert_eq!(third.advanced_at, third.committed_at);
}

#[tokio::test]
async fn reset_one_and_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), "c").unwrap();
    store
        .commit(&[
            ("a".into(), cp(json!(1))),
            ("b".into(), cp(json!(2))),
            ("c".into(), cp(json!(3))),
        ])
        .await
        .unwrap();
    assert_eq!(store.reset(Some("b")).await.unwrap(), 1);
    assert_eq!(store.reset(Some("b")).await.unwrap(), 0);
    assert_eq!(store.reset(Some("missing")).await.unwrap(), 0);
    let names: Vec<_> = store
        .load_all()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream)
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(store.reset(None).await.unwrap(), 2);
    assert!(store.load_all().await.unwrap().is_empty());
    assert_eq!(store.reset(None).await.unwrap(), 0);

    // Durable: a new instance sees the reset.
    drop(store);
    let store = EmbeddedStore::open(dir.path(), "c").unwrap();
    assert!(store.load_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path(), "c").unwrap();
    first.commit(&[("s".into(), cp(json!(1)))]).await.unwrap();
    match EmbeddedStore::open(dir.path(), "c") {
        Err(StateError::Locked { path }) => {
            assert_eq!(path, dir.path().join("c.redb").display().to_string())
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another connector's file is independent.
    EmbeddedStore::open(dir.path(), "other").unwrap();
    drop(first);
    let again = EmbeddedStore::open(dir.path(), "c").unwrap();
    assert_eq!(
        again.load("s").await.unwrap().unwrap().checkpoint,
        cp(json!(1))
    );
}

#[test]
fn connector_names_that_escape_the_directory_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "..", "a/b", "a\\b", "a\0b"] {
        assert!(
            matches!(
                EmbeddedStore::open(dir.path(), bad),
                Err(StateError::Storage { .. })
            ),
            "{bad:?}"
        );
    }
}

const WRITER_ENV: &str = "TRIBUTARY_STATE_CRASH_WRITER_DIR";

/// Not a test on its own (hence ignored): the child process of
/// `kill_9_never_tears_a_commit`, which runs it with `--ignored`. It commits
/// `{"n": i}` to two streams in one transaction, in a tight loop, and prints
/// each `i` after the commit returned (i.e. after it is durable), until killed.
#[tokio::test]
#[ignore = "child process of kill_9_never_tears_a_commit"]
async fn crash_writer_child() {
    let dir = std::env::var_os(WRITER_ENV).expect("run by kill_9_never_tears_a_commit");
    let store = EmbeddedStore::open(std::path::Path::new(&dir), "crash").unwrap();
    let start = match store.load("a").await.unwrap() {
        Some(s) => s.checkpoint.0["n"].as_u64().unwrap() + 1,
        None => 0,
    };
    for i in start.. {
        store
            .commit(&[
                ("a".into(), cp(json!({ "n": i }))),
                ("b".into(), cp(json!({ "n": i }))),
            ])
            .await
            .unwrap();
        println!("committed {i}");
    }
}

#[tokio::test]
async fn kill_9_never_tears_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut previous: Option<u64> = None;
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // u64::MAX = nothing acknowledged yet in this round.
        let last_acked = Arc::new(AtomicU64::new(u64::MAX));
        let seen = Arc::clone(&last_acked);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("committed ") {
                    seen.store(n.trim().parse().unwrap(), Ordering::SeqCst);
                }
            }
        });
        // Kill only once the child is committing, at a varying instant.
        let deadline = Instant::now() + Duration::from_secs(20);
        while last_acked.load(Ordering::SeqCst) == u64::MAX {
            assert!(Instant::now() < deadline, "writer never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(250 + 37 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = last_acked.load(Ordering::SeqCst);

        let store = EmbeddedStore::open(dir.path(), "crash").unwrap();
        let a = store.load("a").await.unwrap().expect("stream a committed");
        let b = store.load("b").await.unwrap().expect("stream b committed");
        let n = a.checkpoint.0["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("torn checkpoint {:?}", a.checkpoint));
        assert_eq!(a.checkpoint, cp(json!({ "n": n })), "exact shape");
        // Same transaction: the two streams never diverge.
        assert_eq!(b.checkpoint, a.checkpoint);
        // Every acknowledged commit is durable; at most the in-flight one more.
        assert!(
            n >= acked,
            "round {round}: stored {n} < acknowledged {acked}"
        );
        assert!(
            n <= acked + 1,
            "round {round}: stored {n} > acknowledged {acked} + 1"
        );
        if let Some(p) = previous {
            assert!(n > p, "round {round}: not monotone ({n} after {p})");
        }
        eprintln!("round {round}: acknowledged {acked}, stored {n}");
        previous = Some(n);
        drop(store);
    }
}

#[tokio::test]
async fn put_and_replace_all_keep_the_given_times_exactly() {
    use chrono::TimeZone;
    use tributary_state::StoredCheckpoint;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), "c").unwrap();
    store
        .commit(&[
            ("a".into(), cp(json!({"n": 1}))),
            ("b".into(), cp(json!({"n": 2}))),
        ])
        .await
        .unwrap();
    let old = chrono::Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let entry = |s: &str, n: u64| StoredCheckpoint {
        stream: s.into(),
        checkpoint: cp(json!({ "n": n })),
        committed_at: old,
        advanced_at: old - chrono::Duration::days(1),
    };
    store.put(&[entry("a", 10)]).await.unwrap();
    let all = store.load_all().await.unwrap();
    assert_eq!(all[0], entry("a", 10));
    assert_eq!(all[1].checkpoint, cp(json!({"n": 2})), "put leaves b alone");

    store
        .replace_all(&[entry("c", 3), entry("a", 4)])
        .await
        .unwrap();
    assert_eq!(
        store.load_all().await.unwrap(),
        vec![entry("a", 4), entry("c", 3)],
        "b is gone, the rest exactly as given"
    );
}

#[tokio::test]
async fn while_locked_the_holders_snapshot_is_readable_and_refuses_writes() {
    use tributary_state::StoreAccess;
    let dir = tempfile::tempdir().unwrap();
    // Not running: the store itself.
    match EmbeddedStore::open_or_snapshot(dir.path(), "c").unwrap() {
        StoreAccess::Exclusive(_) => {}
        StoreAccess::Running(_) => panic!("nothing holds the store"),
    }
    let holder = EmbeddedStore::open(dir.path(), "c").unwrap();
    holder
        .commit(&[("s".into(), cp(json!({"n": 7})))])
        .await
        .unwrap();
    let StoreAccess::Running(view) = EmbeddedStore::open_or_snapshot(dir.path(), "c").unwrap()
    else {
        panic!("the holder runs")
    };
    assert_eq!(
        view.load_all().await.unwrap(),
        holder.load_all().await.unwrap()
    );
    assert_eq!(
        view.load("s").await.unwrap().unwrap().checkpoint,
        cp(json!({"n": 7}))
    );
    holder.reset(Some("s")).await.unwrap();
    assert_eq!(view.load("s").await.unwrap(), None, "follows every write");
    for refused in [
        view.reset(None).await.err(),
        view.commit(&[("s".into(), cp(json!(1)))]).await.err(),
        view.put(&[]).await.err(),
    ] {
        assert!(
            matches!(refused, Some(StateError::Locked { .. })),
            "{refused:?}"
        );
    }
    assert!(view.describe().contains("the connector is running"));
}
