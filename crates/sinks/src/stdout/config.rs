//! `[sink] type = "stdout"`: NDJSON on standard output.
//!
//! ```toml
//! [sink]
//! type = "stdout"
//! format = "value"     # or "envelope"; see below
//! ```
//!
//! - `format = "value"` (default): one line per record, the record's `value`.
//! - `format = "envelope"`: one line per record,
//!   `{"target":"t","key":<json|null>,"op":"upsert"|"delete","headers":[["name","value"],..],"value":<json>}`.
//!   Headers are `[name, value]` pairs, keeping their order and repeated names.
//!
//! Unknown keys are errors (typos must not be silently ignored).

use crate::Format;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    #[serde(default)]
    pub format: Format,
}
