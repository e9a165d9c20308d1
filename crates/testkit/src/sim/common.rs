//! Plumbing shared by the simulators: the request log, the fault plan, JSON
//! responses and spawning an axum server on the current tokio runtime.

use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Largest request body a simulator reads (bigger bodies get 413).
pub(crate) const MAX_BODY: usize = 16 << 20;

/// One request as a simulator saw it, and the status it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/api/v3/customer`.
    pub path: String,
    /// The raw query string as sent (still percent-encoded), `""` if none.
    pub query: String,
    /// The query parameters, percent- and `+`-decoded, in the order sent.
    pub params: Vec<(String, String)>,
    /// Request headers (names lowercase), in the order sent.
    pub headers: Vec<(String, String)>,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// The status answered; `0` while the request is in flight, or if the
    /// client went away before the answer (e.g. it timed out a slow request).
    pub status: u16,
}

impl RequestLog {
    /// The last value of query parameter `name` (PHP semantics: last wins).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether query parameter `name` was sent.
    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn capture(parts: &Parts, body: &[u8]) -> RequestLog {
        let query = parts.uri.query().unwrap_or("").to_string();
        RequestLog {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            params: parse_query(&query),
            query,
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            status: 0,
        }
    }
}

/// Decodes a query string (`a=1&b=x%3Ay`) into pairs.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The last value of `name` in decoded pairs.
pub(crate) fn last_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not
/// take the simulator down with it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request log of one simulator.
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: Vec<RequestLog>,
    /// How many entries `clear` dropped: entry `seq` lives at `seq - cleared`.
    cleared: usize,
}

impl Log {
    pub(crate) fn push(&mut self, entry: RequestLog) -> usize {
        self.entries.push(entry);
        self.cleared + self.entries.len() - 1
    }

    pub(crate) fn set_status(&mut self, seq: usize, status: u16) {
        if let Some(i) = seq.checked_sub(self.cleared) {
            if let Some(e) = self.entries.get_mut(i) {
                e.status = status;
            }
        }
    }

    pub(crate) fn entries(&self) -> Vec<RequestLog> {
        self.entries.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn clear(&mut self) {
        self.cleared += self.entries.len();
        self.entries.clear();
    }
}

/// What the fault plan decided for one request.
#[derive(Debug, Default)]
pub(crate) struct Planned {
    pub(crate) delay: Option<Duration>,
    pub(crate) fail: Option<(u16, Option<u64>)>,
}

/// Faults queued for the next requests. Each knob counts requests on its
/// own: `fail_next(2, ..)` and `slow_next(1, ..)` make the next request slow
/// *and* failing, the one after only failing.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    fail: VecDeque<(u16, Option<u64>)>,
    slow: VecDeque<Duration>,
    /// Consumed only by answers that would have been 200.
    truncate: usize,
}

impl FaultPlan {
    pub(crate) fn fail_next(&mut self, n: usize, status: u16, retry_after: Option<u64>) {
        self.fail
            .extend(std::iter::repeat_n((status, retry_after), n));
    }

    pub(crate) fn slow_next(&mut self, n: usize, delay: Duration) {
        self.slow.extend(std::iter::repeat_n(delay, n));
    }

    pub(crate) fn truncate_next(&mut self, n: usize) {
        self.truncate = self.truncate.saturating_add(n);
    }

    pub(crate) fn clear(&mut self) {
        *self = FaultPlan::default();
    }

    /// Takes the delay and failure for the request that just arrived.
    pub(crate) fn take(&mut self) -> Planned {
        Planned {
            delay: self.slow.pop_front(),
            fail: self.fail.pop_front(),
        }
    }

    /// Whether this (successful) answer should be cut off.
    pub(crate) fn take_truncate(&mut self) -> bool {
        if self.truncate > 0 {
            self.truncate -= 1;
            true
        } else {
            false
        }
    }
}

/// Which records `modify_during_paging` edits on each page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EditMode {
    /// Records the listing has not returned yet (taken from its end).
    Unreturned,
    /// Records the listing already returned (taken from its start).
    Returned,
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A response with a JSON body.
pub(crate) fn json_response(status: u16, body: impl Into<Bytes>) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status_code(status);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Adds `Retry-After: secs` when given.
pub(crate) fn with_retry_after(mut resp: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Cuts a body off in the middle: never valid JSON for an object or array.
pub(crate) fn truncate_body(body: &[u8]) -> Bytes {
    let keep = (body.len() / 2).max(1).min(body.len().saturating_sub(1));
    Bytes::copy_from_slice(&body[..keep])
}

/// The credentials of an `Authorization: Basic ...` header.
pub(crate) fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The token of an `Authorization: Bearer ...` header.
pub(crate) fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// Constant-time-ish equality, so the simulators don't model a timing leak.
pub(crate) fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `addr` and serves `router` on a task of the current runtime.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Rewrites the body of a successful answer: called with the request's
/// path and query (`/items/offset?offset=0&limit=10`) and the body the
/// simulator would send, it returns the body to send instead.
pub type BodyRewrite = Arc<dyn Fn(&str, &[u8]) -> Vec<u8> + Send + Sync>;

/// What every simulator has besides its data: its address, the request
/// log, the fault knobs and the server task. The simulators dereference to
/// it, so `sim.fail_next(..)` and `sim.requests()` work on both.
pub struct SimServer {
    addr: SocketAddr,
    /// The server's clock: its `Date` headers and the timestamps it writes.
    pub(crate) clock: std::sync::Arc<SimClock>,
    pub(crate) faults: Mutex<FaultPlan>,
    pub(crate) log: Mutex<Log>,
    abort: Mutex<Option<tokio::task::AbortHandle>>,
    rewrite: Mutex<Option<BodyRewrite>>,
}

impl SimServer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        SimServer {
            addr,
            clock: std::sync::Arc::default(),
            faults: Mutex::new(FaultPlan::default()),
            log: Mutex::new(Log::default()),
            abort: Mutex::new(None),
            rewrite: Mutex::new(None),
        }
    }

    /// The body of a successful answer to `target` (path and query), after
    /// [`SimServer::rewrite_bodies`] and [`SimServer::truncate_next`].
    pub(crate) fn success_body(&self, target: &str, body: Vec<u8>) -> Bytes {
        let rewrite = lock(&self.rewrite).clone();
        let body = match rewrite {
            Some(f) => f(target, &body),
            None => body,
        };
        if lock(&self.faults).take_truncate() {
            truncate_body(&body)
        } else {
            body.into()
        }
    }

    /// Every later successful answer's body goes through `f` (see
    /// [`BodyRewrite`]): pretty-printing, a byte order mark, `null` or
    /// duplicated keys where the records are, values strict parsers
    /// refuse. Replaces an earlier rewrite; [`SimServer::clear_faults`]
    /// does not remove it, `stop_rewriting` does.
    pub fn rewrite_bodies(&self, f: impl Fn(&str, &[u8]) -> Vec<u8> + Send + Sync + 'static) {
        *lock(&self.rewrite) = Some(Arc::new(f));
    }

    /// Answers pretty-printed JSON (two-space indents, one member per
    /// line), as many APIs do.
    pub fn pretty_bodies(&self) {
        self.rewrite_bodies(|_, body| pretty(body));
    }

    /// Back to the simulator's own bodies.
    pub fn stop_rewriting(&self) {
        *lock(&self.rewrite) = None;
    }

    /// Serves `router` on a task of the current runtime until [`SimServer::shutdown`].
    pub(crate) fn serve(&self, listener: tokio::net::TcpListener, router: Router) {
        let clock = self.clock.clone();
        // Every answer, errors included, is dated by the server's clock, as
        // an HTTP origin server must (RFC 9110 §6.6.1).
        let router = router.layer(axum::middleware::map_response(move |mut resp: Response| {
            let date = clock.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            async move {
                if let Ok(v) = HeaderValue::from_str(&date) {
                    resp.headers_mut().insert(header::DATE, v);
                }
                resp
            }
        }));
        let task = tokio::spawn(async move {
            // The server only ends when the task is aborted or the runtime stops.
            let _ = axum::serve(listener, router).await;
        });
        *lock(&self.abort) = Some(task.abort_handle());
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's clock: set its offset from ours, freeze it, or start
    /// it at another instant; it dates every answer and every write.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Stops the server (idempotent).
    pub fn shutdown(&self) {
        if let Some(h) = lock(&self.abort).take() {
            h.abort();
        }
    }

    /// The next `n` requests answer `status` with the simulator's error
    /// body, and `Retry-After: secs` when given.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        lock(&self.faults).fail_next(n, status, retry_after);
    }

    /// The next `n` requests wait `delay` before being handled.
    pub fn slow_next(&self, n: usize, delay: Duration) {
        lock(&self.faults).slow_next(n, delay);
    }

    /// The next `n` successful (200) answers have their body cut off
    /// mid-JSON (with a matching `Content-Length`).
    pub fn truncate_next(&self, n: usize) {
        lock(&self.faults).truncate_next(n);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Every request so far (since the last [`SimServer::clear_requests`]).
    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.log).entries()
    }

    /// How many requests were logged.
    pub fn request_count(&self) -> usize {
        lock(&self.log).len()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }
}

/// `body` (compact JSON, as the simulators write it) pretty-printed with
/// member order kept: a newline and two-space indent after every `{`, `[`
/// and `,`, before every `}` and `]`, and a space after `:`.
pub fn pretty(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                if matches!(bytes.peek(), Some(b'}' | b']')) {
                    out.extend(bytes.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out
}

/// Reads a request body; `Err` is the 413 answer.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| json_response(413, r#"{"error":"request body too large"}"#))
}

/// A simulator's clock: the real clock moved by an offset (a server whose
/// clock runs ahead or behind), or frozen at an instant, read in a zone for
/// APIs that write local wall-clock times. `Date` headers and record
/// timestamps both follow it, as on a real server.
#[derive(Debug)]
pub struct SimClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Server time minus real time, while flowing.
    offset: chrono::Duration,
    /// A fixed instant, when frozen.
    frozen: Option<chrono::DateTime<chrono::Utc>>,
    timezone: chrono_tz::Tz,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock {
            state: Mutex::new(ClockState {
                offset: chrono::Duration::zero(),
                frozen: None,
                timezone: chrono_tz::UTC,
            }),
        }
    }
}

impl SimClock {
    /// The server's time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let st = *lock(&self.state);
        st.frozen.unwrap_or_else(|| chrono::Utc::now() + st.offset)
    }

    /// The server's wall-clock time in its zone, to the second.
    pub fn local_now(&self) -> chrono::NaiveDateTime {
        use chrono::{SubsecRound, TimeZone};
        let tz = self.timezone();
        tz.from_utc_datetime(&self.now().trunc_subsecs(0).naive_utc())
            .naive_local()
    }

    /// The server's clock runs `offset` ahead of the real one (negative:
    /// behind), and flows.
    pub fn set_offset(&self, offset: chrono::Duration) {
        let mut st = lock(&self.state);
        st.offset = offset;
        st.frozen = None;
    }

    /// The server's clock reads `t` now, and flows from there.
    pub fn start_at(&self, t: chrono::DateTime<chrono::Utc>) {
        self.set_offset(t - chrono::Utc::now());
    }

    /// The server's clock stands still at `t` until set otherwise.
    pub fn freeze(&self, t: chrono::DateTime<chrono::Utc>) {
        lock(&self.state).frozen = Some(t);
    }

    /// The zone the server writes local wall-clock times in (default UTC).
    pub fn set_timezone(&self, tz: chrono_tz::Tz) {
        lock(&self.state).timezone = tz;
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        lock(&self.state).timezone
    }
}
