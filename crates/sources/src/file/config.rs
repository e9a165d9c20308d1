//! The `[source]` table of `type = "file"`, and its validation into the
//! settings the reader uses.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tributary_config::units::ByteSize;
use tributary_config::{ConfigError, SectionConfig};

/// `[source]` with `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// One stream per table key: `[source.streams.orders]`.
    pub streams: BTreeMap<String, FileStreamConfig>,
}

/// `[source.streams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStreamConfig {
    /// A file, or a glob (`data/orders-*.csv`); relative to the config file's
    /// directory. Glob metacharacters (`*?[`) in a literal name must be
    /// escaped as `[*]`, `[?]`, `[[]`.
    pub path: String,
    /// `csv` (the default, as in seed 002), `ndjson` or `text`.
    #[serde(default)]
    pub format: Format,
    /// CSV only: the first line names the fields (default true); false names
    /// them `field0`, `field1`, ...
    pub header: Option<bool>,
    /// CSV only: one ASCII character, default `,`; `"\t"` for TSV.
    pub delimiter: Option<char>,
    /// CSV only: one ASCII character, default `"`.
    pub quote: Option<char>,
    /// Tail growing files and pick up new files matching the glob: the stream
    /// never ends, and a line is read only once its newline is written.
    #[serde(default)]
    pub follow: bool,
    /// Fields forming the record key.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Overrides the connector's `runtime.batch_size` for this stream.
    pub batch_size: Option<usize>,
    /// The largest record (CSV record, NDJSON or text line) read: a longer
    /// one is a bad record holding its first this-many bytes, and reading
    /// resumes on the next line, so memory stays bounded whatever the input
    /// (a binary file read as text has no newlines; a 100 MB CSV field once
    /// cost 500 MiB). Default 1 MiB. `max_line_bytes` is its former name.
    #[serde(alias = "max_line_bytes")]
    pub max_record_bytes: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    /// Newline-delimited JSON objects (`json` is accepted as an alias, the
    /// seed's name for it).
    #[serde(alias = "json")]
    Ndjson,
    Text,
}

pub(crate) const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;

/// A stream's validated settings, with paths resolved against the config
/// file's directory.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub name: String,
    /// The path as written in the config, for messages.
    pub configured: String,
    /// The glob pattern actually matched: the config directory (escaped, so
    /// a `[` in it is not a character class) joined with `configured`.
    pub pattern: String,
    /// Set when `configured` is relative: checkpoint keys and bad-record
    /// locations are then relative to it too, so moving the whole connector
    /// directory keeps its checkpoints valid.
    pub relative_to: Option<PathBuf>,
    /// The deepest directory of the pattern without glob metacharacters:
    /// with `follow`, it must exist even if no file matches yet.
    pub search_dir: PathBuf,
    pub format: Format,
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub follow: bool,
    pub primary_key: Vec<String>,
    pub batch_size: usize,
    pub max_record_bytes: usize,
}

impl StreamSettings {
    /// The key of a matched file in checkpoints and locations.
    pub fn key_of(&self, path: &Path) -> String {
        let shown = match &self.relative_to {
            Some(base) => path.strip_prefix(base).unwrap_or(path),
            None => path,
        };
        shown.to_string_lossy().into_owned()
    }
}

/// Types and validates the section. Every error names the key and line.
pub(crate) fn resolve(
    section: &SectionConfig,
    default_batch_size: usize,
) -> Result<BTreeMap<String, Arc<StreamSettings>>, ConfigError> {
    let cfg: FileSourceConfig = section.parse()?;
    if cfg.streams.is_empty() {
        return Err(section.error(
            "streams",
            "at least one stream is required, e.g. [source.streams.orders] with path = \"data/orders.csv\"",
        ));
    }
    let mut out = BTreeMap::new();
    for (name, s) in cfg.streams {
        let key = |field: &str| format!("streams.{name}.{field}");
        if s.path.trim().is_empty() {
            return Err(section.error(&key("path"), "path must not be empty"));
        }
        if s.format != Format::Csv {
            for (set, field) in [
                (s.header.is_some(), "header"),
                (s.delimiter.is_some(), "delimiter"),
                (s.quote.is_some(), "quote"),
            ] {
                if set {
                    return Err(section.error(
                        &key(field),
                        format!("`{field}` applies only to format = \"csv\""),
                    ));
                }
            }
        }
        let delimiter = csv_char(section, &key("delimiter"), s.delimiter.unwrap_or(','))?;
        let quote = csv_char(section, &key("quote"), s.quote.unwrap_or('"'))?;
        if delimiter == quote {
            return Err(section.error(&key("quote"), "quote must differ from delimiter"));
        }
        crate::check_batch_size(section, &key("batch_size"), s.batch_size)?;
        let max_record_bytes = s
            .max_record_bytes
            .map_or(DEFAULT_MAX_RECORD_BYTES, |b| b.0)
            .clamp(1, usize::MAX as u64) as usize;

        let configured_path = Path::new(&s.path);
        let relative = configured_path.is_relative();
        let base = &section.base_dir;
        let pattern = if relative {
            let escaped_base = glob::Pattern::escape(&base.to_string_lossy());
            Path::new(&escaped_base)
                .join(configured_path)
                .to_string_lossy()
                .into_owned()
        } else {
            s.path.clone()
        };
        if let Err(e) = glob::Pattern::new(&pattern) {
            return Err(section.error(
                &key("path"),
                format!("invalid glob pattern `{}`: {e}", s.path),
            ));
        }
        out.insert(
            name.clone(),
            Arc::new(StreamSettings {
                search_dir: search_dir(&section.resolve_path(configured_path), configured_path),
                name: name.clone(),
                configured: s.path.clone(),
                pattern,
                relative_to: relative.then(|| base.clone()),
                format: s.format,
                header: s.header.unwrap_or(true),
                delimiter,
                quote,
                follow: s.follow,
                primary_key: s.primary_key,
                batch_size: s.batch_size.unwrap_or(default_batch_size).max(1),
                max_record_bytes,
            }),
        );
    }
    Ok(out)
}

fn csv_char(section: &SectionConfig, key: &str, c: char) -> Result<u8, ConfigError> {
    if !c.is_ascii() || c == '\n' || c == '\r' {
        return Err(section.error(
            key,
            format!("must be one ASCII character other than a newline, e.g. \",\" or \"\\t\"; got {c:?}"),
        ));
    }
    Ok(c as u8)
}

/// The directory part of `resolved` before the first component of the
/// configured path that holds a glob metacharacter (only the configured part
/// is inspected: the config directory itself may contain `[`).
fn search_dir(resolved: &Path, configured: &Path) -> PathBuf {
    let configured_parts: Vec<Component<'_>> = configured.components().collect();
    let first_glob = configured_parts
        .iter()
        .position(|c| c.as_os_str().to_string_lossy().contains(['*', '?', '[']));
    let resolved_parts: Vec<Component<'_>> = resolved.components().collect();
    // The configured components are the tail of the resolved ones.
    let offset = resolved_parts.len().saturating_sub(configured_parts.len());
    let keep = match first_glob {
        Some(i) => offset + i,
        // A plain file name: its directory.
        None => resolved_parts.len().saturating_sub(1),
    };
    resolved_parts[..keep].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::section;

    fn resolve_str(text: &str) -> Result<BTreeMap<String, Arc<StreamSettings>>, ConfigError> {
        resolve(&section(text, Path::new("/cfg/dir")), 100)
    }

    #[test]
    fn defaults_and_resolution() {
        let s = resolve_str(
            "[source]\ntype = \"file\"\n[source.streams.orders]\npath = \"data/orders-*.csv\"\n",
        )
        .unwrap();
        let o = &s["orders"];
        assert_eq!(o.format, Format::Csv);
        assert!(o.header && !o.follow);
        assert_eq!((o.delimiter, o.quote), (b',', b'"'));
        assert_eq!(o.pattern, "/cfg/dir/data/orders-*.csv");
        assert_eq!(o.search_dir, PathBuf::from("/cfg/dir/data"));
        assert_eq!(o.batch_size, 100);
        assert_eq!(
            o.key_of(Path::new("/cfg/dir/data/orders-1.csv")),
            "data/orders-1.csv"
        );
    }

    #[test]
    fn tab_delimiter_and_absolute_paths() {
        let s = resolve_str(
            "[source]\ntype = \"file\"\n[source.streams.t]\npath = \"/abs/x.tsv\"\ndelimiter = \"\\t\"\nbatch_size = 7\n",
        )
        .unwrap();
        let t = &s["t"];
        assert_eq!(t.delimiter, b'\t');
        assert_eq!(t.batch_size, 7);
        assert_eq!(t.search_dir, PathBuf::from("/abs"));
        assert_eq!(t.key_of(Path::new("/abs/x.tsv")), "/abs/x.tsv");
    }

    #[test]
    fn errors_name_the_key() {
        let err = resolve_str(
            "[source]\ntype = \"file\"\n[source.streams.t]\npath = \"x\"\nformat = \"ndjson\"\nheader = true\n",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.t.header"));
        assert!(err.message.contains("only to format = \"csv\""));

        let err = resolve_str(
            "[source]\ntype = \"file\"\n[source.streams.t]\npath = \"x\"\ndelimiter = \"é\"\n",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.t.delimiter"));

        let err = resolve_str(
            "[source]\ntype = \"file\"\n[source.streams.t]\npath = \"x\"\nfolow = true\n",
        )
        .unwrap_err();
        assert!(err.message.contains("folow"), "{err}");

        let err = resolve_str("[source]\ntype = \"file\"\n[source.streams.t]\npath = \"x[\"\n")
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams.t.path"));
        assert!(err.message.contains("invalid glob pattern"), "{err}");

        let err = resolve_str("[source]\ntype = \"file\"\nstreams = {}\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("source.streams"));
    }

    #[test]
    fn config_dir_metacharacters_are_literal() {
        let s = resolve(
            &section(
                "[source]\ntype = \"file\"\n[source.streams.t]\npath = \"a/*.csv\"\n",
                Path::new("/cfg/[x]"),
            ),
            10,
        )
        .unwrap();
        assert_eq!(s["t"].pattern, "/cfg/[[]x[]]/a/*.csv");
        assert_eq!(s["t"].search_dir, PathBuf::from("/cfg/[x]/a"));
    }
}
