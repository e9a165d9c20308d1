//! The dead-letter file: bad input kept with its error for a person to fix
//! and replay. Made durable in the same flush that acknowledges the sink, so
//! a checkpoint never moves past a bad record that was not kept.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use tributary_core::{BadRecord, FileSpan, RawInput};

/// Bytes of a file-held raw input copied per read: the only memory its
/// copy takes, however long the record.
const COPY_CHUNK: usize = 64 * 1024;

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
            write_entry(w, connector, stream, b, at)?;
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

/// One dead letter, one line:
/// `{"connector","stream","location","error","raw","at"}`. The raw input is
/// written as it is read, so a record too large to hold is copied from its
/// file in chunks, never whole in memory.
fn write_entry(
    w: &mut impl Write,
    connector: &str,
    stream: &str,
    b: &BadRecord,
    at: &str,
) -> io::Result<()> {
    let field = |w: &mut dyn Write, name: &str, value: &str, first: bool| -> io::Result<()> {
        w.write_all(if first { b"{\"" } else { b",\"" })?;
        w.write_all(name.as_bytes())?;
        w.write_all(b"\":")?;
        serde_json::to_writer(&mut *w, value).map_err(io::Error::from)
    };
    field(w, "connector", connector, true)?;
    field(w, "stream", stream, false)?;
    field(w, "location", &b.location, false)?;
    field(w, "error", &b.error, false)?;
    match &b.raw {
        RawInput::Text(text) => field(w, "raw", text, false)?,
        RawInput::File(span) => {
            w.write_all(b",\"raw\":\"")?;
            let copied = copy_escaped(w, span)?;
            w.write_all(b"\"")?;
            if copied < span.len {
                tracing::warn!(
                    stream,
                    location = %b.location,
                    copied,
                    length = span.len,
                    "the source file shrank before its bad record was copied; the dead letter holds what was left"
                );
            }
        }
    }
    field(w, "at", at, false)?;
    w.write_all(b"}\n")
}

/// Copies `span` as the contents of a JSON string (invalid UTF-8 replaced
/// by U+FFFD, as held text is); returns the bytes read.
fn copy_escaped(w: &mut impl Write, span: &FileSpan) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut escaped = Vec::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
    // Bytes of a UTF-8 sequence cut by the end of the previous chunk.
    let mut carry = 0usize;
    let mut read = 0u64;
    loop {
        let want = (span.len - read).min((COPY_CHUNK - carry) as u64) as usize;
        let n = if want == 0 {
            0
        } else {
            read_at(
                &span.file,
                &mut buf[carry..carry + want],
                span.offset + read,
            )?
        };
        read += n as u64;
        let last = n == 0 || read == span.len;
        let mut data = &buf[..carry + n];
        escaped.clear();
        carry = 0;
        loop {
            match std::str::from_utf8(data) {
                Ok(s) => {
                    escape_into(&mut escaped, s)?;
                    break;
                }
                Err(e) => {
                    let (valid, rest) = data.split_at(e.valid_up_to());
                    escape_into(&mut escaped, std::str::from_utf8(valid).unwrap_or_default())?;
                    match e.error_len() {
                        Some(bad) => {
                            escaped.extend_from_slice("\u{fffd}".as_bytes());
                            data = &rest[bad..];
                        }
                        None if last => {
                            escaped.extend_from_slice("\u{fffd}".as_bytes());
                            break;
                        }
                        None => {
                            carry = rest.len();
                            data = rest;
                            break;
                        }
                    }
                }
            }
        }
        w.write_all(&escaped)?;
        if carry > 0 {
            let from = data.as_ptr() as usize - buf.as_ptr() as usize;
            buf.copy_within(from..from + carry, 0);
        }
        if last {
            return Ok(read);
        }
    }
}

/// `s` as the inside of a JSON string.
fn escape_into(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    let at = out.len();
    serde_json::to_writer(&mut *out, s)?;
    // Drop the quotes serde_json put around it.
    out.remove(at);
    out.pop();
    Ok(())
}

/// Reads at `offset` without moving a position the file's other users share.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_at(file, buf, offset);
        #[cfg(windows)]
        let r = std::os::windows::fs::FileExt::seek_read(file, buf, offset);
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(raw: RawInput) -> serde_json::Value {
        let b = BadRecord {
            location: "f:1".into(),
            error: "bad".into(),
            raw,
        };
        let mut out = Vec::new();
        write_entry(&mut out, "c", "s", &b, "now").unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_span_of_a_file_is_copied_whole_and_escaped_as_held_text_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Multi-byte characters cut by every chunk boundary, quotes,
        // control characters and invalid bytes.
        let mut data = b"head\n".to_vec();
        let body_start = data.len() as u64;
        while data.len() < 3 * COPY_CHUNK + 17 {
            data.extend("é\"€\u{1}😀x".as_bytes());
            if data.len().is_multiple_of(7) {
                data.push(0xff);
            }
        }
        data.push(0xe2); // a sequence cut by the end of the span
        let body_len = data.len() as u64 - body_start;
        data.extend(b"\ntail");
        std::fs::write(&path, &data).unwrap();
        let span = FileSpan {
            file: Arc::new(File::open(&path).unwrap()),
            offset: body_start,
            len: body_len,
        };
        let want =
            String::from_utf8_lossy(&data[body_start as usize..(body_start + body_len) as usize])
                .into_owned();
        let got = entry(RawInput::File(span));
        assert_eq!(got["raw"].as_str().unwrap(), want);
        assert_eq!(got["at"], "now");
        assert_eq!(
            entry(RawInput::Text(want.clone()))["raw"].as_str().unwrap(),
            want
        );
    }
}
