//! The `generator` [`Source`]: records as pure functions of (seed, stream, i).

use super::config::{self, GenStream, RecordType};
use crate::SourceContext;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, Batch, Checkpoint, CheckpointSummary, ConnectorError, LoadMode, Poll, Progress,
    Record, Source, StreamReader, StreamSpec,
};

/// The checkpoint of a generator stream: `{"next": i}`, the index of the
/// next record to produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorCheckpoint {
    pub next: u64,
}

/// Deterministic sample data; see the [module docs](super).
#[derive(Debug)]
pub struct GeneratorSource {
    streams: BTreeMap<String, GenStream>,
}

impl GeneratorSource {
    /// Types and validates a `[source]` section with `type = "generator"`.
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(GeneratorSource {
            streams: config::resolve(section, ctx.batch_size)?,
        })
    }
}

fn primary_key(t: RecordType) -> &'static str {
    match t {
        RecordType::User => "id",
        RecordType::Event => "event_id",
        RecordType::Order => "order_id",
        RecordType::Sensor => "reading_id",
    }
}

fn schema(t: RecordType) -> Value {
    let int = json!({"type": "integer"});
    let num = json!({"type": "number"});
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    let fields: Vec<(&str, &Value)> = match t {
        RecordType::User => vec![
            ("id", &int),
            ("name", &string),
            ("age", &int),
            ("email", &string),
        ],
        RecordType::Event => vec![
            ("event_id", &int),
            ("event_type", &string),
            ("user_id", &int),
            ("timestamp", &time),
        ],
        RecordType::Order => vec![
            ("order_id", &int),
            ("product", &string),
            ("quantity", &int),
            ("amount", &num),
        ],
        RecordType::Sensor => vec![
            ("reading_id", &int),
            ("sensor_id", &string),
            ("temperature", &num),
            ("humidity", &num),
            ("timestamp", &time),
        ],
    };
    let required: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let properties: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

#[async_trait]
impl Source for GeneratorSource {
    async fn check(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(self
            .streams
            .values()
            .map(|s| {
                let mut spec = StreamSpec::new(s.name.clone());
                spec.primary_key = vec![primary_key(s.record_type).to_string()];
                spec.json_schema = Some(schema(s.record_type));
                spec
            })
            .collect())
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let s = self.streams.get(&stream.name).ok_or_else(|| {
            ConnectorError::config(format!(
                "the generator source has no stream `{}`; configured: {}",
                stream.name,
                self.streams.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let next = match checkpoint {
            Some(c) => {
                c.to_state::<GeneratorCheckpoint>()
                    .map_err(|e| {
                        ConnectorError::fatal(format!(
                            "stream `{}`: the stored checkpoint is not a generator checkpoint ({e}): {}",
                            stream.name,
                            c.as_json()
                        ))
                    })?
                    .next
            }
            None => 0,
        };
        Ok(Box::new(GeneratorReader {
            stream: s.clone(),
            next,
            opened: Instant::now(),
            emitted: 0,
        }))
    }

    /// `record N of TOTAL`, and the progress when the stream has a total.
    fn summarize(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        let Ok(c) = checkpoint.to_state::<GeneratorCheckpoint>() else {
            return CheckpointSummary::default();
        };
        let total = self.streams.get(&stream.name).and_then(|s| s.total);
        CheckpointSummary {
            position: Some(match total {
                Some(t) => format!("{} of {t} records", c.next.min(t)),
                None => format!("{} records", c.next),
            }),
            progress: total.map(|total| Progress {
                done: c.next.min(total),
                total,
            }),
            ..CheckpointSummary::default()
        }
    }
}

/// Produces one generator stream from a position.
pub struct GeneratorReader {
    stream: GenStream,
    next: u64,
    /// Rate limiting counts from here: `rate` records per second since open.
    opened: Instant,
    emitted: u64,
}

impl GeneratorReader {
    /// When the `k`-th record since open may be emitted.
    fn due(&self, k: u64, rate: f64) -> Instant {
        Duration::try_from_secs_f64(k as f64 / rate)
            .ok()
            .and_then(|d| self.opened.checked_add(d))
            // Beyond what an Instant holds: effectively never; wake daily to re-check.
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

/// How long a rate-limited poll waits for a full batch before returning
/// the records due so far: keeps latency low at low rates.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(200);

#[async_trait]
impl StreamReader for GeneratorReader {
    /// Cancel-safe: the only await is a sleep, before any state changes.
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let remaining = match self.stream.total {
            Some(total) => total.saturating_sub(self.next),
            None => u64::MAX,
        };
        if remaining == 0 {
            return Ok(Poll::End);
        }
        let mut n = (self.stream.batch_size as u64).min(remaining);
        if let Some(rate) = self.stream.rate {
            let first = self.due(self.emitted.saturating_add(1), rate);
            let full = self.due(self.emitted.saturating_add(n), rate);
            let wake = first.max(full.min(Instant::now() + MAX_BATCH_WAIT));
            tokio::time::sleep_until(wake).await;
            let elapsed = self.opened.elapsed().as_secs_f64();
            let allowed = ((elapsed * rate).floor() as u64).saturating_sub(self.emitted);
            n = n.min(allowed.max(1));
        }
        let records = (self.next..self.next.saturating_add(n))
            .map(|i| {
                let value = generate(
                    self.stream.seed,
                    &self.stream.name,
                    self.stream.record_type,
                    i,
                );
                let key = value.get(primary_key(self.stream.record_type)).cloned();
                Record {
                    key,
                    value: value.into(),
                    ..Record::default()
                }
            })
            .collect::<Vec<_>>();
        self.next = self.next.saturating_add(n);
        self.emitted = self.emitted.saturating_add(n);
        Ok(Poll::Batch(Batch::new(
            records,
            Checkpoint::from_state(&GeneratorCheckpoint { next: self.next }),
            LoadMode::Initial,
        )))
    }
}

/// FNV-1a: a fixed, dependency-free string hash (std's `DefaultHasher` may
/// change between Rust versions, which would change the data).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, well mixed.
struct Rng(u64);

impl Rng {
    fn for_record(seed: u64, name_hash: u64, i: u64) -> Rng {
        let mut r = Rng(seed ^ name_hash.rotate_left(32));
        let base = r.next_u64();
        Rng(base ^ i.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (Lemire's multiply-shift; the bias is < 2^-32).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64 + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.range(0, items.len() as i64 - 1) as usize;
        &items[i]
    }
}

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yuki",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson", "Anderson",
    "Thomas", "Moore", "Jackson", "Martin", "Lee", "Nguyen", "Walker",
];
const EVENT_TYPES: &[&str] = &[
    "login",
    "logout",
    "page_view",
    "click",
    "search",
    "purchase",
    "signup",
];
/// Product and unit price in cents (integer cents keep amounts exact).
const PRODUCTS: &[(&str, i64)] = &[
    ("keyboard", 4999),
    ("mouse", 1999),
    ("monitor", 18999),
    ("laptop", 129_900),
    ("headphones", 8950),
    ("webcam", 5900),
    ("usb-cable", 899),
    ("desk-lamp", 3450),
];
/// 2024-01-01T00:00:00Z.
const BASE_TIMESTAMP: i64 = 1_704_067_200;

fn timestamp(i: u64) -> String {
    i64::try_from(i)
        .ok()
        .and_then(|i| BASE_TIMESTAMP.checked_add(i))
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        // Past year 262143: no real stream gets there; keep it total anyway.
        .unwrap_or_else(|| "+262143-12-31T23:59:59Z".to_string())
}

/// Record `i` (0-based) of stream `stream` under `seed`: the same inputs
/// give the same value on every run, machine and version.
pub fn generate(seed: u64, stream: &str, record_type: RecordType, i: u64) -> Value {
    let mut rng = Rng::for_record(seed, fnv1a(stream), i);
    let seq = i.saturating_add(1);
    match record_type {
        RecordType::User => {
            let first = *rng.pick(FIRST_NAMES);
            let last = *rng.pick(LAST_NAMES);
            let age = rng.range(18, 80);
            json!({
                "id": seq,
                "name": format!("{first} {last}"),
                "age": age,
                "email": format!("{}.{}{seq}@example.com", first.to_lowercase(), last.to_lowercase()),
            })
        }
        RecordType::Event => {
            let event_type = *rng.pick(EVENT_TYPES);
            let user_id = rng.range(1, 1000);
            json!({
                "event_id": seq,
                "event_type": event_type,
                "user_id": user_id,
                "timestamp": timestamp(i),
            })
        }
        RecordType::Order => {
            let (product, price) = *rng.pick(PRODUCTS);
            let quantity = rng.range(1, 10);
            json!({
                "order_id": seq,
                "product": product,
                "quantity": quantity,
                "amount": (price * quantity) as f64 / 100.0,
            })
        }
        RecordType::Sensor => {
            let sensor = rng.range(1, 50);
            let tenths_c = rng.range(-100, 400);
            let tenths_pct = rng.range(0, 1000);
            json!({
                "reading_id": seq,
                "sensor_id": format!("sensor-{sensor:03}"),
                "temperature": tenths_c as f64 / 10.0,
                "humidity": tenths_pct as f64 / 10.0,
                "timestamp": timestamp(i),
            })
        }
    }
}
