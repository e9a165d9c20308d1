//! What the runtime does to every record between source and sink: seed
//! 000's metadata fields. Done on the stream task so the work spreads across
//! cores while the sink task writes. (Routing is per batch: the sink sends a
//! record without its own target to the batch's, see `BatchInfo::target`.)

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tributary_config::{MetadataConfig, TimestampFormat};
use tributary_core::{ExtraFields, LoadMode, Record};

#[derive(Debug, Clone)]
pub struct Transform {
    stream: String,
    metadata: Option<MetadataConfig>,
}

impl Transform {
    pub fn new(stream: &str, metadata: &MetadataConfig) -> Self {
        Transform {
            stream: stream.to_string(),
            metadata: metadata.enabled.then(|| metadata.clone()),
        }
    }

    /// Adds the metadata fields to object values. `ingested_at` is one
    /// instant per batch, so the fields are built (and, for raw records,
    /// rendered) once per batch.
    pub fn apply(&self, records: &mut [Record], load_mode: LoadMode, ingested_at: DateTime<Utc>) {
        let extra = self.metadata.as_ref().map(|m| {
            let ingested_at = match m.ingested_at_format {
                TimestampFormat::UnixMs => Value::from(ingested_at.timestamp_millis()),
                TimestampFormat::Rfc3339 => {
                    Value::String(ingested_at.to_rfc3339_opts(SecondsFormat::Millis, true))
                }
            };
            let fields = [
                (&m.stream_field, Value::String(self.stream.clone())),
                (&m.ingested_at_field, ingested_at),
                (
                    &m.load_mode_field,
                    Value::String(load_mode.as_str().to_string()),
                ),
            ];
            ExtraFields::new(
                fields
                    .into_iter()
                    .filter(|(name, _)| !name.is_empty())
                    .map(|(name, value)| (name.clone(), value))
                    .collect(),
            )
        });
        if let Some(extra) = extra.filter(|e| !e.is_empty()) {
            for r in records.iter_mut() {
                r.value.add_fields(&extra);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adds_configured_metadata_to_objects_only() {
        let t = Transform::new("orders", &MetadataConfig::default());
        let mut recs = vec![
            Record::new(json!({"id": 1})),
            Record {
                target: Some("elsewhere".into()),
                ..Record::new(json!("not an object"))
            },
        ];
        t.apply(&mut recs, LoadMode::Incremental, at());
        assert_eq!(
            recs[0].value,
            json!({"id": 1, "_stream": "orders", "_ingested_at": "2026-01-01T00:00:00.000Z", "_load_mode": "INCREMENTAL_LOAD"})
        );
        assert_eq!(recs[1].target.as_deref(), Some("elsewhere"), "untouched");
        assert_eq!(recs[1].value, json!("not an object"));
    }

    fn at() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn unix_ms_ingestion_time_as_kafka_connect_writes_it() {
        let m = MetadataConfig {
            ingested_at_format: TimestampFormat::UnixMs,
            ..MetadataConfig::default()
        };
        let mut recs = vec![Record::new(json!({"id": 1}))];
        Transform::new("s", &m).apply(&mut recs, LoadMode::Initial, at());
        assert_eq!(
            recs[0].value.to_value()["_ingested_at"],
            json!(1767225600000i64)
        );
    }

    #[test]
    fn renamed_disabled_and_omitted_fields() {
        let m = MetadataConfig {
            stream_field: "src".into(),
            ingested_at_field: String::new(),
            ..MetadataConfig::default()
        };
        let mut recs = vec![Record::new(json!({"id": 1}))];
        Transform::new("s", &m).apply(&mut recs, LoadMode::Initial, at());
        assert_eq!(
            recs[0].value,
            json!({"id": 1, "src": "s", "_load_mode": "INITIAL_LOAD"})
        );

        let off = MetadataConfig {
            enabled: false,
            ..MetadataConfig::default()
        };
        let mut recs = vec![Record::new(json!({"id": 1}))];
        Transform::new("s", &off).apply(&mut recs, LoadMode::Initial, at());
        assert_eq!(recs[0].value, json!({"id": 1}));
    }
}
