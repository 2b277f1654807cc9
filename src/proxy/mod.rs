//! The upstream edge: URI rewrite, header hygiene, a pooled HTTP/1.1 + HTTP/2
//! client over rustls, and the mapping of transport failures to 502/504.
//!
//! [`Upstream`] is the innermost service of the stack. It never returns an error:
//! a failure to reach the upstream becomes an answer here and nowhere else.

mod error;
mod headers;
mod pool;
mod stall;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::client::classify_connect;
pub use crate::client::{classify, Classified, Failure};
pub use error::failure_response;
use error::request_body_response;
pub use headers::{add_forwarded, remove_hop_by_hop};
use pool::within;
pub use pool::{DriveSlot, UpstreamSlot, UpstreamSlots};
pub use stall::UpstreamStalled;

use crate::body::{self, Body};
use crate::lean::ErrorEnvelope;
use crate::metrics::Metrics;
use crate::server::ClientAddr;
use pool::{H1Pool, PoolError};

/// Time from forwarding a request to the upstream's response head, put in the
/// response's extensions.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming(pub std::time::Duration);

/// The most an upstream HTTP/1 connection buffers from its socket. hyper's
/// default (about 400 KiB) lets each answer chunk grow that large, and the
/// chunks in flight on 64 connections took tens of MiB with 512 KiB answers;
/// 64 KiB chunks keep that bounded at a few more reads per answer
/// (benches/HISTORY.md).
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

/// The largest answer head taken from an upstream (README: 64 KiB); larger
/// ones become a 502. hyper's own bound is its read buffer
/// ([`UPSTREAM_READ_BUFFER`]), checked only while a head is incomplete: one
/// finished by the read that crossed the bound passed, up to about 100 KiB.
const MAX_ANSWER_HEAD: usize = 64 * 1024;

/// The size of `parts`' head as HTTP/1.1 writes it: status line, one
/// `name: value` line per field, the blank line. Whitespace the upstream put
/// around values is not counted (hyper keeps none of it).
fn head_size(parts: &http::response::Parts) -> usize {
    let status_line =
        "HTTP/1.1 200 \r\n".len() + parts.status.canonical_reason().map_or(0, str::len);
    parts
        .headers
        .iter()
        .fold(status_line + 2, |size, (name, value)| {
            size + name.as_str().len() + value.len() + 4
        })
}

/// How connections to an upstream behave; where it is, its base URL, is
/// given to [`Upstream::new`] beside it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to the response head (includes connecting).
    pub response_timeout: Duration,
    /// Idle lifetime of pooled connections.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// How long an answer's body may send nothing before it is cut
    /// (`proxy.upstream_body_timeout`).
    pub body_timeout: Duration,
    /// Where cut answers are counted.
    pub metrics: Option<Metrics>,
}

/// The innermost service: forwards requests to the upstream.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamState>,
}

/// How requests reach the upstream.
enum Transport {
    /// A plain-http upstream: HTTP/1 connections kept by the app connections
    /// that use them (`pool/`), and their Host header, built once.
    Kept {
        pool: Arc<H1Pool>,
        host: HeaderValue,
    },
    /// https, where ALPN may choose h2, which hyper-util's pooled client
    /// multiplexes; it sets Host (HTTP/1.1) or `:authority` (h2) from the
    /// absolute URI. Also a base URL without a host, which `forward` refuses.
    Pooled {
        client: Box<Client<HttpsConnector<HttpConnector>, Body>>,
        scheme: Scheme,
    },
}

struct UpstreamState {
    transport: Transport,
    /// `None` only for a base URL without a host (config validation refuses
    /// those; a library caller may not have).
    authority: Option<Authority>,
    /// The base URL's path, without a trailing slash (often empty).
    base_path: String,
    /// The base URL as configured, for messages.
    display: Arc<str>,
    response_timeout: Duration,
    body_timeout: Duration,
    metrics: Option<Metrics>,
}

impl Upstream {
    /// Builds the way to the upstream at `base` (a path prefix in it is kept
    /// in front of every request path), its connections behaving as `config`
    /// says: HTTP/1 connections kept by app connections for `http`, a pooled
    /// client over rustls for `https` (with `tls`; ALPN offers h2 and
    /// http/1.1).
    pub fn new(base: Uri, config: UpstreamConfig, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let base = &base;
        let plain = base.scheme() != Some(&Scheme::HTTPS);
        let kept = match (plain, base.authority(), host_header(base)) {
            (true, Some(authority), Some(host)) => Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .ok()
                .map(|target| (target, host)),
            _ => None,
        };
        let transport = match kept {
            Some((target, host)) => {
                let mut builder = hyper::client::conn::http1::Builder::new();
                builder.max_buf_size(UPSTREAM_READ_BUFFER);
                let pool = H1Pool::new(
                    http,
                    builder,
                    target,
                    config.pool_max_idle_per_host,
                    config.pool_idle_timeout,
                    config.body_timeout,
                    config.metrics.clone(),
                );
                Transport::Kept { pool, host }
            }
            None => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                let client = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .pool_idle_timeout(config.pool_idle_timeout)
                    .pool_max_idle_per_host(config.pool_max_idle_per_host)
                    .http1_max_buf_size(UPSTREAM_READ_BUFFER)
                    .build(connector);
                Transport::Pooled {
                    client: Box::new(client),
                    scheme: base.scheme().cloned().unwrap_or(Scheme::HTTP),
                }
            }
        };
        Self {
            inner: Arc::new(UpstreamState {
                transport,
                authority: base.authority().cloned(),
                base_path: base.path().trim_end_matches('/').to_string(),
                display: base.to_string().into(),
                response_timeout: config.response_timeout,
                body_timeout: config.body_timeout,
                metrics: config.metrics,
            }),
        }
    }
}

/// The Host header an HTTP/1.1 client sends for `base`: its host, with the port
/// only when it differs from the scheme's default.
fn host_header(base: &Uri) -> Option<HeaderValue> {
    let host = base.host()?;
    let default_port = match base.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match base.port_u16() {
        Some(port) if port != default_port => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

impl tower::Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = UpstreamFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool grows on demand; readiness is per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = &self.inner;
        let (mut req, slot, body_failed) = match inner.prepare(req) {
            Ok(prepared) => prepared,
            Err(refused) => {
                return UpstreamFuture(Forwarding::Refused(std::future::ready(Ok(*refused))))
            }
        };
        // One clock read: the upstream timing, the response timeout and the
        // held connection's idle check all start here.
        let sent = Instant::now();
        if let (Transport::Kept { pool, .. }, Some(held)) = (&inner.transport, &slot) {
            match pool.send_held(held, req, sent) {
                Ok(exchange) => {
                    return UpstreamFuture(Forwarding::Held {
                        exchange: within(exchange, sent, inner.response_timeout, slot),
                        inner: inner.clone(),
                        sent,
                        body_failed,
                    })
                }
                Err(back) => req = back,
            }
        }
        let inner = inner.clone();
        UpstreamFuture(Forwarding::Boxed(Box::pin(async move {
            let outcome = inner.exchange(req, slot, sent).await;
            Ok(inner.finish(outcome, sent, body_failed.as_deref()))
        })))
    }
}

/// [`Upstream`]'s answer to a request.
pub struct UpstreamFuture(Forwarding);

enum Forwarding {
    /// The request was refused before it was sent.
    Refused(std::future::Ready<Result<Response<Body>, Infallible>>),
    /// Sent on the connection its app connection holds (most requests): the
    /// small future of [`H1Pool::send_held`], not boxed.
    Held {
        exchange: pool::Within<pool::Exchange>,
        inner: Arc<UpstreamState>,
        sent: Instant,
        body_failed: Option<Arc<AtomicBool>>,
    },
    /// Waiting for a connection (parked or new), or over https.
    Boxed(Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>),
}

impl Future for UpstreamFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Forwarding::Refused(refused) => Pin::new(refused).poll(cx),
            Forwarding::Held {
                exchange,
                inner,
                sent,
                body_failed,
            } => {
                let outcome = std::task::ready!(Pin::new(exchange).poll(cx));
                Poll::Ready(Ok(inner.finish(
                    outcome.map(|r| r.map_err(pool_failure)),
                    *sent,
                    body_failed.as_deref(),
                )))
            }
            Forwarding::Boxed(boxed) => boxed.as_mut().poll(cx),
        }
    }
}

/// What a failure of the kept connections is to the app.
fn pool_failure(e: PoolError) -> Classified {
    match e {
        PoolError::Connect(e) => classify_connect(&*e),
        PoolError::Exchange(e) => classify(&e),
    }
}

/// A request ready to go upstream, its app connection's slot, and the flag
/// its body sets if it fails (none for a request without a body).
type Prepared = (
    Request<Body>,
    Option<Arc<UpstreamSlot>>,
    Option<Arc<AtomicBool>>,
);

/// An exchange's outcome: the upstream's answer, a failure, or `None` when
/// no answer came within the response timeout.
type Outcome = Option<Result<Response<Body>, Classified>>;

pin_project_lite::pin_project! {
    /// The app's request body on its way upstream; sets `failed` when it
    /// fails (malformed chunked framing, a body cut short). The transports
    /// report that each in their own way, as a failure of the exchange; the
    /// flag tells it from the upstream's failures.
    struct NotedBody {
        #[pin]
        inner: Body,
        failed: Arc<AtomicBool>,
    }
}

impl http_body::Body for NotedBody {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl UpstreamState {
    /// The request as it goes upstream (URI under the base URL, hop-by-hop
    /// headers out, Host and `X-Forwarded-*` set), and the app connection's
    /// slot; or the answer that refuses it.
    fn prepare(&self, mut req: Request<Body>) -> Result<Prepared, Box<Response<Body>>> {
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if !path_and_query.starts_with('/') {
            // Asterisk-form (`OPTIONS *`) has no path to put under the base URL.
            return Err(Box::new(
                ErrorEnvelope::new(
                    "INVALID_URL",
                    format!("leanproxy: cannot forward the request target `{path_and_query}`"),
                )
                .into_response(StatusCode::BAD_REQUEST),
            ));
        }
        let Some(authority) = &self.authority else {
            return Err(Box::new(
                ErrorEnvelope::new(
                    "INVALID_URL",
                    format!("leanproxy: the upstream URL {} has no host", self.display),
                )
                .into_response(StatusCode::BAD_GATEWAY),
            ));
        };
        let path_and_query = if self.base_path.is_empty() {
            // The request's own bytes, shared rather than copied.
            Ok(req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")))
        } else {
            PathAndQuery::try_from(format!("{}{}", self.base_path, path_and_query))
        };
        let uri = path_and_query.map_err(http::Error::from).and_then(|pq| {
            let mut parts = http::uri::Parts::default();
            // hyper's own HTTP/1 connections send the URI as given: origin-form.
            if let Transport::Pooled { scheme, .. } = &self.transport {
                parts.scheme = Some(scheme.clone());
                parts.authority = Some(authority.clone());
            }
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).map_err(http::Error::from)
        });
        let uri = match uri {
            Ok(uri) => uri,
            Err(e) => {
                return Err(Box::new(
                    ErrorEnvelope::new(
                        "INVALID_URL",
                        format!("leanproxy: cannot forward this request target: {e}"),
                    )
                    .into_response(StatusCode::BAD_REQUEST),
                ))
            }
        };

        let original_host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client = req.extensions_mut().remove::<ClientAddr>();
        let headers = req.headers_mut();
        remove_hop_by_hop(headers);
        match &self.transport {
            Transport::Kept { host, .. } => {
                headers.insert(header::HOST, host.clone());
            }
            Transport::Pooled { .. } => {
                headers.remove(header::HOST);
            }
        }
        add_forwarded(
            headers,
            client.as_ref().map(ClientAddr::ip_header),
            original_host,
        );
        *req.uri_mut() = uri;
        // The version towards the upstream is chosen by ALPN, not by the client's.
        *req.version_mut() = Version::HTTP_11;
        let slot = client.and_then(|c| c.carried::<UpstreamSlot>());
        // Most calls (GETs) have no body and need no flag.
        if http_body::Body::is_end_stream(req.body()) {
            return Ok((req, slot, None));
        }
        let failed = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| {
            body::boxed(NotedBody {
                inner,
                failed: failed.clone(),
            })
        });
        let body_failed = Some(failed);
        Ok((req, slot, body_failed))
    }

    /// Sends `req` on a parked or new connection, or through the https
    /// client.
    async fn exchange(
        &self,
        req: Request<Body>,
        slot: Option<Arc<UpstreamSlot>>,
        sent: Instant,
    ) -> Outcome {
        let timer_slot = slot.clone();
        let exchange = async move {
            match &self.transport {
                Transport::Kept { pool, .. } => pool.send(slot, req).await.map_err(pool_failure),
                Transport::Pooled { client: pooled, .. } => match pooled.request(req).await {
                    Ok(response) => Ok(response.map(|incoming| {
                        body::boxed(stall::Stalling::new(
                            incoming,
                            self.body_timeout,
                            self.metrics.clone(),
                            self.display.clone(),
                        ))
                    })),
                    Err(e) => Err(classify(&e)),
                },
            }
        };
        within(exchange, sent, self.response_timeout, timer_slot).await
    }

    /// The answer to the app for `outcome`, of a request sent at `sent`
    /// whose body sets `body_failed` if it failed.
    fn finish(
        &self,
        outcome: Outcome,
        sent: Instant,
        body_failed: Option<&AtomicBool>,
    ) -> Response<Body> {
        match outcome {
            Some(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                let head = head_size(&parts);
                if head > MAX_ANSWER_HEAD {
                    let detail = format!(
                        "the answer's head takes {head} bytes, more than the {MAX_ANSWER_HEAD} allowed"
                    );
                    tracing::warn!(upstream = %self.display, cause = "exchange", %detail, "upstream failure");
                    return failure_response(Failure::Exchange, &detail, &self.display);
                }
                parts.extensions.insert(UpstreamTiming(sent.elapsed()));
                remove_hop_by_hop(&mut parts.headers);
                // The client connection has its own version (an HTTP/1.0 upstream
                // must not turn the app's HTTP/1.1 answer into 1.0).
                parts.version = Version::default();
                Response::from_parts(parts, body)
            }
            // Whatever the transport made of it (h1: a user error; h2: a
            // stream reset by hyper), the app's body failed first.
            Some(Err(Classified { detail, .. }))
                if body_failed.is_some_and(|f| f.load(Ordering::Relaxed)) =>
            {
                tracing::debug!(cause = "request_body", %detail, "the app's request body failed");
                request_body_response(&detail)
            }
            Some(Err(Classified { failure, detail })) => {
                tracing::warn!(upstream = %self.display, cause = failure.as_str(), %detail, "upstream failure");
                failure_response(failure, &detail, &self.display)
            }
            None => {
                let detail = format!(
                    "no response within {} (proxy.response_timeout)",
                    humantime::format_duration(self.response_timeout)
                );
                tracing::warn!(upstream = %self.display, cause = "response_timeout", "upstream failure");
                failure_response(Failure::ResponseTimeout, &detail, &self.display)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_response_timeout_past_what_an_instant_holds_means_never() {
        let limit = humantime::parse_duration("300000000000years").unwrap();
        assert_eq!(
            within(async { 1 }, Instant::now(), limit, None).await,
            Some(1)
        );
        let slot = Arc::new(UpstreamSlot::default());
        assert_eq!(
            within(async { 2 }, Instant::now(), limit, Some(slot.clone())).await,
            Some(2)
        );
        let pending = within(
            std::future::pending::<()>(),
            Instant::now(),
            limit,
            Some(slot),
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), pending)
                .await
                .is_err(),
            "still waiting"
        );
    }

    #[test]
    fn head_size_counts_what_http1_writes() {
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-length", "2")
            .header("x-big", "b".repeat(10))
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let wire = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-big: bbbbbbbbbb\r\n\r\n";
        assert_eq!(head_size(&parts), wire.len());
    }

    #[test]
    fn host_header_carries_the_port_only_when_it_is_not_the_default() {
        let host = |url: &str| host_header(&url.parse().unwrap()).unwrap();
        assert_eq!(host("http://127.0.0.1:8080/v1"), "127.0.0.1:8080");
        assert_eq!(host("http://sandbox.leantech.me"), "sandbox.leantech.me");
        assert_eq!(
            host("http://sandbox.leantech.me:80/"),
            "sandbox.leantech.me"
        );
        assert_eq!(
            host("https://sandbox.leantech.me:443"),
            "sandbox.leantech.me"
        );
        assert_eq!(
            host("https://sandbox.leantech.me:8443"),
            "sandbox.leantech.me:8443"
        );
        assert_eq!(host("http://[::1]:9000"), "[::1]:9000");
    }
}
