//! How a listing is paged: where the position goes in each request, how the
//! next position is read from each response, and when the listing is over.
//!
//! The position ([`PageState`]) is plain data that goes into the stream's
//! checkpoint, so a crash resumes at the page it reached. Stop rules err on
//! the side of one extra request over a missed page: an empty page always
//! ends a listing, so a rule that is unsure (a missing `has_more` field, an
//! unparseable total) never ends it early. The loop guard turns an API that
//! hands back the same token forever into a fatal error instead of an
//! endless, duplicate-producing run.

use reqwest::header::LINK;
use serde::Deserialize;
use serde_json::Value;
use tributary_core::secret::redact;
use url::Url;

use super::client::{display_url, set_query_param, HttpRequest, HttpResponse};
use super::records::{check_path, lookup};

/// `[source.streams.X.pagination]`, `type = "none" | "offset" | "page_number"
/// | "cursor" | "next_url" | "link_header"`. The stop rules (`has_more_path`,
/// `total_path`, ...) are written in the same table; see [`StopRules`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawPagination")]
pub enum PaginationConfig {
    /// One request per listing.
    #[default]
    None,
    /// `?offset=0&limit=100`, then `offset=100`, ... (the offset advances by
    /// the records actually returned, so an API that caps the page size
    /// below `page_size` loses nothing).
    Offset {
        offset_param: String,
        limit_param: String,
        page_size: u64,
        stop: StopRules,
        location: ParamLocation,
    },
    /// `?page=1&per_page=100`, then `page=2`, ...
    PageNumber {
        page_param: String,
        /// `None` (written `size_param = ""`) sends no size.
        size_param: Option<String>,
        page_size: u64,
        first_page: u64,
        stop: StopRules,
        location: ParamLocation,
    },
    /// The next request carries a token read from this response's body.
    Cursor {
        cursor_param: String,
        cursor_path: String,
        size_param: Option<String>,
        page_size: Option<u64>,
        stop: StopRules,
        location: ParamLocation,
    },
    /// The body holds the next page's whole URL (absolute or relative).
    NextUrl {
        next_url_path: String,
        size_param: Option<String>,
        page_size: Option<u64>,
        stop: StopRules,
    },
    /// The next page's URL is in a `Link: <...>; rel="next"` header (RFC 8288).
    LinkHeader {
        size_param: Option<String>,
        page_size: Option<u64>,
        stop: StopRules,
    },
}

/// Where pagination parameters go: the query string (default) or, for POST
/// search endpoints, fields of the JSON body (dotted names nest: `page.size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamLocation {
    #[default]
    Query,
    Body,
}

/// When a listing is over, besides an empty page (always) and a missing next
/// cursor/URL/link. Paths are dotted or JSONPath, looked up in the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRules {
    /// Stop when a page has fewer records than the page size. Default:
    /// false for every style: only the API says a listing is over (an
    /// empty page, `has_more`, a total, no next cursor/link), because an
    /// API that caps the page size below the one asked for returns short
    /// pages all along. Set it for APIs known to fill every page but the
    /// last; it saves the one request that confirms the end.
    pub stop_on_short_page: Option<bool>,
    /// A boolean; `false` ends the listing (a missing field does not).
    pub has_more_path: Option<String>,
    /// The total record count: ends the listing once that many are read.
    pub total_path: Option<String>,
    /// The total page count: ends the listing at that page.
    pub total_pages_path: Option<String>,
    /// A safety cap on pages per listing.
    pub max_pages: Option<u64>,
}

/// Position inside one listing; serialized into the stream's checkpoint so a
/// crash resumes at the page it reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(default)]
pub struct PageState {
    /// Records before this page: the `offset` parameter for offset
    /// pagination, and a running count for the others (for `total_path`).
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_url: Option<String>,
    /// Pages fetched so far in this listing.
    pub pages: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaginationError {
    #[error(
        "the API returned the same page token `{token}` twice; stopping to avoid an endless loop"
    )]
    Loop { token: String },
    #[error("the next-page token at `{path}` is {found}; expected a string or a number")]
    BadToken { path: String, found: String },
}

/// Applies a [`PaginationConfig`] to requests and responses.
#[derive(Debug, Clone)]
pub struct Paginator {
    config: PaginationConfig,
    short_page_stops: bool,
}

impl Paginator {
    /// Every path this pagination reads from a response body.
    pub fn body_paths(&self) -> Vec<&str> {
        let mut paths = Vec::new();
        match &self.config {
            PaginationConfig::Cursor { cursor_path, .. } => paths.push(cursor_path.as_str()),
            PaginationConfig::NextUrl { next_url_path, .. } => paths.push(next_url_path.as_str()),
            _ => {}
        }
        if let Some(stop) = stops(&self.config) {
            paths.extend(
                [
                    &stop.has_more_path,
                    &stop.total_path,
                    &stop.total_pages_path,
                ]
                .into_iter()
                .flatten()
                .map(String::as_str),
            );
        }
        paths
    }

    pub fn new(config: &PaginationConfig) -> Paginator {
        // A short page ends nothing unless the config trusts short pages:
        // an API that caps the page size below the one asked for returns
        // short pages all along (issue 18: 5,493 of 5,893 versions lost).
        let short_page_stops = stops(config)
            .and_then(|s| s.stop_on_short_page)
            .unwrap_or(false);
        Paginator {
            config: config.clone(),
            short_page_stops,
        }
    }

    pub fn config(&self) -> &PaginationConfig {
        &self.config
    }

    /// The configured page size, if the style has one. Adaptive shrinking
    /// happens in the caller, which passes the size to use to
    /// [`apply`](Self::apply) and [`advance`](Self::advance).
    pub fn page_size(&self) -> Option<u64> {
        match &self.config {
            PaginationConfig::None => None,
            PaginationConfig::Offset { page_size, .. }
            | PaginationConfig::PageNumber { page_size, .. } => Some(*page_size),
            PaginationConfig::Cursor { page_size, .. }
            | PaginationConfig::NextUrl { page_size, .. }
            | PaginationConfig::LinkHeader { page_size, .. } => *page_size,
        }
    }

    pub fn first(&self) -> PageState {
        match &self.config {
            PaginationConfig::PageNumber { first_page, .. } => PageState {
                page: Some(*first_page),
                ..PageState::default()
            },
            _ => PageState::default(),
        }
    }

    /// Puts the position into the request: query parameters (replacing one
    /// of the same name), body fields (`location = "body"`), or, for
    /// `next_url` / `link_header` once a next URL is known, the whole URL.
    pub fn apply(&self, state: &PageState, page_size: Option<u64>, request: &mut HttpRequest) {
        let size = page_size.or_else(|| self.page_size());
        match &self.config {
            PaginationConfig::None => {}
            PaginationConfig::Offset {
                offset_param,
                limit_param,
                location,
                ..
            } => {
                set_param(request, *location, offset_param, Value::from(state.offset));
                if let Some(size) = size {
                    set_param(request, *location, limit_param, Value::from(size));
                }
            }
            PaginationConfig::PageNumber {
                page_param,
                size_param,
                first_page,
                location,
                ..
            } => {
                let page = state.page.unwrap_or(*first_page);
                set_param(request, *location, page_param, Value::from(page));
                if let (Some(param), Some(size)) = (size_param, size) {
                    set_param(request, *location, param, Value::from(size));
                }
            }
            PaginationConfig::Cursor {
                cursor_param,
                size_param,
                location,
                ..
            } => {
                if let Some(cursor) = &state.cursor {
                    set_param(
                        request,
                        *location,
                        cursor_param,
                        Value::from(cursor.as_str()),
                    );
                }
                if let (Some(param), Some(size)) = (size_param, size) {
                    set_param(request, *location, param, Value::from(size));
                }
            }
            PaginationConfig::NextUrl { size_param, .. }
            | PaginationConfig::LinkHeader { size_param, .. } => {
                if let Some(next) = &state.next_url {
                    match Url::parse(next) {
                        Ok(url) => request.url = url,
                        // Only a hand-edited checkpoint gets here (advance
                        // stores absolute URLs); restarting the listing
                        // re-reads pages but skips none.
                        Err(e) => tracing::warn!(
                            next_url = %redact(next),
                            error = %e,
                            "the checkpointed next-page URL is not a URL; starting the listing over"
                        ),
                    }
                }
                if let (Some(param), Some(size)) = (size_param, size) {
                    set_query_param(&mut request.url, param, &size.to_string());
                }
            }
        }
    }

    /// The position after `state`'s page if that page comes back full and
    /// the listing goes on: what [`advance`](Self::advance) would return
    /// then. Only offset and page-number styles know it before the response
    /// arrives, which lets a reader request the following page early.
    pub fn predict(&self, state: &PageState, page_size: Option<u64>) -> Option<PageState> {
        let size = page_size.or_else(|| self.page_size())?;
        let pages = state.pages.saturating_add(1);
        if stops(&self.config)?
            .max_pages
            .is_some_and(|max| pages >= max)
        {
            return None;
        }
        let base = PageState {
            offset: state.offset.saturating_add(size),
            pages,
            ..PageState::default()
        };
        match &self.config {
            PaginationConfig::Offset { .. } => Some(base),
            PaginationConfig::PageNumber { first_page, .. } => Some(PageState {
                page: Some(state.page.unwrap_or(*first_page).saturating_add(1)),
                ..base
            }),
            _ => None,
        }
    }

    /// The position of the next page, or `None` when the listing is done.
    ///
    /// Stops on: an empty page (always), a short page (when enabled),
    /// `has_more` false, `offset + records >= total`, `page >= total_pages`,
    /// `max_pages` reached, or no next cursor / URL / `rel="next"` link. A
    /// next token or URL equal to the current one is [`PaginationError::Loop`],
    /// which the caller should treat as fatal.
    pub fn advance(
        &self,
        state: &PageState,
        page_size: Option<u64>,
        response: &HttpResponse,
        body: &Value,
        records: usize,
    ) -> Result<Option<PageState>, PaginationError> {
        let Some(stop) = stops(&self.config) else {
            return Ok(None);
        };
        if records == 0 {
            return Ok(None);
        }
        let records = records as u64;
        let pages = state.pages.saturating_add(1);
        let seen = state.offset.saturating_add(records);
        if stop.max_pages.is_some_and(|max| pages >= max) {
            return Ok(None);
        }
        if let Some(path) = &stop.has_more_path {
            if lookup(body, path).and_then(truthiness) == Some(false) {
                return Ok(None);
            }
        }
        if let Some(path) = &stop.total_path {
            if lookup(body, path)
                .and_then(count)
                .is_some_and(|total| seen >= total)
            {
                return Ok(None);
            }
        }
        if let Some(path) = &stop.total_pages_path {
            let current = match &self.config {
                PaginationConfig::PageNumber { first_page, .. } => state
                    .page
                    .unwrap_or(*first_page)
                    .saturating_sub(*first_page)
                    .saturating_add(1),
                _ => pages,
            };
            if lookup(body, path)
                .and_then(count)
                .is_some_and(|total| current >= total)
            {
                return Ok(None);
            }
        }
        if self.short_page_stops {
            if let Some(size) = page_size.or_else(|| self.page_size()) {
                if records < size {
                    return Ok(None);
                }
            }
        }
        let base = PageState {
            offset: seen,
            pages,
            ..PageState::default()
        };
        let next = match &self.config {
            PaginationConfig::None => return Ok(None),
            PaginationConfig::Offset { .. } => base,
            PaginationConfig::PageNumber { first_page, .. } => PageState {
                page: Some(state.page.unwrap_or(*first_page).saturating_add(1)),
                ..base
            },
            PaginationConfig::Cursor { cursor_path, .. } => {
                let Some(cursor) = token_at(body, cursor_path)? else {
                    return Ok(None);
                };
                if state.cursor.as_deref() == Some(cursor.as_str()) {
                    return Err(PaginationError::Loop {
                        token: redact(&cursor),
                    });
                }
                PageState {
                    cursor: Some(cursor),
                    ..base
                }
            }
            PaginationConfig::NextUrl { next_url_path, .. } => {
                let Some(raw) = token_at(body, next_url_path)? else {
                    return Ok(None);
                };
                let url = response
                    .url
                    .join(&raw)
                    .map_err(|e| PaginationError::BadToken {
                        path: next_url_path.clone(),
                        found: format!("`{}`, which is not a URL ({e})", redact(&raw)),
                    })?;
                check_url_loop(state, response, &url)?;
                PageState {
                    next_url: Some(url.into()),
                    ..base
                }
            }
            PaginationConfig::LinkHeader { .. } => {
                let Some(raw) = next_link(response) else {
                    return Ok(None);
                };
                let url = response
                    .url
                    .join(&raw)
                    .map_err(|e| PaginationError::BadToken {
                        path: "Link header".into(),
                        found: format!("`{}`, which is not a URL ({e})", redact(&raw)),
                    })?;
                check_url_loop(state, response, &url)?;
                PageState {
                    next_url: Some(url.into()),
                    ..base
                }
            }
        };
        Ok(Some(next))
    }
}

fn stops(config: &PaginationConfig) -> Option<&StopRules> {
    match config {
        PaginationConfig::None => None,
        PaginationConfig::Offset { stop, .. }
        | PaginationConfig::PageNumber { stop, .. }
        | PaginationConfig::Cursor { stop, .. }
        | PaginationConfig::NextUrl { stop, .. }
        | PaginationConfig::LinkHeader { stop, .. } => Some(stop),
    }
}

/// A next URL equal to the current page's (as recorded, or as fetched) can
/// only lead back here.
fn check_url_loop(
    state: &PageState,
    response: &HttpResponse,
    next: &Url,
) -> Result<(), PaginationError> {
    if state.next_url.as_deref() == Some(next.as_str()) || *next == response.url {
        return Err(PaginationError::Loop {
            token: display_url(next),
        });
    }
    Ok(())
}

/// The token at `path`: `None` when absent, null or empty (the last page);
/// numbers are accepted as their decimal text.
fn token_at(body: &Value, path: &str) -> Result<Option<String>, PaginationError> {
    match lookup(body, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(PaginationError::BadToken {
            path: path.to_string(),
            found: describe(other),
        }),
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        _ => "a value",
    };
    let mut text = redact(&value.to_string());
    if let Some((cut, _)) = text.char_indices().nth(60) {
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} ({text})")
}

/// A `has_more`-style flag; `None` when it is neither clearly true nor false.
fn truthiness(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A count, from a number or a numeric string.
fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Sets a pagination parameter where the config says.
fn set_param(request: &mut HttpRequest, location: ParamLocation, name: &str, value: Value) {
    if location == ParamLocation::Body {
        let body = request
            .body
            .get_or_insert_with(|| Value::Object(serde_json::Map::new()));
        if set_body_field(body, name, value.clone()) {
            return;
        }
        // Config validation should prevent this; the query is the only
        // place left that the server might read it from.
        tracing::warn!(
            param = name,
            "the request body is not a JSON object; sending the pagination parameter in the query"
        );
    }
    let text = match value {
        Value::String(s) => s,
        other => other.to_string(),
    };
    set_query_param(&mut request.url, name, &text);
}

/// Sets `a.b.c` in a JSON object, creating intermediate objects. False when
/// something on the way is not an object.
fn set_body_field(body: &mut Value, name: &str, value: Value) -> bool {
    let mut current = body;
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Value::Object(map) = current else {
            return false;
        };
        if segments.peek().is_none() {
            map.insert(segment.to_string(), value);
            return true;
        }
        current = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    false
}

/// The target of the first `rel="next"` link among all `Link` headers.
fn next_link(response: &HttpResponse) -> Option<String> {
    response
        .headers
        .get_all(LINK)
        .iter()
        .flat_map(|value| parse_links(&String::from_utf8_lossy(value.as_bytes())))
        .find(|link| link.rels.iter().any(|rel| rel == "next"))
        .map(|link| link.target)
}

#[derive(Debug, PartialEq, Eq)]
struct Link {
    target: String,
    /// Lower-cased relation types (`rel="next last"` has two).
    rels: Vec<String>,
}

/// Parses a `Link` header value (RFC 8288 §3): comma-separated
/// `<target>; param=value; param="quoted, value"`. Commas inside `<...>` or
/// quotes do not split links. Malformed links are skipped, never fatal.
fn parse_links(header: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut p = Cursor {
        text: header,
        pos: 0,
    };
    loop {
        p.skip(|c| c.is_whitespace() || c == ',');
        let Some(c) = p.peek() else { break };
        if c != '<' {
            p.skip_link();
            continue;
        }
        p.pos += 1;
        let Some(end) = p.rest().find('>') else { break };
        let target = p.rest()[..end].trim().to_string();
        p.pos += end + 1;
        let mut rel: Option<String> = None;
        loop {
            p.skip(char::is_whitespace);
            match p.peek() {
                None | Some(',') => break,
                Some(';') => p.pos += 1,
                Some(_) => {
                    // Garbage after the target: drop this link.
                    p.skip_link();
                    rel = None;
                    break;
                }
            }
            p.skip(char::is_whitespace);
            let name = p
                .take_while(|c| !(c.is_whitespace() || matches!(c, '=' | ';' | ',')))
                .to_ascii_lowercase();
            p.skip(char::is_whitespace);
            let value = if p.peek() == Some('=') {
                p.pos += 1;
                p.skip(char::is_whitespace);
                if p.peek() == Some('"') {
                    p.quoted()
                } else {
                    p.take_while(|c| !(c.is_whitespace() || matches!(c, ';' | ',')))
                        .to_string()
                }
            } else {
                String::new()
            };
            // RFC 8288: only the first `rel` counts.
            if name == "rel" && rel.is_none() {
                rel = Some(value);
            }
        }
        if let Some(rel) = rel {
            links.push(Link {
                target,
                rels: rel
                    .split_whitespace()
                    .map(|r| r.to_ascii_lowercase())
                    .collect(),
            });
        }
    }
    links
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn skip(&mut self, skip: impl Fn(char) -> bool) {
        self.take_while(skip);
    }

    /// A quoted-string starting at `"`, with `\` escapes; an unterminated
    /// one runs to the end.
    fn quoted(&mut self) -> String {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        chars.next(); // the opening quote
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                self.pos += i + 1;
                return out;
            } else {
                out.push(c);
            }
        }
        self.pos = self.text.len();
        out
    }

    /// Skips to the comma that ends the current link, honouring quotes and
    /// angle brackets.
    fn skip_link(&mut self) {
        let mut in_quotes = false;
        let mut in_angle = false;
        let mut escaped = false;
        for (i, c) in self.rest().char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' if !in_angle => in_quotes = !in_quotes,
                '<' if !in_quotes => in_angle = true,
                '>' if !in_quotes => in_angle = false,
                ',' if !in_quotes && !in_angle => {
                    self.pos += i + 1;
                    return;
                }
                _ => {}
            }
        }
        self.pos = self.text.len();
    }
}

// ---- config deserialization -------------------------------------------------
//
// serde cannot combine `flatten` (to share `StopRules`) with
// `deny_unknown_fields` (to catch `has_mor_path` typos), so the TOML shape is
// read by a private enum that lists the stop fields in every variant, then
// converted, with validation, into the public shape.

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawPagination {
    None,
    Offset {
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        page_size: u64,
        #[serde(default)]
        location: ParamLocation,
        stop_on_short_page: Option<bool>,
        has_more_path: Option<String>,
        total_path: Option<String>,
        total_pages_path: Option<String>,
        max_pages: Option<u64>,
    },
    PageNumber {
        #[serde(default = "default_page_param")]
        page_param: String,
        #[serde(default = "default_size_param")]
        size_param: String,
        page_size: u64,
        #[serde(default = "default_first_page")]
        first_page: u64,
        #[serde(default)]
        location: ParamLocation,
        stop_on_short_page: Option<bool>,
        has_more_path: Option<String>,
        total_path: Option<String>,
        total_pages_path: Option<String>,
        max_pages: Option<u64>,
    },
    Cursor {
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
        cursor_path: String,
        size_param: Option<String>,
        page_size: Option<u64>,
        #[serde(default)]
        location: ParamLocation,
        stop_on_short_page: Option<bool>,
        has_more_path: Option<String>,
        total_path: Option<String>,
        total_pages_path: Option<String>,
        max_pages: Option<u64>,
    },
    NextUrl {
        next_url_path: String,
        size_param: Option<String>,
        page_size: Option<u64>,
        stop_on_short_page: Option<bool>,
        has_more_path: Option<String>,
        total_path: Option<String>,
        total_pages_path: Option<String>,
        max_pages: Option<u64>,
    },
    LinkHeader {
        size_param: Option<String>,
        page_size: Option<u64>,
        stop_on_short_page: Option<bool>,
        has_more_path: Option<String>,
        total_path: Option<String>,
        total_pages_path: Option<String>,
        max_pages: Option<u64>,
    },
}

fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "per_page".into()
}
fn default_first_page() -> u64 {
    1
}
fn default_cursor_param() -> String {
    "cursor".into()
}

fn stop_rules(
    stop_on_short_page: Option<bool>,
    has_more_path: Option<String>,
    total_path: Option<String>,
    total_pages_path: Option<String>,
    max_pages: Option<u64>,
) -> Result<StopRules, String> {
    for (key, path) in [
        ("has_more_path", &has_more_path),
        ("total_path", &total_path),
        ("total_pages_path", &total_pages_path),
    ] {
        if let Some(path) = path {
            check_path(path).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    if max_pages == Some(0) {
        return Err("max_pages must be at least 1".into());
    }
    Ok(StopRules {
        stop_on_short_page,
        has_more_path,
        total_path,
        total_pages_path,
        max_pages,
    })
}

fn check_size(page_size: Option<u64>) -> Result<(), String> {
    if page_size == Some(0) {
        return Err("page_size must be at least 1".into());
    }
    Ok(())
}

fn check_param(key: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    Ok(())
}

/// Empty means "do not send one".
fn optional_param(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.trim().is_empty())
}

impl TryFrom<RawPagination> for PaginationConfig {
    type Error = String;

    fn try_from(raw: RawPagination) -> Result<Self, String> {
        Ok(match raw {
            RawPagination::None => PaginationConfig::None,
            RawPagination::Offset {
                offset_param,
                limit_param,
                page_size,
                location,
                stop_on_short_page,
                has_more_path,
                total_path,
                total_pages_path,
                max_pages,
            } => {
                check_size(Some(page_size))?;
                check_param("offset_param", &offset_param)?;
                check_param("limit_param", &limit_param)?;
                PaginationConfig::Offset {
                    offset_param,
                    limit_param,
                    page_size,
                    location,
                    stop: stop_rules(
                        stop_on_short_page,
                        has_more_path,
                        total_path,
                        total_pages_path,
                        max_pages,
                    )?,
                }
            }
            RawPagination::PageNumber {
                page_param,
                size_param,
                page_size,
                first_page,
                location,
                stop_on_short_page,
                has_more_path,
                total_path,
                total_pages_path,
                max_pages,
            } => {
                check_size(Some(page_size))?;
                check_param("page_param", &page_param)?;
                PaginationConfig::PageNumber {
                    page_param,
                    size_param: optional_param(Some(size_param)),
                    page_size,
                    first_page,
                    location,
                    stop: stop_rules(
                        stop_on_short_page,
                        has_more_path,
                        total_path,
                        total_pages_path,
                        max_pages,
                    )?,
                }
            }
            RawPagination::Cursor {
                cursor_param,
                cursor_path,
                size_param,
                page_size,
                location,
                stop_on_short_page,
                has_more_path,
                total_path,
                total_pages_path,
                max_pages,
            } => {
                check_size(page_size)?;
                check_param("cursor_param", &cursor_param)?;
                check_path(&cursor_path).map_err(|e| format!("cursor_path: {e}"))?;
                PaginationConfig::Cursor {
                    cursor_param,
                    cursor_path,
                    size_param: optional_param(size_param),
                    page_size,
                    location,
                    stop: stop_rules(
                        stop_on_short_page,
                        has_more_path,
                        total_path,
                        total_pages_path,
                        max_pages,
                    )?,
                }
            }
            RawPagination::NextUrl {
                next_url_path,
                size_param,
                page_size,
                stop_on_short_page,
                has_more_path,
                total_path,
                total_pages_path,
                max_pages,
            } => {
                check_size(page_size)?;
                check_path(&next_url_path).map_err(|e| format!("next_url_path: {e}"))?;
                PaginationConfig::NextUrl {
                    next_url_path,
                    size_param: optional_param(size_param),
                    page_size,
                    stop: stop_rules(
                        stop_on_short_page,
                        has_more_path,
                        total_path,
                        total_pages_path,
                        max_pages,
                    )?,
                }
            }
            RawPagination::LinkHeader {
                size_param,
                page_size,
                stop_on_short_page,
                has_more_path,
                total_path,
                total_pages_path,
                max_pages,
            } => {
                check_size(page_size)?;
                PaginationConfig::LinkHeader {
                    size_param: optional_param(size_param),
                    page_size,
                    stop: stop_rules(
                        stop_on_short_page,
                        has_more_path,
                        total_path,
                        total_pages_path,
                        max_pages,
                    )?,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::Method;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn config(text: &str) -> PaginationConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn config_err(text: &str) -> String {
        toml::from_str::<PaginationConfig>(text)
            .unwrap_err()
            .to_string()
    }

    fn request(url: &str) -> HttpRequest {
        HttpRequest::new(Method::Get, Url::parse(url).unwrap())
    }

    fn response(url: &str, links: &[&str]) -> HttpResponse {
        let mut headers = HeaderMap::new();
        for link in links {
            headers.append(LINK, HeaderValue::from_str(link).unwrap());
        }
        HttpResponse {
            status: 200,
            url: Url::parse(url).unwrap(),
            headers,
            body: bytes::Bytes::new(),
        }
    }

    fn ok_response() -> HttpResponse {
        response("http://api.test/items", &[])
    }

    #[test]
    fn config_defaults_and_validation() {
        assert!(matches!(config("type = \"none\""), PaginationConfig::None));
        assert!(matches!(
            PaginationConfig::default(),
            PaginationConfig::None
        ));
        match config("type = \"offset\"\npage_size = 100\nhas_more_path = \"meta.more\"") {
            PaginationConfig::Offset {
                offset_param,
                limit_param,
                page_size,
                stop,
                location,
            } => {
                assert_eq!(
                    (offset_param.as_str(), limit_param.as_str()),
                    ("offset", "limit")
                );
                assert_eq!(page_size, 100);
                assert_eq!(location, ParamLocation::Query);
                assert_eq!(stop.has_more_path.as_deref(), Some("meta.more"));
            }
            other => panic!("{other:?}"),
        }
        match config("type = \"page_number\"\npage_size = 10") {
            PaginationConfig::PageNumber {
                page_param,
                size_param,
                first_page,
                ..
            } => {
                assert_eq!(page_param, "page");
                assert_eq!(size_param.as_deref(), Some("per_page"));
                assert_eq!(first_page, 1);
            }
            other => panic!("{other:?}"),
        }
        match config(
            "type = \"page_number\"\npage_size = 10\nsize_param = \"\"\nlocation = \"body\"",
        ) {
            PaginationConfig::PageNumber {
                size_param,
                location,
                ..
            } => {
                assert_eq!(size_param, None);
                assert_eq!(location, ParamLocation::Body);
            }
            other => panic!("{other:?}"),
        }
        match config("type = \"cursor\"\ncursor_path = \"$.next\"\nmax_pages = 5") {
            PaginationConfig::Cursor {
                cursor_param, stop, ..
            } => {
                assert_eq!(cursor_param, "cursor");
                assert_eq!(stop.max_pages, Some(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            config("type = \"link_header\""),
            PaginationConfig::LinkHeader { .. }
        ));
        assert!(matches!(
            config("type = \"next_url\"\nnext_url_path = \"links.next\""),
            PaginationConfig::NextUrl { .. }
        ));

        let err = config_err("type = \"offset\"\npage_size = 10\nhas_mor_path = \"x\"");
        assert!(err.contains("unknown field `has_mor_path`"), "{err}");
        let err = config_err("type = \"link_header\"\nlocation = \"body\"");
        assert!(err.contains("unknown field `location`"), "{err}");
        let err = config_err("type = \"offset\"\npage_size = 0");
        assert!(err.contains("page_size must be at least 1"), "{err}");
        let err = config_err("type = \"offset\"");
        assert!(err.contains("missing field `page_size`"), "{err}");
        let err = config_err("type = \"cursor\"\ncursor_path = \"$.a[\"");
        assert!(err.contains("cursor_path: invalid JSONPath"), "{err}");
        let err = config_err("type = \"cursor\"\ncursor_path = \"a\"\nmax_pages = 0");
        assert!(err.contains("max_pages"), "{err}");
        let err = config_err("type = \"seek\"");
        assert!(err.contains("seek"), "{err}");
    }

    #[test]
    fn page_state_serializes_compactly() {
        let state = PageState {
            cursor: Some("abc".into()),
            pages: 3,
            ..PageState::default()
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json, json!({"cursor": "abc", "pages": 3}));
        assert_eq!(serde_json::from_value::<PageState>(json).unwrap(), state);
        assert_eq!(
            serde_json::from_value::<PageState>(json!({})).unwrap(),
            PageState::default()
        );
        let state = PageState {
            offset: 200,
            ..PageState::default()
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"offset": 200, "pages": 0})
        );
    }

    #[test]
    fn offset_apply_and_advance() {
        let p = Paginator::new(&config("type = \"offset\"\npage_size = 100"));
        assert_eq!(p.page_size(), Some(100));
        let first = p.first();
        let mut req = request("http://api.test/items?offset=999&q=x");
        p.apply(&first, None, &mut req);
        assert_eq!(req.url.query(), Some("offset=0&q=x&limit=100"));

        let body = json!({});
        let next = p
            .advance(&first, None, &ok_response(), &body, 100)
            .unwrap()
            .unwrap();
        assert_eq!((next.offset, next.pages), (100, 1));
        // A caller-shrunk page size is used for the request.
        let mut req = request("http://api.test/items");
        p.apply(&next, Some(25), &mut req);
        assert_eq!(req.url.query(), Some("offset=100&limit=25"));
        let next = p
            .advance(&next, Some(25), &ok_response(), &body, 25)
            .unwrap()
            .unwrap();
        assert_eq!(next.offset, 125);
        // A short page goes on (the API may cap the page size) where a
        // new request confirms the end; an empty page ends the listing.
        let after_short = p
            .advance(&next, None, &ok_response(), &body, 99)
            .unwrap()
            .unwrap();
        assert_eq!(after_short.offset, 224);
        assert_eq!(
            p.advance(&after_short, None, &ok_response(), &body, 0)
                .unwrap(),
            None
        );
        // Trusted short pages end it.
        let trusting = Paginator::new(&config(
            "type = \"offset\"\npage_size = 100\nstop_on_short_page = true",
        ));
        assert_eq!(
            trusting
                .advance(&next, None, &ok_response(), &body, 99)
                .unwrap(),
            None
        );
        let full = trusting
            .advance(&next, None, &ok_response(), &body, 100)
            .unwrap();
        assert_eq!(full.map(|s| s.offset), Some(225));
    }

    #[test]
    fn offset_with_total_ignores_short_pages_by_default() {
        let p = Paginator::new(&config(
            "type = \"offset\"\npage_size = 100\ntotal_path = \"meta.total\"",
        ));
        let body = json!({"meta": {"total": 250}});
        let s0 = p.first();
        // The API caps pages at 50: not the end, because the total says so.
        let s1 = p
            .advance(&s0, None, &ok_response(), &body, 50)
            .unwrap()
            .unwrap();
        assert_eq!(s1.offset, 50);
        let s2 = p
            .advance(&s1, None, &ok_response(), &body, 150)
            .unwrap()
            .unwrap();
        assert_eq!(s2.offset, 200);
        assert_eq!(
            p.advance(&s2, None, &ok_response(), &body, 50).unwrap(),
            None
        );
        // Totals as strings work; an unparseable total never stops early.
        let s = p
            .advance(
                &s0,
                None,
                &ok_response(),
                &json!({"meta": {"total": "60"}}),
                50,
            )
            .unwrap();
        assert!(s.is_some());
        let s = p
            .advance(
                &s1,
                None,
                &ok_response(),
                &json!({"meta": {"total": "60"}}),
                50,
            )
            .unwrap();
        assert_eq!(s, None);
        let s = p
            .advance(
                &s1,
                None,
                &ok_response(),
                &json!({"meta": {"total": "lots"}}),
                5,
            )
            .unwrap();
        assert!(s.is_some());

        // Explicitly enabled, the short-page rule applies again.
        let p = Paginator::new(&config(
            "type = \"offset\"\npage_size = 100\ntotal_path = \"meta.total\"\nstop_on_short_page = true",
        ));
        assert_eq!(
            p.advance(&s0, None, &ok_response(), &body, 50).unwrap(),
            None
        );
    }

    #[test]
    fn offset_in_the_body() {
        let p = Paginator::new(&config(
            "type = \"offset\"\npage_size = 50\nlocation = \"body\"\noffset_param = \"page.from\"\nlimit_param = \"page.size\"",
        ));
        let mut req = request("http://api.test/search");
        req.method = Method::Post;
        req.body = Some(json!({"query": {"status": "open"}, "page": {"from": 7}}));
        p.apply(
            &PageState {
                offset: 100,
                ..PageState::default()
            },
            None,
            &mut req,
        );
        assert_eq!(
            req.body,
            Some(json!({"query": {"status": "open"}, "page": {"from": 100, "size": 50}}))
        );
        assert_eq!(req.url.query(), None);
        // No body yet: one is created.
        let mut req = request("http://api.test/search");
        p.apply(&p.first(), None, &mut req);
        assert_eq!(req.body, Some(json!({"page": {"from": 0, "size": 50}})));
        // A body that is not an object: fall back to the query.
        let mut req = request("http://api.test/search");
        req.body = Some(json!([1]));
        p.apply(&p.first(), None, &mut req);
        assert_eq!(req.url.query(), Some("page.from=0&page.size=50"));
    }

    #[test]
    fn predict_is_what_advance_gives_after_a_full_page() {
        let full_page = |p: &Paginator, state: &PageState, size: Option<u64>| {
            let records = size.or(p.page_size()).unwrap() as usize;
            p.advance(state, size, &ok_response(), &json!({}), records)
                .unwrap()
        };
        for text in [
            "type = \"offset\"\npage_size = 100",
            "type = \"page_number\"\npage_size = 10\nfirst_page = 0",
            "type = \"page_number\"\npage_size = 10\nmax_pages = 3",
        ] {
            let p = Paginator::new(&config(text));
            let mut state = p.first();
            for size in [None, None, Some(7), Some(7)] {
                assert_eq!(
                    p.predict(&state, size),
                    full_page(&p, &state, size),
                    "{text}"
                );
                match full_page(&p, &state, size) {
                    Some(next) => state = next,
                    None => break,
                }
            }
        }
        let cursor = Paginator::new(&config(
            "type = \"cursor\"\ncursor_path = \"next\"\npage_size = 10",
        ));
        assert_eq!(
            cursor.predict(&cursor.first(), None),
            None,
            "needs the body"
        );
        let capped = Paginator::new(&config("type = \"offset\"\npage_size = 10\nmax_pages = 1"));
        assert_eq!(capped.predict(&capped.first(), None), None);
    }

    #[test]
    fn page_number_apply_and_advance() {
        let p = Paginator::new(&config(
            "type = \"page_number\"\npage_size = 10\nfirst_page = 0\ntotal_pages_path = \"pages\"",
        ));
        let s0 = p.first();
        assert_eq!(s0.page, Some(0));
        let mut req = request("http://api.test/items");
        p.apply(&s0, None, &mut req);
        assert_eq!(req.url.query(), Some("page=0&per_page=10"));
        let body = json!({"pages": 3});
        let s1 = p
            .advance(&s0, None, &ok_response(), &body, 10)
            .unwrap()
            .unwrap();
        assert_eq!((s1.page, s1.pages, s1.offset), (Some(1), 1, 10));
        let s2 = p
            .advance(&s1, None, &ok_response(), &body, 10)
            .unwrap()
            .unwrap();
        assert_eq!(s2.page, Some(2));
        // Page index 2 with first_page 0 is the third of three.
        assert_eq!(
            p.advance(&s2, None, &ok_response(), &body, 10).unwrap(),
            None
        );

        // Default: a short page goes on, a trusted one ends; has_more
        // false ends; max_pages ends.
        let p = Paginator::new(&config(
            "type = \"page_number\"\npage_size = 10\nsize_param = \"\"",
        ));
        let s0 = p.first();
        let mut req = request("http://api.test/items");
        p.apply(&s0, None, &mut req);
        assert_eq!(req.url.query(), Some("page=1"));
        let s1 = p.advance(&s0, None, &ok_response(), &json!({}), 9).unwrap();
        assert_eq!(s1.and_then(|s| s.page), Some(2));
        let p = Paginator::new(&config(
            "type = \"page_number\"\npage_size = 10\nstop_on_short_page = true",
        ));
        assert_eq!(
            p.advance(&s0, None, &ok_response(), &json!({}), 9).unwrap(),
            None
        );
        let p = Paginator::new(&config(
            "type = \"page_number\"\npage_size = 10\nhas_more_path = \"has_more\"\nmax_pages = 2",
        ));
        let s0 = p.first();
        assert_eq!(
            p.advance(&s0, None, &ok_response(), &json!({"has_more": false}), 10)
                .unwrap(),
            None
        );
        // has_more true keeps going even on a short page (explicit signal wins).
        let s1 = p
            .advance(&s0, None, &ok_response(), &json!({"has_more": true}), 3)
            .unwrap()
            .unwrap();
        // Missing has_more does not stop; max_pages = 2 does.
        assert_eq!(
            p.advance(&s1, None, &ok_response(), &json!({}), 10)
                .unwrap(),
            None
        );
    }

    #[test]
    fn cursor_apply_advance_and_loop_guard() {
        let p = Paginator::new(&config(
            "type = \"cursor\"\ncursor_param = \"after\"\ncursor_path = \"paging.next\"\nsize_param = \"limit\"\npage_size = 2",
        ));
        let s0 = p.first();
        let mut req = request("http://api.test/items");
        p.apply(&s0, None, &mut req);
        assert_eq!(req.url.query(), Some("limit=2"));
        let s1 = p
            .advance(
                &s0,
                None,
                &ok_response(),
                &json!({"paging": {"next": "c1"}}),
                2,
            )
            .unwrap()
            .unwrap();
        assert_eq!((s1.cursor.as_deref(), s1.pages), (Some("c1"), 1));
        let mut req = request("http://api.test/items?after=stale");
        p.apply(&s1, None, &mut req);
        assert_eq!(req.url.query(), Some("after=c1&limit=2"));
        // Numeric cursors become text; short pages do not stop cursor listings by default.
        let s2 = p
            .advance(
                &s1,
                None,
                &ok_response(),
                &json!({"paging": {"next": 12345}}),
                1,
            )
            .unwrap()
            .unwrap();
        assert_eq!(s2.cursor.as_deref(), Some("12345"));
        // No, null or empty cursor: done.
        for body in [
            json!({}),
            json!({"paging": {"next": null}}),
            json!({"paging": {"next": ""}}),
        ] {
            assert_eq!(
                p.advance(&s2, None, &ok_response(), &body, 2).unwrap(),
                None
            );
        }
        // Same cursor twice: loop.
        let err = p
            .advance(
                &s2,
                None,
                &ok_response(),
                &json!({"paging": {"next": "12345"}}),
                2,
            )
            .unwrap_err();
        assert_eq!(
            err,
            PaginationError::Loop {
                token: "12345".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "the API returned the same page token `12345` twice; stopping to avoid an endless loop"
        );
        // Wrong type: bad token.
        let err = p
            .advance(
                &s2,
                None,
                &ok_response(),
                &json!({"paging": {"next": {"a": 1}}}),
                2,
            )
            .unwrap_err();
        assert!(matches!(&err, PaginationError::BadToken { path, .. } if path == "paging.next"));
        assert!(err.to_string().contains("an object ({\"a\":1})"), "{err}");
    }

    #[test]
    fn cursor_in_the_body_with_jsonpath() {
        let p = Paginator::new(&config(
            "type = \"cursor\"\ncursor_param = \"page_token\"\ncursor_path = \"$.meta.next_token\"\nlocation = \"body\"\nhas_more_path = \"$.meta.more\"",
        ));
        let body = json!({"meta": {"next_token": "t-2", "more": true}});
        let s1 = p
            .advance(&p.first(), None, &ok_response(), &body, 5)
            .unwrap()
            .unwrap();
        let mut req = request("http://api.test/search");
        req.body = Some(json!({"filter": "x"}));
        p.apply(&s1, None, &mut req);
        assert_eq!(req.body, Some(json!({"filter": "x", "page_token": "t-2"})));
        let body = json!({"meta": {"next_token": "t-3", "more": "false"}});
        assert_eq!(
            p.advance(&s1, None, &ok_response(), &body, 5).unwrap(),
            None
        );
    }

    #[test]
    fn next_url_resolution_and_loop_guard() {
        let p = Paginator::new(&config(
            "type = \"next_url\"\nnext_url_path = \"links.next\"\nsize_param = \"limit\"\npage_size = 50",
        ));
        let resp = response("http://api.test/v1/items?limit=50", &[]);
        let s1 = p
            .advance(
                &p.first(),
                None,
                &resp,
                &json!({"links": {"next": "items?page=2&sig=a%2Bb"}}),
                50,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            s1.next_url.as_deref(),
            Some("http://api.test/v1/items?page=2&sig=a%2Bb")
        );
        let mut req = request("http://api.test/v1/items?limit=50");
        p.apply(&s1, None, &mut req);
        assert_eq!(
            req.url.as_str(),
            "http://api.test/v1/items?page=2&sig=a%2Bb&limit=50"
        );
        // A next URL that already has the right size is left byte for byte.
        let s = PageState {
            next_url: Some("http://api.test/v1/items?limit=50&sig=a%2Bb".into()),
            ..PageState::default()
        };
        let mut req = request("http://api.test/v1/items");
        p.apply(&s, None, &mut req);
        assert_eq!(
            req.url.as_str(),
            "http://api.test/v1/items?limit=50&sig=a%2Bb"
        );

        // The same next URL as the current page: loop.
        let resp2 = response("http://api.test/v1/items?page=2&sig=a%2Bb", &[]);
        let err = p
            .advance(
                &s1,
                None,
                &resp2,
                &json!({"links": {"next": "/v1/items?page=2&sig=a%2Bb"}}),
                50,
            )
            .unwrap_err();
        assert!(matches!(err, PaginationError::Loop { .. }), "{err:?}");
        // Absolute next URLs, and the end of the listing.
        let s2 = p
            .advance(
                &s1,
                None,
                &resp2,
                &json!({"links": {"next": "https://other.test/p3"}}),
                50,
            )
            .unwrap()
            .unwrap();
        assert_eq!(s2.next_url.as_deref(), Some("https://other.test/p3"));
        assert_eq!(
            p.advance(&s1, None, &resp2, &json!({"links": {}}), 50)
                .unwrap(),
            None
        );
        let err = p
            .advance(&s1, None, &resp2, &json!({"links": {"next": true}}), 50)
            .unwrap_err();
        assert!(matches!(err, PaginationError::BadToken { .. }), "{err:?}");
        // A garbage checkpointed URL leaves the request as configured.
        let mut req = request("http://api.test/v1/items");
        p.apply(
            &PageState {
                next_url: Some("::not a url".into()),
                ..PageState::default()
            },
            None,
            &mut req,
        );
        assert_eq!(req.url.as_str(), "http://api.test/v1/items?limit=50");
    }

    #[test]
    fn link_header_pagination() {
        let p = Paginator::new(&config("type = \"link_header\"\nmax_pages = 10"));
        let resp = response(
            "https://api.test/repos/x/issues?per_page=2",
            &[
                r#"<https://api.test/repos/x/issues?per_page=2&page=2>; rel="next", <https://api.test/repos/x/issues?per_page=2&page=9>; rel="last""#,
            ],
        );
        let s1 = p
            .advance(&p.first(), None, &resp, &Value::Null, 2)
            .unwrap()
            .unwrap();
        assert_eq!(
            s1.next_url.as_deref(),
            Some("https://api.test/repos/x/issues?per_page=2&page=2")
        );
        let mut req = request("https://api.test/repos/x/issues?per_page=2");
        p.apply(&s1, None, &mut req);
        assert_eq!(
            req.url.as_str(),
            "https://api.test/repos/x/issues?per_page=2&page=2"
        );
        // No next link: done.
        let last = response(
            "https://api.test/i?page=9",
            &[r#"<https://api.test/i?page=1>; rel="first""#],
        );
        assert_eq!(p.advance(&s1, None, &last, &Value::Null, 2).unwrap(), None);
        let none = response("https://api.test/i?page=9", &[]);
        assert_eq!(p.advance(&s1, None, &none, &Value::Null, 2).unwrap(), None);
        // Relative next link across several Link header fields, rel with several values.
        let resp = response(
            "https://api.test/v2/items?page=2",
            &[
                r#"</v2/items?page=1>; rel="prev first""#,
                r#"<items?page=3>; title="a, b; c"; REL="Next last""#,
            ],
        );
        let s2 = p
            .advance(&s1, None, &resp, &Value::Null, 2)
            .unwrap()
            .unwrap();
        assert_eq!(
            s2.next_url.as_deref(),
            Some("https://api.test/v2/items?page=3")
        );
        // Next link pointing at the current page: loop.
        let resp = response(
            "https://api.test/v2/items?page=3",
            &[r#"<?page=3>; rel=next"#],
        );
        let err = p.advance(&s2, None, &resp, &Value::Null, 2).unwrap_err();
        assert!(matches!(err, PaginationError::Loop { .. }), "{err:?}");
    }

    #[test]
    fn link_header_parsing_edge_cases() {
        let rels = |h: &str| -> Vec<(String, Vec<String>)> {
            parse_links(h)
                .into_iter()
                .map(|l| (l.target, l.rels))
                .collect()
        };
        let s = |v: &str| v.to_string();
        assert_eq!(
            rels(r#"<http://x/a,b>; rel="next", <http://x/c>; rel=prev"#),
            [
                (s("http://x/a,b"), vec![s("next")]),
                (s("http://x/c"), vec![s("prev")])
            ]
        );
        // Quoted commas and semicolons, escapes, first rel wins, no rel is skipped.
        assert_eq!(
            rels(
                r##"<u1>; title="x, \"y\"; z"; rel="next"; rel="prev", <u2>; anchor="#a", <u3>;rel="  Next  ""##
            ),
            [(s("u1"), vec![s("next")]), (s("u3"), vec![s("next")])]
        );
        // Garbage is skipped, not fatal.
        assert_eq!(
            rels(r#"junk, <u4> junk; rel=next, <u5>; rel=next"#),
            [(s("u5"), vec![s("next")])]
        );
        assert!(rels("").is_empty());
        assert!(rels("<unterminated; rel=next").is_empty());
        assert_eq!(rels(r#"<u6>; rel="next"#), [(s("u6"), vec![s("next")])]);
        assert_eq!(rels("<u7>;rel=next;"), [(s("u7"), vec![s("next")])]);
        assert_eq!(
            rels("<ü8>; rel=\"nëxt next\""),
            [(s("ü8"), vec![s("nëxt"), s("next")])]
        );
    }

    #[test]
    fn none_never_continues() {
        let p = Paginator::new(&PaginationConfig::None);
        assert_eq!(p.page_size(), None);
        let mut req = request("http://api.test/x?a=1");
        p.apply(&p.first(), Some(10), &mut req);
        assert_eq!(req.url.as_str(), "http://api.test/x?a=1");
        assert_eq!(
            p.advance(&p.first(), None, &ok_response(), &json!({}), 100)
                .unwrap(),
            None
        );
    }
}
