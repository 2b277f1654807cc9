//! [`RequestLogLayer`]: request ids, and one record per exchange, completed when
//! the answer's body ends (or the app goes away).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::record::{lean_status, Capture, ExchangeRecord, Headers};
use super::{redact, Telemetry, STATUS_PREFIX};
use crate::body::{self, Body};
use crate::events::{Event, ExchangeSummary};
use crate::exchange::{ExchangeNotes, RequestId, X_LEANPROXY_INJECTED, X_REQUEST_ID};
use crate::proxy::{Failure, UpstreamTiming};
use crate::server::ClientAddr;
use crate::sync::lock;

/// `lean-correlation-id`
static LEAN_CORRELATION_ID: HeaderName = HeaderName::from_static("lean-correlation-id");

/// Longest app-supplied request id that is propagated; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

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

/// A body's first bytes and total size.
#[derive(Debug, Default)]
struct Tap {
    bytes: Vec<u8>,
    size: u64,
    truncated: bool,
}

impl Tap {
    fn see(&mut self, data: &[u8], limit: usize) {
        self.size += data.len() as u64;
        if limit == 0 {
            return;
        }
        let room = limit.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn capture(self, mime: Option<&str>, redact: &redact::Redactor) -> Option<Capture> {
        if self.size == 0 {
            return None;
        }
        let mut taken = self.bytes;
        // The buffer grew by doubling; the record keeps only what it holds.
        taken.shrink_to_fit();
        Some(Capture::new(
            Bytes::from(taken),
            self.size,
            self.truncated,
            mime,
            redact.clone(),
        ))
    }
}

/// The request body's tap, shared between the body (on its way upstream) and
/// the record; only made when the request has a body.
type SharedTap = Arc<Mutex<Tap>>;

/// What is known when the request is sent.
struct Pending {
    telemetry: Telemetry,
    id: HeaderValue,
    started_at: chrono::DateTime<chrono::Utc>,
    start: Instant,
    method: http::Method,
    host: Option<String>,
    path: String,
    query: Option<String>,
    version: &'static str,
    client: Option<Arc<str>>,
    request_headers: Headers,
    /// The request body's content type and tap, when it has a body.
    request_body: Option<(Option<HeaderValue>, SharedTap)>,
    notes: ExchangeNotes,
}

fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
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
        let (app_id, alone) = {
            let mut ids = req.headers().get_all(&X_REQUEST_ID).iter();
            let first = ids.next().filter(|v| usable_id(v));
            // A copy: the app's value is a slice of the connection's read
            // buffer, which a kept record would otherwise keep alive.
            let app_id = first.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
            (app_id, ids.next().is_none())
        };
        let id = match app_id {
            Some(id) if alone => id,
            // Exactly one id goes on: the one recorded and echoed.
            other => {
                let id = other.unwrap_or_else(new_request_id);
                req.headers_mut().insert(&X_REQUEST_ID, id.clone());
                id
            }
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        let notes = ExchangeNotes::default();
        req.extensions_mut().insert(notes.clone());
        let t = &self.telemetry;
        let redactor = t.redactor();
        let (request_headers, [host, mime]) = Headers::picking(
            req.headers(),
            redactor.clone(),
            [&header::HOST, &header::CONTENT_TYPE],
        );
        let request_tap = (!req.body().is_end_stream()).then(SharedTap::default);
        let pending = Pending {
            telemetry: t.clone(),
            id,
            started_at: chrono::Utc::now(),
            start: Instant::now(),
            method: req.method().clone(),
            host: text(host)
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string())),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(|q| redactor.form(q)),
            version: version_name(req.version()),
            client: req
                .extensions()
                .get::<ClientAddr>()
                .map(|c| c.shared_text().clone()),
            request_headers,
            request_body: request_tap.clone().map(|tap| (mime.cloned(), tap)),
            notes,
        };
        let limit = t.capture_limit(0);
        let req = match request_tap {
            None => req,
            Some(tap) => req.map(|inner| body::watched(inner, RequestTap { tap, limit })),
        };
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
        let (response_headers, [mime, fault, correlation]) = Headers::picking(
            response.headers(),
            pending.telemetry.redactor().clone(),
            [
                &header::CONTENT_TYPE,
                &X_LEANPROXY_INJECTED,
                &LEAN_CORRELATION_ID,
            ],
        );
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
            response_headers,
            response_mime: mime.cloned(),
            fault: text(fault).map(str::to_string),
            correlation: text(correlation).map(str::to_string),
            upstream: response.extensions().get::<UpstreamTiming>().map(|t| t.0),
            failure: response.extensions().get::<Failure>().copied(),
            response_tap: Tap::default(),
            pending,
        };
        let limit = finisher.pending.telemetry.capture_limit(STATUS_PREFIX);
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
    response_mime: Option<HeaderValue>,
    fault: Option<String>,
    correlation: Option<String>,
    upstream: Option<Duration>,
    failure: Option<Failure>,
    response_tap: Tap,
}

/// An exchange as a live event shows it. `request`: start, method, path;
/// `answer`: status, Lean status, fault; `timing`: total and upstream
/// milliseconds.
fn summary(
    request: (&chrono::DateTime<chrono::Utc>, &http::Method, &str),
    notes: &crate::exchange::Notes,
    answer: (u16, Option<&str>, Option<&str>),
    request_id: &str,
    timing: (f64, Option<f64>),
    bytes: (u64, u64),
) -> ExchangeSummary {
    let (status, lean, fault) = answer;
    let (started_at, method, path) = request;
    ExchangeSummary {
        id: request_id.to_string(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        method: method.to_string(),
        path: path.to_string(),
        status,
        lean_status: lean.map(str::to_string),
        entity_id: notes.entity_id.clone(),
        reconnect_id: notes.reconnect_id.clone(),
        fault: fault.map(str::to_string),
        upstream_ms: timing.1,
        route: notes.route.as_deref().map(str::to_string),
        duration_ms: timing.0,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
    }
}

impl Finisher {
    fn finish(self, completed: bool) {
        let p = self.pending;
        let t = &p.telemetry;
        let redactor = t.redactor();
        let notes = p.notes.snapshot();
        let duration = p.start.elapsed();
        let answer = &self.response_tap.bytes;
        let lean = lean_status(&answer[..answer.len().min(STATUS_PREFIX)]);
        // Out of its lock once. What a request body still sends after its
        // answer ended is not counted (nor was it when read in place).
        let request_tap = p
            .request_body
            .map(|(mime, tap)| (mime, std::mem::take(&mut *lock(&tap))));
        let bytes_in = request_tap.as_ref().map_or(0, |(_, tap)| tap.size);
        let bytes_out = self.response_tap.size;
        let duration_ms = (duration.as_secs_f64() * 1e6).round() / 1e3;
        let upstream_ms = self.upstream.map(|u| (u.as_secs_f64() * 1e6).round() / 1e3);
        // Checked or generated as visible ASCII.
        let request_id = p.id.to_str().unwrap_or_default();

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

        count(
            t,
            &p.method,
            self.status,
            lean.as_deref(),
            (duration, self.upstream),
            self.failure,
            (bytes_in, bytes_out),
        );
        let events = t.events();
        if events.listening() {
            events.publish(Event::Exchange(summary(
                (&p.started_at, &p.method, &p.path),
                &notes,
                (self.status, lean.as_deref(), self.fault.as_deref()),
                request_id,
                (duration_ms, upstream_ms),
                (bytes_in, bytes_out),
            )));
        }
        if !t.keeps_records() {
            return;
        }
        let request_body =
            request_tap.and_then(|(mime, tap)| tap.capture(text(mime.as_ref()), redactor));
        let response_body = self
            .response_tap
            .capture(text(self.response_mime.as_ref()), redactor);
        let record = ExchangeRecord {
            id: p.id,
            started_at: p.started_at,
            method: p.method,
            host: p.host,
            path: p.path,
            query: p.query,
            version: p.version,
            client: p.client,
            request_headers: p.request_headers,
            request_body,
            status: self.status,
            response_headers: self.response_headers,
            response_body,
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
            upstream_error: self.failure.map(Failure::as_str),
            route: notes.route,
            replica: t.events().replica().cloned(),
        };
        t.keep(record);
    }
}

/// An exchange in the metrics: its method, status, Lean status, times and
/// bytes, and its upstream failure when it had one.
fn count(
    telemetry: &Telemetry,
    method: &http::Method,
    status: u16,
    lean: Option<&str>,
    (duration, upstream): (Duration, Option<Duration>),
    failure: Option<Failure>,
    (bytes_in, bytes_out): (u64, u64),
) {
    let metrics = telemetry.metrics();
    metrics.exchange(&crate::metrics::Exchange {
        method: method.as_str(),
        status,
        lean_status: lean,
        total_seconds: duration.as_secs_f64(),
        upstream_seconds: upstream.map(|u| u.as_secs_f64()),
        bytes_in,
        bytes_out,
    });
    if let Some(f) = failure {
        metrics.upstream_error(f.as_str());
    }
}

/// Counts and captures the request body on its way to the upstream.
struct RequestTap {
    tap: SharedTap,
    limit: usize,
}

impl body::Watch for RequestTap {
    fn data(&mut self, data: &Bytes) {
        lock(&self.tap).see(data, self.limit);
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
