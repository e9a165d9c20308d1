//! The Airbyte source: spec, check, discover and one `read` per stream.

use super::config::{resolve, Settings, SyncMode};
use crate::subprocess::{
    bad_line, Child, ChildCommand, JsonFile, LineProtocol, LineReader, Output, Pending,
    StatePolicy, StderrLevel, StdoutLine,
};
use crate::SourceContext;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    Checkpoint, CheckpointSummary, ConnectorError, LoadMode, Record, Source, StreamReader,
    StreamSpec,
};

/// `type = "airbyte"`.
pub struct AirbyteSource {
    settings: Settings,
    /// The selected streams of the catalog from the first discovery.
    catalog: Mutex<Option<Vec<Value>>>,
}

impl std::fmt::Debug for AirbyteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirbyteSource")
            .field("command", &self.settings.command.program)
            .field("streams", &self.settings.streams)
            .finish_non_exhaustive()
    }
}

/// The checkpoint is `{"state": MESSAGE}`: the connector's last committed
/// `AirbyteStateMessage` for the stream (`STREAM`, `GLOBAL` or `LEGACY`),
/// `null` before the first.
pub fn checkpoint_state(checkpoint: &Checkpoint) -> Option<&Value> {
    checkpoint.as_json().get("state").filter(|v| !v.is_null())
}

/// A stream as the configured catalog has it.
struct Configured {
    mode: SyncMode,
    cursor_field: Vec<String>,
    primary_key: Vec<Vec<String>>,
}

impl AirbyteSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(AirbyteSource {
            settings: resolve(section, ctx.batch_size)?,
            catalog: Mutex::new(None),
        })
    }

    /// `VERB [--config FILE] [--manifest-path M]`: `spec` takes no config.
    fn command(&self, verb: &str, config: Option<&JsonFile>) -> ChildCommand {
        let mut cmd = self.settings.command.clone().arg(verb);
        if let Some(config) = config {
            cmd = cmd.arg("--config").arg(config.path());
        }
        if let Some(m) = &self.settings.manifest {
            cmd = cmd.arg("--manifest-path").arg(m);
        }
        cmd
    }

    /// Runs a command to its end: its messages, LOG messages logged, a
    /// TRACE error (or a failed exit) as the error.
    async fn messages(&self, verb: &str) -> Result<Vec<Value>, ConnectorError> {
        let config = match verb {
            "spec" => None,
            _ => Some(JsonFile::write("config", &self.settings.config)?),
        };
        let cmd = self.command(verb, config.as_ref());
        let mut child = Child::spawn(&cmd)?;
        let mut protocol = Protocol::new(
            cmd.label.clone(),
            String::new(),
            Vec::new(),
            SyncMode::FullRefresh,
        );
        let mut out = Vec::new();
        loop {
            match child.next().await {
                Ok(Output::Line(line)) => {
                    let Ok(msg) = serde_json::from_str::<Value>(&line.text) else {
                        tracing::debug!(child = %cmd.label, line = line.number, "not an Airbyte message");
                        continue;
                    };
                    if protocol.common(&msg) {
                        continue;
                    }
                    out.push(msg);
                }
                Ok(Output::Bad(_)) => {}
                Ok(Output::Finished) => {
                    return match protocol.error.take() {
                        Some(e) => Err(e),
                        None => Ok(out),
                    }
                }
                Err(e) => return Err(protocol.died(e)),
            }
        }
    }

    async fn entries(&self) -> Result<Vec<Value>, ConnectorError> {
        let mut cached = self.catalog.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let entries = self.select(self.discover_catalog().await?)?;
        *cached = Some(entries.clone());
        Ok(entries)
    }

    /// The catalog file's (`catalog`), else what `discover` sends.
    async fn discover_catalog(&self) -> Result<Vec<Value>, ConnectorError> {
        let label = &self.settings.command.label;
        let catalog = match &self.settings.catalog {
            Some(path) => {
                let shown = path.display();
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConnectorError::from_io(&format!("reading catalog `{shown}`"), &e)
                })?;
                let file: Value = serde_json::from_str(&text).map_err(|e| {
                    ConnectorError::config(format!("catalog `{shown}` is not JSON: {e}"))
                })?;
                // The message, or its `catalog` object alone.
                match file.get("catalog") {
                    Some(inner) => inner.clone(),
                    None => file,
                }
            }
            None => self
                .messages("discover")
                .await?
                .into_iter()
                .find(|m| m.get("type").and_then(Value::as_str) == Some("CATALOG"))
                .and_then(|m| m.get("catalog").cloned())
                .ok_or_else(|| {
                    ConnectorError::fatal(format!("{label}: `discover` sent no CATALOG message"))
                })?,
        };
        match catalog.pointer("/streams") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => Err(ConnectorError::fatal(format!(
                "{label}: its CATALOG has no `streams` array"
            ))),
        }
    }

    fn select(&self, entries: Vec<Value>) -> Result<Vec<Value>, ConnectorError> {
        let selected = match &self.settings.streams {
            None => entries,
            Some(wanted) => {
                let offered: Vec<&str> = entries.iter().filter_map(name_of).collect();
                wanted
                    .iter()
                    .map(|w| {
                        entries
                            .iter()
                            .find(|e| name_of(e) == Some(w.as_str()))
                            .cloned()
                            .ok_or_else(|| {
                                ConnectorError::config(format!(
                                    "source.streams: the connector offers no stream `{w}`; it offers: {}",
                                    offered.join(", ")
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        // Unworkable sync settings are config errors before anything runs.
        for e in &selected {
            self.configured(e)?;
        }
        Ok(selected)
    }

    fn configured(&self, entry: &Value) -> Result<Configured, ConnectorError> {
        let name = name_of(entry).unwrap_or_default();
        let sync = self.settings.sync.get(name).cloned().unwrap_or_default();
        let supports = |m: &str| {
            entry
                .get("supported_sync_modes")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == m))
        };
        let mode = match sync.mode.or(self.settings.sync_mode) {
            Some(m) if supports(m.as_str()) => m,
            Some(m) => {
                return Err(ConnectorError::config(format!(
                    "source.sync.{name}.mode: stream `{name}` does not support {}",
                    m.as_str()
                )))
            }
            None if supports("incremental") => SyncMode::Incremental,
            None => SyncMode::FullRefresh,
        };
        let source_cursor =
            entry.get("source_defined_cursor").and_then(Value::as_bool) == Some(true);
        let default_cursor = strings(entry.get("default_cursor_field"));
        let cursor_field = match (source_cursor, sync.cursor_field) {
            (true, _) => default_cursor,
            (false, Some(c)) => c,
            (false, None) => default_cursor,
        };
        if mode == SyncMode::Incremental && cursor_field.is_empty() {
            return Err(ConnectorError::config(format!(
                "source.sync.{name}.cursor_field: incremental stream `{name}` needs a cursor field (its source defines none)"
            )));
        }
        let primary_key = match sync.primary_key {
            Some(fields) => fields.into_iter().map(|f| vec![f]).collect(),
            None => entry
                .get("source_defined_primary_key")
                .and_then(Value::as_array)
                .map(|paths| paths.iter().map(|p| strings(Some(p))).collect())
                .unwrap_or_default(),
        };
        Ok(Configured {
            mode,
            cursor_field,
            primary_key,
        })
    }

    fn spec(&self, entry: &Value) -> Result<StreamSpec, ConnectorError> {
        let c = self.configured(entry)?;
        Ok(StreamSpec {
            name: name_of(entry).unwrap_or_default().to_string(),
            primary_key: c.primary_key.iter().map(|p| p.join(".")).collect(),
            cursor_field: (!c.cursor_field.is_empty()).then(|| c.cursor_field.join(".")),
            json_schema: entry.get("json_schema").cloned(),
        })
    }

    /// Required keys of the connector's spec missing from `config`: a
    /// config error naming them, before `check` fails on them less clearly.
    async fn check_spec(&self) -> Result<(), ConnectorError> {
        let msgs = self.messages("spec").await?;
        let Some(spec) = msgs
            .iter()
            .find(|m| m.get("type").and_then(Value::as_str) == Some("SPEC"))
        else {
            return Ok(());
        };
        let required = strings(spec.pointer("/spec/connectionSpecification/required"));
        let missing: Vec<String> = required
            .into_iter()
            // `__injected_declarative_manifest`: what `--manifest-path` fills in.
            .filter(|k| !k.starts_with("__") && self.settings.config.get(k).is_none())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::config(format!(
                "source.config: missing {} (required by the connector's spec)",
                missing
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

fn name_of(entry: &Value) -> Option<&str> {
    entry.get("name").and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Source for AirbyteSource {
    async fn check(&self) -> Result<(), ConnectorError> {
        self.check_spec().await?;
        let label = &self.settings.command.label;
        let msgs = self.messages("check").await?;
        let status = msgs
            .iter()
            .find(|m| m.get("type").and_then(Value::as_str) == Some("CONNECTION_STATUS"))
            .ok_or_else(|| {
                ConnectorError::fatal(format!("{label}: `check` sent no CONNECTION_STATUS"))
            })?;
        if status
            .pointer("/connectionStatus/status")
            .and_then(Value::as_str)
            == Some("SUCCEEDED")
        {
            return Ok(());
        }
        let message = status
            .pointer("/connectionStatus/message")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        // Unreachable or refused as often as misconfigured: "could not use
        // the source" (exit 3), as a failed connection is elsewhere.
        Err(ConnectorError::fatal(format!(
            "{label}: check failed: {}",
            tributary_core::secret::redact(message)
        )))
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        self.entries().await?.iter().map(|e| self.spec(e)).collect()
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let entries = self.entries().await?;
        let entry = entries
            .iter()
            .find(|e| name_of(e) == Some(stream.name.as_str()))
            .ok_or_else(|| {
                ConnectorError::config(format!("the connector offers no stream `{}`", stream.name))
            })?;
        let c = self.configured(entry)?;
        let catalog = json!({"streams": [{
            "stream": entry,
            "sync_mode": c.mode.as_str(),
            "destination_sync_mode": if c.mode == SyncMode::Incremental { "append" } else { "overwrite" },
            "cursor_field": c.cursor_field,
            "primary_key": c.primary_key,
        }]});
        let state = checkpoint.as_ref().and_then(checkpoint_state).cloned();
        let config = JsonFile::write("config", &self.settings.config)?;
        let catalog = JsonFile::write("catalog", &catalog)?;
        let mut cmd = self
            .command("read", Some(&config))
            .arg("--catalog")
            .arg(catalog.path());
        let mut files = vec![config, catalog];
        if let Some(state) = &state {
            // A legacy state is the bare object; the others a list of messages.
            let passed = match state.get("type").and_then(Value::as_str) {
                Some("LEGACY") => state.get("data").cloned().unwrap_or(json!({})),
                _ => json!([state]),
            };
            let file = JsonFile::write("state", &passed)?;
            cmd = cmd.arg("--state").arg(file.path());
            files.push(file);
        }
        cmd.label = format!("{} ({})", cmd.label, stream.name);
        let child = Child::spawn(&cmd)?;
        let load_mode = if state.is_some() {
            LoadMode::Incremental
        } else {
            LoadMode::Initial
        };
        let protocol = Protocol::new(
            cmd.label.clone(),
            stream.name.clone(),
            c.primary_key,
            c.mode,
        );
        let pending = Pending::new(json!({ "state": state }), StatePolicy::AfterNext);
        Ok(Box::new(LineReader::new(
            child,
            protocol,
            pending,
            self.settings.batch_size,
            load_mode,
            files,
        )))
    }

    fn summarize(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        let position = checkpoint_state(checkpoint).map(|s| {
            let kind = s.get("type").and_then(Value::as_str).unwrap_or("LEGACY");
            let inner = s
                .pointer("/stream/stream_state")
                .or_else(|| s.pointer("/global/shared_state"))
                .or_else(|| s.get("data"))
                .map(Value::to_string)
                .unwrap_or_default();
            let cut: String = inner.chars().take(120).collect();
            format!("{kind} state {cut}")
        });
        CheckpointSummary {
            position,
            ..CheckpointSummary::default()
        }
    }
}

/// Airbyte messages of one stream's `read`.
struct Protocol {
    label: String,
    stream: String,
    primary_key: Vec<Vec<String>>,
    mode: SyncMode,
    /// A TRACE error the connector reported: the run failed, whatever its
    /// exit status says.
    error: Option<ConnectorError>,
}

impl Protocol {
    fn new(label: String, stream: String, primary_key: Vec<Vec<String>>, mode: SyncMode) -> Self {
        Protocol {
            label,
            stream,
            primary_key,
            mode,
            error: None,
        }
    }

    /// LOG, TRACE and CONTROL, the same in every command; true when `msg`
    /// was one of them.
    fn common(&mut self, msg: &Value) -> bool {
        match msg.get("type").and_then(Value::as_str) {
            Some("LOG") => {
                let level = msg
                    .pointer("/log/level")
                    .and_then(Value::as_str)
                    .and_then(StderrLevel::named)
                    .unwrap_or(StderrLevel::Info);
                let text = msg
                    .pointer("/log/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                level.log(&self.label, &tributary_core::secret::redact(text));
                true
            }
            Some("TRACE") => {
                if msg.pointer("/trace/type").and_then(Value::as_str) == Some("ERROR") {
                    let e = trace_error(&self.label, msg);
                    tracing::error!(child = %self.label, error = %e, "the connector reported an error");
                    self.error = Some(e);
                }
                true
            }
            Some("CONTROL") => {
                tracing::warn!(child = %self.label, "the connector sent a CONTROL message (a config update); tributary does not store it: update `config` yourself");
                true
            }
            _ => false,
        }
    }

    fn key(&self, data: &Value) -> Option<Value> {
        let one = |path: &Vec<String>| path.iter().try_fold(data, |v, p| v.get(p)).cloned();
        match self.primary_key.as_slice() {
            [] => None,
            [single] => one(single),
            many => many
                .iter()
                .map(one)
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
        }
    }
}

/// A TRACE error as ours: `config_error` means nothing works until the
/// config changes; transient and system errors are retried.
fn trace_error(label: &str, msg: &Value) -> ConnectorError {
    let error = msg.pointer("/trace/error");
    let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
    let message = text("message")
        .or_else(|| text("internal_message"))
        .unwrap_or("no message");
    let failure = text("failure_type").unwrap_or("system_error");
    let message = format!(
        "{label} reported a {failure}: {}",
        tributary_core::secret::redact(message)
    );
    match failure {
        "config_error" => ConnectorError::config(message),
        _ => ConnectorError::retryable(message),
    }
}

impl LineProtocol for Protocol {
    fn line(&mut self, line: StdoutLine, pending: &mut Pending) -> Result<(), ConnectorError> {
        let msg: Value = match serde_json::from_str(&line.text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                pending.bad(bad_line(
                    &self.label,
                    &line,
                    "not an Airbyte message: a JSON value that is not an object",
                ));
                return Ok(());
            }
            Err(e) => {
                pending.bad(bad_line(
                    &self.label,
                    &line,
                    format!("not an Airbyte message: invalid JSON: {e}"),
                ));
                return Ok(());
            }
        };
        if self.common(&msg) {
            return Ok(());
        }
        match msg.get("type").and_then(Value::as_str) {
            Some("RECORD") => {
                if msg.pointer("/record/stream").and_then(Value::as_str)
                    != Some(self.stream.as_str())
                {
                    return Ok(());
                }
                let Some(data @ Value::Object(_)) = msg.pointer("/record/data") else {
                    pending.bad(bad_line(
                        &self.label,
                        &line,
                        "a RECORD message without a `data` object",
                    ));
                    return Ok(());
                };
                let mut r = Record::new(data.clone());
                r.key = self.key(data);
                pending.record(r);
            }
            Some("STATE") => {
                let Some(Value::Object(state)) = msg.get("state") else {
                    pending.bad(bad_line(
                        &self.label,
                        &line,
                        "a STATE message without a `state` object",
                    ));
                    return Ok(());
                };
                let mut state = state.clone();
                // Counts of this read, not part of the position.
                state.remove("sourceStats");
                state.remove("destinationStats");
                match state.get("type").and_then(Value::as_str) {
                    Some("STREAM") => {
                        let name = state
                            .get("stream")
                            .and_then(|s| s.pointer("/stream_descriptor/name"))
                            .and_then(Value::as_str);
                        if name == Some(self.stream.as_str()) {
                            pending.state(json!({ "state": state }));
                        }
                    }
                    Some("GLOBAL") => pending.state(json!({ "state": state })),
                    Some("LEGACY") | None => {
                        let data = state.get("data").cloned().unwrap_or(json!({}));
                        pending.state(json!({ "state": {"type": "LEGACY", "data": data} }));
                    }
                    Some(other) => {
                        let error = format!("unknown Airbyte state type `{other}`");
                        pending.bad(bad_line(&self.label, &line, error));
                    }
                }
            }
            Some(_) => {}
            None => pending.bad(bad_line(
                &self.label,
                &line,
                "not an Airbyte message: no `type`",
            )),
        }
        Ok(())
    }

    fn finished(&mut self, pending: &mut Pending) -> Result<(), ConnectorError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.mode {
            // A completed full refresh starts from the beginning next time.
            SyncMode::FullRefresh => pending.reset(json!({ "state": null })),
            SyncMode::Incremental => pending.finished(),
        }
        Ok(())
    }

    fn died(&mut self, error: ConnectorError) -> ConnectorError {
        match self.error.take() {
            Some(ConnectorError::Config { message }) => {
                ConnectorError::config(format!("{message} ({error})"))
            }
            Some(reported) => ConnectorError::retryable(format!("{reported} ({error})")),
            None => error,
        }
    }
}
