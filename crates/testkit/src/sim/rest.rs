//! A generic paginated REST API simulator: one dataset served through every
//! common pagination style, with configurable authentication and faults.
//!
//! # Dataset
//!
//! Items `{"id": 1, "updated_at": "2024-01-01T00:00:00Z", "name": "item 1",
//! "amount": 79.19, "version": 1}`. [`RestSimConfig`] generates `items` of
//! them, item `i` updated at `start + (i-1)*step`; [`RestSim::insert`] adds
//! arbitrary JSON objects (with an `id`, and `updated_at` in RFC 3339), and
//! [`RestSim::modify`] sets `updated_at` to the simulator's clock and bumps
//! `version`. `updated_at` is written in UTC with `Z`, with milliseconds only
//! when they are not zero.
//!
//! # Endpoints
//!
//! Every list endpoint sorts by `(updated_at, id)` and accepts the window
//! filters `updated_since` (inclusive) and `updated_before` (exclusive), both
//! RFC 3339 or a local `YYYY-MM-DD HH:MM:SS`. With a zone set on the clock
//! ([`SimClock::set_timezone`](super::SimClock::set_timezone)) the API
//! sorts and filters by the local wall-clock time, as one storing naive
//! local datetimes does: a repeated fall-back hour sorts among the first. Page sizes default to 100 and are clamped to 10 000
//! ([`RestSimConfig`]); a size of 0 or a non-number answers 400.
//!
//! | request | answer |
//! |---|---|
//! | `GET /items/offset?offset=&limit=` | `{"data":[...],"total":N}` (N = items in the window) |
//! | `GET /items/page?page=&per_page=` (from 1) | `{"data":[...],"page":p,"total_pages":k}` |
//! | `GET /items/cursor?cursor=&limit=` | `{"data":[...],"next_cursor":"opaque"\|null,"has_more":bool}` |
//! | `GET /items/next-url?limit=` (then `after=`) | `{"results":[...],"next":"http://127.0.0.1:PORT/items/next-url?after=..&limit=.."\|null}` |
//! | `GET /items/link?page=&per_page=` | bare array; `Link: <..>; rel="next", <..>; rel="last"` while more pages |
//! | `GET /items/keyset?updated_since=&after_id=&limit=` | `{"data":[...]}`: `(updated_at,id) > (updated_since,after_id)` with both, `updated_at >= updated_since` with only `updated_since`; with only `after_id`, `id > after_id` sorted by id (ID-cursor pagination) |
//! | `POST /items/search` `{"page":n,"page_size":k,"filter":{"updated_since":..,"updated_before":..}}` | `{"items":[...],"has_more":bool}` |
//! | `GET /items/single[?id=]` | `{"item":{...}}` (default: the lowest id) |
//! | `GET /items/{id}/lines` | `{"data":[{"line_id":..,"item_id":id,..}]}`, 2 or 3 lines per item |
//! | `GET /items/loop?cursor=&limit=` | the first page, always with the same `next_cursor` (broken pagination) |
//! | `GET /items/deleted?after=&limit=` | `{"data":[{"seq":n,"id":..,"deleted_at":".."}]}`: the deletions [`RestSim::remove`] made, in order, after sequence number `after` (default 0) |
//! | `POST /oauth/token` | OAuth2 client credentials (only with [`RestAuth::OAuth2`]) |
//!
//! Errors are JSON `{"error":"..","message":".."}` with 400, 401, 404, 405.
//! A 401 never echoes the credentials it got.
//!
//! # Faults
//!
//! [`SimServer::fail_next`](super::SimServer::fail_next), `slow_next`, `truncate_next`,
//! [`RestSim::modify_during_paging`] and [`RestSim::fail_when_limit_above`]
//! apply to every endpoint except `/oauth/token`.
//! [`RestSim::set_visibility_delay`] makes writes visible only some time
//! after their `updated_at` (late commits).

use super::common::{
    basic_credentials, bearer_token, bind, json_response, last_param, lock, parse_query, read_body,
    secret_eq, with_retry_after, EditMode, RequestLog, SimServer,
};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderName, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How clients must authenticate to a [`RestSim`].
#[derive(Clone, PartialEq, Eq)]
pub enum RestAuth {
    /// No authentication.
    None,
    /// HTTP Basic.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>` with a fixed token.
    Bearer { token: String },
    /// `X-API-Key: <key>` header.
    ApiKeyHeader { key: String },
    /// `?api_key=<key>` query parameter.
    ApiKeyQuery { key: String },
    /// OAuth2 client credentials: `POST /oauth/token` issues bearer tokens
    /// valid for `token_lifetime`.
    OAuth2 {
        client_id: String,
        client_secret: String,
        token_lifetime: Duration,
    },
}

impl std::fmt::Debug for RestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestAuth::None => f.write_str("None"),
            RestAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
            RestAuth::Bearer { .. } => f.write_str("Bearer { token: [redacted] }"),
            RestAuth::ApiKeyHeader { .. } => f.write_str("ApiKeyHeader { key: [redacted] }"),
            RestAuth::ApiKeyQuery { .. } => f.write_str("ApiKeyQuery { key: [redacted] }"),
            RestAuth::OAuth2 {
                client_id,
                token_lifetime,
                ..
            } => f
                .debug_struct("OAuth2")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .field("token_lifetime", token_lifetime)
                .finish(),
        }
    }
}

/// How to start a [`RestSim`].
#[derive(Debug, Clone)]
pub struct RestSimConfig {
    /// Items generated at start, ids `1..=items`.
    pub items: usize,
    /// `updated_at` of item 1.
    pub start: DateTime<Utc>,
    /// `updated_at` step between consecutive items.
    pub step: chrono::Duration,
    pub auth: RestAuth,
    /// Page size when a request sends none.
    pub default_page_size: usize,
    /// Larger page sizes are clamped to this.
    pub max_page_size: usize,
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
}

impl Default for RestSimConfig {
    fn default() -> Self {
        RestSimConfig {
            items: 0,
            start: DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(), // 2024-01-01
            step: chrono::Duration::seconds(60),
            auth: RestAuth::None,
            default_page_size: 100,
            max_page_size: 10_000,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A running REST simulator. Cheap to clone; all clones drive the same
/// server, which runs until [`SimServer::shutdown`](super::SimServer::shutdown) or until its tokio runtime
/// stops.
#[derive(Clone)]
pub struct RestSim {
    inner: Arc<Inner>,
}

/// The request log, fault knobs and `shutdown` shared by every simulator.
impl std::ops::Deref for RestSim {
    type Target = SimServer;

    fn deref(&self) -> &SimServer {
        &self.inner.server
    }
}

impl std::fmt::Debug for RestSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSim")
            .field("addr", &self.inner.server.addr())
            .finish_non_exhaustive()
    }
}

struct Inner {
    server: SimServer,
    state: Mutex<RestState>,
}

#[derive(Clone)]
struct Item {
    /// `updated_at`, milliseconds since the epoch.
    ts: i64,
    version: u64,
    /// Fields of an inserted record (besides id/updated_at/version);
    /// `None` for generated items, whose fields derive from the id.
    fields: Option<Box<Map<String, Value>>>,
}

struct RestState {
    items: BTreeMap<i64, Item>,
    /// `(updated_at ms, id)` of every item, sorted; `updated_at` as the
    /// wall clock of `order_tz` reads it (see [`wall_ms`]).
    order: Vec<(i64, i64)>,
    order_tz: chrono_tz::Tz,
    /// The server's clock (shared with its `Date` headers).
    clock: Arc<super::SimClock>,
    /// `(id, version, updated_at ms)` of every insert and modify.
    history: Vec<(i64, u64, i64)>,
    /// How long after its `updated_at` a write becomes visible, ms.
    visibility_delay: i64,
    /// Writes not visible yet: `(visible at ms, id, item)`, in write order.
    pending: Vec<(i64, i64, Item)>,
    /// `(id, deleted at ms)` of every [`RestSim::remove`], in order: entry
    /// `i` has sequence number `i + 1` (`GET /items/deleted`).
    deletions: Vec<(i64, i64)>,
    edits: Option<(EditMode, usize)>,
    limit_fault: Option<(usize, u16)>,
    auth: RestAuth,
    tokens: HashMap<String, Instant>,
    tokens_issued: usize,
    default_page_size: usize,
    max_page_size: usize,
}

impl RestSim {
    /// Starts an unauthenticated simulator with `items` generated items on
    /// `127.0.0.1:0`. Panics if no port can be bound (test helper).
    pub async fn start(items: usize) -> RestSim {
        Self::start_with(RestSimConfig {
            items,
            ..RestSimConfig::default()
        })
        .await
    }

    /// Starts a simulator for benchmarks: `total` items, page sizes up to
    /// `max(page_size, 10 000)`, no authentication.
    pub async fn start_bench(total: usize, page_size: usize) -> RestSim {
        Self::start_with(RestSimConfig {
            items: total,
            default_page_size: page_size.max(1),
            max_page_size: page_size.max(10_000),
            ..RestSimConfig::default()
        })
        .await
    }

    /// Starts a simulator as configured. Panics if `config.addr` cannot be
    /// bound (test helper).
    pub async fn start_with(config: RestSimConfig) -> RestSim {
        Self::try_start_with(config)
            .await
            .expect("RestSim: cannot bind the configured address")
    }

    /// Starts a simulator as configured.
    pub async fn try_start_with(config: RestSimConfig) -> std::io::Result<RestSim> {
        let listener = bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let server = SimServer::new(addr);
        let mut state = RestState {
            items: BTreeMap::new(),
            order: Vec::new(),
            order_tz: chrono_tz::UTC,
            clock: server.clock.clone(),
            history: Vec::new(),
            visibility_delay: 0,
            pending: Vec::new(),
            deletions: Vec::new(),
            edits: None,
            limit_fault: None,
            auth: config.auth,
            tokens: HashMap::new(),
            tokens_issued: 0,
            default_page_size: config.default_page_size.max(1),
            max_page_size: config.max_page_size.max(1),
        };
        state.generate(config.items, config.start, config.step);
        let inner = Arc::new(Inner {
            server,
            state: Mutex::new(state),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        inner.server.serve(listener, router);
        Ok(RestSim { inner })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.server.addr())
    }

    /// Changes the authentication required from now on (issued OAuth2
    /// tokens stay valid if the new mode is OAuth2 too).
    pub fn set_auth(&self, auth: RestAuth) {
        lock(&self.inner.state).auth = auth;
    }

    /// Upserts `count` generated items, ids `1..=count`, item `i` updated
    /// at `from + (i-1)*step`.
    pub fn generate(&self, count: usize, from: DateTime<Utc>, step: chrono::Duration) {
        lock(&self.inner.state).generate(count, from, step);
    }

    /// Upserts a JSON object by its `id` (a number or numeric string; the
    /// next free id without one). `updated_at` (RFC 3339) defaults to the
    /// simulator's clock, `version` to 1. Returns the id, or `None` (and
    /// stores nothing) if `record` is not an object.
    pub fn insert(&self, record: Value) -> Option<i64> {
        let Value::Object(mut map) = record else {
            return None;
        };
        let mut st = lock(&self.inner.state);
        let id = match map.remove("id").as_ref().and_then(as_i64) {
            Some(id) => id,
            None => st.items.keys().next_back().map_or(1, |m| m + 1),
        };
        let ts = map
            .remove("updated_at")
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_time)
            .unwrap_or_else(|| st.now_ms());
        let version = map
            .remove("version")
            .as_ref()
            .and_then(as_i64)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(1);
        st.write(
            id,
            Item {
                ts,
                version,
                fields: Some(Box::new(map)),
            },
        );
        Some(id)
    }

    /// Sets `updated_at` to the simulator's clock and increments `version`.
    /// Whether the item exists.
    pub fn modify(&self, id: i64) -> bool {
        lock(&self.inner.state).modify(id)
    }

    /// Deletes an item, logging the deletion for `GET /items/deleted` at
    /// the simulator's clock; whether it existed.
    pub fn remove(&self, id: i64) -> bool {
        let mut st = lock(&self.inner.state);
        match st.items.remove(&id) {
            Some(item) => {
                if let Ok(i) = st.order.binary_search(&(st.wall(item.ts), id)) {
                    st.order.remove(i);
                }
                let now = st.now_ms();
                st.deletions.push((id, now));
                true
            }
            None => false,
        }
    }

    /// All items as JSON, sorted by id.
    pub fn items(&self) -> Vec<Value> {
        let st = lock(&self.inner.state);
        st.items
            .iter()
            .filter_map(|(id, item)| item_value(*id, item))
            .collect()
    }

    /// One item as JSON.
    pub fn item(&self, id: i64) -> Option<Value> {
        let st = lock(&self.inner.state);
        st.items.get(&id).and_then(|item| item_value(id, item))
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        lock(&self.inner.state).items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Freezes the simulator's clock (used by `modify`, `insert` and the
    /// `Date` header) at `t`. Until set, it is the current time; see
    /// [`SimServer::clock`] for a clock that flows, ahead or behind ours.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.inner.server.clock().freeze(t);
    }

    /// The simulator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        let st = lock(&self.inner.state);
        DateTime::from_timestamp_millis(st.now_ms()).unwrap_or_default()
    }

    /// Requests whose page size (`limit`, `per_page` or `page_size`) is
    /// above `limit` answer `status` (e.g. 500 or 504), as an API that times
    /// out on big pages.
    pub fn fail_when_limit_above(&self, limit: usize, status: u16) {
        lock(&self.inner.state).limit_fault = Some((limit, status));
    }

    /// Simulates concurrent edits: on every list request that is not a first
    /// page (offset > 0, page > 1, a cursor/`after`/`after_id`) or that has a
    /// window filter, before answering, modifies up to `per_request` items of
    /// the window this paging has not returned yet (the last ones in
    /// `(updated_at, id)` order at or after the requested position). With
    /// `set_now` at or after `updated_before`, they leave the window. `0`
    /// turns it off. (Not applied to the `after_id`-only keyset mode.)
    pub fn modify_during_paging(&self, per_request: usize) {
        lock(&self.inner.state).edits =
            (per_request > 0).then_some((EditMode::Unreturned, per_request));
    }

    /// Like [`RestSim::modify_during_paging`], but modifies items the paging
    /// already returned (the first ones of the window, before the requested
    /// position): later items shift left and an offset or page pager skips
    /// items that were never modified.
    pub fn modify_returned_during_paging(&self, per_request: usize) {
        lock(&self.inner.state).edits =
            (per_request > 0).then_some((EditMode::Returned, per_request));
    }

    /// Writes made from now on by [`RestSim::insert`] and [`RestSim::modify`]
    /// become visible (listed) only `delay` after their `updated_at`, as
    /// behind a slow commit or a read replica: until then listings show the
    /// item's previous version, if any.
    pub fn set_visibility_delay(&self, delay: Duration) {
        lock(&self.inner.state).visibility_delay =
            i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    }

    /// Every version [`RestSim::insert`] and [`RestSim::modify`] wrote:
    /// `(id, version, updated_at)`.
    pub fn history(&self) -> Vec<(i64, u64, DateTime<Utc>)> {
        lock(&self.inner.state)
            .history
            .iter()
            .map(|&(id, v, ts)| {
                (
                    id,
                    v,
                    DateTime::from_timestamp_millis(ts).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Makes every issued OAuth2 token invalid: the next call using one gets
    /// 401 `invalid_token`.
    pub fn expire_tokens_now(&self) {
        lock(&self.inner.state).tokens.clear();
    }

    /// How many OAuth2 tokens `/oauth/token` issued.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.inner.state).tokens_issued
    }
}

// ---------------------------------------------------------------- state

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An instant as the wall clock of `tz` reads it, in milliseconds as if
/// that reading were UTC: how an API that stores and compares local naive
/// datetimes sorts and filters (in UTC, the instant itself).
fn wall_ms(tz: chrono_tz::Tz, ts: i64) -> i64 {
    if tz == chrono_tz::UTC {
        return ts;
    }
    DateTime::from_timestamp_millis(ts).map_or(ts, |t| {
        t.with_timezone(&tz)
            .naive_local()
            .and_utc()
            .timestamp_millis()
    })
}

/// A window filter as a wall-clock reading in `tz` ([`wall_ms`]): RFC 3339,
/// or a local naive `YYYY-MM-DD HH:MM:SS[.fff]` compared as written (a
/// repeated fall-back hour matches both occurrences, as plain text does).
fn wall_time(s: &str, tz: chrono_tz::Tz) -> Option<i64> {
    if let Some(ts) = parse_time(s) {
        return Some(wall_ms(tz, ts));
    }
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().timestamp_millis())
}

/// Where a page starts inside the window.
#[derive(Debug, Clone, Copy)]
enum Start {
    Offset(usize),
    /// Strictly after this `(updated_at ms, id)`.
    After((i64, i64)),
}

/// A list request, once parsed.
#[derive(Debug, Clone, Copy)]
struct ListQuery {
    since: Option<i64>,
    before: Option<i64>,
    start: Start,
    limit: usize,
    first_page: bool,
}

/// What a list request selected: `order[start..end]`, and whether more
/// items follow in the window.
struct Selection {
    lo: usize,
    start: usize,
    end: usize,
    hi: usize,
}

impl RestState {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn generate(&mut self, count: usize, from: DateTime<Utc>, step: chrono::Duration) {
        let from = from.timestamp_millis();
        let step = step.num_milliseconds();
        for i in 1..=count {
            let id = i64::try_from(i).unwrap_or(i64::MAX);
            let ts = from.saturating_add(step.saturating_mul(id - 1));
            let item = Item {
                ts,
                version: 1,
                fields: None,
            };
            self.items.insert(id, item);
        }
        // Rebuilding the index is O(n log n) whatever was there before.
        self.reindex();
    }

    fn reindex(&mut self) {
        let tz = self.order_tz;
        self.order = self
            .items
            .iter()
            .map(|(id, it)| (wall_ms(tz, it.ts), *id))
            .collect();
        self.order.sort_unstable();
    }

    fn upsert(&mut self, id: i64, item: Item) {
        let key = (self.wall(item.ts), id);
        if let Some(old) = self.items.insert(id, item) {
            if let Ok(i) = self.order.binary_search(&(self.wall(old.ts), id)) {
                self.order.remove(i);
            }
        }
        let at = self.order.partition_point(|k| *k < key);
        self.order.insert(at, key);
    }

    fn modify(&mut self, id: i64) -> bool {
        let now = self.now_ms();
        // The latest version, visible or not, is the one edited.
        let latest = self
            .pending
            .iter()
            .rev()
            .find(|(_, pid, _)| *pid == id)
            .map(|(_, _, item)| item)
            .or_else(|| self.items.get(&id));
        let Some(mut item) = latest.cloned() else {
            return false;
        };
        item.ts = now;
        item.version += 1;
        self.write(id, item);
        true
    }

    /// Stores a version (visible now, or after the visibility delay) and
    /// records it in the history.
    fn write(&mut self, id: i64, item: Item) {
        self.history.push((id, item.version, item.ts));
        if self.visibility_delay > 0 {
            let at = item.ts.saturating_add(self.visibility_delay);
            self.pending.push((at, id, item));
        } else {
            self.upsert(id, item);
        }
    }

    /// `updated_at` as the wall clock of the listing's zone reads it.
    fn wall(&self, ts: i64) -> i64 {
        wall_ms(self.order_tz, ts)
    }

    /// Before answering: lists in the clock's current zone, and makes the
    /// writes whose time has come visible, in write order.
    fn publish_due(&mut self) {
        let tz = self.clock.timezone();
        if tz != self.order_tz {
            self.order_tz = tz;
            self.reindex();
        }
        if self.pending.is_empty() {
            return;
        }
        let now = self.now_ms();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.pending = waiting;
        for (_, id, item) in due {
            self.upsert(id, item);
        }
    }

    fn window(&self, since: Option<i64>, before: Option<i64>) -> (usize, usize) {
        let lo = since.map_or(0, |s| self.order.partition_point(|&(ts, _)| ts < s));
        let hi = before.map_or(self.order.len(), |b| {
            self.order.partition_point(|&(ts, _)| ts < b)
        });
        (lo, hi.max(lo))
    }

    fn start_index(&self, lo: usize, hi: usize, start: Start) -> usize {
        match start {
            Start::Offset(o) => lo.saturating_add(o).min(hi),
            Start::After(k) => self.order.partition_point(|x| *x <= k).clamp(lo, hi),
        }
    }

    /// Applies paging edits, then selects the page.
    fn select(&mut self, q: &ListQuery) -> Selection {
        if let Some((mode, n)) = self.edits {
            if !q.first_page || q.since.is_some() || q.before.is_some() {
                let (lo, hi) = self.window(q.since, q.before);
                let s = self.start_index(lo, hi, q.start);
                let victims: Vec<i64> = match mode {
                    EditMode::Unreturned => self.order[s..hi]
                        .iter()
                        .rev()
                        .take(n)
                        .map(|k| k.1)
                        .collect(),
                    EditMode::Returned => self.order[lo..s].iter().take(n).map(|k| k.1).collect(),
                };
                for id in victims {
                    self.modify(id);
                }
            }
        }
        let (lo, hi) = self.window(q.since, q.before);
        let start = self.start_index(lo, hi, q.start);
        let end = start.saturating_add(q.limit).min(hi);
        Selection { lo, start, end, hi }
    }

    /// Writes `[item,...]` for `order[start..end]`.
    fn write_array(&self, buf: &mut Vec<u8>, sel: &Selection) {
        buf.push(b'[');
        let mut first = true;
        for &(_, id) in &self.order[sel.start..sel.end] {
            if let Some(item) = self.items.get(&id) {
                if !first {
                    buf.push(b',');
                }
                first = false;
                write_item(buf, id, item);
            }
        }
        buf.push(b']');
    }
}

fn write_item(buf: &mut Vec<u8>, id: i64, item: &Item) {
    match &item.fields {
        None => {
            buf.extend_from_slice(b"{\"id\":");
            let _ = write!(buf, "{id}");
            buf.extend_from_slice(b",\"updated_at\":\"");
            write_time(buf, item.ts);
            buf.extend_from_slice(b"\",\"name\":\"item ");
            let _ = write!(buf, "{id}");
            let cents = id.wrapping_mul(7919).rem_euclid(100_000);
            let _ = write!(
                buf,
                "\",\"amount\":{}.{:02},\"version\":{}}}",
                cents / 100,
                cents % 100,
                item.version
            );
        }
        Some(fields) => {
            let mut map = Map::with_capacity(fields.len() + 3);
            map.insert("id".into(), json!(id));
            let mut ts = Vec::with_capacity(24);
            write_time(&mut ts, item.ts);
            map.insert(
                "updated_at".into(),
                Value::String(String::from_utf8_lossy(&ts).into_owned()),
            );
            for (k, v) in fields.iter() {
                map.insert(k.clone(), v.clone());
            }
            map.insert("version".into(), json!(item.version));
            let _ = serde_json::to_writer(&mut *buf, &map);
        }
    }
}

fn item_value(id: i64, item: &Item) -> Option<Value> {
    let mut buf = Vec::with_capacity(128);
    write_item(&mut buf, id, item);
    serde_json::from_slice(&buf).ok()
}

/// Writes `YYYY-MM-DDTHH:MM:SS[.mmm]Z` without going through a formatter.
fn write_time(buf: &mut Vec<u8>, ms: i64) {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        buf.extend_from_slice(b"1970-01-01T00:00:00Z");
        return;
    };
    let year = t.year();
    if !(0..=9999).contains(&year) {
        buf.extend_from_slice(
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .as_bytes(),
        );
        return;
    }
    let two = |buf: &mut Vec<u8>, n: u32| {
        buf.push(b'0' + (n / 10) as u8);
        buf.push(b'0' + (n % 10) as u8);
    };
    let y = year as u32;
    two(buf, y / 100);
    two(buf, y % 100);
    buf.push(b'-');
    two(buf, t.month());
    buf.push(b'-');
    two(buf, t.day());
    buf.push(b'T');
    two(buf, t.hour());
    buf.push(b':');
    two(buf, t.minute());
    buf.push(b':');
    two(buf, t.second());
    let millis = t.timestamp_subsec_millis();
    if millis != 0 {
        buf.push(b'.');
        buf.push(b'0' + (millis / 100) as u8);
        two(buf, millis % 100);
    }
    buf.push(b'Z');
}

fn time_string(ms: i64) -> String {
    let mut buf = Vec::with_capacity(24);
    write_time(&mut buf, ms);
    String::from_utf8_lossy(&buf).into_owned()
}

fn encode_cursor(key: (i64, i64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", key.0, key.1))
}

fn decode_cursor(s: &str) -> Option<(i64, i64)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ts, id) = text.split_once(':')?;
    Some((ts.parse().ok()?, id.parse().ok()?))
}

// ---------------------------------------------------------------- serving

/// An error answer, turned into a [`Response`] at the edge.
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate` value of a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        let mut resp = json_response(self.status, serde_json::to_vec(&body).unwrap_or_default());
        if let Some(challenge) = self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

fn error(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        challenge: None,
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    error(400, "bad_request", message)
}

fn unauthorized(code: &'static str, challenge: &'static str) -> ApiError {
    ApiError {
        challenge: Some(challenge),
        ..error(
            401,
            code,
            "The credentials are missing, invalid or expired.",
        )
    }
}

/// A successful answer.
struct Answer {
    body: Vec<u8>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl From<Vec<u8>> for Answer {
    fn from(body: Vec<u8>) -> Self {
        Answer {
            body,
            headers: Vec::new(),
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let seq = lock(&inner.server.log).push(RequestLog::capture(&parts, &body));
    let resp = inner.respond(&parts, &body).await;
    lock(&inner.server.log).set_status(seq, resp.status().as_u16());
    resp
}

/// Parameters of one list request.
struct Params {
    pairs: Vec<(String, String)>,
    /// The server's zone, for window filters written as local wall-clock
    /// times.
    tz: chrono_tz::Tz,
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        last_param(&self.pairs, name).filter(|v| !v.trim().is_empty())
    }

    fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad_request(format!("{name} must be a non-negative integer"))),
        }
    }

    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => wall_time(v, self.tz)
                .map(Some)
                .ok_or_else(|| {
                    bad_request(format!(
                        "{name} must be an RFC 3339 datetime or an existing local `YYYY-MM-DD HH:MM:SS`"
                    ))
                }),
        }
    }
}

impl Inner {
    async fn respond(&self, parts: &Parts, body: &[u8]) -> Response {
        let path = parts.uri.path();
        let params = Params {
            pairs: parse_query(parts.uri.query().unwrap_or("")),
            tz: self.server.clock().timezone(),
        };
        if path == "/oauth/token" {
            return match self.token(parts, body) {
                Ok(body) => json_response(200, body),
                Err(e) => e.into_response(),
            };
        }
        let planned = lock(&self.server.faults).take();
        if let Some(delay) = planned.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some((status, retry_after)) = planned.fail {
            let resp = error(status, "simulated_failure", "Simulated failure.").into_response();
            return with_retry_after(resp, retry_after);
        }
        if let Err(e) = self.check_auth(parts, &params) {
            return e.into_response();
        }
        lock(&self.state).publish_due();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = parts.method == Method::GET;
        let result = match segments.as_slice() {
            ["items", "offset"] if get => self.offset(&params),
            ["items", "page"] if get => self.page(&params),
            ["items", "cursor"] if get => self.cursor(&params),
            ["items", "next-url"] if get => self.next_url(&params),
            ["items", "link"] if get => self.link(&params),
            ["items", "keyset"] if get => self.keyset(&params),
            ["items", "search"] if parts.method == Method::POST => self.search(body),
            ["items", "single"] if get => self.single(&params),
            ["items", "loop"] if get => self.looping(&params),
            ["items", "deleted"] if get => self.deleted(&params),
            ["items", id, "lines"] if get => self.lines(id),
            ["items", "offset" | "page" | "cursor" | "next-url" | "link" | "keyset" | "single" | "loop"
            | "search" | "deleted"]
            | ["items", _, "lines"] => Err(error(405, "method_not_allowed", "Method not allowed.")),
            _ => Err(error(404, "not_found", "Not found.")),
        };
        match result {
            Ok(answer) => {
                let target = parts.uri.path_and_query().map_or("", |t| t.as_str());
                let body = self.server.success_body(target, answer.body);
                let mut resp = json_response(200, body);
                for (k, v) in answer.headers {
                    resp.headers_mut().append(k, v);
                }
                resp
            }
            Err(e) => e.into_response(),
        }
    }

    fn check_auth(&self, parts: &Parts, params: &Params) -> Result<(), ApiError> {
        let st = lock(&self.state);
        let ok = match &st.auth {
            RestAuth::None => true,
            RestAuth::Basic { username, password } => basic_credentials(parts)
                .is_some_and(|(u, p)| secret_eq(&u, username) && secret_eq(&p, password)),
            RestAuth::Bearer { token } => bearer_token(parts).is_some_and(|t| secret_eq(&t, token)),
            RestAuth::ApiKeyHeader { key } => parts
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| secret_eq(v, key)),
            RestAuth::ApiKeyQuery { key } => {
                last_param(&params.pairs, "api_key").is_some_and(|v| secret_eq(v, key))
            }
            RestAuth::OAuth2 { .. } => {
                let valid = bearer_token(parts)
                    .and_then(|t| st.tokens.get(&t).copied())
                    .is_some_and(|expires| Instant::now() < expires);
                if !valid {
                    return Err(unauthorized(
                        "invalid_token",
                        r#"Bearer error="invalid_token""#,
                    ));
                }
                true
            }
        };
        if ok {
            return Ok(());
        }
        Err(match &st.auth {
            RestAuth::Basic { .. } => unauthorized("unauthorized", r#"Basic realm="restsim""#),
            RestAuth::Bearer { .. } => unauthorized("invalid_token", r#"Bearer realm="restsim""#),
            _ => unauthorized("unauthorized", r#"ApiKey realm="restsim""#),
        })
    }

    fn token(&self, parts: &Parts, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        if parts.method != Method::POST {
            return Err(error(405, "method_not_allowed", "Use POST."));
        }
        let mut st = lock(&self.state);
        let RestAuth::OAuth2 {
            client_id,
            client_secret,
            token_lifetime,
        } = st.auth.clone()
        else {
            return Err(error(
                404,
                "not_found",
                "This simulator does not use OAuth2.",
            ));
        };
        let form = parse_query(&String::from_utf8_lossy(body));
        if last_param(&form, "grant_type") != Some("client_credentials") {
            return Err(error(
                400,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            ));
        }
        let creds = basic_credentials(parts).or_else(|| {
            Some((
                last_param(&form, "client_id")?.to_string(),
                last_param(&form, "client_secret")?.to_string(),
            ))
        });
        let valid = creds.is_some_and(|(id, secret)| {
            secret_eq(&id, &client_id) && secret_eq(&secret, &client_secret)
        });
        if !valid {
            return Err(error(
                401,
                "invalid_client",
                "Client authentication failed.",
            ));
        }
        st.tokens_issued += 1;
        let token = new_token(st.tokens_issued);
        st.tokens
            .insert(token.clone(), Instant::now() + token_lifetime);
        let body = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": token_lifetime.as_secs(),
        });
        Ok(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Reads the page size from `name`, applying the page-size fault.
    fn page_size(&self, params: &Params, name: &str) -> Result<usize, ApiError> {
        let requested = params.number(name)?;
        let st = lock(&self.state);
        check_page_size(&st, requested)
    }

    fn offset(&self, params: &Params) -> Result<Answer, ApiError> {
        let limit = self.page_size(params, "limit")?;
        let offset = params.number("offset")?.unwrap_or(0);
        let q = ListQuery {
            since: params.time("updated_since")?,
            before: params.time("updated_before")?,
            start: Start::Offset(usize::try_from(offset).unwrap_or(usize::MAX)),
            limit,
            first_page: offset == 0,
        };
        let mut st = lock(&self.state);
        let sel = st.select(&q);
        let mut buf = Vec::with_capacity(64 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"data\":");
        st.write_array(&mut buf, &sel);
        let _ = write!(buf, ",\"total\":{}}}", sel.hi - sel.lo);
        Ok(buf.into())
    }

    fn page_query(&self, params: &Params, size_name: &str) -> Result<(ListQuery, u64), ApiError> {
        let per_page = self.page_size(params, size_name)?;
        let page = params.number("page")?.unwrap_or(1);
        if page == 0 {
            return Err(bad_request("page starts at 1"));
        }
        let offset = usize::try_from(page - 1)
            .ok()
            .and_then(|p| p.checked_mul(per_page))
            .unwrap_or(usize::MAX);
        let q = ListQuery {
            since: params.time("updated_since")?,
            before: params.time("updated_before")?,
            start: Start::Offset(offset),
            limit: per_page,
            first_page: page == 1,
        };
        Ok((q, page))
    }

    fn page(&self, params: &Params) -> Result<Answer, ApiError> {
        let (q, page) = self.page_query(params, "per_page")?;
        let mut st = lock(&self.state);
        let sel = st.select(&q);
        let total_pages = (sel.hi - sel.lo).div_ceil(q.limit);
        let mut buf = Vec::with_capacity(64 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"data\":");
        st.write_array(&mut buf, &sel);
        let _ = write!(buf, ",\"page\":{page},\"total_pages\":{total_pages}}}");
        Ok(buf.into())
    }

    fn cursor_query(&self, params: &Params, cursor_name: &str) -> Result<ListQuery, ApiError> {
        let limit = self.page_size(params, "limit")?;
        let start = match params.get(cursor_name) {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| bad_request("invalid cursor"))?),
        };
        Ok(ListQuery {
            since: params.time("updated_since")?,
            before: params.time("updated_before")?,
            start: start.map_or(Start::Offset(0), Start::After),
            limit,
            first_page: start.is_none(),
        })
    }

    fn cursor(&self, params: &Params) -> Result<Answer, ApiError> {
        let q = self.cursor_query(params, "cursor")?;
        let mut st = lock(&self.state);
        let sel = st.select(&q);
        let mut buf = Vec::with_capacity(96 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"data\":");
        st.write_array(&mut buf, &sel);
        let has_more = sel.end < sel.hi;
        match (has_more, sel.end.checked_sub(1).map(|i| st.order[i])) {
            (true, Some(last)) => {
                let _ = write!(
                    buf,
                    ",\"next_cursor\":\"{}\",\"has_more\":true}}",
                    encode_cursor(last)
                );
            }
            _ => buf.extend_from_slice(b",\"next_cursor\":null,\"has_more\":false}"),
        }
        Ok(buf.into())
    }

    /// Query string carrying the window filters of `q` plus `extra`.
    fn query_with(&self, q: &ListQuery, extra: &[(&str, String)]) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in extra {
            ser.append_pair(k, v);
        }
        if let Some(s) = q.since {
            ser.append_pair("updated_since", &time_string(s));
        }
        if let Some(b) = q.before {
            ser.append_pair("updated_before", &time_string(b));
        }
        ser.finish()
    }

    fn next_url(&self, params: &Params) -> Result<Answer, ApiError> {
        let q = self.cursor_query(params, "after")?;
        let mut st = lock(&self.state);
        let sel = st.select(&q);
        let mut buf = Vec::with_capacity(160 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"results\":");
        st.write_array(&mut buf, &sel);
        let last = sel.end.checked_sub(1).map(|i| st.order[i]);
        match last.filter(|_| sel.end < sel.hi) {
            Some(last) => {
                let query = self.query_with(
                    &q,
                    &[
                        ("after", encode_cursor(last)),
                        ("limit", q.limit.to_string()),
                    ],
                );
                let next = format!("http://{}/items/next-url?{query}", self.server.addr());
                buf.extend_from_slice(b",\"next\":");
                let _ = serde_json::to_writer(&mut buf, &next);
                buf.push(b'}');
            }
            None => buf.extend_from_slice(b",\"next\":null}"),
        }
        Ok(buf.into())
    }

    fn link(&self, params: &Params) -> Result<Answer, ApiError> {
        let (q, page) = self.page_query(params, "per_page")?;
        let mut st = lock(&self.state);
        let sel = st.select(&q);
        let total_pages = (sel.hi - sel.lo).div_ceil(q.limit) as u64;
        let mut buf = Vec::with_capacity(16 + (sel.end - sel.start) * 110);
        st.write_array(&mut buf, &sel);
        let mut headers = Vec::new();
        if page < total_pages {
            let url = |p: u64| {
                let query = self.query_with(
                    &q,
                    &[("page", p.to_string()), ("per_page", q.limit.to_string())],
                );
                format!("http://{}/items/link?{query}", self.server.addr())
            };
            let value = format!(
                "<{}>; rel=\"next\", <{}>; rel=\"last\"",
                url(page + 1),
                url(total_pages)
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.push((header::LINK, v));
            }
        }
        Ok(Answer { body: buf, headers })
    }

    fn keyset(&self, params: &Params) -> Result<Answer, ApiError> {
        let limit = self.page_size(params, "limit")?;
        let since = params.time("updated_since")?;
        let before = params.time("updated_before")?;
        let after_id = match params.get("after_id") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| bad_request("after_id must be an integer"))?,
            ),
        };
        let mut st = lock(&self.state);
        let tz = st.order_tz;
        let mut buf = Vec::with_capacity(16 + limit.min(10_000) * 110);
        buf.extend_from_slice(b"{\"data\":");
        match (since, after_id) {
            (None, Some(after_id)) => {
                // ID-cursor pagination: id order, window filters still apply.
                buf.push(b'[');
                let mut first = true;
                let rows = st
                    .items
                    .range(after_id.saturating_add(1)..)
                    .filter(|(_, it)| before.is_none_or(|b| wall_ms(tz, it.ts) < b))
                    .take(limit);
                for (id, item) in rows {
                    if !first {
                        buf.push(b',');
                    }
                    first = false;
                    write_item(&mut buf, *id, item);
                }
                buf.push(b']');
            }
            (since, after_id) => {
                let q = ListQuery {
                    since,
                    before,
                    start: match (since, after_id) {
                        (Some(s), Some(a)) => Start::After((s, a)),
                        _ => Start::Offset(0),
                    },
                    limit,
                    first_page: after_id.is_none(),
                };
                let sel = st.select(&q);
                st.write_array(&mut buf, &sel);
            }
        }
        buf.push(b'}');
        Ok(buf.into())
    }

    /// The deletion log after sequence number `after`, oldest first.
    fn deleted(&self, params: &Params) -> Result<Answer, ApiError> {
        let limit = self.page_size(params, "limit")?;
        let after = usize::try_from(params.number("after")?.unwrap_or(0)).unwrap_or(usize::MAX);
        let st = lock(&self.state);
        let rows: Vec<Value> = st
            .deletions
            .iter()
            .enumerate()
            .skip(after)
            .take(limit)
            .map(|(i, &(id, at))| json!({"seq": i + 1, "id": id, "deleted_at": time_string(at)}))
            .collect();
        Ok(serde_json::to_vec(&json!({ "data": rows }))
            .unwrap_or_default()
            .into())
    }

    fn search(&self, body: &[u8]) -> Result<Answer, ApiError> {
        let req: Value = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("body is not JSON: {e}")))?;
        if !req.is_object() {
            return Err(bad_request("body must be a JSON object"));
        }
        let number = |name: &str| -> Result<Option<u64>, ApiError> {
            match req.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad_request(format!("{name} must be a non-negative integer"))),
            }
        };
        let page = number("page")?.unwrap_or(1);
        if page == 0 {
            return Err(bad_request("page starts at 1"));
        }
        let requested = number("page_size")?;
        let filter = req.get("filter").cloned().unwrap_or(Value::Null);
        let tz = self.server.clock().timezone();
        let time = |name: &str| -> Result<Option<i64>, ApiError> {
            match filter.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_str()
                    .and_then(|t| wall_time(t, tz))
                    .map(Some)
                    .ok_or_else(|| bad_request(format!("filter.{name} must be RFC 3339"))),
            }
        };
        let since = time("updated_since")?;
        let before = time("updated_before")?;
        let mut st = lock(&self.state);
        let page_size = check_page_size(&st, requested)?;
        let offset = usize::try_from(page - 1)
            .ok()
            .and_then(|p| p.checked_mul(page_size))
            .unwrap_or(usize::MAX);
        let q = ListQuery {
            since,
            before,
            start: Start::Offset(offset),
            limit: page_size,
            first_page: page == 1,
        };
        let sel = st.select(&q);
        let mut buf = Vec::with_capacity(48 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"items\":");
        st.write_array(&mut buf, &sel);
        let _ = write!(buf, ",\"has_more\":{}}}", sel.end < sel.hi);
        Ok(buf.into())
    }

    fn single(&self, params: &Params) -> Result<Answer, ApiError> {
        let st = lock(&self.state);
        let found = match params.get("id") {
            Some(v) => {
                let id = v
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad_request("id must be an integer"))?;
                st.items.get_key_value(&id)
            }
            None => st.items.iter().next(),
        };
        let (id, item) = found.ok_or_else(|| error(404, "not_found", "No such item."))?;
        let mut buf = Vec::with_capacity(160);
        buf.extend_from_slice(b"{\"item\":");
        write_item(&mut buf, *id, item);
        buf.push(b'}');
        Ok(buf.into())
    }

    fn looping(&self, params: &Params) -> Result<Answer, ApiError> {
        let limit = self.page_size(params, "limit")?;
        let mut st = lock(&self.state);
        let q = ListQuery {
            since: None,
            before: None,
            start: Start::Offset(0),
            limit,
            first_page: true,
        };
        let sel = st.select(&q);
        let mut buf = Vec::with_capacity(64 + (sel.end - sel.start) * 110);
        buf.extend_from_slice(b"{\"data\":");
        st.write_array(&mut buf, &sel);
        buf.extend_from_slice(b",\"next_cursor\":\"c3R1Y2s\",\"has_more\":true}");
        Ok(buf.into())
    }

    fn lines(&self, id: &str) -> Result<Answer, ApiError> {
        let id: i64 = id
            .parse()
            .map_err(|_| error(404, "not_found", "No such item."))?;
        let st = lock(&self.state);
        if !st.items.contains_key(&id) {
            return Err(error(404, "not_found", "No such item."));
        }
        let count = 2 + id.rem_euclid(2);
        let lines: Vec<Value> = (1..=count)
            .map(|k| {
                let cents = (id.wrapping_mul(31).wrapping_add(k * 17)).rem_euclid(10_000);
                json!({
                    "line_id": id.wrapping_mul(10).wrapping_add(k),
                    "item_id": id,
                    "sku": format!("SKU-{k}"),
                    "quantity": k,
                    "amount": cents as f64 / 100.0,
                })
            })
            .collect();
        let body = json!({ "data": lines });
        Ok(serde_json::to_vec(&body).unwrap_or_default().into())
    }
}

fn check_page_size(st: &RestState, requested: Option<u64>) -> Result<usize, ApiError> {
    if requested == Some(0) {
        return Err(bad_request("page size must be at least 1"));
    }
    if let (Some((max, status)), Some(r)) = (st.limit_fault, requested) {
        if r > max as u64 {
            return Err(error(
                status,
                "page_too_large",
                "The server could not answer such a large page in time.",
            ));
        }
    }
    let size = requested.map_or(st.default_page_size, |r| {
        usize::try_from(r).unwrap_or(usize::MAX)
    });
    Ok(size.min(st.max_page_size))
}

/// A fresh opaque token (not guessable from the count alone).
fn new_token(n: usize) -> String {
    let seed = std::collections::hash_map::RandomState::new();
    let mut a = seed.build_hasher();
    a.write_usize(n);
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut b = seed.build_hasher();
    b.write_u64(a.finish());
    format!("sim{n}.{:016x}{:016x}", a.finish(), b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_matches_chrono() {
        for ms in [0, 1_704_067_200_000, 1_704_067_200_123, 253_402_300_799_000] {
            let mut buf = Vec::new();
            write_time(&mut buf, ms);
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            let expect = if ms % 1000 == 0 {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            } else {
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            assert_eq!(String::from_utf8(buf).unwrap(), expect);
            assert_eq!(parse_time(&expect), Some(ms));
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor((1_704_067_200_000, 42));
        assert_eq!(decode_cursor(&c), Some((1_704_067_200_000, 42)));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor("bm9wZQ"), None);
    }

    #[test]
    fn generated_items_are_json() {
        let item = Item {
            ts: 1_704_067_200_000,
            version: 1,
            fields: None,
        };
        let v = item_value(7, &item).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["updated_at"], "2024-01-01T00:00:00Z");
        assert_eq!(v["name"], "item 7");
        assert_eq!(v["amount"], 554.33);
    }
}
