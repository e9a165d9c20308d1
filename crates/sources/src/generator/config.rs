//! The `[source]` table of `type = "generator"`.

use serde::Deserialize;
use std::collections::BTreeMap;
use tributary_config::{ConfigError, SectionConfig};

/// `[source]` with `type = "generator"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Same seed, same records; default 0.
    #[serde(default)]
    pub seed: u64,
    /// One stream per table key: `[source.streams.users]`.
    pub streams: BTreeMap<String, GeneratorStreamConfig>,
}

/// `[source.streams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorStreamConfig {
    pub record_type: RecordType,
    /// Records in the stream; absent: endless.
    pub total: Option<u64>,
    /// Records per second, at most; absent: as fast as the pipeline takes them.
    pub rate: Option<f64>,
    /// Overrides the connector's `runtime.batch_size` for this stream.
    pub batch_size: Option<usize>,
}

/// What the generated records look like (seed 002's Test Source types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    /// `{id, name, age, email}`, key `id`.
    User,
    /// `{event_id, event_type, user_id, timestamp}`, key `event_id`.
    Event,
    /// `{order_id, product, quantity, amount}`, key `order_id`.
    Order,
    /// `{reading_id, sensor_id, temperature, humidity, timestamp}`, key `reading_id`.
    Sensor,
}

/// A stream's validated settings.
#[derive(Debug, Clone)]
pub(crate) struct GenStream {
    pub name: String,
    pub record_type: RecordType,
    pub total: Option<u64>,
    pub rate: Option<f64>,
    pub batch_size: usize,
    pub seed: u64,
}

pub(crate) fn resolve(
    section: &SectionConfig,
    default_batch_size: usize,
) -> Result<BTreeMap<String, GenStream>, ConfigError> {
    let cfg: GeneratorConfig = section.parse()?;
    if cfg.streams.is_empty() {
        return Err(section.error(
            "streams",
            "at least one stream is required, e.g. [source.streams.users] with record_type = \"user\"",
        ));
    }
    let mut out = BTreeMap::new();
    for (name, s) in cfg.streams {
        if let Some(rate) = s.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(section.error(
                    &format!("streams.{name}.rate"),
                    format!("rate must be a positive number of records per second, got {rate}"),
                ));
            }
        }
        crate::check_batch_size(section, &format!("streams.{name}.batch_size"), s.batch_size)?;
        out.insert(
            name.clone(),
            GenStream {
                name,
                record_type: s.record_type,
                total: s.total,
                rate: s.rate,
                batch_size: s.batch_size.unwrap_or(default_batch_size).max(1),
                seed: cfg.seed,
            },
        );
    }
    Ok(out)
}
