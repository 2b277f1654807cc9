//! The request log layer (outermost) and leanproxy's own log setup.
//!
//! [`RequestLogLayer`] gives every exchange an id (`x-request-id`, propagated from
//! the app or generated), echoes it on the response and emits one structured
//! event per exchange. Events carry the method, the path (never the query, which
//! may hold secrets, and never header values), the status and the time to the
//! response head; 5xx answers are logged at WARN.

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `x-request-id`
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest app-supplied request id that is propagated; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The exchange's id, also stored in the request's extensions for inner layers.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Assigns request ids and logs one event per exchange.
#[derive(Debug, Clone, Default)]
pub struct RequestLogLayer;

impl RequestLogLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner }
    }
}

/// The service built by [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
}

fn usable_id(value: &HeaderValue) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl<S, B, RB> Service<Request<B>> for RequestLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.headers_mut().insert(&X_REQUEST_ID, id.clone());
        req.extensions_mut().insert(RequestId(id.clone()));
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        ResponseFuture {
            inner: self.inner.call(req),
            id: Some(id),
            method,
            path,
            start: Instant::now(),
        }
    }
}

pin_project! {
    /// Response future of [`RequestLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        method: Method,
        path: String,
        start: Instant,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        // Microsecond resolution is plenty and keeps the number short.
        let elapsed_ms = (this.start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let status = response.status().as_u16();
        let id = this.id.take().unwrap_or_else(new_request_id);
        let request_id = id.to_str().unwrap_or_default();
        if status >= 500 {
            tracing::warn!(target: "leanproxy::exchange", request_id, method = %this.method, path = %this.path, status, elapsed_ms, "exchange");
        } else {
            tracing::info!(target: "leanproxy::exchange", request_id, method = %this.method, path = %this.path, status, elapsed_ms, "exchange");
        }
        response.headers_mut().insert(&X_REQUEST_ID, id);
        Poll::Ready(Ok(response))
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`),
/// lines on stderr, human-readable or JSON.
pub fn install_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second install (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    async fn exchange(id: Option<&str>) -> (HeaderValue, HeaderValue) {
        let echo = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers()[&X_REQUEST_ID].clone()))
        });
        let mut req = Request::new(());
        if let Some(id) = id {
            req.headers_mut()
                .insert(&X_REQUEST_ID, HeaderValue::from_str(id).unwrap());
        }
        let response = RequestLogLayer::new()
            .layer(echo)
            .oneshot(req)
            .await
            .unwrap();
        let seen_upstream = response.body().clone();
        (seen_upstream, response.headers()[&X_REQUEST_ID].clone())
    }

    #[tokio::test]
    async fn app_request_id_is_propagated_and_echoed() {
        let (upstream, echoed) = exchange(Some("app-123")).await;
        assert_eq!(upstream, "app-123");
        assert_eq!(echoed, "app-123");
    }

    #[tokio::test]
    async fn missing_request_id_is_generated_once() {
        let (upstream, echoed) = exchange(None).await;
        assert_eq!(upstream, echoed);
        assert_eq!(upstream.len(), 36);
    }

    #[tokio::test]
    async fn oversized_request_id_is_replaced() {
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let (upstream, _) = exchange(Some(&long)).await;
        assert_ne!(upstream, long.as_str());
    }
}
