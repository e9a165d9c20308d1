//! `[source.auth]`: turning credentials into request headers or query
//! parameters, and caching OAuth2 client-credentials tokens.
//!
//! Credentials are added to the outgoing `reqwest::Request` at the last
//! moment, never to the reader's [`HttpRequest`](super::client::HttpRequest),
//! so they cannot end up in a logged request or a checkpoint. Every secret
//! (including derived ones: the Basic header value, fetched tokens) is
//! registered with the process-wide redactor.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use tokio::time::Instant;
use tributary_core::secret::register;
use tributary_core::Secret;
use url::Url;

use super::client::{set_query_param, HttpError, HttpErrorKind};

/// `[source.auth]` — `type = "none" | "basic" | "bearer" | "api_key" | "oauth2"`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
    },
    ApiKey {
        name: String,
        value: Secret,
        #[serde(default, rename = "in")]
        location: ApiKeyLocation,
    },
    /// Client-credentials grant.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default)]
        scopes: Vec<String>,
        /// Fetch a new token this long before the current one expires, so a
        /// request never races the expiry (`"60s"` by default). For tokens
        /// that live less than twice this, half their lifetime is used.
        #[serde(
            default = "default_refresh_before",
            deserialize_with = "tributary_config::units::de_duration"
        )]
        refresh_before: Duration,
    },
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

/// Where an API key goes: `in = "header"` (default) or `in = "query"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

/// Turns credentials into request headers or query params; caches OAuth2 tokens.
pub struct Authenticator {
    config: AuthConfig,
    oauth: OAuthCache,
}

#[derive(Default)]
struct OAuthCache {
    /// Read on every request; a plain mutex held for a clone, so
    /// [`Authenticator::invalidate`] can stay synchronous.
    token: Mutex<Option<CachedToken>>,
    /// Held while fetching, so concurrent callers share one token request.
    fetching: tokio::sync::Mutex<()>,
    /// Tokens fetched so far: each cached token's number.
    fetched: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    /// `None`: the server gave no lifetime; keep it until a 401.
    refresh_at: Option<Instant>,
    number: u64,
}

/// Which credentials a request was sent with, so a 401 drops only the token
/// it rejected: requests in flight together (read-ahead pages) that all meet
/// an expired token then share one new token instead of each fetching one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SentWith {
    /// The OAuth2 token's number; `None` for other kinds of auth.
    token: Option<u64>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // AuthConfig's Debug shows secrets as `***`; the cached token is never shown.
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Registers every secret with the redactor: values deserialized from
    /// config already are, but the Basic header is derived and a `Secret`
    /// built in code may not have gone through `Secret::new`.
    pub fn new(config: AuthConfig) -> Authenticator {
        match &config {
            AuthConfig::None => {}
            AuthConfig::Basic { username, password } => {
                register(password.expose());
                register(&basic_credentials(username, password));
            }
            AuthConfig::Bearer { token } => register(token.expose()),
            AuthConfig::ApiKey { value, .. } => register_encoded(value),
            AuthConfig::Oauth2 { client_secret, .. } => register_encoded(client_secret),
        }
        Authenticator {
            config,
            oauth: OAuthCache::default(),
        }
    }

    /// Adds credentials to a request about to be sent. OAuth2 fetches a token
    /// (POST `token_url`, form-encoded client credentials) when none is
    /// cached or the cached one is about to expire; concurrent callers share
    /// one fetch.
    pub async fn authorize(
        &self,
        http: &reqwest::Client,
        request: &mut reqwest::Request,
    ) -> Result<SentWith, HttpError> {
        match &self.config {
            AuthConfig::None => Ok(SentWith::default()),
            AuthConfig::Basic { username, password } => set_header(
                request,
                AUTHORIZATION,
                &format!("Basic {}", basic_credentials(username, password)),
            )
            .map(|()| SentWith::default()),
            AuthConfig::Bearer { token } => set_header(
                request,
                AUTHORIZATION,
                &format!("Bearer {}", token.expose()),
            )
            .map(|()| SentWith::default()),
            AuthConfig::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Header,
            } => {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    HttpError::invalid(format!(
                        "auth.name `{name}` is not a valid HTTP header name"
                    ))
                })?;
                set_header(request, header, value.expose()).map(|()| SentWith::default())
            }
            AuthConfig::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Query,
            } => {
                set_query_param(request.url_mut(), name, value.expose());
                Ok(SentWith::default())
            }
            AuthConfig::Oauth2 { .. } => {
                let cached = self.oauth_token(http).await?;
                set_header(
                    request,
                    AUTHORIZATION,
                    &format!("Bearer {}", cached.token.expose()),
                )?;
                Ok(SentWith {
                    token: Some(cached.number),
                })
            }
        }
    }

    /// Called once after a 401 to a request sent `with` those credentials:
    /// drops the cached OAuth2 token if it is still the one rejected, so the
    /// next [`authorize`](Self::authorize) fetches a new one (it may have
    /// been revoked before its announced expiry). Returns whether retrying
    /// can help, which is only the case for OAuth2: static credentials will
    /// be rejected the same way again.
    pub fn invalidate(&self, with: SentWith) -> bool {
        match self.config {
            AuthConfig::Oauth2 { .. } => {
                let mut cached = self.oauth.token.lock().unwrap_or_else(|e| e.into_inner());
                if cached.as_ref().map(|c| c.number) == with.token {
                    *cached = None;
                }
                true
            }
            _ => false,
        }
    }

    fn cached_token(&self) -> Option<CachedToken> {
        let cached = self.oauth.token.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cached.as_ref()?;
        match cached.refresh_at {
            Some(at) if Instant::now() >= at => None,
            _ => Some(cached.clone()),
        }
    }

    async fn oauth_token(&self, http: &reqwest::Client) -> Result<CachedToken, HttpError> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let _fetching = self.oauth.fetching.lock().await;
        // Whoever held the lock before us may have fetched a fresh token.
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let AuthConfig::Oauth2 {
            token_url,
            client_id,
            client_secret,
            scopes,
            refresh_before,
        } = &self.config
        else {
            return Err(HttpError::invalid("no OAuth2 configuration"));
        };
        let fetched_at = Instant::now();
        let (token, lifetime) =
            fetch_token(http, token_url, client_id, client_secret, scopes).await?;
        let refresh_at = lifetime.map(|life| refresh_time(fetched_at, life, *refresh_before));
        let cached = CachedToken {
            token,
            refresh_at,
            number: self
                .oauth
                .fetched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        *self.oauth.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(cached.clone());
        tracing::debug!(token_url = %token_url, lifetime = ?lifetime, "fetched an OAuth2 token");
        Ok(cached)
    }
}

/// Registers a secret and the forms it takes in a query string or form
/// body, so a server that echoes the request back in an error page does not
/// leak it through the percent-encoding.
fn register_encoded(secret: &Secret) {
    let plain = secret.expose();
    register(plain);
    let form: String = url::form_urlencoded::byte_serialize(plain.as_bytes()).collect();
    if form != plain {
        register(&form);
        register(&form.replace('+', "%20"));
    }
}

/// When to stop using a token that lives `lifetime` from `fetched_at`:
/// `refresh_before` ahead of expiry, but never more than half its life early,
/// so short-lived tokens are not refetched for every request.
fn refresh_time(fetched_at: Instant, lifetime: Duration, refresh_before: Duration) -> Instant {
    let margin = refresh_before.min(lifetime / 2);
    fetched_at + (lifetime - margin)
}

fn basic_credentials(username: &str, password: &Secret) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
}

fn set_header(
    request: &mut reqwest::Request,
    name: HeaderName,
    value: &str,
) -> Result<(), HttpError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        HttpError::invalid(format!(
            "the credential for header `{name}` contains characters a header cannot hold"
        ))
    })?;
    // Keeps the value out of hyper's debug output and HPACK tables.
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);
    Ok(())
}

async fn fetch_token(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_secret: &Secret,
    scopes: &[String],
) -> Result<(Secret, Option<Duration>), HttpError> {
    const WHAT: &str = "fetching an OAuth2 token";
    let url = Url::parse(token_url).map_err(|e| {
        HttpError::invalid(format!("auth.token_url `{token_url}` is not a URL: {e}"))
    })?;
    // The serializer is not Send: finish it before any await.
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose());
        if !scopes.is_empty() {
            form.append_pair("scope", &scopes.join(" "));
        }
        form.finish()
    };
    let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
    let headers = request.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    *request.body_mut() = Some(form.into());

    let prefix = |e: HttpError| HttpError {
        message: format!("{WHAT}: {}", e.message),
        ..e
    };
    let response = http
        .execute(request)
        .await
        .map_err(|e| prefix(HttpError::transport("POST", &url, e, None)))?;
    let status = response.status();
    if !status.is_success() {
        let mut err = prefix(HttpError::from_response("POST", response).await);
        // OAuth2 reports bad client credentials as 400 (invalid_client,
        // invalid_grant, invalid_scope) as well as 401: none will go away
        // by retrying.
        if matches!(status.as_u16(), 400 | 401 | 403) {
            err.kind = HttpErrorKind::Auth;
        }
        return Err(err);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| prefix(HttpError::transport("POST", &url, e, None)))?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        HttpError::new(
            HttpErrorKind::Malformed,
            format!("{WHAT}: POST {url} → {status}: the response is not valid JSON ({e})"),
        )
    })?;
    let Some(token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(HttpError::new(
            HttpErrorKind::Malformed,
            format!("{WHAT}: POST {url} → {status}: the response has no `access_token`"),
        ));
    };
    let token = Secret::new(token);
    // Some servers send the lifetime as a string.
    let lifetime = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|secs| secs.is_finite() && *secs >= 0.0)
    .map(|secs| Duration::from_secs_f64(secs.min(1e9)));
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn config_shapes() {
        assert!(matches!(
            parse("type = \"none\"").unwrap(),
            AuthConfig::None
        ));
        assert!(matches!(AuthConfig::default(), AuthConfig::None));
        match parse("type = \"basic\"\nusername = \"u\"\npassword = \"p4ssw0rd\"").unwrap() {
            AuthConfig::Basic { username, password } => {
                assert_eq!(username, "u");
                assert_eq!(password.expose(), "p4ssw0rd");
            }
            other => panic!("{other:?}"),
        }
        match parse("type = \"api_key\"\nname = \"k\"\nvalue = \"vvvv\"").unwrap() {
            AuthConfig::ApiKey { location, .. } => assert_eq!(location, ApiKeyLocation::Header),
            other => panic!("{other:?}"),
        }
        match parse("type = \"api_key\"\nname = \"k\"\nvalue = \"vvvv\"\nin = \"query\"").unwrap() {
            AuthConfig::ApiKey { location, .. } => assert_eq!(location, ApiKeyLocation::Query),
            other => panic!("{other:?}"),
        }
        let oauth = "type = \"oauth2\"\ntoken_url = \"https://a/token\"\nclient_id = \"c\"\nclient_secret = \"ssss\"";
        match parse(oauth).unwrap() {
            AuthConfig::Oauth2 {
                refresh_before,
                scopes,
                ..
            } => {
                assert_eq!(refresh_before, Duration::from_secs(60));
                assert!(scopes.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match parse(&format!(
            "{oauth}\nrefresh_before = \"5m\"\nscopes = [\"a\"]"
        ))
        .unwrap()
        {
            AuthConfig::Oauth2 { refresh_before, .. } => {
                assert_eq!(refresh_before, Duration::from_secs(300))
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&format!("{oauth}\nrefresh_before = \"soon\"")).unwrap_err();
        assert!(err.contains("invalid duration"), "{err}");
        let err = parse("type = \"bearer\"\ntoken = \"tttt\"\ntokn = \"x\"").unwrap_err();
        assert!(err.contains("unknown field `tokn`"), "{err}");
        let err = parse("type = \"kerberos\"").unwrap_err();
        assert!(err.contains("kerberos"), "{err}");
    }

    #[test]
    fn debug_never_prints_secrets() {
        let auth = Authenticator::new(AuthConfig::Basic {
            username: "bob".into(),
            password: Secret::new("debug-pass-123"),
        });
        let text = format!("{auth:?}");
        assert!(!text.contains("debug-pass-123"), "{text}");
        assert!(text.contains("bob"), "{text}");
        // The derived header value is registered too.
        let header = basic_credentials("bob", &Secret::new("debug-pass-123"));
        assert_eq!(tributary_core::secret::redact(&header), "***");
        assert!(!auth.invalidate(SentWith::default()));
    }

    #[test]
    fn refresh_time_respects_margin_and_short_lifetimes() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        assert_eq!(
            refresh_time(t0, hour, minute),
            t0 + Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_time(t0, Duration::from_secs(30), minute),
            t0 + Duration::from_secs(15)
        );
        assert_eq!(refresh_time(t0, Duration::ZERO, minute), t0);
    }

    #[tokio::test]
    async fn api_key_header_name_must_be_valid() {
        let auth = Authenticator::new(AuthConfig::ApiKey {
            name: "bad header".into(),
            value: Secret::new("some-key-1"),
            location: ApiKeyLocation::Header,
        });
        let http = reqwest::Client::new();
        let mut request =
            reqwest::Request::new(reqwest::Method::GET, Url::parse("http://h/").unwrap());
        let err = auth.authorize(&http, &mut request).await.unwrap_err();
        assert_eq!(err.kind, HttpErrorKind::Invalid);
        assert!(err.message.contains("bad header"), "{}", err.message);
    }
}
