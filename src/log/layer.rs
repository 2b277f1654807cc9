//! [`RequestLogLayer`]: request ids, and one record per exchange, completed when
//! the answer's body ends (or the app goes away).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::notes::ExchangeNotes;
use super::record::{lean_status, Capture, ExchangeRecord, Headers};
use super::{redact, Telemetry};
use crate::body::{self, Body};
use crate::events::{Event, ExchangeSummary};
use crate::proxy::{Failure, UpstreamTiming};
use crate::reconnect::X_LEANPROXY_INJECTED;
use crate::server::ClientAddr;

/// `x-request-id`
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest app-supplied request id that is propagated; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The exchange's id, also stored in the request's extensions for inner layers.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Assigns request ids and records every exchange into a [`Telemetry`].
#[derive(Debug, Clone)]
pub struct RequestLogLayer {
    telemetry: Telemetry,
}

impl RequestLogLayer {
    /// The layer, recording into `telemetry`.
    pub fn new(telemetry: Telemetry) -> Self {
        Self { telemetry }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            telemetry: self.telemetry.clone(),
        }
    }
}

/// The service built by [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
    telemetry: Telemetry,
}

fn usable_id(value: &HeaderValue) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    // The thread-local generator: `Uuid::new_v4` makes a getrandom(2) call per
    // exchange.
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let text = uuid.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A body's first bytes and total size, shared between the body and the record.
#[derive(Debug, Default)]
struct Tap {
    bytes: Mutex<Vec<u8>>,
    size: AtomicU64,
    truncated: std::sync::atomic::AtomicBool,
}

impl Tap {
    fn see(&self, data: &[u8], limit: usize) {
        self.size.fetch_add(data.len() as u64, Ordering::Relaxed);
        if limit == 0 {
            return;
        }
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let room = limit.saturating_sub(bytes.len());
        if data.len() > room {
            self.truncated.store(true, Ordering::Relaxed);
        }
        bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn capture(&self, mime: Option<&str>, redact: bool) -> Option<Capture> {
        let size = self.size.load(Ordering::Relaxed);
        if size == 0 {
            return None;
        }
        let mut taken = std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|p| p.into_inner()));
        // The buffer grew by doubling; the record keeps only what it holds.
        taken.shrink_to_fit();
        let bytes = Bytes::from(taken);
        Some(Capture::new(
            bytes,
            size,
            self.truncated.load(Ordering::Relaxed),
            mime,
            redact,
        ))
    }
}

/// What is known when the request is sent.
struct Pending {
    telemetry: Telemetry,
    id: HeaderValue,
    started_at: chrono::DateTime<chrono::Utc>,
    start: Instant,
    method: String,
    host: Option<String>,
    path: String,
    query: Option<String>,
    version: String,
    client: Option<String>,
    request_headers: Headers,
    request_mime: Option<String>,
    request_tap: Arc<Tap>,
    notes: ExchangeNotes,
}

impl<S> Service<Request<Body>> for RequestLog<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.headers_mut().insert(&X_REQUEST_ID, id.clone());
        req.extensions_mut().insert(RequestId(id.clone()));
        let notes = ExchangeNotes::default();
        req.extensions_mut().insert(notes.clone());
        let t = &self.telemetry;
        let redacting = t.redact();
        let request_tap = Arc::new(Tap::default());
        let pending = Pending {
            telemetry: t.clone(),
            id,
            started_at: chrono::Utc::now(),
            start: Instant::now(),
            method: req.method().to_string(),
            host: req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string())),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(|q| {
                if redacting {
                    redact::query(q)
                } else {
                    q.to_string()
                }
            }),
            version: version_name(req.version()).to_string(),
            client: req
                .extensions()
                .get::<ClientAddr>()
                .map(|c| c.text().to_string()),
            request_headers: Headers::new(req.headers(), redacting),
            request_mime: content_type(req.headers()),
            request_tap: request_tap.clone(),
            notes,
        };
        let limit = t.capture_limit();
        let req = req.map(|inner| {
            if inner.is_end_stream() {
                inner
            } else {
                body::watched(
                    inner,
                    RequestTap {
                        tap: request_tap,
                        limit,
                    },
                )
            }
        });
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project! {
    /// Response future of [`RequestLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        let Some(pending) = this.pending.take() else {
            return Poll::Ready(Ok(response));
        };
        response
            .headers_mut()
            .insert(&X_REQUEST_ID, pending.id.clone());
        let finisher = Finisher {
            // A reset sends no answer at all: recorded as status 0, not completed.
            status: if response
                .extensions()
                .get::<crate::server::ResetConnection>()
                .is_some()
            {
                0
            } else {
                response.status().as_u16()
            },
            response_headers: Headers::new(response.headers(), pending.telemetry.redact()),
            response_mime: content_type(response.headers()),
            fault: response
                .headers()
                .get(&X_LEANPROXY_INJECTED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            correlation: response
                .headers()
                .get("lean-correlation-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            upstream: response.extensions().get::<UpstreamTiming>().map(|t| t.0),
            failure: response.extensions().get::<Failure>().copied(),
            response_tap: Arc::new(Tap::default()),
            pending,
        };
        let limit = finisher.pending.telemetry.capture_limit();
        let response = response.map(|inner| {
            if inner.is_end_stream() {
                let completed = finisher.status != 0;
                finisher.finish(completed);
                inner
            } else {
                body::watched(inner, AnswerTap { finisher, limit })
            }
        });
        Poll::Ready(Ok(response))
    }
}

/// What is known once the answer's head is out.
struct Finisher {
    pending: Pending,
    status: u16,
    response_headers: Headers,
    response_mime: Option<String>,
    fault: Option<String>,
    correlation: Option<String>,
    upstream: Option<Duration>,
    failure: Option<Failure>,
    response_tap: Arc<Tap>,
}

impl Finisher {
    fn finish(self, completed: bool) {
        let p = self.pending;
        let t = &p.telemetry;
        let redacting = t.redact();
        let notes = p.notes.snapshot();
        let duration = p.start.elapsed();
        let lean = {
            let bytes = self
                .response_tap
                .bytes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            lean_status(&bytes[..bytes.len().min(4096)])
        };
        let bytes_in = p.request_tap.size.load(Ordering::Relaxed);
        let bytes_out = self.response_tap.size.load(Ordering::Relaxed);
        let duration_ms = (duration.as_secs_f64() * 1e6).round() / 1e3;
        let upstream_ms = self.upstream.map(|u| (u.as_secs_f64() * 1e6).round() / 1e3);
        let request_id = p.id.to_str().unwrap_or_default().to_string();

        macro_rules! exchange_event {
            ($level:expr) => {
                tracing::event!(
                    target: "leanproxy::exchange",
                    $level,
                    request_id = %request_id,
                    method = %p.method,
                    path = %p.path,
                    // Fields with nothing to say (`None`) are left out of the line.
                    query = p.query.as_deref(),
                    status = self.status,
                    lean_status = lean.as_deref(),
                    entity_id = notes.entity_id.as_deref(),
                    reconnect_id = notes.reconnect_id.as_deref(),
                    fault = self.fault.as_deref(),
                    upstream_ms,
                    duration_ms,
                    bytes_in,
                    bytes_out,
                    correlation_id = self.correlation.as_deref(),
                    completed = (!completed).then_some(false),
                    "exchange"
                )
            };
        }
        if self.status >= 500 {
            if tracing::enabled!(target: "leanproxy::exchange", tracing::Level::WARN)
                && t.admit_line(self.status)
            {
                exchange_event!(tracing::Level::WARN);
            }
        } else if tracing::enabled!(target: "leanproxy::exchange", tracing::Level::INFO)
            && t.admit_line(self.status)
        {
            exchange_event!(tracing::Level::INFO);
        }

        let metrics = t.metrics();
        metrics.exchange(&crate::metrics::Exchange {
            method: &p.method,
            status: self.status,
            lean_status: lean.as_deref(),
            total_seconds: duration.as_secs_f64(),
            upstream_seconds: self.upstream.map(|u| u.as_secs_f64()),
            bytes_in,
            bytes_out,
        });
        if let Some(f) = self.failure {
            metrics.upstream_error(f.as_str());
        }
        let events = t.events();
        if events.listening() {
            events.publish(Event::Exchange(ExchangeSummary {
                id: request_id.clone(),
                started_at: p
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                method: p.method.clone(),
                path: p.path.clone(),
                status: self.status,
                lean_status: lean.clone(),
                entity_id: notes.entity_id.clone(),
                reconnect_id: notes.reconnect_id.clone(),
                fault: self.fault.clone(),
                duration_ms,
                bytes_in,
                bytes_out,
            }));
        }
        if !t.keeps_records() {
            return;
        }
        let record = ExchangeRecord {
            id: request_id,
            started_at: p.started_at,
            method: p.method,
            host: p.host,
            path: p.path,
            query: p.query,
            version: p.version,
            client: p.client,
            request_headers: p.request_headers,
            request_body: p.request_tap.capture(p.request_mime.as_deref(), redacting),
            status: self.status,
            response_headers: self.response_headers,
            response_body: self
                .response_tap
                .capture(self.response_mime.as_deref(), redacting),
            lean_status: lean,
            entity_id: notes.entity_id,
            reconnect_id: notes.reconnect_id,
            fault: self.fault,
            lean_correlation_id: self.correlation,
            upstream_ms,
            duration_ms,
            bytes_in,
            bytes_out,
            completed,
            upstream_error: self.failure.map(|f| f.as_str().to_string()),
        };
        t.keep(record);
    }
}

/// Counts and captures the request body on its way to the upstream.
struct RequestTap {
    tap: Arc<Tap>,
    limit: usize,
}

impl body::Watch for RequestTap {
    fn data(&mut self, data: &Bytes) {
        self.tap.see(data, self.limit);
    }
}

/// Counts and captures the answer on its way to the app; completes the record
/// at its end, or when it fails or is dropped before it.
struct AnswerTap {
    finisher: Finisher,
    limit: usize,
}

impl body::Watch for AnswerTap {
    fn data(&mut self, data: &Bytes) {
        self.finisher.response_tap.see(data, self.limit);
    }

    fn end(self, complete: bool) {
        self.finisher.finish(complete);
    }
}
