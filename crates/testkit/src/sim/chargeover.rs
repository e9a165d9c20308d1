//! A ChargeOver REST API v3 simulator.
//!
//! What it follows, from ChargeOver's developer documentation
//! (developer.chargeover.com: "REST API", "Querying > Filtering",
//! "Querying > Sorting", "Escape Syntax"):
//!
//! - Endpoint `https://{subdomain}.chargeover.com/api/v3/{object}`; here
//!   [`ChargeOverSim::base_url`] is `http://127.0.0.1:PORT/api/v3`.
//!   `GET /api/v3/{object}` lists, `GET /api/v3/{object}/{id}` gets one
//!   record, `GET /api/v3/{object}/_count` counts (as the official PHP client
//!   calls it; `response` is the number).
//! - HTTP Basic authentication with the API username and password; a
//!   missing or wrong header answers 401.
//! - Every answer is the envelope
//!   `{"code":200,"status":"OK","message":"","details":{},"response":...}`;
//!   errors are `{"code":4xx,"status":"Error","message":"...","details":{},"response":false}`.
//! - `offset` and `limit` page the list "just like in an SQL database".
//! - `where=field:OP:value,field2:OP:value` (AND of conditions). Operators:
//!   `EQUALS`, `NOTEQUALS`, `GT`, `LT`, `GTE`, `LTE`, `CONTAINS`,
//!   `IS:NULL`, `ISNOT:NULL` (note: `NOTEQUALS`, not `NOT_EQUALS`). The
//!   reserved characters `:` and `,` inside a value are escaped with a
//!   backslash: `mod_datetime:GTE:2024-01-01 00\:00\:00`, `name:EQUALS:Doe\, John`.
//! - `order=field:ASC` or `field:DESC`; several keys may be given comma
//!   separated (the PHP client joins its sort array with `,`).
//! - Unknown object types answer 400 "The object type requested is not
//!   supported".
//!
//! Choices of this simulator where the documentation is silent (so a
//! connector should not rely on them):
//! - `limit` defaults to 10 and larger values are clamped to 500
//!   ([`ChargeOverSim::set_default_limit`], [`ChargeOverSim::set_max_limit`]).
//!   A non-numeric or negative `limit`/`offset` answers 400.
//! - Without `order`, records come by id ascending; with `order`, ties are
//!   broken by id ascending.
//! - The where parser is strict: an unescaped `:` inside a value, an unknown
//!   operator, or an empty field answers 400 "Malformed WHERE clause".
//!   Operators are upper case; `ASC`/`DESC` are case-insensitive.
//! - Comparison: numerically when both sides are numbers (or numeric
//!   strings), chronologically when both are datetimes
//!   (`YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD`, or RFC 3339
//!   converted to UTC), else as strings. `CONTAINS` is case-insensitive.
//!   A missing or null field matches only `IS:NULL` (SQL semantics, so it
//!   fails `NOTEQUALS` too) and sorts first ascending.
//! - Any other query parameter (`expand`, `fields`, ...) is accepted, ignored
//!   and kept in the request log.
//!
//! Entities are whatever the test registers (by [`ChargeOverSim::insert`],
//! [`ChargeOverSim::generate`] or [`ChargeOverSim::register_entity`]); the id
//! field is `{entity}_id` unless registered otherwise. (Real ChargeOver calls
//! payments `transaction` and subscriptions `package`; [`ChargeOverSim::alias`]
//! serves one entity under a second name.)

use super::common::{
    basic_credentials, bind, json_response, last_param, lock, read_body, secret_eq,
    with_retry_after, EditMode, RequestLog, SimServer,
};
use axum::extract::{Request, State};
use axum::http::{request::Parts, Method};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// ChargeOver's datetime format, e.g. `2024-11-01 14:30:00`.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A running ChargeOver simulator. Cheap to clone; all clones drive the
/// same server. The server runs until [`SimServer::shutdown`](super::SimServer::shutdown) or until
/// its tokio runtime stops.
#[derive(Clone)]
pub struct ChargeOverSim {
    inner: Arc<Inner>,
}

/// The request log, fault knobs and `shutdown` shared by every simulator.
impl std::ops::Deref for ChargeOverSim {
    type Target = SimServer;

    fn deref(&self) -> &SimServer {
        &self.inner.server
    }
}

impl std::fmt::Debug for ChargeOverSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeOverSim")
            .field("addr", &self.inner.server.addr())
            .finish_non_exhaustive()
    }
}

struct Inner {
    username: String,
    password: String,
    server: SimServer,
    state: Mutex<CoState>,
}

struct Entity {
    id_field: String,
    records: BTreeMap<i64, Value>,
    /// Writes not visible yet: (when they become visible, id, new value).
    pending: Vec<(DateTime<Utc>, i64, Value)>,
}

/// One version of a record as the simulator wrote it: what a connector
/// must deliver once its committed position is past `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenVersion {
    pub id: i64,
    pub version: i64,
    /// `mod_datetime` as written (local wall-clock time in the sim's zone).
    pub mod_datetime: String,
    /// The instant it stands for on the server's clock.
    pub at: DateTime<Utc>,
}

struct CoState {
    entities: BTreeMap<String, Entity>,
    aliases: BTreeMap<String, String>,
    clock: Arc<super::SimClock>,
    /// How long after its `mod_datetime` a write becomes visible.
    visibility_delay: chrono::Duration,
    history: BTreeMap<String, Vec<WrittenVersion>>,
    edits: BTreeMap<String, (EditMode, usize)>,
    default_limit: usize,
    max_limit: usize,
}

impl ChargeOverSim {
    /// Starts a simulator on `127.0.0.1:0` accepting HTTP Basic
    /// `username:password`. Panics if no port can be bound (test helper).
    pub async fn start(username: &str, password: &str) -> ChargeOverSim {
        Self::try_start(username, password, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("ChargeOverSim: cannot bind a port on 127.0.0.1")
    }

    /// Starts a simulator on `addr`.
    pub async fn try_start(
        username: &str,
        password: &str,
        addr: SocketAddr,
    ) -> std::io::Result<ChargeOverSim> {
        let listener = bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = SimServer::new(addr);
        let clock = server.clock.clone();
        let inner = Arc::new(Inner {
            username: username.to_string(),
            password: password.to_string(),
            server,
            state: Mutex::new(CoState {
                entities: BTreeMap::new(),
                aliases: BTreeMap::new(),
                clock,
                visibility_delay: chrono::Duration::zero(),
                history: BTreeMap::new(),
                edits: BTreeMap::new(),
                default_limit: 10,
                max_limit: 500,
            }),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        inner.server.serve(listener, router);
        Ok(ChargeOverSim { inner })
    }

    /// `http://127.0.0.1:PORT/api/v3`: append `/{entity}`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v3", self.inner.server.addr())
    }

    /// Registers `entity` (served at `/api/v3/{entity}`) with id field
    /// `id_field`. Entities are otherwise registered on first insert with id
    /// field `{entity}_id`.
    pub fn register_entity(&self, entity: &str, id_field: &str) {
        let mut st = lock(&self.inner.state);
        st.entities
            .entry(entity.to_string())
            .or_insert_with(|| Entity {
                id_field: id_field.to_string(),
                records: BTreeMap::new(),
                pending: Vec::new(),
            })
            .id_field = id_field.to_string();
    }

    /// Serves `entity` under the path `/api/v3/{alias}` too.
    pub fn alias(&self, alias: &str, entity: &str) {
        lock(&self.inner.state)
            .aliases
            .insert(alias.to_string(), entity.to_string());
    }

    /// Upserts `record` (a JSON object) by its id field (`{entity}_id`, a
    /// number or numeric string). Without an id it gets the next free one.
    /// Returns the id, or `None` (and stores nothing) if `record` is not an
    /// object.
    pub fn insert(&self, entity: &str, record: Value) -> Option<i64> {
        let Value::Object(mut map) = record else {
            return None;
        };
        let mut st = lock(&self.inner.state);
        let tz = st.clock.timezone();
        let e = st.entity_mut(entity);
        let id = match map.get(&e.id_field).and_then(as_i64) {
            Some(id) => id,
            None => {
                let id = e.records.keys().next_back().map_or(1, |m| m + 1);
                map.insert(e.id_field.clone(), json!(id));
                id
            }
        };
        let stamp = map
            .get("mod_datetime")
            .and_then(Value::as_str)
            .map(str::to_string);
        let version = map.get("version").and_then(as_i64).unwrap_or(1);
        e.records.insert(id, Value::Object(map));
        if let Some(at) = stamp.as_deref().and_then(parse_datetime).and_then(|n| {
            use chrono::TimeZone;
            tz.from_local_datetime(&n)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }) {
            let name = st.resolve(entity).unwrap_or(entity).to_string();
            st.history.entry(name).or_default().push(WrittenVersion {
                id,
                version,
                mod_datetime: stamp.unwrap_or_default(),
                at,
            });
        }
        Some(id)
    }

    /// Upserts `count` deterministic records with ids `1..=count`: record
    /// `i` has `mod_datetime = write_datetime = from + (i-1)*step`, `name`
    /// `"{Entity} {i}"`, `email` `"{entity}{i}@example.com"`, `company`,
    /// `external_key` `"{entity}-{i}"`, `amount` and `version: 1`.
    pub fn generate(
        &self,
        entity: &str,
        count: usize,
        from: NaiveDateTime,
        step: chrono::Duration,
    ) {
        let mut st = lock(&self.inner.state);
        let e = st.entity_mut(entity);
        let title = title_case(entity);
        let mut written = Vec::with_capacity(count);
        for i in 1..=count {
            let n = i32::try_from(i - 1).unwrap_or(i32::MAX);
            let at = step
                .checked_mul(n)
                .and_then(|d| from.checked_add_signed(d))
                .unwrap_or(from);
            let at = at.format(DATETIME_FORMAT).to_string();
            let id = i64::try_from(i).unwrap_or(i64::MAX);
            let cents = (id.wrapping_mul(7919)).rem_euclid(100_000);
            let mut map = Map::new();
            map.insert(e.id_field.clone(), json!(id));
            map.insert("name".into(), json!(format!("{title} {i}")));
            map.insert("email".into(), json!(format!("{entity}{i}@example.com")));
            map.insert("company".into(), json!(format!("Company {}", i % 97)));
            map.insert("external_key".into(), json!(format!("{entity}-{i}")));
            map.insert("amount".into(), json!(cents as f64 / 100.0));
            map.insert("write_datetime".into(), json!(at));
            map.insert("mod_datetime".into(), json!(at));
            map.insert("version".into(), json!(1));
            e.records.insert(id, Value::Object(map));
            written.push((id, at));
        }
        let tz = st.clock.timezone();
        let name = st.resolve(entity).unwrap_or(entity).to_string();
        let history = st.history.entry(name).or_default();
        for (id, stamp) in written {
            use chrono::TimeZone;
            if let Some(at) =
                parse_datetime(&stamp).and_then(|n| tz.from_local_datetime(&n).earliest())
            {
                history.push(WrittenVersion {
                    id,
                    version: 1,
                    mod_datetime: stamp,
                    at: at.with_timezone(&Utc),
                });
            }
        }
    }

    /// The records of `entity`, sorted by id.
    pub fn records(&self, entity: &str) -> Vec<Value> {
        let st = lock(&self.inner.state);
        st.resolve(entity)
            .and_then(|name| st.entities.get(name))
            .map(|e| e.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One record of `entity`.
    pub fn get(&self, entity: &str, id: i64) -> Option<Value> {
        let st = lock(&self.inner.state);
        let name = st.resolve(entity)?;
        st.entities.get(name)?.records.get(&id).cloned()
    }

    /// Deletes one record; whether it existed.
    pub fn remove(&self, entity: &str, id: i64) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(name) = st.resolve(entity).map(str::to_string) else {
            return false;
        };
        st.entities
            .get_mut(&name)
            .is_some_and(|e| e.records.remove(&id).is_some())
    }

    /// Freezes the simulator's clock (used by [`ChargeOverSim::modify`]
    /// and the `Date` header) at wall-clock time `t` in its zone (the
    /// first, for a repeated time). Until set, it is the current time; see
    /// [`SimServer::clock`] for a clock that flows, ahead or behind ours.
    pub fn set_now(&self, t: NaiveDateTime) {
        use chrono::TimeZone;
        let clock = self.inner.server.clock();
        if let Some(at) = clock.timezone().from_local_datetime(&t).earliest() {
            clock.freeze(at.with_timezone(&Utc));
        }
    }

    /// The simulator's clock, to the second, as a wall-clock time in its zone.
    pub fn now(&self) -> NaiveDateTime {
        lock(&self.inner.state).now()
    }

    /// Writes made from now on become visible (listed) only `delay` after
    /// their `mod_datetime`, as behind a slow commit or a replica: until
    /// then the listing shows the record's previous version, if any.
    pub fn set_visibility_delay(&self, delay: std::time::Duration) {
        lock(&self.inner.state).visibility_delay =
            chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    }

    /// Every version written by [`ChargeOverSim::modify`], [`ChargeOverSim::insert`]
    /// (with a `mod_datetime`) and [`ChargeOverSim::write_new`], in write order.
    pub fn history(&self, entity: &str) -> Vec<WrittenVersion> {
        let st = lock(&self.inner.state);
        let name = st.resolve(entity).unwrap_or(entity);
        st.history.get(name).cloned().unwrap_or_default()
    }

    /// Creates a record stamped with the simulator's clock: the next free
    /// id, `version: 1`. Visible after the visibility delay.
    pub fn write_new(&self, entity: &str) -> i64 {
        let mut st = lock(&self.inner.state);
        let name = st
            .resolve(entity)
            .map(str::to_string)
            .unwrap_or_else(|| entity.to_string());
        let e = st.entity_mut(&name);
        let id_field = e.id_field.clone();
        let id = e
            .records
            .keys()
            .chain(e.pending.iter().map(|(_, id, _)| id))
            .max()
            .map_or(1, |m| m + 1);
        let mut map = Map::new();
        map.insert(id_field, json!(id));
        map.insert("name".into(), json!(format!("new {id}")));
        map.insert("version".into(), json!(0));
        st.write(&name, id, map);
        id
    }

    /// Writes continuously until the returned guard is dropped: every
    /// `every`, modifies the next of the existing records in turn and, each
    /// `new_every`-th write, creates one. Runs on the current tokio runtime.
    pub fn write_continuously(
        &self,
        entity: &str,
        every: std::time::Duration,
        new_every: usize,
    ) -> ContinuousWrites {
        let sim = self.clone();
        let entity = entity.to_string();
        let task = tokio::spawn(async move {
            let mut n = 0usize;
            let mut next_id = 1i64;
            loop {
                tokio::time::sleep(every).await;
                n += 1;
                if new_every > 0 && n.is_multiple_of(new_every) {
                    sim.write_new(&entity);
                    continue;
                }
                let ids: Vec<i64> = {
                    let st = lock(&sim.inner.state);
                    st.entities
                        .get(&entity)
                        .map(|e| e.records.keys().copied().collect())
                        .unwrap_or_default()
                };
                if ids.is_empty() {
                    continue;
                }
                let at = ids.partition_point(|i| *i < next_id) % ids.len();
                sim.modify(&entity, ids[at]);
                next_id = ids[at] + 1;
            }
        });
        ContinuousWrites {
            task: Some(task.abort_handle()),
        }
    }

    /// Sets `mod_datetime` to now and increments `version`. Whether the
    /// record exists.
    pub fn modify(&self, entity: &str, id: i64) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(name) = st.resolve(entity).map(str::to_string) else {
            return false;
        };
        st.modify(&name, id)
    }

    /// The `limit` used when a request sends none (default 10).
    pub fn set_default_limit(&self, limit: usize) {
        lock(&self.inner.state).default_limit = limit;
    }

    /// The largest `limit` honoured; larger ones are clamped (default 500).
    pub fn set_max_limit(&self, limit: usize) {
        lock(&self.inner.state).max_limit = limit;
    }

    /// Simulates concurrent edits: on every list request for `entity` that
    /// has `offset > 0` or a `where` filter, before answering, modifies (as
    /// [`ChargeOverSim::modify`]) up to `per_request` records of the listing
    /// (same where/order) that this paging has not returned yet: the last ones
    /// of the listing at positions `>= offset`. With `set_now` after a
    /// window's upper bound, they leave the window: a listing by offset ends
    /// without them, and only a later window finds them. `0` turns it off.
    pub fn modify_during_paging(&self, entity: &str, per_request: usize) {
        self.set_edits(entity, EditMode::Unreturned, per_request);
    }

    /// Like [`ChargeOverSim::modify_during_paging`], but modifies records the
    /// paging has *already* returned (the first ones of the listing, at
    /// positions `< offset`). They leave the window (or move to its end),
    /// every later record shifts left, and an offset pager skips records that
    /// were never modified: the offset-pagination skip bug.
    pub fn modify_returned_during_paging(&self, entity: &str, per_request: usize) {
        self.set_edits(entity, EditMode::Returned, per_request);
    }

    fn set_edits(&self, entity: &str, mode: EditMode, n: usize) {
        let mut st = lock(&self.inner.state);
        if n == 0 {
            st.edits.remove(entity);
        } else {
            st.edits.insert(entity.to_string(), (mode, n));
        }
    }
}

/// Stops [`ChargeOverSim::write_continuously`] when dropped.
pub struct ContinuousWrites {
    task: Option<tokio::task::AbortHandle>,
}

impl ContinuousWrites {
    pub fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for ContinuousWrites {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl CoState {
    fn now(&self) -> NaiveDateTime {
        self.clock.local_now()
    }

    /// Stores a new version of record `id` stamped now (visible after the
    /// visibility delay) and records it in the history.
    fn write(&mut self, entity: &str, id: i64, mut map: Map<String, Value>) {
        let at = self
            .clock
            .now()
            .with_nanosecond(0)
            .unwrap_or_else(|| self.clock.now());
        let stamp = self.now().format(DATETIME_FORMAT).to_string();
        let version = map.get("version").and_then(as_i64).unwrap_or(0) + 1;
        map.insert("mod_datetime".into(), json!(stamp));
        map.insert("version".into(), json!(version));
        let delay = self.visibility_delay;
        let e = self.entity_mut(entity);
        if delay > chrono::Duration::zero() {
            e.pending.push((at + delay, id, Value::Object(map)));
        } else {
            e.records.insert(id, Value::Object(map));
        }
        self.history
            .entry(entity.to_string())
            .or_default()
            .push(WrittenVersion {
                id,
                version,
                mod_datetime: stamp,
                at,
            });
    }

    /// Makes the writes whose time has come visible.
    fn publish_due(&mut self) {
        let now = self.clock.now();
        for e in self.entities.values_mut() {
            let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut e.pending)
                .into_iter()
                .partition(|(t, _, _)| *t <= now);
            e.pending = waiting;
            for (_, id, v) in due {
                e.records.insert(id, v);
            }
        }
    }

    fn resolve<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.entities.contains_key(name) {
            return Some(name);
        }
        self.aliases
            .get(name)
            .map(String::as_str)
            .filter(|t| self.entities.contains_key(*t))
    }

    fn entity_mut(&mut self, entity: &str) -> &mut Entity {
        let name = self
            .aliases
            .get(entity)
            .cloned()
            .unwrap_or_else(|| entity.to_string());
        self.entities.entry(name).or_insert_with(|| Entity {
            id_field: format!("{entity}_id"),
            records: BTreeMap::new(),
            pending: Vec::new(),
        })
    }

    fn modify(&mut self, entity: &str, id: i64) -> bool {
        let Some(e) = self.entities.get(entity) else {
            return false;
        };
        // The latest version, visible or not, is the one edited.
        let latest = e
            .pending
            .iter()
            .rev()
            .find(|(_, pid, _)| *pid == id)
            .map(|(_, _, v)| v)
            .or_else(|| e.records.get(&id));
        let Some(Value::Object(map)) = latest.cloned() else {
            return false;
        };
        let map = if map.get("version").and_then(as_i64).is_none() {
            let mut m = map;
            m.insert("version".into(), json!(1));
            m
        } else {
            map
        };
        self.write(entity, id, map);
        true
    }

    /// Ids of the records of `entity` matching `conds`, in `order`.
    fn listing(&self, entity: &str, conds: &[Cond], order: &[(String, bool)]) -> Vec<i64> {
        let Some(e) = self.entities.get(entity) else {
            return Vec::new();
        };
        let mut rows: Vec<(Vec<SortKey>, i64)> = e
            .records
            .iter()
            .filter(|(_, r)| conds.iter().all(|c| c.matches(r)))
            .map(|(id, r)| {
                let keys = order.iter().map(|(f, _)| SortKey::of(r.get(f))).collect();
                (keys, *id)
            })
            .collect();
        if !order.is_empty() {
            rows.sort_by(|(a, ida), (b, idb)| {
                for (i, (_, desc)) in order.iter().enumerate() {
                    let o = a[i].cmp(&b[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                ida.cmp(idb)
            });
        }
        rows.into_iter().map(|(_, id)| id).collect()
    }
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------- querying

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    IsNull,
    IsNotNull,
}

#[derive(Debug)]
struct Cond {
    field: String,
    op: Op,
    value: String,
}

impl Cond {
    fn matches(&self, record: &Value) -> bool {
        let v = record.get(&self.field).filter(|v| !v.is_null());
        match (self.op, v) {
            (Op::IsNull, v) => v.is_none(),
            (Op::IsNotNull, v) => v.is_some(),
            (_, None) => false,
            (Op::Contains, Some(v)) => text_of(v)
                .to_lowercase()
                .contains(&self.value.to_lowercase()),
            (op, Some(v)) => {
                let o = compare_to_query(v, &self.value);
                match op {
                    Op::Equals => o == Ordering::Equal,
                    Op::NotEquals => o != Ordering::Equal,
                    Op::Gt => o == Ordering::Greater,
                    Op::Gte => o != Ordering::Less,
                    Op::Lt => o == Ordering::Less,
                    Op::Lte => o != Ordering::Greater,
                    _ => false,
                }
            }
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn num_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => parse_num(s),
        _ => None,
    }
}

fn parse_num(s: &str) -> Option<f64> {
    let s = s.trim();
    let first = s.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Parses the datetime shapes a ChargeOver client may send or store.
pub(crate) fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if s.len() < 10 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// How a record's value compares to a where value.
fn compare_to_query(v: &Value, q: &str) -> Ordering {
    if let (Some(a), Some(b)) = (num_of(v), parse_num(q)) {
        return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    }
    let text = text_of(v);
    if let (Some(a), Some(b)) = (parse_datetime(&text), parse_datetime(q)) {
        return a.cmp(&b);
    }
    text.as_str().cmp(q)
}

/// A sort key: nulls first, then numbers, datetimes, strings.
#[derive(Debug)]
enum SortKey {
    Null,
    Num(f64),
    Time(NaiveDateTime),
    Text(String),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Null => 0,
            SortKey::Num(_) => 1,
            SortKey::Time(_) => 2,
            SortKey::Text(_) => 3,
        }
    }

    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Time(a), SortKey::Time(b)) => a.cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn of(v: Option<&Value>) -> SortKey {
        match v {
            None | Some(Value::Null) => SortKey::Null,
            Some(v) => {
                if let Some(n) = num_of(v) {
                    return SortKey::Num(n);
                }
                let t = text_of(v);
                match parse_datetime(&t) {
                    Some(d) => SortKey::Time(d),
                    None => SortKey::Text(t),
                }
            }
        }
    }
}

/// Splits `s` on unescaped `sep`, keeping escapes (`\x`) in the pieces.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let last = out.last_mut().expect("never empty");
            last.push(c);
            if let Some(n) = chars.next() {
                last.push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

/// Removes backslash escapes: `\:` → `:`, `\,` → `,`, `\\` → `\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_where(s: &str) -> Result<Vec<Cond>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_unescaped(s, ',')
        .iter()
        .map(|clause| {
            let parts: Vec<String> = split_unescaped(clause, ':');
            let field = unescape(parts[0].trim());
            if field.is_empty() {
                return Err(format!("Malformed WHERE clause: {clause}"));
            }
            let op = parts.get(1).map(|s| s.trim()).unwrap_or("");
            let (op, value) = match (op, parts.len()) {
                ("IS", 3) if parts[2] == "NULL" => (Op::IsNull, String::new()),
                ("ISNOT", 3) if parts[2] == "NULL" => (Op::IsNotNull, String::new()),
                (op, 3) => {
                    let op = match op {
                        "EQUALS" => Op::Equals,
                        "NOTEQUALS" => Op::NotEquals,
                        "GT" => Op::Gt,
                        "GTE" => Op::Gte,
                        "LT" => Op::Lt,
                        "LTE" => Op::Lte,
                        "CONTAINS" => Op::Contains,
                        other => {
                            return Err(format!(
                                "Malformed WHERE clause: unknown operator {other:?} in {clause} \
                                 (EQUALS, NOTEQUALS, GT, GTE, LT, LTE, CONTAINS, IS:NULL, ISNOT:NULL)"
                            ))
                        }
                    };
                    (op, unescape(&parts[2]))
                }
                (_, n) if n > 3 => {
                    return Err(format!(
                        "Malformed WHERE clause: {clause} (escape ':' in values as '\\:')"
                    ))
                }
                _ => return Err(format!("Malformed WHERE clause: {clause}")),
            };
            Ok(Cond { field, op, value })
        })
        .collect()
}

fn parse_order(s: &str) -> Result<Vec<(String, bool)>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_unescaped(s, ',')
        .iter()
        .map(|key| {
            let parts = split_unescaped(key, ':');
            let field = unescape(parts[0].trim());
            let desc = match parts.get(1).map(|d| d.trim().to_ascii_uppercase()) {
                None => false,
                Some(d) if d == "ASC" => false,
                Some(d) if d == "DESC" => true,
                Some(_) => return Err(format!("Invalid order: {key}")),
            };
            if field.is_empty() || parts.len() > 2 {
                return Err(format!("Invalid order: {key}"));
            }
            Ok((field, desc))
        })
        .collect()
}

fn parse_count(params: &[(String, String)], name: &str) -> Result<Option<usize>, String> {
    match last_param(params, name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("Missing or invalid parameter: {name}={v}")),
    }
}

// ---------------------------------------------------------------- serving

fn envelope(code: u16, message: &str, response: Value) -> Vec<u8> {
    let body = json!({
        "code": code,
        "status": if code < 400 { "OK" } else { "Error" },
        "message": message,
        "details": {},
        "response": response,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An error answer, turned into a [`Response`] at the edge.
struct Fail {
    code: u16,
    message: String,
}

fn fail(code: u16, message: impl Into<String>) -> Fail {
    Fail {
        code,
        message: message.into(),
    }
}

fn error(code: u16, message: &str) -> Response {
    json_response(code, envelope(code, message, Value::Bool(false)))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let seq = lock(&inner.server.log).push(RequestLog::capture(&parts, &body));
    let resp = inner.respond(&parts).await;
    lock(&inner.server.log).set_status(seq, resp.status().as_u16());
    resp
}

impl Inner {
    async fn respond(&self, parts: &Parts) -> Response {
        let planned = lock(&self.server.faults).take();
        if let Some(delay) = planned.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some((status, retry_after)) = planned.fail {
            let message = match status {
                429 => "Too many requests.",
                503 => "Service unavailable.",
                s if s >= 500 => "Internal server error.",
                _ => "Simulated failure.",
            };
            return with_retry_after(error(status, message), retry_after);
        }
        match basic_credentials(parts) {
            None => {
                return error(
                    401,
                    "Invalid or incorrect authorization [Missing (basic) authorization header.]",
                )
            }
            Some((u, p)) if !(secret_eq(&u, &self.username) && secret_eq(&p, &self.password)) => {
                return error(401, "Invalid or incorrect authorization.")
            }
            Some(_) => {}
        }
        if parts.method != Method::GET {
            return error(405, "The simulator only supports GET.");
        }
        let Some(rest) = parts.uri.path().strip_prefix("/api/v3/") else {
            return error(404, "Not found.");
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let params = super::common::parse_query(parts.uri.query().unwrap_or(""));
        let result = match segments.as_slice() {
            [entity] => self.list(entity, &params),
            [entity, "_count"] => self.count(entity, &params),
            [entity, id] => self.get_one(entity, id),
            _ => Err(fail(404, "Not found.")),
        };
        match result {
            Ok(body) => {
                let target = parts.uri.path_and_query().map_or("", |t| t.as_str());
                let body = self.server.success_body(target, body);
                json_response(200, body)
            }
            Err(f) => error(f.code, &f.message),
        }
    }

    fn list(&self, entity: &str, params: &[(String, String)]) -> Result<Vec<u8>, Fail> {
        let bad = |m: String| fail(400, m);
        let conds = parse_where(last_param(params, "where").unwrap_or("")).map_err(bad)?;
        let order = parse_order(last_param(params, "order").unwrap_or("")).map_err(bad)?;
        let limit = parse_count(params, "limit").map_err(bad)?;
        let offset = parse_count(params, "offset").map_err(bad)?.unwrap_or(0);

        let mut st = lock(&self.state);
        st.publish_due();
        let name = st
            .resolve(entity)
            .map(str::to_string)
            .ok_or_else(|| unsupported(entity))?;
        let limit = limit.unwrap_or(st.default_limit).min(st.max_limit);

        if let Some(&(mode, n)) = st.edits.get(&name).or_else(|| st.edits.get(entity)) {
            if offset > 0 || !conds.is_empty() {
                let listing = st.listing(&name, &conds, &order);
                let victims: Vec<i64> = match mode {
                    EditMode::Unreturned => {
                        listing.iter().skip(offset).rev().take(n).copied().collect()
                    }
                    EditMode::Returned => listing
                        .iter()
                        .take(offset.min(listing.len()))
                        .take(n)
                        .copied()
                        .collect(),
                };
                for id in victims {
                    st.modify(&name, id);
                }
            }
        }

        let listing = st.listing(&name, &conds, &order);
        let records = &st.entities[&name].records;
        let page: Vec<Value> = listing
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|id| records.get(id).cloned())
            .collect();
        Ok(envelope(200, "", Value::Array(page)))
    }

    fn count(&self, entity: &str, params: &[(String, String)]) -> Result<Vec<u8>, Fail> {
        let conds =
            parse_where(last_param(params, "where").unwrap_or("")).map_err(|m| fail(400, m))?;
        let st = lock(&self.state);
        let name = st.resolve(entity).ok_or_else(|| unsupported(entity))?;
        let n = st.listing(name, &conds, &[]).len();
        Ok(envelope(200, "", json!(n)))
    }

    fn get_one(&self, entity: &str, id: &str) -> Result<Vec<u8>, Fail> {
        let st = lock(&self.state);
        let name = st.resolve(entity).ok_or_else(|| unsupported(entity))?;
        let record = id
            .parse::<i64>()
            .ok()
            .and_then(|id| st.entities[name].records.get(&id))
            .ok_or_else(|| fail(404, "Object not found."))?;
        Ok(envelope(200, "", record.clone()))
    }
}

fn unsupported(entity: &str) -> Fail {
    fail(
        400,
        format!("The object type requested is not supported: list({entity}, )"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_parsing_handles_escapes_and_null_ops() {
        let c = parse_where(
            r"mod_datetime:GTE:2024-01-01 00\:00\:00,name:EQUALS:Doe\, John,x:IS:NULL,y:ISNOT:NULL",
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].field, "mod_datetime");
        assert_eq!(c[0].op, Op::Gte);
        assert_eq!(c[0].value, "2024-01-01 00:00:00");
        assert_eq!(c[1].value, "Doe, John");
        assert_eq!(c[2].op, Op::IsNull);
        assert_eq!(c[3].op, Op::IsNotNull);
        assert!(parse_where("mod_datetime:GTE:2024-01-01 00:00:00").is_err());
        assert!(parse_where("a:NOT_EQUALS:1").is_err());
        assert!(parse_where(":EQUALS:1").is_err());
        assert!(parse_where("a").is_err());
        assert!(parse_where("").unwrap().is_empty());
    }

    #[test]
    fn comparisons_are_numeric_then_chronological_then_textual() {
        assert_eq!(compare_to_query(&json!(10), "9"), Ordering::Greater);
        assert_eq!(compare_to_query(&json!("10"), "9"), Ordering::Greater);
        assert_eq!(
            compare_to_query(&json!("2024-01-02 00:00:00"), "2024-01-02"),
            Ordering::Equal
        );
        assert_eq!(
            compare_to_query(&json!("2024-01-02 00:00:01"), "2024-01-02T00:00:00Z"),
            Ordering::Greater
        );
        assert_eq!(compare_to_query(&json!("b"), "a"), Ordering::Greater);
    }

    #[test]
    fn order_parsing() {
        assert_eq!(
            parse_order("mod_datetime:ASC,customer_id:desc").unwrap(),
            vec![("mod_datetime".into(), false), ("customer_id".into(), true)]
        );
        assert!(parse_order("a:UP").is_err());
    }
}
