//! Reading one stream: keyset pages of `fetch_size` rows, streamed from the
//! database and cut into batches of `batch_size` records, each carrying the
//! checkpoint just after its last row.
//!
//! A task per reader runs the queries and hands batches over a channel of
//! two, so the next rows are fetched while the sink writes the previous
//! batch, and memory is bounded by a few batches whatever the table's size.

use super::db::{Db, ReadConn};
use super::plan::Plan;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tributary_core::{
    async_trait, BadRecord, Batch, Checkpoint, ConnectorError, LoadMode, Op, Poll, RawJson, Record,
    RunProgress, StreamReader, DELETED_AT_HEADER,
};

/// The checkpoint of a `sql` stream.
///
/// ```json
/// {"mode": "incremental", "after": {"updated_at": "2024-05-01T10:00:00.123456Z", "id": 42}, "initial_done": true}
/// ```
///
/// `after` is the keyset position of the last row delivered (cursor, then
/// primary key), each value exactly as it binds back: timestamps with full
/// precision, naive timestamps as wall-clock times, integers as numbers,
/// decimals as strings. The next read starts strictly after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqlCheckpoint {
    /// `incremental` or `full_refresh`.
    #[serde(default)]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Map<String, Value>>,
    /// The first run finished: later records are `INCREMENTAL_LOAD`.
    #[serde(default)]
    pub initial_done: bool,
    /// Full refresh: a pass was cut short and resumes after `after`; when
    /// false the next run reads the whole table again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_progress: bool,
    /// A naive timestamp cursor whose last bound fell in a fall-back hour:
    /// that hour's start (a wall-clock time). The next run first reads the
    /// rows from there up to `after` again, since rows written in the
    /// hour's second pass sort before those of its first; `after` itself
    /// never moves back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread_from: Option<Value>,
}

pub const INCREMENTAL: &str = "incremental";
pub const FULL_REFRESH: &str = "full_refresh";

impl SqlCheckpoint {
    pub fn parse(stream: &str, c: &Checkpoint) -> Result<SqlCheckpoint, ConnectorError> {
        c.to_state().map_err(|e| {
            ConnectorError::fatal(format!(
                "stream `{stream}`: the stored checkpoint is not a sql-source checkpoint ({e}): {}",
                c.as_json()
            ))
        })
    }

    pub fn run_progress(&self) -> RunProgress {
        if self.in_progress
            || (self.mode == INCREMENTAL && !self.initial_done && self.after.is_some())
        {
            RunProgress::InProgress
        } else {
            RunProgress::Unknown
        }
    }

    /// The position as values in keyset order, checked against the plan's keyset.
    pub fn position(
        &self,
        stream: &str,
        keyset: &[String],
    ) -> Result<Option<Vec<Value>>, ConnectorError> {
        let Some(after) = &self.after else {
            return Ok(None);
        };
        let same = after.len() == keyset.len() && keyset.iter().all(|k| after.contains_key(k));
        if !same {
            return Err(ConnectorError::fatal(format!(
                "stream `{stream}`: the checkpoint's keyset ({}) is not the stream's ({}): the cursor or primary key changed. Reset the stream (`tributary state reset CONFIG --stream {stream}`) to read it again from the start",
                after.keys().cloned().collect::<Vec<_>>().join(", "),
                keyset.join(", ")
            )));
        }
        Ok(Some(keyset.iter().map(|k| after[k].clone()).collect()))
    }
}

/// Everything one run of a stream needs.
pub struct Run {
    pub db: Arc<Db>,
    pub plan: Arc<Plan>,
    pub start: SqlCheckpoint,
    pub after: Option<Vec<Value>>,
    /// PostgreSQL/MySQL: the lag bound in checkpoint form, compared in SQL.
    pub sql_bound: Option<Value>,
    /// SQLite: the lag bound, compared in Rust with each row's cursor.
    pub cutoff: Option<DateTime<Utc>>,
    /// This run's bound lies in a fall-back hour starting there (see
    /// [`SqlCheckpoint::reread_from`]): kept in each of its checkpoints.
    pub repeated_from: Option<Value>,
    pub query_timeout: Duration,
}

type Item = Result<Poll, ConnectorError>;

impl Run {
    /// Starts the run's task; the reader receives its batches.
    pub fn spawn(self) -> SqlReader {
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            let end = match self.read(&tx).await {
                Ok(()) => Ok(Poll::End),
                Err(e) => Err(e),
            };
            let _ = tx.send(end).await;
        });
        SqlReader {
            rx,
            _task: AbortOnDropHandle::new(task),
            finished: false,
        }
    }

    fn checkpoint(&self, after: &Option<Vec<Value>>, finished: bool) -> SqlCheckpoint {
        let full = self.plan.cursor.is_none();
        let after = if full && finished {
            None
        } else {
            after.as_ref().map(|v| {
                self.plan
                    .keyset
                    .iter()
                    .cloned()
                    .zip(v.iter().cloned())
                    .collect::<Map<String, Value>>()
            })
        };
        SqlCheckpoint {
            mode: if full { FULL_REFRESH } else { INCREMENTAL }.into(),
            after,
            initial_done: self.start.initial_done || finished,
            in_progress: full && !finished,
            reread_from: self.repeated_from.clone(),
        }
    }

    /// The pass that reads a repeated hour again before the run goes on
    /// from its position: from the hour's start (the previous run's bound
    /// was in it) up to the position's cursor value, if the position is
    /// past that start. Duplicates, never loss.
    fn reread(&self) -> Option<(Value, Value)> {
        let from = self.start.reread_from.clone()?;
        let at = self.after.as_ref()?.first()?.clone();
        let wall = |v: &Value| {
            v.as_str()
                .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok())
        };
        (wall(&at)? >= wall(&from)?).then_some((from, at))
    }

    async fn read(&self, tx: &mpsc::Sender<Item>) -> Result<(), ConnectorError> {
        let plan = &self.plan;
        let full = plan.cursor.is_none();
        let load_mode = if full || !self.start.initial_done {
            LoadMode::Initial
        } else {
            LoadMode::Incremental
        };
        let batch_size = plan.batch_size.max(1);
        let mut after = self.after.clone();
        let mut records: Vec<Record> = Vec::with_capacity(batch_size);
        let mut bad: Vec<BadRecord> = Vec::new();
        let mut handed_over = self.start.clone();
        // First the repeated hour again (paged on its own position, the
        // checkpoints keeping the run's start), then on from the start.
        // One connection for every page (see `Conn`).
        let mut conn = ReadConn::new(
            self.db
                .acquire(&format!("reading stream `{}`", plan.spec.name))
                .await?,
        );
        let mut reread = self.reread();
        let mut page_after: Option<Vec<Value>> = match reread {
            Some(_) => None,
            None => after.clone(),
        };
        loop {
            let (from, bound) = match &reread {
                Some((from, upto)) => (Some(from), Some(upto)),
                None => (None, self.sql_bound.as_ref()),
            };
            let st = plan.page(
                page_after.as_deref(),
                from,
                bound,
                plan.paged().then_some(plan.fetch_size),
            )?;
            let mut rows = self.db.rows(&mut conn, &st, &plan.columns, &plan.shape);
            let mut n = 0usize;
            let mut cut = false;
            // A watchdog instead of a timeout per row (a timer per row costs
            // more than decoding it): re-armed when a page starts, after
            // every batch handed over, and every few hundred rows.
            let watchdog = tokio::time::sleep(self.query_timeout);
            tokio::pin!(watchdog);
            loop {
                if n & 255 == 0 {
                    watchdog
                        .as_mut()
                        .reset(tokio::time::Instant::now() + self.query_timeout);
                }
                let next = tokio::select! {
                    biased;
                    next = rows.next() => next,
                    _ = &mut watchdog => {
                        return Err(ConnectorError::retryable(format!(
                            "stream `{}`: no row from the database for {} (query_timeout)",
                            plan.spec.name,
                            humantime::format_duration(self.query_timeout)
                        )));
                    }
                };
                let Some(row) = next else { break };
                let row = row?;
                if let (Some(cutoff), Some(t)) = (self.cutoff, row.instant) {
                    if t > cutoff {
                        cut = true;
                        break;
                    }
                }
                n += 1;
                match row.bad {
                    Some(error) => bad.push(BadRecord {
                        location: format!(
                            "stream `{}`, {} {}",
                            plan.spec.name,
                            plan.keyset.join(", "),
                            Value::Array(row.keyset.clone())
                        ),
                        error,
                        raw: String::from_utf8_lossy(&row.text).into_owned().into(),
                    }),
                    None => records.push(Record {
                        key: row.key,
                        value: RawJson::from_checked(row.text).into(),
                        op: if row.deleted { Op::Delete } else { Op::Upsert },
                        headers: row
                            .deleted_at
                            .map(|at| vec![(DELETED_AT_HEADER.to_string(), at)])
                            .unwrap_or_default(),
                        ..Record::default()
                    }),
                }
                if plan.paged() {
                    page_after = Some(row.keyset);
                }
                if records.len() + bad.len() >= batch_size {
                    // Outside a repeated hour the run's position is the
                    // page's, taken when a checkpoint needs it (a copy per
                    // row was a tenth of the reader's own time).
                    if reread.is_none() && plan.paged() {
                        after.clone_from(&page_after);
                    }
                    let cp = self.checkpoint(&after, false);
                    let batch = Batch {
                        records: std::mem::replace(&mut records, Vec::with_capacity(batch_size)),
                        bad_records: std::mem::take(&mut bad),
                        checkpoint: Checkpoint::from_state(&cp),
                        load_mode,
                    };
                    handed_over = cp;
                    if tx.send(Ok(Poll::Batch(batch))).await.is_err() {
                        return Ok(()); // the reader is gone
                    }
                    watchdog
                        .as_mut()
                        .reset(tokio::time::Instant::now() + self.query_timeout);
                }
            }
            drop(rows);
            if reread.is_some() && n < plan.fetch_size {
                // The hour is read again: on from the run's start.
                reread = None;
                page_after = after.clone();
                continue;
            }
            if cut || !plan.paged() || n < plan.fetch_size {
                break;
            }
        }
        conn.release().await;
        if reread.is_none() && plan.paged() {
            after.clone_from(&page_after);
        }
        // Compared with the last checkpoint handed over, not the run's
        // start: a pass whose rows filled its last batch exactly would
        // otherwise end on that batch's "in progress" checkpoint, and the
        // next run would only finish it instead of reading the table again.
        let last = self.checkpoint(&after, true);
        if !records.is_empty() || !bad.is_empty() || last != handed_over {
            let batch = Batch {
                records,
                bad_records: bad,
                checkpoint: Checkpoint::from_state(&last),
                load_mode,
            };
            let _ = tx.send(Ok(Poll::Batch(batch))).await;
        }
        Ok(())
    }
}

/// Reads one `sql` stream; each poll returns the next batch from the run's task.
pub struct SqlReader {
    rx: mpsc::Receiver<Item>,
    _task: AbortOnDropHandle<()>,
    finished: bool,
}

#[async_trait]
impl StreamReader for SqlReader {
    /// Cancel-safe: receiving from the channel loses nothing when dropped.
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        if self.finished {
            return Ok(Poll::End);
        }
        match self.rx.recv().await {
            Some(Ok(Poll::End)) => {
                self.finished = true;
                Ok(Poll::End)
            }
            Some(item) => item,
            None => Err(ConnectorError::fatal(
                "the sql reader task stopped without finishing the run",
            )),
        }
    }
}
