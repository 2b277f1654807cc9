//! [`ReconnectLayer`]: notices RECONNECT_REQUIRED answers without delaying them.
//!
//! The request's entity comes from the `entity_id` query parameter (v2) or, for
//! request bodies that are JSON whatever their `content-type` says (curl's `-d`
//! sends `application/x-www-form-urlencoded`), from a bounded copy taken as the
//! body streams to the upstream (v1); a body whose first byte is not `{` is not
//! copied. An answer that names an `entity_id` fills in an entity the request
//! did not give. The answer streams back untouched; a copy of at most
//! `inspect_limit` bytes of a JSON answer is kept and scanned at end of body.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::inspect::{
    entity_of_answer, entity_of_body, entity_of_query, is_ok_answer, leading_status, scan, Lead,
    Scan,
};
use super::registry::{ReconnectRegistry, ResolvedBy, Sighting, SightingOutcome, Source};
use crate::body::{self, Body};
use crate::exchange::{ExchangeNotes, Synthetic, X_LEANPROXY_RECONNECT_ID};

/// How much of a JSON request body is copied to find its `entity_id`.
const REQUEST_TEE_LIMIT: usize = 64 * 1024;

/// Default `inspect_limit`: 1 MiB.
pub const DEFAULT_INSPECT_LIMIT: usize = 1 << 20;

/// Watches answers for RECONNECT_REQUIRED and keeps the registry current.
#[derive(Clone, Debug)]
pub struct ReconnectLayer {
    shared: Arc<LayerSettings>,
}

#[derive(Debug)]
struct LayerSettings {
    registry: ReconnectRegistry,
    inspect_limit: usize,
    tell_app: bool,
}

impl ReconnectLayer {
    /// A layer recording into `registry`, inspecting JSON answers up to
    /// `inspect_limit` bytes.
    pub fn new(registry: ReconnectRegistry, inspect_limit: usize) -> Self {
        Self {
            shared: Arc::new(LayerSettings {
                registry,
                inspect_limit,
                tell_app: false,
            }),
        }
    }

    /// A layer and the handle on its (in-memory) registry.
    pub fn pair(inspect_limit: usize) -> (Self, ReconnectRegistry) {
        let registry = ReconnectRegistry::in_memory(1000);
        (Self::new(registry.clone(), inspect_limit), registry)
    }

    /// Adds `x-leanproxy-reconnect-id` to answers that carry a reconnect. This
    /// holds such answers (JSON with a known length within the inspect limit)
    /// until their body is complete, so it is off by default.
    pub fn with_reconnect_header(self, on: bool) -> Self {
        Self {
            shared: Arc::new(LayerSettings {
                registry: self.shared.registry.clone(),
                inspect_limit: self.shared.inspect_limit,
                tell_app: on,
            }),
        }
    }

    /// The registry this layer records into.
    pub fn registry(&self) -> &ReconnectRegistry {
        &self.shared.registry
    }
}

impl<S> Layer<S> for ReconnectLayer {
    type Service = Reconnect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Reconnect {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`ReconnectLayer`].
#[derive(Clone, Debug)]
pub struct Reconnect<S> {
    inner: S,
    shared: Arc<LayerSettings>,
}

use crate::body::is_json;

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl<S> Service<Request<Body>> for Reconnect<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let entity = entity_of_query(req.uri().query());
        // Whatever the content type says: Lean's v1 calls are JSON, and an app
        // that forgot the header still gets a JSON answer (the sniff in `Tee`
        // stops at a first byte that cannot open a JSON object).
        let teed =
            entity.is_none() && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        let path = req.uri().path().to_owned();
        let notes = req.extensions().get::<ExchangeNotes>().cloned();
        if let (Some(n), Some(e)) = (&notes, &entity) {
            n.set_entity(e);
        }
        let (req, tee) = if teed {
            let slot = Arc::new(Mutex::new(Vec::new()));
            let req = req.map(|b| {
                body::watched(
                    b,
                    Tee {
                        copy: slot.clone(),
                        not_json: false,
                    },
                )
            });
            (req, Some(slot))
        } else {
            (req, None)
        };
        ResponseFuture {
            state: FutureState::Waiting {
                inner: self.inner.call(req),
                exchange: Some(Exchange {
                    shared: self.shared.clone(),
                    path,
                    entity,
                    tee,
                    source: Source::Upstream,
                    notes,
                }),
            },
        }
    }
}

/// What the layer knows of one exchange.
#[derive(Debug)]
struct Exchange {
    shared: Arc<LayerSettings>,
    path: String,
    entity: Option<String>,
    tee: Option<Arc<Mutex<Vec<u8>>>>,
    source: Source,
    notes: Option<ExchangeNotes>,
}

enum Plan {
    Skip,
    /// With the answer's `content-length`, when it has one.
    Stream(Option<u64>),
    Collect,
}

impl Exchange {
    fn plan(&mut self, response: &Response<Body>) -> Plan {
        let ext = response.extensions();
        if ext.get::<crate::proxy::Failure>().is_some()
            || ext.get::<crate::server::ResetConnection>().is_some()
            || matches!(
                response.status(),
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            return Plan::Skip;
        }
        // Only answers a fault made up count as synthetic; a real answer a fault
        // merely delayed or throttled is still the upstream's.
        if ext.get::<Synthetic>().is_some() {
            self.source = Source::Fault;
        }
        let limit = self.shared.inspect_limit as u64;
        let length = content_length(response.headers());
        if !is_json(response.headers()) || length.is_some_and(|n| n > limit) {
            self.shared.registry.count_inspection(false);
            return Plan::Skip;
        }
        if self.shared.tell_app && length.is_some() {
            Plan::Collect
        } else {
            Plan::Stream(length)
        }
    }

    fn entity(&self) -> Option<String> {
        self.entity.clone().or_else(|| {
            let captured = self.tee.as_ref()?.lock().ok()?;
            entity_of_body(&captured)
        })
    }

    /// Scans a complete answer; returns the reconnect id it carried, if any.
    fn finish(&self, body: &[u8]) -> Option<String> {
        self.conclude(Seen::Body(body))
    }

    fn conclude(&self, seen: Seen<'_>) -> Option<String> {
        let registry = &self.shared.registry;
        registry.count_inspection(true);
        let entity = self.entity();
        if let Some(e) = &entity {
            registry.observe_call(e).detach();
            if let Some(n) = &self.notes {
                n.set_entity(e);
            }
        }
        let scanned = match seen {
            Seen::Body(body) => scan(body),
            Seen::Status { .. } => Scan::Clear,
        };
        match scanned {
            Scan::Reconnect(found) => {
                let entity = entity.or_else(|| match seen {
                    Seen::Body(body) => entity_of_answer(body),
                    Seen::Status { .. } => None,
                });
                if let (Some(n), Some(e)) = (&self.notes, &entity) {
                    n.set_entity(e);
                }
                let reconnect_id = found.reconnect_id.clone();
                if let Some(n) = &self.notes {
                    n.set_reconnect_id(&reconnect_id);
                }
                let (path, source) = (self.path.clone(), self.source);
                let told = (entity.clone(), reconnect_id.clone());
                registry
                    .observe_reconnect(Sighting {
                        entity_id: entity,
                        reconnect_id: found.reconnect_id,
                        results_id: found.results_id,
                        api: found.api,
                        path: self.path.clone(),
                        source: self.source,
                    })
                    .then(move |outcome| {
                        let (entity, reconnect_id) = told;
                        let entity_id = entity.as_deref().unwrap_or("unknown");
                        match outcome {
                            SightingOutcome::New => {
                                tracing::warn!(target: "leanproxy::reconnect", entity_id, %reconnect_id, %path, ?source, "RECONNECT_REQUIRED: the user must reconnect")
                            }
                            SightingOutcome::Replaced => {
                                tracing::warn!(target: "leanproxy::reconnect", entity_id, %reconnect_id, "RECONNECT_REQUIRED with a new reconnect id")
                            }
                            SightingOutcome::Repeat => {
                                tracing::debug!(target: "leanproxy::reconnect", entity_id, %reconnect_id, "RECONNECT_REQUIRED again")
                            }
                            SightingOutcome::Stale => {
                                tracing::debug!(target: "leanproxy::reconnect", entity_id, %reconnect_id, "RECONNECT_REQUIRED answered before its reconnect was resolved; not opened again")
                            }
                        }
                    });
                Some(reconnect_id)
            }
            Scan::Malformed(e) => {
                tracing::debug!(target: "leanproxy::reconnect", path = %self.path, error = %e, "answer mentions RECONNECT_REQUIRED but is not JSON; passed through");
                None
            }
            Scan::NoId => {
                tracing::debug!(target: "leanproxy::reconnect", path = %self.path, "RECONNECT_REQUIRED without a reconnect id");
                None
            }
            Scan::Clear => {
                let data_call = self.path.contains("/data/") || self.path.starts_with("/v1/");
                // Nothing to resolve: no `?`, this arm's answer is `None`
                // either way.
                let e = entity.filter(|_| data_call)?;
                let ok = || match seen {
                    Seen::Body(body) => is_ok_answer(body),
                    Seen::Status { ok } => ok,
                };
                // Most answers name an entity with nothing pending: that is
                // settled here, and the body is read for `OK` only when one is.
                match registry.is_pending(&e).now() {
                    Ok(false) => {}
                    Ok(true) => {
                        if ok() {
                            resolve_on_ok(registry, e);
                        }
                    }
                    Err(later) => {
                        let (ok, registry) = (ok(), registry.clone());
                        later.then(move |pending| {
                            if pending && ok {
                                resolve_on_ok(&registry, e);
                            }
                        });
                    }
                }
                None
            }
        }
    }

    fn stream(self, response: Response<Body>, length: Option<u64>) -> Response<Body> {
        let limit = self.shared.inspect_limit;
        let expected = length.map_or(0, |n| n.min(limit as u64) as usize);
        response.map(|inner| {
            if inner.is_end_stream() {
                self.finish(&[]);
                return inner;
            }
            body::watched(
                inner,
                Inspect {
                    copy: Vec::new(),
                    expected,
                    limit,
                    lead: LeadState::Reading,
                    exchange: Some(self),
                },
            )
        })
    }

    async fn collect(self, response: Response<Body>) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let detail = e.to_string();
                return crate::proxy::failure_response(
                    crate::proxy::Failure::Exchange,
                    &detail,
                    "upstream",
                );
            }
        };
        if let Some(id) = self.finish(&bytes) {
            if let Ok(value) = HeaderValue::from_str(&id) {
                parts.headers.insert(&X_LEANPROXY_RECONNECT_ID, value);
            }
        }
        Response::from_parts(parts, body::full(bytes))
    }
}

type BoxResponse = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

pin_project! {
    /// Response future of [`Reconnect`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: FutureState<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum FutureState<F> {
        // Waiting for the inner service.
        Waiting {
            #[pin]
            inner: F,
            exchange: Option<Exchange>,
        },
        // Holding a small answer to add `x-leanproxy-reconnect-id`.
        Collecting {
            collect: BoxResponse,
        },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Waiting { inner, exchange } => {
                    let response = match inner.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(r)) => r,
                    };
                    let Some(mut exchange) = exchange.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    match exchange.plan(&response) {
                        Plan::Skip => return Poll::Ready(Ok(response)),
                        Plan::Stream(length) => {
                            return Poll::Ready(Ok(exchange.stream(response, length)))
                        }
                        Plan::Collect => {
                            let collect = Box::pin(exchange.collect(response));
                            state.set(FutureState::Collecting { collect });
                        }
                    }
                }
                StateProj::Collecting { collect } => {
                    return collect.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// What an answer showed, for [`Exchange::conclude`].
#[derive(Clone, Copy)]
enum Seen<'a> {
    /// The whole answer.
    Body(&'a [u8]),
    /// Only its leading `status`, which is not RECONNECT_REQUIRED.
    Status { ok: bool },
}

/// How far [`Inspect`] got with the answer's leading `status`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeadState {
    /// Still reading the first bytes.
    Reading,
    /// Settled: not a reconnect; nothing more is copied.
    Settled { ok: bool },
    /// Another shape or RECONNECT_REQUIRED: the whole answer is scanned.
    Whole,
}

/// Watches an answer as each frame is forwarded. An answer whose first bytes
/// show a `status` other than RECONNECT_REQUIRED is settled there (no copy, no
/// scan); any other is copied, within the limit, for the scan at its end.
struct Inspect {
    copy: Vec<u8>,
    // The answer's length (capped at the limit), reserved when copying starts.
    expected: usize,
    limit: usize,
    lead: LeadState,
    /// `None` once the answer proved too large to inspect.
    exchange: Option<Exchange>,
}

impl body::Watch for Inspect {
    fn data(&mut self, data: &Bytes) {
        if self.exchange.is_none() || matches!(self.lead, LeadState::Settled { .. }) {
            return;
        }
        if self.lead == LeadState::Reading && self.copy.is_empty() {
            // Most answers settle on their first frame, before any copy.
            self.lead = leading_status(data).into();
            if let LeadState::Settled { .. } = self.lead {
                return;
            }
        }
        if self.copy.len() + data.len() > self.limit {
            // Too large to inspect: stop copying, count it, pass it on.
            if let Some(exchange) = self.exchange.take() {
                exchange.shared.registry.count_inspection(false);
            }
            self.copy = Vec::new();
            return;
        }
        if self.copy.is_empty() && self.lead == LeadState::Whole {
            // Copying for a full scan: reserve the whole answer once.
            self.copy.reserve_exact(self.expected.max(data.len()));
        }
        self.copy.extend_from_slice(data);
        if self.lead == LeadState::Reading {
            self.lead = leading_status(&self.copy).into();
            if let LeadState::Settled { .. } = self.lead {
                self.copy = Vec::new();
            }
        }
    }

    /// A failed or abandoned answer concludes nothing.
    fn end(self, complete: bool) {
        let Some(exchange) = self.exchange.filter(|_| complete) else {
            return;
        };
        match self.lead {
            LeadState::Settled { ok } => exchange.conclude(Seen::Status { ok }),
            _ => exchange.finish(&self.copy),
        };
    }
}

impl From<Lead<'_>> for LeadState {
    fn from(lead: Lead<'_>) -> Self {
        match lead {
            Lead::Status(b"RECONNECT_REQUIRED") | Lead::Other => LeadState::Whole,
            Lead::Status(status) => LeadState::Settled {
                ok: status == b"OK",
            },
            Lead::NeedMore => LeadState::Reading,
        }
    }
}

/// Copies the first bytes of a request body on its way to the upstream, when
/// they open a JSON object.
struct Tee {
    copy: Arc<Mutex<Vec<u8>>>,
    /// Set at a first byte that cannot open a JSON object.
    not_json: bool,
}

impl body::Watch for Tee {
    fn data(&mut self, data: &Bytes) {
        if self.not_json {
            return;
        }
        let Ok(mut copy) = self.copy.lock() else {
            return;
        };
        if copy.is_empty() {
            let data = data.trim_ascii_start();
            match data.first() {
                None => return,
                Some(b'{') => {}
                Some(_) => {
                    self.not_json = true;
                    return;
                }
            }
            let room = REQUEST_TEE_LIMIT.min(data.len());
            copy.extend_from_slice(&data[..room]);
            return;
        }
        let room = REQUEST_TEE_LIMIT.saturating_sub(copy.len());
        copy.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Resolves `entity`'s pending reconnect after an OK answer for it.
fn resolve_on_ok(registry: &ReconnectRegistry, entity: String) {
    registry
        .resolve_entity(&entity, ResolvedBy::OkResponse)
        .then(move |resolved| {
            if let Some(r) = resolved {
                tracing::info!(target: "leanproxy::reconnect", entity_id = %entity, reconnect_id = %r.reconnect_id, hits = r.hits, "reconnect resolved: an OK answer");
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AtOnce;
    use crate::body::BoxError;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;
    use tower::{service_fn, Layer, ServiceExt};

    /// Sends `answer` for a v2 data call on entity `e-1`, cut into frames of
    /// `frame` bytes, and reads it to its end.
    async fn exchange(registry: &ReconnectRegistry, answer: &'static [u8], frame: usize) {
        exchange_limited(registry, answer, frame, 1 << 20).await;
    }

    async fn exchange_limited(
        registry: &ReconnectRegistry,
        answer: &'static [u8],
        frame: usize,
        limit: usize,
    ) {
        let upstream = service_fn(move |_req: Request<Body>| async move {
            let frames = answer
                .chunks(frame)
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c))));
            let body = body::boxed(StreamBody::new(tokio_stream::iter(frames)));
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(response)
        });
        let service = ReconnectLayer::new(registry.clone(), limit).layer(upstream);
        let request = Request::get("http://lean/data/v2/accounts?entity_id=e-1")
            .body(body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let seen = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(seen, answer, "the answer passes unchanged");
    }

    const RECONNECT: &[u8] = br#"{"status":"RECONNECT_REQUIRED","data":null,"results_id":"r-9","message":"m","meta":null,"timestamp":"t","status_detail":null}"#;
    const OK: &[u8] = br#"{"status":"OK","data":{"accounts":[]},"results_id":"x","message":"RECONNECT_REQUIRED is not this answer's status"}"#;

    #[tokio::test]
    async fn answers_cut_into_tiny_frames_are_read_as_whole_answers() {
        for frame in [1, 3, 7, 11, 4096] {
            let registry = ReconnectRegistry::in_memory(10);
            exchange(&registry, RECONNECT, frame).await;
            assert!(
                registry.is_pending("e-1").at_once(),
                "frames of {frame}: reconnect seen"
            );
            // The leading status settles this answer without a full scan, and
            // that OK still resolves the pending entity.
            exchange(&registry, OK, frame).await;
            assert!(
                !registry.is_pending("e-1").at_once(),
                "frames of {frame}: resolved"
            );
        }
    }

    #[tokio::test]
    async fn a_streamed_answer_past_the_limit_counts_by_what_its_first_bytes_show() {
        let registry = ReconnectRegistry::in_memory(10);
        // The limit is below either answer's size; neither has a Content-Length.
        exchange_limited(&registry, RECONNECT, 4, 64).await;
        let stats = registry.stats();
        assert_eq!(
            (stats.inspected, stats.uninspected),
            (0, 1),
            "copy passed the limit"
        );
        assert!(
            !registry.is_pending("e-1").at_once(),
            "too large to read its ids"
        );
        exchange_limited(&registry, OK, 4, 64).await;
        let stats = registry.stats();
        assert_eq!(
            (stats.inspected, stats.uninspected),
            (1, 1),
            "settled on its leading status, so never copied up to the limit"
        );
    }

    #[tokio::test]
    async fn a_leading_non_ok_status_settles_without_resolving() {
        let registry = ReconnectRegistry::in_memory(10);
        exchange(&registry, RECONNECT, 5).await;
        exchange(&registry, br#"{"status":"FAILED","data":null}"#, 5).await;
        assert!(registry.is_pending("e-1").at_once());
        // Another first member: the whole answer is scanned.
        exchange(&registry, br#"{"data":null,"status":"OK"}"#, 5).await;
        assert!(!registry.is_pending("e-1").at_once());
    }
}
