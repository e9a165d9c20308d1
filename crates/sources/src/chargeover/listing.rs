//! One page of a ChargeOver entity inside a window, by keyset.
//!
//! ChargeOver's `where` is a conjunction (`a:GTE:x,b:LT:y`), so "after
//! (t, id)" is asked in two steps: the rest of the records sharing the last
//! datetime `t` (`dt:EQUALS:t,id:GT:id`, by id), then the records after it
//! (`dt:GT:t,dt:LT:end`, by datetime then id). Neither query shifts when a
//! record is modified meanwhile: a modified record's datetime moves to now,
//! past the window end, and the next run reads its latest version.

use crate::http::client::{HttpClient, HttpRequest, Method};
use crate::http::engine::{FetchError, Listing, Page, PageQuery};
use crate::http::raw_page::{RawPage, RawSelection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_core::ConnectorError;

pub struct EntityListing {
    pub client: HttpClient,
    pub entity: String,
    /// `{base}/{entity}`.
    pub url: url::Url,
    pub datetime_field: String,
    pub id_field: String,
    /// `chargeover.{entity}.query.params`, appended after ours.
    pub extra_params: Vec<(String, String)>,
    /// Trust a page shorter than `limit` to be the last of its query. Off
    /// by default: only an empty page ends one, since an API (or an
    /// account's plan) that caps `limit` below the one asked for answers
    /// short pages all along.
    pub stop_on_short_page: bool,
}

/// Position inside a window: the last record read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Keyset {
    /// Its datetime, exactly as ChargeOver wrote it.
    datetime: String,
    id: Value,
    /// True once every record sharing `datetime` has been read.
    tie_done: bool,
}

/// ChargeOver needs `:` and `,` inside values escaped with a backslash.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl EntityListing {
    fn request(&self, filter: &str, order: &str, limit: u64) -> HttpRequest {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &limit.to_string());
            q.append_pair("offset", "0");
            q.append_pair("where", filter);
            q.append_pair("order", order);
            for (k, v) in &self.extra_params {
                q.append_pair(k, v);
            }
        }
        HttpRequest {
            method: Method::Get,
            url,
            headers: vec![("Accept".into(), "application/json".into())],
            body: None,
            form: None,
        }
    }

    /// The `response` array of ChargeOver's envelope, records kept as text
    /// with their datetime and id read.
    async fn list(&self, request: HttpRequest) -> Result<RawPage, FetchError> {
        let response = self.client.execute(&request).await?;
        let selection = RawSelection::new(
            vec!["response".into()],
            &[&self.datetime_field, &self.id_field],
        );
        let page = selection.read_response(&response)?;
        let Value::Object(envelope) = &page.body else {
            return Err(FetchError::bad_page(
                format!(
                    "ChargeOver answered {} with something other than its JSON envelope",
                    crate::http::client::display_url(&response.url)
                ),
                &response,
            ));
        };
        let code = envelope.get("code").and_then(Value::as_u64).unwrap_or(200);
        if code != 200 {
            let message = envelope
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(FetchError::Other(ConnectorError::fatal(format!(
                "ChargeOver refused {}: code {code}: {}",
                crate::http::client::display_url(&response.url),
                tributary_core::secret::redact(&message)
            ))));
        }
        Ok(page)
    }

    /// Whether a query is over after `page`: it came back empty, or short
    /// when short pages are trusted.
    fn query_done(&self, page: &RawPage, limit: u64) -> bool {
        page.raw_count == 0 || (self.stop_on_short_page && (page.raw_count as u64) < limit)
    }

    fn keyset_after(&self, page: &RawPage, tie_done: bool) -> Result<Value, FetchError> {
        let last = page
            .last_bad
            .as_ref()
            .or(page.records.last())
            .ok_or_else(|| {
                FetchError::Other(ConnectorError::fatal("internal: keyset of an empty page"))
            })?;
        let datetime = last
            .get(&self.datetime_field)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FetchError::Other(ConnectorError::fatal(format!(
                    "a {} record has no `{}` datetime; set [source.datetime_fields] {} = \"...\"",
                    self.entity, self.datetime_field, self.entity
                )))
            })?;
        let id = last.get(&self.id_field).cloned().ok_or_else(|| {
            FetchError::Other(ConnectorError::fatal(format!(
                "a {} record has no `{}` id; set [source.id_fields] {} = \"...\"",
                self.entity, self.id_field, self.entity
            )))
        })?;
        Ok(serde_json::to_value(Keyset {
            datetime: datetime.to_string(),
            id,
            tie_done,
        })
        .unwrap_or(Value::Null))
    }
}

#[async_trait::async_trait]
impl Listing for EntityListing {
    async fn fetch(&self, query: &PageQuery<'_>) -> Result<Page, FetchError> {
        let window = query.window.as_ref().ok_or_else(|| {
            FetchError::Other(ConnectorError::fatal(
                "internal: ChargeOver listing without a window",
            ))
        })?;
        let limit = query.page_size.unwrap_or(500).max(1);
        let dt = &self.datetime_field;
        let id = &self.id_field;
        let end = escape(&window.end_text);
        let position: Option<Keyset> = match query.position {
            None => None,
            Some(p) => Some(serde_json::from_value(p.clone()).map_err(|e| {
                FetchError::Other(ConnectorError::fatal(format!(
                    "checkpoint `page` is not a ChargeOver keyset ({e}); reset the stream"
                )))
            })?),
        };
        match position {
            None => {
                let lower = format!("{dt}:GTE:{}", escape(&window.start_text));
                self.range_page(&lower, &end, limit).await
            }
            Some(k) if !k.tie_done => {
                let filter = format!(
                    "{dt}:EQUALS:{},{id}:GT:{}",
                    escape(&k.datetime),
                    escape(&id_text(&k.id))
                );
                let page = self
                    .list(self.request(&filter, &format!("{id}:ASC"), limit))
                    .await?;
                let next = if self.query_done(&page, limit) {
                    Keyset {
                        tie_done: true,
                        ..k
                    }
                } else {
                    let last = page.last_bad.as_ref().or(page.records.last());
                    Keyset {
                        id: last
                            .and_then(|r| r.get(id))
                            .cloned()
                            .unwrap_or(k.id.clone()),
                        ..k
                    }
                };
                Ok(Page {
                    records: page.records,
                    next: Some(serde_json::to_value(next).unwrap_or(Value::Null)),
                    bad_records: page.bad_records,
                    last_bad: page.last_bad,
                })
            }
            Some(k) => {
                let lower = format!("{dt}:GT:{}", escape(&k.datetime));
                self.range_page(&lower, &end, limit).await
            }
        }
    }
}

impl EntityListing {
    /// Records from `lower` (a `where` condition) to the window end, by
    /// (datetime, id); a page with records continues after its last one.
    async fn range_page(&self, lower: &str, end: &str, limit: u64) -> Result<Page, FetchError> {
        let dt = &self.datetime_field;
        let filter = format!("{lower},{dt}:LT:{end}");
        let order = format!("{dt}:ASC,{}:ASC", self.id_field);
        let page = self.list(self.request(&filter, &order, limit)).await?;
        let next = if self.query_done(&page, limit) {
            None
        } else {
            Some(self.keyset_after(&page, false)?)
        };
        Ok(Page {
            records: page.records,
            next,
            bad_records: page.bad_records,
            last_bad: page.last_bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colons_and_commas_are_escaped() {
        assert_eq!(escape("2024-01-01 00:00:00"), "2024-01-01 00\\:00\\:00");
        assert_eq!(escape("a,b\\c"), "a\\,b\\\\c");
    }
}
