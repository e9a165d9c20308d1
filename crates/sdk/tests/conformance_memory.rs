//! The bounded-memory check in a test binary of its own (it measures the
//! process's resident memory): it passes on a source that lets go of what
//! it read and fails on one that keeps it.

mod support;

#[tokio::test]
async fn memory_check_passes_a_streaming_source_and_catches_one_that_keeps_records() {
    // 40,000 records of 1 KiB in batches of 200: 40 MiB read against a
    // budget of 12 MiB.
    let (kit, _) = support::flawed_with("none", 40_000, 200, 1000);
    kit.clone()
        .memory_budget(12 << 20)
        .bounded_memory()
        .await
        .unwrap();

    let (kit, _) = support::flawed_with("keeps_everything", 40_000, 200, 1000);
    let m = kit
        .memory_budget(12 << 20)
        .bounded_memory()
        .await
        .expect_err("a source keeping every record must fail")
        .to_string();
    assert!(
        m.starts_with("conformance check `bounded_memory` failed: resident memory grew by "),
        "{m}"
    );
    assert!(
        m.ends_with("(budget 12 MiB): something keeps what it read"),
        "{m}"
    );
}

#[tokio::test]
async fn memory_check_refuses_a_stream_too_short_to_tell() {
    let (kit, _) = support::flawed_with("none", 100, 10, 10);
    let m = kit.bounded_memory().await.unwrap_err().to_string();
    assert!(m.contains("configure a longer stream"), "{m}");
}
