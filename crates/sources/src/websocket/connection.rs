//! The task that owns a WebSocket connection: connect, subscribe, read,
//! heartbeat, reconnect with backoff. It hands each message, already turned
//! into a record (or a bad record), to the reader through a bounded channel,
//! so a slow sink stops the reading and TCP pushes back on the server.

use super::config::{Settings, WsAuth};
use crate::http::template::render_json;
use crate::push::bad_record;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{info, warn};
use tributary_core::secret::{mask_url, redact};
use tributary_core::ConnectorError;

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the connection task hands to the reader.
/// A message, with its resume token when `resume_field` is set and present.
pub(crate) type Event = crate::push::PushEvent<Option<Value>>;

/// Why connecting failed, and whether trying again can help.
pub(crate) struct ConnectError {
    pub message: String,
    pub permanent: bool,
}

impl ConnectError {
    fn retryable(message: String) -> Self {
        ConnectError {
            message,
            permanent: false,
        }
    }

    fn permanent(message: String) -> Self {
        ConnectError {
            message,
            permanent: true,
        }
    }

    pub fn into_connector_error(self) -> ConnectorError {
        if self.permanent {
            ConnectorError::fatal(self.message)
        } else {
            ConnectorError::retryable(self.message)
        }
    }
}

/// Opens the connection (URL rendered with the resume token, credentials
/// added here and nowhere else) and sends the subscription messages.
/// Returns the stream and the URL as it may be shown (credentials masked).
pub(crate) async fn connect(
    s: &Settings,
    resume: Option<&Value>,
) -> Result<(WsStream, String), ConnectError> {
    let ctx = json!({ "resume": resume.cloned().unwrap_or(Value::Null) });
    let rendered = s
        .url
        .render(&ctx)
        .map_err(|e| ConnectError::permanent(e.to_string()))?;
    let mut url = url::Url::parse(&rendered).map_err(|e| {
        ConnectError::permanent(format!("invalid url `{}`: {e}", redact(&rendered)))
    })?;
    if let WsAuth::Query { name, token } = &s.auth {
        url.query_pairs_mut().append_pair(name, token.expose());
    }
    let shown = mask_url(&url);
    let mut request = url.as_str().into_client_request().map_err(|e| {
        ConnectError::permanent(format!(
            "invalid request for {shown}: {}",
            redact(&e.to_string())
        ))
    })?;
    let headers = request.headers_mut();
    for (name, value) in &s.headers {
        headers.insert(header_name(name)?, header_value(name, value)?);
    }
    match &s.auth {
        WsAuth::Header { name, token } => {
            let mut v = header_value(name, token.expose())?;
            v.set_sensitive(true);
            headers.insert(header_name(name)?, v);
        }
        WsAuth::Bearer { token } => {
            let mut v = header_value("Authorization", &format!("Bearer {}", token.expose()))?;
            v.set_sensitive(true);
            headers.insert(tungstenite::http::header::AUTHORIZATION, v);
        }
        WsAuth::None | WsAuth::Query { .. } => {}
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(s.max_message_bytes))
        .max_frame_size(Some(s.max_message_bytes));
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, None);
    let (mut ws, _response) = match tokio::time::timeout(s.connect_timeout, connecting).await {
        Err(_) => {
            return Err(ConnectError::retryable(format!(
                "connecting to {shown} timed out after {:?}",
                s.connect_timeout
            )))
        }
        Ok(Err(e)) => return Err(classify(&shown, e)),
        Ok(Ok(c)) => c,
    };
    for message in &s.subscribe {
        let text = match render_json(message, &ctx) {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => return Err(ConnectError::permanent(e.to_string())),
        };
        ws.send(Message::text(text)).await.map_err(|e| {
            ConnectError::retryable(format!(
                "sending a subscription message to {shown}: {}",
                redact(&e.to_string())
            ))
        })?;
    }
    Ok((ws, shown))
}

fn header_name(name: &str) -> Result<HeaderName, ConnectError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConnectError::permanent(format!("`{name}` is not a valid HTTP header name")))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, ConnectError> {
    // The value may be a credential: never echo it.
    HeaderValue::from_str(value).map_err(|_| {
        ConnectError::permanent(format!("the value of header `{name}` is not valid in HTTP"))
    })
}

/// A rejected handshake (401, 403, 404, ...) will be rejected again: stop,
/// with the status. Network trouble and 5xx/429/408 are worth retrying.
fn classify(shown: &str, e: tungstenite::Error) -> ConnectError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let message =
                format!("the server refused the WebSocket handshake at {shown}: HTTP {status}");
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                ConnectError::retryable(message)
            } else {
                ConnectError::permanent(message)
            }
        }
        tungstenite::Error::Url(e) => ConnectError::permanent(format!("invalid url {shown}: {e}")),
        tungstenite::Error::Tls(e) => ConnectError::permanent(format!(
            "TLS handshake with {shown} failed: {}",
            redact(&e.to_string())
        )),
        other => ConnectError::retryable(format!(
            "connecting to {shown}: {}",
            redact(&other.to_string())
        )),
    }
}

/// How one connection ended.
enum Ended {
    /// Lost (closed by the server, a network error, a dead heartbeat): reconnect.
    Lost(String),
    /// The reader is gone: stop.
    ReaderGone,
}

/// The connection task: runs until the reader is dropped or it gives up.
pub(crate) async fn run(
    settings: std::sync::Arc<Settings>,
    mut resume: Option<Value>,
    mut seen: u64,
    tx: mpsc::Sender<Event>,
) {
    let mut restarts: u32 = 0;
    loop {
        let reason = match connect(&settings, resume.as_ref()).await {
            Ok((ws, shown)) => {
                info!(url = %shown, restarts, "websocket connected");
                let before = seen;
                let ended = read(&settings, ws, &shown, &mut resume, &mut seen, &tx).await;
                if seen > before {
                    restarts = 0;
                }
                match ended {
                    Ended::ReaderGone => return,
                    Ended::Lost(reason) => reason,
                }
            }
            Err(e) if e.permanent => {
                let _ = tx
                    .send(Event::Failed(ConnectorError::fatal(e.message)))
                    .await;
                return;
            }
            Err(e) => e.message,
        };
        restarts += 1;
        if settings.reconnect.exhausted(restarts) {
            let message = format!(
                "websocket: gave up after {} reconnect attempts without a message (reconnect.max_restarts = {}); last error: {reason}",
                restarts - 1,
                settings.reconnect.max_restarts
            );
            let _ = tx.send(Event::Failed(ConnectorError::fatal(message))).await;
            return;
        }
        let wait = settings.reconnect.delay(restarts);
        warn!(error = %reason, attempt = restarts, ?wait, "websocket connection lost; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return,
        }
    }
}

/// Reads one connection until it ends, pinging every heartbeat interval.
async fn read(
    s: &Settings,
    ws: WsStream,
    shown: &str,
    resume: &mut Option<Value>,
    seen: &mut u64,
    tx: &mpsc::Sender<Event>,
) -> Ended {
    let (mut write, mut incoming) = ws.split();
    let far = Duration::from_secs(86_400 * 365);
    let interval = s.heartbeat.as_ref().map_or(far, |h| h.interval);
    let pong_timeout = s.heartbeat.as_ref().map_or(far, |h| h.timeout);
    let mut next_ping = Instant::now() + interval;
    // Set while a ping awaits its pong.
    let mut pong_deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => return Ended::ReaderGone,
            _ = tokio::time::sleep_until(pong_deadline.unwrap_or(next_ping)), if pong_deadline.is_some() => {
                return Ended::Lost(format!(
                    "no pong from {shown} within {pong_timeout:?} of a ping: connection declared dead"
                ));
            }
            _ = tokio::time::sleep_until(next_ping), if s.heartbeat.is_some() => {
                next_ping = Instant::now() + interval;
                if let Err(e) = write.send(Message::Ping(Default::default())).await {
                    return Ended::Lost(format!("sending a ping to {shown}: {}", redact(&e.to_string())));
                }
                if pong_deadline.is_none() {
                    pong_deadline = Some(Instant::now() + pong_timeout);
                }
            }
            message = incoming.next() => {
                let payload = match message {
                    None => return Ended::Lost(format!("{shown} closed the connection")),
                    Some(Err(e)) => return Ended::Lost(format!("reading from {shown}: {}", redact(&e.to_string()))),
                    Some(Ok(Message::Pong(_))) => {
                        pong_deadline = None;
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!(" (code {}, {:?})", f.code, f.reason.as_str())).unwrap_or_default();
                        return Ended::Lost(format!("{shown} closed the connection{why}"));
                    }
                    // Pongs to the server's pings are queued by tungstenite
                    // and go out with the next read or write.
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Text(t))) => bytes::Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                };
                *seen += 1;
                let event = message_event(s, shown, *seen, &payload);
                if let Event::Message { meta: Some(r), .. } = &event {
                    *resume = Some(r.clone());
                }
                match tx.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return Ended::ReaderGone,
                    Err(mpsc::error::TrySendError::Full(event)) => {
                        if tx.send(event).await.is_err() {
                            return Ended::ReaderGone;
                        }
                        // While we waited for the sink nothing was read, so a
                        // pong may sit unread in the socket: restart the clock.
                        if pong_deadline.is_some() {
                            pong_deadline = Some(Instant::now() + pong_timeout);
                        }
                    }
                }
            }
        }
    }
}

fn message_event(s: &Settings, shown: &str, number: u64, payload: &[u8]) -> Event {
    match s.rules.record(payload) {
        Ok(record) => {
            let resume = s.resume_field.as_deref().and_then(|f| {
                crate::http::records::lookup_dotted(&record.value.to_value(), f).cloned()
            });
            Event::Message {
                record: Ok(record),
                meta: resume,
            }
        }
        Err(error) => Event::Message {
            record: Err(bad_record(
                format!("{shown} message {number}"),
                error,
                payload,
            )),
            meta: None,
        },
    }
}
