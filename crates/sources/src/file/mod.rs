//! `type = "file"`: CSV, NDJSON and text files (seed 002's File Source).
//!
//! ```toml
//! [source]
//! type = "file"
//! [source.streams.orders]          # stream name = table key
//! path = "data/orders-*.csv"       # a file or a glob, relative to the config file
//! format = "csv"                   # csv (default) | ndjson | text
//! header = true                    # csv: first line names the fields; false: field0, field1, ...
//! delimiter = ","                  # csv: one ASCII char; "\t" for TSV
//! quote = "\""                     # csv: one ASCII char
//! follow = false                   # tail growing files, pick up new ones; never ends
//! primary_key = ["id"]             # record key from these fields
//! # batch_size = 1000              # overrides runtime.batch_size
//! # max_record_bytes = "1MiB"      # a longer record is a bad record (see FileStreamConfig)
//! ```
//!
//! **Records.** CSV: an object of strings keyed by the header (or `field0`,
//! ...); quoted fields may hold delimiters, doubled quotes and newlines, so a
//! record may span lines. NDJSON: the parsed object; empty lines are skipped.
//! Text: `{"line": "..."}` (without the line terminator; `\r\n` is accepted).
//!
//! **Order and progress.** Matching files are read in name order, each from
//! its checkpointed offset ([`FileCheckpoint`]); a batch may span files.
//! Without `follow`, files are listed once per run, each is read to its
//! end (a last line without a newline is a record) and the run ends. A
//! later run (interval or cron schedule) reads whatever was appended or
//! added since. With `follow`, a line is read only once its `\n` is written
//! (a writer's partial line is never split into two records), the reader
//! returns `Idle` when caught up, and the next poll lists the files again.
//!
//! **Load mode.** Records are `INITIAL_LOAD` until the stream first catches
//! up; that poll returns an empty batch whose checkpoint says
//! `initial_done: true`, and later records are `INCREMENTAL_LOAD`.
//!
//! **Bad input** (invalid JSON, a JSON value that is not an object, a CSV row
//! whose field count differs from the header's, invalid UTF-8, a record over
//! `max_record_bytes`, a CSV quote that swallows lines) becomes a
//! [`BadRecord`](tributary_core::BadRecord) located `path:line` (the line the
//! record starts on), its raw input kept up to the cap; reading goes on and
//! the checkpoint moves past it: the runtime's bad-record policy decides.
//! CSV records whose quoting is suspect are reported as their first line,
//! and the lines after it are read as rows (`csv_records.rs` says why).
//!
//! **Limits.** A file replaced by a new file at least as long as the old
//! offset is not detected as replaced.

mod config;
mod csv_records;
mod reader;
mod source;
#[cfg(test)]
mod tests;

pub use config::{FileSourceConfig, FileStreamConfig, Format};
pub use reader::{FileCheckpoint, FilePosition};
pub use source::{FileReader, FileSource};
