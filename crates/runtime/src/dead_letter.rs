//! The dead-letter file: bad input kept with its error for a person to fix
//! and replay. Made durable in the same flush that acknowledges the sink, so
//! a checkpoint never moves past a bad record that was not kept.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use tributary_core::BadRecord;

#[derive(Serialize)]
struct Entry<'a> {
    connector: &'a str,
    stream: &'a str,
    location: &'a str,
    error: &'a str,
    raw: &'a str,
    at: &'a str,
}

pub struct DeadLetterFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    dirty: bool,
}

impl DeadLetterFile {
    pub fn new(path: PathBuf) -> Self {
        DeadLetterFile {
            path,
            writer: None,
            dirty: false,
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    pub fn append(
        &mut self,
        connector: &str,
        stream: &str,
        bad: &[BadRecord],
        at: &str,
    ) -> std::io::Result<()> {
        if bad.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.writer = Some(BufWriter::new(f));
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        for b in bad {
            let entry = Entry {
                connector,
                stream,
                location: &b.location,
                error: &b.error,
                raw: &b.raw,
                at,
            };
            serde_json::to_writer(&mut *w, &entry)?;
            w.write_all(b"\n")?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Flushes and fsyncs what was appended since the last call.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }
}
