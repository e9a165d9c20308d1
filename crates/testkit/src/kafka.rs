//! Apache Kafka for tests: one shared KRaft broker for the whole test run
//! ([`Kafka::shared`], started once by `scripts/kafka shared`; tests keep
//! apart by unique names from [`unique`]) and a broker of a test's own
//! ([`Kafka::start_own`]) for the tests that stop or restart one. Blocking
//! helpers create topics, produce, and read topics back with librdkafka.
//!
//! The jars come from Maven Central (`scripts/kafka`, run by `scripts/setup`);
//! a broker that cannot be fetched or started fails the test that asked for
//! it with the script's words: never a skip.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `scripts/kafka` of this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka")
}

/// A topic, group or connector name no other test (in this or another
/// process) of the run uses on the shared broker.
pub fn unique(prefix: &str) -> String {
    crate::unique_name(prefix, '-')
}

/// A running Apache Kafka broker. See the [module docs](self).
pub struct Kafka {
    bootstrap: String,
    own: Option<OwnBroker>,
}

/// A broker process of one test's own: its data in a temporary folder that
/// outlives restarts.
struct OwnBroker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// A message to produce: key, value (`None`: a tombstone), headers.
pub type Outgoing<'a> = (Option<&'a str>, Option<&'a str>, &'a [(&'a str, &'a str)]);

/// A message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Msg {
    /// The value as JSON (panics with the text if it is not).
    pub fn json(&self) -> serde_json::Value {
        let v = self.value.as_deref().unwrap_or("null");
        serde_json::from_str(v).unwrap_or_else(|e| panic!("value {v:?} is not JSON: {e}"))
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How often each key occurs among `msgs`, keys read as integers (the
/// ids the tests' records are keyed by); a key that is not one panics.
pub fn key_counts(msgs: &[Msg]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for msg in msgs {
        let k: i64 = msg
            .key
            .as_deref()
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("key of {msg:?}"));
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// Which messages a read returns, as a consumer's `isolation.level` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only messages of committed transactions (and non-transactional ones).
    ReadCommitted,
    /// Everything written, aborted transactions included.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Kafka {
    /// The test run's shared broker: `$TRIBUTARY_KAFKA_BOOTSTRAP` (set by
    /// `scripts/test`), else the one `scripts/kafka shared` starts or finds.
    /// Topics, groups and connector names must come from [`unique`].
    pub fn shared() -> Kafka {
        let bootstrap = match std::env::var("TRIBUTARY_KAFKA_BOOTSTRAP") {
            Ok(b) if !b.is_empty() => b,
            _ => {
                let out = Command::new("bash")
                    .arg(script())
                    .arg("shared")
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
                assert!(
                    out.status.success(),
                    "`scripts/kafka shared` could not start Apache Kafka ({}); see its message above",
                    out.status
                );
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        let mut k = Kafka {
            bootstrap,
            own: None,
        };
        k.wait_ready(Instant::now());
        k
    }

    /// A broker of this test's own on a free port (several seconds: a JVM
    /// starts), for tests that stop or restart it. Killed on drop.
    pub fn start_own() -> Kafka {
        let port = free_port();
        let mut k = Kafka {
            bootstrap: format!("127.0.0.1:{port}"),
            own: Some(OwnBroker {
                child: None,
                port,
                dir: tempfile::tempdir().expect("a temporary folder for the broker"),
            }),
        };
        k.spawn();
        k
    }

    fn own(&mut self) -> &mut OwnBroker {
        self.own.as_mut().expect(
            "only a broker of the test's own (Kafka::start_own) can be stopped or restarted",
        )
    }

    fn spawn(&mut self) {
        let own = self.own();
        let log = std::fs::File::create(own.dir.path().join("broker.log")).expect("broker log");
        let err = log.try_clone().expect("broker log");
        let child = Command::new("bash")
            .arg(script())
            .arg("run")
            .arg(own.dir.path())
            .arg(own.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        own.child = Some(child);
        self.wait_ready(Instant::now());
    }

    fn wait_ready(&mut self, start: Instant) {
        loop {
            // `scripts/kafka run` execs the JVM: the child is the broker.
            let exited = self
                .own
                .as_mut()
                .and_then(|o| o.child.as_mut())
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "Apache Kafka exited with {status} on start; its log:\n{}",
                    self.log_text()
                );
            }
            let ready = self
                .consumer()
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok_and(|m| !m.brokers().is_empty());
            if ready {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "Apache Kafka did not answer at {} within {TIMEOUT:?}; its log:\n{}",
                self.bootstrap,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a broker of the test's own printed so far (empty for the shared one).
    pub fn log_text(&self) -> String {
        self.own
            .as_ref()
            .and_then(|o| std::fs::read_to_string(o.dir.path().join("broker.log")).ok())
            .unwrap_or_default()
    }

    /// Runs one of Kafka's own tools (a class from the fetched jars, e.g.
    /// `org.apache.kafka.tools.TopicCommand`) against this broker, with
    /// `--bootstrap-server` added, and returns what it printed; a failing
    /// tool fails the test with its output.
    pub fn tool(&self, class: &str, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(["java", class, "--bootstrap-server", &self.bootstrap])
            .args(args)
            .env("KAFKA_HEAP", "-Xmx256m")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{class} {args:?} failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `host:port` for `brokers =`.
    pub fn brokers(&self) -> String {
        self.bootstrap.clone()
    }

    /// Kills the broker of the test's own (SIGKILL); its data stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.own().child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers());
        c
    }

    /// A consumer with no group, for metadata and assigned reads.
    pub fn consumer(&self) -> BaseConsumer {
        self.config()
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", "tributary-testkit")
            .create()
            .expect("consumer")
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    pub fn create_topic_with(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in config {
            topic = topic.set(k, v);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .expect("create_topics");
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => panic!("creating topic {t}: {code}"),
            }
        }
    }

    /// Deletes consumer group `group` and its committed offsets (a group
    /// that does not exist is fine), so a reader without a checkpoint
    /// starts where `start` says again.
    pub fn delete_group(&self, group: &str) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = rt
            .block_on(admin.delete_groups(&[group], &AdminOptions::new()))
            .expect("delete_groups");
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((g, code)) => panic!("deleting group {g}: {code}"),
            }
        }
    }

    /// Initializes transactions of `transactional_id` with a producer of
    /// its own, then drops it: the broker fences every older producer of
    /// that id (their next transactional request fails), as another
    /// application claiming the id would.
    pub fn fence(&self, transactional_id: &str) {
        let producer: BaseProducer = self
            .config()
            .set("transactional.id", transactional_id)
            .create()
            .expect("transactional producer");
        producer
            .init_transactions(TIMEOUT)
            .unwrap_or_else(|e| panic!("init_transactions of {transactional_id}: {e}"));
    }

    /// Topic names on the broker.
    pub fn topics(&self) -> Vec<String> {
        let m = self
            .consumer()
            .fetch_metadata(None, TIMEOUT)
            .expect("metadata");
        let mut names: Vec<String> = m.topics().iter().map(|t| t.name().to_string()).collect();
        names.sort();
        names
    }

    /// Produces `(key, value, headers)` messages and waits for every ack.
    pub fn produce(&self, topic: &str, messages: &[Outgoing<'_>]) {
        let producer: BaseProducer = self.config().set("acks", "all").create().expect("producer");
        for (key, value, headers) in messages {
            let mut h = OwnedHeaders::new();
            for (k, v) in *headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut r = BaseRecord::<str, str>::to(topic).headers(h);
            if let Some(k) = key {
                r = r.key(k);
            }
            if let Some(v) = value {
                r = r.payload(v);
            }
            let mut r = r;
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert_eq!(
                            e.rdkafka_error_code(),
                            Some(RDKafkaErrorCode::QueueFull),
                            "produce: {e}"
                        );
                        producer.poll(Duration::from_millis(10));
                        r = back;
                    }
                }
            }
        }
        producer.flush(TIMEOUT).expect("flush");
    }

    /// Partition -> (low, high) watermarks of `topic`.
    pub fn watermarks(&self, topic: &str) -> BTreeMap<i32, (i64, i64)> {
        let c = self.consumer();
        let m = c.fetch_metadata(Some(topic), TIMEOUT).expect("metadata");
        let t = m
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .unwrap_or_else(|| panic!("no topic {topic}"));
        t.partitions()
            .iter()
            .map(|p| {
                let w = c
                    .fetch_watermarks(topic, p.id(), TIMEOUT)
                    .expect("watermarks");
                (p.id(), w)
            })
            .collect()
    }

    /// Partition -> its log end offset (the high watermark).
    pub fn ends(&self, topic: &str) -> BTreeMap<i32, i64> {
        self.watermarks(topic)
            .into_iter()
            .map(|(p, (_, high))| (p, high))
            .collect()
    }

    /// Every message of `topic` a `read_committed` consumer sees, in
    /// partition then offset order.
    pub fn read_all(&self, topic: &str) -> Vec<Msg> {
        self.read_all_as(topic, Isolation::ReadCommitted)
    }

    /// Every message of `topic` up to the end of each partition (for
    /// `read_committed`: the last stable offset), read until every partition
    /// has reported its end at once.
    pub fn read_all_as(&self, topic: &str, isolation: Isolation) -> Vec<Msg> {
        let partitions: Vec<i32> = self.watermarks(topic).keys().copied().collect();
        let c: BaseConsumer = self
            .config()
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("group.id", "tributary-testkit")
            .set("isolation.level", isolation.as_str())
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("partition");
        }
        c.assign(&tpl).expect("assign");
        let mut at_end = BTreeSet::new();
        let mut out = Vec::new();
        let start = Instant::now();
        while at_end.len() < partitions.len() {
            assert!(start.elapsed() < TIMEOUT, "reading {topic} timed out");
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.push(to_msg(&m));
                }
            }
        }
        out.sort_by_key(|m| (m.partition, m.offset));
        out
    }

    /// The committed offsets of `group` for `topic`, by partition.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let c: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in self.watermarks(topic).keys() {
            tpl.add_partition(topic, *p);
        }
        let got = c
            .committed_offsets(tpl, TIMEOUT)
            .expect("committed offsets");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }
}

fn to_msg<M: Message>(m: &M) -> Msg {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    Msg {
        partition: m.partition(),
        offset: m.offset(),
        key: text(m.key()),
        value: text(m.payload()),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), text(h.value).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
