//! The declarative HTTP/REST source (`type = "http"`) and the machinery the
//! API connectors (`chargeover`, ...) are built on.
//!
//! | module | what it owns |
//! |---|---|
//! | `config` | the `[source]` table of `type = "http"` |
//! | `source` | validating it into one plan per stream; the [`Source`](tributary_core::Source) impl |
//! | `engine` | runs, windows, checkpoints, retries recorded in state, adaptive page size and step — shared with API connectors |
//! | `listing` | one page of a configured stream: templated request, pagination, records, parent/child |
//! | `window` | datetime formats and zones, ISO 8601 durations, window slicing |
//! | `client` | one HTTP client per connector: auth, rate limit, concurrency bound, error classification |
//! | `auth` | none, basic, bearer, API key, OAuth2 client credentials (cached token) |
//! | `template` | `{{ path }}` substitution into paths, params, headers and bodies |
//! | `records` | where the records are in a response (JSONPath or dotted path), record filter |
//! | `pagination` | offset, page number, cursor, next URL, `Link` header, keyset; stop rules; loop guard |

pub mod auth;
pub mod client;
pub mod config;
pub mod engine;
mod json_scan;
pub mod listing;
pub mod pagination;
pub mod raw_page;
pub mod records;
pub mod source;
pub mod template;
pub mod window;

pub use source::HttpSource;
