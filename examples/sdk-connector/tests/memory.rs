//! Reading a long feed keeps memory bounded (a test binary of its own: the
//! check measures the whole process).

mod common;

#[tokio::test]
async fn a_long_feed_is_read_in_bounded_memory() {
    // 40,000 events of ~1 KiB: 40 MiB on offer, 16 MiB read against an 8 MiB budget.
    let server = common::start(common::Api {
        events: 40_000,
        pad: 1000,
        ..Default::default()
    })
    .await;
    tributary_sdk::conformance::Kit::new(
        tributary_sdk::pull_type("json_feed", sdk_connector::feed::FeedSource::from_section),
        common::config("json_feed", &server, "page_size = 200"),
    )
    .memory_budget(8 << 20)
    .bounded_memory()
    .await
    .unwrap();
}
