//! Benchmark helper: waits until a topic holds at least COUNT messages (the
//! sum of its partitions' high watermarks), then prints the seconds it
//! waited. bench/kafka.sh runs it beside a tool that never exits on its own
//! (Kafka Connect standalone) to time how long the tool took to deliver a
//! file.
//!
//! ```text
//! kafka_wait BROKERS TOPIC COUNT TIMEOUT_SECS
//! ```
//!
//! Exits 1 if the count is not reached within the timeout.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: kafka_wait BROKERS TOPIC COUNT TIMEOUT_SECS");
        std::process::exit(2);
    }
    let (brokers, topic) = (&args[1], &args[2]);
    let count: i64 = args[3].parse().unwrap_or_else(|e| panic!("COUNT: {e}"));
    let timeout = Duration::from_secs(args[4].parse().unwrap_or_else(|e| panic!("TIMEOUT: {e}")));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tributary-bench-wait")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < timeout {
        last = written(&consumer, topic);
        if last >= count {
            println!("{:.3}", started.elapsed().as_secs_f64());
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{topic} holds {last} of {count} messages after {timeout:?}");
    std::process::exit(1);
}

/// The topic's messages so far: 0 until it exists.
fn written(consumer: &BaseConsumer, topic: &str) -> i64 {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return 0;
    };
    t.partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map_or(0, |(low, high)| high - low)
        })
        .sum()
}
