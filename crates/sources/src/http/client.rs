//! One HTTP client per connector: authentication, a rate limit and a
//! concurrency bound shared by every stream, and errors classified by what
//! the runtime should do next.
//!
//! The client never retries on its own (except once after a 401 when a fresh
//! OAuth2 token can help): backoff, retry budgets and adaptive page sizes
//! belong to the runtime and the reader, which see the whole picture. The
//! client's job is to say *why* a request failed — [`HttpError::is_overload`]
//! and `retry_after` — so they can decide.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Semaphore;
use tributary_core::secret::redact;
use tributary_core::window::ApiClock;
use tributary_core::ConnectorError;
use tributary_metrics::{ConnectorEvent, ConnectorStats};
use url::Url;

use super::auth::Authenticator;

/// How much of an error response's body is read and kept for the message.
const ERROR_BODY_READ: usize = 8 * 1024;
const ERROR_BODY_CHARS: usize = 500;
/// Keeps a `Retry-After` date or number in a range `Duration` arithmetic
/// survives; the runtime applies the user's `runtime.max_retry_after`.
const MAX_RETRY_AFTER: Duration = tributary_config::units::MAX_DURATION;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        }
    }
}

/// A request as the reader builds it: templates rendered, pagination applied,
/// not yet authenticated (credentials are added by [`HttpClient::execute`] so
/// they never sit in values that get logged).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// Sent as JSON (`Content-Type: application/json` unless a header says otherwise).
    pub body: Option<Value>,
    /// Sent as `application/x-www-form-urlencoded` pairs, in order, repeated
    /// names kept (Stripe's `parameters[columns][]`). Not with `body`.
    pub form: Option<Vec<(String, String)>>,
}

impl HttpRequest {
    pub fn new(method: Method, url: Url) -> HttpRequest {
        HttpRequest {
            method,
            url,
            headers: Vec::new(),
            body: None,
            form: None,
        }
    }
}

/// A successful (2xx) response, fully read.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The final URL, after redirects: the base for relative next-page links.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// Parses the body. A malformed or truncated body is
    /// [`HttpErrorKind::Malformed`], which is retryable: a cut-off page is
    /// usually a dropped connection or an overloaded proxy, not a permanent
    /// state. An empty body is JSON `null` (no records) only for
    /// `204 No Content`; from any other status it is treated as truncated,
    /// because silently reading "no records" could end a listing early.
    pub fn json(&self) -> Result<Value, HttpError> {
        self.parse_json(Value::Null, |body| serde_json::from_slice(body))
    }

    /// Parses the body with `parse`, with [`HttpResponse::json`]'s rules;
    /// `empty` is the result for a `204 No Content`.
    pub fn parse_json<T>(
        &self,
        empty: T,
        parse: impl FnOnce(&bytes::Bytes) -> Result<T, serde_json::Error>,
    ) -> Result<T, HttpError> {
        // A UTF-8 byte order mark is no part of the JSON (RFC 8259 §8.1
        // lets a parser ignore it; the file source does too).
        let body = match self.body.strip_prefix(b"\xEF\xBB\xBF") {
            Some(_) => self.body.slice(3..),
            None => self.body.clone(),
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            if self.status == 204 {
                return Ok(empty);
            }
            return Err(HttpError::new(
                HttpErrorKind::Malformed,
                format!(
                    "{} → {}: the response body is empty, expected JSON",
                    display_url(&self.url),
                    self.status
                ),
            ));
        }
        parse(&body).map_err(|e| {
            let what = if e.is_eof() {
                "the response body is truncated"
            } else {
                "the response body is not valid JSON"
            };
            HttpError::new(
                HttpErrorKind::Malformed,
                format!(
                    "{} → {}: {what} ({e}); it starts with: {}",
                    display_url(&self.url),
                    self.status,
                    snippet(&self.body, 200)
                ),
            )
        })
    }

    /// A header as text; `None` when absent or not valid visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `[source.rate_limit]`: a token bucket shared by every stream of the connector.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// May be below 1 (e.g. `0.2` = one request every 5 seconds).
    pub requests_per_second: f64,
    /// Requests allowed back to back after an idle period.
    /// Default: `max(1, ceil(requests_per_second))`.
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// For the whole exchange, including reading the body.
    pub timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight at once, across all streams; at least 1.
    pub max_concurrency: usize,
    pub user_agent: String,
}

/// Redirects followed in a row, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// One per connector, shared by every stream (`Clone` shares the same state),
/// so the rate limit and the concurrency bound apply across streams.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    auth: Authenticator,
    throttle: Option<Throttle>,
    permits: Semaphore,
    options: ClientOptions,
    /// Where statuses and rate-limit waits are reported; unset: nowhere.
    metrics: OnceLock<Arc<ConnectorStats>>,
    /// The server's clock from the `Date` of every response, error or not.
    api_clock: Arc<ApiClock>,
    /// Our clock, that `Date` is compared with (the connector's, which
    /// tests move); unset: the system clock.
    clock: OnceLock<Arc<dyn tributary_core::Clock>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.inner.options)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(options: ClientOptions, auth: Authenticator) -> Result<HttpClient, HttpError> {
        Self::build(options, auth, reqwest::redirect::Policy::default())
    }

    /// A client that follows redirects only to `hosts` (scheme, host and
    /// port as in these URLs): a redirect elsewhere is not followed and its
    /// `3xx` answer is returned as an [`HttpErrorKind::Status`] error. For
    /// APIs whose key must reach no other host, whichever way a response
    /// points there (a URL in a body or a `Location` header).
    pub fn with_redirect_hosts(
        options: ClientOptions,
        auth: Authenticator,
        hosts: Vec<Url>,
    ) -> Result<HttpClient, HttpError> {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let to = attempt.url();
            let trusted = hosts.iter().any(|t| {
                t.scheme() == to.scheme()
                    && t.host_str() == to.host_str()
                    && t.port_or_known_default() == to.port_or_known_default()
            });
            if !trusted {
                tracing::warn!(to = %display_url(to), "not following a redirect to a host outside the configured ones");
                attempt.stop()
            } else if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        Self::build(options, auth, policy)
    }

    fn build(
        options: ClientOptions,
        auth: Authenticator,
        redirects: reqwest::redirect::Policy,
    ) -> Result<HttpClient, HttpError> {
        if options.max_concurrency == 0 {
            return Err(HttpError::invalid("max_concurrency must be at least 1"));
        }
        let throttle = options
            .rate_limit
            .map(Throttle::new)
            .transpose()
            .map_err(HttpError::invalid)?;
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(redirects);
        if !options.user_agent.is_empty() {
            builder = builder.user_agent(options.user_agent.clone());
        }
        let http = builder.build().map_err(|e| {
            HttpError::invalid(format!("cannot build the HTTP client: {}", chain(&e)))
        })?;
        let permits = Semaphore::new(options.max_concurrency.min(Semaphore::MAX_PERMITS));
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http,
                auth,
                throttle,
                permits,
                options,
                metrics: OnceLock::new(),
                api_clock: Arc::default(),
                clock: OnceLock::new(),
            }),
        })
    }

    /// Reports every response's status and every rate-limit wait on
    /// `metrics` (the connector's, from `SourceContext::metrics`). Set once,
    /// before the client is shared; later calls are ignored.
    pub fn with_metrics(self, metrics: Arc<ConnectorStats>) -> HttpClient {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// Compares `Date` headers with `clock` (the connector's, from
    /// `SourceContext::clock`). Set once, before the client is shared.
    pub fn with_clock(self, clock: Arc<dyn tributary_core::Clock>) -> HttpClient {
        let _ = self.inner.clock.set(clock);
        self
    }

    /// The server's clock as its responses showed it: windows end no
    /// later than it says (see [`tributary_core::window`]).
    pub fn api_clock(&self) -> Arc<ApiClock> {
        self.inner.api_clock.clone()
    }

    fn observe_date(&self, headers: &HeaderMap) {
        let Some(theirs) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t.trim()).ok())
        else {
            return;
        };
        let ours = match self.inner.clock.get() {
            Some(c) => c.now(),
            None => chrono::Utc::now(),
        };
        self.inner
            .api_clock
            .observe(theirs.with_timezone(&chrono::Utc), ours);
    }

    fn report(&self, event: ConnectorEvent) {
        if let Some(m) = self.inner.metrics.get() {
            m.record(event);
        }
    }

    /// Sends one request: takes a concurrency permit, waits for the rate
    /// limiter, adds credentials. 2xx is `Ok`; a 401 drops a cached OAuth2
    /// token and tries once more; anything else is an [`HttpError`].
    ///
    /// The permit is taken before the rate limiter so a request that passed
    /// the limiter is sent right away, not after queueing for a permit, which
    /// would let delayed requests bunch up into bursts the server counts.
    pub async fn execute(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let inner = &*self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| HttpError::invalid("the HTTP client is shut down"))?;
        let method = request.method.as_str();
        let mut retried_auth = false;
        loop {
            if let Some(throttle) = &inner.throttle {
                let waited = throttle.acquire().await;
                if !waited.is_zero() {
                    self.report(ConnectorEvent::RateLimitWait { waited });
                }
            }
            let mut outgoing = build_request(request)?;
            let sent_with = inner.auth.authorize(&inner.http, &mut outgoing).await?;
            let sent_url = outgoing.url().clone();
            let mut response = match inner.http.execute(outgoing).await {
                Ok(r) => r,
                Err(e) => {
                    let e = HttpError::transport(method, &sent_url, e, Some(inner.options.timeout));
                    let reason = match e.kind {
                        HttpErrorKind::Timeout => "timeout",
                        _ => "connect",
                    };
                    self.report(ConnectorEvent::HttpFailure { reason });
                    return Err(e);
                }
            };
            let status = response.status();
            self.observe_date(response.headers());
            self.report(ConnectorEvent::HttpResponse {
                status: status.as_u16(),
            });
            if status.is_success() {
                let url = response.url().clone();
                let headers = std::mem::take(response.headers_mut());
                let body = read_body(&mut response).await.map_err(|e| {
                    HttpError::transport(method, &url, e, Some(inner.options.timeout))
                })?;
                return Ok(HttpResponse {
                    status: status.as_u16(),
                    url,
                    headers,
                    body,
                });
            }
            if status == StatusCode::UNAUTHORIZED
                && !retried_auth
                && inner.auth.invalidate(sent_with)
            {
                retried_auth = true;
                tracing::debug!(url = %display_url(&sent_url), "401 Unauthorized; retrying once with a fresh token");
                continue;
            }
            return Err(HttpError::from_response(method, response).await);
        }
    }

    /// Sends one request like [`HttpClient::execute`] and streams a 2xx
    /// body into `out` chunk by chunk, so a large file never sits in
    /// memory. `timeout` replaces the client's for this exchange: a report
    /// file may take far longer to transfer than an API call to answer.
    /// Returns the number of bytes written. A failed write to `out` is
    /// [`HttpErrorKind::Invalid`] (a full disk is not the server's fault).
    pub async fn download(
        &self,
        request: &HttpRequest,
        timeout: Duration,
        out: &mut (impl std::io::Write + Send),
    ) -> Result<u64, HttpError> {
        let inner = &*self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| HttpError::invalid("the HTTP client is shut down"))?;
        let method = request.method.as_str();
        if let Some(throttle) = &inner.throttle {
            throttle.acquire().await;
        }
        let mut outgoing = build_request(request)?;
        *outgoing.timeout_mut() = Some(timeout);
        inner.auth.authorize(&inner.http, &mut outgoing).await?;
        let sent_url = outgoing.url().clone();
        let mut response = inner
            .http
            .execute(outgoing)
            .await
            .map_err(|e| HttpError::transport(method, &sent_url, e, Some(timeout)))?;
        if !response.status().is_success() {
            return Err(HttpError::from_response(method, response).await);
        }
        let url = response.url().clone();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpError::transport(method, &url, e, Some(timeout)))?
        {
            out.write_all(&chunk).map_err(|e| {
                HttpError::invalid(format!(
                    "{method} {}: cannot store the downloaded file: {e}",
                    display_url(&url)
                ))
            })?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

fn build_request(request: &HttpRequest) -> Result<reqwest::Request, HttpError> {
    let mut out = reqwest::Request::new(request.method.to_reqwest(), request.url.clone());
    let headers = out.headers_mut();
    for (name, value) in &request.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::invalid(format!("invalid HTTP header name `{name}`")))?;
        // The value may hold a credential: name the header, never the value.
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpError::invalid(format!(
                "the value of HTTP header `{name}` contains characters a header cannot hold"
            ))
        })?;
        headers.append(header, value);
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    }
    if let Some(body) = &request.body {
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let bytes = serde_json::to_vec(body)
            .map_err(|e| HttpError::invalid(format!("cannot encode the request body: {e}")))?;
        *out.body_mut() = Some(bytes.into());
    }
    if let Some(form) = &request.form {
        if request.body.is_some() {
            return Err(HttpError::invalid(
                "a request cannot have both a JSON body and a form body",
            ));
        }
        out.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        *out.body_mut() = Some(encoded.into());
    }
    Ok(out)
}

/// A token bucket (GCRA) on tokio's clock, so paused-time tests and the
/// real runtime measure time the same way.
pub(crate) struct Throttle {
    limiter: governor::RateLimiter<
        NotKeyed,
        InMemoryState,
        TokioClock,
        NoOpMiddleware<<TokioClock as Clock>::Instant>,
    >,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl Throttle {
    pub(crate) fn new(rate: RateLimit) -> Result<Throttle, String> {
        let rps = rate.requests_per_second;
        if !rps.is_finite() || rps <= 0.0 {
            return Err(format!(
                "rate_limit.requests_per_second must be a positive number, got {rps}"
            ));
        }
        let burst = match rate.burst {
            Some(burst) => burst,
            None => rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
        };
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| "rate_limit.burst must be at least 1".to_string())?;
        // A period past the longest duration any key takes (or past what
        // `Duration` holds) is a typo, not a rate.
        let period = Duration::try_from_secs_f64(1.0 / rps)
            .ok()
            .filter(|p| *p <= tributary_config::units::MAX_DURATION)
            .ok_or_else(|| {
                format!("rate_limit.requests_per_second = {rps:?} is too low: at least one request per 366 days")
            })?;
        let quota = Quota::with_period(period)
            .ok_or_else(|| format!("rate_limit.requests_per_second = {rps:?} is too high"))?
            .allow_burst(burst);
        Ok(Throttle {
            limiter: governor::RateLimiter::direct_with_clock(quota, TokioClock),
        })
    }

    /// Waits until a request may go out; returns how long it waited.
    /// Cancel-safe: a cell is consumed only when `check` succeeds, so a
    /// dropped waiter takes nothing.
    pub(crate) async fn acquire(&self) -> Duration {
        let start = tokio::time::Instant::now();
        while let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(TokioClock.now());
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        start.elapsed()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    Timeout,
    /// Any transport failure: connecting, TLS, or the connection dropping mid-response.
    Connect,
    /// A non-2xx status other than 401/403.
    Status(u16),
    Malformed,
    /// 401/403, and a token endpoint rejecting the client's credentials.
    Auth,
    /// The request cannot be built (bad URL, header) or sent as configured.
    Invalid,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    pub kind: HttpErrorKind,
    pub retry_after: Option<Duration>,
    /// Already free of registered secrets.
    pub message: String,
}

impl HttpError {
    pub(crate) fn new(kind: HttpErrorKind, message: impl AsRef<str>) -> HttpError {
        HttpError {
            kind,
            retry_after: None,
            message: redact(message.as_ref()),
        }
    }

    pub(crate) fn invalid(message: impl AsRef<str>) -> HttpError {
        HttpError::new(HttpErrorKind::Invalid, message)
    }

    /// Classifies a transport error. The URL is formatted by us (with query
    /// secrets masked) rather than by reqwest, whose message includes the raw URL.
    pub(crate) fn transport(
        method: &str,
        url: &Url,
        err: reqwest::Error,
        timeout: Option<Duration>,
    ) -> HttpError {
        let err = err.without_url();
        let url_text = display_url(url);
        if err.is_timeout() {
            let within = timeout
                .map(|t| format!(" within {t:?}"))
                .unwrap_or_default();
            return HttpError::new(
                HttpErrorKind::Timeout,
                format!("{method} {url_text}: no complete response{within}"),
            );
        }
        let kind = if err.is_builder() || err.is_redirect() {
            HttpErrorKind::Invalid
        } else if err.is_decode() {
            HttpErrorKind::Malformed
        } else {
            HttpErrorKind::Connect
        };
        HttpError::new(kind, format!("{method} {url_text}: {}", chain(&err)))
    }

    /// Builds the error for a non-2xx response, reading a bounded prefix of
    /// its body for the message (error pages can be large).
    pub(crate) async fn from_response(method: &str, mut response: reqwest::Response) -> HttpError {
        let status = response.status();
        let url = response.url().clone();
        let retry_after = parse_retry_after(response.headers(), chrono::Utc::now());
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                // The status alone is enough to classify the error.
                Ok(None) | Err(_) => break,
            }
        }
        HttpError::status(method, &url, status, retry_after, &body)
    }

    pub(crate) fn status(
        method: &str,
        url: &Url,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> HttpError {
        let kind = match status.as_u16() {
            401 | 403 => HttpErrorKind::Auth,
            code => HttpErrorKind::Status(code),
        };
        let reason = status.canonical_reason().unwrap_or("");
        let mut message = format!(
            "{method} {} → {} {reason}",
            display_url(url),
            status.as_u16()
        );
        let text = snippet(body, ERROR_BODY_CHARS);
        if !text.is_empty() {
            message.push_str(": ");
            message.push_str(&text);
        }
        HttpError {
            retry_after,
            ..HttpError::new(kind, message.trim_end())
        }
    }

    /// Whether a smaller request may succeed where this one failed, after
    /// `failures_in_a_row` failures at the same page: a timeout or 504 (the
    /// server ran out of time on it), a 5xx whose body says the request was
    /// too much, or any other 5xx met twice in a row at the same request.
    /// Never a 429 (the rate is the problem, not the size) nor a 503 with
    /// `Retry-After` or a maintenance notice (the server is away whatever
    /// is asked): shrinking for those slowed whole windows for nothing.
    pub fn size_may_be_the_cause(&self, failures_in_a_row: u32) -> bool {
        let code = match self.kind {
            HttpErrorKind::Timeout => return true,
            HttpErrorKind::Status(code @ 500..=599) => code,
            _ => return false,
        };
        // What the server said, not the URL it was said about.
        let message = self.message.to_ascii_lowercase();
        let message = message
            .split_once(" → ")
            .map_or(&*message, |(_, said)| said);
        if code == 503 && (self.retry_after.is_some() || message.contains("maintenance")) {
            return false;
        }
        const SIZE_WORDS: &[&str] = &[
            "timeout",
            "timed out",
            "too large",
            "too big",
            "too many records",
            "too many results",
            "out of memory",
            "memory limit",
        ];
        code == 504 || failures_in_a_row >= 2 || SIZE_WORDS.iter().any(|w| message.contains(w))
    }

    /// Timeouts, 429 and 5xx: the server is struggling.
    pub fn is_overload(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::Timeout | HttpErrorKind::Status(429) | HttpErrorKind::Status(500..=599)
        )
    }

    /// Whether trying again later can succeed: transport trouble, overload,
    /// malformed bodies and 408. Credentials, other 4xx and bad requests
    /// will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            HttpErrorKind::Timeout | HttpErrorKind::Connect | HttpErrorKind::Malformed => true,
            HttpErrorKind::Status(code) => {
                code == 408 || code == 429 || (500..=599).contains(&code)
            }
            HttpErrorKind::Auth | HttpErrorKind::Invalid => false,
        }
    }

    pub fn into_connector_error(self) -> ConnectorError {
        // Redact again: a secret registered after this error was built (a
        // token fetched meanwhile) must not leak either.
        let message = redact(&self.message);
        if self.is_retryable() {
            ConnectorError::Retryable {
                message,
                retry_after: self.retry_after,
            }
        } else {
            ConnectorError::Fatal { message }
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date, as the server sent it
/// (bounded only to stay representable).
pub(crate) fn parse_retry_after(
    headers: &HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if let Ok(secs) = text.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// A URL for messages, credentials masked ([`tributary_core::secret::mask_url`]).
pub(crate) fn display_url(url: &Url) -> String {
    tributary_core::secret::mask_url(url)
}

/// Sets a query parameter, replacing the first of that name in place and
/// dropping any others, leaving the rest of the query untouched (and
/// unre-encoded when the parameter is new).
pub(crate) fn set_query_param(url: &mut Url, name: &str, value: &str) {
    let mut existing = url.query_pairs().filter(|(k, _)| k == name);
    match (existing.next(), existing.next()) {
        (None, _) => {
            url.query_pairs_mut().append_pair(name, value);
            return;
        }
        // Already right: leave an API-built URL (a signed next link) byte for byte.
        (Some((_, v)), None) if v == value => return,
        _ => {}
    }
    let mut replaced = false;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k != name {
                Some((k.into_owned(), v.into_owned()))
            } else if !replaced {
                replaced = true;
                Some((k.into_owned(), value.to_string()))
            } else {
                None
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

/// The body in one buffer of its own. Raw records are slices of it, and
/// each slice counts a reference on it: in a buffer shared with the
/// connection (as `Response::bytes` returns a body that came in one piece),
/// those counts were shared with the connection's reads too (5 % of the
/// HTTP benchmark's CPU samples), and records in flight kept the
/// connection's whole read buffer alive (peak RSS 48 → 41 MiB).
async fn read_body(response: &mut reqwest::Response) -> Result<bytes::Bytes, reqwest::Error> {
    // A declared length sizes the buffer once; it is capped, since a server
    // may declare anything.
    let declared = response
        .content_length()
        .unwrap_or(0)
        .min(MAX_BODY_PREALLOCATION);
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// The most a declared `Content-Length` reserves up front.
const MAX_BODY_PREALLOCATION: u64 = 64 << 20;

/// The first `max` characters of a body, for messages; whitespace runs are
/// collapsed so an HTML error page stays on one line.
fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    // Redact before cutting so a secret straddling the cut is not half shown.
    let text = redact(&text);
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for c in text.trim().chars() {
        if count == max {
            out.push('…');
            break;
        }
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out
}

/// An error and its causes on one line (`error sending request: client
/// error (Connect): tcp connect error: Connection refused`).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    redact(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::super::auth::{ApiKeyLocation, AuthConfig};
    use super::*;
    use axum::extract::{Request, State};
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{any, post};
    use axum::Router;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tributary_core::{ErrorClass, Secret};

    async fn serve(router: Router) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn options() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(10),
            rate_limit: None,
            max_concurrency: 4,
            user_agent: "tributary-test".into(),
        }
    }

    fn client(auth: AuthConfig) -> HttpClient {
        HttpClient::new(options(), Authenticator::new(auth)).unwrap()
    }

    fn get(base: &Url, path: &str) -> HttpRequest {
        HttpRequest::new(Method::Get, base.join(path).unwrap())
    }

    fn status_with(code: u16, headers: &[(&'static str, String)], body: &str) -> Response {
        let mut response = (AxumStatus::from_u16(code).unwrap(), body.to_string()).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(*name, value.parse().unwrap());
        }
        response
    }

    #[tokio::test]
    async fn success_returns_body_headers_and_json() {
        let base = serve(Router::new().route(
            "/items",
            any(|req: Request| async move {
                let ua = req.headers()["user-agent"].to_str().unwrap().to_string();
                let accept = req.headers()["accept"].to_str().unwrap().to_string();
                let ct = req
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string());
                let method = req.method().to_string();
                let custom = req.headers()["x-custom"].to_str().unwrap().to_string();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (
                    [("x-total", "2")],
                    axum::Json(json!({"ua": ua, "accept": accept, "ct": ct, "method": method, "custom": custom, "echo": body})),
                )
            }),
        ))
        .await;
        let c = client(AuthConfig::None);
        let mut req = get(&base, "/items");
        req.method = Method::Post;
        req.headers.push(("X-Custom".into(), "v1".into()));
        req.body = Some(json!({"page": 2}));
        let resp = c.execute(&req).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-total"), Some("2"));
        assert_eq!(resp.url.path(), "/items");
        let body = resp.json().unwrap();
        assert_eq!(
            body,
            json!({"ua": "tributary-test", "accept": "application/json", "ct": "application/json",
                   "method": "POST", "custom": "v1", "echo": {"page": 2}})
        );
    }

    #[tokio::test]
    async fn error_statuses_are_classified() {
        let base = serve(
            Router::new()
                .route(
                    "/429s",
                    any(|| async { status_with(429, &[("retry-after", "7".into())], "slow down") }),
                )
                .route(
                    "/429date",
                    any(|| async {
                        let at = chrono::Utc::now() + chrono::Duration::seconds(120);
                        status_with(429, &[("retry-after", at.to_rfc2822())], "")
                    }),
                )
                .route(
                    "/500",
                    any(|| async { status_with(500, &[], "<html>\n  boom  \n</html>") }),
                )
                .route(
                    "/404",
                    any(|| async { status_with(404, &[], "{\"error\":\"no such thing\"}") }),
                )
                .route("/403", any(|| async { status_with(403, &[], "forbidden") }))
                .route(
                    "/401",
                    any(|| async { status_with(401, &[], "who are you") }),
                )
                .route(
                    "/long",
                    any(|| async { status_with(400, &[], &"x".repeat(5000)) }),
                ),
        )
        .await;
        let c = client(AuthConfig::None);

        let err = c.execute(&get(&base, "/429s")).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Status(429));
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert!(err.is_overload());
        match err.into_connector_error() {
            ConnectorError::Retryable {
                retry_after,
                message,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert!(
                    message.contains("429 Too Many Requests: slow down"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }

        let err = c.execute(&get(&base, "/429date")).await.unwrap_err();
        let wait = err.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(err.into_connector_error().class(), ErrorClass::Retryable);

        let err = c.execute(&get(&base, "/500")).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Status(500));
        assert!(err.is_overload());
        assert!(
            err.message
                .ends_with("500 Internal Server Error: <html> boom </html>"),
            "{}",
            err.message
        );
        assert_eq!(err.into_connector_error().class(), ErrorClass::Retryable);

        let err = c.execute(&get(&base, "/404?q=1")).await.unwrap_err();
        assert!(!err.is_overload());
        let message = err.to_string();
        assert_eq!(
            message,
            format!("GET {base}404?q=1 → 404 Not Found: {{\"error\":\"no such thing\"}}")
        );
        assert_eq!(err.into_connector_error().class(), ErrorClass::Fatal);

        for path in ["/401", "/403"] {
            let err = c.execute(&get(&base, path)).await.unwrap_err();
            assert_eq!(err.kind, HttpErrorKind::Auth);
            assert_eq!(err.into_connector_error().class(), ErrorClass::Fatal);
        }

        let err = c.execute(&get(&base, "/long")).await.unwrap_err();
        assert!(
            err.message.ends_with(&format!("{}…", "x".repeat(500))),
            "{}",
            err.message.len()
        );
    }

    #[tokio::test]
    async fn timeouts_and_connection_failures() {
        let base = serve(Router::new().route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        ))
        .await;
        let c = HttpClient::new(
            ClientOptions {
                timeout: Duration::from_millis(200),
                ..options()
            },
            Authenticator::new(AuthConfig::None),
        )
        .unwrap();
        let err = c.execute(&get(&base, "/slow")).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Timeout);
        assert!(err.is_overload());
        assert!(err.message.contains("within 200ms"), "{}", err.message);
        assert_eq!(err.into_connector_error().class(), ErrorClass::Retryable);

        // A port nobody listens on: bind, note the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let err = c
            .execute(&HttpRequest::new(Method::Get, url))
            .await
            .unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Connect);
        assert!(!err.is_overload());
        assert!(
            err.message
                .starts_with(&format!("GET http://127.0.0.1:{port}/x: ")),
            "{}",
            err.message
        );
        assert_eq!(err.into_connector_error().class(), ErrorClass::Retryable);
    }

    #[tokio::test]
    async fn malformed_bodies_are_retryable() {
        let base = serve(
            Router::new()
                .route("/cut", any(|| async { "{\"items\": [1, 2" }))
                .route("/html", any(|| async { "<html>oops</html>" }))
                .route("/empty", any(|| async { "" }))
                .route("/none", any(|| async { AxumStatus::NO_CONTENT })),
        )
        .await;
        let c = client(AuthConfig::None);
        for path in ["/cut", "/html", "/empty"] {
            let resp = c.execute(&get(&base, path)).await.unwrap();
            let err = resp.json().unwrap_err();
            assert_eq!(err.kind, HttpErrorKind::Malformed, "{path}");
            assert_eq!(err.into_connector_error().class(), ErrorClass::Retryable);
        }
        let err = c
            .execute(&get(&base, "/cut"))
            .await
            .unwrap()
            .json()
            .unwrap_err();
        assert!(err.message.contains("truncated"), "{}", err.message);
        let resp = c.execute(&get(&base, "/none")).await.unwrap();
        assert_eq!(resp.json().unwrap(), Value::Null);
    }

    #[tokio::test]
    async fn secrets_in_the_query_and_the_body_are_redacted() {
        let base = serve(Router::new().route(
            "/echo",
            any(|req: Request| async move {
                // Echo the query (with the key) back in the error body, as some APIs do.
                let q = req.uri().query().unwrap_or("").to_string();
                status_with(400, &[], &format!("bad request for {q}"))
            }),
        ))
        .await;
        let key = "qk-7f3a9c1e55b04d2e";
        let c = client(AuthConfig::ApiKey {
            name: "api_key".into(),
            value: Secret::new(key),
            location: ApiKeyLocation::Query,
        });
        let err = c.execute(&get(&base, "/echo?x=1")).await.unwrap_err();
        let message = err.into_connector_error().to_string();
        assert!(!message.contains(key), "{message}");
        assert!(message.contains("api_key=***"), "{message}");
        assert!(
            message.contains("bad request for x=1&api_key=***"),
            "{message}"
        );

        // A key with characters that get percent-encoded in the URL.
        let odd = "pa ss/wörd+&=9x";
        let c = client(AuthConfig::ApiKey {
            name: "key".into(),
            value: Secret::new(odd),
            location: ApiKeyLocation::Query,
        });
        let err = c.execute(&get(&base, "/echo")).await.unwrap_err();
        let encoded: String = url::form_urlencoded::byte_serialize(odd.as_bytes()).collect();
        assert!(!err.message.contains(&encoded), "{}", err.message);
        assert!(!err.message.contains(odd), "{}", err.message);
        assert!(
            err.message
                .contains(&format!("GET {base}echo?key=*** → 400")),
            "{}",
            err.message
        );
    }

    #[derive(Default)]
    struct Seen {
        headers: Mutex<Vec<AxumHeaders>>,
        queries: Mutex<Vec<String>>,
    }

    fn recording_server(seen: Arc<Seen>) -> Router {
        Router::new()
            .route(
                "/r",
                any(|State(seen): State<Arc<Seen>>, req: Request| async move {
                    seen.headers.lock().unwrap().push(req.headers().clone());
                    seen.queries
                        .lock()
                        .unwrap()
                        .push(req.uri().query().unwrap_or("").to_string());
                    axum::Json(json!([]))
                }),
            )
            .with_state(seen)
    }

    #[tokio::test]
    async fn static_credentials_are_sent() {
        let seen = Arc::new(Seen::default());
        let base = serve(recording_server(seen.clone())).await;

        let cases = [
            AuthConfig::Basic {
                username: "alice".into(),
                password: Secret::new("open sesame"),
            },
            AuthConfig::Bearer {
                token: Secret::new("bearer-tok-123"),
            },
            AuthConfig::ApiKey {
                name: "X-Api-Key".into(),
                value: Secret::new("hdr-key-456"),
                location: ApiKeyLocation::Header,
            },
            AuthConfig::ApiKey {
                name: "token".into(),
                value: Secret::new("query-key-789"),
                location: ApiKeyLocation::Query,
            },
        ];
        for auth in cases {
            client(auth)
                .execute(&get(&base, "/r?token=old&a=1"))
                .await
                .unwrap();
        }
        let headers = seen.headers.lock().unwrap().clone();
        let queries = seen.queries.lock().unwrap().clone();
        // base64("alice:open sesame")
        assert_eq!(
            headers[0]["authorization"],
            "Basic YWxpY2U6b3BlbiBzZXNhbWU="
        );
        assert_eq!(headers[1]["authorization"], "Bearer bearer-tok-123");
        assert_eq!(headers[2]["x-api-key"], "hdr-key-456");
        assert!(headers[2].get("authorization").is_none());
        // The query key replaces a parameter of the same name, in place.
        assert_eq!(queries[3], "token=query-key-789&a=1");
        assert_eq!(queries[0], "token=old&a=1");
    }

    #[derive(Default)]
    struct OAuthServer {
        fetches: AtomicUsize,
        forms: Mutex<Vec<String>>,
        expires_in: AtomicUsize,
        /// Tokens up to this number are rejected by the API with 401.
        reject_upto: AtomicUsize,
        api_tokens: Mutex<Vec<String>>,
    }

    fn oauth_router(state: Arc<OAuthServer>) -> Router {
        Router::new()
            .route(
                "/token",
                post(
                    |State(s): State<Arc<OAuthServer>>, body: String| async move {
                        let n = s.fetches.fetch_add(1, Ordering::SeqCst) + 1;
                        s.forms.lock().unwrap().push(body);
                        axum::Json(json!({
                            "access_token": format!("access-token-{n}"),
                            "token_type": "Bearer",
                            "expires_in": s.expires_in.load(Ordering::SeqCst),
                        }))
                    },
                ),
            )
            .route(
                "/api",
                any(
                    |State(s): State<Arc<OAuthServer>>, headers: AxumHeaders| async move {
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        s.api_tokens.lock().unwrap().push(auth.clone());
                        let n: usize = auth
                            .rsplit('-')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        if n == 0 || n <= s.reject_upto.load(Ordering::SeqCst) {
                            status_with(401, &[], "token expired")
                        } else {
                            axum::Json(json!({"ok": true})).into_response()
                        }
                    },
                ),
            )
            .with_state(state)
    }

    fn oauth(base: &Url, refresh_before: Duration) -> AuthConfig {
        AuthConfig::Oauth2 {
            token_url: base.join("/token").unwrap().to_string(),
            client_id: "client-1".into(),
            client_secret: Secret::new("client-secret-xyz"),
            scopes: vec!["read".into(), "write:all".into()],
            refresh_before,
        }
    }

    #[tokio::test]
    async fn oauth2_token_is_fetched_once_and_cached() {
        let state = Arc::new(OAuthServer::default());
        state.expires_in.store(3600, Ordering::SeqCst);
        let base = serve(oauth_router(state.clone())).await;
        let c = client(oauth(&base, Duration::from_secs(60)));
        // Concurrent first requests share one fetch.
        let (r1, r2) = (get(&base, "/api"), get(&base, "/api"));
        let (a, b) = tokio::join!(c.execute(&r1), c.execute(&r2));
        a.unwrap();
        b.unwrap();
        c.execute(&get(&base, "/api")).await.unwrap();
        assert_eq!(state.fetches.load(Ordering::SeqCst), 1);
        assert_eq!(
            *state.api_tokens.lock().unwrap(),
            vec!["Bearer access-token-1"; 3]
        );
        let form = state.forms.lock().unwrap()[0].clone();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("client_id".into(), "client-1".into()),
                ("client_secret".into(), "client-secret-xyz".into()),
                ("scope".into(), "read write:all".into()),
            ]
        );
        // The token is a registered secret.
        assert_eq!(redact("x access-token-1 y"), "x *** y");
    }

    #[tokio::test]
    async fn oauth2_token_is_refreshed_before_expiry() {
        let state = Arc::new(OAuthServer::default());
        // Shorter than refresh_before: refreshed once half its life is gone.
        state.expires_in.store(1, Ordering::SeqCst);
        let base = serve(oauth_router(state.clone())).await;
        let c = client(oauth(&base, Duration::from_secs(60)));
        c.execute(&get(&base, "/api")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.execute(&get(&base, "/api")).await.unwrap();
        assert_eq!(state.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(
            *state.api_tokens.lock().unwrap(),
            ["Bearer access-token-1", "Bearer access-token-2"]
        );
    }

    #[tokio::test]
    async fn oauth2_refetches_once_after_a_401() {
        let state = Arc::new(OAuthServer::default());
        state.expires_in.store(3600, Ordering::SeqCst);
        state.reject_upto.store(1, Ordering::SeqCst);
        let base = serve(oauth_router(state.clone())).await;
        let c = client(oauth(&base, Duration::from_secs(60)));
        c.execute(&get(&base, "/api")).await.unwrap();
        assert_eq!(state.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(
            *state.api_tokens.lock().unwrap(),
            ["Bearer access-token-1", "Bearer access-token-2"]
        );

        // When the fresh token is rejected too, the error surfaces: one retry only.
        state.reject_upto.store(100, Ordering::SeqCst);
        let err = c.execute(&get(&base, "/api")).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Auth);
        assert_eq!(state.fetches.load(Ordering::SeqCst), 3);
        assert_eq!(state.api_tokens.lock().unwrap().len(), 4);

        // Static credentials never retry a 401.
        let seen = Arc::new(OAuthServer::default());
        let base = serve(oauth_router(seen.clone())).await;
        let c = client(AuthConfig::Bearer {
            token: Secret::new("static-token-0"),
        });
        assert_eq!(
            c.execute(&get(&base, "/api")).await.unwrap_err().kind,
            HttpErrorKind::Auth
        );
        assert_eq!(seen.api_tokens.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn oauth2_token_endpoint_errors() {
        let base = serve(
            Router::new()
                .route(
                    "/token",
                    post(|| async {
                        status_with(
                            401,
                            &[],
                            "{\"error\":\"invalid_client\",\"secret\":\"client-secret-xyz\"}",
                        )
                    }),
                )
                .route(
                    "/busy/token",
                    post(|| async { status_with(503, &[], "later") }),
                )
                .route(
                    "/junk/token",
                    post(|| async { "{\"token_type\":\"Bearer\"}" }),
                ),
        )
        .await;
        let c = client(oauth(&base, Duration::from_secs(60)));
        let err = c.execute(&get(&base, "/api")).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Auth);
        assert!(err.message.contains("invalid_client"), "{}", err.message);
        assert!(
            !err.message.contains("client-secret-xyz"),
            "{}",
            err.message
        );
        assert_eq!(err.into_connector_error().class(), ErrorClass::Fatal);

        let mut config = oauth(&base, Duration::from_secs(60));
        if let AuthConfig::Oauth2 { token_url, .. } = &mut config {
            *token_url = base.join("/busy/token").unwrap().to_string();
        }
        let err = client(config)
            .execute(&get(&base, "/api"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Status(503));

        let mut config = oauth(&base, Duration::from_secs(60));
        if let AuthConfig::Oauth2 { token_url, .. } = &mut config {
            *token_url = base.join("/junk/token").unwrap().to_string();
        }
        let err = client(config)
            .execute(&get(&base, "/api"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Malformed);
        assert!(err.message.contains("access_token"), "{}", err.message);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_requests() {
        let throttle = Throttle::new(RateLimit {
            requests_per_second: 20.0,
            burst: Some(1),
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            throttle.acquire().await;
        }
        // The first goes at once, the other nine 50ms apart.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(460), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_below_one_per_second_and_bursts() {
        let slow = Throttle::new(RateLimit {
            requests_per_second: 0.5,
            burst: None,
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        slow.acquire().await;
        slow.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));

        // Default burst for 5 rps is 5: five go at once, the sixth waits.
        let bursty = Throttle::new(RateLimit {
            requests_per_second: 5.0,
            burst: None,
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            bursty.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        bursty.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(200));

        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300, 1e-9, 1e300] {
            assert!(Throttle::new(RateLimit {
                requests_per_second: bad,
                burst: None
            })
            .is_err());
        }
        assert!(Throttle::new(RateLimit {
            requests_per_second: 1.0,
            burst: Some(0)
        })
        .is_err());
    }

    #[tokio::test]
    async fn rate_limit_applies_to_execute() {
        let base = serve(Router::new().route("/r", any(|| async { "[]" }))).await;
        let c = HttpClient::new(
            ClientOptions {
                rate_limit: Some(RateLimit {
                    requests_per_second: 20.0,
                    burst: Some(1),
                }),
                ..options()
            },
            Authenticator::new(AuthConfig::None),
        )
        .unwrap();
        let metrics = Arc::new(tributary_metrics::ConnectorStats::default());
        let c = c.with_metrics(metrics.clone());
        // Shared across clones, as streams share the connector's client.
        let other = c.clone();
        let start = std::time::Instant::now();
        for i in 0..5 {
            let client = if i % 2 == 0 { &c } else { &other };
            client.execute(&get(&base, "/r")).await.unwrap();
        }
        // Only a lower bound: the limiter cannot make this faster.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
        // Every response is counted by status; the four that waited for the
        // limiter are counted as waits.
        let missing = c.execute(&get(&base, "/nope")).await.unwrap_err();
        assert_eq!(missing.kind, HttpErrorKind::Status(404));
        let seen = metrics.snapshot("c");
        assert_eq!(
            seen.http_responses,
            std::collections::BTreeMap::from([("200".to_string(), 5), ("404".to_string(), 1)])
        );
        assert!(seen.rate_limit_waits >= 1, "{seen:?}");
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        #[derive(Default)]
        struct Load {
            now: AtomicUsize,
            max: AtomicUsize,
        }
        let load = Arc::new(Load::default());
        let base = serve(
            Router::new()
                .route(
                    "/slow",
                    any(|State(load): State<Arc<Load>>| async move {
                        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
                        load.max.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        load.now.fetch_sub(1, Ordering::SeqCst);
                        "[]"
                    }),
                )
                .with_state(load.clone()),
        )
        .await;
        let c = HttpClient::new(
            ClientOptions {
                max_concurrency: 2,
                ..options()
            },
            Authenticator::new(AuthConfig::None),
        )
        .unwrap();
        let requests = (0..8).map(|_| {
            let c = c.clone();
            let req = get(&base, "/slow");
            tokio::spawn(async move { c.execute(&req).await.map(|_| ()) })
        });
        for r in futures::future::join_all(requests).await {
            r.unwrap().unwrap();
        }
        let max = load.max.load(Ordering::SeqCst);
        assert!((1..=2).contains(&max), "{max} in flight");
        assert!(HttpClient::new(
            ClientOptions {
                max_concurrency: 0,
                ..options()
            },
            Authenticator::new(AuthConfig::None)
        )
        .is_err());
    }

    #[test]
    fn retry_after_parsing() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(
            parse_retry_after(&h("30"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(&h(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&h("1.5"), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(&h("Wed, 01 May 2024 12:01:30 GMT"), now),
            Some(Duration::from_secs(90))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after(&h("Wed, 01 May 2024 11:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        // The user's `runtime.max_retry_after` caps it later, not the parser.
        assert_eq!(
            parse_retry_after(&h("100000"), now),
            Some(Duration::from_secs(100_000))
        );
        assert_eq!(
            parse_retry_after(&h("99999999999999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(&h("999999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&h("soon"), now), None);
        assert_eq!(parse_retry_after(&h("-5"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn query_params_are_replaced_in_place() {
        let mut url = Url::parse("http://h/p?a=1&limit=10&b=2&limit=20").unwrap();
        set_query_param(&mut url, "limit", "5");
        assert_eq!(url.query(), Some("a=1&limit=5&b=2"));
        set_query_param(&mut url, "c", "x y");
        assert_eq!(url.query(), Some("a=1&limit=5&b=2&c=x+y"));
        let mut url = Url::parse("http://h/p").unwrap();
        set_query_param(&mut url, "page", "2");
        assert_eq!(url.as_str(), "http://h/p?page=2");
    }

    #[test]
    fn urls_in_messages_hide_credentials() {
        tributary_core::secret::register("url-secret-value");
        let url = Url::parse("http://user:pw12345@h/p?key=url-secret-value&x=1").unwrap();
        assert_eq!(display_url(&url), "http://user:***@h/p?key=***&x=1");
    }
}
