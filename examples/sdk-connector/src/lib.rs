//! Two source connectors written only against `tributary-sdk`:
//!
//! - `json_feed` ([`feed::FeedSource`], a [`PullSource`](tributary_sdk::PullSource)):
//!   `GET {url}/events?after=<id>&limit=<n>` pages, resumed from the last id.
//! - `json_queue` ([`queue::QueueSource`], a [`PushSource`](tributary_sdk::PushSource)):
//!   `GET {url}/queue?after=<id>` receives messages, `POST {url}/queue/ack`
//!   deletes them, only once they are committed downstream.

pub mod api;
pub mod feed;
pub mod queue;
