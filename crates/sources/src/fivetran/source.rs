//! [`FivetranSource`]: a Fivetran Connector SDK connector as one stream
//! whose checkpoint is the connector's state, its records routed to a
//! table each.

use super::config::{FivetranConfig, Truncate};
use super::protocol::FIVETRAN_ID;
use super::protocol::{Message, Row, Table, PROTOCOL_VERSION};
use crate::subprocess::{
    bad_line, Child, ChildCommand, JsonFile, LineProtocol, LineReader, Output, Pending,
    StatePolicy, StdoutLine,
};
use crate::SourceContext;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    BadRecord, Checkpoint, CheckpointSummary, ConnectorError, LoadMode, Op, Record, SinkStream,
    Source, StreamReader, StreamSpec,
};

/// The program `python -c` runs: it loads the connector with the SDK's own
/// loader and turns every operation into a line (see the file).
const DRIVER: &str = include_str!("driver.py");

/// The header an `op.update` record carries ([`tributary_core::OP_HEADER`]:
/// `update`): the PostgreSQL sink sets only the columns it names.
pub use tributary_core::OP_HEADER;

pub struct FivetranSource {
    config: FivetranConfig,
    batch_size: usize,
    label: String,
    /// The tables of the last `schema()`, for [`Source::routed_targets`].
    tables: Mutex<Vec<Table>>,
}

impl std::fmt::Debug for FivetranSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FivetranSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FivetranSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let config = FivetranConfig::from_section(section, &ctx.connector)?;
        let name = config
            .project
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "connector".into());
        Ok(FivetranSource {
            label: format!("fivetran connector `{name}`"),
            batch_size: ctx.batch_size.max(1),
            config,
            tables: Mutex::new(Vec::new()),
        })
    }

    fn command(&self, mode: &str, files: &[&JsonFile]) -> ChildCommand {
        let mut cmd = ChildCommand::new(
            self.config.python.clone(),
            self.label.clone(),
            self.config.project.clone(),
        )
        .args(["-c", DRIVER, mode])
        .arg(self.config.project.as_os_str().to_owned())
        .args(files.iter().map(|f| f.path().as_os_str().to_owned()));
        cmd.env = self.config.env.clone();
        cmd.env
            .entry("PYTHONIOENCODING".into())
            .or_insert_with(|| "utf-8".into());
        cmd.silence_timeout = self.config.silence_timeout;
        cmd
    }

    fn configuration_file(&self) -> Result<JsonFile, ConnectorError> {
        JsonFile::write(
            "configuration",
            &Value::Object(self.config.configuration.clone()),
        )
    }

    /// Runs the connector's `schema()` in a child of its own.
    async fn schema(&self) -> Result<Vec<Table>, ConnectorError> {
        let configuration = self.configuration_file()?;
        let mut child = Child::spawn(&self.command("schema", &[&configuration]))?;
        let mut tables = None;
        loop {
            match child.next().await? {
                Output::Line(line) => match parse(&self.label, &line) {
                    Ok(Message::Schema { tables: t, .. }) => tables = Some(t),
                    Ok(other) => {
                        if let Some(e) = common(&self.label, other) {
                            return Err(e);
                        }
                    }
                    Err(bad) => {
                        return Err(ConnectorError::fatal(format!(
                            "{}: {} ({})",
                            self.label, bad.error, bad.location
                        )))
                    }
                },
                Output::Bad(bad) => {
                    return Err(ConnectorError::fatal(format!(
                        "{}: {} ({})",
                        self.label, bad.error, bad.location
                    )))
                }
                Output::Finished => break,
            }
        }
        let tables = tables.ok_or_else(|| {
            ConnectorError::fatal(format!(
                "{} ended without answering schema(){}",
                self.label,
                child.tail_for_errors()
            ))
        })?;
        check_tables(&self.label, &tables)?;
        if let Ok(mut t) = self.tables.lock() {
            t.clone_from(&tables);
        }
        Ok(tables)
    }

    fn target(&self, table: &str, schema: Option<&str>) -> String {
        format!(
            "{}.{table}",
            schema.unwrap_or(self.config.target_prefix.as_str())
        )
    }
}

/// Two declarations of one table would make its key ambiguous.
fn check_tables(label: &str, tables: &[Table]) -> Result<(), ConnectorError> {
    let mut seen = BTreeSet::new();
    for t in tables {
        if !seen.insert((t.schema.clone(), t.table.clone())) {
            return Err(ConnectorError::config(format!(
                "{label}: schema() declares table `{}` twice",
                t.table
            )));
        }
    }
    Ok(())
}

/// A line as a message; a line that is none is a bad record.
fn parse(label: &str, line: &StdoutLine) -> Result<Message, BadRecord> {
    serde_json::from_str(&line.text).map_err(|e| {
        bad_line(
            label,
            line,
            format!("not a message of tributary's Fivetran driver: {e}"),
        )
    })
}

/// The messages every mode handles alike: logs, the handshake, and the
/// ends of a failed run (returned as the error; dropping the child kills it).
fn common(label: &str, message: Message) -> Option<ConnectorError> {
    Some(match message {
        Message::Hello { protocol, sdk } => {
            if protocol == PROTOCOL_VERSION {
                tracing::debug!(child = label, sdk, "driver started");
                return None;
            }
            ConnectorError::fatal(format!(
                "{label}: the driver speaks protocol {protocol}, this tributary {PROTOCOL_VERSION}"
            ))
        }
        Message::Log { level, message } => {
            log(label, &level, &message);
            return None;
        }
        Message::ConfigError { message } => {
            ConnectorError::config(format!("{label}: {}", redact(&message)))
        }
        Message::Failed { message } => {
            ConnectorError::retryable(format!("{label}: {}", shorten_traceback(&redact(&message))))
        }
        Message::Error { message, trace } => {
            let trace = if trace.trim().is_empty() {
                String::new()
            } else {
                format!("\n{}", shorten_traceback(&redact(&trace)))
            };
            ConnectorError::fatal(format!(
                "{label} reported an error with op.error(): {}{trace}",
                redact(&message)
            ))
        }
        other => ConnectorError::fatal(format!("{label}: unexpected message {other:?}")),
    })
}

fn redact(text: &str) -> String {
    tributary_core::secret::redact(text)
}

/// A Python traceback keeps its first line (the SDK's "failed while
/// executing update() error: ...") and its last frames.
fn shorten_traceback(text: &str) -> String {
    const KEEP: usize = 12;
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.len() <= KEEP + 1 {
        return lines.join("\n");
    }
    format!(
        "{}\n  ...\n{}",
        lines[0],
        lines[lines.len() - KEEP..].join("\n")
    )
}

/// The SDK's levels: SEVERE and CRITICAL are errors, FINE is debug.
fn log(label: &str, level: &str, message: &str) {
    let message = redact(message);
    let message = message.trim_start_matches(['⚡', ' ']);
    match level {
        "CRITICAL" | "SEVERE" | "ERROR" => tracing::error!(child = label, "{message}"),
        "WARNING" => tracing::warn!(child = label, "{message}"),
        "DEBUG" | "FINE" => tracing::debug!(child = label, "{message}"),
        _ => tracing::info!(child = label, "{message}"),
    }
}

#[async_trait::async_trait]
impl Source for FivetranSource {
    /// Loads the connector and runs its `schema()`: the virtualenv, the SDK
    /// and the connector's imports are all checked.
    async fn check(&self) -> Result<(), ConnectorError> {
        self.schema().await.map(drop)
    }

    /// One stream, the connector's: its state is one, whatever the tables.
    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        self.schema().await?;
        Ok(vec![StreamSpec::new(self.config.stream.clone())])
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let state = match checkpoint.as_ref().map(|c| c.0.get("state")) {
            None => json!({}),
            Some(Some(state @ Value::Object(_))) => state.clone(),
            Some(_) => {
                return Err(ConnectorError::fatal(format!(
                    "stream `{}`: the checkpoint has no `state` object (it was not written by the fivetran source); reset it with `tributary state reset`",
                    stream.name
                )))
            }
        };
        let initial = state.as_object().is_none_or(Map::is_empty);
        let configuration = self.configuration_file()?;
        let state_file = JsonFile::write("state", &state)?;
        let child = Child::spawn(&self.command("update", &[&configuration, &state_file]))?;
        let tables = self
            .tables
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| ((t.schema.clone(), t.table.clone()), t))
            .collect();
        let protocol = FivetranProtocol {
            label: self.label.clone(),
            tables,
            target_prefix: self.config.target_prefix.clone(),
            truncate: self.config.truncate,
            ignored_truncates: BTreeSet::new(),
            done: false,
        };
        let policy = if self.config.trust_checkpoints {
            StatePolicy::Immediate
        } else {
            StatePolicy::AfterNext
        };
        Ok(Box::new(LineReader::new(
            child,
            protocol,
            Pending::new(json!({ "state": state }), policy),
            self.batch_size,
            if initial {
                LoadMode::Initial
            } else {
                LoadMode::Incremental
            },
            vec![configuration, state_file],
        )))
    }

    fn routed_targets(&self) -> Vec<SinkStream> {
        let tables = self.tables.lock().map(|t| t.clone()).unwrap_or_default();
        tables
            .iter()
            .map(|t| SinkStream {
                spec: StreamSpec {
                    name: t.table.clone(),
                    primary_key: t.key(),
                    cursor_field: None,
                    json_schema: Some(t.json_schema()),
                },
                target: self.target(&t.table, t.schema.as_deref()),
            })
            .collect()
    }

    fn summarize(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        let mut position = checkpoint
            .0
            .get("state")
            .map(Value::to_string)
            .unwrap_or_default();
        if position.len() > 120 {
            let mut cut = 117;
            while !position.is_char_boundary(cut) {
                cut -= 1;
            }
            position.truncate(cut);
            position.push_str("...");
        }
        CheckpointSummary {
            position: (!position.is_empty()).then(|| format!("state {position}")),
            ..CheckpointSummary::default()
        }
    }
}

/// What `update()`'s lines become: records routed to their table, the
/// connector's checkpoints as the stream's (wrapped: `{"state": ...}`).
struct FivetranProtocol {
    label: String,
    /// Declared tables by (schema, name).
    tables: HashMap<(Option<String>, String), Table>,
    target_prefix: String,
    truncate: Truncate,
    ignored_truncates: BTreeSet<String>,
    /// `update()` returned (the driver's `done`).
    done: bool,
}

impl FivetranProtocol {
    fn record(&self, row: Row, op: Op, update: bool, line: &StdoutLine, pending: &mut Pending) {
        let key_columns = match self.tables.get(&(row.schema.clone(), row.table.clone())) {
            Some(t) => t.key(),
            None => vec![FIVETRAN_ID.to_string()],
        };
        let mut key = Vec::with_capacity(key_columns.len());
        for column in &key_columns {
            match row.data.get(column) {
                Some(v) if !v.is_null() => key.push(v.clone()),
                _ => {
                    pending.bad(bad_line(
                        &self.label,
                        line,
                        format!(
                            "the {} of table `{}` has no value for its primary key column `{column}`",
                            if op == Op::Delete { "delete" } else { "row" },
                            row.table
                        ),
                    ));
                    return;
                }
            }
        }
        let key = if key.len() == 1 {
            key.pop()
        } else {
            Some(Value::Array(key))
        };
        let target = format!(
            "{}.{}",
            row.schema.as_deref().unwrap_or(&self.target_prefix),
            row.table
        );
        pending.record(Record {
            key,
            // A delete carries only its key, as a Kafka tombstone does: the
            // postgres sink then flags the row and keeps its values, as
            // Fivetran's `_fivetran_deleted` does.
            value: if op == Op::Delete {
                Value::Null
            } else {
                Value::Object(row.data)
            }
            .into(),
            headers: if update {
                vec![(OP_HEADER.into(), tributary_core::PARTIAL_UPDATE.into())]
            } else {
                Vec::new()
            },
            target: Some(target),
            op,
        });
    }
}

impl LineProtocol for FivetranProtocol {
    fn line(&mut self, line: StdoutLine, pending: &mut Pending) -> Result<(), ConnectorError> {
        let message = match parse(&self.label, &line) {
            Ok(m) => m,
            Err(bad) => {
                pending.bad(bad);
                return Ok(());
            }
        };
        match message {
            Message::Upsert(row) => self.record(row, Op::Upsert, false, &line, pending),
            Message::Update(row) => self.record(row, Op::Upsert, true, &line, pending),
            Message::Delete(row) => self.record(row, Op::Delete, false, &line, pending),
            Message::Checkpoint { state } => {
                if !state.is_object() {
                    return Err(ConnectorError::fatal(format!(
                        "{}: op.checkpoint() was given {state}, not a dict",
                        self.label
                    )));
                }
                pending.state(json!({ "state": state }));
            }
            Message::Truncate { table, .. } => match self.truncate {
                Truncate::Fail => {
                    return Err(ConnectorError::config(format!(
                        "{} called op.truncate(\"{table}\"): tributary's sinks cannot mark every row synced before now deleted; set truncate = \"ignore\" in [source] to skip truncates (rows the source no longer has then stay)",
                        self.label
                    )));
                }
                Truncate::Ignore => {
                    if self.ignored_truncates.insert(table.clone()) {
                        tracing::warn!(child = %self.label, table, "op.truncate() ignored (truncate = \"ignore\")");
                    }
                }
            },
            Message::Schema { tables, .. } => {
                check_tables(&self.label, &tables)?;
                self.tables = tables
                    .into_iter()
                    .map(|t| ((t.schema.clone(), t.table.clone()), t))
                    .collect();
            }
            Message::Done => self.done = true,
            other => {
                if let Some(e) = common(&self.label, other) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Exit status 0 without `done`: something ended the process early
    /// (`sys.exit` in the connector, `os._exit`): the last state stays unconfirmed.
    fn finished(&mut self, pending: &mut Pending) -> Result<(), ConnectorError> {
        if !self.done {
            return Err(ConnectorError::retryable(format!(
                "{} exited before update() returned",
                self.label
            )));
        }
        pending.finished();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_keep_their_head_and_last_frames() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let short = shorten_traceback(&text);
        assert!(short.starts_with("line 0\n  ...\nline 18\n"), "{short}");
        assert!(short.ends_with("line 29"), "{short}");
        assert_eq!(shorten_traceback("a\nb\n"), "a\nb");
    }
}
