//! Benchmark baseline for the Kafka sink: produces every line of a file as
//! one message, with the sink's producer settings (`acks=all`, idempotent,
//! the same compression) and nothing else: no parsing, no key, no headers,
//! no checkpoints. Creates the topic (one partition, as the sink does by
//! default) if missing, waits for every delivery report, then prints the count.
//!
//! With `--key-and-headers` each message also carries a key (the line's
//! number, as long as the benchmark's ids) and the four `tributary.*`
//! headers the sink writes, with values of the same length, as rdkafka's
//! own example producer sends a key and a header: still no parsing and no
//! checkpoints, and the same bytes on the wire as tributary's sink sends for
//! the same lines, so the benchmark can tell the cost of the message's
//! shape (librdkafka, the broker) from the cost of the pipeline.
//!
//! ```text
//! kafka_produce BROKERS TOPIC FILE [COMPRESSION] [--key-and-headers]
//! ```

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::fmt::Write as _;
use std::io::BufRead;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: kafka_produce BROKERS TOPIC FILE [COMPRESSION] [--key-and-headers]");
        std::process::exit(2);
    }
    let (brokers, topic, file) = (&args[1], &args[2], &args[3]);
    let compression = args.get(4).map_or("none", String::as_str);
    let key_and_headers = args.get(5).is_some_and(|a| a == "--key-and-headers");
    let headers = || {
        [
            ("tributary.connector", "bench"),
            ("tributary.stream", "events"),
            ("tributary.load_mode", "INITIAL_LOAD"),
            ("tributary.ingested_at", "2026-01-01T00:00:00.000Z"),
        ]
        .into_iter()
        .fold(OwnedHeaders::new_with_capacity(5), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        })
    };
    let mut key = String::new();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap_or_else(|e| panic!("admin: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let topic_spec = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let created = rt
        .block_on(admin.create_topics([&topic_spec], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("create topic: {e}"));
    for r in created {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("create topic {t}: {code}"),
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", compression)
        .set("queue.buffering.max.kbytes", "32768")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let reader = std::io::BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(file).unwrap_or_else(|e| panic!("{file}: {e}")),
    );
    let started = Instant::now();
    let mut n = 0u64;
    for line in reader.split(b'\n') {
        let line = line.unwrap_or_else(|e| panic!("{file}: {e}"));
        if line.is_empty() {
            continue;
        }
        let mut record = if key_and_headers {
            key.clear();
            // The buffer is reused: no allocation per message.
            let _ = write!(key, "{}", n + 1);
            BaseRecord::<[u8], [u8]>::to(topic)
                .payload(line.as_slice())
                .key(key.as_bytes())
                .headers(headers())
        } else {
            BaseRecord::<[u8], [u8]>::to(topic).payload(line.as_slice())
        };
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(5));
                    record = back;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        n += 1;
        if n.is_multiple_of(1000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("flush: {e}"));
    let secs = started.elapsed().as_secs_f64();
    println!("{n} records in {secs:.2}s");
}
