//! Logs on stderr, through the secret redactor, and around the progress bars
//! so the two never interleave on a terminal.

use crate::cli::LogFormat;
use indicatif::MultiProgress;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Clone)]
struct Stderr {
    progress: Option<MultiProgress>,
}

/// Buffers one log event and writes it, redacted, when dropped.
struct EventWriter {
    buf: Vec<u8>,
    progress: Option<MultiProgress>,
}

impl Write for EventWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let text = tributary_core::secret::redact(&String::from_utf8_lossy(&self.buf));
        let emit = || {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        };
        match &self.progress {
            Some(p) => p.suspend(emit),
            None => emit(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            buf: Vec::with_capacity(256),
            progress: self.progress.clone(),
        }
    }
}

pub fn init(format: LogFormat, level: &str, progress: Option<MultiProgress>) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = Stderr { progress };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging not initialised: {e}");
    }
}
