//! `type = "websocket"`: messages pushed by a WebSocket server (seed 002's
//! WebSocket Source).
//!
//! ```toml
//! [source]
//! type = "websocket"
//! url = "wss://stream.example.com/events?since={{ resume }}"
//! format = "json"                          # json (default) | text
//! auth = { type = "bearer", token = "${WS_TOKEN}" }   # none | query | header | bearer
//! subscribe = [{ op = "subscribe", channels = ["trades"], since = "{{ resume }}" }]
//! id_field = "id"                          # record key; missing: a generated UUID
//! target = "market.{{ channel }}"          # routing by a field; missing: the stream's target
//! resume_field = "seq"                     # kept in the checkpoint, sent on reconnect
//! heartbeat = { interval = "30s", timeout = "10s" }
//! reconnect = { min_backoff = "1s", max_backoff = "30s", max_restarts = -1 }
//! ```
//!
//! **One connection, one stream** (`stream`, default `messages`). A task
//! owns the connection ([`connection`]): it connects, sends the
//! subscription messages, reads, pings, and on any loss (close, error, a
//! ping without a pong in time) reconnects with exponential backoff and
//! subscribes again. Fragmented messages arrive whole (tungstenite
//! reassembles continuation frames, up to `max_message_bytes`).
//!
//! **Progress.** A WebSocket server keeps no position for its clients, so
//! what a restart loses is whatever the server sent while nobody listened
//! and does not replay. Where the server numbers its messages or hands out
//! resume tokens, `resume_field` keeps the last one in the checkpoint and
//! `{{ resume }}` sends it on every (re)connect: the server can then replay
//! from there, and messages after the last commit are re-delivered at most
//! once per crash.
//!
//! **Bad input** (invalid JSON, JSON that is not an object, non-UTF-8 text)
//! becomes a [`BadRecord`](tributary_core::BadRecord) located
//! `URL message N`, for the connector's bad-record policy.

mod config;
mod connection;
mod source;

pub use config::{HeartbeatConfig, WebSocketConfig, WsAuth};
pub use source::{WebSocketSource, WsCheckpoint, WsReader};
