//! `json_queue`: a message queue whose messages are deleted only once the
//! records they became are committed, as a [`PushSource`].

use crate::api::Client;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tributary_sdk::{
    async_trait, BadRecord, ConfigError, Error, PushSource, Pusher, Record, Secret, SectionConfig,
    SourceContext, StreamSpec,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The API's base URL.
    url: String,
    /// A bearer token, usually `"${FEED_TOKEN}"`.
    #[serde(default)]
    token: Option<Secret>,
    /// Milliseconds between receives while the queue is empty.
    #[serde(default = "default_wait")]
    wait_ms: u64,
    /// End the run once the queue is empty (a drain job) instead of waiting
    /// for more.
    #[serde(default)]
    stop_when_empty: bool,
}

fn default_wait() -> u64 {
    500
}

#[derive(Deserialize)]
struct Received {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: u64,
    body: Value,
}

pub struct QueueSource {
    client: Client,
    wait: Duration,
    stop_when_empty: bool,
}

impl QueueSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let config: Config = section.parse()?;
        Ok(QueueSource {
            client: Client::new(config.url, config.token, ctx.metrics.clone()),
            wait: Duration::from_millis(config.wait_ms),
            stop_when_empty: config.stop_when_empty,
        })
    }
}

#[async_trait]
impl PushSource for QueueSource {
    /// A message's id: what `POST /queue/ack` deletes.
    type Ack = u64;

    async fn check(&self) -> Result<(), Error> {
        self.client.call("/health", None).await.map(drop)
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
        Ok(vec![StreamSpec {
            primary_key: vec!["id".into()],
            ..StreamSpec::new("messages")
        }])
    }

    async fn run(&self, _: &StreamSpec, tx: Pusher<u64>) -> Result<(), Error> {
        // Each connection receives every message not yet deleted; `after`
        // only pages through them.
        let mut after = 0;
        loop {
            let path = format!("/queue?after={after}&limit=100");
            let body = self.client.call(&path, None).await?;
            let received: Received = serde_json::from_slice(&body)
                .map_err(|e| Error::fatal(format!("GET {path}: not a list of messages: {e}")))?;
            if received.messages.is_empty() {
                if self.stop_when_empty {
                    return Ok(());
                }
                tokio::time::sleep(self.wait).await;
                continue;
            }
            for m in received.messages {
                after = m.id;
                let sent = if m.body.is_object() {
                    tx.send(Record::new(m.body).with_key(json!(m.id)), m.id)
                        .await
                } else {
                    let bad = BadRecord {
                        location: format!("queue message {}", m.id),
                        error: "a message body must be a JSON object".into(),
                        raw: m.body.to_string().into(),
                    };
                    tx.send_bad(bad, m.id).await
                };
                if sent.is_err() {
                    return Ok(());
                }
            }
        }
    }

    async fn ack(&self, _: &StreamSpec, ids: Vec<u64>) -> Result<(), Error> {
        self.client
            .call("/queue/ack", Some(json!({ "ids": ids })))
            .await
            .map(drop)
    }
}
