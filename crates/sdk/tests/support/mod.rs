//! Sources over an in-memory upstream, each with one configurable flaw, so
//! that every conformance check is shown to fail on a source that breaks
//! its promise (and to pass on the same source without the flaw).

#![allow(dead_code)]

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary_sdk::conformance::Kit;
use tributary_sdk::{
    async_trait, BadRecord, Batch, Checkpoint, ConfigError, Error, LoadMode, Poll, PullSource,
    Pulled, PushSource, Pusher, Record, SectionConfig, Source, SourceContext, SourceType,
    StreamReader, StreamSpec,
};

/// The outside system: numbered items, some read away (a queue that
/// deletes on read), some acknowledged (a push feed), and a count of
/// writes (what `check` must not do).
#[derive(Debug, Default)]
pub struct Upstream {
    pub count: u64,
    pub removed: BTreeSet<u64>,
    pub acked: BTreeSet<u64>,
    pub writes: u64,
    /// Every fifth item is not JSON.
    pub garbage: bool,
}

pub type Shared = Arc<Mutex<Upstream>>;

pub fn upstream(count: u64) -> Shared {
    Arc::new(Mutex::new(Upstream {
        count,
        ..Upstream::default()
    }))
}

fn reset(up: &Shared) {
    let mut u = up.lock().unwrap_or_else(|e| e.into_inner());
    u.removed.clear();
    u.acked.clear();
    u.garbage = false;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flaw {
    #[default]
    None,
    /// Writes `{"offset": n}`, reads `{"position": n}`.
    CheckpointUnreadable,
    /// Resumes at the last record read, not after it.
    InclusiveCursor,
    /// Resumes one record past the checkpoint.
    SkipsOnRestart,
    /// Removes what it reads from the upstream before the commit.
    DeletesOnRead,
    /// Moves its position, then awaits.
    AdvanceBeforeAwait,
    /// Keeps every record it returned.
    KeepsEverything,
    /// `unwrap()`s a config key.
    Panics,
    /// `unwrap()`s a checkpoint field.
    PanicsOnCheckpoint,
    /// `unwrap()`s the upstream's data.
    PanicsOnData,
    /// Reads (and so removes) the first item in `check`.
    CheckConsumes,
    /// Writes to the upstream in `check`.
    CheckWrites,
    /// Acknowledges upstream on receipt, before the commit (push).
    AcksOnReceipt,
    /// Drops malformed items without a word.
    Silent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    batch: usize,
    #[serde(default)]
    flaw: Flaw,
    /// Bytes of padding per record (the memory check).
    #[serde(default)]
    pad: usize,
}

fn record(id: u64, pad: usize) -> Record {
    Record::new(json!({ "id": id, "pad": "x".repeat(pad) })).with_key(json!(id))
}

/// Up to `batch` items from `from` that are still upstream, as records or
/// bad records.
fn fetch(
    up: &Shared,
    from: u64,
    batch: usize,
    flaw: Flaw,
    pad: usize,
) -> (Vec<u64>, Vec<Record>, Vec<BadRecord>) {
    let u = up.lock().unwrap_or_else(|e| e.into_inner());
    let ids: Vec<u64> = (from..u.count)
        .filter(|i| !u.removed.contains(i))
        .take(batch)
        .collect();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for &i in &ids {
        if u.garbage && i % 5 == 3 {
            match flaw {
                Flaw::PanicsOnData => {
                    let v: serde_json::Value = serde_json::from_str("{not json").unwrap();
                    records.push(Record::new(v));
                }
                Flaw::Silent => {}
                _ => bad.push(BadRecord {
                    location: format!("item {i}"),
                    error: "not JSON".into(),
                    raw: "{not json".into(),
                }),
            }
        } else {
            records.push(record(i, pad));
        }
    }
    (ids, records, bad)
}

fn numbers() -> Vec<StreamSpec> {
    vec![StreamSpec {
        primary_key: vec!["id".into()],
        ..StreamSpec::new("numbers")
    }]
}

/// The full `Source`/`StreamReader` level.
pub struct Flawed {
    up: Shared,
    config: Config,
}

impl Flawed {
    /// Over an upstream of its own (30 items).
    pub fn new(section: &SectionConfig) -> Result<Self, ConfigError> {
        Flawed::from_section(section, upstream(30))
    }

    fn from_section(section: &SectionConfig, up: Shared) -> Result<Self, ConfigError> {
        if section.table.get("flaw").and_then(|f| f.as_str()) == Some("panics") {
            // The flaw: a key read without the config's own types.
            let _batch = section.table["batch"].as_integer().unwrap();
        }
        Ok(Flawed {
            up,
            config: section.parse()?,
        })
    }
}

#[async_trait]
impl Source for Flawed {
    async fn check(&self) -> Result<(), Error> {
        let mut u = self.up.lock().unwrap_or_else(|e| e.into_inner());
        match self.config.flaw {
            Flaw::CheckConsumes => {
                let first = (0..u.count).find(|i| !u.removed.contains(i));
                if let Some(first) = first {
                    u.removed.insert(first);
                }
            }
            Flaw::CheckWrites => u.writes += 1,
            _ => {}
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
        Ok(numbers())
    }

    async fn open(
        &self,
        _: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, Error> {
        let flaw = self.config.flaw;
        let mut offset = match checkpoint {
            None => 0,
            Some(c) => {
                let key = if flaw == Flaw::CheckpointUnreadable {
                    "position"
                } else {
                    "offset"
                };
                if flaw == Flaw::PanicsOnCheckpoint {
                    c.0[key].as_u64().unwrap()
                } else {
                    c.0.get(key).and_then(|v| v.as_u64()).ok_or_else(|| {
                        Error::fatal(format!("checkpoint {} has no `{key}`", c.as_json()))
                    })?
                }
            }
        };
        match flaw {
            Flaw::InclusiveCursor => offset = offset.saturating_sub(1),
            Flaw::SkipsOnRestart if offset > 0 => offset += 1,
            _ => {}
        }
        Ok(Box::new(FlawedReader {
            up: Arc::clone(&self.up),
            batch: self.config.batch,
            pad: self.config.pad,
            flaw,
            offset,
            kept: Vec::new(),
        }))
    }
}

struct FlawedReader {
    up: Shared,
    batch: usize,
    pad: usize,
    flaw: Flaw,
    offset: u64,
    kept: Vec<Record>,
}

#[async_trait]
impl StreamReader for FlawedReader {
    async fn poll(&mut self) -> Result<Poll, Error> {
        let (ids, records, bad) = if self.flaw == Flaw::AdvanceBeforeAwait {
            let got = fetch(&self.up, self.offset, self.batch, self.flaw, self.pad);
            if let Some(last) = got.0.last() {
                self.offset = last + 1;
            }
            // The "request": the position already moved.
            tokio::time::sleep(Duration::from_millis(2)).await;
            got
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let got = fetch(&self.up, self.offset, self.batch, self.flaw, self.pad);
            if let Some(last) = got.0.last() {
                self.offset = last + 1;
            }
            got
        };
        if ids.is_empty() {
            return Ok(Poll::End);
        }
        if self.flaw == Flaw::DeletesOnRead {
            self.up
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .removed
                .extend(&ids);
        }
        if self.flaw == Flaw::KeepsEverything {
            self.kept.extend(records.iter().cloned());
        }
        let mut batch = Batch::new(
            records,
            Checkpoint(json!({ "offset": self.offset })),
            LoadMode::Initial,
        );
        batch.bad_records = bad;
        Ok(Poll::Batch(batch))
    }

    fn commits_interrupt_poll(&self) -> bool {
        // Claims what only a cancel-safe reader may.
        self.flaw == Flaw::AdvanceBeforeAwait
    }
}

/// The same upstream through the small pull trait.
pub struct Numbers {
    up: Shared,
    config: Config,
}

#[async_trait]
impl PullSource for Numbers {
    type Checkpoint = u64;

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
        Ok(numbers())
    }

    async fn poll(&self, _: &StreamSpec, checkpoint: Option<&u64>) -> Result<Pulled<u64>, Error> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let from = checkpoint.copied().unwrap_or(0);
        let (ids, records, bad) = fetch(
            &self.up,
            from,
            self.config.batch,
            self.config.flaw,
            self.config.pad,
        );
        match ids.last() {
            None => Ok(Pulled::caught_up(Vec::new(), from)),
            Some(last) => Ok(Pulled::more(records, last + 1).with_bad_records(bad)),
        }
    }
}

/// The same upstream as a push feed: every unacknowledged item is sent
/// on each connection; acknowledged ones never again.
pub struct Feed {
    up: Shared,
    config: Config,
}

#[async_trait]
impl PushSource for Feed {
    type Ack = u64;

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
        Ok(numbers())
    }

    async fn run(&self, _: &StreamSpec, tx: Pusher<u64>) -> Result<(), Error> {
        let pending: Vec<u64> = {
            let u = self.up.lock().unwrap_or_else(|e| e.into_inner());
            (0..u.count).filter(|i| !u.acked.contains(i)).collect()
        };
        for i in pending {
            let garbage = {
                let mut u = self.up.lock().unwrap_or_else(|e| e.into_inner());
                if self.config.flaw == Flaw::AcksOnReceipt {
                    u.acked.insert(i);
                }
                u.garbage && i % 5 == 3
            };
            tokio::task::yield_now().await;
            let sent = if garbage {
                let bad = BadRecord {
                    location: format!("item {i}"),
                    error: "not JSON".into(),
                    raw: "{not json".into(),
                };
                tx.send_bad(bad, i).await
            } else {
                tx.send(record(i, self.config.pad), i).await
            };
            if sent.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn ack(&self, _: &StreamSpec, acks: Vec<u64>) -> Result<(), Error> {
        self.up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .extend(acks);
        Ok(())
    }
}

pub fn config(kind: &str, batch: usize, flaw: &str, pad: usize) -> String {
    format!(
        "name = \"conformance\"\n\n[source]\ntype = \"{kind}\"\nbatch = {batch}\nflaw = \"{flaw}\"\npad = {pad}\n\n[sink]\ntype = \"stdout\"\n"
    )
}

/// A kit over the full-trait source with `flaw`, 30 items, batches of 4.
pub fn flawed(flaw: &str) -> (Kit, Shared) {
    flawed_with(flaw, 30, 4, 0)
}

pub fn flawed_with(flaw: &str, count: u64, batch: usize, pad: usize) -> (Kit, Shared) {
    let up = upstream(count);
    let u = Arc::clone(&up);
    let kind = SourceType::new("flawed", move |s: &SectionConfig, _: &SourceContext| {
        Flawed::from_section(s, Arc::clone(&u))
    });
    (
        with_reset(Kit::new(kind, config("flawed", batch, flaw, pad)), &up),
        up,
    )
}

pub fn pull(flaw: &str) -> (Kit, Shared) {
    let up = upstream(30);
    let u = Arc::clone(&up);
    let kind = tributary_sdk::pull_type("numbers", move |s: &SectionConfig, _: &SourceContext| {
        Ok(Numbers {
            up: Arc::clone(&u),
            config: s.parse()?,
        })
    });
    (
        with_reset(Kit::new(kind, config("numbers", 4, flaw, 0)), &up),
        up,
    )
}

pub fn push(flaw: &str) -> (Kit, Shared) {
    let up = upstream(30);
    let u = Arc::clone(&up);
    let kind = tributary_sdk::push_type("feed", move |s: &SectionConfig, _: &SourceContext| {
        Ok(Feed {
            up: Arc::clone(&u),
            config: s.parse()?,
        })
    });
    // Batches of at most 4 messages: the connector's runtime.batch_size.
    let text = config("feed", 4, flaw, 0).replace("[sink]", "[runtime]\nbatch_size = 4\n\n[sink]");
    (with_reset(Kit::new(kind, text), &up), up)
}

/// [`flawed`] without an observer of the upstream: only what a read
/// after `check` sees shows a side effect.
pub fn unobserved(flaw: &str) -> Kit {
    let up = upstream(30);
    let u = Arc::clone(&up);
    let kind = SourceType::new("flawed", move |s: &SectionConfig, _: &SourceContext| {
        Flawed::from_section(s, Arc::clone(&u))
    });
    let r = Arc::clone(&up);
    Kit::new(kind, config("flawed", 4, flaw, 0))
        .stream("numbers")
        .reset(move || {
            reset(&r);
            async {}
        })
}

fn with_reset(kit: Kit, up: &Shared) -> Kit {
    let r = Arc::clone(up);
    let o = Arc::clone(up);
    let g = Arc::clone(up);
    kit.stream("numbers")
        .reset(move || {
            reset(&r);
            async {}
        })
        .observe(move || {
            let u = o.lock().unwrap_or_else(|e| e.into_inner());
            let snapshot = format!("writes={} removed={:?}", u.writes, u.removed);
            async move { snapshot }
        })
        .malformed("every fifth item is not JSON", move || {
            g.lock().unwrap_or_else(|e| e.into_inner()).garbage = true;
            async {}
        })
}
