//! A WebSocket server for the `websocket` source's tests and benchmark: a
//! feed of numbered JSON messages, with the faults a real server shows on
//! demand (dropped connections, a hung server that stops answering pings,
//! fragmented and malformed messages, refused handshakes), and a log of what
//! each connection sent it (handshake, subscription messages).
//!
//! The feed is `{"seq": i, "id": i, "channel": ..., "body": ...}` for
//! `i` in `1..=total`. A connection starts after the resume point it asks
//! for (`"since": N` in its first message, or `?since=N` on its URL); one
//! that asks for none gets the messages no connection was sent yet, like a
//! server that buffers for its one client. A drop never loses a message
//! the server sent: it closes the TCP connection after writing it.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// What the server sends and which faults it injects.
#[derive(Debug, Clone)]
pub struct WsSimConfig {
    /// Messages in the feed.
    pub total: u64,
    /// Wait for a first message from the client (its subscription) before sending.
    pub require_subscription: bool,
    /// The credential a handshake must carry; others are refused with 401.
    pub auth: Option<SimAuth>,
    /// Close the connection right after sending each of these seqs (each once).
    pub drop_after: Vec<u64>,
    /// After sending this seq, hang (once): stop reading, so pings go
    /// unanswered, and stop sending, without closing.
    pub hang_after: Option<u64>,
    /// Send these seqs as text fragments of at most 7 bytes (continuation frames).
    pub fragment: Vec<u64>,
    /// Send these seqs as malformed JSON instead.
    pub malformed: Vec<u64>,
    /// `channel` of message i is `channels[i % len]` (for routing tests).
    pub channels: Vec<String>,
    /// Pad `body` so a message is about this many bytes (0: a short body).
    pub message_bytes: usize,
}

impl Default for WsSimConfig {
    fn default() -> Self {
        WsSimConfig {
            total: 100,
            require_subscription: false,
            auth: None,
            drop_after: Vec::new(),
            hang_after: None,
            fragment: Vec::new(),
            malformed: Vec::new(),
            channels: vec!["trades".into(), "quotes".into()],
            message_bytes: 0,
        }
    }
}

/// A credential the handshake must carry.
#[derive(Debug, Clone)]
pub enum SimAuth {
    Query { name: String, value: String },
    Header { name: String, value: String },
    Bearer(String),
}

/// What one connection did.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLog {
    /// The request path and query, as sent.
    pub uri: String,
    /// Handshake headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Text messages received from the client, in order (subscriptions).
    pub received: Vec<String>,
    /// The resume point the client asked for, if any.
    pub since: Option<u64>,
    /// Seqs sent on this connection (malformed ones included).
    pub sent: u64,
    /// Refused at the handshake (bad credentials).
    pub refused: bool,
}

#[derive(Default)]
struct State {
    connections: Vec<ConnectionLog>,
    /// The first seq no connection was sent yet.
    next_live: u64,
    drops_left: Vec<u64>,
    hang_left: Option<u64>,
    /// Bumped by [`WsSim::rewind`]: connections from before it stop sending.
    epoch: u64,
}

/// A running simulator; serves until dropped with its tokio runtime.
pub struct WsSim {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl WsSim {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start(config: WsSimConfig) -> WsSim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, config)
    }

    /// Serves on an already bound listener (the bench binary picks its port).
    pub fn serve(listener: TcpListener, config: WsSimConfig) -> WsSim {
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            next_live: 1,
            drops_left: config.drop_after.clone(),
            hang_left: config.hang_after,
            ..State::default()
        }));
        let config = Arc::new(config);
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_connection(tcp, config.clone(), shared.clone()));
            }
        });
        WsSim { addr, state }
    }

    /// `ws://127.0.0.1:PORT/feed`.
    pub fn url(&self) -> String {
        format!("ws://{}/feed", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forgets what it sent: a connection that asks for no resume point
    /// gets the feed from seq 1 again (a server replaying for a new client).
    pub fn rewind(&self) {
        let mut s = self.state.lock().unwrap();
        s.next_live = 1;
        s.epoch += 1;
    }

    /// Every connection so far, in order of arrival.
    pub fn connections(&self) -> Vec<ConnectionLog> {
        self.state.lock().unwrap().connections.clone()
    }
}

/// The feed's message `seq`, as text.
pub fn feed_message(config: &WsSimConfig, seq: u64) -> String {
    let channel = if config.channels.is_empty() {
        String::new()
    } else {
        config.channels[(seq % config.channels.len() as u64) as usize].clone()
    };
    let mut v = json!({"seq": seq, "id": seq, "channel": channel, "body": ""});
    let base = v.to_string().len();
    if config.message_bytes > base {
        v["body"] = Value::String("x".repeat(config.message_bytes - base));
    }
    v.to_string()
}

fn authorized(auth: &Option<SimAuth>, request: &Request) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match auth {
        None => true,
        Some(SimAuth::Header { name, value }) => header(name).as_deref() == Some(value),
        Some(SimAuth::Bearer(token)) => {
            header("authorization").as_deref() == Some(&format!("Bearer {token}"))
        }
        Some(SimAuth::Query { name, value }) => {
            query_param(request, name).as_deref() == Some(value)
        }
    }
}

fn query_param(request: &Request, name: &str) -> Option<String> {
    let url = url::Url::parse(&format!("http://x{}", request.uri())).ok()?;
    let found = url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    found
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve_connection(tcp: TcpStream, config: Arc<WsSimConfig>, state: Arc<Mutex<State>>) {
    let (index, epoch) = {
        let mut s = state.lock().unwrap();
        s.connections.push(ConnectionLog::default());
        (s.connections.len() - 1, s.epoch)
    };
    let log_state = state.clone();
    let auth = config.auth.clone();
    let callback = move |request: &Request, response: Response| {
        let ok = authorized(&auth, request);
        let since = query_param(request, "since").and_then(|s| s.parse().ok());
        let mut s = log_state.lock().unwrap();
        let log = &mut s.connections[index];
        log.uri = request.uri().to_string();
        log.since = since;
        log.headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if ok {
            Ok(response)
        } else {
            log.refused = true;
            let mut refusal = ErrorResponse::new(Some("unauthorized".into()));
            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refusal)
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let (mut out, mut incoming) = ws.split();

    // Reads (and so answers pings) until told to stop; forwards text.
    let (text_tx, mut text_rx) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            if let Message::Text(t) = message {
                if text_tx.send(t.as_str().to_string()).is_err() {
                    break;
                }
            }
        }
    });
    let reader = AbortOnDrop(reader);

    let record = |text: &str| {
        let mut s = state.lock().unwrap();
        let since = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("since").and_then(Value::as_u64));
        let log = &mut s.connections[index];
        log.received.push(text.to_string());
        if log.received.len() == 1 && since.is_some() {
            log.since = since;
        }
    };
    if config.require_subscription {
        match text_rx.recv().await {
            Some(text) => record(&text),
            None => return,
        }
    }
    let since = state.lock().unwrap().connections[index].since;
    let mut seq = match since {
        Some(n) => n + 1,
        None => state.lock().unwrap().next_live,
    };
    let mut unflushed = 0;
    while seq <= config.total {
        while let Ok(text) = text_rx.try_recv() {
            record(&text);
        }
        let text = if config.malformed.contains(&seq) {
            format!("{{\"seq\": {seq}, \"broken")
        } else {
            feed_message(&config, seq)
        };
        let sent = if config.fragment.contains(&seq) {
            send_fragmented(&mut out, &text).await
        } else {
            out.feed(Message::text(text)).await
        };
        if sent.is_err() {
            return;
        }
        unflushed += 1;
        let (drop_now, hang_now) = {
            let mut s = state.lock().unwrap();
            if s.epoch != epoch {
                // Rewound: this connection's client is gone.
                return;
            }
            s.connections[index].sent += 1;
            s.next_live = s.next_live.max(seq + 1);
            let drop_now = s.drops_left.contains(&seq);
            s.drops_left.retain(|d| *d != seq);
            let hang_now = s.hang_left == Some(seq);
            if hang_now {
                s.hang_left = None;
            }
            (drop_now, hang_now)
        };
        if unflushed >= 256 || drop_now || hang_now || seq == config.total {
            if out.flush().await.is_err() {
                return;
            }
            unflushed = 0;
        }
        if drop_now {
            // Closing the TCP connection without a close frame, as a crashed
            // server or a load balancer does.
            drop(reader);
            drop(out);
            return;
        }
        if hang_now {
            drop(reader);
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        seq += 1;
    }
    // Caught up: keep the connection (the reader task answers pings).
    while let Some(text) = text_rx.recv().await {
        record(&text);
    }
}

async fn send_fragmented<S>(out: &mut S, text: &str) -> Result<(), S::Error>
where
    S: futures::Sink<Message> + Unpin,
{
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(7).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        out.feed(Message::Frame(frame)).await?;
    }
    Ok(())
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
