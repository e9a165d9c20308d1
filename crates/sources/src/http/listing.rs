//! How the generic `http` source fetches one page: requests rendered from
//! templates, one of the pagination styles, records selected from the body,
//! and parent/child iteration.

use super::client::{HttpClient, HttpRequest, HttpResponse, Method};
use super::config::{HttpMethod, KeysetConfig, StreamPagination};
use super::engine::{FetchError, Listing, Page, PageQuery};
use super::pagination::{PageState, Paginator};
use super::raw_page::{PageRecord, RawSelection};
use super::records::{lookup, RecordSelector};
use super::template::{render_json, Template};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::Mutex;
use tributary_core::ConnectorError;

/// A request whose parts are templates, rendered per page.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub method: HttpMethod,
    /// `base_url` + `path`, as one template.
    pub url: Template,
    pub params: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Value>,
}

impl RequestTemplate {
    fn render(&self, ctx: &Value) -> Result<HttpRequest, FetchError> {
        let url = self.url.render(ctx).map_err(template_error)?;
        let mut url = url::Url::parse(&url).map_err(|e| {
            FetchError::Other(ConnectorError::fatal(format!(
                "the request URL `{url}` is not valid: {e}"
            )))
        })?;
        if !self.params.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &self.params {
                pairs.append_pair(name, &value.render(ctx).map_err(template_error)?);
            }
        }
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.render(ctx).map_err(template_error)?)))
            .collect::<Result<Vec<_>, FetchError>>()?;
        let body = match &self.body {
            Some(b) => Some(render_json(b, ctx).map_err(template_error)?),
            None => None,
        };
        Ok(HttpRequest {
            method: match self.method {
                HttpMethod::Get => Method::Get,
                HttpMethod::Post => Method::Post,
            },
            url,
            headers,
            body,
            form: None,
        })
    }
}

fn template_error(e: super::template::TemplateError) -> FetchError {
    FetchError::Other(ConnectorError::fatal(e.to_string()))
}

/// One stream's listing as the config describes it.
pub struct GenericListing {
    pub client: HttpClient,
    pub request: RequestTemplate,
    pub selector: RecordSelector,
    /// The records path, to count a page's records before the filter.
    pub records_path: Option<String>,
    pub pagination: StreamPagination,
    pub paginator: Option<Paginator>,
    pub cursor_field: Option<String>,
    pub key_fields: Vec<String>,
    /// `{{ vars.* }}`.
    pub vars: Value,
    /// Set when records can stay JSON text (the fast path).
    pub raw: Option<RawSelection>,
}

impl GenericListing {
    fn context(&self, query: &PageQuery<'_>, parent: Option<&Value>) -> Value {
        let mut ctx = Map::new();
        ctx.insert("vars".into(), self.vars.clone());
        if let Some(w) = &query.window {
            ctx.insert(
                "window".into(),
                json!({"start": w.start_text, "end": w.end_text}),
            );
        }
        if let Some(id) = query.last_id {
            ctx.insert("last_id".into(), id.clone());
        } else {
            ctx.insert("last_id".into(), Value::String(String::new()));
        }
        if let Some(size) = query.page_size {
            ctx.insert("page_size".into(), size.into());
        }
        if let StreamPagination::Keyset(_) = self.pagination {
            // The first page starts at the window start with no id: records
            // at exactly the start are included.
            let keyset = match query.position {
                Some(p) => p.clone(),
                None => json!({
                    "value": query.window.as_ref().map(|w| w.start_text.clone()).unwrap_or_default(),
                    "id": "",
                }),
            };
            ctx.insert("keyset".into(), keyset);
        }
        if let Some(p) = parent {
            ctx.insert("parent".into(), p.clone());
        }
        Value::Object(ctx)
    }

    /// Fetches one page; `parent` is the current parent record of a child stream.
    pub async fn fetch_with(
        &self,
        query: &PageQuery<'_>,
        parent: Option<&Value>,
    ) -> Result<Page, FetchError> {
        let ctx = self.context(query, parent);
        let mut request = self.request.render(&ctx)?;
        let page_size = match &self.pagination {
            StreamPagination::Keyset(k) => Some(query.page_size.unwrap_or(k.page_size)),
            _ => query.page_size,
        };
        let state = self.page_state(query.position)?;
        if let Some(p) = &self.paginator {
            p.apply(&state, page_size, &mut request);
        }
        if let StreamPagination::Keyset(KeysetConfig { size_param, .. }) = &self.pagination {
            if let Some(size) = page_size {
                request
                    .url
                    .query_pairs_mut()
                    .append_pair(size_param, &size.to_string());
            }
        }
        let response = self.client.execute(&request).await?;
        let read = self.read_page(&response, &state, page_size);
        let (records, next, raw_count, bad_records, last_bad) = match read {
            Ok(read) => read,
            Err(FetchError::BadPage(mut bad)) => {
                // Offset and page number know the next position without
                // this page; a cursor or keyset cannot go past it.
                bad.next = self.predict_next(query.position, page_size);
                return Err(FetchError::BadPage(bad));
            }
            Err(e) => return Err(e),
        };
        let next = match (&self.pagination, next) {
            (StreamPagination::Keyset(k), _) => keyset_next(
                last_bad.as_ref().or(records.last()),
                raw_count,
                page_size.filter(|_| k.stop_on_short_page),
                self.cursor_field.as_deref(),
                &self.key_fields,
            )?,
            (_, next) => next,
        };
        Ok(Page {
            records,
            next,
            bad_records,
            last_bad,
        })
    }

    /// The records of a response and the position after them.
    #[allow(clippy::type_complexity)]
    fn read_page(
        &self,
        response: &HttpResponse,
        state: &PageState,
        page_size: Option<u64>,
    ) -> Result<
        (
            Vec<PageRecord>,
            Option<Value>,
            usize,
            Vec<tributary_core::BadRecord>,
            Option<PageRecord>,
        ),
        FetchError,
    > {
        let bad_page = |message: String| {
            FetchError::bad_page(
                format!(
                    "unexpected response from {}: {message}",
                    super::client::display_url(&response.url)
                ),
                response,
            )
        };
        match &self.raw {
            Some(raw) => {
                let page = raw.read_response(response)?;
                let next =
                    self.next_position(state, page_size, response, &page.body, page.raw_count)?;
                Ok((
                    page.records,
                    next,
                    page.raw_count,
                    page.bad_records,
                    page.last_bad,
                ))
            }
            None => {
                let body = response
                    .json()
                    .map_err(|e| FetchError::bad_page(e.message, response))?;
                let raw_count = count_records(&body, self.records_path.as_deref())
                    .map_err(|found| bad_page(found.to_string()))?;
                let next = self.next_position(state, page_size, response, &body, raw_count)?;
                let records = self.selector.select(body).map_err(bad_page)?;
                Ok((
                    records.into_iter().map(PageRecord::Parsed).collect(),
                    next,
                    raw_count,
                    Vec::new(),
                    None,
                ))
            }
        }
    }

    /// The pagination state at a checkpointed position (`None`: the first page).
    fn page_state(&self, position: Option<&Value>) -> Result<PageState, FetchError> {
        Ok(match (&self.paginator, position) {
            (Some(_), Some(pos)) => serde_json::from_value::<PageState>(pos.clone()).map_err(|e| {
                FetchError::Other(ConnectorError::fatal(format!(
                    "the checkpoint's page position is not valid for this stream's pagination ({e}); reset the stream"
                )))
            })?,
            (Some(p), None) => p.first(),
            (None, _) => PageState::default(),
        })
    }

    fn next_position(
        &self,
        state: &PageState,
        page_size: Option<u64>,
        response: &HttpResponse,
        body: &Value,
        raw_count: usize,
    ) -> Result<Option<Value>, FetchError> {
        let Some(p) = &self.paginator else {
            return Ok(None);
        };
        let next = p
            .advance(state, page_size, response, body, raw_count)
            .map_err(|e| FetchError::Other(ConnectorError::fatal(e.to_string())))?;
        Ok(next.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)))
    }
}

/// Records on a page before filtering: the end of a listing must not be
/// decided by a filter. `null` or nothing where the records should be is
/// no page of a listing (a proxy's answer, a half-deployed API), and must
/// not end it: the error says what was found.
fn count_records(body: &Value, path: Option<&str>) -> Result<usize, String> {
    let found = match path {
        None => Some(body),
        Some(p) => lookup(body, p.trim_end_matches("[*]")),
    };
    let at = path.map_or("the response body".to_string(), |p| format!("`{p}`"));
    match found {
        Some(Value::Array(a)) => Ok(a.len()),
        Some(Value::Null) => Err(format!("expected records at {at}, found null")),
        None => Err(format!(
            "expected records at {at}, found nothing (the key is missing)"
        )),
        Some(_) => Ok(1),
    }
}

/// The keyset position after a page: after its last record's (cursor,
/// key). Only an empty page ends the listing, unless `trusted_size` (the
/// page size when short pages are trusted) says a shorter page does.
fn keyset_next(
    last: Option<&PageRecord>,
    raw_count: usize,
    trusted_size: Option<u64>,
    cursor_field: Option<&str>,
    key_fields: &[String],
) -> Result<Option<Value>, FetchError> {
    if raw_count == 0 || trusted_size.is_some_and(|s| (raw_count as u64) < s) {
        return Ok(None);
    }
    let Some(last) = last else {
        return Ok(None);
    };
    let value = cursor_field.and_then(|f| last.get(f)).cloned();
    let id = key_fields.first().and_then(|f| last.get(f)).cloned();
    match (value, id) {
        (Some(value), Some(id)) => Ok(Some(json!({"value": value, "id": id}))),
        _ => Err(FetchError::Other(ConnectorError::fatal(
            "keyset pagination needs the cursor field and the first primary_key field in every record; the last record of a page lacks one",
        ))),
    }
}

#[async_trait::async_trait]
impl Listing for GenericListing {
    async fn fetch(&self, query: &PageQuery<'_>) -> Result<Page, FetchError> {
        self.fetch_with(query, None).await
    }

    fn predict_next(&self, position: Option<&Value>, page_size: Option<u64>) -> Option<Value> {
        let paginator = self.paginator.as_ref()?;
        let next = paginator.predict(&self.page_state(position).ok()?, page_size)?;
        serde_json::to_value(next).ok()
    }
}

/// A child stream: for every record of the parent's listing, the child's
/// whole listing. Position: the parent page, the index in it, and the
/// child's position, so a crash resumes at the child page it reached.
pub struct ChildListing {
    pub parent: Arc<GenericListing>,
    pub child: Arc<GenericListing>,
    /// The parent page last fetched, by window and position, so each child
    /// page does not refetch it.
    cache: Mutex<Option<(Value, Page)>>,
}

impl ChildListing {
    pub fn new(parent: Arc<GenericListing>, child: Arc<GenericListing>) -> Self {
        ChildListing {
            parent,
            child,
            cache: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Listing for ChildListing {
    async fn fetch(&self, query: &PageQuery<'_>) -> Result<Page, FetchError> {
        let empty = json!({});
        let position = query.position.unwrap_or(&empty);
        let mut parent_pos = position.get("parent").cloned().unwrap_or(Value::Null);
        let mut index = position.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut child_pos = position.get("child").cloned().filter(|v| !v.is_null());
        let window = query
            .window
            .as_ref()
            .map(|w| json!([w.start_text, w.end_text]))
            .unwrap_or(Value::Null);
        let mut cache = self.cache.lock().await;
        loop {
            // The parent page is the same only for the same window and position.
            let key = json!([window, parent_pos]);
            let cached = matches!(&*cache, Some((k, _)) if *k == key);
            if !cached {
                let q = PageQuery {
                    position: (!parent_pos.is_null()).then_some(&parent_pos),
                    ..query.clone()
                };
                let page = match self.parent.fetch(&q).await {
                    Ok(page) => page,
                    Err(FetchError::BadPage(mut bad)) => {
                        // Past a bad parent page, at the next one's first parent.
                        bad.next = bad
                            .next
                            .map(|p| json!({"parent": p, "index": 0, "child": null}));
                        return Err(FetchError::BadPage(bad));
                    }
                    Err(e) => return Err(e),
                };
                *cache = Some((key, page));
            }
            let Some((_, page)) = &*cache else {
                return Ok(Page::default());
            };
            let Some(parent) = page.records.get(index) else {
                match &page.next {
                    None => return Ok(Page::default()),
                    Some(next) => {
                        parent_pos = next.clone();
                        index = 0;
                        child_pos = None;
                        continue;
                    }
                }
            };
            let q = PageQuery {
                position: child_pos.as_ref(),
                ..query.clone()
            };
            let child_page = match self.child.fetch_with(&q, Some(&parent.to_value())).await {
                Ok(page) => page,
                Err(FetchError::BadPage(mut bad)) => {
                    // Past a bad child page: the child's next page, or the
                    // next parent's children.
                    bad.next = Some(match bad.next {
                        Some(c) => json!({"parent": parent_pos, "index": index, "child": c}),
                        None => json!({"parent": parent_pos, "index": index + 1, "child": null}),
                    });
                    return Err(FetchError::BadPage(bad));
                }
                Err(e) => return Err(e),
            };
            let next = match child_page.next {
                Some(c) => json!({"parent": parent_pos, "index": index, "child": c}),
                None => json!({"parent": parent_pos, "index": index + 1, "child": null}),
            };
            return Ok(Page {
                records: child_page.records,
                next: Some(next),
                bad_records: child_page.bad_records,
                last_bad: None,
            });
        }
    }
}
