//! Reading one file stream: passes over the matching files, per-format record
//! parsing, and the checkpoint that records where each file is.
//!
//! All of this is blocking I/O; [`super::source::FileReader`] runs it on
//! tokio's blocking pool, one batch at a time.

use super::config::{Format, StreamSettings};
use super::csv_records::{BadRaw, CsvFormat, CsvRecords, Next};
use crate::http::raw_page::{field_names, project_kept, record_text, TextProblem};
use crate::object_text::{write_utf8_str, ObjectFields};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use tributary_core::{
    BadRecord, Batch, Checkpoint, ConnectorError, FileSpan, LoadMode, Payload, Poll, RawInput,
    RawJson, Record,
};

/// Read buffer per open file: large enough that a 100-byte-record NDJSON
/// file costs one `read` syscall per ~2,500 records.
const READ_BUFFER: usize = 256 * 1024;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// The checkpoint of a file stream.
///
/// ```json
/// {"files": {"data/orders-1.csv": {"offset": 1234, "line": 57}}, "initial_done": false}
/// ```
///
/// * `files`: one entry per file read so far, keyed by its path relative to
///   the config file's directory (absolute when the configured `path` is).
///   `offset` is the byte just after the last record returned; `line` is the
///   number of lines before `offset` (the next record starts on line
///   `line + 1`). For a CSV file with a header, the header line is before
///   the first offset ever stored, and is re-read on resume.
/// * `initial_done`: the stream caught up once; later records are
///   [`LoadMode::Incremental`].
///
/// A file shorter than its stored offset was truncated or replaced: it is
/// read again from the start, with a warning. Entries are never removed,
/// so a file deleted and re-created with more data than before is read from
/// the old offset on: rotate into new names, not the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    #[serde(default)]
    pub files: BTreeMap<String, FilePosition>,
    #[serde(default)]
    pub initial_done: bool,
}

/// Where reading of one file resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub offset: u64,
    pub line: u64,
}

/// Records and bad records of the batch being built.
struct Output {
    records: Vec<Record>,
    bad: Vec<BadRecord>,
}

impl Output {
    fn len(&self) -> usize {
        self.records.len() + self.bad.len()
    }
}

/// A `Read` that stops at a byte limit: in follow mode, the end of the
/// last complete line, so a line still being written is never read.
struct Limited<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

enum Body {
    Lines(BufReader<Limited<File>>),
    Csv {
        reader: Box<CsvRecords<Limited<File>>>,
        /// Field names from this file's header line; `None` without header.
        header: Option<ObjectFields>,
    },
}

impl Body {
    fn limited(&mut self) -> &mut Limited<File> {
        match self {
            Body::Lines(r) => r.get_mut(),
            Body::Csv { reader, .. } => reader.get_mut(),
        }
    }
}

/// The file being read.
struct OpenFile {
    key: String,
    path: PathBuf,
    /// Absolute offset reading stops at: in follow mode the end of the last
    /// complete line seen, otherwise `u64::MAX` (read to end of file).
    limit: u64,
    body: Body,
    /// The same open file, read by offset: a bad record too long to hold
    /// is handed on as a span of it (see [`RawInput::File`]).
    handle: Arc<File>,
}

/// `len` bytes at `offset` of an open file, as a bad record's raw input.
fn span(handle: &Arc<File>, offset: u64, len: u64) -> RawInput {
    RawInput::File(FileSpan {
        file: Arc::clone(handle),
        offset,
        len,
    })
}

/// The files of one pass, in name order, and the next to look at.
struct Pass {
    files: Vec<(String, PathBuf)>,
    next: usize,
}

/// The whole state of one open stream.
pub(crate) struct ReaderState {
    stream: Arc<StreamSettings>,
    checkpoint: FileCheckpoint,
    /// `None`: list the files again before reading (start, and after `Idle`).
    pass: Option<Pass>,
    current: Option<OpenFile>,
    /// Reused across records so reading a line allocates nothing.
    line: Vec<u8>,
    /// What CSV records are written with.
    csv: CsvScratch,
    /// The primary key's fields, as raw NDJSON records are projected on.
    key_fields: Vec<&'static str>,
}

impl ReaderState {
    pub(crate) fn new(stream: Arc<StreamSettings>, checkpoint: FileCheckpoint) -> Self {
        ReaderState {
            checkpoint,
            pass: None,
            current: None,
            line: Vec::with_capacity(1024),
            csv: CsvScratch::default(),
            key_fields: field_names(&stream.primary_key),
            stream,
        }
    }

    /// Reads the next batch: up to `batch_size` records and bad records,
    /// across file boundaries, and the checkpoint after them.
    pub(crate) fn read_batch(&mut self) -> Result<Poll, ConnectorError> {
        let budget = self.stream.batch_size;
        let mut out = Output {
            records: Vec::with_capacity(budget.min(8192)),
            bad: Vec::new(),
        };
        let mut caught_up = false;
        while out.len() < budget {
            match self.step(&mut out, budget) {
                Ok(true) => {}
                Ok(false) => {
                    caught_up = true;
                    break;
                }
                Err(e) => {
                    // Forget the open file and the listing: the next poll
                    // starts over from the positions of what was returned,
                    // so nothing is skipped whichever way the runtime goes.
                    self.current = None;
                    self.pass = None;
                    if out.len() == 0 {
                        return Err(e);
                    }
                    tracing::warn!(stream = %self.stream.name, error = %e, "file read failed; returning the records read before it");
                    break;
                }
            }
        }

        if out.len() == 0 && caught_up {
            if !self.checkpoint.initial_done {
                // Persist "caught up once" with an empty batch, so a later
                // run (or a restart) reads new data as incremental.
                self.checkpoint.initial_done = true;
                return Ok(Poll::Batch(Batch::new(
                    Vec::new(),
                    Checkpoint::from_state(&self.checkpoint),
                    LoadMode::Initial,
                )));
            }
            if self.stream.follow {
                // List again on the next poll: new files, grown files.
                self.pass = None;
                return Ok(Poll::Idle);
            }
            return Ok(Poll::End);
        }
        let load_mode = if self.checkpoint.initial_done {
            LoadMode::Incremental
        } else {
            LoadMode::Initial
        };
        Ok(Poll::Batch(Batch {
            records: out.records,
            bad_records: out.bad,
            checkpoint: Checkpoint::from_state(&self.checkpoint),
            load_mode,
        }))
    }

    /// Makes progress on the current file, opening the next one when needed.
    /// `Ok(false)`: every file of the pass is read (caught up).
    fn step(&mut self, out: &mut Output, budget: usize) -> Result<bool, ConnectorError> {
        if self.current.is_none() {
            match self.open_next()? {
                Some(f) => self.current = Some(f),
                None => return Ok(false),
            }
        }
        let Some(file) = self.current.as_mut() else {
            return Ok(false);
        };
        let pos = self.checkpoint.files.entry(file.key.clone()).or_default();
        let stream = &*self.stream;
        let result = match &mut file.body {
            Body::Lines(_) => read_lines(
                stream,
                file,
                pos,
                out,
                budget,
                &mut self.line,
                &self.key_fields,
            ),
            Body::Csv { .. } => read_csv(stream, file, pos, out, budget, &mut self.csv),
        };
        match result {
            Ok(FileStatus::More) => {}
            Ok(FileStatus::Done) => self.current = None,
            Err(e) => {
                return Err(ConnectorError::from_io(
                    &format!("stream `{}`: reading {}", stream.name, file.key),
                    &e,
                ))
            }
        }
        Ok(true)
    }

    /// Opens the next file of the pass with something to read, listing the
    /// files first if no pass is under way.
    fn open_next(&mut self) -> Result<Option<OpenFile>, ConnectorError> {
        if self.pass.is_none() {
            let files = list_files(&self.stream)?;
            if files.is_empty() && !self.stream.follow && self.checkpoint.files.is_empty() {
                // Never read anything and nothing to read: almost certainly
                // a wrong path. (Once files were read, an empty listing is
                // normal: they may have been archived.)
                return Err(ConnectorError::config(format!(
                    "stream `{}`: no file matches `{}`",
                    self.stream.name, self.stream.configured
                )));
            }
            self.pass = Some(Pass { files, next: 0 });
        }
        let Some(pass) = self.pass.as_mut() else {
            return Ok(None);
        };
        while let Some((key, path)) = pass.files.get(pass.next).cloned() {
            pass.next += 1;
            let context = format!("stream `{}`: opening {key}", self.stream.name);
            let pos = self.checkpoint.files.entry(key.clone()).or_default();
            match open_file(&self.stream, key, path, pos) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                // Deleted between listing and opening: nothing to read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ConnectorError::from_io(&context, &e)),
            }
        }
        Ok(None)
    }
}

/// The files matching the stream's pattern, sorted by key. Dot-files are
/// skipped (editor swap files, partial downloads) unless named literally.
pub(crate) fn list_files(
    stream: &StreamSettings,
) -> Result<Vec<(String, PathBuf)>, ConnectorError> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&stream.pattern, options).map_err(|e| {
        ConnectorError::config(format!(
            "stream `{}`: invalid glob pattern `{}`: {e}",
            stream.name, stream.configured
        ))
    })?;
    let mut files = Vec::new();
    for entry in paths {
        match entry {
            Ok(path) if path.is_file() => files.push((stream.key_of(&path), path)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(stream = %stream.name, error = %e, "cannot list part of the path")
            }
        }
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}

/// Opens `path` at `pos`, or `None` when it has nothing to read yet.
/// Detects truncation, finds the follow-mode limit, reads the CSV header.
fn open_file(
    stream: &StreamSettings,
    key: String,
    path: PathBuf,
    pos: &mut FilePosition,
) -> io::Result<Option<OpenFile>> {
    let len = fs::metadata(&path)?.len();
    if len < pos.offset {
        tracing::warn!(
            stream = %stream.name,
            file = %key,
            size = len,
            offset = pos.offset,
            "file is shorter than the checkpoint: truncated or replaced; reading it again from the start"
        );
        *pos = FilePosition::default();
    }
    if len == pos.offset {
        return Ok(None);
    }
    let mut file = File::open(&path)?;
    // Reads by offset only (pread), so sharing the descriptor's position
    // with the reader does no harm.
    let handle = Arc::new(file.try_clone()?);
    let limit = if stream.follow {
        last_line_end(&file, pos.offset, len)?
    } else {
        u64::MAX
    };
    if limit <= pos.offset {
        return Ok(None);
    }
    let body = match stream.format {
        Format::Csv => {
            let header = if stream.header {
                let Some((names, after_header)) = read_header(stream, &file, limit)? else {
                    return Ok(None);
                };
                if pos.offset < after_header.offset {
                    *pos = after_header;
                }
                Some(ObjectFields::new(&names))
            } else {
                None
            };
            if pos.offset >= limit {
                return Ok(None);
            }
            file.seek(SeekFrom::Start(pos.offset))?;
            let mut reader =
                csv_records(stream, limited(file, pos.offset, limit), *pos, READ_BUFFER);
            if pos.offset == 0 {
                reader.skip_bom()?;
            }
            reader.expected_fields = header.as_ref().map(ObjectFields::columns);
            Body::Csv {
                reader: Box::new(reader),
                header,
            }
        }
        Format::Ndjson | Format::Text => {
            file.seek(SeekFrom::Start(pos.offset))?;
            Body::Lines(BufReader::with_capacity(
                READ_BUFFER,
                limited(file, pos.offset, limit),
            ))
        }
    };
    Ok(Some(OpenFile {
        key,
        path,
        limit,
        body,
        handle,
    }))
}

fn limited(file: File, offset: u64, limit: u64) -> Limited<File> {
    Limited {
        inner: file,
        remaining: limit.saturating_sub(offset),
    }
}

/// A capped CSV record reader at `pos`. Headers, field counts and `\r` are
/// handled by the caller: only `\n` ends a record, so that every position
/// is just after a newline and line numbers stay exact (`\r\n` files: the
/// `\r` is stripped from the last field).
fn csv_records<R: Read>(
    stream: &StreamSettings,
    src: R,
    pos: FilePosition,
    buffer: usize,
) -> CsvRecords<R> {
    let format = CsvFormat {
        delimiter: stream.delimiter,
        quote: stream.quote,
        cap: stream.max_record_bytes,
        follow: stream.follow,
    };
    CsvRecords::new(src, (pos.offset, pos.line), format, buffer)
}

/// The header of a CSV file and the position just after it; `None` when
/// the file has no complete header line yet.
pub(crate) fn read_header(
    stream: &StreamSettings,
    file: &File,
    limit: u64,
) -> io::Result<Option<(Vec<String>, FilePosition)>> {
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    let mut reader = csv_records(
        stream,
        Limited {
            inner: file,
            remaining: limit,
        },
        FilePosition::default(),
        8 * 1024,
    );
    reader.skip_bom()?;
    match reader.next()? {
        Next::Record => {}
        Next::Bad { error, .. } => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the header line cannot be read: {error}"),
            ))
        }
        Next::Incomplete | Next::End => return Ok(None),
    }
    let last = reader.len().saturating_sub(1);
    let names = (0..reader.len())
        .map(|i| {
            let f = reader.field(i);
            let f = if i == last { strip_cr(f) } else { f };
            String::from_utf8_lossy(f).into_owned()
        })
        .collect();
    let (offset, line) = reader.position();
    Ok(Some((names, FilePosition { offset, line })))
}

enum FileStatus {
    /// The batch is full; the file has more.
    More,
    /// Read to the end (or to the last complete line, following).
    Done,
}

/// Follow mode, at the limit: takes in lines appended since, if any.
fn extend(file: &mut OpenFile) -> io::Result<bool> {
    let len = match fs::metadata(&file.path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= file.limit {
        // Not grown (or truncated: the next pass sees it and restarts).
        return Ok(false);
    }
    let new_limit = last_line_end(&File::open(&file.path)?, file.limit, len)?;
    if new_limit <= file.limit {
        return Ok(false);
    }
    let limited = file.body.limited();
    limited.remaining += new_limit - file.limit;
    file.limit = new_limit;
    Ok(true)
}

/// The offset just after the last `\n` in `[from, len)`, or `from` if none.
fn last_line_end(mut file: &File, from: u64, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 16 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(CHUNK).max(from);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        match file.read_exact(&mut buf[..n]) {
            Ok(()) => {}
            // Truncated while we looked: nothing complete to read.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(from),
            Err(e) => return Err(e),
        }
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Reads one line into `buf` (terminator included), at most `max` bytes of
/// its content. Returns the bytes consumed and, for a line whose content is
/// longer than `max`, that length (terminator left out): `buf` then holds
/// only a prefix, and the rest was skipped without being held.
fn read_line_capped<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, Option<u64>)> {
    let cap = (max as u64).saturating_add(1);
    let n = r.by_ref().take(cap).read_until(b'\n', buf)?;
    if n <= max || buf.last() == Some(&b'\n') {
        return Ok((n, None));
    }
    let mut total = n;
    let mut last = buf.last().copied();
    let mut ended = false;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            break;
        }
        match memchr::memchr(b'\n', available) {
            Some(i) => {
                if i > 0 {
                    last = Some(available[i - 1]);
                }
                r.consume(i + 1);
                total += i + 1;
                ended = true;
                break;
            }
            None => {
                let l = available.len();
                last = available.last().copied();
                r.consume(l);
                total += l;
            }
        }
    }
    let mut len = (total - usize::from(ended)) as u64;
    if last == Some(b'\r') {
        len -= 1;
    }
    if len <= max as u64 {
        // Only its `\r` went past the cap: `buf` holds it all.
        return Ok((total, None));
    }
    Ok((total, Some(len)))
}

fn strip_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Raw input for a bad record held in memory (at most the record cap;
/// invalid UTF-8 replaced, as it is text).
fn lossy(b: &[u8]) -> RawInput {
    RawInput::Text(String::from_utf8_lossy(b).into_owned())
}

fn record(stream: &StreamSettings, value: Value) -> Record {
    Record {
        key: Record::key_from_fields(&value, &stream.primary_key),
        value: value.into(),
        ..Record::default()
    }
}

/// An NDJSON line that is one valid JSON object, kept as its text: only the
/// primary-key fields are read (most of the source's CPU time went into
/// building trees sinks then wrote back out unchanged). The text is kept by
/// the rule of every raw record ([`record_text`]): compacted if spaced, an
/// error if strict parsers would refuse it. `None` for anything else, which
/// the parsing path reports.
fn raw_record(
    stream: &StreamSettings,
    key_fields: &[&'static str],
    line: &[u8],
) -> Option<Result<Record, String>> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let kept = match record_text(text) {
        Ok(kept) => kept,
        Err(TextProblem::NotStrict(message)) => return Some(Err(message)),
        Err(TextProblem::Invalid(_)) => return None,
    };
    let keys = project_kept(&kept, key_fields).ok()?;
    let text = match kept {
        Cow::Borrowed(t) => Bytes::copy_from_slice(t.as_bytes()),
        Cow::Owned(t) => Bytes::from(t),
    };
    Some(Ok(Record {
        key: Record::key_from_fields(&keys, &stream.primary_key),
        value: Payload::Raw(RawJson::from_checked(text)),
        ..Record::default()
    }))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// NDJSON and text: one record per line.
fn read_lines(
    stream: &StreamSettings,
    file: &mut OpenFile,
    pos: &mut FilePosition,
    out: &mut Output,
    budget: usize,
    buf: &mut Vec<u8>,
    key_fields: &[&'static str],
) -> io::Result<FileStatus> {
    loop {
        if out.len() >= budget {
            return Ok(FileStatus::More);
        }
        if pos.offset >= file.limit && !extend(file)? {
            return Ok(FileStatus::Done);
        }
        let Body::Lines(reader) = &mut file.body else {
            return Ok(FileStatus::Done);
        };
        let line = LineAt {
            file_key: &file.key,
            handle: &file.handle,
            number: pos.line + 1,
            offset: pos.offset,
        };
        // The common case: the whole line, within the cap, is in the read
        // buffer, and is taken from there (copying each line out first and
        // searching it with `read_until` was a tenth of the reader's time).
        let available = reader.fill_buf()?;
        if let Some(end) =
            memchr::memchr(b'\n', available).filter(|end| *end <= stream.max_record_bytes)
        {
            take_line(stream, key_fields, &line, &available[..=end], None, out);
            reader.consume(end + 1);
            pos.offset += end as u64 + 1;
            pos.line += 1;
            continue;
        }
        buf.clear();
        let (n, too_long) = read_line_capped(reader, buf, stream.max_record_bytes)?;
        if n == 0 {
            return Ok(FileStatus::Done);
        }
        take_line(stream, key_fields, &line, buf, too_long, out);
        pos.offset += n as u64;
        pos.line += 1;
    }
}

/// Where a line starts, for its record or bad record.
struct LineAt<'a> {
    file_key: &'a str,
    handle: &'a Arc<File>,
    /// 1-based.
    number: u64,
    offset: u64,
}

/// One line read (with its `\n`, if it has one) to a record or bad record.
/// `too_long`: the line ran past `max_record_bytes` and `read` holds only
/// its start; this is its whole length.
fn take_line(
    stream: &StreamSettings,
    key_fields: &[&'static str],
    at: &LineAt<'_>,
    read: &[u8],
    too_long: Option<u64>,
    out: &mut Output,
) {
    let bom = if at.offset == 0 && read.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    let start = at.offset + bom as u64;
    let line_no = at.number;
    let mut line: &[u8] = &read[bom..];
    if let Some(len) = too_long {
        let len = len - bom as u64;
        // Whole in the dead letter: copied from the file, not held.
        out.bad.push(BadRecord {
            location: format!("{}:{line_no}", at.file_key),
            error: format!(
                "line longer than max_record_bytes ({} bytes): {len} bytes",
                stream.max_record_bytes
            ),
            raw: span(at.handle, start, len),
        });
        return;
    }
    line = strip_cr(line.strip_suffix(b"\n").unwrap_or(line));
    let bad = |error: String| BadRecord {
        location: format!("{}:{line_no}", at.file_key),
        error,
        raw: lossy(line),
    };
    match stream.format {
        Format::Ndjson => {
            if line.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            match raw_record(stream, key_fields, line) {
                Some(Ok(r)) => return out.records.push(r),
                Some(Err(error)) => return out.bad.push(bad(error)),
                None => {}
            }
            // The slow path also words the error of a line that is no object.
            match serde_json::from_slice::<Value>(line) {
                Ok(v @ Value::Object(_)) => out.records.push(record(stream, v)),
                Ok(v) => out.bad.push(bad(format!(
                    "expected a JSON object, found {}",
                    json_kind(&v)
                ))),
                Err(e) => out.bad.push(bad(e.to_string())),
            }
        }
        _ => match std::str::from_utf8(line) {
            Ok(s) => {
                let mut m = Map::with_capacity(1);
                m.insert("line".to_string(), Value::String(s.to_string()));
                out.records.push(record(stream, Value::Object(m)));
            }
            Err(e) => out.bad.push(bad(format!("invalid UTF-8: {e}"))),
        },
    }
}

/// CSV: one record per CSV row; a quoted field may span lines.
fn read_csv(
    stream: &StreamSettings,
    file: &mut OpenFile,
    pos: &mut FilePosition,
    out: &mut Output,
    budget: usize,
    scratch: &mut CsvScratch,
) -> io::Result<FileStatus> {
    loop {
        if out.len() >= budget {
            return Ok(FileStatus::More);
        }
        if pos.offset >= file.limit && !extend(file)? {
            return Ok(FileStatus::Done);
        }
        let Body::Csv { reader, header } = &mut file.body else {
            return Ok(FileStatus::Done);
        };
        let next = reader.next()?;
        let location = || format!("{}:{}", file.key, reader.start().line);
        match next {
            // Incomplete (following): the record is still being written;
            // this reader is dropped and the next pass reads it again at `pos`.
            Next::End | Next::Incomplete => return Ok(FileStatus::Done),
            Next::Bad { error, raw } => {
                (pos.offset, pos.line) = reader.position();
                let raw = match raw {
                    BadRaw::Held(raw) => lossy(&raw),
                    BadRaw::Span { offset, len } => span(&file.handle, offset, len),
                };
                out.bad.push(BadRecord {
                    location: location(),
                    error,
                    raw,
                });
                continue;
            }
            Next::Record => {}
        }
        (pos.offset, pos.line) = reader.position();

        let n = reader.len();
        let last = n.saturating_sub(1);
        let field = |i: usize| -> &[u8] {
            let f = reader.field(i);
            if i == last {
                strip_cr(f)
            } else {
                f
            }
        };
        if n == 0 || (n == 1 && field(0).is_empty()) {
            continue; // a blank line
        }
        let bad = |error: String| {
            let raw = reader.raw();
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            BadRecord {
                location: location(),
                error,
                raw: lossy(strip_cr(raw)),
            }
        };
        let fields: &ObjectFields = match header {
            Some(h) => {
                if h.columns() != n {
                    out.bad.push(bad(format!(
                        "expected {} fields (as in the header), found {n}",
                        h.columns()
                    )));
                    continue;
                }
                h
            }
            None => {
                if scratch.headerless.columns() != n {
                    let names: Vec<String> = (0..n).map(|i| format!("field{i}")).collect();
                    scratch.headerless = ObjectFields::new(&names);
                }
                &scratch.headerless
            }
        };
        // The record's bytes are checked once: every field is a part of
        // them cut at ASCII quotes and delimiters, so all are UTF-8 when
        // they are. Only a bad record's fields are checked one by one, in
        // column order, so the error names the first bad one.
        if std::str::from_utf8(reader.raw()).is_err() {
            if let Some((i, e)) =
                (0..n).find_map(|i| std::str::from_utf8(field(i)).err().map(|e| (i, e)))
            {
                out.bad.push(bad(format!(
                    "invalid UTF-8 in field `{}`: {e}",
                    fields.name(i)
                )));
                continue;
            }
        }
        let text = fields.write::<std::convert::Infallible>(&mut scratch.buf, |i, buf| {
            // Checked above.
            write_utf8_str(field(i), buf);
            Ok(())
        });
        let text = match text {
            Ok(text) => text,
            Err(never) => match never {},
        };
        let cell = |name: &String| {
            fields
                .column(name)
                .map(|i| Value::String(String::from_utf8_lossy(field(i)).into_owned()))
        };
        let key = match stream.primary_key.as_slice() {
            [] => None,
            [one] => cell(one),
            many => many
                .iter()
                .map(cell)
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
        };
        out.records.push(Record {
            key,
            value: Payload::Raw(RawJson::from_checked(text)),
            ..Record::default()
        });
    }
}

/// Reused across the CSV records of a stream.
#[derive(Default)]
pub(crate) struct CsvScratch {
    /// `field0`, `field1`, ... for header-less CSV, rebuilt when the
    /// number of fields changes.
    headerless: ObjectFields,
    /// The records' text, split off record by record.
    buf: BytesMut,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_lines() {
        let mut r = io::Cursor::new(b"short\nthis is far too long\nok".to_vec());
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (6, None));
        buf.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 8).unwrap(),
            (21, Some(20))
        );
        assert_eq!(buf, b"this is f");
        buf.clear();
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (2, None));
        assert_eq!(buf, b"ok");
        // A `\r\n` after exactly the cap is no content; one past it is.
        for (data, want) in [
            (&b"12345678\r\nx"[..], (10, None)),
            (b"123456789\r\nx", (11, Some(9))),
            (b"123456789\r", (10, Some(9))),
        ] {
            let mut r = io::Cursor::new(data.to_vec());
            buf.clear();
            assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), want);
        }
    }

    #[test]
    fn last_line_end_scans_backwards_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut data = b"a\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 40_000));
        fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(last_line_end(&f, 0, data.len() as u64).unwrap(), 2);
        assert_eq!(last_line_end(&f, 2, data.len() as u64).unwrap(), 2);
        assert_eq!(last_line_end(&f, 0, 2).unwrap(), 2);
        assert_eq!(last_line_end(&f, 0, 1).unwrap(), 0);
    }
}
