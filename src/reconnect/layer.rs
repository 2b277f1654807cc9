//! [`ReconnectLayer`]: notices RECONNECT_REQUIRED answers without delaying them.
//!
//! The request's entity comes from the `entity_id` query parameter (v2) or, for
//! JSON request bodies, from a bounded copy taken as the body streams to the
//! upstream (v1). The answer streams back untouched; a copy of at most
//! `inspect_limit` bytes of a JSON answer is kept and scanned at end of body.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::inspect::{entity_of_body, entity_of_query, is_ok_answer, scan, Scan};
use super::registry::{Outcome, ReconnectRegistry, ResolvedBy, Sighting, Source};
use super::X_LEANPROXY_RECONNECT_ID;
use crate::body::{self, Body, BoxError};
use crate::log::ExchangeNotes;

/// How much of a JSON request body is copied to find its `entity_id`.
const REQUEST_TEE_LIMIT: usize = 64 * 1024;

/// Default `inspect_limit`: 1 MiB.
pub const DEFAULT_INSPECT_LIMIT: usize = 1 << 20;

/// Watches answers for RECONNECT_REQUIRED and keeps the registry current.
#[derive(Clone, Debug)]
pub struct ReconnectLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registry: ReconnectRegistry,
    inspect_limit: usize,
    tell_app: bool,
}

impl ReconnectLayer {
    /// A layer recording into `registry`, inspecting JSON answers up to
    /// `inspect_limit` bytes.
    pub fn new(registry: ReconnectRegistry, inspect_limit: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
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
            shared: Arc::new(Shared {
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
    shared: Arc<Shared>,
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
        let teed = entity.is_none()
            && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
            && is_json(req.headers());
        let path = req.uri().path().to_owned();
        let notes = req.extensions().get::<ExchangeNotes>().cloned();
        if let (Some(n), Some(e)) = (&notes, &entity) {
            n.set_entity(e);
        }
        let (req, tee) = if teed {
            let slot = Arc::new(Mutex::new(Vec::new()));
            let req = req.map(|b| {
                body::boxed(TeeBody {
                    inner: b,
                    slot: slot.clone(),
                })
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
    shared: Arc<Shared>,
    path: String,
    entity: Option<String>,
    tee: Option<Arc<Mutex<Vec<u8>>>>,
    source: Source,
    notes: Option<ExchangeNotes>,
}

enum Plan {
    Skip,
    Stream,
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
        if ext.get::<super::Synthetic>().is_some() {
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
            Plan::Stream
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
        let registry = &self.shared.registry;
        registry.count_inspection(true);
        let entity = self.entity();
        if let Some(e) = &entity {
            registry.observe_call(e);
            if let Some(n) = &self.notes {
                n.set_entity(e);
            }
        }
        match scan(body) {
            Scan::Reconnect(found) => {
                let reconnect_id = found.reconnect_id.clone();
                if let Some(n) = &self.notes {
                    n.set_reconnect_id(&reconnect_id);
                }
                let outcome = registry.observe_reconnect(Sighting {
                    entity_id: entity.clone(),
                    reconnect_id: found.reconnect_id,
                    results_id: found.results_id,
                    api: found.api,
                    path: self.path.clone(),
                    source: self.source,
                });
                let entity_id = entity.as_deref().unwrap_or("unknown");
                match outcome {
                    Outcome::New => {
                        tracing::warn!(target: "leanproxy::reconnect", entity_id, %reconnect_id, path = %self.path, source = ?self.source, "RECONNECT_REQUIRED: the user must reconnect")
                    }
                    Outcome::Replaced => {
                        tracing::warn!(target: "leanproxy::reconnect", entity_id, %reconnect_id, "RECONNECT_REQUIRED with a new reconnect id")
                    }
                    Outcome::Repeat => {
                        tracing::debug!(target: "leanproxy::reconnect", entity_id, %reconnect_id, "RECONNECT_REQUIRED again")
                    }
                }
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
                if let Some(e) = entity.filter(|e| data_call && registry.is_pending(e)) {
                    if is_ok_answer(body) {
                        if let Some(r) = registry.resolve_entity(&e, ResolvedBy::OkResponse) {
                            tracing::info!(target: "leanproxy::reconnect", entity_id = %e, reconnect_id = %r.reconnect_id, hits = r.hits, "reconnect resolved: an OK answer");
                        }
                    }
                }
                None
            }
        }
    }

    fn stream(self, response: Response<Body>) -> Response<Body> {
        let capacity = content_length(response.headers())
            .map_or(0, |n| n.min(self.shared.inspect_limit as u64) as usize);
        let limit = self.shared.inspect_limit;
        response.map(|inner| {
            if inner.is_end_stream() {
                self.finish(&[]);
                return inner;
            }
            body::boxed(InspectBody {
                inner,
                copy: Vec::with_capacity(capacity),
                limit,
                exchange: Some(self),
            })
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
                        Plan::Stream => return Poll::Ready(Ok(exchange.stream(response))),
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

pin_project! {
    /// Forwards each frame at once, keeping a bounded copy for the scan at end
    /// of body.
    struct InspectBody {
        #[pin]
        inner: Body,
        copy: Vec<u8>,
        limit: usize,
        exchange: Option<Exchange>,
    }
}

impl http_body::Body for InspectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(exchange)) = (frame.data_ref(), this.exchange.as_ref()) {
                    if this.copy.len() + data.len() > *this.limit {
                        // Too large to inspect: stop copying, count it, pass it on.
                        exchange.shared.registry.count_inspection(false);
                        *this.exchange = None;
                        *this.copy = Vec::new();
                    } else {
                        this.copy.extend_from_slice(data);
                    }
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    if let Some(exchange) = this.exchange.take() {
                        exchange.finish(this.copy);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(exchange) = this.exchange.take() {
                    exchange.finish(this.copy);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Passes the request body on unchanged, copying its first bytes.
    struct TeeBody {
        #[pin]
        inner: Body,
        slot: Arc<Mutex<Vec<u8>>>,
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Ok(mut copy)) = (frame.data_ref(), this.slot.lock()) {
                let room = REQUEST_TEE_LIMIT.saturating_sub(copy.len());
                copy.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
