//! The Singer source: discovery, catalog selection and one tap run per
//! stream read.

use super::config::{resolve, Settings};
use crate::subprocess::{
    bad_line, collect, Child, JsonFile, LineProtocol, LineReader, Pending, StatePolicy, StdoutLine,
};
use crate::SourceContext;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    Checkpoint, CheckpointSummary, ConnectorError, LoadMode, Record, Source, StreamReader,
    StreamSpec,
};

/// `type = "singer"`.
pub struct SingerSource {
    settings: Settings,
    /// The selected catalog entries, from the first discovery of this
    /// process (each `open` needs its stream's entry; discovering again
    /// for each would start the tap once more per run).
    catalog: Mutex<Option<Vec<Value>>>,
}

impl std::fmt::Debug for SingerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tap's config holds secrets: never shown.
        f.debug_struct("SingerSource")
            .field("command", &self.settings.command.program)
            .field("streams", &self.settings.streams)
            .finish_non_exhaustive()
    }
}

/// The checkpoint: the tap's last committed STATE value (`null` before the first).
pub fn checkpoint_state(checkpoint: &Checkpoint) -> Option<&Value> {
    checkpoint.as_json().get("state").filter(|v| !v.is_null())
}

impl SingerSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(SingerSource {
            settings: resolve(section, ctx.batch_size)?,
            catalog: Mutex::new(None),
        })
    }

    /// The catalog entries of the selected streams, discovered once.
    async fn entries(&self) -> Result<Vec<Value>, ConnectorError> {
        let mut cached = self.catalog.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let entries = self.select(self.load_catalog().await?)?;
        *cached = Some(entries.clone());
        Ok(entries)
    }

    async fn load_catalog(&self) -> Result<Value, ConnectorError> {
        let label = &self.settings.command.label;
        let text = match &self.settings.catalog {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConnectorError::from_io(&format!("reading catalog `{}`", path.display()), &e)
            })?,
            None => {
                let config = JsonFile::write("config", &self.settings.config)?;
                let cmd = self
                    .settings
                    .command
                    .clone()
                    .arg("--config")
                    .arg(config.path())
                    .arg("--discover");
                collect(&cmd).await?.join("\n")
            }
        };
        let catalog: Value = serde_json::from_str(&text)
            .map_err(|e| ConnectorError::fatal(format!("{label}: its catalog is not JSON: {e}")))?;
        if !catalog.get("streams").is_some_and(Value::is_array) {
            return Err(ConnectorError::fatal(format!(
                "{label}: its catalog has no `streams` array"
            )));
        }
        Ok(catalog)
    }

    fn select(&self, catalog: Value) -> Result<Vec<Value>, ConnectorError> {
        let entries = match catalog.get("streams") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let Some(wanted) = &self.settings.streams else {
            return Ok(entries);
        };
        let offered: Vec<&str> = entries.iter().filter_map(|e| stream_id(e)).collect();
        wanted
            .iter()
            .map(|name| {
                entries
                    .iter()
                    .find(|e| {
                        stream_id(e) == Some(name.as_str())
                            || e.get("stream").and_then(Value::as_str) == Some(name.as_str())
                    })
                    .cloned()
                    .ok_or_else(|| {
                        ConnectorError::config(format!(
                            "source.streams: the tap offers no stream `{name}`; it offers: {}",
                            if offered.is_empty() {
                                "none".to_string()
                            } else {
                                offered.join(", ")
                            }
                        ))
                    })
            })
            .collect()
    }

    fn spec(&self, entry: &Value) -> StreamSpec {
        let name = stream_id(entry).unwrap_or_default().to_string();
        let root = root_metadata(entry);
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut primary_key = strings(entry.get("key_properties"));
        if primary_key.is_empty() {
            primary_key = strings(root.and_then(|m| m.get("table-key-properties")));
        }
        let cursor_field = self
            .settings
            .replication
            .get(&name)
            .and_then(|r| r.key.clone())
            .or_else(|| {
                root.and_then(|m| m.get("replication-key"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        StreamSpec {
            name,
            primary_key,
            cursor_field,
            json_schema: entry.get("schema").cloned(),
        }
    }

    /// The catalog the tap runs with: only `entry`, selected with all its
    /// fields, with the configured replication method and key.
    fn run_catalog(&self, entry: &Value, spec: &StreamSpec) -> Value {
        let mut entry = entry.clone();
        let replication = self.settings.replication.get(&spec.name);
        let method = replication.and_then(|r| r.method.clone());
        let key = replication.and_then(|r| r.key.clone());
        let Some(obj) = entry.as_object_mut() else {
            return json!({"streams": []});
        };
        // Legacy singer-python taps read these from the entry itself.
        obj.insert("selected".into(), json!(true));
        if let Some(how) = &method {
            obj.insert("replication_method".into(), json!(how));
        }
        if let Some(k) = &key {
            obj.insert("replication_key".into(), json!(k));
        }
        let metadata = obj.entry("metadata").or_insert_with(|| json!([]));
        if let Value::Array(list) = metadata {
            if !list.iter().any(is_root) {
                list.push(json!({"breadcrumb": [], "metadata": {}}));
            }
            for m in list.iter_mut() {
                let root = is_root(m);
                let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) else {
                    continue;
                };
                if md.get("inclusion").and_then(Value::as_str) == Some("unsupported") {
                    continue;
                }
                md.insert("selected".into(), json!(true));
                if root {
                    if let Some(how) = &method {
                        md.insert("replication-method".into(), json!(how));
                    }
                    if let Some(k) = &key {
                        md.insert("replication-key".into(), json!(k));
                    }
                }
            }
        }
        json!({"streams": [entry]})
    }
}

fn stream_id(entry: &Value) -> Option<&str> {
    entry
        .get("tap_stream_id")
        .or_else(|| entry.get("stream"))
        .and_then(Value::as_str)
}

fn is_root(m: &Value) -> bool {
    m.get("breadcrumb")
        .and_then(Value::as_array)
        .is_some_and(|b| b.is_empty())
}

fn root_metadata(entry: &Value) -> Option<&Map<String, Value>> {
    entry
        .get("metadata")?
        .as_array()?
        .iter()
        .find(|m| is_root(m))?
        .get("metadata")?
        .as_object()
}

#[async_trait::async_trait]
impl Source for SingerSource {
    /// A tap has no check command: discovery connects and lists streams.
    async fn check(&self) -> Result<(), ConnectorError> {
        self.select(self.load_catalog().await?).map(|_| ())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(self.entries().await?.iter().map(|e| self.spec(e)).collect())
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let entries = self.entries().await?;
        let entry = entries
            .iter()
            .find(|e| stream_id(e) == Some(stream.name.as_str()))
            .ok_or_else(|| {
                ConnectorError::config(format!("the tap offers no stream `{}`", stream.name))
            })?;
        let spec = self.spec(entry);
        let state = checkpoint.as_ref().and_then(checkpoint_state).cloned();
        let config = JsonFile::write("config", &self.settings.config)?;
        let catalog = JsonFile::write("catalog", &self.run_catalog(entry, &spec))?;
        let mut cmd = self
            .settings
            .command
            .clone()
            .arg("--config")
            .arg(config.path())
            .arg(&self.settings.catalog_flag)
            .arg(catalog.path());
        let mut files = vec![config, catalog];
        if let Some(state) = &state {
            let file = JsonFile::write("state", state)?;
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
        let protocol = SingerProtocol {
            label: cmd.label.clone(),
            ids: [
                spec.name.clone(),
                entry
                    .get("stream")
                    .and_then(Value::as_str)
                    .unwrap_or(spec.name.as_str())
                    .to_string(),
            ],
            key: spec.primary_key.clone(),
            other_streams: 0,
        };
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
            let text = s.to_string();
            let mut cut: String = text.chars().take(120).collect();
            if cut.len() < text.len() {
                cut.push('…');
            }
            format!("STATE {cut}")
        });
        CheckpointSummary {
            position,
            ..CheckpointSummary::default()
        }
    }
}

/// Singer messages of one stream's tap run.
struct SingerProtocol {
    label: String,
    /// The stream's `tap_stream_id` and `stream` name: a RECORD may use either.
    ids: [String; 2],
    key: Vec<String>,
    other_streams: u64,
}

impl SingerProtocol {
    fn ours(&self, msg: &Value) -> bool {
        msg.get("stream")
            .and_then(Value::as_str)
            .is_some_and(|s| self.ids.iter().any(|id| id == s))
    }
}

impl LineProtocol for SingerProtocol {
    fn line(&mut self, line: StdoutLine, pending: &mut Pending) -> Result<(), ConnectorError> {
        let msg: Value = match serde_json::from_str(&line.text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                pending.bad(bad_line(
                    &self.label,
                    &line,
                    "not a Singer message: a JSON value that is not an object",
                ));
                return Ok(());
            }
            Err(e) => {
                pending.bad(bad_line(
                    &self.label,
                    &line,
                    format!("not a Singer message: invalid JSON: {e}"),
                ));
                return Ok(());
            }
        };
        match msg.get("type").and_then(Value::as_str) {
            Some("RECORD") => {
                if !self.ours(&msg) {
                    self.other_streams += 1;
                    if self.other_streams == 1 {
                        tracing::debug!(child = %self.label, stream = ?msg.get("stream"), "skipping records of a stream this run did not select");
                    }
                    return Ok(());
                }
                let Some(record @ Value::Object(_)) = msg.get("record") else {
                    pending.bad(bad_line(&self.label, &line, "a RECORD message without a `record` object"));
                    return Ok(());
                };
                let mut r = Record::new(record.clone());
                r.key = Record::key_from_fields(record, &self.key);
                if let Some(v) = msg.get("version") {
                    r.headers.push(("singer.version".into(), v.to_string()));
                }
                pending.record(r);
            }
            Some("SCHEMA") => {
                if self.ours(&msg) {
                    if let Some(Value::Array(keys)) = msg.get("key_properties") {
                        let keys: Vec<String> =
                            keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect();
                        if !keys.is_empty() {
                            self.key = keys;
                        }
                    }
                }
            }
            Some("STATE") => match msg.get("value") {
                Some(value) => pending.state(json!({ "state": value })),
                None => pending.bad(bad_line(&self.label, &line, "a STATE message without a `value`")),
            },
            Some("ACTIVATE_VERSION") => {
                tracing::info!(child = %self.label, version = ?msg.get("version"), "ACTIVATE_VERSION: records before this version are stale (records carry it in the `singer.version` header)");
            }
            Some("BATCH") => {
                return Err(ConnectorError::config(format!(
                    "{}: sent a BATCH message (line {}); tributary reads records from stdout: remove `batch_config` from the tap's config",
                    self.label, line.number
                )))
            }
            Some(other) => {
                let error = format!("unknown Singer message type `{other}`");
                pending.bad(bad_line(&self.label, &line, error));
            }
            None => pending.bad(bad_line(&self.label, &line, "not a Singer message: no `type`")),
        }
        Ok(())
    }
}
