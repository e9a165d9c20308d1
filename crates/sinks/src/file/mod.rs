//! The file sink: NDJSON files in one directory, a series of files per
//! record target, rotated by size.
//!
//! # File names
//!
//! `{dir}/{stem}-{seq:06}.ndjson`, where `seq` starts at `000001` and `stem`
//! is the record's target made safe for a file name ([`file_stem`]): every
//! character outside `[A-Za-z0-9._-]` becomes `_` (so `/`, `\`, NUL and
//! non-ASCII can never name another directory or an invalid file), a leading
//! `.` becomes `_` (no hidden files, no `..`), an empty target becomes `_`,
//! and stems are cut at 200 characters (file names are limited to 255 bytes).
//! Targets that sanitize to the same stem share one series of files.
//!
//! # Durability
//!
//! [`Sink::flush`] is the acknowledgement: it flushes every buffer, then
//! `fdatasync`s every file written since the previous flush (including files
//! closed by rotation), then fsyncs the directory if a file was created.
//! Only then does it return `Ok`, and only then may the runtime commit a
//! checkpoint.
//!
//! # Restart
//!
//! On the first write to a target, the sink continues the highest existing
//! `seq` for its stem. A crash can leave that file ending in a partial line
//! (data never acknowledged, so it will be re-delivered); the partial line is
//! truncated away, with a warning, before anything is appended.
//!
//! # After an I/O error
//!
//! A failed write may leave part of a line in a file, and a failed fsync
//! leaves the OS page cache in doubt, so the sink drops all its buffers and
//! open files. If it had accepted records since the last successful flush, it
//! then refuses every further `write` and `flush` with a retryable error:
//! those records may be lost, so acknowledging anything later would let the
//! runtime commit past them. Only a new sink, resumed from the last committed
//! checkpoint, may continue; it repairs any torn tail when it reopens a file.

mod config;

pub use config::FileSinkConfig;

use crate::ndjson::{encode_line, Format};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{BatchInfo, ConnectorError, Record, Sink};

/// Write buffer per open file.
const BUFFER: usize = 256 * 1024;
/// Written bytes after which the kernel is asked to start writing them
/// out, long before the flush's fsync waits for them ([`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 4 << 20;
/// Longest stem kept from a target, leaving room for `-{seq}.ndjson` within
/// the usual 255-byte file-name limit.
const MAX_STEM: usize = 200;
const EXTENSION: &str = ".ndjson";

/// The file-name stem of a target: see the [module docs](self).
pub fn file_stem(target: &str) -> String {
    let mut stem: String = target
        .chars()
        .take(MAX_STEM)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    if stem.is_empty() {
        stem.push('_');
    }
    stem
}

/// The file name of a target's `seq`-th file: `{stem}-{seq:06}.ndjson`.
pub fn file_name(target: &str, seq: u64) -> String {
    format!("{}-{seq:06}{EXTENSION}", file_stem(target))
}

/// The `seq` of `name` if it is a file of `stem`'s series.
fn parse_seq(name: &str, stem: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(EXTENSION)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// NDJSON files, one series per target. See the [module docs](self).
pub struct FileSink {
    dir: PathBuf,
    format: Format,
    max_file_size: u64,
    fsync: bool,
    /// Target of records that arrive without one: the connector's name.
    fallback_target: String,
    /// Raw target -> index in `series`.
    routes: HashMap<String, usize>,
    /// The previous record's route: batches are usually one stream's, so
    /// most records skip the hash lookup.
    last_route: Option<(String, usize)>,
    /// Stem -> index in `series`, consulted once per new target.
    stems: HashMap<String, usize>,
    series: Vec<Series>,
    /// Files closed by rotation since the last flush, still to be synced.
    pending_sync: Vec<(PathBuf, File)>,
    dir_ready: bool,
    /// A file was created since the last flush: its directory entry needs an fsync.
    sync_dir: bool,
    /// `dir` itself was created: its entry in the parent needs an fsync.
    sync_parent: bool,
    /// Records were accepted since the last successful flush.
    unacked: bool,
    /// Set when unacknowledged records were dropped after an I/O error.
    poisoned: Option<String>,
    /// The line being written, reused so that encoding does not allocate.
    line: Vec<u8>,
}

/// The files of one stem.
struct Series {
    stem: String,
    open: Option<OpenFile>,
}

struct OpenFile {
    seq: u64,
    path: PathBuf,
    writer: BufWriter<File>,
    /// Bytes in the file, buffered ones included.
    size: u64,
    /// Written (or repaired) since the last flush.
    dirty: bool,
    /// Bytes below this offset are synced or on their way to the disk.
    writeback_from: u64,
}

impl FileSink {
    /// Types and validates the `[sink]` table; `dir` is resolved against the
    /// config file's directory. Nothing is created until the first write.
    pub fn from_section(
        section: &SectionConfig,
        ctx: &crate::SinkContext,
    ) -> Result<Self, ConfigError> {
        let mut config: FileSinkConfig = section.parse()?;
        if config.dir.as_os_str().is_empty() {
            return Err(section.error("dir", "must not be empty"));
        }
        if config.max_file_size.0 == 0 {
            return Err(section.error("max_file_size", "must be greater than 0"));
        }
        config.dir = section.resolve_path(&config.dir);
        Ok(Self::new(config, &ctx.connector))
    }

    /// A sink writing into `config.dir` as given (not resolved).
    pub fn new(config: FileSinkConfig, connector: &str) -> Self {
        FileSink {
            dir: config.dir,
            format: config.format,
            max_file_size: config.max_file_size.0.max(1),
            fsync: config.fsync,
            fallback_target: if connector.is_empty() {
                "_".into()
            } else {
                connector.into()
            },
            routes: HashMap::new(),
            last_route: None,
            stems: HashMap::new(),
            series: Vec::new(),
            pending_sync: Vec::new(),
            dir_ready: false,
            sync_dir: false,
            sync_parent: false,
            unacked: false,
            poisoned: None,
            line: Vec::with_capacity(4096),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_poisoned(&self) -> Result<(), ConnectorError> {
        match &self.poisoned {
            Some(reason) => Err(ConnectorError::retryable(format!(
                "file sink in {} dropped unacknowledged records after an I/O error ({reason}); \
                 it must be reopened and resume from the last committed checkpoint",
                self.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// Drops every buffer and open file without writing them, after an I/O
    /// error; poisons the sink if that lost accepted records.
    fn fail(&mut self, err: ConnectorError) -> ConnectorError {
        for series in &mut self.series {
            if let Some(f) = series.open.take() {
                discard(f.writer);
            }
        }
        self.pending_sync.clear();
        if self.unacked {
            self.poisoned = Some(err.to_string());
        }
        err
    }

    /// The series of `target`, registered (without I/O) on first sight.
    fn series_index(&mut self, target: &str) -> usize {
        if let Some(&i) = self.routes.get(target) {
            return i;
        }
        let stem = file_stem(target);
        let i = match self.stems.get(&stem) {
            Some(&i) => i,
            None => {
                let i = self.series.len();
                self.stems.insert(stem.clone(), i);
                self.series.push(Series { stem, open: None });
                i
            }
        };
        self.routes.insert(target.to_string(), i);
        i
    }

    /// Appends `self.line` to series `i`, opening or rotating its file first.
    fn append(&mut self, i: usize) -> Result<(), ConnectorError> {
        let len = self.line.len() as u64;
        let needs_rotation = match &self.series[i].open {
            None => {
                let file = self.open_latest(i)?;
                self.series[i].open = Some(file);
                false
            }
            Some(f) => f.size > 0 && f.size + len > self.max_file_size,
        };
        if needs_rotation {
            self.rotate(i)?;
        }
        let Some(file) = self.series[i].open.as_mut() else {
            // Unreachable: opened above, and rotate always leaves a file open.
            return Err(ConnectorError::fatal(
                "file sink: no open file after opening one",
            ));
        };
        file.writer
            .write_all(&self.line)
            .map_err(|e| io_error("writing", &file.path, &e))?;
        file.size += len;
        file.dirty = true;
        if self.fsync && file.size - file.writeback_from >= WRITEBACK_CHUNK {
            let in_file = file.size - file.writer.buffer().len() as u64;
            start_writeback(file.writer.get_ref(), file.writeback_from, in_file);
            file.writeback_from = in_file;
        }
        Ok(())
    }

    /// Opens the highest existing file of series `i`, or its first one.
    fn open_latest(&mut self, i: usize) -> Result<OpenFile, ConnectorError> {
        if !self.dir_ready {
            if !self.dir.is_dir() {
                std::fs::create_dir_all(&self.dir)
                    .map_err(|e| io_error("creating directory", &self.dir, &e))?;
                self.sync_parent = true;
            }
            self.dir_ready = true;
        }
        let stem = &self.series[i].stem;
        let mut highest = None;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| io_error("listing", &self.dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing", &self.dir, &e))?;
            if let Some(seq) = entry.file_name().to_str().and_then(|n| parse_seq(n, stem)) {
                highest = highest.max(Some(seq));
            }
        }
        self.open_seq(i, highest.unwrap_or(1))
    }

    /// Opens file `seq` of series `i`: created empty, or an existing one
    /// with its torn tail (if any) cut off.
    fn open_seq(&mut self, i: usize, seq: u64) -> Result<OpenFile, ConnectorError> {
        let path = self
            .dir
            .join(format!("{}-{seq:06}{EXTENSION}", self.series[i].stem));
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let (file, size, repaired) = match options.clone().create_new(true).open(&path) {
            Ok(file) => {
                self.sync_dir = true;
                (file, 0, false)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut file = options
                    .open(&path)
                    .map_err(|e| io_error("opening", &path, &e))?;
                let (size, repaired) =
                    repair_tail(&mut file, &path).map_err(|e| io_error("repairing", &path, &e))?;
                (file, size, repaired)
            }
            Err(e) => return Err(io_error("creating", &path, &e)),
        };
        Ok(OpenFile {
            seq,
            path,
            writer: BufWriter::with_capacity(BUFFER, file),
            size,
            dirty: repaired,
            writeback_from: size,
        })
    }

    /// Closes the current file of series `i` (it is synced at the next flush)
    /// and opens the next `seq`.
    fn rotate(&mut self, i: usize) -> Result<(), ConnectorError> {
        let Some(old) = self.series[i].open.take() else {
            return Ok(());
        };
        let mut writer = old.writer;
        if let Err(e) = writer.flush() {
            discard(writer);
            return Err(io_error("writing", &old.path, &e));
        }
        let (file, _) = writer.into_parts();
        self.pending_sync.push((old.path, file));
        let next = self.open_seq(i, old.seq + 1)?;
        self.series[i].open = Some(next);
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), ConnectorError> {
        for series in &mut self.series {
            let Some(f) = series.open.as_mut().filter(|f| f.dirty) else {
                continue;
            };
            f.writer
                .flush()
                .map_err(|e| io_error("writing", &f.path, &e))?;
            if self.fsync {
                f.writer
                    .get_ref()
                    .sync_data()
                    .map_err(|e| io_error("syncing", &f.path, &e))?;
            }
            f.dirty = false;
            f.writeback_from = f.size;
        }
        for (path, file) in self.pending_sync.drain(..) {
            if self.fsync {
                file.sync_data()
                    .map_err(|e| io_error("syncing", &path, &e))?;
            }
        }
        if self.sync_dir {
            if self.fsync {
                sync_dir(&self.dir)?;
            }
            self.sync_dir = false;
        }
        if self.sync_parent {
            if self.fsync {
                if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
            self.sync_parent = false;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn check(&mut self) -> Result<(), ConnectorError> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(ConnectorError::config(format!(
                "file sink: {} exists and is not a directory",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Appends each record to its target's series.
    async fn write_records(
        &mut self,
        batch: Option<BatchInfo<'_>>,
        records: &[Record],
    ) -> Result<(), ConnectorError> {
        self.check_poisoned()?;
        let default_target = batch.map(|b| b.target);
        for record in records {
            let target = record
                .target
                .as_deref()
                .or(default_target)
                .unwrap_or(&self.fallback_target);
            self.line.clear();
            encode_line(self.format, record, Some(target), &mut self.line)?;
            let i = match &self.last_route {
                Some((last, i)) if last == target => *i,
                _ => {
                    let target = target.to_string();
                    let i = self.series_index(&target);
                    self.last_route = Some((target, i));
                    i
                }
            };
            if let Err(e) = self.append(i) {
                return Err(self.fail(e));
            }
            self.unacked = true;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.check_poisoned()?;
        if let Err(e) = self.flush_all() {
            return Err(self.fail(e));
        }
        self.unacked = false;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.flush().await?;
        for series in &mut self.series {
            series.open = None;
        }
        Ok(())
    }
}

fn io_error(action: &str, path: &Path, err: &io::Error) -> ConnectorError {
    ConnectorError::from_io(&format!("file sink: {action} {}", path.display()), err)
}

/// Drops a writer without flushing its buffer (`BufWriter`'s `Drop` would
/// write it, possibly after a partial line).
fn discard(writer: BufWriter<File>) {
    let (file, _unwritten) = writer.into_parts();
    drop(file);
}

/// Asks the kernel to start writing `from..to` of `file` to the disk now,
/// without waiting: the flush's fsync then finds most of a flush interval's
/// data already written instead of writing all of it while the pipeline
/// stands still (bench/README.md, "fsync without the stall"). A hint only:
/// the fsync still reports every error, so this one's are ignored.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
    else {
        return;
    };
    // SAFETY: the descriptor belongs to `file`, open for the whole call;
    // sync_file_range reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

fn sync_dir(dir: &Path) -> Result<(), ConnectorError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, &e))
}

/// Cuts `file` back to just after its last `'\n'` if it ends mid-line.
/// Returns the resulting size and whether anything was cut.
fn repair_tail(file: &mut File, path: &Path) -> io::Result<(u64, bool)> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            break start + pos as u64 + 1;
        }
        end = start;
    };
    if keep == len {
        return Ok((len, false));
    }
    file.set_len(keep)?;
    tracing::warn!(
        path = %path.display(),
        removed_bytes = len - keep,
        "file sink: truncated a partial last line left by an interrupted write \
         (it was never acknowledged and will be re-delivered)"
    );
    Ok((keep, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_file_names() {
        assert_eq!(file_stem("billing.orders"), "billing.orders");
        assert_eq!(file_stem("a/b\\c"), "a_b_c");
        assert_eq!(file_stem("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(file_stem(".."), "_.");
        assert_eq!(file_stem(".hidden"), "_hidden");
        assert_eq!(file_stem("nul\0byte"), "nul_byte");
        assert_eq!(file_stem("zürich café"), "z_rich_caf_");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("Ok-1_2.x"), "Ok-1_2.x");
        assert_eq!(file_stem(&"x".repeat(300)).len(), MAX_STEM);
        assert_eq!(file_name("a/b", 7), "a_b-000007.ndjson");
        assert_eq!(file_name("t", 1_234_567), "t-1234567.ndjson");
    }

    #[test]
    fn seq_parsing_does_not_confuse_similar_stems() {
        assert_eq!(parse_seq("a-000001.ndjson", "a"), Some(1));
        assert_eq!(parse_seq("a-1234567.ndjson", "a"), Some(1_234_567));
        assert_eq!(parse_seq("a-b-000001.ndjson", "a"), None);
        assert_eq!(parse_seq("a-000001-000002.ndjson", "a"), None);
        assert_eq!(parse_seq("a-000001.ndjson", "a-000001"), None);
        assert_eq!(parse_seq("a-.ndjson", "a"), None);
        assert_eq!(parse_seq("a-000001.ndjson.tmp", "a"), None);
        assert_eq!(parse_seq("a-+1.ndjson", "a"), None);
    }
}
