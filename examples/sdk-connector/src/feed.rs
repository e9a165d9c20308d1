//! `json_feed`: a paged JSON feed read by cursor, as a [`PullSource`].

use crate::api::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tributary_sdk::{
    async_trait, BadRecord, CheckpointSummary, ConfigError, Error, PullSource, Pulled, Record,
    Secret, SectionConfig, SourceContext, StreamSpec,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The API's base URL.
    url: String,
    /// A bearer token, usually `"${FEED_TOKEN}"`.
    #[serde(default)]
    token: Option<Secret>,
    /// Events per request (`limit`), 1 to 1000.
    #[serde(default = "default_page_size")]
    page_size: u32,
}

fn default_page_size() -> u32 {
    100
}

/// The checkpoint: the id of the last event read. The feed is ordered by
/// id, so "after this id" is a position with no gap and no repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub after: u64,
}

/// One page as the API sends it.
#[derive(Deserialize)]
struct Page {
    events: Vec<Value>,
    /// The cursor of the next page (the last id on this one).
    next_after: Option<u64>,
    has_more: bool,
}

pub struct FeedSource {
    client: Client,
    page_size: u32,
}

impl FeedSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let config: Config = section.parse()?;
        if !(1..=1000).contains(&config.page_size) {
            return Err(section.error("page_size", "page_size must be 1 to 1000"));
        }
        Ok(FeedSource {
            client: Client::new(config.url, config.token, ctx.metrics.clone()),
            page_size: config.page_size,
        })
    }
}

#[async_trait]
impl PullSource for FeedSource {
    type Checkpoint = Cursor;

    async fn check(&self) -> Result<(), Error> {
        self.client.call("/health", None).await.map(drop)
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, Error> {
        Ok(vec![StreamSpec {
            primary_key: vec!["id".into()],
            cursor_field: Some("id".into()),
            json_schema: Some(json!({
                "type": "object",
                "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}},
                "required": ["id"]
            })),
            ..StreamSpec::new("events")
        }])
    }

    async fn poll(&self, _: &StreamSpec, cursor: Option<&Cursor>) -> Result<Pulled<Cursor>, Error> {
        let after = cursor.map_or(0, |c| c.after);
        let path = format!("/events?after={after}&limit={}", self.page_size);
        let body = self.client.call(&path, None).await?;
        let page: Page = serde_json::from_slice(&body).map_err(|e| {
            Error::fatal(format!(
                "GET {path}: the answer is not a page of events: {e}"
            ))
        })?;
        let mut records = Vec::with_capacity(page.events.len());
        let mut bad = Vec::new();
        for (i, event) in page.events.into_iter().enumerate() {
            match event.get("id").and_then(Value::as_u64) {
                Some(id) if event.is_object() => {
                    records.push(Record::new(event).with_key(json!(id)))
                }
                _ => bad.push(BadRecord {
                    location: format!("GET {path} events[{i}]"),
                    error: "an event must be an object with an integer `id`".into(),
                    raw: event.to_string().into(),
                }),
            }
        }
        let next = Cursor {
            after: page.next_after.unwrap_or(after),
        };
        let pulled = if page.has_more {
            Pulled::more(records, next)
        } else {
            Pulled::caught_up(records, next)
        };
        Ok(pulled.with_bad_records(bad))
    }

    fn summarize(&self, _: &StreamSpec, cursor: &Cursor) -> CheckpointSummary {
        CheckpointSummary {
            position: Some(format!("after id {}", cursor.after)),
            ..CheckpointSummary::default()
        }
    }
}
