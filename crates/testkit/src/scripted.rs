//! Fault injection for runtime tests: a scripted source whose polls fail on
//! cue, a sink that remembers what was durable when (and fails on cue), and a
//! state store that checks invariant 1 at every commit.

use chrono::Utc;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tributary_config::*;
use tributary_core::*;
use tributary_state::{StateError, StateStore, StoredCheckpoint};

pub fn config(name: &str, dir: &std::path::Path) -> ConnectorConfig {
    let doc = Arc::new(ConfigDocument {
        path: dir.join("test.toml"),
        text: String::new(),
        substitutions: Vec::new(),
    });
    let section = |kind: &str, key: &str| SectionConfig {
        kind: kind.into(),
        key: key.into(),
        table: toml::Table::new(),
        base_dir: dir.to_path_buf(),
        document: doc.clone(),
    };
    ConnectorConfig {
        name: name.into(),
        topic_prefix: name.into(),
        schedule: Schedule::Once,
        schedule_configured: false,
        source: section("test", "source"),
        sink: section("test", "sink"),
        state: StateConfig::Embedded {
            dir: dir.join("state"),
        },
        runtime: RuntimeConfig {
            backoff_initial: std::time::Duration::from_millis(1),
            backoff_max: std::time::Duration::from_millis(5),
            poll_interval: std::time::Duration::from_millis(5),
            ..RuntimeConfig::default()
        },
        metadata: MetadataConfig::default(),
        metadata_configured: false,
        bad_records: BadRecordConfig {
            policy: BadRecordPolicy::Fail,
            dead_letter_path: dir.join("dead.ndjson"),
        },
        streams: BTreeMap::new(),
        base_dir: dir.to_path_buf(),
        document: doc,
        warnings: Vec::new(),
    }
}

/// What a poll should do instead of reading, in order.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Read normally.
    Pass,
    Retryable,
    Fatal,
    /// Include a bad record (at `stream:NEXT`) in the next batch.
    BadRecord,
}

#[derive(Default)]
pub struct ScriptState {
    pub faults: VecDeque<Fault>,
    pub opens: Vec<(String, Option<Checkpoint>, chrono::DateTime<Utc>)>,
}

/// Streams of `total` records `{"n": i}`; checkpoint `{"next": i}`.
pub struct ScriptedSource {
    pub streams: Vec<(String, u64)>,
    pub batch: u64,
    /// After End, the next run starts over at the checkpoint (new data may have arrived).
    pub script: Arc<Mutex<ScriptState>>,
    /// Where `open` reads the time it records; the wall clock when `None`.
    pub clock: Option<Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>>,
    /// Return Idle instead of End when caught up (a tailed source).
    pub follow: bool,
}

#[async_trait]
impl Source for ScriptedSource {
    async fn check(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(self
            .streams
            .iter()
            .map(|(n, _)| StreamSpec {
                primary_key: vec!["n".into()],
                ..StreamSpec::new(n)
            })
            .collect())
    }
    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let now = self
            .clock
            .as_ref()
            .map(|now| now())
            .unwrap_or_else(Utc::now);
        self.script
            .lock()
            .unwrap()
            .opens
            .push((stream.name.clone(), checkpoint.clone(), now));
        let next = checkpoint
            .map(|c| c.0["next"].as_u64().unwrap())
            .unwrap_or(0);
        let total = self
            .streams
            .iter()
            .find(|(n, _)| n == &stream.name)
            .unwrap()
            .1;
        Ok(Box::new(ScriptedReader {
            stream: stream.name.clone(),
            next,
            total,
            batch: self.batch,
            script: self.script.clone(),
            follow: self.follow,
        }))
    }
}

struct ScriptedReader {
    stream: String,
    next: u64,
    total: u64,
    batch: u64,
    script: Arc<Mutex<ScriptState>>,
    follow: bool,
}

#[async_trait]
impl StreamReader for ScriptedReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let fault = self.script.lock().unwrap().faults.pop_front();
        let mut bad = Vec::new();
        match fault {
            Some(Fault::Retryable) => {
                return Err(ConnectorError::retryable("connection reset by peer"))
            }
            Some(Fault::Fatal) => return Err(ConnectorError::fatal("401 Unauthorized")),
            Some(Fault::BadRecord) => bad.push(BadRecord {
                location: format!("{}:{}", self.stream, self.next),
                error: "expected value at line 1 column 1".into(),
                raw: "{oops".into(),
            }),
            Some(Fault::Pass) | None => {}
        }
        if self.next >= self.total {
            return Ok(if self.follow { Poll::Idle } else { Poll::End });
        }
        let end = (self.next + self.batch).min(self.total);
        let records = (self.next..end)
            .map(|i| Record::new(json!({"n": i})))
            .collect();
        self.next = end;
        let mut b = Batch::new(records, Checkpoint(json!({"next": end})), LoadMode::Initial);
        b.bad_records = bad;
        Ok(Poll::Batch(b))
    }
}

#[derive(Default, Debug)]
pub struct SinkLog {
    pub written: Vec<Record>,
    /// How many of `written` were durable at the last successful flush.
    pub durable: usize,
    pub flushes: usize,
    /// Fail (fatally) the flush with this 1-based number.
    pub fail_flush: Option<usize>,
    /// Fail this many flushes retryably before succeeding.
    pub retryable_flush_failures: usize,
}

pub struct MemorySink(pub Arc<Mutex<SinkLog>>);

#[async_trait]
impl Sink for MemorySink {
    /// Keeps each record with the target it was delivered to, so tests see
    /// the routing.
    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        let default_target = batch.map(|b| b.target.to_string());
        let routed = records.iter().map(|r| Record {
            target: r.target.clone().or_else(|| default_target.clone()),
            ..r.clone()
        });
        self.0.lock().unwrap().written.extend(routed);
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let mut log = self.0.lock().unwrap();
        if log.retryable_flush_failures > 0 {
            log.retryable_flush_failures -= 1;
            return Err(ConnectorError::retryable("broker not available"));
        }
        log.flushes += 1;
        if log.fail_flush == Some(log.flushes) {
            return Err(ConnectorError::fatal("disk full"));
        }
        log.durable = log.written.len();
        Ok(())
    }
}

/// A state store that, at every commit, asserts every record before each
/// committed checkpoint is durable in the sink (invariant 1).
pub struct CheckingState {
    pub map: Mutex<BTreeMap<String, StoredCheckpoint>>,
    pub sink: Arc<Mutex<SinkLog>>,
    pub commits: Mutex<Vec<Vec<(String, Checkpoint)>>>,
}

impl CheckingState {
    pub fn new(sink: Arc<Mutex<SinkLog>>) -> Self {
        CheckingState {
            map: Mutex::new(BTreeMap::new()),
            sink,
            commits: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl StateStore for CheckingState {
    async fn load(&self, stream: &str) -> Result<Option<StoredCheckpoint>, StateError> {
        Ok(self.map.lock().unwrap().get(stream).cloned())
    }
    async fn load_all(&self) -> Result<Vec<StoredCheckpoint>, StateError> {
        Ok(self.map.lock().unwrap().values().cloned().collect())
    }
    async fn commit(&self, checkpoints: &[(String, Checkpoint)]) -> Result<(), StateError> {
        let log = self.sink.lock().unwrap();
        for (stream, cp) in checkpoints {
            let next = cp.0["next"].as_u64().unwrap();
            // Records before the previous commit were delivered by an earlier run.
            let previous = self
                .map
                .lock()
                .unwrap()
                .get(stream)
                .map(|c| c.checkpoint.0["next"].as_u64().unwrap())
                .unwrap_or(0);
            let durable: Vec<u64> = log.written[..log.durable]
                .iter()
                .filter(|r| r.value.to_value()["_stream"] == json!(stream))
                .map(|r| r.value.to_value()["n"].as_u64().unwrap())
                .collect();
            for i in previous..next {
                assert!(
                    durable.contains(&i),
                    "invariant 1 broken: committing {stream} next={next} but record {i} is not durable"
                );
            }
        }
        let now = Utc::now();
        let mut map = self.map.lock().unwrap();
        for (stream, cp) in checkpoints {
            map.insert(
                stream.clone(),
                StoredCheckpoint {
                    stream: stream.clone(),
                    checkpoint: cp.clone(),
                    committed_at: now,
                    advanced_at: now,
                },
            );
        }
        self.commits.lock().unwrap().push(checkpoints.to_vec());
        Ok(())
    }
    async fn reset(&self, _stream: Option<&str>) -> Result<usize, StateError> {
        Ok(0)
    }
    async fn put(&self, entries: &[StoredCheckpoint]) -> Result<(), StateError> {
        let mut map = self.map.lock().unwrap();
        for e in entries {
            map.insert(e.stream.clone(), e.clone());
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tributary-rt-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
