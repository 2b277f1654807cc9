//! The request log, live events and metrics on the admin API.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde_json::json;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream, WatchStream};
use tokio_stream::StreamExt;

use super::{bad_filter, Admin};
use crate::body::{self, Body};
use crate::lean::{json_response, ErrorEnvelope};
use crate::log::{ExchangeRecord, Filter};

/// How the answer is shaped, beside what is filtered.
#[derive(Default)]
struct View {
    /// Rows only (`view=summary`).
    summary: bool,
    /// One exchange (`id`, for HAR).
    id: Option<String>,
}

const FILTERS: &str =
    "status, status_class, lean_status, entity_id, path, method, fault, route, q, limit, view, id";

/// The filters of `/api/requests` and `/api/requests.har`, or what is wrong
/// with them.
fn filter_of(query: Option<&str>) -> Result<(Filter, View), String> {
    let mut filter = Filter::default();
    let mut view = View::default();
    let number = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{k}: `{v}` is not a number"))
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let text = || Some(v.to_string()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "status" => match v.parse() {
                Ok(s) => filter.status = Some(s),
                Err(_) => return Err(format!("status: `{v}` is not an HTTP status")),
            },
            "status_class" => match v.trim_end_matches("xx").parse::<u16>() {
                Ok(c @ 1..=5) => filter.status_class = Some(c),
                _ => return Err(format!("status_class: `{v}` is not one of 1xx … 5xx")),
            },
            "lean_status" => filter.lean_status = text(),
            "entity_id" => filter.entity_id = text(),
            "path" => filter.path_prefix = text(),
            "method" => filter.method = text(),
            "fault" => filter.fault = text(),
            "route" => filter.route = text(),
            "q" => filter.text = text(),
            "limit" => filter.limit = Some(number("limit", &v)? as usize),
            "view" if v == "summary" => view.summary = true,
            "view" => return Err(format!("view: `{v}` is not `summary`")),
            "id" => view.id = text(),
            other => return Err(format!("unknown filter `{other}`; use {FILTERS}")),
        }
    }
    Ok((filter, view))
}

/// How often an idle event stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Admin {
    pub(super) fn requests(&self, query: Option<&str>) -> Response<Body> {
        let (filter, view) = match filter_of(query) {
            Ok(f) => f,
            Err(why) => return bad_filter(&why),
        };
        let ring = self.inner.telemetry.ring();
        let records = ring.list(&filter);
        let (entries, bytes) = ring.usage();
        if view.summary {
            // The dashboard's list: what a row shows, for the whole ring.
            let list: Vec<_> = records.iter().map(|r| r.summary()).collect();
            return json_response(
                StatusCode::OK,
                &json!({"kept": entries, "kept_bytes": bytes, "requests": list}),
            );
        }
        let list: Vec<ExchangeRecord> = records
            .iter()
            .map(|r| {
                let mut r = (**r).clone();
                // The list is a summary; `GET /api/requests/{id}` has the bodies.
                for c in [&mut r.request_body, &mut r.response_body]
                    .into_iter()
                    .flatten()
                {
                    c.hide("see GET /api/requests/{id}");
                }
                r
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"kept": entries, "kept_bytes": bytes, "requests": list}),
        )
    }

    pub(super) fn request(&self, id: &str) -> Response<Body> {
        match self.inner.telemetry.ring().get(id) {
            Some(record) => json_response(StatusCode::OK, &*record),
            None => ErrorEnvelope::new("UNKNOWN_REQUEST", format!("no exchange {id} is kept"))
                .into_response(StatusCode::NOT_FOUND),
        }
    }

    /// `GET /api/requests.har`: every kept exchange, those the filters of
    /// `/api/requests` pass, or one (`id`).
    pub(super) fn har(&self, query: Option<&str>) -> Response<Body> {
        let (filter, view) = match filter_of(query) {
            Ok(f) => f,
            Err(why) => return bad_filter(&why),
        };
        let ring = self.inner.telemetry.ring();
        let records = match &view.id {
            Some(id) => ring.get(id).into_iter().collect(),
            None => ring.list(&filter),
        };
        let mut r = json_response(StatusCode::OK, &crate::log::har_document(&records));
        r.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"leanproxy.har\""),
        );
        r
    }

    /// The metrics, with `pending` reconnects.
    pub(super) fn metrics(&self, pending: usize) -> Response<Body> {
        let metrics = self.inner.telemetry.metrics();
        metrics.set_reconnects_pending(pending);
        let mut r = Response::new(body::full(metrics.encode()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }

    /// `GET /api/events`: server-sent events until the client leaves or the
    /// process shuts down.
    pub(super) fn events(&self) -> Response<Body> {
        let events = BroadcastStream::new(self.inner.telemetry.events().subscribe()).map(|item| {
            Some(match item {
                Ok(event) => format!(
                    "event: {}\ndata: {}\n\n",
                    event.name(),
                    serde_json::to_string(&*event).unwrap_or_default()
                ),
                Err(BroadcastStreamRecvError::Lagged(n)) => format!(": missed {n} events\n\n"),
            })
        });
        let keep_alive = IntervalStream::new(tokio::time::interval_at(
            tokio::time::Instant::now() + KEEP_ALIVE,
            KEEP_ALIVE,
        ))
        .map(|_| Some(": keep-alive\n\n".to_string()));
        let stopping = WatchStream::new(self.inner.shutdown.clone())
            .filter(|stop| *stop)
            .map(|_| None);
        let stream = tokio_stream::once(Some(": connected\n\n".to_string()))
            .chain(events.merge(keep_alive).merge(stopping))
            .take_while(Option::is_some)
            .map(|text| Ok::<_, Infallible>(Frame::data(Bytes::from(text.unwrap_or_default()))));
        let mut r = Response::new(body::boxed(StreamBody::new(stream)));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }
}
