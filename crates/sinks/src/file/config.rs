//! `[sink] type = "file"`: NDJSON files, one series per target, rotated by size.
//!
//! ```toml
//! [sink]
//! type = "file"
//! dir = "out"                # required; relative to the config file's directory
//! format = "value"           # or "envelope"
//! max_file_size = "256MiB"   # rotate before a file would grow past this
//! fsync = true               # fsync files and directory on every flush
//! ```
//!
//! - `format = "value"` (default): each line is the record's `value`.
//! - `format = "envelope"`: each line is
//!   `{"target":"t","key":<json|null>,"op":"upsert"|"delete","headers":[["name","value"],..],"value":<json>}`.
//!   Headers are `[name, value]` pairs rather than an object so that order
//!   and repeated names (Kafka headers) survive.
//! - `max_file_size`: an integer of bytes or a size with a unit (`"64MiB"`,
//!   `"100MB"`). A line is never split: a file is closed before the line that
//!   would push it past the limit, and a single line larger than the limit
//!   gets a file of its own.
//! - `fsync = false` makes a flush hand the data to the OS only: it then
//!   survives a crash of tributary but not of the machine. The default, `true`,
//!   is what makes a flush a durable acknowledgement (DESIGN.md invariant 1).
//!
//! Files are named `{dir}/{target}-{seq:06}.ndjson`, `seq` starting at
//! `000001`; see [`crate::file`] for how targets become file names.
//! Unknown keys are errors.

use crate::Format;
use serde::Deserialize;
use std::path::PathBuf;
use tributary_config::units::ByteSize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// As written; [`crate::FileSink::from_section`] resolves it against the
    /// config file's directory.
    pub dir: PathBuf,
    #[serde(default)]
    pub format: Format,
    #[serde(default = "default_max_file_size")]
    pub max_file_size: ByteSize,
    #[serde(default = "default_fsync")]
    pub fsync: bool,
}

impl FileSinkConfig {
    /// A config with every default, writing to `dir` (taken as is).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            format: Format::default(),
            max_file_size: default_max_file_size(),
            fsync: default_fsync(),
        }
    }
}

fn default_max_file_size() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_fsync() -> bool {
    true
}
