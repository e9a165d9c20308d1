//! What the push sources (`websocket`, `mqtt`) share: turning a message into
//! a record by its format, record ids, routing templates and the reconnect
//! policy. Both own a live connection for as long as their reader lives, so
//! unlike the pull sources they reconnect themselves (the runtime only sees
//! a reader that keeps returning batches) and give up, fatally, only when
//! the configured number of restarts is spent.

use crate::http::template::Template;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tributary_config::units::de_duration;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{BadRecord, ConnectorError, Record};

/// How long a reader waits for a message before telling the runtime the
/// stream is idle (so commits and shutdowns are not held up by a quiet feed).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// What a push source's connection task hands its reader: a message with
/// what the source tracks for it (`M`: an MQTT delivery to acknowledge, a
/// WebSocket resume token), or the task's end.
pub(crate) enum PushEvent<M> {
    Message {
        record: Result<Record, BadRecord>,
        meta: M,
    },
    /// The task gave up (restarts spent, or a permanent error); it has ended.
    Failed(ConnectorError),
}

/// The records and bad records of one poll.
pub(crate) struct Drained {
    pub records: Vec<Record>,
    pub bad: Vec<BadRecord>,
}

/// One poll of a push reader: waits up to a second for a message, then
/// takes whatever else already arrived, up to `batch_size`, handing each
/// message's `meta` to `track` in arrival order. `None`: idle. A task
/// failure is kept in `failed` and returned by the next poll, after the
/// batch before it (which the runtime can still commit).
pub(crate) async fn drain<M>(
    rx: &mut mpsc::Receiver<PushEvent<M>>,
    batch_size: usize,
    failed: &mut Option<ConnectorError>,
    task: &str,
    track: impl FnMut(M),
) -> Result<Option<Drained>, ConnectorError> {
    drain_buffered(&mut VecDeque::new(), rx, batch_size, failed, task, track).await
}

/// [`drain`], taking the events in `early` (received from `rx` before,
/// in order) first.
pub(crate) async fn drain_buffered<M>(
    early: &mut VecDeque<PushEvent<M>>,
    rx: &mut mpsc::Receiver<PushEvent<M>>,
    batch_size: usize,
    failed: &mut Option<ConnectorError>,
    task: &str,
    mut track: impl FnMut(M),
) -> Result<Option<Drained>, ConnectorError> {
    if let Some(e) = failed.take() {
        return Err(e);
    }
    let ended = || ConnectorError::fatal(format!("the {task} ended unexpectedly"));
    // `recv` is cancel-safe; after it nothing awaits.
    let first = match early.pop_front() {
        Some(event) => event,
        None => match tokio::time::timeout(IDLE_AFTER, rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(ended()),
            Ok(Some(event)) => event,
        },
    };
    let mut out = Drained {
        records: Vec::new(),
        bad: Vec::new(),
    };
    let mut next = Some(first);
    while let Some(event) = next.take() {
        match event {
            PushEvent::Message { record, meta } => {
                track(meta);
                match record {
                    Ok(r) => out.records.push(r),
                    Err(b) => out.bad.push(b),
                }
            }
            PushEvent::Failed(e) => {
                *failed = Some(e);
                break;
            }
        }
        if out.records.len() + out.bad.len() < batch_size {
            next = early.pop_front().or_else(|| rx.try_recv().ok());
        }
    }
    if out.records.is_empty() && out.bad.is_empty() {
        return Err(failed.take().unwrap_or_else(ended));
    }
    Ok(Some(out))
}

/// How a message's bytes become a record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// One JSON object per message; anything else is a bad record.
    #[default]
    Json,
    /// UTF-8 text, as `{"message": "..."}` (seed 002's text format).
    Text,
}

/// `reconnect = { min_backoff = "1s", max_backoff = "30s", max_restarts = -1 }`
/// (seed 002's `reconnect-min-backoff`, `-max-backoff`, `-max-restarts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// The wait before the first reconnect; doubles after each failed one.
    #[serde(deserialize_with = "de_duration")]
    pub min_backoff: Duration,
    /// The longest wait between reconnects.
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Consecutive reconnects without a message in between before the source
    /// gives up (a fatal error naming the last failure); -1: never give up.
    pub max_restarts: i64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_restarts: -1,
        }
    }
}

impl ReconnectConfig {
    pub(crate) fn validate(&self, section: &SectionConfig) -> Result<(), ConfigError> {
        if self.max_restarts < -1 {
            return Err(section.error(
                "reconnect.max_restarts",
                "max_restarts must be -1 (reconnect forever) or a number of restarts >= 0",
            ));
        }
        if self.min_backoff.is_zero() {
            return Err(section.error(
                "reconnect.min_backoff",
                "min_backoff must be greater than 0 (a server that refuses connections would be hammered)",
            ));
        }
        if self.max_backoff < self.min_backoff {
            return Err(section.error(
                "reconnect.max_backoff",
                "max_backoff must be at least min_backoff",
            ));
        }
        Ok(())
    }

    /// True when `restarts` consecutive restarts are more than allowed.
    pub(crate) fn exhausted(&self, restarts: u32) -> bool {
        self.max_restarts >= 0 && i64::from(restarts) > self.max_restarts
    }

    /// The wait before restart number `restarts` (1-based), with jitter.
    pub(crate) fn delay(&self, restarts: u32) -> Duration {
        tributary_core::backoff::delay(restarts, self.min_backoff, self.max_backoff)
    }
}

/// What every message of a push stream shares: how to decode it, where its
/// key comes from, where it goes.
#[derive(Debug, Clone)]
pub(crate) struct MessageRules {
    pub format: MessageFormat,
    /// Dotted path of the record key; absent or null in a message: a
    /// generated UUID, as seed 002 does.
    pub id_field: Option<String>,
    /// Target template over the message's fields (`events.{{ type }}`); a
    /// message without the fields goes to the stream's target.
    pub target: Option<Template>,
}

impl MessageRules {
    /// Parses `target` at config load, so a malformed template is a config error.
    pub fn new(
        section: &SectionConfig,
        format: MessageFormat,
        id_field: Option<String>,
        target: Option<&str>,
    ) -> Result<MessageRules, ConfigError> {
        let target = target
            .map(|t| Template::parse(t).map_err(|e| section.error("target", e)))
            .transpose()?;
        Ok(MessageRules {
            format,
            id_field: id_field.filter(|f| !f.is_empty()),
            target,
        })
    }

    /// The message as a record, or why it is not one.
    pub fn record(&self, payload: &[u8]) -> Result<Record, String> {
        let value = decode(self.format, payload)?;
        let key = self
            .id_field
            .as_deref()
            .and_then(|f| crate::http::records::lookup_dotted(&value, f))
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| Value::String(generated_id()));
        let target = self
            .target
            .as_ref()
            .and_then(|t| t.render(&value).ok())
            .filter(|t| !t.is_empty());
        Ok(Record {
            key: Some(key),
            target,
            ..Record::new(value)
        })
    }
}

/// A message's value by format.
pub(crate) fn decode(format: MessageFormat, payload: &[u8]) -> Result<Value, String> {
    match format {
        MessageFormat::Json => match serde_json::from_slice::<Value>(payload) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(other) => Err(format!(
                "a JSON message must be an object, got {}",
                kind(&other)
            )),
            Err(e) => Err(format!("invalid JSON: {e}")),
        },
        MessageFormat::Text => match std::str::from_utf8(payload) {
            Ok(text) => {
                let mut m = Map::with_capacity(1);
                m.insert("message".into(), Value::String(text.to_string()));
                Ok(Value::Object(m))
            }
            Err(e) => Err(format!("message is not UTF-8 text: {e}")),
        },
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A random (version 4) UUID, for messages without an id.
pub(crate) fn generated_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A message that could not become a record, for the bad-record policy.
pub(crate) fn bad_record(location: String, error: String, payload: &[u8]) -> BadRecord {
    BadRecord {
        location,
        error,
        raw: String::from_utf8_lossy(payload).into_owned().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(format: MessageFormat, id: Option<&str>, target: Option<&str>) -> MessageRules {
        let s = crate::test_support::section(
            "[source]\ntype = \"websocket\"\n",
            std::path::Path::new("/tmp"),
        );
        MessageRules::new(&s, format, id.map(str::to_string), target).unwrap()
    }

    #[test]
    fn json_messages_get_their_key_and_target_from_fields() {
        let r = rules(MessageFormat::Json, Some("id"), Some("ev.{{ type }}"));
        let rec = r.record(br#"{"id": 7, "type": "trade"}"#).unwrap();
        assert_eq!(rec.key, Some(json!(7)));
        assert_eq!(rec.target.as_deref(), Some("ev.trade"));
        // No id: a generated UUID; no routing field: the stream's target.
        let rec = r.record(br#"{"x": 1}"#).unwrap();
        let key = rec.key.unwrap();
        let key = key.as_str().unwrap();
        assert_eq!(key.len(), 36);
        assert_eq!(&key[14..15], "4");
        assert_eq!(rec.target, None);
    }

    #[test]
    fn bad_json_and_non_objects_are_rejected_with_a_reason() {
        let r = rules(MessageFormat::Json, None, None);
        assert!(r.record(b"{oops").unwrap_err().starts_with("invalid JSON"));
        assert_eq!(
            r.record(b"[1]").unwrap_err(),
            "a JSON message must be an object, got an array"
        );
    }

    #[test]
    fn text_messages_become_a_message_field() {
        let r = rules(MessageFormat::Text, None, None);
        let rec = r.record("héllo".as_bytes()).unwrap();
        assert_eq!(rec.value.into_value(), json!({"message": "héllo"}));
        assert!(r.record(&[0xff, 0xfe]).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn restarts_are_bounded_unless_minus_one() {
        let mut c = ReconnectConfig::default();
        assert!(!c.exhausted(1_000_000));
        c.max_restarts = 2;
        assert!(!c.exhausted(2));
        assert!(c.exhausted(3));
    }
}
