//! A real Kafka-protocol broker for tests: [tansu](https://tansu.io) with
//! its in-memory storage engine, one process per [`Tansu`] on a free port,
//! killed on drop; and blocking helpers to create topics, produce, and read
//! topics back with librdkafka (Debian's kcat is too old to talk to tansu).
//!
//! The binary is `$TRIBUTARY_TANSU` (set by `scripts/test`), else
//! `~/.cache/tributary/tools/bin/tansu`, where `scripts/kafka` installs it.
//! A missing binary fails the test with that instruction: never a skip.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The tansu binary the tests run.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIBUTARY_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/tributary/tools/bin/tansu")
}

/// One tansu broker process. See the [module docs](self).
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Tansu {
    /// Starts a broker on a free port and waits until it answers metadata requests.
    pub fn start() -> Tansu {
        let mut t = Tansu {
            child: None,
            port: free_port(),
            log: tempfile::NamedTempFile::new().expect("log file"),
        };
        t.spawn();
        t
    }

    fn spawn(&mut self) {
        let bin = tansu_binary();
        assert!(
            bin.exists(),
            "the tansu Kafka broker is not installed at {}: run scripts/kafka (it runs `cargo install tansu --version 0.6.0 --features dynostore --locked --root ~/.cache/tributary/tools`) or set TRIBUTARY_TANSU",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = self.log.reopen().expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tansu exited with {status} on start; its log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ok = self
                    .consumer()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .is_ok();
                if ok {
                    return;
                }
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "tansu did not answer on port {} within {TIMEOUT:?}; its log:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the broker printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// `host:port` for `brokers =`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL). With the memory engine its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: the memory engine).
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

    /// Partition -> (low, high) watermarks of `topic`, as the broker reports
    /// them. tansu 0.6.0 reports the high watermark as the last record
    /// batch's base offset + 1 (short of the log end when that batch holds
    /// several records): use [`Tansu::ends`] for the real end.
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

    /// Partition -> the offset after its last message (0 when empty), read.
    pub fn ends(&self, topic: &str) -> BTreeMap<i32, i64> {
        let mut ends: BTreeMap<i32, i64> = self.watermarks(topic).keys().map(|p| (*p, 0)).collect();
        for m in self.read_all(topic) {
            ends.insert(m.partition, m.offset + 1);
        }
        ends
    }

    /// Every message of `topic` (all partitions, partition then offset
    /// order): read past the reported watermarks until a fetch brings
    /// nothing for half a second (at most 3 s past them).
    pub fn read_all(&self, topic: &str) -> Vec<Msg> {
        let ends = self.watermarks(topic);
        let c: BaseConsumer = self
            .config()
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", "tributary-testkit")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("partition");
        }
        c.assign(&tpl).expect("assign");
        let mut next: BTreeMap<i32, i64> = ends.iter().map(|(p, (low, _))| (*p, *low)).collect();
        let mut out = Vec::new();
        let start = Instant::now();
        let mut reached_at = None;
        loop {
            assert!(start.elapsed() < TIMEOUT, "reading {topic} timed out");
            let reached = ends.iter().all(|(p, (_, high))| next[p] >= *high);
            // A topic still being written: what is there by now will do.
            if reached
                && reached_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(3)
            {
                break;
            }
            let wait = Duration::from_millis(if reached { 500 } else { 100 });
            match c.poll(wait) {
                None if reached => break,
                None => {}
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
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

/// Reads a topic continuously on a thread, across broker restarts, keeping
/// every message it saw (for tests that must see records acknowledged by a
/// broker whose memory engine is about to lose them).
pub struct Tail {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Msg>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    pub fn start(broker: &Tansu, topic: &str, partitions: i32) -> Tail {
        let c = broker
            .config()
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", "tributary-testkit-tail")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create::<BaseConsumer>()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        c.assign(&tpl).expect("assign");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                        seen.lock().unwrap().push(to_msg(&m));
                    }
                }
            })
        };
        Tail {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Vec<Msg> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
