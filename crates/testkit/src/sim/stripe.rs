//! A Stripe Reporting API simulator.
//!
//! What it follows, from Stripe's API reference ("Reporting > Report Types",
//! "Report Runs", "Files", "Errors", "Pagination", "Authentication"):
//!
//! - `GET /v1/reporting/report_types/{id}`: a `reporting.report_type` with
//!   `data_available_start` / `data_available_end` (Unix seconds),
//!   `default_columns`, `name`, `updated`, `version`, `livemode`.
//! - `POST /v1/reporting/report_runs`, form-encoded: `report_type`,
//!   `parameters[interval_start]`, `parameters[interval_end]`,
//!   `parameters[timezone]`, `parameters[columns][]` (repeated). Answers a
//!   `reporting.report_run` with `status: "pending"`; later reads show
//!   `succeeded` (with `result`, a `file` object whose `url` serves the CSV,
//!   and `succeeded_at`) or `failed` (with `error`).
//! - `GET /v1/reporting/report_runs/{id}` and
//!   `GET /v1/reporting/report_runs?limit=&starting_after=&created[gte]=`:
//!   `{"object": "list", "url", "has_more", "data"}`, newest first.
//! - `GET /v1/files/{id}/contents`: the report, `text/csv`.
//! - Authentication with the secret key as `Authorization: Bearer sk_...`
//!   or as HTTP Basic username (empty password), 401 otherwise.
//! - Errors: `{"error": {"type": "invalid_request_error", "message",
//!   "param", "code"}}`; 400 for bad parameters, 404 `resource_missing`
//!   for unknown ids, 401 for a bad key.
//!
//! The data: one list of balance transactions (`add_transactions`); a
//! report over `[interval_start, interval_end)` has one row per transaction
//! created in it, `created` rendered in the run's timezone, columns as
//! asked (default: all). Every report type serves the same rows.
//!
//! - Idempotent requests ("Idempotent requests"): a `POST` with an
//!   `Idempotency-Key` header saves the result once the endpoint ran; the
//!   same key with the same parameters answers that saved result again
//!   with `Idempotent-Replayed: true`, with other parameters a 400
//!   `idempotency_error`. Requests that failed validation save nothing.
//!
//! Knobs: report latency in status reads (`set_latency_polls`) or held until
//! released (`hold_runs`), runs that never finish (`hang_next_runs`), the
//! next runs failing (`fail_next_runs`), the report types'
//! `data_available_end`, expiring files (`expire_files`), every n-th request
//! failing (`fail_every`), a run created whose answer is lost behind a 500
//! (`lose_next_create_responses`, as a proxy failing after Stripe answered),
//! files redirected to another host (`redirect_files_off_host`), a report
//! type whose every request fails (`break_report_type`), plus the request
//! faults every simulator has (`fail_next`, `slow_next`, ...). `runs()` is
//! the log of every run created, so a test asserts "no second run".

use super::common::{
    basic_credentials, bearer_token, bind, json_response, lock, read_body, secret_eq,
    with_retry_after, RequestLog, SimServer,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The columns of every simulated report, in file order.
pub const COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "description",
];

/// A running simulator; clones drive the same server.
#[derive(Clone)]
pub struct StripeSim {
    inner: Arc<Inner>,
}

impl std::ops::Deref for StripeSim {
    type Target = SimServer;

    fn deref(&self) -> &SimServer {
        &self.inner.server
    }
}

impl std::fmt::Debug for StripeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSim")
            .field("addr", &self.inner.server.addr())
            .finish_non_exhaustive()
    }
}

struct Inner {
    api_key: String,
    server: SimServer,
    state: Mutex<SimState>,
}

/// One balance transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub description: String,
}

/// A report run as the simulator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRun {
    pub id: String,
    pub report_type: String,
    pub interval_start: i64,
    pub interval_end: i64,
    pub timezone: String,
    pub columns: Option<Vec<String>>,
    pub created: i64,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Status reads left before it finishes.
    polls_left: u32,
    /// Stays `pending` forever (`hang_next_runs`).
    pub hung: bool,
    /// The `Idempotency-Key` it was created with.
    pub idempotency_key: Option<String>,
    fails_with: Option<String>,
    file: Option<String>,
    succeeded_at: Option<i64>,
}

#[derive(Default)]
struct SimState {
    report_types: BTreeMap<String, (i64, i64)>,
    transactions: Vec<Transaction>,
    runs: Vec<SimRun>,
    latency_polls: u32,
    hold: bool,
    /// Errors the next runs of a report type end with.
    fail_next: BTreeMap<String, Vec<String>>,
    files: BTreeMap<String, String>,
    files_expired: bool,
    next_id: u64,
    /// Runs created from now on that never finish.
    hang_next: usize,
    /// `(n, status)`: every n-th request answers `status`.
    fail_every: Option<(u64, u16)>,
    requests_seen: u64,
    /// Creates whose run is made but whose answer is replaced by a 500.
    lose_creates: usize,
    /// File downloads answer 302 to the same file on `localhost` (another
    /// host than the `127.0.0.1` the source is configured with).
    redirect_files: bool,
    /// Report types whose every request answers 500.
    broken: Vec<String>,
    /// Saved results of idempotent requests: key → (parameters, status, body).
    idempotent: BTreeMap<String, (String, u16, String)>,
}

struct Fail {
    status: u16,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

fn bad(message: impl Into<String>, param: &str) -> Fail {
    Fail {
        status: 400,
        message: message.into(),
        param: Some(param.into()),
        code: Some("parameter_invalid"),
    }
}

fn missing(what: &str, id: &str, param: &str) -> Fail {
    Fail {
        status: 404,
        message: format!("No such {what}: '{id}'"),
        param: Some(param.into()),
        code: Some("resource_missing"),
    }
}

fn error_response(f: &Fail) -> Response {
    let mut err = json!({"type": "invalid_request_error", "message": f.message});
    if let Some(p) = &f.param {
        err["param"] = json!(p);
    }
    if let Some(c) = f.code {
        err["code"] = json!(c);
        err["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            c.replace('_', "-")
        ));
    }
    json_response(f.status, json!({ "error": err }).to_string())
}

impl StripeSim {
    /// Starts on `127.0.0.1:0` accepting `api_key`. Panics if no port can be bound.
    pub async fn start(api_key: &str) -> StripeSim {
        Self::try_start(api_key, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("StripeSim: cannot bind a port on 127.0.0.1")
    }

    pub async fn try_start(api_key: &str, addr: SocketAddr) -> std::io::Result<StripeSim> {
        let listener = bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            api_key: api_key.to_string(),
            server: SimServer::new(addr),
            state: Mutex::new(SimState::default()),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        inner.server.serve(listener, router);
        Ok(StripeSim { inner })
    }

    /// `http://127.0.0.1:PORT`: the `base_url` (and `files_url`) of the source.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.server.addr())
    }

    /// Registers (or updates) a report type with its data availability.
    pub fn set_report_type(
        &self,
        id: &str,
        available_start: DateTime<Utc>,
        available_end: DateTime<Utc>,
    ) {
        lock(&self.inner.state).report_types.insert(
            id.to_string(),
            (available_start.timestamp(), available_end.timestamp()),
        );
    }

    /// Moves `data_available_end` of every report type.
    pub fn set_data_available_end(&self, end: DateTime<Utc>) {
        for v in lock(&self.inner.state).report_types.values_mut() {
            v.1 = end.timestamp();
        }
    }

    /// Adds `count` transactions `txn_{first}..`, created `step` apart from `from`.
    pub fn add_transactions(
        &self,
        first: u64,
        count: u64,
        from: DateTime<Utc>,
        step: chrono::Duration,
    ) {
        let mut st = lock(&self.inner.state);
        for i in 0..count {
            let n = first + i;
            let created = from + step * i32::try_from(i).unwrap_or(i32::MAX);
            let amount = i64::try_from(n % 9_973 * 100 + 50).unwrap_or(0);
            st.transactions.push(Transaction {
                id: format!("txn_{n:08}"),
                created: created.timestamp(),
                amount,
                fee: amount / 30,
                currency: "usd".into(),
                description: format!("Charge {n}, \"quoted\""),
            });
        }
    }

    pub fn transactions(&self) -> Vec<Transaction> {
        lock(&self.inner.state).transactions.clone()
    }

    /// Runs stay `pending` for this many status reads (default 0: the first
    /// read after creation already shows the outcome).
    pub fn set_latency_polls(&self, polls: u32) {
        lock(&self.inner.state).latency_polls = polls;
    }

    /// While held, every run stays `pending` whatever its latency.
    pub fn hold_runs(&self, hold: bool) {
        lock(&self.inner.state).hold = hold;
    }

    /// The next `n` runs created for `report_type` end `failed` with `error`.
    pub fn fail_next_runs(&self, report_type: &str, n: usize, error: &str) {
        lock(&self.inner.state)
            .fail_next
            .entry(report_type.to_string())
            .or_default()
            .extend(std::iter::repeat_n(error.to_string(), n));
    }

    /// Report files answer 404 from now on (Stripe's files expire).
    pub fn expire_files(&self, expired: bool) {
        lock(&self.inner.state).files_expired = expired;
    }

    /// The next `n` runs created stay `pending` forever, whatever `hold_runs`.
    pub fn hang_next_runs(&self, n: usize) {
        lock(&self.inner.state).hang_next += n;
    }

    /// Every `n`-th request from now on answers `status` (an `api_error`),
    /// scattered faults no retry budget counting only rows survives;
    /// `n = 0` turns it off.
    pub fn fail_every(&self, n: u64, status: u16) {
        let mut st = lock(&self.inner.state);
        st.fail_every = (n > 0).then_some((n, status));
        st.requests_seen = 0;
    }

    /// The next `n` run creates make their run (and save the idempotent
    /// result) but answer 500, as when a proxy fails after Stripe answered.
    pub fn lose_next_create_responses(&self, n: usize) {
        lock(&self.inner.state).lose_creates += n;
    }

    /// File downloads answer `302 Found` to the same file on
    /// `http://localhost:PORT/presigned/{id}`, served without a key: a host
    /// the source was not configured with.
    pub fn redirect_files_off_host(&self, on: bool) {
        lock(&self.inner.state).redirect_files = on;
    }

    /// Every request about `report_type` (its report type, its run
    /// creates) answers 500 from now on: a stream that can never succeed.
    pub fn break_report_type(&self, report_type: &str) {
        lock(&self.inner.state).broken.push(report_type.to_string());
    }

    /// Every run created, oldest first.
    pub fn runs(&self) -> Vec<SimRun> {
        lock(&self.inner.state).runs.clone()
    }

    /// The CSV a report over `[start, end)` in `timezone` holds.
    pub fn report_csv(
        &self,
        start: i64,
        end: i64,
        timezone: &str,
        columns: Option<&[String]>,
    ) -> String {
        lock(&self.inner.state).csv(start, end, timezone, columns)
    }
}

impl SimState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:014}", self.next_id)
    }

    fn csv(&self, start: i64, end: i64, timezone: &str, columns: Option<&[String]>) -> String {
        let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
        let cols: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => COLUMNS.iter().map(|c| c.to_string()).collect(),
        };
        let mut out = String::new();
        out.push_str(&cols.join(","));
        out.push('\n');
        let mut rows: Vec<&Transaction> = self
            .transactions
            .iter()
            .filter(|t| t.created >= start && t.created < end)
            .collect();
        rows.sort_by_key(|t| (t.created, t.id.clone()));
        for t in rows {
            let at = DateTime::from_timestamp(t.created, 0).unwrap_or_default();
            let cell = |c: &str| -> String {
                match c {
                    "balance_transaction_id" => t.id.clone(),
                    "created_utc" => at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    "created" => at
                        .with_timezone(&tz)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                    "currency" => t.currency.clone(),
                    "gross" => cents(t.amount),
                    "fee" => cents(t.fee),
                    "net" => cents(t.amount - t.fee),
                    "reporting_category" => "charge".into(),
                    "description" => t.description.clone(),
                    _ => String::new(),
                }
            };
            let line: Vec<String> = cols.iter().map(|c| csv_cell(&cell(c))).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }

    fn run_json(&self, run: &SimRun, base: &str) -> Value {
        let mut parameters = json!({
            "interval_start": run.interval_start,
            "interval_end": run.interval_end,
            "timezone": run.timezone,
        });
        if let Some(c) = &run.columns {
            parameters["columns"] = json!(c);
        }
        let result = run
            .file
            .as_ref()
            .filter(|_| run.status == "succeeded")
            .map(|f| {
                json!({
                    "id": f,
                    "object": "file",
                    "created": run.succeeded_at,
                    "expires_at": run.succeeded_at.map(|t| t + 86_400 * 7),
                    "filename": format!("{f}.csv"),
                    "purpose": "finance_report_run",
                    "size": self.files.get(f).map_or(0, String::len),
                    "title": null,
                    "type": "csv",
                    "url": format!("{base}/v1/files/{f}/contents"),
                })
            });
        json!({
            "id": run.id,
            "object": "reporting.report_run",
            "created": run.created,
            "error": run.fails_with.as_ref().filter(|_| run.status == "failed"),
            "livemode": false,
            "parameters": parameters,
            "report_type": run.report_type,
            "result": result,
            "status": run.status,
            "succeeded_at": run.succeeded_at,
        })
    }
}

/// Stripe's answer to a server-side failure.
fn api_error(status: u16) -> Response {
    let kind = if status == 429 {
        "rate_limit_error"
    } else {
        "api_error"
    };
    json_response(
        status,
        json!({"error": {"type": kind, "message": "Simulated failure."}}).to_string(),
    )
}

fn cents(v: i64) -> String {
    format!(
        "{}{}.{:02}",
        if v < 0 { "-" } else { "" },
        v.abs() / 100,
        v.abs() % 100
    )
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
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

impl Inner {
    fn authorized(&self, parts: &Parts) -> bool {
        if let Some(token) = bearer_token(parts) {
            return secret_eq(&token, &self.api_key);
        }
        matches!(basic_credentials(parts), Some((u, _)) if secret_eq(&u, &self.api_key))
    }

    async fn respond(&self, parts: &Parts, body: &[u8]) -> Response {
        let planned = lock(&self.server.faults).take();
        if let Some(delay) = planned.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some((status, retry_after)) = planned.fail {
            let f = Fail {
                status,
                message: "Simulated failure.".into(),
                param: None,
                code: None,
            };
            let mut resp = error_response(&f);
            if status >= 500 || status == 429 {
                let kind = if status == 429 {
                    "rate_limit_error"
                } else {
                    "api_error"
                };
                resp = json_response(
                    status,
                    json!({"error": {"type": kind, "message": "Simulated failure."}}).to_string(),
                );
            }
            return with_retry_after(resp, retry_after);
        }
        let segments_owned: Vec<String> = parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        {
            let mut st = lock(&self.state);
            st.requests_seen += 1;
            if let Some((n, status)) = st.fail_every {
                if st.requests_seen.is_multiple_of(n) {
                    return api_error(status);
                }
            }
            let about_broken = st.broken.iter().any(|b| {
                segments_owned.last() == Some(b)
                    || String::from_utf8_lossy(body).contains(&format!(
                        "report_type={}",
                        url::form_urlencoded::byte_serialize(b.as_bytes()).collect::<String>()
                    ))
            });
            if about_broken {
                return api_error(500);
            }
        }
        // A presigned file on "another host": no key needed.
        if let ["presigned", id] = segments_owned
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            return self.file(id);
        }
        if !self.authorized(parts) {
            return error_response(&Fail {
                status: 401,
                message: "Invalid API Key provided: sk_****".into(),
                param: None,
                code: None,
            });
        }
        let base = format!("http://{}", self.server.addr());
        let path = parts.uri.path().to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let query = super::common::parse_query(parts.uri.query().unwrap_or(""));
        let result = match (&parts.method, segments.as_slice()) {
            (&Method::GET, ["v1", "reporting", "report_types", id]) => self.report_type(id),
            (&Method::POST, ["v1", "reporting", "report_runs"]) => {
                let key = parts
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                return self.create_idempotent(key, body, &base);
            }
            (&Method::GET, ["v1", "reporting", "report_runs"]) => self.list_runs(&query, &base),
            (&Method::GET, ["v1", "reporting", "report_runs", id]) => self.get_run(id, &base),
            (&Method::GET, ["v1", "files", id, "contents"]) => {
                if lock(&self.state).redirect_files {
                    let to = format!(
                        "http://localhost:{}/presigned/{id}",
                        self.server.addr().port()
                    );
                    let mut resp = Response::new(Body::empty());
                    *resp.status_mut() = axum::http::StatusCode::FOUND;
                    if let Ok(v) = HeaderValue::from_str(&to) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    return resp;
                }
                return self.file(id);
            }
            _ => Err(Fail {
                status: 404,
                message: format!("Unrecognized request URL ({} {path}).", parts.method),
                param: None,
                code: None,
            }),
        };
        match result {
            Ok(v) => json_response(200, v.to_string()),
            Err(f) => error_response(&f),
        }
    }

    fn report_type(&self, id: &str) -> Result<Value, Fail> {
        let st = lock(&self.state);
        let (start, end) = st
            .report_types
            .get(id)
            .copied()
            .ok_or_else(|| missing("report type", id, "id"))?;
        Ok(json!({
            "id": id,
            "object": "reporting.report_type",
            "data_available_start": start,
            "data_available_end": end,
            "default_columns": COLUMNS,
            "livemode": false,
            "name": format!("Report {id}"),
            "updated": end,
            "version": 1,
        }))
    }

    /// `POST /v1/reporting/report_runs`, honouring `Idempotency-Key`.
    fn create_idempotent(&self, key: Option<String>, body: &[u8], base: &str) -> Response {
        let params = String::from_utf8_lossy(body).into_owned();
        if let Some(k) = &key {
            let st = lock(&self.state);
            if let Some((saved_params, status, saved)) = st.idempotent.get(k) {
                if saved_params != &params {
                    return json_response(
                        400,
                        json!({"error": {
                            "type": "idempotency_error",
                            "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."),
                        }})
                        .to_string(),
                    );
                }
                let mut resp = json_response(*status, saved.clone());
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return resp;
            }
        }
        let form = super::common::parse_query(&params);
        let created = self.create_run(&form, key.clone(), base);
        let mut st = lock(&self.state);
        match created {
            Ok(v) => {
                let text = v.to_string();
                if let Some(k) = key {
                    st.idempotent.insert(k, (params, 200, text.clone()));
                }
                if st.lose_creates > 0 {
                    st.lose_creates -= 1;
                    return api_error(500);
                }
                json_response(200, text)
            }
            // Validation failed: the endpoint did not run, nothing is saved.
            Err(f) => error_response(&f),
        }
    }

    fn create_run(
        &self,
        form: &[(String, String)],
        idempotency_key: Option<String>,
        base: &str,
    ) -> Result<Value, Fail> {
        let one = |name: &str| {
            form.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let report_type = one("report_type")
            .ok_or_else(|| bad("Missing required param: report_type.", "report_type"))?;
        let mut st = lock(&self.state);
        let (avail_start, avail_end) = st
            .report_types
            .get(&report_type)
            .copied()
            .ok_or_else(|| missing("report type", &report_type, "report_type"))?;
        let time = |name: &str, default: i64| -> Result<i64, Fail> {
            match one(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .map_err(|_| bad(format!("Invalid integer: {v}"), name)),
            }
        };
        let start = time("parameters[interval_start]", avail_start)?;
        let end = time("parameters[interval_end]", avail_end)?;
        if start < avail_start {
            return Err(bad(
                format!("parameters[interval_start] must be at least data_available_start ({avail_start})"),
                "parameters[interval_start]",
            ));
        }
        if end > avail_end {
            return Err(bad(
                format!(
                    "parameters[interval_end] must be at most data_available_end ({avail_end})"
                ),
                "parameters[interval_end]",
            ));
        }
        if end <= start {
            return Err(bad(
                "parameters[interval_end] must be after parameters[interval_start]",
                "parameters[interval_end]",
            ));
        }
        let timezone = one("parameters[timezone]").unwrap_or_else(|| "UTC".into());
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(bad(
                format!("Invalid timezone: {timezone}"),
                "parameters[timezone]",
            ));
        }
        let columns: Vec<String> = form
            .iter()
            .filter(|(k, _)| k == "parameters[columns][]")
            .map(|(_, v)| v.clone())
            .collect();
        if let Some(c) = columns.iter().find(|c| !COLUMNS.contains(&c.as_str())) {
            return Err(bad(format!("Invalid column: {c}"), "parameters[columns]"));
        }
        let id = st.id("frr");
        let fails_with = st
            .fail_next
            .get_mut(&report_type)
            .filter(|q| !q.is_empty())
            .map(|q| q.remove(0));
        let hung = st.hang_next > 0;
        if hung {
            st.hang_next -= 1;
        }
        let run = SimRun {
            hung,
            idempotency_key,
            id,
            report_type,
            interval_start: start,
            interval_end: end,
            timezone,
            columns: (!columns.is_empty()).then_some(columns),
            created: Utc::now().timestamp(),
            status: "pending".into(),
            polls_left: st.latency_polls,
            fails_with,
            file: None,
            succeeded_at: None,
        };
        let out = st.run_json(&run, base);
        st.runs.push(run);
        Ok(out)
    }

    fn get_run(&self, id: &str, base: &str) -> Result<Value, Fail> {
        let mut st = lock(&self.state);
        let hold = st.hold;
        let i = st
            .runs
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| missing("reporting.report_run", id, "id"))?;
        if st.runs[i].status == "pending" && !hold && !st.runs[i].hung {
            if st.runs[i].polls_left > 0 {
                st.runs[i].polls_left -= 1;
            } else if st.runs[i].fails_with.is_some() {
                st.runs[i].status = "failed".into();
            } else {
                let r = st.runs[i].clone();
                let csv = st.csv(
                    r.interval_start,
                    r.interval_end,
                    &r.timezone,
                    r.columns.as_deref(),
                );
                let file = st.id("file");
                st.files.insert(file.clone(), csv);
                let run = &mut st.runs[i];
                run.status = "succeeded".into();
                run.file = Some(file);
                run.succeeded_at = Some(Utc::now().timestamp());
            }
        }
        Ok(st.run_json(&st.runs[i], base))
    }

    fn list_runs(&self, query: &[(String, String)], base: &str) -> Result<Value, Fail> {
        let one = |name: &str| {
            query
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let limit = match one("limit") {
            None => 10,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(bad("Invalid limit: must be between 1 and 100", "limit")),
            },
        };
        let gte = match one("created[gte]") {
            None => i64::MIN,
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| bad(format!("Invalid integer: {v}"), "created[gte]"))?,
        };
        let st = lock(&self.state);
        // Newest first, as Stripe lists.
        let all: Vec<&SimRun> = st.runs.iter().rev().filter(|r| r.created >= gte).collect();
        let from = match one("starting_after") {
            None => 0,
            Some(id) => {
                all.iter()
                    .position(|r| r.id == id)
                    .ok_or_else(|| missing("reporting.report_run", id, "starting_after"))?
                    + 1
            }
        };
        let page: Vec<Value> = all
            .iter()
            .skip(from)
            .take(limit)
            .map(|r| st.run_json(r, base))
            .collect();
        Ok(json!({
            "object": "list",
            "url": "/v1/reporting/report_runs",
            "has_more": from + limit < all.len(),
            "data": page,
        }))
    }

    fn file(&self, id: &str) -> Response {
        let st = lock(&self.state);
        match st.files.get(id).filter(|_| !st.files_expired) {
            Some(csv) => {
                let mut resp = Response::new(Body::from(csv.clone()));
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
                resp
            }
            None => error_response(&missing("file", id, "id")),
        }
    }
}
