//! The stdout sink: NDJSON lines on standard output, for pipes and trying
//! connectors out.
//!
//! Lines are encoded into one buffer and handed to the writer in large chunks
//! (>= 256 KiB) or on flush: one syscall per chunk, not per record, and the
//! global stdout lock is taken once per chunk. "Durable" here means written
//! to the pipe or terminal: that is all stdout can promise.

mod config;

pub use config::StdoutSinkConfig;

use crate::ndjson::{encode_line, Format};
use std::io::Write;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{BatchInfo, ConnectorError, Record, Sink};

/// Bytes buffered before they are handed to the writer.
const CHUNK: usize = 256 * 1024;

/// NDJSON to standard output, or to any writer (tests, embedding).
pub struct StdoutSink<W: Write + Send = std::io::Stdout> {
    out: W,
    format: Format,
    buf: Vec<u8>,
}

impl StdoutSink<std::io::Stdout> {
    pub fn from_section(section: &SectionConfig) -> Result<Self, ConfigError> {
        let config: StdoutSinkConfig = section.parse()?;
        Ok(Self::new(config))
    }

    pub fn new(config: StdoutSinkConfig) -> Self {
        Self::with_writer(config, std::io::stdout())
    }
}

impl<W: Write + Send> StdoutSink<W> {
    /// A sink writing to `out` instead of standard output.
    pub fn with_writer(config: StdoutSinkConfig, out: W) -> Self {
        StdoutSink {
            out,
            format: config.format,
            buf: Vec::with_capacity(CHUNK + 4096),
        }
    }

    /// The underlying writer (what tests read back).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn drain(&mut self) -> Result<(), ConnectorError> {
        if !self.buf.is_empty() {
            let result = self.out.write_all(&self.buf);
            // Written or not, these bytes are not retried: a partial write
            // already split a line, and the runtime re-delivers everything
            // since the last acknowledged flush after an error.
            self.buf.clear();
            result.map_err(|e| ConnectorError::from_io("writing to stdout", &e))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<W: Write + Send> Sink for StdoutSink<W> {
    /// Encodes each record with its own target, else the batch's.
    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        let default_target = batch.map(|b| b.target);
        for record in records {
            let target = record.target.as_deref().or(default_target);
            encode_line(self.format, record, target, &mut self.buf)?;
            if self.buf.len() >= CHUNK {
                self.drain()?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.drain()?;
        self.out
            .flush()
            .map_err(|e| ConnectorError::from_io("flushing stdout", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn writes_lines_only_on_flush_or_full_chunk() {
        let mut sink = StdoutSink::with_writer(StdoutSinkConfig::default(), Vec::new());
        let records = [Record::new(json!({"a": 1})), Record::new(json!("x"))];
        sink.write(&records).await.unwrap();
        assert!(sink.get_ref().is_empty(), "buffered until flush");
        sink.flush().await.unwrap();
        assert_eq!(sink.get_ref().as_slice(), b"{\"a\":1}\n\"x\"\n");

        // A large batch goes out in chunks before any flush.
        let many: Vec<_> = (0..20_000)
            .map(|i| Record::new(json!({"i": i, "pad": "0123456789"})))
            .collect();
        sink.write(&many).await.unwrap();
        assert!(sink.get_ref().len() > CHUNK);
        sink.flush().await.unwrap();
        let text = String::from_utf8(sink.get_ref().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_002);
        assert_eq!(
            text.lines().last().unwrap(),
            "{\"i\":19999,\"pad\":\"0123456789\"}"
        );
    }

    #[tokio::test]
    async fn envelope_format() {
        let config = StdoutSinkConfig {
            format: Format::Envelope,
        };
        let mut sink = StdoutSink::with_writer(config, Vec::new());
        let mut r = Record::new(json!({"id": 7})).with_key(json!(7));
        r.target = Some("c.orders".into());
        sink.write(&[r]).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(
            String::from_utf8(sink.get_ref().clone()).unwrap(),
            "{\"target\":\"c.orders\",\"key\":7,\"op\":\"upsert\",\"headers\":[],\"value\":{\"id\":7}}\n"
        );
    }

    /// The runtime routes per batch: a record without a target of its own
    /// goes to the batch's, one with a target keeps it.
    #[tokio::test]
    async fn records_without_a_target_take_the_batchs() {
        let config = StdoutSinkConfig {
            format: Format::Envelope,
        };
        let mut sink = StdoutSink::with_writer(config, Vec::new());
        let routed = Record {
            target: Some("elsewhere".into()),
            ..Record::new(json!(2))
        };
        let batch = BatchInfo {
            stream: "orders",
            target: "c.orders",
            load_mode: tributary_core::LoadMode::Initial,
            ingested_at: chrono::Utc::now(),
        };
        sink.write_batch(batch, &[Record::new(json!(1)), routed])
            .await
            .unwrap();
        sink.flush().await.unwrap();
        let targets: Vec<serde_json::Value> = String::from_utf8(sink.get_ref().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["target"].clone())
            .collect();
        assert_eq!(targets, [json!("c.orders"), json!("elsewhere")]);
    }
}
