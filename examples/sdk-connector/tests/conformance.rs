//! Both sources pass the SDK's conformance kit against the local API.

mod common;

use sdk_connector::{feed::FeedSource, queue::QueueSource};
use tributary_sdk::conformance::Kit;

#[tokio::test]
async fn the_feed_source_conforms() {
    let server = common::start(common::Api {
        events: 95,
        ..Default::default()
    })
    .await;
    let (reset, observe, garbage) = (server.clone(), server.clone(), server.clone());
    let kit = Kit::new(
        tributary_sdk::pull_type("json_feed", FeedSource::from_section),
        common::config("json_feed", &server, "page_size = 20"),
    )
    .stream("events")
    .reset(move || {
        reset.api().garbage = false;
        async {}
    })
    .observe(move || {
        let writes = format!("{:?}", observe.api().writes);
        async move { writes }
    })
    .malformed("events that are not objects", move || {
        garbage.api().garbage = true;
        async {}
    });
    kit.assert_all().await;
}

#[tokio::test]
async fn the_queue_source_conforms() {
    let server = common::start(common::Api {
        messages: 64,
        ..Default::default()
    })
    .await;
    let (reset, observe) = (server.clone(), server.clone());
    let kit = Kit::new(
        tributary_sdk::push_type("json_queue", QueueSource::from_section),
        // Drain jobs end when the queue is empty; batches of at most 10.
        common::config("json_queue", &server, "stop_when_empty = true")
            .replace("[sink]", "[runtime]\nbatch_size = 10\n\n[sink]"),
    )
    .stream("messages")
    .reset(move || {
        reset.api().deleted.clear();
        async {}
    })
    .observe(move || {
        let deleted = format!("{:?}", observe.api().deleted);
        async move { deleted }
    });
    kit.assert_all().await;
}
