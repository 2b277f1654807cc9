//! An app connection's side of the server: the adapter from hyper's service
//! to the tower stack, the answer's future and body as the server sends them,
//! and the connection's [`Activity`] that [`super::graceful`] watches.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceExt};

use super::{ClientAddr, ResetConnection, ResetRequested};
use crate::body::{self, Body};
use crate::future::ResponseFuture;

/// Per-connection adapter from hyper's service to the tower stack.
///
/// The connection keeps its own copy of the stack and calls it in place;
/// hyper calls `call` (through `&self`) from the connection's task only,
/// one call at a time, so a `RefCell` does: no lock per request, and no
/// clone of the whole stack per request (which `oneshot` would need: every
/// layer's handles cloned and dropped for each exchange).
pub(super) struct ConnService<S> {
    pub(super) inner: RefCell<S>,
    pub(super) peer: ClientAddr,
    pub(super) activity: Arc<Activity>,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ServedBody>;
    type Error = ResetRequested;
    type Future = ConnFuture<ResponseFuture<S::Future, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let waiting = Waiting::new(self.activity.clone());
        let mut req = req.map(body::boxed);
        req.extensions_mut().insert(self.peer.clone());
        let mut stack = self.inner.borrow_mut();
        let inner = match stack.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => ResponseFuture::inner(stack.call(req)),
            Poll::Ready(Err(never)) => match never {},
            // Every layer of leanproxy's stacks is always ready; one that is
            // not gets a clone of the stack, driven to readiness by the
            // answer's future (woken properly, unlike the poll above).
            Poll::Pending => ResponseFuture::boxed(stack.clone().oneshot(req)),
        };
        ConnFuture {
            inner,
            waiting: Some(waiting),
        }
    }
}

pin_project_lite::pin_project! {
    /// Turns a [`ResetConnection`] answer into an error, which makes hyper close
    /// the connection (HTTP/1) or reset the stream (HTTP/2) without a response.
    pub(super) struct ConnFuture<F> {
        #[pin]
        inner: F,
        // Moves into the answer's body: the exchange lasts until its end.
        waiting: Option<Waiting>,
    }
}

impl<F> Future for ConnFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<ServedBody>, ResetRequested>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.inner.poll(cx).map(|result| {
            let response = match result {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if response.extensions().get::<ResetConnection>().is_some() {
                Err(ResetRequested)
            } else {
                let waiting = this.waiting.take();
                Ok(response.map(|inner| ServedBody {
                    inner,
                    _waiting: waiting,
                    failed: None,
                }))
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// An answer's body as the server sends it: the exchange counts as in
    /// progress for [`Quiet`](super::graceful::Quiet) until hyper drops it
    /// (at its end, or when the connection ends). A wrapper, not a box: one
    /// more allocation per answer is what the rest of the server saves.
    ///
    /// A body that fails is reported to hyper one turn late: hyper writes an
    /// answer's head into its buffer and sends it with the body's first
    /// bytes, and a body error it sees at once closes the connection with
    /// the head still unsent, so the app got nothing at all (an upstream
    /// that broke its chunked framing right after the head). Told to wait
    /// one turn first, hyper flushes what it has; the app then sees the
    /// head and a body that ends early, which every client reports as an
    /// error.
    pub(super) struct ServedBody {
        #[pin]
        inner: Body,
        _waiting: Option<Waiting>,
        failed: Option<body::BoxError>,
    }
}

impl http_body::Body for ServedBody {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                *this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What an app connection's exchanges did lately, for
/// [`Quiet`](super::graceful::Quiet): set as they start and end, read by the
/// connection's timer. HTTP/1 runs all of it in the connection's task; HTTP/2
/// ends exchanges in the streams' tasks too, hence atomics (rarely contended:
/// a few touches per exchange).
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// An exchange started or ended since the timer last looked.
    pub(super) stirred: AtomicBool,
    /// Exchanges in progress: from the request's head read until the
    /// answer's body is sent (or dropped).
    pub(super) waiting: AtomicUsize,
}

/// An exchange in progress, from `call` until the answer's body is dropped.
struct Waiting(Arc<Activity>);

impl Waiting {
    fn new(activity: Arc<Activity>) -> Self {
        activity.waiting.fetch_add(1, Ordering::Relaxed);
        activity.stirred.store(true, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        self.0.stirred.store(true, Ordering::Relaxed);
    }
}
